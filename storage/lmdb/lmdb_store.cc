#include "storage/lmdb/lmdb_store.h"
#include "storage/commit_signal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <lmdb++.h>

#include "storage/lmdb/lmdb_codec.h"
#include "storage/lmdb/lmdb_options.h"

namespace quire::storage {
namespace {

using lmdb_codec::ConversationRecord;
using lmdb_codec::CorruptRecord;
using lmdb_codec::Decode;
using lmdb_codec::Decoder;
using lmdb_codec::Encode;
using lmdb_codec::Encoder;
using lmdb_codec::IdempotencyRecord;
using lmdb_codec::MessageRecord;

constexpr std::int64_t kSchemaVersion = 1;
constexpr unsigned kMaxReaders = 1024;  // concurrent read transactions
// LMDB keys are at most 511 bytes (MDB_MAXKEYSIZE); canonical names may be
// longer (see Tx::FindName).
constexpr std::size_t kNameKeyBytes = 400;

// The named databases. Keys: I = Encoder::Int, S = Str, R = Raw (last).
enum Db : int {
  kMeta,                         // name → I
  kEvents,                       // I(seq) → Event
  kUsers,                        // R(id) → User
  kUsersByName,                  // name bucket (FindName) → (canonical, id)…
  kSessions,                     // R(token_hash) → Session
  kSessionsByUser,               // S(user_id) R(token_hash) → ""
  kInvitations,                  // R(id) → Invitation
  kConversations,                // R(id) → ConversationRecord
  kConversationsLiveByName,      // name bucket → (canonical, id)…
  kConversationsLiveByActivity,  // I(last_activity) R(id) → ""
  kMessages,                     // R(id) → MessageRecord
  kMessagesLiveByAt,             // I(at) R(id) → ""
  kConversationMessagesLive,     // S(conversation) I(at) R(id) → ""
  kConversationMessages,         // S(conversation) R(id) → "", live or deleted
  kDeletedByTime,                // I(deleted_at) R(kind id) → "", kind 'C' or 'M'
  kIdempotency,                  // S(sender) R(key) → IdempotencyRecord
  kDbCount,
};

constexpr std::array<const char*, kDbCount> kDbNames = {"meta",
                                                        "events",
                                                        "users",
                                                        "users_by_name",
                                                        "sessions",
                                                        "sessions_by_user",
                                                        "invitations",
                                                        "conversations",
                                                        "conversations_live_by_name",
                                                        "conversations_live_by_activity",
                                                        "messages",
                                                        "messages_live_by_at",
                                                        "conversation_messages_live",
                                                        "conversation_messages",
                                                        "deleted_by_time",
                                                        "idempotency"};

using Dbis = std::array<MDB_dbi, kDbCount>;

constexpr const char* kLastSeq = "last_seq";
constexpr const char* kPurgedThrough = "purged_through";
constexpr const char* kSchemaVersionKey = "schema_version";

std::string IntKey(std::int64_t n) {
  return Encoder().Int(n).bytes();
}

// lmdb::txn, with a commit that never leaves a dangling handle: mdb_txn_commit
// frees the transaction even when it fails, and lmdb::txn::commit would then
// abort it a second time in its destructor.
class Txn : public lmdb::txn {
 public:
  explicit Txn(lmdb::txn&& txn) : lmdb::txn(std::move(txn)) {}
  void Commit() { lmdb::txn_commit(std::exchange(_handle, nullptr)); }
};

// The store's databases in one transaction, with byte-string keys and values.
// A view returned by Get stays valid until the transaction writes or ends.
// Cursors live only inside Scan, so none outlives its transaction.
class Tx {
 public:
  Tx(MDB_txn* txn, const Dbis& dbis) : txn_(txn), dbis_(dbis) {}

  std::optional<std::string_view> Get(Db db, std::string_view key) const {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v;
    const int rc = mdb_get(txn_, dbis_[db], &k, &v);
    // A key LMDB cannot store (empty, too long) is not stored.
    if (rc == MDB_NOTFOUND || rc == MDB_BAD_VALSIZE) return std::nullopt;
    if (rc != MDB_SUCCESS) lmdb::error::raise("mdb_get", rc);
    return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
  }
  bool Has(Db db, std::string_view key) const { return Get(db, key).has_value(); }
  std::size_t Count(Db db) const {
    MDB_stat stat;
    lmdb::dbi_stat(txn_, dbis_[db], &stat);
    return stat.ms_entries;
  }

