#include "storage/chat_rules.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace quire::storage {
namespace {

// An engine call failed or refused: carries its status out of a rule to the
// batch, which decides whether one write or the whole batch fails.
struct EngineFailure {
  Status status;
};

void Must(Status s) {
  if (!s.ok()) throw EngineFailure{std::move(s)};
}

// A getter's answer: true when found, false when NotFound; anything else
// fails the rule.
bool Found(Status s) {
  if (s.ok()) return true;
  if (s.IsNotFound()) return false;
  throw EngineFailure{std::move(s)};
}

// A failure that concerns one write only. Anything else fails the batch.
bool IsWriteLocal(const Status& s) {
  return s.code() == Status::Code::kNotFound || s.code() == Status::Code::kConflict ||
         s.code() == Status::Code::kInvalid;
}

bool IsSend(const Write& w) {
  return std::holds_alternative<op::SendMessage>(w.op);
}

// The rules of the operations of one batch, inside its write transaction.
//
// Every rule makes all of its checks before its first change, so a write
// that a rule refuses (NotFound, Conflict) has changed nothing: it needs no
// savepoint, and the batch goes on. Only a refusal by the engine itself (an
// id already stored) can come after a change; a savepoint per write, or a
// second run of the batch with one, undoes that.
class BatchRules {
 public:
  BatchRules(WriteTxn& txn, const Head& head) : txn_(txn), head_(head), seq_(head.last_seq) {}

  std::int64_t seq() const { return seq_; }

  // Where the head stood before a write, to forget what a refused write
  // took: nothing of it committed, so its sequences were never seen.
  struct Mark {
    std::int64_t seq;
    std::int64_t purged_through;
  };
  Mark mark() const { return Mark{seq_, purged_through_}; }
  void RewindTo(const Mark& mark) {
    seq_ = mark.seq;
    purged_through_ = mark.purged_through;
  }

  // The head to store, when the batch changed it.
  std::optional<Head> NewHead() const {
    Head head = head_;
    head.last_seq = seq_;
    head.purged_through = purged_through_;
    if (head == head_) {
      return std::nullopt;
    }
    return head;
  }

  Status Apply(op::Operation& operation) {
    return std::visit([this](auto& o) { return Do(o); }, operation);
  }

  // Consecutive sends, as one: the reads of all, then the writes of all.
  // Each send that fails does so alone and takes no sequence.
  void SendRun(std::span<Write> run);

 private:
  Status Do(op::Setup& o) {
    bool any = false;
    Must(txn_.records().HasUsers(&any));
    if (any) return Status::Conflict("setup has already been done");
    if (Status s = CheckUserName(o.user); !s.ok()) return s;
    CreateUser(o.user, o.session);
    return Status::Ok();
  }

  Status Do(op::AcceptInvitation& o) {
    Invitation invitation;
    if (!Found(txn_.records().GetInvitation(o.invitation_id, &invitation)) || invitation.used ||
        invitation.issued_at < o.issued_after) {
      return Status::NotFound("no usable invitation " + o.invitation_id);
    }
    if (Status s = CheckUserName(o.user); !s.ok()) return s;
    Invitation used = invitation;
    used.used = true;
    Must(txn_.UpdateInvitation({invitation, used}));
    CreateUser(o.user, o.session);
    return Status::Ok();
  }

  Status Do(op::CreateSession& o) {
    // A taken token is reported before an unknown user.
    Session taken;
    if (Found(txn_.records().FindSession(o.session.token_hash, &taken))) {
      return Status::Conflict("the session token is already in use");
    }
    User user;
    if (!Found(txn_.records().GetUser(o.session.user_id, &user))) {
      return Status::NotFound("no user " + o.session.user_id);
    }
    Must(txn_.InsertSession(o.session));
    return Status::Ok();
  }

  Status Do(op::DeleteSession& o) {
    Session session;
    if (!Found(txn_.records().FindSession(o.token_hash, &session))) {
      return Status::NotFound("no such session");
    }
    Must(txn_.DeleteSession(session));
    return Status::Ok();
  }

  Status Do(op::ChangePassword& o) {
    User user;
    if (!Found(txn_.records().GetUser(o.user_id, &user)))
      return Status::NotFound("no user " + o.user_id);
    User changed = user;
    changed.password_hash = o.password_hash;
    Must(txn_.UpdateUser({user, changed}));
    Must(txn_.DeleteSessionsOfUser(o.user_id));
    if (!o.session.token_hash.empty()) Must(txn_.InsertSession(o.session));
    return Status::Ok();
  }

