#include "storage/lmdb/lmdb_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <lmdb++.h>

#include "storage/chat_rules.h"
#include "storage/engine.h"
#include "storage/lmdb/lmdb_check.h"
#include "storage/lmdb/lmdb_codec.h"
#include "storage/lmdb/lmdb_options.h"
#include "storage/lmdb/lmdb_tables.h"
#include "storage/local_files.h"

namespace quire::storage {
namespace {

using namespace lmdb_tables;  // NOLINT: the backend's own tables and keys
using lmdb_codec::ConversationRecord;
using StoredIdempotency = lmdb_codec::IdempotencyRecord;

// ---- Errors ----

// The Status of the exception being handled; `context` starts the message.
Status CurrentExceptionStatus(const std::string& context) {
  try {
    throw;
  } catch (const lmdb::error& e) {
    std::string msg = context + ": " + e.what();
    switch (e.code()) {
      case MDB_READERS_FULL:
      case EBUSY:
      case EAGAIN:
      case EACCES:
      case EROFS:
        return Status::Unavailable(std::move(msg));
      case MDB_CORRUPTED:
      case MDB_INVALID:
      case MDB_VERSION_MISMATCH:
      case MDB_PAGE_NOTFOUND:
      case MDB_INCOMPATIBLE:
        return Status::Corrupt(std::move(msg));
      default:
        return Status::IoError(std::move(msg));
    }
  } catch (const CorruptRecord& e) {
    return Status::Corrupt(context + ": " + e.what());
  } catch (const std::exception& e) {
    return Status::IoError(context + ": " + e.what());
  } catch (...) {
    return Status::IoError(context + ": unknown exception");
  }
}

template <typename Fn>
Status Guarded(const std::string& context, Fn&& fn) {
  try {
    return fn();
  } catch (...) {
    return CurrentExceptionStatus(context);
  }
}

// ---- Reads ----

// The record, or its member `part` (when Record is not what the caller
// gets: a ConversationRecord's conversation).
template <typename Record, typename Part>
auto Extract(Record record, Part part) {
  if constexpr (std::is_same_v<Part, std::nullptr_t>) {
    return record;
  } else {
    return std::move(record.*part);
  }
}

// The reads, in the transaction `current` gives: a read-only one of its own,
// or the batch's write transaction (its nested one while a savepoint is open).
class LmdbRecords final : public RecordReader {
 public:
  LmdbRecords(const Dbis& dbis, const std::string& context, std::function<MDB_txn*()> current)
      : dbis_(dbis), context_(context), current_(std::move(current)) {}

  Status GetHead(Head* out) override {
    return Guarded(context_, [&] {
      *out = tx().GetHead();
      return Status::Ok();
    });
  }
  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    return Guarded(context_, [&] {
      std::size_t copied = 0;
      tx().Scan(kEvents, IntKey(after + 1), [&](std::string_view key, std::string_view value) {
        const std::int64_t seq = Decoder(key).Int();
        if (seq > upto) return false;
        out->push_back(EventAt(seq, value));
        return ++copied < limit;
      });
      return Status::Ok();
    });
  }
  Status HasUsers(bool* out) override {
    return Guarded(context_, [&] {
      *out = tx().Count(kUsers) != 0;
      return Status::Ok();
    });
  }
  Status GetUser(const std::string& id, User* out) override {
    return GetOne<User>(kUsers, id, "no user " + id, out);
  }
  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return Guarded(context_, [&] {
      const std::optional<std::string> id = tx().FindName(kUsersByName, canonical);
      const auto stored = id ? tx().Get(kUsers, *id) : std::nullopt;
      if (!stored) return Status::NotFound("no user with that name");
      *out = Decode<User>(*stored);
      return Status::Ok();
    });
  }
  Status FindSession(const std::string& token_hash, Session* out) override {
    return GetOne<Session>(kSessions, token_hash, "no such session", out);
  }
  Status GetInvitation(const std::string& id, Invitation* out) override {
    return GetOne<Invitation>(kInvitations, id, "no invitation " + id, out);
  }
  Status GetConversation(const std::string& id, Conversation* out) override {
    return GetOne<ConversationRecord>(kConversations, id, "no conversation " + id, out,
                                      &ConversationRecord::conversation);
  }
  Status GetMessage(const std::string& id, Message* out) override {
    return GetOne<MessageRecord>(kMessages, id, "no message " + id, out, &MessageRecord::message);
  }

