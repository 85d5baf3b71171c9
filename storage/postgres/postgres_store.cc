#include "storage/postgres/postgres_store.h"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "storage/chat_rules.h"
#include "storage/commit_signal.h"
#include "storage/engine.h"
#include "storage/postgres/postgres_connection.h"
#include "storage/postgres/postgres_schema.h"

namespace quire::storage {
namespace {

using postgres::ConnectionPool;
using postgres::Guarded;

constexpr const char* kChannel = "quire_commits";
// Connections kept open between uses. Concurrent users are at most the HTTP
// workers plus the committer and the pump, so nearly every connection opened
// under load is kept: one closed at release and opened again for the next
// read costs a backend start and the preparation of every statement. With 8
// kept, 64 concurrent senders made 349 connections in 8 s and PostgreSQL
// spent most of its CPU starting them (docs/benchmarks.md section 15).
constexpr std::size_t kMaxIdleConnections = 64;

// The advisory lock key that keeps servers and maintenance commands apart
// (Engine::Hold): "QuireUse" in ASCII. Servers hold it shared, a migration,
// restore or check exclusively, each for the engine's lifetime. Distinct from
// postgres_schema.cc's migration key; advisory locks are per database.
constexpr std::int64_t kUseLock = 0x5175697265557365LL;

// Every statement, prepared on each connection of the pool.
constexpr std::pair<const char*, const char*> kStatements[] = {
    // The head row lock: taken first by every write transaction and held to
    // its commit, so no other writer, in any process, takes numbers until
    // this transaction's events are visible.
    {"head_lock",
     "SELECT last_seq, purged_through, lost_after, lost_through FROM quire_meta WHERE id = 1 "
     "FOR UPDATE"},
    // Stores the new head, and wakes every instance at commit.
    {"head_set",
     "WITH head AS (UPDATE quire_meta SET last_seq = $1::bigint, purged_through = $2::bigint, "
     "lost_after = $3::bigint, lost_through = $4::bigint WHERE id = 1) "
     "SELECT pg_notify('quire_commits', $1::bigint::text)"},
    {"head_get",
     "SELECT last_seq, purged_through, lost_after, lost_through FROM quire_meta WHERE id = 1"},
    {"events_read",
     "SELECT seq, kind, at, entity, conversation, sender, text, deleted_at FROM events "
     "WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"},
    {"users_any", "SELECT EXISTS (SELECT 1 FROM users)"},
    {"user_get", "SELECT id, name, canonical, password_hash, created_at FROM users WHERE id = $1"},
    {"user_by_canonical",
     "SELECT id, name, canonical, password_hash, created_at FROM users WHERE canonical = $1"},
    {"session_get",
     "SELECT token_hash, user_id, created_at, last_used FROM sessions WHERE token_hash = $1"},
    {"invitation_get", "SELECT id, issuer_id, issued_at, used FROM invitations WHERE id = $1"},
    {"conversation_get",
     "SELECT id, name, canonical, created_at, last_activity, deleted_at FROM conversations "
     "WHERE id = $1"},
    // $1: a JSON array of ids.
    {"conversations_get",
     "SELECT id, name, canonical, created_at, last_activity, deleted_at FROM conversations "
     "WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))"},
    {"conversation_live_by_name",
     "SELECT id, name, canonical, created_at, last_activity, deleted_at FROM conversations "
     "WHERE canonical = $1 AND deleted_at IS NULL"},
    {"message_get",
     "SELECT id, conversation, sender, body, at, deleted_at FROM messages WHERE id = $1"},
    {"idempotency_get",
     "SELECT sender, key, message_id, conversation, at, created_at FROM idempotency "
     "WHERE sender = $1 AND key = $2"},
    // Lists.
    {"messages_live_of",
     "SELECT id FROM messages WHERE conversation = $1 AND deleted_at IS NULL "
     "ORDER BY at, id COLLATE \"C\" LIMIT $2"},
    {"messages_live_before",
     "SELECT id FROM messages WHERE deleted_at IS NULL AND at < $1 ORDER BY at, id COLLATE \"C\""},
    {"conversations_idle_before",
     "SELECT id FROM conversations WHERE deleted_at IS NULL AND last_activity < $1 "
     "ORDER BY last_activity, id COLLATE \"C\""},
    {"messages_deleted_before", "SELECT id FROM messages WHERE deleted_at < $1"},
    {"conversations_deleted_before", "SELECT id FROM conversations WHERE deleted_at < $1"},
    {"messages_of", "SELECT id FROM messages WHERE conversation = $1"},
    // Listings for quire migrate and check: keyset pages in primary-key
    // order, in the key's own collation so that the primary key's index
    // serves them (no record has an empty key, so '' starts from the first).
    {"users_list",
     "SELECT id, name, canonical, password_hash, created_at FROM users WHERE id > $1 "
     "ORDER BY id LIMIT $2"},
    {"sessions_list",
     "SELECT token_hash, user_id, created_at, last_used FROM sessions WHERE token_hash > $1 "
     "ORDER BY token_hash LIMIT $2"},
    {"invitations_list",
     "SELECT id, issuer_id, issued_at, used FROM invitations WHERE id > $1 ORDER BY id LIMIT $2"},
    {"conversations_list",
     "SELECT id, name, canonical, created_at, last_activity, deleted_at FROM conversations "
     "WHERE id > $1 ORDER BY id LIMIT $2"},
    {"messages_list",
     "SELECT id, conversation, sender, body, at, deleted_at FROM messages WHERE id > $1 "
     "ORDER BY id LIMIT $2"},
    {"idempotency_list",
     "SELECT sender, key, message_id, conversation, at, created_at FROM idempotency "
     "WHERE (sender, key) > ($1, $2) ORDER BY sender, key LIMIT $3"},
    // Records.
    {"user_insert",
     "INSERT INTO users (id, name, canonical, password_hash, created_at) "
     "VALUES ($1, $2, $3, $4, $5)"},
    {"user_update",
     "UPDATE users SET name = $2, canonical = $3, password_hash = $4, created_at = $5 "
     "WHERE id = $1"},
    {"session_insert",
     "INSERT INTO sessions (token_hash, user_id, created_at, last_used) VALUES ($1, $2, $3, $4)"},
    {"session_update",
     "UPDATE sessions SET user_id = $2, created_at = $3, last_used = $4 WHERE token_hash = $1"},
    {"session_delete", "DELETE FROM sessions WHERE token_hash = $1"},
    {"sessions_of_user_delete", "DELETE FROM sessions WHERE user_id = $1"},
    {"invitation_insert",
     "INSERT INTO invitations (id, issuer_id, issued_at, used) VALUES ($1, $2, $3, $4)"},
    {"invitation_update",
     "UPDATE invitations SET issuer_id = $2, issued_at = $3, used = $4 WHERE id = $1"},
    {"conversation_insert",
     "INSERT INTO conversations (id, name, canonical, created_at, last_activity, deleted_at) "
     "VALUES ($1, $2, $3, $4, $5, $6)"},
    {"conversation_update",
     "UPDATE conversations SET name = $2, canonical = $3, created_at = $4, last_activity = $5, "
     "deleted_at = $6 WHERE id = $1"},
    {"message_insert",
     "INSERT INTO messages (id, conversation, sender, body, at, deleted_at) "
     "VALUES ($1, $2, $3, $4, $5, $6)"},
    {"message_update",
     "UPDATE messages SET conversation = $2, sender = $3, body = $4, at = $5, deleted_at = $6 "
     "WHERE id = $1"},
    // Replaces an expired record of the same key.
    {"idempotency_put",
     "INSERT INTO idempotency (sender, key, message_id, conversation, at, created_at) "
     "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sender, key) DO UPDATE SET "
     "message_id = EXCLUDED.message_id, conversation = EXCLUDED.conversation, "
     "at = EXCLUDED.at, created_at = EXCLUDED.created_at"},
    // The writes of a run of sends in one round trip (WriteSends): $1 the
    // messages, $2 their events, $3 the conversations' new last_activity, each
    // a JSON array. (PostgreSQL runs every data-modifying WITH part once, to
    // completion, read or not.)
    {"sends_write",
     "WITH message AS (INSERT INTO messages (id, conversation, sender, body, at) "
     "SELECT id, conversation, sender, body, at FROM jsonb_to_recordset($1::jsonb) "
     "AS t(id text, conversation text, sender text, body text, at bigint)), "
     "event AS (INSERT INTO events (seq, kind, at, entity, conversation, sender, text) "
     "SELECT seq, kind, at, entity, conversation, sender, text FROM jsonb_to_recordset($2::jsonb) "
     "AS t(seq bigint, kind int, at bigint, entity text, conversation text, sender text, "
     "text text)), "
     "touched AS (UPDATE conversations c SET last_activity = t.last_activity "
     "FROM jsonb_to_recordset($3::jsonb) AS t(id text, last_activity bigint) WHERE c.id = t.id) "
     "SELECT 1"},
    // History.
    {"event_insert",
     "INSERT INTO events (seq, kind, at, entity, conversation, sender, text, deleted_at) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"},
    {"events_tombstone",
     "UPDATE events SET text = '', deleted_at = $1 WHERE entity = $2 AND kind = $3"},
    {"events_remove", "DELETE FROM events WHERE entity = $1 RETURNING seq"},
    {"message_remove", "DELETE FROM messages WHERE id = $1"},
    // $1: a JSON array of message ids.
    {"events_of_many_remove",
     "DELETE FROM events WHERE entity IN (SELECT jsonb_array_elements_text($1::jsonb)) "
     "RETURNING seq"},
    {"messages_remove",
     "DELETE FROM messages WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb))"},
    {"conversation_remove", "DELETE FROM conversations WHERE id = $1"},
    {"sessions_remove", "DELETE FROM sessions WHERE last_used < $1"},
    {"invitations_remove", "DELETE FROM invitations WHERE issued_at < $1"},
    {"idempotency_remove", "DELETE FROM idempotency WHERE created_at < $1"},
};

void PrepareStatements(pqxx::connection& conn) {
  for (const auto& [name, sql] : kStatements) conn.prepare(name, sql);
}

std::optional<Micros> OptMicros(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::int64_t>();
}

// ---- Row mapping (column orders match the SELECTs above) ----

User UserFrom(const pqxx::row& r) {
  return User{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
              r[3].as<std::string>(), r[4].as<std::int64_t>()};
}

Session SessionFrom(const pqxx::row& r) {
  return Session{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::int64_t>(),
                 r[3].as<std::int64_t>()};
}

Invitation InvitationFrom(const pqxx::row& r) {
  return Invitation{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::int64_t>(),
                    r[3].as<bool>()};
}

Conversation ConversationFrom(const pqxx::row& r) {
  return Conversation{r[0].as<std::string>(),  r[1].as<std::string>(),  r[2].as<std::string>(),
                      r[3].as<std::int64_t>(), r[4].as<std::int64_t>(), OptMicros(r[5])};
}

Message MessageFrom(const pqxx::row& r) {
  return Message{r[0].as<std::string>(), r[1].as<std::string>(),  r[2].as<std::string>(),
                 r[3].as<std::string>(), r[4].as<std::int64_t>(), OptMicros(r[5])};
}

IdempotencyRecord IdempotencyFrom(const pqxx::row& r) {
  return IdempotencyRecord{r[0].as<std::string>(),  r[1].as<std::string>(),
                           r[2].as<std::string>(),  r[3].as<std::string>(),
                           r[4].as<std::int64_t>(), r[5].as<std::int64_t>()};
}

Head HeadFrom(const pqxx::row& r) {
  return Head{r[0].as<std::int64_t>(), r[1].as<std::int64_t>(), r[2].as<std::int64_t>(),
              r[3].as<std::int64_t>()};
}

// A LIMIT from a count: PostgreSQL's bigint.
std::int64_t Bounded(std::size_t limit) {
  const auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(limit, max));
}

// The reads, in one transaction: a pooled connection's own snapshot per
// statement, or the batch's write transaction.
class PostgresRecords final : public RecordReader {
 public:
  // Errors that break the connection set *broken. `owner` is kept alive as
  // long as the reader (it holds a pooled connection and its transaction).
  PostgresRecords(pqxx::transaction_base& tx, bool* broken, std::shared_ptr<void> owner = nullptr)
      : owner_(std::move(owner)), tx_(tx), broken_(broken) {}