  // False when a flag (MDB_NOOVERWRITE, MDB_APPEND) refused the key.
  bool Put(Db db, std::string_view key, std::string_view value, unsigned flags = 0) {
    const lmdb::val k{key.data(), key.size()};
    lmdb::val v{value.data(), value.size()};
    return lmdb::dbi_put(txn_, dbis_[db], k, v, flags);
  }
  // False, changing nothing, when `key` is already stored.
  bool Insert(Db db, std::string_view key, std::string_view value) {
    return Put(db, key, value, MDB_NOOVERWRITE);
  }
  bool Del(Db db, std::string_view key) {
    const lmdb::val k{key.data(), key.size()};
    return lmdb::dbi_del(txn_, dbis_[db], k, nullptr);
  }

  // Calls fn(key, value) on the entries from the first key >= `from` on, in
  // key order, while fn returns true. fn must not write.
  template <typename Fn>
  void Scan(Db db, std::string_view from, Fn&& fn) const {
    lmdb::cursor cursor = lmdb::cursor::open(txn_, dbis_[db]);
    lmdb::val k{from.data(), from.size()};
    lmdb::val v;
    bool found = cursor.get(k, v, from.empty() ? MDB_FIRST : MDB_SET_RANGE);
    while (found &&
           fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) {
      found = cursor.get(k, v, MDB_NEXT);
    }
  }
  // Calls fn(rest of key, value) on each entry whose key starts with `prefix`.
  template <typename Fn>
  void ScanPrefix(Db db, std::string_view prefix, Fn&& fn) const {
    Scan(db, prefix, [&](std::string_view key, std::string_view value) {
      if (!key.starts_with(prefix)) return false;
      fn(key.substr(prefix.size()), value);
      return true;
    });
  }

  std::int64_t Meta(const char* name) const {
    const auto value = Get(kMeta, name);
    if (!value) throw CorruptRecord(std::string("meta.") + name + " is missing");
    Decoder d(*value);
    const std::int64_t n = d.Int();
    d.ExpectEnd();
    return n;
  }
  void SetMeta(const char* name, std::int64_t value) { Put(kMeta, name, IntKey(value)); }

  // Canonical names are unique keys, but may be longer than an LMDB key: a
  // name's bucket key is its first kNameKeyBytes bytes, and the bucket lists
  // every (canonical, id) whose name starts so. Nearly always one entry.
  std::optional<std::string> FindName(Db db, std::string_view canonical) const {
    const auto bucket = Get(db, NameKey(canonical));
    if (!bucket) return std::nullopt;
    for (Decoder d(*bucket); !d.AtEnd();) {
      const std::string name = d.Str();
      std::string id = d.Str();
      if (name == canonical) return id;
    }
    return std::nullopt;
  }
  void AddName(Db db, std::string_view canonical, std::string_view id) {
    const std::string key = NameKey(canonical);
    std::string bucket(Get(db, key).value_or(""));
    bucket += Encoder().Str(canonical).Str(id).bytes();
    Put(db, key, bucket);
  }
  void RemoveName(Db db, std::string_view canonical, std::string_view id) {
    const std::string key = NameKey(canonical);
    const auto bucket = Get(db, key);
    if (!bucket) return;
    Encoder kept;
    for (Decoder d(*bucket); !d.AtEnd();) {
      const std::string name = d.Str(), owner = d.Str();
      if (name != canonical || owner != id) kept.Str(name).Str(owner);
    }
    if (kept.bytes().empty()) {
      Del(db, key);
    } else {
      Put(db, key, kept.bytes());
    }
  }

 private:
  static std::string NameKey(std::string_view canonical) {
    // A prefix byte, so that an empty name is a key too.
    return "n" + std::string(canonical.substr(0, kNameKeyBytes));
  }

