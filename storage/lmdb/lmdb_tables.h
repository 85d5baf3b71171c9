// The LMDB backend's named databases, their keys, and typed access to them
// inside one transaction. Internal to storage/lmdb/.
//
// Thread-safety: a Tx is used by one thread, inside the transaction it wraps.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <lmdb++.h>

#include "storage/lmdb/lmdb_codec.h"
#include "storage/types.h"

namespace quire::storage::lmdb_tables {

using lmdb_codec::CorruptRecord;
using lmdb_codec::Decode;
using lmdb_codec::Decoder;
using lmdb_codec::Encode;
using lmdb_codec::Encoder;
using lmdb_codec::MessageRecord;

inline constexpr std::int64_t kSchemaVersion = 1;
inline constexpr unsigned kMaxReaders = 1024;  // concurrent read transactions
// LMDB keys are at most 511 bytes (MDB_MAXKEYSIZE); canonical names may be
// longer (see Tx::FindName).
inline constexpr std::size_t kNameKeyBytes = 400;

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

inline constexpr std::array<const char*, kDbCount> kDbNames = {"meta",
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

inline constexpr const char* kLastSeq = "last_seq";
inline constexpr const char* kPurgedThrough = "purged_through";
// Added after schema 1 shipped: an environment without them reads 0 and 0.
inline constexpr const char* kLostAfter = "lost_after";
inline constexpr const char* kLostThrough = "lost_through";
inline constexpr const char* kSchemaVersionKey = "schema_version";

inline std::string IntKey(std::int64_t n) {
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
  // A meta value that older environments may lack: 0 then.
  std::int64_t MetaOrZero(const char* name) const { return Has(kMeta, name) ? Meta(name) : 0; }
  void SetMeta(const char* name, std::int64_t value) { Put(kMeta, name, IntKey(value)); }

  Head GetHead() const {
    return Head{Meta(kLastSeq), Meta(kPurgedThrough), MetaOrZero(kLostAfter),
                MetaOrZero(kLostThrough)};
  }
  void SetHead(const Head& head) {
    SetMeta(kLastSeq, head.last_seq);
    SetMeta(kPurgedThrough, head.purged_through);
    SetMeta(kLostAfter, head.lost_after);
    SetMeta(kLostThrough, head.lost_through);
  }

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
  // The key of the bucket a name is in.
  static std::string NameKey(std::string_view canonical) {
    // A prefix byte, so that an empty name is a key too.
    return "n" + std::string(canonical.substr(0, kNameKeyBytes));
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
  MDB_txn* txn_;
  const Dbis& dbis_;
};

// ---- Keys ----

inline std::string SessionOfUserKey(std::string_view user_id, std::string_view token_hash) {
  return Encoder().Str(user_id).Raw(token_hash).bytes();
}
inline std::string ActivityKey(const Conversation& c) {
  return Encoder().Int(c.last_activity).Raw(c.id).bytes();
}
inline std::string LiveByAtKey(const Message& m) {
  return Encoder().Int(m.at).Raw(m.id).bytes();
}
inline std::string ConversationPrefix(std::string_view conversation) {
  return Encoder().Str(conversation).bytes();
}
inline std::string ConversationLiveKey(const Message& m) {
  return Encoder().Str(m.conversation).Int(m.at).Raw(m.id).bytes();
}
inline std::string ConversationMessageKey(const Message& m) {
  return Encoder().Str(m.conversation).Raw(m.id).bytes();
}
inline std::string DeletedKey(Micros deleted_at, char kind, std::string_view id) {
  return Encoder().Int(deleted_at).Raw(std::string(1, kind)).Raw(id).bytes();
}
inline std::string IdempotencyRecordKey(std::string_view sender, std::string_view key) {
  return Encoder().Str(sender).Raw(key).bytes();
}

inline Event EventAt(std::int64_t seq, std::string_view bytes) {
  Event event = Decode<Event>(bytes);
  event.seq = seq;
  return event;
}

inline std::optional<lmdb_codec::ConversationRecord> LoadConversation(const Tx& tx,
                                                                      const std::string& id) {
  const auto stored = tx.Get(kConversations, id);
  if (!stored) return std::nullopt;
  return Decode<lmdb_codec::ConversationRecord>(*stored);
}

inline std::optional<MessageRecord> LoadMessage(const Tx& tx, const std::string& id) {
  const auto stored = tx.Get(kMessages, id);
  if (!stored) return std::nullopt;
  return Decode<MessageRecord>(*stored);
}

// The id at the end of a key that starts with one Int.
inline std::string IdAfterInt(std::string_view key) {
  Decoder d(key);
  d.Int();
  return std::string(d.Rest());
}

}  // namespace quire::storage::lmdb_tables
