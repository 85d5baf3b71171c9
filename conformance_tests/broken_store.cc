#include "conformance_tests/broken_store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace quire::conformance {

using storage::Event;
using storage::Head;
using storage::Status;
using storage::Store;
using storage::Write;
namespace op = storage::op;

std::string FaultName(Fault fault) {
  switch (fault) {
    case Fault::kNone:
      return "None";
    case Fault::kOutOfCommitOrder:
      return "OutOfCommitOrder";
    case Fault::kBrieflyOutOfCommitOrder:
      return "BrieflyOutOfCommitOrder";
    case Fault::kDropAtResumeBoundary:
      return "DropAtResumeBoundary";
    case Fault::kReuseAfterReopen:
      return "ReuseAfterReopen";
    case Fault::kNonAtomicUniqueness:
      return "NonAtomicUniqueness";
    case Fault::kReadsBlockWriters:
      return "ReadsBlockWriters";
    case Fault::kProcessLocalCommitLock:
      return "ProcessLocalCommitLock";
    case Fault::kAcknowledgeBeforeDurable:
      return "AcknowledgeBeforeDurable";
    case Fault::kDeleteKeepsContent:
      return "DeleteKeepsContent";
    case Fault::kPurgeLowersHorizon:
      return "PurgeLowersHorizon";
    case Fault::kPasswordChangeKeepsSessions:
      return "PasswordChangeKeepsSessions";
    case Fault::kKeyRepeatedInBatch:
      return "KeyRepeatedInBatch";
    case Fault::kReuseAfterPurge:
      return "ReuseAfterPurge";
    case Fault::kExpireKeepsText:
      return "ExpireKeepsText";
    case Fault::kReadReplacesOutput:
      return "ReadReplacesOutput";
    case Fault::kSilentWritesReportSequence:
      return "SilentWritesReportSequence";
    case Fault::kGenerationStandsStill:
      return "GenerationStandsStill";
    case Fault::kWaitMissesEarlierCommit:
      return "WaitMissesEarlierCommit";
    case Fault::kGenerationOfThisProcessOnly:
      return "GenerationOfThisProcessOnly";
    case Fault::kSessionUpsert:
      return "SessionUpsert";
    case Fault::kAcceptNotAtomic:
      return "AcceptNotAtomic";
    case Fault::kPasswordChangeDropsAllSessions:
      return "PasswordChangeDropsAllSessions";
    case Fault::kKeyAfterExclusive:
      return "KeyAfterExclusive";
    case Fault::kReplayTouchesConversation:
      return "ReplayTouchesConversation";
    case Fault::kRetentionCutoffsInclusive:
      return "RetentionCutoffsInclusive";
    case Fault::kHasUsersOnEmptyStore:
      return "HasUsersOnEmptyStore";
  }
  return "Unknown";
}

namespace {

// State of the faults that only show across processes, in memory shared by
// the test program and every process it forks (the suite's writer processes).
struct SharedState {
  // kProcessLocalCommitLock: sequences lo..hi are not yet visible to readers
  // of any process until `until` (steady clock, ns; -1 while being filled).
  struct Invisible {
    std::atomic<std::int64_t> lo{0};
    std::atomic<std::int64_t> hi{0};
    std::atomic<std::int64_t> until{0};
  };
  Invisible invisible[64];
  // kAcknowledgeBeforeDurable: the highest sequence written out, as a file
  // that outlives a killed writer would keep it.
  std::atomic<std::int64_t> flushed_through{0};
  // The commit generation of every process, for the wrappers that declare
  // multi_process_writers over SQLite (whose own generation counts the
  // commits of its process only).
  std::atomic<std::uint64_t> commits{0};
};
static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

SharedState* MapSharedState() {
  void* memory =
      mmap(nullptr, sizeof(SharedState), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) std::abort();
  return new (memory) SharedState;
}

// Mapped before main, so that every forked process shares it.
SharedState* const shared = MapSharedState();
const pid_t test_program = getpid();

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// kProcessLocalCommitLock: the first sequence of the invisible range that
// holds `seq`, or 0 when `seq` is visible.
std::int64_t InvisibleFrom(std::int64_t seq) {
  const std::int64_t now = NowNs();
  for (const SharedState::Invisible& slot : shared->invisible) {
    if (slot.until.load() <= now) continue;
    const std::int64_t lo = slot.lo.load();
    if (lo <= seq && seq <= slot.hi.load()) return lo;
  }
  return 0;
}

void RaiseTo(std::atomic<std::int64_t>& value, std::int64_t to) {
  std::int64_t now = value.load();
  while (now < to && !value.compare_exchange_weak(now, to)) {
  }
}

class BrokenStore : public Store {
 public:
  BrokenStore(std::unique_ptr<Store> inner, Fault fault) : inner_(std::move(inner)), fault_(fault) {
    if (fault_ == Fault::kReuseAfterReopen) ForgetPurgedHead();
    if (fault_ == Fault::kAcknowledgeBeforeDurable) LoseUnflushedTail();
  }