  MDB_txn* txn_;
  const Dbis& dbis_;
};

// ---- Keys ----

std::string SessionOfUserKey(std::string_view user_id, std::string_view token_hash) {
  return Encoder().Str(user_id).Raw(token_hash).bytes();
}
std::string ActivityKey(const Conversation& c) {
  return Encoder().Int(c.last_activity).Raw(c.id).bytes();
}
std::string LiveByAtKey(const Message& m) {
  return Encoder().Int(m.at).Raw(m.id).bytes();
}
std::string ConversationPrefix(std::string_view conversation) {
  return Encoder().Str(conversation).bytes();
}
std::string ConversationLiveKey(const Message& m) {
  return Encoder().Str(m.conversation).Int(m.at).Raw(m.id).bytes();
}
std::string ConversationMessageKey(const Message& m) {
  return Encoder().Str(m.conversation).Raw(m.id).bytes();
}
std::string DeletedKey(Micros deleted_at, char kind, std::string_view id) {
  return Encoder().Int(deleted_at).Raw(std::string(1, kind)).Raw(id).bytes();
}
std::string IdempotencyKey(std::string_view sender, std::string_view key) {
  return Encoder().Str(sender).Raw(key).bytes();
}

Event EventAt(std::int64_t seq, std::string_view bytes) {
  Event event = Decode<Event>(bytes);
  event.seq = seq;
  return event;
}

// The id at the end of a key that starts with one Int.
std::string IdAfterInt(std::string_view key) {
  Decoder d(key);
  d.Int();
  return std::string(d.Rest());
}

// ---- Writes ----

// Applies operations inside one write transaction (in Apply: the nested one
// of one write), allocating sequences after `last_seq`. Every Do() checks the
// stored state it depends on and returns NotFound or Conflict; Apply then
// aborts the nested transaction, so nothing of the write stays. Each Do()
// only overwrites its outputs, so it may run again when Apply retries a batch
// after growing the map.
class Writer {
 public:
  Writer(Tx& tx, std::int64_t last_seq) : tx_(tx), seq_(last_seq) {}

  std::int64_t last_seq() const { return seq_; }

  Status Do(op::Setup& o) {
    if (tx_.Count(kUsers) != 0) return Status::Conflict("setup has already been done");
    if (Status s = InsertUser(o.user); !s.ok()) return s;
    return InsertSession(o.session);
  }

  Status Do(op::AcceptInvitation& o) {
    const auto stored = tx_.Get(kInvitations, o.invitation_id);
    Invitation invitation;
    if (stored) invitation = Decode<Invitation>(*stored);
    if (!stored || invitation.used || invitation.issued_at < o.issued_after) {
      return Status::NotFound("no usable invitation " + o.invitation_id);
    }
    if (Status s = InsertUser(o.user); !s.ok()) return s;
    invitation.used = true;
    tx_.Put(kInvitations, o.invitation_id, Encode(invitation));
    return InsertSession(o.session);
  }

  Status Do(op::CreateSession& o) { return InsertSession(o.session); }

  Status Do(op::DeleteSession& o) {
    const auto stored = tx_.Get(kSessions, o.token_hash);
    if (!stored) return Status::NotFound("no such session");
    const Session session = Decode<Session>(*stored);
    tx_.Del(kSessions, o.token_hash);
    tx_.Del(kSessionsByUser, SessionOfUserKey(session.user_id, session.token_hash));
    return Status::Ok();
  }

  Status Do(op::ChangePassword& o) {
    const auto stored = tx_.Get(kUsers, o.user_id);
    if (!stored) return Status::NotFound("no user " + o.user_id);
    User user = Decode<User>(*stored);
    user.password_hash = o.password_hash;
    tx_.Put(kUsers, user.id, Encode(user));
    std::vector<std::string> tokens;
    tx_.ScanPrefix(kSessionsByUser, Encoder().Str(user.id).bytes(),
                   [&](std::string_view token, std::string_view) { tokens.emplace_back(token); });
    for (const std::string& token : tokens) {
      tx_.Del(kSessions, token);
      tx_.Del(kSessionsByUser, SessionOfUserKey(user.id, token));
    }
    return InsertSession(o.session);
  }

  Status Do(op::TouchSession& o) {
    const auto stored = tx_.Get(kSessions, o.token_hash);
    if (!stored) return Status::NotFound("no such session");
    Session session = Decode<Session>(*stored);
    session.last_used = std::max(session.last_used, o.at);
    tx_.Put(kSessions, o.token_hash, Encode(session));
    return Status::Ok();
  }

  Status Do(op::CreateInvitation& o) {
    if (!tx_.Insert(kInvitations, o.invitation.id, Encode(o.invitation))) {
      return Status::Conflict("invitation " + o.invitation.id + " already exists");
    }
    return Status::Ok();
  }