  // The head as read under the head row lock, or as set since: a write
  // transaction's reads need not read it again.
  void KnowHead(const Head& head) { head_ = head; }
  // The head may differ from the one known (a rollback undid SetHead): read
  // it again when asked.
  void ForgetHead() { head_.reset(); }

  Status GetHead(Head* out) override {
    if (head_) {
      *out = *head_;
      return Status::Ok();
    }
    return Exec([&] {
      const pqxx::result r = tx_.exec_prepared("head_get");
      if (r.empty()) return Status::Corrupt("quire_meta is empty");
      *out = HeadFrom(r[0]);
      return Status::Ok();
    });
  }
  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    return Exec([&] {
      const pqxx::result r = tx_.exec_prepared("events_read", after, upto, Bounded(limit));
      out->reserve(out->size() + r.size());
      for (const pqxx::row& row : r) {
        const int kind = row[1].as<int>();
        if (kind < 1 || kind > 5) {
          return Status::Corrupt("event " + row[0].as<std::string>() + " has unknown kind " +
                                 std::to_string(kind));
        }
        out->push_back(Event{row[0].as<std::int64_t>(), static_cast<EventKind>(kind),
                             row[2].as<std::int64_t>(), row[3].as<std::string>(),
                             row[4].as<std::string>(), row[5].as<std::string>(),
                             row[6].as<std::string>(), OptMicros(row[7])});
      }
      return Status::Ok();
    });
  }
  Status HasUsers(bool* out) override {
    return Exec([&] {
      *out = tx_.exec_prepared1("users_any")[0].as<bool>();
      return Status::Ok();
    });
  }
  Status GetUser(const std::string& id, User* out) override {
    return One("user_get", id, "no user " + id, out, UserFrom);
  }
  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return One("user_by_canonical", canonical, "no user with that name", out, UserFrom);
  }
  Status FindSession(const std::string& token_hash, Session* out) override {
    return One("session_get", token_hash, "no such session", out, SessionFrom);
  }
  Status GetInvitation(const std::string& id, Invitation* out) override {
    return One("invitation_get", id, "no invitation " + id, out, InvitationFrom);
  }
  Status GetConversation(const std::string& id, Conversation* out) override {
    return One("conversation_get", id, "no conversation " + id, out, ConversationFrom);
  }
  Status GetMessage(const std::string& id, Message* out) override {
    return One("message_get", id, "no message " + id, out, MessageFrom);
  }

  Status ListUsers(const std::string& after, std::size_t limit, std::vector<User>* out) override {
    return Page(out, UserFrom, "users_list", after, Bounded(limit));
  }
  Status ListSessions(const std::string& after, std::size_t limit,
                      std::vector<Session>* out) override {
    return Page(out, SessionFrom, "sessions_list", after, Bounded(limit));
  }
  Status ListInvitations(const std::string& after, std::size_t limit,
                         std::vector<Invitation>* out) override {
    return Page(out, InvitationFrom, "invitations_list", after, Bounded(limit));
  }
  Status ListConversations(const std::string& after, std::size_t limit,
                           std::vector<Conversation>* out) override {
    return Page(out, ConversationFrom, "conversations_list", after, Bounded(limit));
  }
  Status ListMessages(const std::string& after, std::size_t limit,
                      std::vector<Message>* out) override {
    return Page(out, MessageFrom, "messages_list", after, Bounded(limit));
  }
  Status ListIdempotency(const IdempotencyKey& after, std::size_t limit,
                         std::vector<IdempotencyRecord>* out) override {
    return Page(out, IdempotencyFrom, "idempotency_list", after.sender, after.key, Bounded(limit));
  }

  // Runs a one-row statement; NotFound(missing) without a row.
  template <typename T, typename Map>
  Status One(const char* statement, const std::string& key, const std::string& missing, T* out,
             Map map) {
    return Exec([&] {
      const pqxx::result r = tx_.exec_prepared(statement, key);
      if (r.empty()) return Status::NotFound(missing);
      *out = map(r[0]);
      return Status::Ok();
    });
  }

 private:
  template <typename Fn>
  Status Exec(Fn&& fn) {
    return Guarded(std::forward<Fn>(fn), broken_);
  }

  // Appends every row of a statement, mapped.
  template <typename T, typename Map, typename... Args>
  Status Page(std::vector<T>* out, Map map, const char* statement, Args&&... args) {
    return Exec([&] {
      const pqxx::result r = tx_.exec_prepared(statement, std::forward<Args>(args)...);
      out->reserve(out->size() + r.size());
      for (const pqxx::row& row : r) out->push_back(map(row));
      return Status::Ok();
    });
  }

  const std::shared_ptr<void> owner_;  // declared first: released last
  pqxx::transaction_base& tx_;
  bool* const broken_;
  std::optional<Head> head_;
};