  Status Do(op::DeleteUserSessions& o) {
    User user;
    if (!Found(txn_.records().GetUser(o.user_id, &user)))
      return Status::NotFound("no user " + o.user_id);
    Must(txn_.DeleteSessionsOfUser(o.user_id));
    return Status::Ok();
  }

  Status Do(op::TouchSession& o) {
    Session session;
    if (!Found(txn_.records().FindSession(o.token_hash, &session))) {
      return Status::NotFound("no such session");
    }
    if (o.at > session.last_used) {
      Session renewed = session;
      renewed.last_used = o.at;
      Must(txn_.UpdateSession({session, renewed}));
    }
    return Status::Ok();
  }

  Status Do(op::CreateInvitation& o) {
    Must(txn_.InsertInvitation(o.invitation));
    return Status::Ok();
  }

  Status Do(op::CreateConversation& o) {
    Conversation& c = o.conversation;
    Conversation taken;
    if (Found(txn_.FindLiveConversationByName(c.canonical, &taken))) {
      return Status::Conflict("a live conversation has that name");
    }
    c.deleted_at = std::nullopt;
    Must(txn_.InsertConversation(c));
    Emit(EventKind::kConversationCreated, c.created_at, c.id, "", "", c.name);
    return Status::Ok();
  }

  Status Do(op::SendMessage&) {
    // Sends go through SendRun, alone or with their neighbours.
    return Status::Invalid("SendMessage outside a run of sends");
  }

  Status Do(op::DeleteConversation& o) {
    Conversation c;
    if (!Found(txn_.records().GetConversation(o.id, &c)) || c.deleted_at) {
      return Status::NotFound("no live conversation " + o.id);
    }
    std::vector<std::string> live;
    Must(txn_.ListLiveMessagesOf(o.id, 1, &live));
    if (!live.empty()) return Status::Conflict("the conversation still has live messages");
    DeleteConversation(c, o.at);
    return Status::Ok();
  }

  Status Do(op::DeleteMessage& o) {
    Message m;
    if (!Found(txn_.records().GetMessage(o.id, &m)) || m.deleted_at) {
      return Status::NotFound("no live message " + o.id);
    }
    DeleteMessage(m, o.at);
    return Status::Ok();
  }

  Status Do(op::Expire& o) {
    o.deleted_messages = 0;
    o.deleted_conversations = 0;
    // Due messages first, oldest first.
    std::vector<std::string> due;
    Must(txn_.ListLiveMessagesSentBefore(o.messages_sent_before, &due));
    for (const std::string& id : due) {
      DeleteMessage(Indexed<Message>(id), o.at);
      ++o.deleted_messages;
    }
    // Then idle conversations, each after its live messages.
    std::vector<std::string> idle;
    Must(txn_.ListLiveConversationsIdleBefore(o.conversations_idle_before, &idle));
    for (const std::string& conversation : idle) {
      std::vector<std::string> live;
      Must(txn_.ListLiveMessagesOf(conversation, SIZE_MAX, &live));
      for (const std::string& id : live) {
        DeleteMessage(Indexed<Message>(id), o.at);
        ++o.deleted_messages;
      }
      DeleteConversation(Indexed<Conversation>(conversation), o.at);
      ++o.deleted_conversations;
    }
    return Status::Ok();
  }

  Status Do(op::Purge& o) {
    o.purged_events = 0;
    // Entities deleted before the cutoff leave the history with all their
    // events; a conversation takes all of its messages along.
    std::vector<std::string> conversations;
    Must(txn_.ListConversationsDeletedBefore(o.deleted_before, &conversations));
    std::vector<std::string> messages;
    Must(txn_.ListMessagesDeletedBefore(o.deleted_before, &messages));
    for (const std::string& conversation : conversations) {
      Must(txn_.ListMessagesOf(conversation, &messages));
    }
    std::sort(messages.begin(), messages.end());
    messages.erase(std::unique(messages.begin(), messages.end()), messages.end());
    std::int64_t highest = 0;
    constexpr std::size_t kChunk = 1000;  // ids per call, for engines that take them at once
    for (std::size_t i = 0; i < messages.size(); i += kChunk) {
      const std::span<const std::string> chunk(messages.data() + i,
                                               std::min(kChunk, messages.size() - i));
      Must(txn_.RemoveMessagesWithEvents(chunk, &o.purged_events, &highest));
    }
    for (const std::string& id : conversations) {
      Must(txn_.RemoveEventsOf(id, &o.purged_events, &highest));
      Must(txn_.RemoveConversation(id));
    }
    // A resume point at or below it has lost events.
    purged_through_ = std::max(purged_through_, highest);
    Must(txn_.RemoveSessionsUsedBefore(o.sessions_used_before));
    Must(txn_.RemoveInvitationsIssuedBefore(o.invitations_issued_before));
    Must(txn_.RemoveIdempotencyMadeBefore(o.idempotency_before));
    return Status::Ok();
  }