  Status Do(op::CreateConversation& o) {
    ConversationRecord record{o.conversation, 0, 0};
    Conversation& c = record.conversation;
    c.deleted_at = std::nullopt;
    if (tx_.FindName(kConversationsLiveByName, c.canonical)) {
      return Status::Conflict("a live conversation has that name");
    }
    record.created_seq = Emit(EventKind::kConversationCreated, c.created_at, c.id, "", "", c.name);
    if (!tx_.Insert(kConversations, c.id, Encode(record))) {
      return Status::Conflict("conversation " + c.id + " already exists");
    }
    tx_.AddName(kConversationsLiveByName, c.canonical, c.id);
    tx_.Put(kConversationsLiveByActivity, ActivityKey(c), "");
    return Status::Ok();
  }

  Status Do(op::SendMessage& o) {
    Message& m = o.message;
    o.replayed = false;
    const std::string key = IdempotencyKey(m.sender, o.idempotency_key);
    if (!o.idempotency_key.empty()) {
      if (const auto stored = tx_.Get(kIdempotency, key)) {
        const IdempotencyRecord first = Decode<IdempotencyRecord>(*stored);
        if (first.created_at >= o.key_after) {
          // A purged message is answered from the idempotency record.
          const std::optional<MessageRecord> kept = LoadMessage(first.message_id);
          m = kept ? kept->message : Message{first.message_id, first.conversation, m.sender, "",
                                             first.at,         std::nullopt};
          o.replayed = true;
          return Status::Ok();
        }
      }
    }
    std::optional<ConversationRecord> conversation = LoadConversation(m.conversation);
    if (!conversation || conversation->conversation.deleted_at) {
      return Status::NotFound("no live conversation " + m.conversation);
    }
    m.deleted_at = std::nullopt;
    const MessageRecord record{
        m, Emit(EventKind::kMessageSent, m.at, m.id, m.conversation, m.sender, m.body), 0};
    if (!tx_.Insert(kMessages, m.id, Encode(record))) {
      return Status::Conflict("message " + m.id + " already exists");
    }
    tx_.Put(kMessagesLiveByAt, LiveByAtKey(m), "");
    tx_.Put(kConversationMessagesLive, ConversationLiveKey(m), "");
    tx_.Put(kConversationMessages, ConversationMessageKey(m), "");
    Conversation& c = conversation->conversation;
    tx_.Del(kConversationsLiveByActivity, ActivityKey(c));
    c.last_activity = m.at;
    tx_.Put(kConversationsLiveByActivity, ActivityKey(c), "");
    tx_.Put(kConversations, c.id, Encode(*conversation));
    if (!o.idempotency_key.empty()) {
      // Replaces an expired record of the same key.
      tx_.Put(kIdempotency, key, Encode(IdempotencyRecord{m.id, m.conversation, m.at, m.at}));
    }
    return Status::Ok();
  }

  Status Do(op::DeleteConversation& o) {
    std::optional<ConversationRecord> record = LoadConversation(o.id);
    if (!record || record->conversation.deleted_at) {
      return Status::NotFound("no live conversation " + o.id);
    }
    if (!LiveMessagesOf(o.id, /*at_most=*/1).empty()) {
      return Status::Conflict("the conversation still has live messages");
    }
    DeleteConversationRecord(*record, o.at);
    return Status::Ok();
  }

  Status Do(op::DeleteMessage& o) {
    std::optional<MessageRecord> record = LoadMessage(o.id);
    if (!record || record->message.deleted_at) return Status::NotFound("no live message " + o.id);
    DeleteMessageRecord(*record, o.at);
    return Status::Ok();
  }

  Status Do(op::Expire& o) {
    o.deleted_messages = 0;
    o.deleted_conversations = 0;
    // Due messages first, oldest first by (at, id).
    std::vector<std::string> due;
    tx_.Scan(kMessagesLiveByAt, "", [&](std::string_view key, std::string_view) {
      if (Decoder(key).Int() >= o.messages_sent_before) return false;
      due.push_back(IdAfterInt(key));
      return true;
    });
    for (const std::string& id : due) DeleteLiveMessage(id, o.at, &o.deleted_messages);
    // Then idle conversations by (last_activity, id), each after its live messages.
    std::vector<std::string> idle;
    tx_.Scan(kConversationsLiveByActivity, "", [&](std::string_view key, std::string_view) {
      if (Decoder(key).Int() >= o.conversations_idle_before) return false;
      idle.push_back(IdAfterInt(key));
      return true;
    });
    for (const std::string& id : idle) {
      for (const std::string& message : LiveMessagesOf(id)) {
        DeleteLiveMessage(message, o.at, &o.deleted_messages);
      }
      std::optional<ConversationRecord> record = LoadConversation(id);
      if (!record) throw CorruptRecord("conversation " + id + " is indexed but missing");
      DeleteConversationRecord(*record, o.at);
      ++o.deleted_conversations;
    }
    return Status::Ok();
  }