  Status ListUsers(const std::string& after, std::size_t limit, std::vector<User>* out) override {
    return ListRecords<User>(kUsers, after, limit, out);
  }
  Status ListSessions(const std::string& after, std::size_t limit,
                      std::vector<Session>* out) override {
    return ListRecords<Session>(kSessions, after, limit, out);
  }
  Status ListInvitations(const std::string& after, std::size_t limit,
                         std::vector<Invitation>* out) override {
    return ListRecords<Invitation>(kInvitations, after, limit, out);
  }
  Status ListConversations(const std::string& after, std::size_t limit,
                           std::vector<Conversation>* out) override {
    return ListRecords<ConversationRecord>(kConversations, after, limit, out,
                                           &ConversationRecord::conversation);
  }
  Status ListMessages(const std::string& after, std::size_t limit,
                      std::vector<Message>* out) override {
    return ListRecords<MessageRecord>(kMessages, after, limit, out, &MessageRecord::message);
  }
  // In the order of the keys S(sender) R(key): by the sender's length first.
  Status ListIdempotency(const IdempotencyKey& after, std::size_t limit,
                         std::vector<IdempotencyRecord>* out) override {
    return Guarded(context_, [&] {
      const std::string from = after.empty() ? "" : IdempotencyRecordKey(after.sender, after.key);
      Page(kIdempotency, from, limit, [&](std::string_view key, std::string_view value) {
        Decoder d(key);
        std::string sender = d.Str();
        const auto r = Decode<StoredIdempotency>(value);
        out->push_back(IdempotencyRecord{std::move(sender), std::string(d.Rest()), r.message_id,
                                         r.conversation, r.at, r.created_at});
      });
      return Status::Ok();
    });
  }

 private:
  Tx tx() const { return Tx(current_(), dbis_); }

  // Decodes the Record under `key` into *out, or through `part` (a member of
  // Record) when Record is not what the caller gets.
  template <typename Record, typename T, typename Part = std::nullptr_t>
  Status GetOne(Db db, const std::string& key, std::string missing, T* out, Part part = nullptr) {
    return Guarded(context_, [&] {
      const auto stored = tx().Get(db, key);
      if (!stored) return Status::NotFound(std::move(missing));
      *out = Extract(Decode<Record>(*stored), part);
      return Status::Ok();
    });
  }

  // A page of a table keyed by id: the records (or their `part`) after the
  // key `after`.
  template <typename Record, typename T, typename Part = std::nullptr_t>
  Status ListRecords(Db db, const std::string& after, std::size_t limit, std::vector<T>* out,
                     Part part = nullptr) {
    return Guarded(context_, [&] {
      Page(db, after, limit, [&](std::string_view, std::string_view value) {
        out->push_back(Extract(Decode<Record>(value), part));
      });
      return Status::Ok();
    });
  }

  // Calls fn(key, value) on at most `limit` entries of `db`, in key order,
  // from the first key after `after` ("": from the first key).
  template <typename Fn>
  void Page(Db db, const std::string& after, std::size_t limit, Fn&& fn) const {
    std::size_t listed = 0;
    tx().Scan(db, after, [&](std::string_view key, std::string_view value) {
      if (!after.empty() && key == after) return true;
      fn(key, value);
      return ++listed < limit;
    });
  }

  const Dbis& dbis_;
  const std::string& context_;
  const std::function<MDB_txn*()> current_;
};

// ---- The write transaction ----

// One batch: a write transaction, and while a savepoint is open a nested
// transaction inside it. Indexes are kept by diffing a record's before and
// after; conversations and messages carry the sequences of their events, so
// tombstoning and purging find them without an index of events by entity.
class LmdbWriteTxn final : public WriteTxn {
 public:
  LmdbWriteTxn(MDB_env* env, const Dbis& dbis, const std::string& context,
               std::atomic<bool>& map_full)
      : env_(env),
        dbis_(dbis),
        context_(context),
        map_full_(map_full),
        parent_(lmdb::txn::begin(env, nullptr, 0)),
        records_(dbis, context, [this] { return current(); }) {}

  RecordReader& records() override { return records_; }

  Status Savepoint() override {
    return Guard([&] {
      if (nested_) return Status::Invalid(context_ + ": a savepoint is already open");
      nested_.emplace(lmdb::txn::begin(env_, parent_, 0));
      return Status::Ok();
    });
  }
  Status ReleaseSavepoint() override {
    return Guard([&] {
      if (!nested_) return Status::Invalid(context_ + ": no savepoint is open");
      Txn nested = std::move(*nested_);
      nested_.reset();
      nested.Commit();
      return Status::Ok();
    });
  }
  Status RollbackToSavepoint() override {
    return Guard([&] {
      if (!nested_) return Status::Invalid(context_ + ": no savepoint is open");
      nested_->abort();
      nested_.reset();
      return Status::Ok();
    });
  }
  Status Commit() override {
    return Guard([&] {
      if (nested_) return Status::Invalid(context_ + ": a savepoint is still open");
      parent_.Commit();
      return Status::Ok();
    });
  }

  Status FindLiveConversationByName(const std::string& canonical, Conversation* out) override {
    return Guard([&] {
      const std::optional<std::string> id = tx().FindName(kConversationsLiveByName, canonical);
      std::optional<ConversationRecord> record = id ? LoadConversation(tx(), *id) : std::nullopt;
      if (!record) return Status::NotFound("no live conversation with that name");
      *out = std::move(record->conversation);
      return Status::Ok();
    });
  }

  Status GetIdempotency(const std::string& sender, const std::string& key,
                        IdempotencyRecord* out) override {
    return Guard([&] {
      const auto stored = tx().Get(kIdempotency, IdempotencyRecordKey(sender, key));
      if (!stored) return Status::NotFound("no idempotency record");
      const auto r = Decode<StoredIdempotency>(*stored);
      *out = IdempotencyRecord{sender, key, r.message_id, r.conversation, r.at, r.created_at};
      return Status::Ok();
    });
  }

