#include "conformance_tests/broken_store.h"

#include <atomic>
#include <chrono>
#include <climits>
#include <map>
#include <mutex>
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
    case Fault::kDropAtResumeBoundary:
      return "DropAtResumeBoundary";
    case Fault::kReuseAfterReopen:
      return "ReuseAfterReopen";
    case Fault::kNonAtomicUniqueness:
      return "NonAtomicUniqueness";
    case Fault::kReadsBlockWriters:
      return "ReadsBlockWriters";
  }
  return "Unknown";
}

namespace {

class BrokenStore : public Store {
 public:
  BrokenStore(std::unique_ptr<Store> inner, Fault fault) : inner_(std::move(inner)), fault_(fault) {
    if (fault_ == Fault::kReuseAfterReopen) ForgetPurgedHead();
  }

  storage::Capabilities capabilities() const override {
    storage::Capabilities caps = inner_->capabilities();
    if (fault_ == Fault::kNone) caps.multi_process_writers = true;
    return caps;
  }

  Status Apply(std::span<Write> batch) override {
    switch (fault_) {
      case Fault::kOutOfCommitOrder:
        return ApplyVisibleLate(batch);
      case Fault::kNonAtomicUniqueness:
        return ApplyWithRacyNameCheck(batch);
      case Fault::kReuseAfterReopen: {
        const Status s = inner_->Apply(batch);
        for (Write& w : batch) {
          if (w.last_seq > 0) w.last_seq = Presented(w.last_seq);
        }
        return s;
      }
      case Fault::kReadsBlockWriters: {
        std::lock_guard<std::mutex> lock(engine_mu_);
        return inner_->Apply(batch);
      }
      case Fault::kNone:
      case Fault::kDropAtResumeBoundary:
        break;
    }
    return inner_->Apply(batch);
  }

  Status GetHead(Head* out) override {
    const Status s = inner_->GetHead(out);
    if (s.ok() && fault_ == Fault::kReuseAfterReopen) {
      out->last_seq = Presented(out->last_seq);
      out->purged_through = Presented(out->purged_through);
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
      case Fault::kReuseAfterReopen: {
        std::vector<Event> got;
        const Status s = inner_->ReadEvents(Inner(after), Inner(upto), limit, &got);
        for (Event& e : got) {
          e.seq = Presented(e.seq);
          out->push_back(std::move(e));
        }
        return s;
      }
      case Fault::kOutOfCommitOrder: {
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
      case Fault::kNone:
      case Fault::kNonAtomicUniqueness:
        break;
    }
    return inner_->ReadEvents(after, upto, limit, out);
  }

  Status HasUsers(bool* out) override { return inner_->HasUsers(out); }
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
    return inner_->GetConversation(id, out);
  }
  Status GetMessage(const std::string& id, storage::Message* out) override {
    return inner_->GetMessage(id, out);
  }
  std::uint64_t CommitGeneration() override { return inner_->CommitGeneration(); }
  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) override {
    return inner_->WaitForCommit(seen, timeout);
  }

 private:
  // kOutOfCommitOrder: every third batch commits, then stays invisible for
  // 20 ms while other writers' higher sequences are already readable.
  Status ApplyVisibleLate(std::span<Write> batch) {
    const bool late = calls_.fetch_add(1) % 3 == 0;
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
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
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
  std::mutex engine_mu_;                 // kReadsBlockWriters
  std::set<std::int64_t> invisible_;     // kOutOfCommitOrder
  std::set<std::string> live_names_;     // kNonAtomicUniqueness
  std::atomic<std::uint64_t> calls_{0};  // kOutOfCommitOrder
  std::int64_t boundary_ = 0;            // kReuseAfterReopen
  std::int64_t offset_ = 0;              // kReuseAfterReopen
};

}  // namespace

std::unique_ptr<Store> WrapWithFault(std::unique_ptr<Store> inner, Fault fault) {
  return std::make_unique<BrokenStore>(std::move(inner), fault);
}

}  // namespace quire::conformance