  Status Do(op::Purge& o) {
    // Entities deleted before the cutoff, with all their events. A
    // conversation takes all of its messages along, even those deleted later.
    std::vector<std::string> deleted;  // keys of kDeletedByTime
    tx_.Scan(kDeletedByTime, "", [&](std::string_view key, std::string_view) {
      if (Decoder(key).Int() >= o.deleted_before) return false;
      deleted.emplace_back(key);
      return true;
    });
    PurgeTally tally;
    for (const std::string& key : deleted) {
      const std::string kind_and_id = IdAfterInt(key);
      const std::string id = kind_and_id.substr(1);
      if (kind_and_id.starts_with('M')) {
        PurgeMessage(id, &tally);
      } else {
        PurgeConversation(id, &tally);
      }
    }
    o.purged_events = tally.events;
    if (tally.highest > tx_.Meta(kPurgedThrough)) tx_.SetMeta(kPurgedThrough, tally.highest);

    // Full scans: these tables stay small next to the history.
    std::vector<Session> sessions;
    tx_.Scan(kSessions, "", [&](std::string_view, std::string_view value) {
      Session s = Decode<Session>(value);
      if (s.last_used < o.sessions_used_before) sessions.push_back(std::move(s));
      return true;
    });
    for (const Session& s : sessions) {
      tx_.Del(kSessions, s.token_hash);
      tx_.Del(kSessionsByUser, SessionOfUserKey(s.user_id, s.token_hash));
    }
    DeleteWhere(kInvitations, [&](std::string_view value) {
      return Decode<Invitation>(value).issued_at < o.invitations_issued_before;
    });
    DeleteWhere(kIdempotency, [&](std::string_view value) {
      return Decode<IdempotencyRecord>(value).created_at < o.idempotency_before;
    });
    return Status::Ok();
  }

 private:
  // Appends an event with the next sequence; returns that sequence.
  std::int64_t Emit(EventKind kind, Micros at, const std::string& id,
                    const std::string& conversation, const std::string& sender,
                    const std::string& text) {
    ++seq_;
    // Sequences only grow, so each event is the last key: MDB_APPEND packs
    // the pages, and refuses (as KEYEXIST) a sequence that is not above all.
    const Event event{seq_, kind, at, id, conversation, sender, text, std::nullopt};
    if (!tx_.Put(kEvents, IntKey(seq_), Encode(event), MDB_APPEND)) {
      throw CorruptRecord("meta.last_seq is below a stored event");
    }
    return seq_;
  }

  // Blanks the text of an entity's created/sent event and marks it deleted.
  void Tombstone(std::int64_t seq, Micros at) {
    const auto stored = tx_.Get(kEvents, IntKey(seq));
    if (!stored) return;
    Event event = EventAt(seq, *stored);
    event.text.clear();
    event.deleted_at = at;
    tx_.Put(kEvents, IntKey(seq), Encode(event));
  }

  Status InsertUser(const User& user) {
    if (tx_.FindName(kUsersByName, user.canonical)) return Status::Conflict("user name is taken");
    if (!tx_.Insert(kUsers, user.id, Encode(user))) {
      return Status::Conflict("user " + user.id + " already exists");
    }
    tx_.AddName(kUsersByName, user.canonical, user.id);
    Emit(EventKind::kUserCreated, user.created_at, user.id, "", "", user.name);
    return Status::Ok();
  }

  // A taken token is reported before an unknown user, as SQL engines do.
  Status InsertSession(const Session& s) {
    if (!tx_.Insert(kSessions, s.token_hash, Encode(s))) {
      return Status::Conflict("the session token is already in use");
    }
    if (!tx_.Has(kUsers, s.user_id)) return Status::NotFound("no user " + s.user_id);
    tx_.Put(kSessionsByUser, SessionOfUserKey(s.user_id, s.token_hash), "");
    return Status::Ok();
  }