  Status ListLiveMessagesOf(const std::string& conversation, std::size_t limit,
                            std::vector<std::string>* ids) override {
    return Guard([&] {
      const std::string prefix = ConversationPrefix(conversation);
      std::size_t listed = 0;
      tx().Scan(kConversationMessagesLive, prefix, [&](std::string_view key, std::string_view) {
        if (listed >= limit || !key.starts_with(prefix)) return false;
        ids->push_back(IdAfterInt(key.substr(prefix.size())));
        ++listed;
        return true;
      });
      return Status::Ok();
    });
  }
  Status ListLiveMessagesSentBefore(Micros before, std::vector<std::string>* ids) override {
    return ListByTime(kMessagesLiveByAt, before, ids);
  }
  Status ListLiveConversationsIdleBefore(Micros before, std::vector<std::string>* ids) override {
    return ListByTime(kConversationsLiveByActivity, before, ids);
  }
  Status ListMessagesDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return ListDeleted('M', before, ids);
  }
  Status ListConversationsDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return ListDeleted('C', before, ids);
  }
  Status ListMessagesOf(const std::string& conversation, std::vector<std::string>* ids) override {
    return Guard([&] {
      tx().ScanPrefix(kConversationMessages, ConversationPrefix(conversation),
                      [&](std::string_view id, std::string_view) { ids->emplace_back(id); });
      return Status::Ok();
    });
  }

  Status InsertUser(const User& user) override {
    return Guard([&] {
      if (!tx().Insert(kUsers, user.id, Encode(user))) {
        return Status::Conflict("user " + user.id + " already exists");
      }
      tx().AddName(kUsersByName, user.canonical, user.id);
      return Status::Ok();
    });
  }
  Status UpdateUser(const Change<User>& change) override {
    return Guard([&] {
      const User& u = change.after;
      if (!tx().Has(kUsers, u.id)) return Status::NotFound("no user " + u.id);
      if (change.before.canonical != u.canonical) {
        tx().RemoveName(kUsersByName, change.before.canonical, u.id);
        tx().AddName(kUsersByName, u.canonical, u.id);
      }
      tx().Put(kUsers, u.id, Encode(u));
      return Status::Ok();
    });
  }
  Status InsertSession(const Session& s) override {
    return Guard([&] {
      if (!tx().Insert(kSessions, s.token_hash, Encode(s))) {
        return Status::Conflict("the session token is already in use");
      }
      tx().Put(kSessionsByUser, SessionOfUserKey(s.user_id, s.token_hash), "");
      return Status::Ok();
    });
  }
  Status UpdateSession(const Change<Session>& change) override {
    return Guard([&] {
      const Session& s = change.after;
      if (!tx().Has(kSessions, s.token_hash)) return Status::NotFound("no such session");
      if (change.before.user_id != s.user_id) {
        tx().Del(kSessionsByUser, SessionOfUserKey(change.before.user_id, s.token_hash));
        tx().Put(kSessionsByUser, SessionOfUserKey(s.user_id, s.token_hash), "");
      }
      tx().Put(kSessions, s.token_hash, Encode(s));
      return Status::Ok();
    });
  }
  Status DeleteSession(const Session& s) override {
    return Guard([&] {
      tx().Del(kSessions, s.token_hash);
      tx().Del(kSessionsByUser, SessionOfUserKey(s.user_id, s.token_hash));
      return Status::Ok();
    });
  }
  Status DeleteSessionsOfUser(const std::string& user_id) override {
    return Guard([&] {
      std::vector<std::string> tokens;
      tx().ScanPrefix(
          kSessionsByUser, Encoder().Str(user_id).bytes(),
          [&](std::string_view token, std::string_view) { tokens.emplace_back(token); });
      for (const std::string& token : tokens) {
        tx().Del(kSessions, token);
        tx().Del(kSessionsByUser, SessionOfUserKey(user_id, token));
      }
      return Status::Ok();
    });
  }
  Status InsertInvitation(const Invitation& i) override {
    return Guard([&] {
      if (!tx().Insert(kInvitations, i.id, Encode(i))) {
        return Status::Conflict("invitation " + i.id + " already exists");
      }
      return Status::Ok();
    });
  }
  Status UpdateInvitation(const Change<Invitation>& change) override {
    return Guard([&] {
      const Invitation& i = change.after;
      if (!tx().Has(kInvitations, i.id)) return Status::NotFound("no invitation " + i.id);
      tx().Put(kInvitations, i.id, Encode(i));
      return Status::Ok();
    });
  }
  Status InsertConversation(const Conversation& c) override {
    return Guard([&] {
      if (!tx().Insert(kConversations, c.id, Encode(ConversationRecord{c, 0, 0}))) {
        return Status::Conflict("conversation " + c.id + " already exists");
      }
      IndexConversation(c, true);
      return Status::Ok();
    });
  }
  Status UpdateConversation(const Change<Conversation>& change) override {
    return Guard([&] {
      const Conversation& b = change.before;
      const Conversation& c = change.after;
      std::optional<ConversationRecord> record = LoadConversation(tx(), c.id);
      if (!record) return Status::NotFound("no conversation " + c.id);
      // Only the index entries whose keys change move: a send moves the
      // activity key alone.
      if (b.deleted_at != c.deleted_at || b.canonical != c.canonical) {
        IndexConversation(b, false);
        IndexConversation(c, true);
      } else if (!c.deleted_at && b.last_activity != c.last_activity) {
        Index(kConversationsLiveByActivity, ActivityKey(b), false);
        Index(kConversationsLiveByActivity, ActivityKey(c), true);
      }
      record->conversation = c;
      tx().Put(kConversations, c.id, Encode(*record));
      return Status::Ok();
    });
  }
  Status InsertMessage(const Message& m) override {
    return Guard([&] {
      if (!InsertMessageRecord(MessageRecord{m, 0, 0})) {
        return Status::Conflict("message " + m.id + " already exists");
      }
      return Status::Ok();
    });
  }
  Status UpdateMessage(const Change<Message>& change) override {
    return Guard([&] {
      const Message& m = change.after;
      std::optional<MessageRecord> record = LoadMessage(tx(), m.id);
      if (!record) return Status::NotFound("no message " + m.id);
      IndexMessage(change.before, false);
      IndexMessage(m, true);
      record->message = m;
      tx().Put(kMessages, m.id, Encode(*record));
      return Status::Ok();
    });
  }
  Status PutIdempotency(const IdempotencyRecord& r) override {
    return Guard([&] {
      tx().Put(kIdempotency, IdempotencyRecordKey(r.sender, r.key),
               Encode(StoredIdempotency{r.message_id, r.conversation, r.at, r.created_at}));
      return Status::Ok();
    });
  }

  Status AppendEvent(const Event& event) override {
    return Guard([&] {
      PutEvent(event);
      // The entity's record remembers the sequence of its event.
      switch (event.kind) {
        case EventKind::kUserCreated:
          break;
        case EventKind::kConversationCreated:
        case EventKind::kConversationDeleted: {
          std::optional<ConversationRecord> record = LoadConversation(tx(), event.id);
          if (!record) throw CorruptRecord("an event of a missing conversation " + event.id);
          (event.kind == EventKind::kConversationCreated ? record->created_seq
                                                         : record->deleted_seq) = event.seq;
          tx().Put(kConversations, event.id, Encode(*record));
          break;
        }
        case EventKind::kMessageSent:
        case EventKind::kMessageDeleted: {
          std::optional<MessageRecord> record = LoadMessage(tx(), event.id);
          if (!record) throw CorruptRecord("an event of a missing message " + event.id);
          (event.kind == EventKind::kMessageSent ? record->sent_seq : record->deleted_seq) =
              event.seq;
          tx().Put(kMessages, event.id, Encode(*record));
          break;
        }
      }
      return Status::Ok();
    });
  }

  Status TombstoneEvents(const std::string& entity, EventKind kind, Micros at) override {
    return Guard([&] {
      std::int64_t seq = 0;
      if (kind == EventKind::kMessageSent) {
        if (const auto record = LoadMessage(tx(), entity)) seq = record->sent_seq;
      } else if (kind == EventKind::kConversationCreated) {
        if (const auto record = LoadConversation(tx(), entity)) seq = record->created_seq;
      } else {
        return Status::Invalid(context_ + ": only created and sent events are tombstoned");
      }
      const auto stored = seq > 0 ? tx().Get(kEvents, IntKey(seq)) : std::nullopt;
      if (!stored) return Status::Ok();
      Event event = EventAt(seq, *stored);
      event.text.clear();
      event.deleted_at = at;
      tx().Put(kEvents, IntKey(seq), Encode(event));
      return Status::Ok();
    });
  }

  Status RemoveEventsOf(const std::string& entity, std::int64_t* count,
                        std::int64_t* highest) override {
    return Guard([&] {
      std::int64_t seqs[2] = {0, 0};
      if (const auto m = LoadMessage(tx(), entity)) {
        seqs[0] = m->sent_seq;
        seqs[1] = m->deleted_seq;
      } else if (const auto c = LoadConversation(tx(), entity)) {
        seqs[0] = c->created_seq;
        seqs[1] = c->deleted_seq;
      }
      for (const std::int64_t seq : seqs) {
        if (seq > 0 && tx().Del(kEvents, IntKey(seq))) {
          ++*count;
          *highest = std::max(*highest, seq);
        }
      }
      return Status::Ok();
    });
  }
  Status RemoveMessage(const std::string& id) override {
    return Guard([&] {
      if (const std::optional<MessageRecord> record = LoadMessage(tx(), id)) {
        IndexMessage(record->message, false);
        tx().Del(kConversationMessages, ConversationMessageKey(record->message));
        tx().Del(kMessages, id);
      }
      return Status::Ok();
    });
  }
  Status RemoveConversation(const std::string& id) override {
    return Guard([&] {
      if (const std::optional<ConversationRecord> record = LoadConversation(tx(), id)) {
        IndexConversation(record->conversation, false);
        tx().Del(kConversations, id);
      }
      return Status::Ok();
    });
  }
  // Full scans: these tables stay small next to the history.
  Status RemoveSessionsUsedBefore(Micros before) override {
    return Guard([&] {
      std::vector<Session> sessions;
      tx().Scan(kSessions, "", [&](std::string_view, std::string_view value) {
        Session s = Decode<Session>(value);
        if (s.last_used < before) sessions.push_back(std::move(s));
        return true;
      });
      for (const Session& s : sessions) {
        tx().Del(kSessions, s.token_hash);
        tx().Del(kSessionsByUser, SessionOfUserKey(s.user_id, s.token_hash));
      }
      return Status::Ok();
    });
  }
  Status RemoveInvitationsIssuedBefore(Micros before) override {
    return Guard([&] {
      DeleteWhere(kInvitations, [&](std::string_view value) {
        return Decode<Invitation>(value).issued_at < before;
      });
      return Status::Ok();
    });
  }
  Status RemoveIdempotencyMadeBefore(Micros before) override {
    return Guard([&] {
      DeleteWhere(kIdempotency, [&](std::string_view value) {
        return Decode<StoredIdempotency>(value).created_at < before;
      });
      return Status::Ok();
    });
  }

  Status SetHead(const Head& head) override {
    return Guard([&] {
      tx().SetHead(head);
      return Status::Ok();
    });
  }

  Status RemoveEverything() override {
    return Guard([&] {
      // Empties every table but meta, which keeps the schema version.
      for (int db = 0; db < kDbCount; ++db) {
        if (db != kMeta) lmdb::dbi_drop(current(), dbis_[db], false);
      }
      tx().SetHead(Head{});
      return Status::Ok();
    });
  }

  // Each message record is written once, with its sent event's sequence.
  Status WriteSends(std::span<const Message> messages, std::span<const Event> events,
                    std::span<const Change<Conversation>> conversations) override {
    if (messages.size() != events.size()) {
      return Status::Invalid("WriteSends: one sent event per message");
    }
    for (std::size_t i = 0; i < messages.size(); ++i) {
      Status s = Guard([&] {
        if (!InsertMessageRecord(MessageRecord{messages[i], events[i].seq, 0})) {
          return Status::Conflict("message " + messages[i].id + " already exists");
        }
        PutEvent(events[i]);
        return Status::Ok();
      });
      if (!s.ok()) return s;
    }
    for (const Change<Conversation>& change : conversations) {
      if (Status s = UpdateConversation(change); !s.ok()) return s;
    }
    return Status::Ok();
  }

 private:
  MDB_txn* current() const { return nested_ ? nested_->handle() : parent_.handle(); }
  Tx tx() const { return Tx(current(), dbis_); }

  // Runs fn, turning what LMDB throws into a Status; remembers a full map
  // for Engine::PrepareRetry.
  template <typename Fn>
  Status Guard(Fn&& fn) {
    try {
      return fn();
    } catch (const lmdb::map_full_error&) {
      map_full_ = true;
      return Status::IoError(context_ + ": the LMDB map is full");
    } catch (const lmdb::error& e) {
      if (e.code() == MDB_BAD_VALSIZE) {
        return Status::Invalid(context_ + ": a key is empty or longer than LMDB allows");
      }
      return CurrentExceptionStatus(context_);
    } catch (...) {
      return CurrentExceptionStatus(context_);
    }
  }

  void PutEvent(const Event& event) {
    // Sequences only grow, so each event is the last key: MDB_APPEND packs
    // the pages, and refuses (as KEYEXIST) a sequence that is not above all.
    if (!tx().Put(kEvents, IntKey(event.seq), Encode(event), MDB_APPEND)) {
      throw CorruptRecord("meta.last_seq is below a stored event");
    }
  }

  // False, changing nothing, when the id is stored.
  bool InsertMessageRecord(const MessageRecord& record) {
    const Message& m = record.message;
    if (!tx().Insert(kMessages, m.id, Encode(record))) return false;
    tx().Put(kConversationMessages, ConversationMessageKey(m), "");
    IndexMessage(m, true);
    return true;
  }

  // Adds (or removes) the index entries of a conversation in this state.
  void IndexConversation(const Conversation& c, bool add) {
    if (c.deleted_at) {
      Index(kDeletedByTime, DeletedKey(*c.deleted_at, 'C', c.id), add);
      return;
    }
    if (add) {
      tx().AddName(kConversationsLiveByName, c.canonical, c.id);
    } else {
      tx().RemoveName(kConversationsLiveByName, c.canonical, c.id);
    }
    Index(kConversationsLiveByActivity, ActivityKey(c), add);
  }

  // The same for a message (kConversationMessages holds every message and
  // goes with the record).
  void IndexMessage(const Message& m, bool add) {
    if (m.deleted_at) {
      Index(kDeletedByTime, DeletedKey(*m.deleted_at, 'M', m.id), add);
      return;
    }
    Index(kMessagesLiveByAt, LiveByAtKey(m), add);
    Index(kConversationMessagesLive, ConversationLiveKey(m), add);
  }

  void Index(Db db, const std::string& key, bool add) {
    if (add) {
      tx().Put(db, key, "");
    } else {
      tx().Del(db, key);
    }
  }

  // Ids from an index keyed I(time) R(id), with time < before.
  Status ListByTime(Db db, Micros before, std::vector<std::string>* ids) {
    return Guard([&] {
      tx().Scan(db, "", [&](std::string_view key, std::string_view) {
        if (Decoder(key).Int() >= before) return false;
        ids->push_back(IdAfterInt(key));
        return true;
      });
      return Status::Ok();
    });
  }

  Status ListDeleted(char kind, Micros before, std::vector<std::string>* ids) {
    return Guard([&] {
      tx().Scan(kDeletedByTime, "", [&](std::string_view key, std::string_view) {
        if (Decoder(key).Int() >= before) return false;
        const std::string kind_and_id = IdAfterInt(key);
        if (kind_and_id.starts_with(kind)) ids->push_back(kind_and_id.substr(1));
        return true;
      });
      return Status::Ok();
    });
  }

  // Deletes every entry of `db` whose value satisfies `doomed`.
  template <typename Pred>
  void DeleteWhere(Db db, Pred doomed) {
    std::vector<std::string> keys;
    tx().Scan(db, "", [&](std::string_view key, std::string_view value) {
      if (doomed(value)) keys.emplace_back(key);
      return true;
    });
    for (const std::string& key : keys) tx().Del(db, key);
  }

  MDB_env* const env_;
  const Dbis& dbis_;
  const std::string& context_;
  std::atomic<bool>& map_full_;
  Txn parent_;
  std::optional<Txn> nested_;
  LmdbRecords records_;
};