  // ---- Shared by several rules ----

  // Appends an event with the next sequence.
  void Emit(EventKind kind, Micros at, const std::string& id, const std::string& conversation,
            const std::string& sender, const std::string& text) {
    Must(txn_.AppendEvent(MakeEvent(kind, at, id, conversation, sender, text)));
  }

  Event MakeEvent(EventKind kind, Micros at, const std::string& id, const std::string& conversation,
                  const std::string& sender, const std::string& text) {
    return Event{++seq_, kind, at, id, conversation, sender, text, std::nullopt};
  }

  Status CheckUserName(const User& user) {
    User taken;
    if (Found(txn_.records().FindUserByCanonicalName(user.canonical, &taken))) {
      return Status::Conflict("user name is taken");
    }
    return Status::Ok();
  }

  // After CheckUserName.
  void CreateUser(const User& user, const Session& session) {
    Must(txn_.InsertUser(user));
    Emit(EventKind::kUserCreated, user.created_at, user.id, "", "", user.name);
    Must(txn_.InsertSession(session));
  }

  // A record an index of the engine listed; missing means the engine's
  // index and records disagree.
  template <typename Record>
  Record Indexed(const std::string& id) {
    Record record;
    Status s;
    if constexpr (std::is_same_v<Record, Message>) {
      s = txn_.records().GetMessage(id, &record);
    } else {
      s = txn_.records().GetConversation(id, &record);
    }
    if (s.IsNotFound()) Must(Status::Corrupt(id + " is indexed as live but missing"));
    Must(std::move(s));
    return record;
  }

  // Deleting blanks the content, tombstones the created/sent event (deleted
  // text is never served again) and emits the deletion.
  void DeleteMessage(const Message& m, Micros at) {
    Message deleted = m;
    deleted.body.clear();
    deleted.deleted_at = at;
    Must(txn_.UpdateMessage({m, deleted}));
    Must(txn_.TombstoneEvents(m.id, EventKind::kMessageSent, at));
    Emit(EventKind::kMessageDeleted, at, m.id, m.conversation, "", "");
  }

  void DeleteConversation(const Conversation& c, Micros at) {
    Conversation deleted = c;
    // The canonical name goes too: it is the name's text, and it frees the name.
    deleted.name.clear();
    deleted.canonical.clear();
    deleted.deleted_at = at;
    Must(txn_.UpdateConversation({c, deleted}));
    Must(txn_.TombstoneEvents(c.id, EventKind::kConversationCreated, at));
    Emit(EventKind::kConversationDeleted, at, c.id, "", "", "");
  }