  ~BrokenStore() override {
    // kAcknowledgeBeforeDurable: a clean close writes the queue out.
    Head head;
    if (fault_ == Fault::kAcknowledgeBeforeDurable && inner_->GetHead(&head).ok()) {
      RaiseTo(shared->flushed_through, head.last_seq);
    }
  }

  storage::Capabilities capabilities() const override {
    storage::Capabilities caps = inner_->capabilities();
    if (fault_ == Fault::kNone || fault_ == Fault::kProcessLocalCommitLock ||
        fault_ == Fault::kGenerationOfThisProcessOnly) {
      caps.multi_process_writers = true;
    }
    return caps;
  }

  Status Apply(std::span<Write> batch) override {
    const Status s = ApplyWithFault(batch);
    if (s.ok() && SharesGeneration()) shared->commits.fetch_add(1);
    return s;
  }

  Status ApplyWithFault(std::span<Write> batch) {
    switch (fault_) {
      case Fault::kOutOfCommitOrder:
        return ApplyVisibleLate(batch, 3, std::chrono::milliseconds(20));
      case Fault::kBrieflyOutOfCommitOrder:
        return ApplyVisibleLate(batch, 3, std::chrono::microseconds(50));
      case Fault::kNonAtomicUniqueness:
        return ApplyWithRacyNameCheck(batch);
      case Fault::kReuseAfterReopen:
      case Fault::kReuseAfterPurge: {
        const Status s = inner_->Apply(batch);
        bool purged = false;
        for (Write& w : batch) {
          if (w.last_seq > 0) w.last_seq = Presented(w.last_seq);
          purged |= w.status.ok() && std::holds_alternative<op::Purge>(w.op);
        }
        // The bug: the counter is set again from the highest retained event.
        if (purged && fault_ == Fault::kReuseAfterPurge) ForgetPurgedHead();
        return s;
      }
      case Fault::kReadsBlockWriters: {
        std::lock_guard<std::mutex> lock(engine_mu_);
        return inner_->Apply(batch);
      }
      case Fault::kProcessLocalCommitLock:
        return ApplyUnderProcessLock(batch);
      case Fault::kAcknowledgeBeforeDurable:
        return ApplyWriteBehind(batch);
      case Fault::kDeleteKeepsContent:
        return ApplyRememberingContent(batch);
      case Fault::kPurgeLowersHorizon:
        return ApplyOverwritingHorizon(batch);
      case Fault::kPasswordChangeKeepsSessions:
        return ApplyMisrevokingSessions(batch);
      case Fault::kKeyRepeatedInBatch:
        return ApplyWithKeysOfCommittedOnly(batch);
      case Fault::kExpireKeepsText:
        return ApplyRememberingContent(batch);
      case Fault::kSilentWritesReportSequence:
        return ApplyReportingHead(batch);
      case Fault::kSessionUpsert:
        return ApplyReplacingSessions(batch);
      case Fault::kAcceptNotAtomic:
        return ApplyAcceptsPiecewise(batch);
      case Fault::kPasswordChangeDropsAllSessions:
        return ApplyMisrevokingSessions(batch);
      case Fault::kKeyAfterExclusive:
        return ApplyWithKeysAfterOnly(batch);
      case Fault::kReplayTouchesConversation:
        return ApplyNotingReplays(batch);
      case Fault::kRetentionCutoffsInclusive:
        return ApplyWithInclusiveCutoffs(batch);
      case Fault::kNone:
      case Fault::kDropAtResumeBoundary:
      case Fault::kReadReplacesOutput:
      case Fault::kGenerationStandsStill:
      case Fault::kWaitMissesEarlierCommit:
      case Fault::kGenerationOfThisProcessOnly:
      case Fault::kHasUsersOnEmptyStore:
        break;
    }
    return inner_->Apply(batch);
  }