// ---- Opening ----

// An open file descriptor, closed with the object.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Locks DIR/quire.lock exclusively for this process (released when the fd
// closes, also when the process dies).
Status LockDirectory(const std::string& dir, Fd* out) {
  const std::string path = dir + "/quire.lock";
  Fd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    return Status::Unavailable("cannot open " + path + ": " + std::strerror(errno));
  }
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::Unavailable("LMDB directory " + dir + " is in use by another process (" +
                                 path + " is locked)");
    }
    return Status::Unavailable("cannot lock " + path + ": " + std::strerror(errno));
  }
  *out = std::move(fd);
  return Status::Ok();
}

// Opens every database, creating them and meta in a new environment; refuses
// an environment that is not Quire's or of a newer schema.
Status OpenDatabases(MDB_env* env, const std::string& dir, Dbis* dbis) {
  Txn txn(lmdb::txn::begin(env, nullptr, 0));
  std::vector<std::string> foreign;
  bool empty = true;
  {
    const lmdb::dbi main = lmdb::dbi::open(txn, nullptr, 0);
    lmdb::cursor cursor = lmdb::cursor::open(txn, main);
    lmdb::val k, v;
    for (bool found = cursor.get(k, v, MDB_FIRST); found; found = cursor.get(k, v, MDB_NEXT)) {
      empty = false;
      const std::string name(k.data(), k.size());
      if (std::find(kDbNames.begin(), kDbNames.end(), name) == kDbNames.end()) {
        foreign.push_back(name);
      }
    }
  }
  if (!foreign.empty()) {
    return Status::Corrupt("LMDB directory " + dir +
                           " holds a database that is not Quire's (it has '" + foreign.front() +
                           "')");
  }
  for (int db = 0; db < kDbCount; ++db) {
    (*dbis)[db] = lmdb::dbi::open(txn, kDbNames[db], MDB_CREATE).handle();
  }
  Tx tx(txn, *dbis);
  if (empty) {
    tx.SetMeta(kSchemaVersionKey, kSchemaVersion);
    tx.SetHead(Head{});
  } else {
    if (!tx.Has(kMeta, kSchemaVersionKey)) {
      return Status::Corrupt("LMDB directory " + dir + " is not a Quire store (no schema version)");
    }
    const std::int64_t version = tx.Meta(kSchemaVersionKey);
    if (version != kSchemaVersion) {  // no older version has shipped: there is nothing to migrate
      return Status::Corrupt("LMDB directory " + dir + " has schema version " +
                             std::to_string(version) +
                             (version > kSchemaVersion ? ", newer than this Quire knows ("
                                                       : ", which Quire never wrote (it knows ") +
                             std::to_string(kSchemaVersion) + ")");
    }
    tx.Meta(kLastSeq);  // present, or Corrupt
    tx.Meta(kPurgedThrough);
  }
  txn.Commit();
  return Status::Ok();
}