// A pooled connection lent to one reader, in a transaction of single
// statements (each its own snapshot); returned when the reader is done.
struct PooledRead {
  PooledRead(ConnectionPool& pool, std::unique_ptr<pqxx::connection> conn)
      : pool(pool), conn(std::move(conn)), tx(std::in_place, *this->conn) {}
  ~PooledRead() {
    Guarded(
        [&] {
          tx.reset();
          return Status::Ok();
        },
        &broken);
    if (!broken) pool.Release(std::move(conn));
  }

  ConnectionPool& pool;
  std::unique_ptr<pqxx::connection> conn;
  std::optional<pqxx::nontransaction> tx;
  bool broken = false;
};

// The write transaction of a batch, on a connection of the pool. Opening it
// takes the head row lock (see kStatements).
class PostgresWriteTxn final : public WriteTxn {
 public:
  PostgresWriteTxn(ConnectionPool& pool, std::unique_ptr<pqxx::connection> conn)
      : pool_(pool),
        conn_(std::move(conn)),
        work_(std::in_place, *conn_),
        records_(*work_, &broken_) {}

  ~PostgresWriteTxn() override {
    Guarded(
        [&] {
          work_.reset();  // aborts an uncommitted transaction
          return Status::Ok();
        },
        &broken_);
    if (!broken_) pool_.Release(std::move(conn_));
  }