  std::optional<ConversationRecord> LoadConversation(const std::string& id) const {
    const auto stored = tx_.Get(kConversations, id);
    if (!stored) return std::nullopt;
    return Decode<ConversationRecord>(*stored);
  }

  std::optional<MessageRecord> LoadMessage(const std::string& id) const {
    const auto stored = tx_.Get(kMessages, id);
    if (!stored) return std::nullopt;
    return Decode<MessageRecord>(*stored);
  }

  // Ids of the live messages of a conversation by (at, id), at most `at_most`.
  std::vector<std::string> LiveMessagesOf(const std::string& conversation,
                                          std::size_t at_most = SIZE_MAX) const {
    std::vector<std::string> ids;
    const std::string prefix = ConversationPrefix(conversation);
    tx_.Scan(kConversationMessagesLive, prefix, [&](std::string_view key, std::string_view) {
      if (ids.size() >= at_most || !key.starts_with(prefix)) return false;
      ids.push_back(IdAfterInt(key.substr(prefix.size())));
      return true;
    });
    return ids;
  }

  void DeleteLiveMessage(const std::string& id, Micros at, std::int64_t* count) {
    std::optional<MessageRecord> record = LoadMessage(id);
    if (!record) throw CorruptRecord("message " + id + " is indexed but missing");
    DeleteMessageRecord(*record, at);
    ++*count;
  }

  void DeleteMessageRecord(MessageRecord& record, Micros at) {
    Message& m = record.message;
    tx_.Del(kMessagesLiveByAt, LiveByAtKey(m));
    tx_.Del(kConversationMessagesLive, ConversationLiveKey(m));
    m.body.clear();
    m.deleted_at = at;
    Tombstone(record.sent_seq, at);
    record.deleted_seq = Emit(EventKind::kMessageDeleted, at, m.id, m.conversation, "", "");
    tx_.Put(kMessages, m.id, Encode(record));
    tx_.Put(kDeletedByTime, DeletedKey(at, 'M', m.id), "");
  }

  void DeleteConversationRecord(ConversationRecord& record, Micros at) {
    Conversation& c = record.conversation;
    tx_.RemoveName(kConversationsLiveByName, c.canonical, c.id);
    tx_.Del(kConversationsLiveByActivity, ActivityKey(c));
    // The canonical name goes too: it is the name's text, and it frees the name.
    c.name.clear();
    c.canonical.clear();
    c.deleted_at = at;
    Tombstone(record.created_seq, at);
    record.deleted_seq = Emit(EventKind::kConversationDeleted, at, c.id, "", "", "");
    tx_.Put(kConversations, c.id, Encode(record));
    tx_.Put(kDeletedByTime, DeletedKey(at, 'C', c.id), "");
  }

  struct PurgeTally {
    std::int64_t events = 0;
    std::int64_t highest = 0;  // the highest sequence purged
  };

  void DropEvent(std::int64_t seq, PurgeTally* tally) {
    if (seq > 0 && tx_.Del(kEvents, IntKey(seq))) {
      ++tally->events;
      tally->highest = std::max(tally->highest, seq);
    }
  }

  // Removes a message, its events and its index entries, if it is still there.
  void PurgeMessage(const std::string& id, PurgeTally* tally) {
    const std::optional<MessageRecord> record = LoadMessage(id);
    if (!record) return;
    const Message& m = record->message;
    DropEvent(record->sent_seq, tally);
    DropEvent(record->deleted_seq, tally);
    tx_.Del(kMessages, id);
    tx_.Del(kConversationMessages, ConversationMessageKey(m));
    if (m.deleted_at) {
      tx_.Del(kDeletedByTime, DeletedKey(*m.deleted_at, 'M', id));
    } else {
      tx_.Del(kMessagesLiveByAt, LiveByAtKey(m));
      tx_.Del(kConversationMessagesLive, ConversationLiveKey(m));
    }
  }

  // Removes a deleted conversation, its messages and all their events.
  void PurgeConversation(const std::string& id, PurgeTally* tally) {
    const std::optional<ConversationRecord> record = LoadConversation(id);
    if (!record || !record->conversation.deleted_at) return;
    std::vector<std::string> messages;
    tx_.ScanPrefix(
        kConversationMessages, ConversationPrefix(id),
        [&](std::string_view message, std::string_view) { messages.emplace_back(message); });
    for (const std::string& message : messages) PurgeMessage(message, tally);
    DropEvent(record->created_seq, tally);
    DropEvent(record->deleted_seq, tally);
    tx_.Del(kConversations, id);
    tx_.Del(kDeletedByTime, DeletedKey(*record->conversation.deleted_at, 'C', id));
  }