// ---- The engine ----

// Thread-safety: write transactions run one at a time (the chat rules
// serialize batches; LMDB has one writer anyway); reads run concurrently with
// each other and with a write, each in its own read-only transaction,
// excluded only while GrowMap remaps.
class LmdbEngine final : public Engine {
 public:
  explicit LmdbEngine(const LmdbOptions& options)
      : dir_(options.dir),
        context_("LMDB store " + options.dir),
        sync_(options.sync),
        max_map_bytes_(options.max_map_bytes),
        env_(lmdb::env::create()) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    map_bytes_ = std::max<std::size_t>(1, (options.initial_map_bytes + page - 1) / page) * page;
  }

  // Takes quire.lock and opens the environment; the constructor only
  // creates it. A backup only reads, beside the server that holds
  // quire.lock: LMDB lets other processes read, and the directory's shared
  // flock (Hold) keeps maintenance commands out meanwhile.
  Status Open(EngineUse use) {
    if (use != EngineUse::kBackup) {
      if (Status s = LockDirectory(dir_, &lock_); !s.ok()) return s;
    }
    return Guarded(context_, [&] {
      env_.set_max_dbs(kDbCount);
      env_.set_max_readers(kMaxReaders);
      env_.set_mapsize(map_bytes_);
      // MDB_NOTLS: reader slots belong to transactions, not threads.
      env_.open(dir_.c_str(), MDB_NOTLS | (sync_ ? 0 : MDB_NOSYNC), 0644);
      int dead = 0;
      mdb_reader_check(env_, &dead);  // slots of a killed process
      MDB_envinfo info;
      lmdb::env_info(env_, &info);
      map_bytes_ = info.me_mapsize;  // an existing file may have a larger map
      return OpenDatabases(env_, dir_, &dbis_);
    });
  }

  Capabilities capabilities() const override {
    Capabilities caps;
    caps.multi_process_writers = false;  // quire.lock admits one process
    caps.survives_process_kill = true;
    caps.survives_power_loss = sync_;  // MDB_NOSYNC leaves commits in the page cache
    return caps;
  }

  // A savepoint is a nested transaction, which copies every page it touches:
  // runs of sends took 52% more sends a second (docs/benchmarks.md, 14).
  EngineTraits traits() const override { return EngineTraits{.cheap_savepoints = false}; }

  Status BeginWrite(std::unique_ptr<WriteTxn>* out) override {
    return Guarded(context_, [&] {
      *out = std::make_unique<LmdbWriteTxn>(env_, dbis_, context_, map_full_);
      return Status::Ok();
    });
  }

  // A batch that filled the map ran again after the map doubled.
  bool PrepareRetry(const Status&) override {
    if (!map_full_.exchange(false)) return false;
    return GrowMap().ok();
  }

  // A read-only transaction, excluded only while GrowMap remaps.
  Status BeginRead(std::unique_ptr<RecordReader>* out) override {
    return Guarded(context_, [&] {
      struct ReadTxn {
        std::shared_lock<std::shared_mutex> map;  // released after the transaction ends
        Txn txn;
      };
      std::shared_lock<std::shared_mutex> map = LockMap();
      auto read = std::make_shared<ReadTxn>(
          ReadTxn{std::move(map), Txn(lmdb::txn::begin(env_, nullptr, MDB_RDONLY))});
      *out = std::make_unique<LmdbRecords>(dbis_, context_, [read] { return read->txn.handle(); });
      return Status::Ok();
    });
  }

  // flock on the directory itself: quire.lock is taken after this, and
  // LMDB's own locks are in lock.mdb.
  Status Hold(EngineUse use) override {
    return hold_.Take(dir_, O_RDONLY | O_DIRECTORY, 0, use, context_);
  }

  // mdb_env_copy2 with compaction: one read transaction, so a consistent
  // copy that writers do not wait for.
  Status Backup(const std::string& path) override {
    if (path.empty()) return Status::Invalid("the backup path is empty");
    std::error_code error;
    const bool created = std::filesystem::create_directory(path, error);
    if (error) {
      return Status::Unavailable(context_ + ": cannot create the backup directory " + path + ": " +
                                 error.message());
    }
    if (!created && !std::filesystem::is_empty(path, error)) {
      return Status::Invalid(context_ + ": the backup directory " + path + " is not empty");
    }
    const std::string data = path + "/data.mdb";
    Status s = Guarded(context_, [&] {
      std::shared_lock<std::shared_mutex> map = LockMap();  // GrowMap waits for the copy
      lmdb::env_copy(env_, path.c_str(), MDB_CP_COMPACT);
      return Status::Ok();
    });
    // LMDB writes the copy without syncing it.
    if (s.ok()) s = SyncPath(data);
    if (s.ok()) s = SyncPath(path);
    if (!s.ok()) {
      std::filesystem::remove(data, error);
      if (created) std::filesystem::remove(path, error);
    }
    return s;
  }

  Status CheckIntegrity(std::vector<std::string>* problems) override {
    return Guarded(context_, [&] {
      std::shared_lock<std::shared_mutex> map = LockMap();
      Txn txn(lmdb::txn::begin(env_, nullptr, MDB_RDONLY));
      CheckIndexes(Tx(txn, dbis_), problems);
      return Status::Ok();
    });
  }

 private:
  // The map lock of a read transaction. Through the turnstile: a waiting
  // GrowMap is not starved by new readers.
  std::shared_lock<std::shared_mutex> LockMap() {
    { std::lock_guard<std::mutex> turn(turnstile_mu_); }
    return std::shared_lock<std::shared_mutex>(map_mu_);
  }

  // Doubles the map. Runs with no write transaction open (the chat rules
  // call PrepareRetry after the batch's transaction ended); waits for
  // readers, because mdb_env_set_mapsize remaps the file under them.
  Status GrowMap() {
    if (map_bytes_ >= max_map_bytes_) {
      return Status::IoError(context_ + ": the LMDB map is full at " +
                             std::to_string(map_bytes_ >> 20) + " MiB, the most it may grow to");
    }
    const std::size_t bigger = std::min(map_bytes_ * 2, max_map_bytes_);
    return Guarded(context_, [&] {
      std::lock_guard<std::mutex> turn(turnstile_mu_);
      std::unique_lock<std::shared_mutex> map(map_mu_);
      env_.set_mapsize(bigger);
      map_bytes_ = bigger;
      return Status::Ok();
    });
  }

  const std::string dir_;
  const std::string context_;  // starts error messages
  const bool sync_;
  const std::size_t max_map_bytes_;
  // Declared before env_, so that they are released after it closes.
  ServingLock hold_;  // the directory, for Hold
  Fd lock_;           // quire.lock, from Open
  lmdb::env env_;
  Dbis dbis_{};

  std::size_t map_bytes_ = 0;  // changed only by GrowMap, between batches
  std::atomic<bool> map_full_{false};

  // Read transactions hold map_mu_ shared; GrowMap holds it exclusively.
  std::mutex turnstile_mu_;
  std::shared_mutex map_mu_;
};

}  // namespace