  // Takes the head row lock and reads the head under it.
  Status LockHead() {
    return Exec([&] {
      records_.KnowHead(HeadFrom(work_->exec_prepared1("head_lock")));
      return Status::Ok();
    });
  }

  RecordReader& records() override { return records_; }

  // Plain SAVEPOINT statements: libpqxx 6's subtransaction does not roll
  // back to its savepoint when its first statement failed.
  Status Savepoint() override { return Run0("SAVEPOINT quire_write"); }
  Status ReleaseSavepoint() override { return Run0("RELEASE SAVEPOINT quire_write"); }
  Status RollbackToSavepoint() override {
    records_.ForgetHead();
    return Run0("ROLLBACK TO SAVEPOINT quire_write; RELEASE SAVEPOINT quire_write");
  }
  Status Commit() override {
    return Exec([&] {
      work_->commit();
      return Status::Ok();
    });
  }

  Status GetConversations(std::span<const std::string> ids,
                          std::vector<std::optional<Conversation>>* out) override {
    return Exec([&] {
      const pqxx::result r = work_->exec_prepared("conversations_get", nlohmann::json(ids).dump());
      std::vector<Conversation> found;
      for (const pqxx::row& row : r) found.push_back(ConversationFrom(row));
      out->assign(ids.size(), std::nullopt);
      for (Conversation& c : found) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
          if (ids[i] == c.id) (*out)[i] = c;
        }
      }
      return Status::Ok();
    });
  }

  Status FindLiveConversationByName(const std::string& canonical, Conversation* out) override {
    return Exec([&] {
      return records_.One("conversation_live_by_name", canonical,
                          "no live conversation with that name", out, ConversationFrom);
    });
  }
  Status GetIdempotency(const std::string& sender, const std::string& key,
                        IdempotencyRecord* out) override {
    return Exec([&] {
      const pqxx::result r = work_->exec_prepared("idempotency_get", sender, key);
      if (r.empty()) return Status::NotFound("no idempotency record");
      *out = IdempotencyFrom(r[0]);
      return Status::Ok();
    });
  }

  Status ListLiveMessagesOf(const std::string& conversation, std::size_t limit,
                            std::vector<std::string>* ids) override {
    return List(ids, "messages_live_of", conversation, Bounded(limit));
  }
  Status ListLiveMessagesSentBefore(Micros before, std::vector<std::string>* ids) override {
    return List(ids, "messages_live_before", before);
  }
  Status ListLiveConversationsIdleBefore(Micros before, std::vector<std::string>* ids) override {
    return List(ids, "conversations_idle_before", before);
  }
  Status ListMessagesDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return List(ids, "messages_deleted_before", before);
  }
  Status ListConversationsDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return List(ids, "conversations_deleted_before", before);
  }
  Status ListMessagesOf(const std::string& conversation, std::vector<std::string>* ids) override {
    return List(ids, "messages_of", conversation);
  }

  Status InsertUser(const User& u) override {
    return Run("user_insert", u.id, u.name, u.canonical, u.password_hash, u.created_at);
  }
  Status UpdateUser(const Change<User>& c) override {
    const User& u = c.after;
    return Update("no user " + u.id, "user_update", u.id, u.name, u.canonical, u.password_hash,
                  u.created_at);
  }
  Status InsertSession(const Session& s) override {
    return Run("session_insert", s.token_hash, s.user_id, s.created_at, s.last_used);
  }
  Status UpdateSession(const Change<Session>& c) override {
    const Session& s = c.after;
    return Update("no such session", "session_update", s.token_hash, s.user_id, s.created_at,
                  s.last_used);
  }
  Status DeleteSession(const Session& s) override { return Run("session_delete", s.token_hash); }
  Status DeleteSessionsOfUser(const std::string& user_id) override {
    return Run("sessions_of_user_delete", user_id);
  }
  Status InsertInvitation(const Invitation& i) override {
    return Run("invitation_insert", i.id, i.issuer_id, i.issued_at, i.used);
  }
  Status UpdateInvitation(const Change<Invitation>& c) override {
    const Invitation& i = c.after;
    return Update("no invitation " + i.id, "invitation_update", i.id, i.issuer_id, i.issued_at,
                  i.used);
  }
  Status InsertConversation(const Conversation& c) override {
    return Run("conversation_insert", c.id, c.name, c.canonical, c.created_at, c.last_activity,
               c.deleted_at);
  }
  Status UpdateConversation(const Change<Conversation>& change) override {
    const Conversation& c = change.after;
    return Update("no conversation " + c.id, "conversation_update", c.id, c.name, c.canonical,
                  c.created_at, c.last_activity, c.deleted_at);
  }
  Status InsertMessage(const Message& m) override {
    return Run("message_insert", m.id, m.conversation, m.sender, m.body, m.at, m.deleted_at);
  }
  Status UpdateMessage(const Change<Message>& change) override {
    const Message& m = change.after;
    return Update("no message " + m.id, "message_update", m.id, m.conversation, m.sender, m.body,
                  m.at, m.deleted_at);
  }
  Status PutIdempotency(const IdempotencyRecord& r) override {
    return Run("idempotency_put", r.sender, r.key, r.message_id, r.conversation, r.at,
               r.created_at);
  }

  Status AppendEvent(const Event& e) override {
    return Run("event_insert", e.seq, static_cast<int>(e.kind), e.at, e.id, e.conversation,
               e.sender, e.text, e.deleted_at);
  }
  Status TombstoneEvents(const std::string& entity, EventKind kind, Micros at) override {
    return Run("events_tombstone", at, entity, static_cast<int>(kind));
  }
  Status RemoveEventsOf(const std::string& entity, std::int64_t* count,
                        std::int64_t* highest) override {
    return Exec([&] {
      for (const pqxx::row& row : work_->exec_prepared("events_remove", entity)) {
        ++*count;
        *highest = std::max(*highest, row[0].as<std::int64_t>());
      }
      return Status::Ok();
    });
  }
  Status RemoveMessage(const std::string& id) override { return Run("message_remove", id); }
  // Two round trips for many messages instead of two each.
  Status RemoveMessagesWithEvents(std::span<const std::string> ids, std::int64_t* count,
                                  std::int64_t* highest) override {
    const std::string json = nlohmann::json(ids).dump();
    return Exec([&] {
      for (const pqxx::row& row : work_->exec_prepared("events_of_many_remove", json)) {
        ++*count;
        *highest = std::max(*highest, row[0].as<std::int64_t>());
      }
      work_->exec_prepared("messages_remove", json);
      return Status::Ok();
    });
  }
  Status RemoveConversation(const std::string& id) override {
    return Run("conversation_remove", id);
  }
  Status RemoveSessionsUsedBefore(Micros before) override { return Run("sessions_remove", before); }
  Status RemoveInvitationsIssuedBefore(Micros before) override {
    return Run("invitations_remove", before);
  }
  Status RemoveIdempotencyMadeBefore(Micros before) override {
    return Run("idempotency_remove", before);
  }

  Status SetHead(const Head& head) override {
    Status s =
        Run("head_set", head.last_seq, head.purged_through, head.lost_after, head.lost_through);
    if (s.ok()) records_.KnowHead(head);
    return s;
  }

  // A COPY per table: about 1.5 times the rows per second of an INSERT per
  // table from a JSON array (as sends_write does it), measured with 2
  // million messages and events in batches of 5,000.
  Status InsertRecords(const RecordBatch& b) override {
    using S = const std::string&;
    using T = std::optional<Micros>;
    return Exec([&] {
      CopyRows(b.users, "users", {"id", "name", "canonical", "password_hash", "created_at"},
               [](const User& u) {
                 return std::tuple<S, S, S, S, Micros>(u.id, u.name, u.canonical, u.password_hash,
                                                       u.created_at);
               });
      CopyRows(b.conversations, "conversations",
               {"id", "name", "canonical", "created_at", "last_activity", "deleted_at"},
               [](const Conversation& c) {
                 return std::tuple<S, S, S, Micros, Micros, T>(
                     c.id, c.name, c.canonical, c.created_at, c.last_activity, c.deleted_at);
               });
      CopyRows(b.messages, "messages", {"id", "conversation", "sender", "body", "at", "deleted_at"},
               [](const Message& m) {
                 return std::tuple<S, S, S, S, Micros, T>(m.id, m.conversation, m.sender, m.body,
                                                          m.at, m.deleted_at);
               });
      CopyRows(b.events, "events",
               {"seq", "kind", "at", "entity", "conversation", "sender", "text", "deleted_at"},
               [](const Event& e) {
                 return std::tuple<std::int64_t, int, Micros, S, S, S, S, T>(
                     e.seq, static_cast<int>(e.kind), e.at, e.id, e.conversation, e.sender, e.text,
                     e.deleted_at);
               });
      CopyRows(b.idempotency, "idempotency",
               {"sender", "key", "message_id", "conversation", "at", "created_at"},
               [](const IdempotencyRecord& r) {
                 return std::tuple<S, S, S, S, Micros, Micros>(r.sender, r.key, r.message_id,
                                                               r.conversation, r.at, r.created_at);
               });
      CopyRows(b.sessions, "sessions", {"token_hash", "user_id", "created_at", "last_used"},
               [](const Session& s) {
                 return std::tuple<S, S, Micros, Micros>(s.token_hash, s.user_id, s.created_at,
                                                         s.last_used);
               });
      CopyRows(b.invitations, "invitations", {"id", "issuer_id", "issued_at", "used"},
               [](const Invitation& i) {
                 return std::tuple<S, S, Micros, bool>(i.id, i.issuer_id, i.issued_at, i.used);
               });
      return Status::Ok();
    });
  }

  Status RemoveEverything() override {
    Status s =
        Run0("TRUNCATE users, sessions, invitations, conversations, messages, events, idempotency");
    return s.ok() ? SetHead(Head{}) : s;
  }

  // One round trip for the run; a change of a conversation other than its
  // activity takes the finer path.
  Status WriteSends(std::span<const Message> messages, std::span<const Event> events,
                    std::span<const Change<Conversation>> conversations) override {
    const bool activity_only =
        std::all_of(conversations.begin(), conversations.end(), [](const auto& c) {
          const Conversation& b = c.before;
          const Conversation& a = c.after;
          return b.id == a.id && b.name == a.name && b.canonical == a.canonical &&
                 b.created_at == a.created_at && b.deleted_at == a.deleted_at;
        });
    const bool all_live =
        std::all_of(messages.begin(), messages.end(),
                    [](const Message& m) { return !m.deleted_at; }) &&
        std::all_of(events.begin(), events.end(), [](const Event& e) { return !e.deleted_at; });
    if (!activity_only || !all_live || messages.size() != events.size()) {
      return WriteTxn::WriteSends(messages, events, conversations);
    }
    nlohmann::json message_rows = nlohmann::json::array();
    for (const Message& m : messages) {
      message_rows.push_back({{"id", m.id},
                              {"conversation", m.conversation},
                              {"sender", m.sender},
                              {"body", m.body},
                              {"at", m.at}});
    }
    nlohmann::json event_rows = nlohmann::json::array();
    for (const Event& e : events) {
      event_rows.push_back({{"seq", e.seq},
                            {"kind", static_cast<int>(e.kind)},
                            {"at", e.at},
                            {"entity", e.id},
                            {"conversation", e.conversation},
                            {"sender", e.sender},
                            {"text", e.text}});
    }
    nlohmann::json activity_rows = nlohmann::json::array();
    for (const Change<Conversation>& c : conversations) {
      activity_rows.push_back({{"id", c.after.id}, {"last_activity", c.after.last_activity}});
    }
    return Run("sends_write", message_rows.dump(), event_rows.dump(), activity_rows.dump());
  }

 private:
  template <typename Fn>
  Status Exec(Fn&& fn) {
    return Guarded(std::forward<Fn>(fn), &broken_);
  }

  Status Run0(const char* sql) {
    return Exec([&] {
      work_->exec0(sql);
      return Status::Ok();
    });
  }

  template <typename... Args>
  Status Run(const char* statement, Args&&... args) {
    return Exec([&] {
      work_->exec_prepared(statement, std::forward<Args>(args)...);
      return Status::Ok();
    });
  }

  // An UPDATE of one row; NotFound(missing) when no row matched.
  template <typename... Args>
  Status Update(const std::string& missing, const char* statement, Args&&... args) {
    return Exec([&] {
      const pqxx::result r = work_->exec_prepared(statement, std::forward<Args>(args)...);
      return r.affected_rows() == 0 ? Status::NotFound(missing) : Status::Ok();
    });
  }

  // COPYs the records into `table`, each as the tuple `row` makes of it, in
  // the order of `columns`. Throws pqxx exceptions (a stored key: at the end).
  template <typename Records, typename Row>
  void CopyRows(const Records& records, const char* table, std::vector<std::string> columns,
                Row row) {
    if (records.empty()) return;
    pqxx::stream_to copy(*work_, table, columns);
    for (const auto& record : records) copy << row(record);
    copy.complete();
  }

  template <typename... Args>
  Status List(std::vector<std::string>* ids, const char* statement, Args&&... args) {
    return Exec([&] {
      for (const pqxx::row& row : work_->exec_prepared(statement, std::forward<Args>(args)...)) {
        ids->push_back(row[0].as<std::string>());
      }
      return Status::Ok();
    });
  }

  ConnectionPool& pool_;
  std::unique_ptr<pqxx::connection> conn_;
  std::optional<pqxx::work> work_;
  bool broken_ = false;  // conn_ must not go back to the pool
  PostgresRecords records_;
};