  Status GetHead(Head* out) override {
    const Status s = inner_->GetHead(out);
    if (s.ok() && (fault_ == Fault::kReuseAfterReopen || fault_ == Fault::kReuseAfterPurge)) {
      out->last_seq = Presented(out->last_seq);
      out->purged_through = Presented(out->purged_through);
    }
    if (s.ok() && fault_ == Fault::kProcessLocalCommitLock) {
      // The head is the highest committed sequence: not one still in flight.
      while (const std::int64_t lo = InvisibleFrom(out->last_seq)) out->last_seq = lo - 1;
    }
    if (s.ok() && fault_ == Fault::kPurgeLowersHorizon) {
      std::lock_guard<std::mutex> lock(mu_);
      if (horizon_ >= 0) out->purged_through = horizon_;
    }
    return s;
  }

  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    switch (fault_) {
      case Fault::kDropAtResumeBoundary:
        // The bug: "seq > after + 1" where "seq > after" was meant.
        if (after > 0) return inner_->ReadEvents(after + 1, upto, limit, out);
        break;
      case Fault::kReuseAfterReopen:
      case Fault::kReuseAfterPurge: {
        std::vector<Event> got;
        const Status s = inner_->ReadEvents(Inner(after), Inner(upto), limit, &got);
        for (Event& e : got) {
          e.seq = Presented(e.seq);
          out->push_back(std::move(e));
        }
        return s;
      }
      case Fault::kOutOfCommitOrder:
      case Fault::kBrieflyOutOfCommitOrder: {
        std::vector<Event> got;
        const Status s = inner_->ReadEvents(after, upto, limit, &got);
        std::lock_guard<std::mutex> lock(mu_);
        for (Event& e : got) {
          if (!invisible_.contains(e.seq)) out->push_back(std::move(e));
        }
        return s;
      }
      case Fault::kReadsBlockWriters: {
        std::lock_guard<std::mutex> lock(engine_mu_);
        return inner_->ReadEvents(after, upto, limit, out);
      }
      case Fault::kProcessLocalCommitLock:
        return ReadEventsExcept(after, upto, limit, out,
                                [](std::int64_t seq) { return InvisibleFrom(seq) > 0; });
      case Fault::kAcknowledgeBeforeDurable:
        return ReadEventsExcept(after, upto, limit, out, [this](std::int64_t seq) {
          return lost_after_ < seq && seq <= lost_through_;
        });
      case Fault::kNone:
      case Fault::kNonAtomicUniqueness:
      case Fault::kDeleteKeepsContent:
      case Fault::kPurgeLowersHorizon:
      case Fault::kExpireKeepsText: {
        const std::size_t first = out->size();
        const Status s = inner_->ReadEvents(after, upto, limit, out);
        std::lock_guard<std::mutex> lock(mu_);
        for (std::size_t i = first; i < out->size(); ++i) {
          Event& e = (*out)[i];
          if (e.kind != storage::EventKind::kMessageSent || !e.deleted_at ||
              deleted_.contains(e.id))
            continue;
          if (auto it = content_.find(e.id); it != content_.end()) e.text = it->second;
        }
        return s;
      }
      case Fault::kReadReplacesOutput:
        // The bug: *out is the result, not a vector to append to.
        out->clear();
        break;
      case Fault::kPasswordChangeKeepsSessions:
      case Fault::kKeyRepeatedInBatch:
      case Fault::kSilentWritesReportSequence:
      case Fault::kGenerationStandsStill:
      case Fault::kWaitMissesEarlierCommit:
      case Fault::kGenerationOfThisProcessOnly:
      case Fault::kSessionUpsert:
      case Fault::kAcceptNotAtomic:
      case Fault::kPasswordChangeDropsAllSessions:
      case Fault::kKeyAfterExclusive:
      case Fault::kReplayTouchesConversation:
      case Fault::kRetentionCutoffsInclusive:
      case Fault::kHasUsersOnEmptyStore:
        break;
    }
    return inner_->ReadEvents(after, upto, limit, out);
  }