  WriteTxn& txn_;
  const Head head_;
  std::int64_t seq_;
  std::int64_t purged_through_ = head_.purged_through;
};

void BatchRules::SendRun(std::span<Write> run) {
  // Reads first: the idempotency records the run's keys already have, and
  // the conversations it sends to. (A run holds only sends, which change no
  // conversation's liveness, so one look is a look for each send.)
  std::vector<std::optional<IdempotencyRecord>> recorded(run.size());
  std::vector<std::string> conversation_ids;
  for (std::size_t i = 0; i < run.size(); ++i) {
    auto& send = std::get<op::SendMessage>(run[i].op);
    conversation_ids.push_back(send.message.conversation);
    if (send.idempotency_key.empty()) continue;
    IdempotencyRecord record;
    if (Found(txn_.GetIdempotency(send.message.sender, send.idempotency_key, &record)) &&
        record.created_at >= send.key_after) {
      recorded[i] = std::move(record);
    }
  }
  std::sort(conversation_ids.begin(), conversation_ids.end());
  conversation_ids.erase(std::unique(conversation_ids.begin(), conversation_ids.end()),
                         conversation_ids.end());
  std::vector<std::optional<Conversation>> conversations;
  Must(txn_.GetConversations(conversation_ids, &conversations));
  auto conversation_of = [&](const std::string& id) -> std::optional<Conversation>& {
    const auto at = std::lower_bound(conversation_ids.begin(), conversation_ids.end(), id);
    return conversations[static_cast<std::size_t>(at - conversation_ids.begin())];
  };

  // Then the decisions, in order.
  std::vector<Message> messages;
  std::vector<Event> events;
  std::vector<IdempotencyRecord> new_records;
  std::map<std::pair<std::string, std::string>, std::size_t> first_in_run;  // key → messages[i]
  std::vector<Change<Conversation>> touched;
  std::map<std::string, std::size_t> touched_index;
  for (std::size_t i = 0; i < run.size(); ++i) {
    Write& w = run[i];
    auto& send = std::get<op::SendMessage>(w.op);
    Message& m = send.message;
    w.status = Status::Ok();
    w.last_seq = 0;
    send.replayed = false;
    const std::pair<std::string, std::string> key{m.sender, send.idempotency_key};
    if (!send.idempotency_key.empty()) {
      // The same key again: nothing is written; the answer is the first
      // message (body empty if it was deleted since).
      if (const auto first = first_in_run.find(key); first != first_in_run.end()) {
        m = messages[first->second];
        send.replayed = true;
        continue;
      }
      if (const auto& record = recorded[i]) {
        Message first{record->message_id, record->conversation, m.sender, "",
                      record->at,         std::nullopt};
        // A purged message is answered from the idempotency record.
        Message stored;
        if (Found(txn_.records().GetMessage(record->message_id, &stored)))
          first = std::move(stored);
        m = std::move(first);
        send.replayed = true;
        continue;
      }
    }
    std::optional<Conversation>& conversation = conversation_of(m.conversation);
    if (!conversation || conversation->deleted_at) {
      w.status = Status::NotFound("no live conversation " + m.conversation);
      continue;
    }
    m.deleted_at = std::nullopt;
    events.push_back(
        MakeEvent(EventKind::kMessageSent, m.at, m.id, m.conversation, m.sender, m.body));
    w.last_seq = seq_;
    messages.push_back(m);
    // The conversation's last activity is its last message's time.
    auto [slot, added] = touched_index.try_emplace(m.conversation, touched.size());
    if (added) touched.push_back({*conversation, *conversation});
    touched[slot->second].after.last_activity = m.at;
    if (!send.idempotency_key.empty()) {
      first_in_run.emplace(key, messages.size() - 1);
      // Replaces an expired record of the same key.
      new_records.push_back(
          IdempotencyRecord{m.sender, send.idempotency_key, m.id, m.conversation, m.at, m.at});
    }
  }

  Must(txn_.WriteSends(messages, events, touched));
  for (const IdempotencyRecord& record : new_records) Must(txn_.PutIdempotency(record));
}

// How one attempt at a batch ended.
struct Attempt {
  Status failed;                      // OK when the batch committed
  bool engine_refused_write = false;  // without savepoints, the engine refused one write
};

class EngineStore final : public Store {
 public:
  explicit EngineStore(std::unique_ptr<Engine> engine)
      : engine_(std::move(engine)),
        commits_(engine_->ExternalCommits() ? engine_->ExternalCommits() : &own_commits_) {}

  Capabilities capabilities() const override { return engine_->capabilities(); }

  Status Apply(std::span<Write> batch) override {
    SetOutcomes(batch, Status::Ok());
    if (batch.empty()) return Status::Ok();
    std::lock_guard<std::mutex> lock(write_mu_);
    bool savepoints = engine_->traits().cheap_savepoints;
    while (true) {
      const Attempt attempt = RunBatch(batch, savepoints);
      if (attempt.failed.ok()) break;
      if (attempt.engine_refused_write && !savepoints) {
        // That refusal may have come after changes of its write: run the
        // batch again with a savepoint per write, so that it fails alone.
        savepoints = true;
        continue;
      }
      if (engine_->PrepareRetry(attempt.failed)) continue;
      SetOutcomes(batch, attempt.failed);
      return attempt.failed;
    }
    commits_->Notify();
    return Status::Ok();
  }

  Status GetHead(Head* out) override { return Read(&RecordReader::GetHead, out); }

  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    if (limit == 0 || upto <= after) return Status::Ok();
    return Read(&RecordReader::ReadEvents, after, upto, limit, out);
  }