class PostgresEngine final : public Engine {
 public:
  explicit PostgresEngine(std::string conninfo)
      : conninfo_(std::move(conninfo)), pool_(conninfo_, kMaxIdleConnections, PrepareStatements) {}

  ~PostgresEngine() override {
    commits_.Close();  // ends the listener's loop and every WaitForCommit
    if (listener_.joinable()) listener_.join();
    // The use lock is released here, not by the disconnect: a backend lets
    // its session locks go only when it exits, after the client has closed,
    // and a command run right after this one (a check after a migrate) was
    // refused as "being migrated" meanwhile.
    if (held_) {
      try {
        pqxx::nontransaction tx(*held_);
        tx.exec("SELECT pg_advisory_unlock_all()");
      } catch (const std::exception&) {
        // A broken connection holds no lock.
      }
    }
  }

  // Connects once (reporting why not) and migrates; then starts listening.
  Status Open() {
    std::unique_ptr<pqxx::connection> conn;
    Status s = pool_.Acquire(&conn);
    if (!s.ok()) return s;
    bool broken = false;
    s = Guarded([&] { return postgres::Migrate(*conn); }, &broken);
    if (!s.ok()) return s;
    pool_.Release(std::move(conn));
    listener_ = std::thread([this] { Listen(); });
    return Status::Ok();
  }