Status ParseLmdbUrl(const std::string& url_or_dir_spec, LmdbOptions* out) {
  constexpr std::string_view kPrefix = "lmdb:";
  constexpr const char* kForm = " (lmdb:DIR or lmdb:DIR?sync=full|off)";
  std::string_view spec = url_or_dir_spec;
  if (spec.starts_with(kPrefix)) spec.remove_prefix(kPrefix.size());
  const std::size_t query = spec.find('?');
  const std::string_view dir = spec.substr(0, query);
  if (dir.empty()) {
    return Status::Invalid("database URL '" + url_or_dir_spec + "' has no directory" + kForm);
  }
  if (dir.starts_with("//")) {
    return Status::Invalid("database URL '" + url_or_dir_spec +
                           "': lmdb: takes a directory path, not //host/…" + kForm);
  }
  bool sync = true;
  if (query != std::string_view::npos) {
    std::string_view params = spec.substr(query + 1);
    while (true) {
      const std::size_t amp = params.find('&');
      const std::string_view param = params.substr(0, amp);
      if (param == "sync=full") {
        sync = true;
      } else if (param == "sync=off") {
        sync = false;
      } else {
        return Status::Invalid("database URL '" + url_or_dir_spec + "': unknown parameter '" +
                               std::string(param) + "'" + kForm);
      }
      if (amp == std::string_view::npos) break;
      params.remove_prefix(amp + 1);
    }
  }
  out->dir = std::string(dir);
  out->sync = sync;
  return Status::Ok();
}