  Status HasUsers(bool* out) override { return Read(&RecordReader::HasUsers, out); }
  Status GetUser(const std::string& id, User* out) override {
    return Read(&RecordReader::GetUser, id, out);
  }
  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return Read(&RecordReader::FindUserByCanonicalName, canonical, out);
  }
  Status FindSession(const std::string& token_hash, Session* out) override {
    return Read(&RecordReader::FindSession, token_hash, out);
  }
  Status GetInvitation(const std::string& id, Invitation* out) override {
    return Read(&RecordReader::GetInvitation, id, out);
  }
  Status GetConversation(const std::string& id, Conversation* out) override {
    return Read(&RecordReader::GetConversation, id, out);
  }
  Status GetMessage(const std::string& id, Message* out) override {
    return Read(&RecordReader::GetMessage, id, out);
  }

  std::uint64_t CommitGeneration() override { return commits_->generation(); }
  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) override {
    return commits_->Wait(seen, timeout);
  }

 private:
  // One read in a read transaction of its own.
  template <typename... Params, typename... Args>
  Status Read(Status (RecordReader::*read)(Params...), Args&&... args) {
    std::unique_ptr<RecordReader> reader;
    if (Status s = engine_->BeginRead(&reader); !s.ok()) return s;
    return (reader.get()->*read)(std::forward<Args>(args)...);
  }

  // One attempt at the whole batch in one write transaction. Without
  // savepoints, consecutive sends go together as runs.
  Attempt RunBatch(std::span<Write> batch, bool savepoints) {
    SetOutcomes(batch, Status::Ok());  // a second attempt starts afresh
    Attempt attempt;
    std::unique_ptr<WriteTxn> txn;
    try {
      Must(engine_->BeginWrite(&txn));
      Head head;
      Must(txn->records().GetHead(&head));
      BatchRules rules(*txn, head);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (!savepoints && IsSend(batch[i])) {
          std::size_t end = i;
          while (end < batch.size() && IsSend(batch[end])) ++end;
          rules.SendRun(batch.subspan(i, end - i));
          i = end - 1;
          continue;
        }
        ApplyOne(*txn, rules, batch[i], savepoints);
      }
      if (const std::optional<Head> changed = rules.NewHead()) Must(txn->SetHead(*changed));
      Must(txn->Commit());
    } catch (const EngineFailure& failure) {
      attempt.failed = failure.status;
      attempt.engine_refused_write = IsWriteLocal(failure.status);
    } catch (const std::exception& e) {
      attempt.failed = Status::IoError(std::string("storage: ") + e.what());
    }
    return attempt;
  }

  // One write in its own savepoint, or (without) relying on the rules
  // checking before they change anything.
  void ApplyOne(WriteTxn& txn, BatchRules& rules, Write& w, bool savepoints) {
    const BatchRules::Mark before = rules.mark();
    if (savepoints) Must(txn.Savepoint());
    Status s;
    try {
      if (IsSend(w)) {
        rules.SendRun(std::span<Write>(&w, 1));
        s = w.status;
      } else {
        s = rules.Apply(w.op);
      }
    } catch (const EngineFailure& failure) {
      if (!savepoints || !IsWriteLocal(failure.status)) throw;
      s = failure.status;
    }
    if (savepoints) Must(s.ok() ? txn.ReleaseSavepoint() : txn.RollbackToSavepoint());
    if (s.ok()) {
      w.last_seq = rules.seq() > before.seq ? rules.seq() : 0;
    } else {
      rules.RewindTo(before);
      w.status = std::move(s);
      w.last_seq = 0;
    }
  }

  std::unique_ptr<Engine> engine_;
  std::mutex write_mu_;  // one batch at a time
  CommitSignal own_commits_;
  CommitSignal* const commits_;  // the engine's, when it has one
};

}  // namespace

Status CheckEngineInterfaceVersion(int version) {
  if (version >= 1 && version <= kEngineInterfaceVersion) return Status::Ok();
  return Status::Invalid("the storage engine was built for engine interface version " +
                         std::to_string(version) + "; this Quire knows versions 1 to " +
                         std::to_string(kEngineInterfaceVersion));
}

Status OpenEngineStore(std::unique_ptr<Engine> engine, std::unique_ptr<Store>* out) {
  if (Status s = CheckEngineInterfaceVersion(engine->engine_interface_version()); !s.ok()) {
    return s;
  }
  *out = std::make_unique<EngineStore>(std::move(engine));
  return Status::Ok();
}

}  // namespace quire::storage