  Capabilities capabilities() const override {
    Capabilities caps;
    caps.multi_process_writers = true;  // the head row lock spans processes
    caps.survives_process_kill = true;
    caps.survives_power_loss = true;  // with the server's default fsync settings
    return caps;
  }

  // Every savepoint is a round trip, and round trips while the head row lock
  // is held are what limits a batch.
  EngineTraits traits() const override { return EngineTraits{.cheap_savepoints = false}; }

  Status BeginWrite(std::unique_ptr<WriteTxn>* out) override {
    std::unique_ptr<pqxx::connection> conn;
    if (Status s = pool_.Acquire(&conn); !s.ok()) return s;
    std::unique_ptr<PostgresWriteTxn> txn;
    bool broken = false;
    Status s = Guarded(
        [&] {
          txn = std::make_unique<PostgresWriteTxn>(pool_, std::move(conn));
          return Status::Ok();
        },
        &broken);
    if (!s.ok()) return s;
    if (s = txn->LockHead(); !s.ok()) return s;
    *out = std::move(txn);
    return Status::Ok();
  }

  CommitSignal* ExternalCommits() override { return &commits_; }

  // A session-level advisory lock on a connection of its own, open as long
  // as the engine: the listener's connection is remade whenever it breaks,
  // and a pooled one goes from hand to hand. (Should the server drop this
  // connection, the lock goes with it; so do every other connection and the
  // work on them.)
  Status Hold(EngineUse use) override {
    if (held_) return Status::Invalid("the PostgreSQL engine is already held");
    const bool serve = use != EngineUse::kMaintain;  // servers and backups share
    bool broken = false;
    return Guarded(
        [&] {
          std::unique_ptr<pqxx::connection> conn = postgres::Connect(conninfo_);
          const std::string database = "PostgreSQL database '" + std::string(conn->dbname()) + "'";
          {
            pqxx::nontransaction tx(*conn);
            const std::string take =
                serve ? "pg_try_advisory_lock_shared(" : "pg_try_advisory_lock(";
            if (!tx.exec1("SELECT " + take + std::to_string(kUseLock) + ")")[0].as<bool>()) {
              // A server is refused by a command; a command by servers, or by
              // another command (an exclusive holder).
              const bool command =
                  serve ||
                  tx.exec1(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = "
                        "current_database()) AND classid = " +
                        std::to_string(kUseLock >> 32) +
                        " AND objid = " + std::to_string(kUseLock & 0xffffffffLL) +
                        " AND objsubid = 1 AND mode = 'ExclusiveLock' AND granted)")[0]
                      .as<bool>();
              return Status::Unavailable(
                  database + (command ? " is being migrated, restored or checked by another "
                                        "quire command"
                                      : " is in use by a running quire server; stop every "
                                        "server first"));
            }
          }
          held_ = std::move(conn);
          return Status::Ok();
        },
        &broken);
  }