  // Deletes every entry of `db` whose value satisfies `doomed`.
  template <typename Pred>
  void DeleteWhere(Db db, Pred doomed) {
    std::vector<std::string> keys;
    tx_.Scan(db, "", [&](std::string_view key, std::string_view value) {
      if (doomed(value)) keys.emplace_back(key);
      return true;
    });
    for (const std::string& key : keys) tx_.Del(db, key);
  }

  Tx& tx_;
  std::int64_t seq_;
};

// ---- Errors ----

bool IsWriteLocal(const Status& s) {
  return s.code() == Status::Code::kNotFound || s.code() == Status::Code::kConflict ||
         s.code() == Status::Code::kInvalid;
}

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
    tx.SetMeta(kLastSeq, 0);
    tx.SetMeta(kPurgedThrough, 0);
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

// ---- The store ----

// Thread-safety: Apply calls run one at a time (write_mu_; LMDB has one
// writer anyway); reads run concurrently with each other and with Apply, each
// in its own read-only transaction, excluded only while GrowMap remaps.
class LmdbStore final : public Store {
 public:
  LmdbStore(const LmdbOptions& options, Fd lock)
      : dir_(options.dir),
        context_("LMDB store " + options.dir),
        sync_(options.sync),
        max_map_bytes_(options.max_map_bytes),
        lock_(std::move(lock)),
        env_(lmdb::env::create()) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    map_bytes_ = std::max<std::size_t>(1, (options.initial_map_bytes + page - 1) / page) * page;
  }

  // Opens the environment; the constructor only creates it.
  Status Open() {
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

  Status Apply(std::span<Write> batch) override;

  Status GetHead(Head* out) override {
    return Read([&](const Tx& tx) {
      *out = Head{tx.Meta(kLastSeq), tx.Meta(kPurgedThrough)};
      return Status::Ok();
    });
  }

  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    if (limit == 0 || upto <= after) return Status::Ok();
    return Read([&](const Tx& tx) {
      std::size_t copied = 0;
      tx.Scan(kEvents, IntKey(after + 1), [&](std::string_view key, std::string_view value) {
        const std::int64_t seq = Decoder(key).Int();
        if (seq > upto) return false;
        out->push_back(EventAt(seq, value));
        return ++copied < limit;
      });
      return Status::Ok();
    });
  }

  Status HasUsers(bool* out) override {
    return Read([&](const Tx& tx) {
      *out = tx.Count(kUsers) != 0;
      return Status::Ok();
    });
  }