  Status HasUsers(bool* out) override {
    const Status s = inner_->HasUsers(out);
    if (s.ok() && fault_ == Fault::kHasUsersOnEmptyStore) *out = true;
    return s;
  }
  Status GetUser(const std::string& id, storage::User* out) override {
    return inner_->GetUser(id, out);
  }
  Status FindUserByCanonicalName(const std::string& canonical, storage::User* out) override {
    return inner_->FindUserByCanonicalName(canonical, out);
  }
  Status FindSession(const std::string& token_hash, storage::Session* out) override {
    return inner_->FindSession(token_hash, out);
  }
  Status GetInvitation(const std::string& id, storage::Invitation* out) override {
    return inner_->GetInvitation(id, out);
  }
  Status GetConversation(const std::string& id, storage::Conversation* out) override {
    const Status s = inner_->GetConversation(id, out);
    if (s.ok() && fault_ == Fault::kDeleteKeepsContent && out->deleted_at) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = content_.find(id); it != content_.end()) out->name = it->second;
    }
    if (s.ok() && fault_ == Fault::kReplayTouchesConversation) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = replay_activity_.find(id); it != replay_activity_.end()) {
        out->last_activity = it->second;
      }
    }
    return s;
  }
  Status GetMessage(const std::string& id, storage::Message* out) override {
    const Status s = inner_->GetMessage(id, out);
    if (s.ok() && fault_ == Fault::kDeleteKeepsContent && out->deleted_at) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = content_.find(id); it != content_.end()) out->body = it->second;
    }
    return s;
  }
  std::uint64_t CommitGeneration() override {
    if (SharesGeneration()) return shared->commits.load();
    if (fault_ == Fault::kGenerationStandsStill) return 0;
    return inner_->CommitGeneration();
  }

  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) override {
    if (SharesGeneration()) return WaitForSharedCommit(seen, timeout);
    switch (fault_) {
      case Fault::kGenerationStandsStill:
        inner_->WaitForCommit(inner_->CommitGeneration(), timeout);
        return 0;
      case Fault::kWaitMissesEarlierCommit:
        // The bug: waits for a change from now, not from `seen`.
        return inner_->WaitForCommit(inner_->CommitGeneration(), timeout);
      default:
        return inner_->WaitForCommit(seen, timeout);
    }
  }

 private:
  // The wrappers that declare multi_process_writers honestly count the
  // commits of every process (kGenerationOfThisProcessOnly does not).
  bool SharesGeneration() const {
    return fault_ == Fault::kNone || fault_ == Fault::kProcessLocalCommitLock;
  }

  // Waits for a commit of any process, by polling the shared generation.
  static std::uint64_t WaitForSharedCommit(std::uint64_t seen, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::uint64_t now = shared->commits.load();
    while (now == seen && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      now = shared->commits.load();
    }
    return now;
  }

  // kSilentWritesReportSequence: an OK write that emitted nothing reports
  // the head after the batch.
  Status ApplyReportingHead(std::span<Write> batch) {
    const Status s = inner_->Apply(batch);
    Head head;
    if (!s.ok() || !inner_->GetHead(&head).ok()) return s;
    for (Write& w : batch) {
      if (w.status.ok() && w.last_seq == 0) w.last_seq = head.last_seq;
    }
    return s;
  }

  // kSessionUpsert: the stored session of a token hash is deleted before
  // the new one goes in.
  Status ApplyReplacingSessions(std::span<Write> batch) {
    for (const Write& w : batch) {
      const auto* create = std::get_if<op::CreateSession>(&w.op);
      storage::Session stored;
      if (create == nullptr || !inner_->FindSession(create->session.token_hash, &stored).ok()) {
        continue;
      }
      std::vector<Write> replace(1);
      replace[0].op = op::DeleteSession{create->session.token_hash};
      inner_->Apply(replace);
    }
    return inner_->Apply(batch);
  }

  // kAcceptNotAtomic: an accept whose token hash is stored goes in with
  // another token; then that session is dropped and the accept reported as
  // the Conflict its session insert would have been, user and invitation
  // use left in place.
  Status ApplyAcceptsPiecewise(std::span<Write> batch) {
    const std::string suffix =
        "\x1f"
        "piecewise";
    std::vector<std::size_t> piecewise;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto* accept = std::get_if<op::AcceptInvitation>(&batch[i].op);
      storage::Session stored;
      if (accept != nullptr && inner_->FindSession(accept->session.token_hash, &stored).ok()) {
        accept->session.token_hash += suffix;
        piecewise.push_back(i);
      }
    }
    const Status s = inner_->Apply(batch);
    for (std::size_t i : piecewise) {
      std::string& token_hash = std::get<op::AcceptInvitation>(batch[i].op).session.token_hash;
      std::vector<Write> drop(1);
      drop[0].op = op::DeleteSession{token_hash};
      token_hash.resize(token_hash.size() - suffix.size());
      if (!batch[i].status.ok()) continue;
      inner_->Apply(drop);
      batch[i].status = Status::Conflict("session token is taken");
      batch[i].last_seq = 0;
    }
    return s;
  }

  // Remembers whose each session made by `batch` is (mu_ held).
  void NoteSessions(std::span<const Write> batch) {
    for (const Write& w : batch) {
      if (!w.status.ok()) continue;
      if (const auto* setup = std::get_if<op::Setup>(&w.op)) {
        session_users_[setup->session.token_hash] = setup->session.user_id;
      } else if (const auto* accept = std::get_if<op::AcceptInvitation>(&w.op)) {
        session_users_[accept->session.token_hash] = accept->session.user_id;
      } else if (const auto* create = std::get_if<op::CreateSession>(&w.op)) {
        session_users_[create->session.token_hash] = create->session.user_id;
      } else if (const auto* change = std::get_if<op::ChangePassword>(&w.op)) {
        session_users_[change->session.token_hash] = change->session.user_id;
      }
    }
  }

  // kKeyAfterExclusive: looks keys up from key_after + 1.
  Status ApplyWithKeysAfterOnly(std::span<Write> batch) {
    for (Write& w : batch) {
      if (auto* send = std::get_if<op::SendMessage>(&w.op)) ++send->key_after;
    }
    const Status s = inner_->Apply(batch);
    for (Write& w : batch) {
      if (auto* send = std::get_if<op::SendMessage>(&w.op)) --send->key_after;
    }
    return s;
  }

  // kReplayTouchesConversation: notes the time of each replayed send for
  // its conversation, which GetConversation then reports as last activity.
  Status ApplyNotingReplays(std::span<Write> batch) {
    std::vector<std::pair<std::string, storage::Micros>> sent(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (const auto* send = std::get_if<op::SendMessage>(&batch[i].op)) {
        sent[i] = {send->message.conversation, send->message.at};
      }
    }
    const Status s = inner_->Apply(batch);
    std::lock_guard<std::mutex> lock(mu_);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto* send = std::get_if<op::SendMessage>(&batch[i].op);
      if (send == nullptr || !batch[i].status.ok()) continue;
      if (send->replayed) {
        replay_activity_[sent[i].first] = sent[i].second;
      } else {
        replay_activity_.erase(sent[i].first);
      }
    }
    return s;
  }

  // kRetentionCutoffsInclusive: every cutoff of expiry and purge moves one
  // microsecond later.
  Status ApplyWithInclusiveCutoffs(std::span<Write> batch) {
    auto shift_all = [&](std::int64_t by) {
      for (Write& w : batch) {
        if (auto* expire = std::get_if<op::Expire>(&w.op)) {
          for (storage::Micros* cutoff :
               {&expire->messages_sent_before, &expire->conversations_idle_before}) {
            if (*cutoff > 0 && *cutoff < INT64_MAX) *cutoff += by;
          }
        } else if (auto* purge = std::get_if<op::Purge>(&w.op)) {
          for (storage::Micros* cutoff :
               {&purge->deleted_before, &purge->sessions_used_before,
                &purge->invitations_issued_before, &purge->idempotency_before}) {
            if (*cutoff > 0 && *cutoff < INT64_MAX) *cutoff += by;
          }
        }
      }
    };
    shift_all(1);
    const Status s = inner_->Apply(batch);
    shift_all(-1);
    return s;
  }

  // kOutOfCommitOrder, kBrieflyOutOfCommitOrder: every `every`th batch
  // commits, then stays invisible for `window` while other writers' higher
  // sequences are already readable.
  Status ApplyVisibleLate(std::span<Write> batch, unsigned every,
                          std::chrono::microseconds window) {
    const bool late = calls_.fetch_add(1) % every == 0;
    const Status s = inner_->Apply(batch);
    if (!late || !s.ok()) return s;
    std::vector<std::int64_t> seqs;
    for (const Write& w : batch) {
      if (w.last_seq > 0) seqs.push_back(w.last_seq);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      invisible_.insert(seqs.begin(), seqs.end());
    }
    std::this_thread::sleep_for(window);
    std::lock_guard<std::mutex> lock(mu_);
    for (std::int64_t seq : seqs) invisible_.erase(seq);
    return s;
  }

  // kNonAtomicUniqueness: conversation names are checked against a lookup of
  // the wrapper's own, then — after a window in which another writer can pass
  // the same check — written with a name the engine's unique index cannot
  // see clash.
  Status ApplyWithRacyNameCheck(std::span<Write> batch) {
    std::vector<Write> passed;
    std::vector<std::size_t> where;
    std::vector<std::string> names;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto* create = std::get_if<op::CreateConversation>(&batch[i].op);
      if (create == nullptr) {
        passed.push_back(batch[i]);
        where.push_back(i);
        names.emplace_back();
        continue;
      }
      const std::string name = create->conversation.canonical;
      bool taken = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        taken = live_names_.contains(name);
      }
      if (taken) {
        batch[i].status = Status::Conflict("conversation name in use");
        batch[i].last_seq = 0;
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      Write w = batch[i];
      std::get<op::CreateConversation>(w.op).conversation.canonical +=
          "\x1f" + create->conversation.id;
      passed.push_back(std::move(w));
      where.push_back(i);
      names.push_back(name);
    }
    if (passed.empty()) return Status::Ok();
    const Status s = inner_->Apply(passed);
    for (std::size_t k = 0; k < passed.size(); ++k) {
      Write& original = batch[where[k]];
      original.status = passed[k].status;
      original.last_seq = passed[k].last_seq;
      if (names[k].empty()) {
        original.op = std::move(passed[k].op);
      } else if (passed[k].status.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        live_names_.insert(names[k]);
      }
    }
    return s;
  }

  // Reads like ReadEvents, leaving out the events `hide` names, and reads on
  // until `limit` events are kept or the range ends.
  template <typename Hide>
  Status ReadEventsExcept(std::int64_t after, std::int64_t upto, std::size_t limit,
                          std::vector<Event>* out, Hide hide) {
    std::size_t kept = 0;
    while (kept < limit) {
      const std::size_t wanted = limit - kept;
      std::vector<Event> got;
      const Status s = inner_->ReadEvents(after, upto, wanted, &got);
      if (!s.ok()) return s;
      for (Event& e : got) {
        after = e.seq;
        if (hide(e.seq)) continue;
        out->push_back(std::move(e));
        ++kept;
      }
      if (got.size() < wanted) break;
    }
    return Status::Ok();
  }

  // kProcessLocalCommitLock: one write at a time per process; every third
  // batch is invisible, to every process, from before its commit until 20 ms
  // after it (as if its commit came that long after its insert took the
  // numbers). The mutex is held meanwhile, so no other thread of this process
  // commits a higher sequence before it is visible; other processes do. Only
  // writer processes forked by the suite are slowed down so: in one process
  // the window is harmless, and would only lengthen every other test.
  Status ApplyUnderProcessLock(std::span<Write> batch) {
    std::lock_guard<std::mutex> lock(commit_mu_);
    Head head;
    SharedState::Invisible* slot = nullptr;
    if (getpid() != test_program && calls_.fetch_add(1) % 3 == 0 && inner_->GetHead(&head).ok()) {
      // Until the numbers are known: everything above the head.
      slot = ClaimInvisible(head.last_seq + 1, INT64_MAX, std::chrono::milliseconds(200));
    }
    const Status s = inner_->Apply(batch);
    if (slot == nullptr) return s;
    std::int64_t lo = INT64_MAX, hi = 0;
    for (const Write& w : batch) {
      if (w.last_seq > 0) {
        lo = std::min(lo, w.last_seq);
        hi = std::max(hi, w.last_seq);
      }
    }
    if (hi == 0) {
      slot->until.store(0);
      return s;
    }
    constexpr auto kWindow = std::chrono::milliseconds(20);
    slot->lo.store(lo);
    slot->hi.store(hi);
    slot->until.store(NowNs() + std::chrono::nanoseconds(kWindow).count());
    std::this_thread::sleep_for(kWindow);  // until the batch is visible
    return s;
  }

  // Makes lo..hi invisible for `how_long`; nullptr when every slot is taken.
  static SharedState::Invisible* ClaimInvisible(std::int64_t lo, std::int64_t hi,
                                                std::chrono::nanoseconds how_long) {
    const std::int64_t now = NowNs();
    for (SharedState::Invisible& slot : shared->invisible) {
      std::int64_t until = slot.until.load();
      if (until < 0 || until > now || !slot.until.compare_exchange_strong(until, -1)) continue;
      slot.lo.store(lo);
      slot.hi.store(hi);
      slot.until.store(now + how_long.count());
      return &slot;
    }
    return nullptr;
  }

  // kAcknowledgeBeforeDurable: every batch is committed at once (so that it
  // has its sequences), but counts as written out only three batches later.
  Status ApplyWriteBehind(std::span<Write> batch) {
    const Status s = inner_->Apply(batch);
    std::int64_t highest = 0;
    for (const Write& w : batch) highest = std::max(highest, w.last_seq);
    if (highest == 0) return s;
    std::lock_guard<std::mutex> lock(mu_);
    write_behind_.push_back(highest);
    if (write_behind_.size() > 3) {
      RaiseTo(shared->flushed_through, write_behind_.front());
      write_behind_.pop_front();
    }
    return s;
  }

  // kAcknowledgeBeforeDurable, on open: what the last writer committed after
  // its last write-out is lost (hidden from reads) unless it closed cleanly.
  void LoseUnflushedTail() {
    Head head;
    if (!inner_->GetHead(&head).ok()) return;
    const std::int64_t flushed = shared->flushed_through.load();
    if (head.last_seq > 0 && flushed < head.last_seq) {
      lost_after_ = flushed;
      lost_through_ = head.last_seq;
    }
    shared->flushed_through.store(head.last_seq);  // a new database starts at 0
  }

  // kDeleteKeepsContent: remembers what each message and conversation said,
  // for the reads of the records after they are deleted.
  // kDeleteKeepsContent, kExpireKeepsText: remembers the text of each
  // message and conversation, and which messages DeleteMessage deleted.
  Status ApplyRememberingContent(std::span<Write> batch) {
    const Status s = inner_->Apply(batch);
    std::lock_guard<std::mutex> lock(mu_);
    for (const Write& w : batch) {
      if (!w.status.ok()) continue;
      if (const auto* send = std::get_if<op::SendMessage>(&w.op); send && !send->replayed) {
        content_[send->message.id] = send->message.body;
      } else if (const auto* create = std::get_if<op::CreateConversation>(&w.op)) {
        content_[create->conversation.id] = create->conversation.name;
      } else if (const auto* del = std::get_if<op::DeleteMessage>(&w.op)) {
        deleted_.insert(del->id);
      }
    }
    return s;
  }

  // kPurgeLowersHorizon: after a purge the head reports the highest sequence
  // that purge removed, or 0.
  Status ApplyOverwritingHorizon(std::span<Write> batch) {
    const Status s = inner_->Apply(batch);
    for (const Write& w : batch) {
      const auto* purge = std::get_if<op::Purge>(&w.op);
      if (purge == nullptr || !w.status.ok()) continue;
      Head head;
      if (!inner_->GetHead(&head).ok()) continue;
      std::lock_guard<std::mutex> lock(mu_);
      horizon_ = purge->purged_events > 0 ? head.purged_through : 0;
    }
    return s;
  }

  // kPasswordChangeKeepsSessions: the sessions a password change revoked are
  // put back right after it. kPasswordChangeDropsAllSessions: after a
  // password change, every session the wrapper has seen made for another
  // user is deleted.
  Status ApplyMisrevokingSessions(std::span<Write> batch) {
    std::vector<storage::Session> kept;
    if (fault_ == Fault::kPasswordChangeKeepsSessions) {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Write& w : batch) {
        const auto* change = std::get_if<op::ChangePassword>(&w.op);
        if (change == nullptr) continue;
        for (const auto& [token_hash, user_id] : session_users_) {
          storage::Session session;
          if (user_id == change->user_id && inner_->FindSession(token_hash, &session).ok()) {
            kept.push_back(session);
          }
        }
      }
    }
    const Status s = inner_->Apply(batch);
    std::vector<Write> repair;
    std::lock_guard<std::mutex> lock(mu_);
    NoteSessions(batch);
    for (const Write& w : batch) {
      const auto* change = std::get_if<op::ChangePassword>(&w.op);
      if (change == nullptr || !w.status.ok()) continue;
      for (const storage::Session& session : kept) {
        if (session.user_id == change->user_id) {
          repair.push_back(Write{op::CreateSession{session}, Status::Ok(), 0});
        }
      }
      if (fault_ != Fault::kPasswordChangeDropsAllSessions) continue;
      for (const auto& [token_hash, user_id] : session_users_) {
        if (user_id != change->user_id) {
          repair.push_back(Write{op::DeleteSession{token_hash}, Status::Ok(), 0});
        }
      }
    }
    if (!repair.empty()) inner_->Apply(repair);
    return s;
  }

  // kKeyRepeatedInBatch: a key already used earlier in the batch is not
  // found (it is not committed yet), so that write goes in as a new message.
  Status ApplyWithKeysOfCommittedOnly(std::span<Write> batch) {
    std::set<std::pair<std::string, std::string>> keys;
    std::vector<std::pair<std::size_t, std::string>> unseen;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto* send = std::get_if<op::SendMessage>(&batch[i].op);
      if (send == nullptr || send->idempotency_key.empty()) continue;
      if (!keys.emplace(send->message.sender, send->idempotency_key).second) {
        unseen.emplace_back(i, std::move(send->idempotency_key));
        send->idempotency_key.clear();
      }
    }
    const Status s = inner_->Apply(batch);
    for (auto& [i, key] : unseen) {
      std::get<op::SendMessage>(batch[i].op).idempotency_key = std::move(key);
    }
    return s;
  }

  // kReuseAfterReopen: present sequences as if the store had restarted its
  // counter at the highest retained event.
  void ForgetPurgedHead() {
    Head head;
    if (!inner_->GetHead(&head).ok()) return;
    std::int64_t highest_retained = 0;
    for (std::int64_t after = 0;;) {
      std::vector<Event> page;
      if (!inner_->ReadEvents(after, INT64_MAX, 1000, &page).ok() || page.empty()) break;
      after = highest_retained = page.back().seq;
    }
    boundary_ = highest_retained;
    offset_ = head.last_seq - highest_retained;
  }
  std::int64_t Presented(std::int64_t seq) const { return seq > boundary_ ? seq - offset_ : seq; }
  std::int64_t Inner(std::int64_t seq) const {
    if (seq <= boundary_) return seq;
    return seq > INT64_MAX - offset_ ? INT64_MAX : seq + offset_;
  }

  const std::unique_ptr<Store> inner_;
  const Fault fault_;

  std::mutex mu_;
  std::mutex engine_mu_;                        // kReadsBlockWriters
  std::mutex commit_mu_;                        // kProcessLocalCommitLock
  std::set<std::int64_t> invisible_;            // kOutOfCommitOrder
  std::set<std::string> live_names_;            // kNonAtomicUniqueness
  std::atomic<std::uint64_t> calls_{0};         // kOutOfCommitOrder, kProcessLocalCommitLock
  std::int64_t boundary_ = 0;                   // kReuseAfterReopen, kReuseAfterPurge
  std::int64_t offset_ = 0;                     // kReuseAfterReopen, kReuseAfterPurge
  std::set<std::string> deleted_;               // kExpireKeepsText
  std::deque<std::int64_t> write_behind_;       // kAcknowledgeBeforeDurable
  std::int64_t lost_after_ = 0;                 // kAcknowledgeBeforeDurable
  std::int64_t lost_through_ = 0;               // kAcknowledgeBeforeDurable
  std::map<std::string, std::string> content_;  // kDeleteKeepsContent, kExpireKeepsText: id → text
  std::int64_t horizon_ = -1;                   // kPurgeLowersHorizon; -1: as stored
  // kPasswordChangeKeepsSessions, kPasswordChangeDropsAllSessions: token hash → user
  std::map<std::string, std::string> session_users_;
  std::map<std::string, storage::Micros> replay_activity_;  // kReplayTouchesConversation
};

}  // namespace

std::unique_ptr<Store> WrapWithFault(std::unique_ptr<Store> inner, Fault fault) {
  return std::make_unique<BrokenStore>(std::move(inner), fault);
}

}  // namespace quire::conformance