  Status Backup(const std::string&) override {
    return Status::Invalid(
        "a PostgreSQL database is backed up with PostgreSQL's own tools: pg_dump "
        "--format=custom takes a consistent copy while servers run (pg_restore brings it back; "
        "then run quire restore --mark on it)");
  }

  // PostgreSQL keeps its own indexes and constraints; what is left to check
  // is cheap: the one head row, its schema version, no event above the head
  // (a later write would collide with it; reads up to the head never see
  // it), and no index left invalid by a failed CREATE INDEX CONCURRENTLY.
  Status CheckIntegrity(std::vector<std::string>* problems) override {
    return pool_.Run([&](pqxx::connection& conn) {
      pqxx::nontransaction tx(conn);
      const pqxx::row meta = tx.exec1(
          "SELECT count(*), max(schema_version), max(last_seq), "
          "(SELECT max(seq) FROM events) FROM quire_meta");
      const auto rows = meta[0].as<std::int64_t>();
      if (rows != 1) {
        problems->push_back("quire_meta has " + std::to_string(rows) + " rows instead of one");
      } else if (const int version = meta[1].as<int>(); version != postgres::kSchemaVersion) {
        problems->push_back("quire_meta says schema version " + std::to_string(version) +
                            " instead of " + std::to_string(postgres::kSchemaVersion));
      }
      if (rows > 0 && !meta[3].is_null() &&
          meta[3].as<std::int64_t>() > meta[2].as<std::int64_t>()) {
        problems->push_back("events go up to sequence " + meta[3].as<std::string>() +
                            ", above the head's last sequence " + meta[2].as<std::string>());
      }
      for (const pqxx::row& r :
           tx.exec("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid AND "
                   "indrelid = ANY (ARRAY['quire_meta', 'users', 'sessions', 'invitations', "
                   "'conversations', 'messages', 'events', 'idempotency']::regclass[])")) {
        problems->push_back("index " + r[0].as<std::string>() +
                            " is invalid (a failed CREATE INDEX CONCURRENTLY?); drop it and "
                            "create it again");
      }
      return Status::Ok();
    });
  }