Status OpenLmdbEngineWithOptions(const LmdbOptions& options, EngineUse use,
                                 std::unique_ptr<Engine>* out) {
  if (options.dir.empty()) return Status::Invalid("LMDB directory is empty");
  std::error_code error;
  std::filesystem::create_directories(options.dir, error);
  if (error) {
    return Status::Unavailable("cannot create LMDB directory " + options.dir + ": " +
                               error.message());
  }
  std::unique_ptr<LmdbEngine> engine;
  Status s = Guarded("LMDB store " + options.dir, [&] {
    engine = std::make_unique<LmdbEngine>(options);
    return Status::Ok();
  });
  // Held before Open takes quire.lock, which admits one process whatever it
  // does: a refusal then says whether a server or a command has the store.
  if (s.ok()) s = engine->Hold(use);
  if (s.ok()) s = engine->Open(use);
  if (!s.ok()) return s;
  *out = std::move(engine);
  return Status::Ok();
}

Status OpenLmdbStoreWithOptions(const LmdbOptions& options, std::unique_ptr<Store>* out) {
  std::unique_ptr<Engine> engine;
  if (Status s = OpenLmdbEngineWithOptions(options, EngineUse::kServe, &engine); !s.ok()) {
    return s;
  }
  return OpenEngineStore(std::move(engine), out);
}

Status OpenLmdbEngine(const std::string& url_or_dir_spec, EngineUse use,
                      std::unique_ptr<Engine>* out) {
  LmdbOptions options;
  if (Status s = ParseLmdbUrl(url_or_dir_spec, &options); !s.ok()) return s;
  return OpenLmdbEngineWithOptions(options, use, out);
}

Status OpenLmdbStore(const std::string& url_or_dir_spec, std::unique_ptr<Store>* out) {
  LmdbOptions options;
  if (Status s = ParseLmdbUrl(url_or_dir_spec, &options); !s.ok()) return s;
  return OpenLmdbStoreWithOptions(options, out);
}

void RegisterLmdbBackend(Registry& registry) {
  registry.RegisterEngine("lmdb",
                          [](const std::string& url, EngineUse use, std::unique_ptr<Engine>* out) {
                            if (!url.starts_with("lmdb:")) {
                              return Status::Invalid("not an LMDB database URL: '" + url + "'");
                            }
                            return OpenLmdbEngine(url, use, out);
                          });
}

}  // namespace quire::storage