  Status GetUser(const std::string& id, User* out) override {
    return GetOne<User>(kUsers, id, "no user " + id, out);
  }

  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return Read([&](const Tx& tx) {
      const std::optional<std::string> id = tx.FindName(kUsersByName, canonical);
      const auto stored = id ? tx.Get(kUsers, *id) : std::nullopt;
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

  std::uint64_t CommitGeneration() override { return commits_.generation(); }

  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) override {
    return commits_.Wait(seen, timeout);
  }

 private:
  // Runs fn(tx) in one short read-only transaction, ended before returning.
  template <typename Fn>
  Status Read(Fn&& fn) {
    return Guarded(context_, [&] {
      // Through the turnstile: a waiting GrowMap is not starved by new readers.
      { std::lock_guard<std::mutex> turn(turnstile_mu_); }
      std::shared_lock<std::shared_mutex> map(map_mu_);
      Txn txn(lmdb::txn::begin(env_, nullptr, MDB_RDONLY));
      return fn(Tx(txn, dbis_));
    });
  }

  // Decodes the Record under `key` into *out, or through `part` (a member of
  // Record) when Record is not what the caller gets.
  template <typename Record, typename T, typename Part = std::nullptr_t>
  Status GetOne(Db db, const std::string& key, std::string missing, T* out, Part part = nullptr) {
    return Read([&](const Tx& tx) {
      const auto stored = tx.Get(db, key);
      if (!stored) return Status::NotFound(std::move(missing));
      Record record = Decode<Record>(*stored);
      if constexpr (std::is_same_v<Part, std::nullptr_t>) {
        *out = std::move(record);
      } else {
        *out = std::move(record.*part);
      }
      return Status::Ok();
    });
  }

  // One attempt at the batch in one write transaction (each write in a nested
  // one); throws what LMDB throws, including map_full_error.
  Status ApplyOnce(std::span<Write> batch) {
    SetOutcomes(batch, Status::Ok());  // a retry after map growth starts afresh
    Txn parent(lmdb::txn::begin(env_, nullptr, 0));
    Tx parent_tx(parent, dbis_);
    std::int64_t seq = parent_tx.Meta(kLastSeq);
    const std::int64_t first = seq;
    for (Write& w : batch) {
      Txn nested(lmdb::txn::begin(env_, parent, 0));
      Tx tx(nested, dbis_);
      Writer writer(tx, seq);
      Status s;
      try {
        s = std::visit([&](auto& o) { return writer.Do(o); }, w.op);
      } catch (const lmdb::error& e) {
        if (e.code() != MDB_BAD_VALSIZE) throw;
        s = Status::Invalid(context_ + ": a key is empty or longer than LMDB allows");
      }
      if (!s.ok() && !IsWriteLocal(s)) return s;  // fails the batch
      if (s.ok()) {
        nested.Commit();
        if (writer.last_seq() > seq) w.last_seq = seq = writer.last_seq();
      } else {
        // Nothing of this write committed, so its sequences were never seen.
        nested.abort();
        w.status = std::move(s);
      }
    }
    if (seq != first) parent_tx.SetMeta(kLastSeq, seq);
    parent.Commit();
    return Status::Ok();
  }

  // Doubles the map. Needs write_mu_ held and no transaction of this process
  // open: mdb_env_set_mapsize remaps the file under every reader.
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
  const Fd lock_;  // quire.lock; declared before env_ so that it is released after
  lmdb::env env_;
  Dbis dbis_{};

  std::mutex write_mu_;  // serializes Apply; guards map_bytes_
  std::size_t map_bytes_ = 0;

  // Read transactions hold map_mu_ shared; GrowMap holds it exclusively.
  std::mutex turnstile_mu_;
  std::shared_mutex map_mu_;

  CommitSignal commits_;
};

Status LmdbStore::Apply(std::span<Write> batch) {
  SetOutcomes(batch, Status::Ok());
  if (batch.empty()) return Status::Ok();

  std::lock_guard<std::mutex> lock(write_mu_);
  Status failed;
  while (true) {
    bool map_full = false;
    failed = Guarded(context_, [&] {
      try {
        return ApplyOnce(batch);
      } catch (const lmdb::map_full_error&) {
        map_full = true;  // the batch was aborted; grow and try it again
        return Status::Ok();
      }
    });
    if (!map_full) break;
    failed = GrowMap();
    if (!failed.ok()) break;
  }
  if (!failed.ok()) {
    SetOutcomes(batch, failed);
    return failed;
  }
  commits_.Notify();
  return Status::Ok();
}

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

Status OpenLmdbStoreWithOptions(const LmdbOptions& options, std::unique_ptr<Store>* out) {
  if (options.dir.empty()) return Status::Invalid("LMDB directory is empty");
  std::error_code error;
  std::filesystem::create_directories(options.dir, error);
  if (error) {
    return Status::Unavailable("cannot create LMDB directory " + options.dir + ": " +
                               error.message());
  }
  Fd lock;
  if (Status s = LockDirectory(options.dir, &lock); !s.ok()) return s;
  std::unique_ptr<LmdbStore> store;
  Status s = Guarded("LMDB store " + options.dir, [&] {
    store = std::make_unique<LmdbStore>(options, std::move(lock));
    return store->Open();
  });
  if (!s.ok()) return s;
  *out = std::move(store);
  return Status::Ok();
}

Status OpenLmdbStore(const std::string& url_or_dir_spec, std::unique_ptr<Store>* out) {
  LmdbOptions options;
  if (Status s = ParseLmdbUrl(url_or_dir_spec, &options); !s.ok()) return s;
  return OpenLmdbStoreWithOptions(options, out);
}

void RegisterLmdbBackend(Registry& registry) {
  registry.Register("lmdb", [](const std::string& url, std::unique_ptr<Store>* out) {
    if (!url.starts_with("lmdb:"))
      return Status::Invalid("not an LMDB database URL: '" + url + "'");
    return OpenLmdbStore(url, out);
  });
}

}  // namespace quire::storage