  Status BeginRead(std::unique_ptr<RecordReader>* out) override {
    std::unique_ptr<pqxx::connection> conn;
    if (Status s = pool_.Acquire(&conn); !s.ok()) return s;
    std::shared_ptr<PooledRead> read;
    bool broken = false;
    Status s = Guarded(
        [&] {
          read = std::make_shared<PooledRead>(pool_, std::move(conn));
          return Status::Ok();
        },
        &broken);
    if (!s.ok()) return s;
    *out = std::make_unique<PostgresRecords>(*read->tx, &read->broken, read);
    return Status::Ok();
  }

 private:
  // ---- Change notification ----

  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection& conn, CommitSignal& commits)
        : pqxx::notification_receiver(conn, kChannel), commits_(commits) {}
    void operator()(const std::string&, int) override { commits_.Notify(); }

   private:
    CommitSignal& commits_;
  };

  // The listener thread: LISTEN on its own connection; reconnect when it
  // breaks, waking waiters each time (commits may have been missed).
  void Listen() {
    while (!commits_.closed()) {
      bool broken = false;
      Guarded(
          [&] {
            std::unique_ptr<pqxx::connection> conn = postgres::Connect(conninfo_);
            Receiver receiver(*conn, commits_);
            commits_.Notify();
            while (!commits_.closed()) conn->await_notification(0, 200000);
            return Status::Ok();
          },
          &broken);
      // A pause before reconnecting; a commit or the close ends it early.
      commits_.Wait(commits_.generation(), std::chrono::milliseconds(250));
    }
  }

  const std::string conninfo_;
  ConnectionPool pool_;
  CommitSignal commits_;
  std::thread listener_;
  std::unique_ptr<pqxx::connection> held_;  // holds the use lock (Hold)
};

}  // namespace

Status OpenPostgresEngine(const std::string& url, EngineUse use, std::unique_ptr<Engine>* out) {
  auto engine = std::make_unique<PostgresEngine>(postgres::ConnectionString(url));
  if (Status s = engine->Open(); !s.ok()) return s;
  if (Status s = engine->Hold(use); !s.ok()) return s;
  *out = std::move(engine);
  return Status::Ok();
}

Status OpenPostgresStore(const std::string& url, std::unique_ptr<Store>* out) {
  std::unique_ptr<Engine> engine;
  if (Status s = OpenPostgresEngine(url, EngineUse::kServe, &engine); !s.ok()) return s;
  return OpenEngineStore(std::move(engine), out);
}

void RegisterPostgresBackend(Registry& registry) {
  auto open = [](const std::string& url, EngineUse use, std::unique_ptr<Engine>* out) {
    if (!url.starts_with("postgres://") && !url.starts_with("postgresql://")) {
      return Status::Invalid("not a PostgreSQL database URL: '" + RedactedUrl(url) +
                             "' (postgresql://USER@HOST/DB)");
    }
    return OpenPostgresEngine(url, use, out);
  };
  registry.RegisterEngine("postgres", open);
  registry.RegisterEngine("postgresql", open);
}

}  // namespace quire::storage
