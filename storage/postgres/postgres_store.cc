#include "storage/postgres/postgres_store.h"
#include "storage/commit_signal.h"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/postgres/postgres_connection.h"
#include "storage/postgres/postgres_schema.h"

namespace quire::storage {
namespace {

using postgres::ConnectionPool;
using postgres::Guarded;

constexpr const char* kChannel = "quire_commits";
constexpr std::size_t kMaxIdleConnections = 8;

// Every statement, prepared on each connection of the pool.
constexpr std::pair<const char*, const char*> kStatements[] = {
    // Sequence allocation: the row lock is held to the commit.
    {"head_lock", "SELECT last_seq FROM quire_meta WHERE id = 1 FOR UPDATE"},
    // Publishes the new head, and wakes every instance at commit.
    {"head_publish",
     "WITH head AS (UPDATE quire_meta SET last_seq = $1::bigint WHERE id = 1) "
     "SELECT pg_notify('quire_commits', $1::bigint::text)"},
    // Reads.
    {"head_get", "SELECT last_seq, purged_through FROM quire_meta WHERE id = 1"},
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
    {"message_get",
     "SELECT id, conversation, sender, body, at, deleted_at FROM messages WHERE id = $1"},
    // Writes.
    {"event_insert",
     "INSERT INTO events (seq, kind, at, entity, conversation, sender, text) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7)"},
    {"event_tombstone",
     "UPDATE events SET text = '', deleted_at = $1 WHERE entity = $2 AND kind = $3"},
    {"user_name_taken", "SELECT 1 FROM users WHERE canonical = $1"},
    {"user_insert",
     "INSERT INTO users (id, name, canonical, password_hash, created_at) "
     "VALUES ($1, $2, $3, $4, $5)"},
    {"user_set_password", "UPDATE users SET password_hash = $1 WHERE id = $2"},
    {"session_insert",
     "INSERT INTO sessions (token_hash, user_id, created_at, last_used) VALUES ($1, $2, $3, $4)"},
    {"session_delete", "DELETE FROM sessions WHERE token_hash = $1"},
    {"sessions_of_user_delete", "DELETE FROM sessions WHERE user_id = $1"},
    {"session_touch",
     "UPDATE sessions SET last_used = greatest(last_used, $1) WHERE token_hash = $2"},
    {"invitation_insert",
     "INSERT INTO invitations (id, issuer_id, issued_at, used) VALUES ($1, $2, $3, $4)"},
    {"invitation_state", "SELECT issued_at, used FROM invitations WHERE id = $1"},
    {"invitation_use", "UPDATE invitations SET used = true WHERE id = $1"},
    {"conversation_name_taken",
     "SELECT 1 FROM conversations WHERE canonical = $1 AND deleted_at IS NULL"},
    {"conversation_insert",
     "INSERT INTO conversations (id, name, canonical, created_at, last_activity) "
     "VALUES ($1, $2, $3, $4, $5)"},
    {"conversation_state", "SELECT deleted_at FROM conversations WHERE id = $1"},
    {"conversation_blank",
     "UPDATE conversations SET name = '', canonical = '', deleted_at = $1 WHERE id = $2"},
    {"conversation_has_live_messages",
     "SELECT 1 FROM messages WHERE conversation = $1 AND deleted_at IS NULL LIMIT 1"},
    {"conversation_live_messages",
     "SELECT id FROM messages WHERE conversation = $1 AND deleted_at IS NULL "
     "ORDER BY at, id COLLATE \"C\""},
    // A message to a live conversation, its last_activity and its event, in
    // one round trip; nothing at all (count 0) when the conversation is not live.
    {"message_send",
     "WITH live AS (UPDATE conversations SET last_activity = $5::bigint "
     "WHERE id = $2::text AND deleted_at IS NULL RETURNING id), "
     "message AS (INSERT INTO messages (id, conversation, sender, body, at) "
     "SELECT $1::text, id, $3::text, $4::text, $5::bigint FROM live RETURNING id, conversation), "
     "event AS (INSERT INTO events (seq, kind, at, entity, conversation, sender, text) "
     "SELECT $6::bigint, 4, $5::bigint, id, conversation, $3::text, $4::text FROM message "
     "RETURNING seq) "
     "SELECT count(*) FROM event"},
    // A run of sends in one statement (SendRun): $1 is a JSON array of
    // {n, id, conversation, sender, body, at}; sends to a conversation that
    // is not live are left out; the others get sequences $2+1, $2+2, … in
    // the order of n, and each conversation the `at` of its last send. The
    // rows returned are the n of the sends that were stored. (PostgreSQL runs
    // every data-modifying WITH part once, to completion, read or not.)
    {"messages_send_run",
     "WITH input AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(n int, id text, "
     "conversation text, sender text, body text, at bigint)), "
     "live AS (SELECT i.*, row_number() OVER (ORDER BY i.n) AS k FROM input i "
     "JOIN conversations c ON c.id = i.conversation AND c.deleted_at IS NULL), "
     "touched AS (UPDATE conversations c SET last_activity = last.at FROM "
     "(SELECT DISTINCT ON (conversation) conversation, at FROM live "
     "ORDER BY conversation, n DESC) last WHERE c.id = last.conversation RETURNING c.id), "
     "message AS (INSERT INTO messages (id, conversation, sender, body, at) "
     "SELECT id, conversation, sender, body, at FROM live ORDER BY n RETURNING id), "
     "event AS (INSERT INTO events (seq, kind, at, entity, conversation, sender, text) "
     "SELECT $2::bigint + k, 4, at, id, conversation, sender, body FROM live RETURNING seq) "
     "SELECT n FROM live ORDER BY n"},
    {"message_state", "SELECT conversation, deleted_at FROM messages WHERE id = $1"},
    {"message_blank", "UPDATE messages SET body = '', deleted_at = $1 WHERE id = $2"},
    {"idempotency_get",
     "SELECT message_id, conversation, at FROM idempotency "
     "WHERE sender = $1 AND key = $2 AND created_at >= $3"},
    // Replaces an expired record of the same key.
    {"idempotency_put",
     "INSERT INTO idempotency (sender, key, message_id, conversation, at, created_at) "
     "VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (sender, key) DO UPDATE SET "
     "message_id = EXCLUDED.message_id, conversation = EXCLUDED.conversation, "
     "at = EXCLUDED.at, created_at = EXCLUDED.created_at"},
    // Retention.
    {"messages_due",
     "SELECT id, conversation FROM messages WHERE deleted_at IS NULL AND at < $1 "
     "ORDER BY at, id COLLATE \"C\""},
    {"conversations_idle",
     "SELECT id FROM conversations WHERE deleted_at IS NULL AND last_activity < $1 "
     "ORDER BY last_activity, id COLLATE \"C\""},
    {"purge_message_events",
     "DELETE FROM events WHERE entity IN (SELECT id FROM messages WHERE deleted_at < $1) "
     "RETURNING seq"},
    {"purge_messages", "DELETE FROM messages WHERE deleted_at < $1"},
    {"purge_conversation_message_events",
     "DELETE FROM events WHERE entity IN (SELECT m.id FROM messages m "
     "JOIN conversations c ON c.id = m.conversation WHERE c.deleted_at < $1) RETURNING seq"},
    {"purge_conversation_messages",
     "DELETE FROM messages WHERE conversation IN "
     "(SELECT id FROM conversations WHERE deleted_at < $1)"},
    {"purge_conversation_events",
     "DELETE FROM events WHERE entity IN (SELECT id FROM conversations WHERE deleted_at < $1) "
     "RETURNING seq"},
    {"purge_conversations", "DELETE FROM conversations WHERE deleted_at < $1"},
    {"purged_raise",
     "UPDATE quire_meta SET purged_through = greatest(purged_through, $1) WHERE id = 1"},
    {"purge_sessions", "DELETE FROM sessions WHERE last_used < $1"},
    {"purge_invitations", "DELETE FROM invitations WHERE issued_at < $1"},
    {"purge_idempotency", "DELETE FROM idempotency WHERE created_at < $1"},
};

void PrepareStatements(pqxx::connection& conn) {
  for (const auto& [name, sql] : kStatements) conn.prepare(name, sql);
}

// A failure that concerns one write only: its savepoint is rolled back and
// the batch goes on. Anything else fails the batch.
bool IsWriteLocal(const Status& s) {
  return s.code() == Status::Code::kNotFound || s.code() == Status::Code::kConflict ||
         s.code() == Status::Code::kInvalid;
}

std::optional<Micros> OptMicros(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::int64_t>();
}

User UserFrom(const pqxx::row& r) {
  return User{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
              r[3].as<std::string>(), r[4].as<std::int64_t>()};
}

Message MessageFrom(const pqxx::row& r) {
  return Message{r[0].as<std::string>(), r[1].as<std::string>(),  r[2].as<std::string>(),
                 r[3].as<std::string>(), r[4].as<std::int64_t>(), OptMicros(r[5])};
}

// Runs one prepared read statement with `args` in its own snapshot.
template <typename... Args>
pqxx::result Query(pqxx::connection& conn, const char* statement, Args&&... args) {
  pqxx::nontransaction tx(conn);
  return tx.exec_prepared(statement, std::forward<Args>(args)...);
}

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(std::string conninfo)
      : conninfo_(std::move(conninfo)), pool_(conninfo_, kMaxIdleConnections, PrepareStatements) {}

  ~PostgresStore() override {
    commits_.Close();  // ends the listener's loop and every WaitForCommit
    if (listener_.joinable()) listener_.join();
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

  Status Apply(std::span<Write> batch) override;

  Status GetHead(Head* out) override {
    return pool_.Run([&](pqxx::connection& c) {
      const pqxx::result r = Query(c, "head_get");
      if (r.empty()) return Status::Corrupt("quire_meta is empty");
      *out = Head{r[0][0].as<std::int64_t>(), r[0][1].as<std::int64_t>()};
      return Status::Ok();
    });
  }

  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    if (limit == 0 || upto <= after) return Status::Ok();
    const auto max_limit = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    const auto bounded = static_cast<std::int64_t>(std::min(limit, max_limit));
    return pool_.Run([&](pqxx::connection& c) {
      const pqxx::result r = Query(c, "events_read", after, upto, bounded);
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
    return pool_.Run([&](pqxx::connection& c) {
      *out = Query(c, "users_any")[0][0].as<bool>();
      return Status::Ok();
    });
  }

  Status GetUser(const std::string& id, User* out) override {
    return GetOne("user_get", id, "no user " + id, out, UserFrom);
  }

  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return GetOne("user_by_canonical", canonical, "no user with that name", out, UserFrom);
  }

  Status FindSession(const std::string& token_hash, Session* out) override {
    return GetOne("session_get", token_hash, "no such session", out, [](const pqxx::row& r) {
      return Session{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::int64_t>(),
                     r[3].as<std::int64_t>()};
    });
  }

  Status GetInvitation(const std::string& id, Invitation* out) override {
    return GetOne("invitation_get", id, "no invitation " + id, out, [](const pqxx::row& r) {
      return Invitation{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::int64_t>(),
                        r[3].as<bool>()};
    });
  }

  Status GetConversation(const std::string& id, Conversation* out) override {
    return GetOne("conversation_get", id, "no conversation " + id, out, [](const pqxx::row& r) {
      return Conversation{r[0].as<std::string>(),  r[1].as<std::string>(),  r[2].as<std::string>(),
                          r[3].as<std::int64_t>(), r[4].as<std::int64_t>(), OptMicros(r[5])};
    });
  }

  Status GetMessage(const std::string& id, Message* out) override {
    return GetOne("message_get", id, "no message " + id, out, MessageFrom);
  }

  std::uint64_t CommitGeneration() override { return commits_.generation(); }

  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) override {
    return commits_.Wait(seen, timeout);
  }

 private:
  template <typename T, typename Map>
  Status GetOne(const char* statement, const std::string& key, const std::string& missing, T* out,
                Map map) {
    return pool_.Run([&](pqxx::connection& c) {
      const pqxx::result r = Query(c, statement, key);
      if (r.empty()) return Status::NotFound(missing);
      *out = map(r[0]);
      return Status::Ok();
    });
  }

  // ---- Change notification ----

  class Receiver final : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection& conn, PostgresStore& store)
        : pqxx::notification_receiver(conn, kChannel), store_(store) {}
    void operator()(const std::string&, int) override { store_.commits_.Notify(); }

   private:
    PostgresStore& store_;
  };

  // The listener thread: LISTEN on its own connection; reconnect when it
  // breaks, waking waiters each time (commits may have been missed).
  void Listen() {
    while (!commits_.closed()) {
      bool broken = false;
      Guarded(
          [&] {
            std::unique_ptr<pqxx::connection> conn = postgres::Connect(conninfo_);
            Receiver receiver(*conn, *this);
            commits_.Notify();
            while (!commits_.closed()) conn->await_notification(0, 200000);
            return Status::Ok();
          },
          &broken);
      // A pause before reconnecting; a commit or the close ends it early.
      commits_.Wait(commits_.generation(), std::chrono::milliseconds(250));
    }
  }

  // ---- Writes: all inside Apply's transaction, on the savepoint `tx` ----

  // One transaction for the batch; see the definition for `savepoints`.
  Status ApplyBatch(pqxx::connection& conn, std::span<Write> batch, bool savepoints);

  using Tx = pqxx::transaction_base;

  // A send that SendRun can take: no idempotency key to look up or record.
  static bool IsPlainSend(const op::Operation& operation) {
    const auto* send = std::get_if<op::SendMessage>(&operation);
    return send && send->idempotency_key.empty();
  }

  // Applies consecutive plain sends with one statement instead of one round
  // trip each (the head row lock is held meanwhile, so round trips are what
  // limits a batch): the same rules as Do(SendMessage), a send to a
  // conversation that is not live fails alone with NotFound and takes no
  // sequence. (A run holds only sends, which change no conversation's
  // liveness, so checking liveness once for the run is checking it for each.)
  void SendRun(Tx& tx, std::span<Write> run) {
    nlohmann::json rows = nlohmann::json::array();
    for (std::size_t n = 0; n < run.size(); ++n) {
      const Message& m = std::get<op::SendMessage>(run[n].op).message;
      rows.push_back({{"n", n},
                      {"id", m.id},
                      {"conversation", m.conversation},
                      {"sender", m.sender},
                      {"body", m.body},
                      {"at", m.at}});
    }
    const pqxx::result stored = tx.exec_prepared("messages_send_run", rows.dump(), seq_);
    std::vector<bool> ok(run.size(), false);
    for (const pqxx::row& row : stored) ok[row[0].as<std::size_t>()] = true;
    for (std::size_t n = 0; n < run.size(); ++n) {
      auto& send = std::get<op::SendMessage>(run[n].op);
      send.replayed = false;
      if (ok[n]) {
        send.message.deleted_at = std::nullopt;
        run[n].last_seq = ++seq_;
      } else {
        run[n].status = Status::NotFound("no live conversation " + send.message.conversation);
      }
    }
  }

  Status ApplyOne(Tx& tx, op::Operation& operation) {
    return std::visit([&](auto& o) { return Do(tx, o); }, operation);
  }

  static bool Exists(Tx& tx, const char* statement, const std::string& key) {
    return !tx.exec_prepared(statement, key).empty();
  }

  // Appends an event with the next sequence.
  void Emit(Tx& tx, EventKind kind, Micros at, const std::string& id,
            const std::string& conversation, const std::string& sender, const std::string& text) {
    tx.exec_prepared0("event_insert", ++seq_, static_cast<int>(kind), at, id, conversation, sender,
                      text);
  }

  // Blanks the text of an entity's created/sent event and marks it deleted.
  static void Tombstone(Tx& tx, EventKind kind, const std::string& id, Micros at) {
    tx.exec_prepared0("event_tombstone", at, id, static_cast<int>(kind));
  }

  Status InsertUser(Tx& tx, const User& user) {
    if (Exists(tx, "user_name_taken", user.canonical)) {
      return Status::Conflict("user name is taken");
    }
    tx.exec_prepared0("user_insert", user.id, user.name, user.canonical, user.password_hash,
                      user.created_at);
    Emit(tx, EventKind::kUserCreated, user.created_at, user.id, "", "", user.name);
    return Status::Ok();
  }

  static void InsertSession(Tx& tx, const Session& s) {
    tx.exec_prepared0("session_insert", s.token_hash, s.user_id, s.created_at, s.last_used);
  }

  void DeleteMessageRow(Tx& tx, const std::string& id, const std::string& conversation, Micros at) {
    tx.exec_prepared0("message_blank", at, id);
    Tombstone(tx, EventKind::kMessageSent, id, at);
    Emit(tx, EventKind::kMessageDeleted, at, id, conversation, "", "");
  }

  void DeleteConversationRow(Tx& tx, const std::string& id, Micros at) {
    // The canonical name goes too: it is the name's text, and it frees the name.
    tx.exec_prepared0("conversation_blank", at, id);
    Tombstone(tx, EventKind::kConversationCreated, id, at);
    Emit(tx, EventKind::kConversationDeleted, at, id, "", "", "");
  }

  // Whether the conversation exists and is not deleted.
  static bool IsLiveConversation(Tx& tx, const std::string& id) {
    const pqxx::result r = tx.exec_prepared("conversation_state", id);
    return !r.empty() && r[0][0].is_null();
  }

  Status Do(Tx& tx, op::Setup& o) {
    if (tx.exec_prepared("users_any")[0][0].as<bool>()) {
      return Status::Conflict("setup has already been done");
    }
    if (Status s = InsertUser(tx, o.user); !s.ok()) return s;
    InsertSession(tx, o.session);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::AcceptInvitation& o) {
    const pqxx::result r = tx.exec_prepared("invitation_state", o.invitation_id);
    if (r.empty() || r[0][1].as<bool>() || r[0][0].as<std::int64_t>() < o.issued_after) {
      return Status::NotFound("no usable invitation " + o.invitation_id);
    }
    if (Status s = InsertUser(tx, o.user); !s.ok()) return s;
    tx.exec_prepared0("invitation_use", o.invitation_id);
    InsertSession(tx, o.session);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::CreateSession& o) {
    InsertSession(tx, o.session);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::DeleteSession& o) {
    if (tx.exec_prepared0("session_delete", o.token_hash).affected_rows() == 0) {
      return Status::NotFound("no such session");
    }
    return Status::Ok();
  }

  Status Do(Tx& tx, op::ChangePassword& o) {
    if (tx.exec_prepared0("user_set_password", o.password_hash, o.user_id).affected_rows() == 0) {
      return Status::NotFound("no user " + o.user_id);
    }
    tx.exec_prepared0("sessions_of_user_delete", o.user_id);
    InsertSession(tx, o.session);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::TouchSession& o) {
    if (tx.exec_prepared0("session_touch", o.at, o.token_hash).affected_rows() == 0) {
      return Status::NotFound("no such session");
    }
    return Status::Ok();
  }

  Status Do(Tx& tx, op::CreateInvitation& o) {
    const Invitation& i = o.invitation;
    tx.exec_prepared0("invitation_insert", i.id, i.issuer_id, i.issued_at, i.used);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::CreateConversation& o) {
    const Conversation& c = o.conversation;
    if (Exists(tx, "conversation_name_taken", c.canonical)) {
      return Status::Conflict("a live conversation has that name");
    }
    tx.exec_prepared0("conversation_insert", c.id, c.name, c.canonical, c.created_at,
                      c.last_activity);
    Emit(tx, EventKind::kConversationCreated, c.created_at, c.id, "", "", c.name);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::SendMessage& o) {
    Message& m = o.message;
    o.replayed = false;
    if (!o.idempotency_key.empty()) {
      const pqxx::result r =
          tx.exec_prepared("idempotency_get", m.sender, o.idempotency_key, o.key_after);
      if (!r.empty()) {
        Message first{r[0][0].as<std::string>(),
                      r[0][1].as<std::string>(),
                      m.sender,
                      "",
                      r[0][2].as<std::int64_t>(),
                      std::nullopt};
        // A purged message is answered from the idempotency record.
        const pqxx::result stored = tx.exec_prepared("message_get", first.id);
        if (!stored.empty()) first = MessageFrom(stored[0]);
        m = std::move(first);
        o.replayed = true;
        return Status::Ok();
      }
    }
    m.deleted_at = std::nullopt;
    static_assert(static_cast<int>(EventKind::kMessageSent) == 4);  // in message_send
    const std::int64_t seq = seq_ + 1;
    if (tx.exec_prepared1("message_send", m.id, m.conversation, m.sender, m.body, m.at, seq)[0]
            .as<std::int64_t>() == 0) {
      return Status::NotFound("no live conversation " + m.conversation);
    }
    seq_ = seq;
    if (!o.idempotency_key.empty()) {
      tx.exec_prepared0("idempotency_put", m.sender, o.idempotency_key, m.id, m.conversation, m.at);
    }
    return Status::Ok();
  }

  Status Do(Tx& tx, op::DeleteConversation& o) {
    if (!IsLiveConversation(tx, o.id)) return Status::NotFound("no live conversation " + o.id);
    if (Exists(tx, "conversation_has_live_messages", o.id)) {
      return Status::Conflict("the conversation still has live messages");
    }
    DeleteConversationRow(tx, o.id, o.at);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::DeleteMessage& o) {
    const pqxx::result r = tx.exec_prepared("message_state", o.id);
    if (r.empty() || !r[0][1].is_null()) return Status::NotFound("no live message " + o.id);
    DeleteMessageRow(tx, o.id, r[0][0].as<std::string>(), o.at);
    return Status::Ok();
  }

  Status Do(Tx& tx, op::Expire& o) {
    o.deleted_messages = 0;
    o.deleted_conversations = 0;
    // Due messages first, oldest first.
    for (const pqxx::row& due : tx.exec_prepared("messages_due", o.messages_sent_before)) {
      DeleteMessageRow(tx, due[0].as<std::string>(), due[1].as<std::string>(), o.at);
      ++o.deleted_messages;
    }
    // Then idle conversations, each after its live messages.
    for (const pqxx::row& idle :
         tx.exec_prepared("conversations_idle", o.conversations_idle_before)) {
      const std::string conversation = idle[0].as<std::string>();
      for (const pqxx::row& m : tx.exec_prepared("conversation_live_messages", conversation)) {
        DeleteMessageRow(tx, m[0].as<std::string>(), conversation, o.at);
        ++o.deleted_messages;
      }
      DeleteConversationRow(tx, conversation, o.at);
      ++o.deleted_conversations;
    }
    return Status::Ok();
  }

  Status Do(Tx& tx, op::Purge& o) {
    o.purged_events = 0;
    std::int64_t highest = 0;
    auto drain = [&](const pqxx::result& seqs) {
      for (const pqxx::row& row : seqs) {
        ++o.purged_events;
        highest = std::max(highest, row[0].as<std::int64_t>());
      }
    };
    const Micros cutoff = o.deleted_before;
    // Messages deleted before the cutoff. (A conversation is deleted only
    // after its messages, so a purged conversation's messages are among them;
    // the second pair of statements makes sure of it.)
    drain(tx.exec_prepared("purge_message_events", cutoff));
    tx.exec_prepared0("purge_messages", cutoff);
    drain(tx.exec_prepared("purge_conversation_message_events", cutoff));
    tx.exec_prepared0("purge_conversation_messages", cutoff);
    drain(tx.exec_prepared("purge_conversation_events", cutoff));
    tx.exec_prepared0("purge_conversations", cutoff);
    if (highest > 0) tx.exec_prepared0("purged_raise", highest);
    tx.exec_prepared0("purge_sessions", o.sessions_used_before);
    tx.exec_prepared0("purge_invitations", o.invitations_issued_before);
    tx.exec_prepared0("purge_idempotency", o.idempotency_before);
    return Status::Ok();
  }

  const std::string conninfo_;
  ConnectionPool pool_;

  std::mutex write_mu_;   // serializes Apply within this process
  std::int64_t seq_ = 0;  // last sequence allocated in the open transaction

  CommitSignal commits_;
  std::thread listener_;
};

Status PostgresStore::Apply(std::span<Write> batch) {
  if (batch.empty()) return Status::Ok();

  std::lock_guard<std::mutex> lock(write_mu_);
  std::unique_ptr<pqxx::connection> conn;
  Status failed = pool_.Acquire(&conn);
  if (failed.ok()) {
    bool broken = false;
    failed = Guarded([&] { return ApplyBatch(*conn, batch, /*savepoints=*/false); }, &broken);
    if (!failed.ok() && !broken && IsWriteLocal(failed)) {
      // An SQL error in one write (an id already taken, a missing row) has
      // aborted the whole transaction: apply the batch again with a
      // savepoint for each write, so that only that write fails.
      failed = Guarded([&] { return ApplyBatch(*conn, batch, /*savepoints=*/true); }, &broken);
    }
    if (!broken) pool_.Release(std::move(conn));
  }
  if (!failed.ok()) {
    SetOutcomes(batch, failed);
    return failed;
  }
  commits_.Notify();
  return Status::Ok();
}

// Every Do() checks its preconditions before it changes anything, so a write
// that returns NotFound or Conflict has changed nothing and needs no
// savepoint of its own. Only an SQL error (which aborts a PostgreSQL
// transaction) does: with `savepoints` each write runs in its own, and a
// write-local SQL error fails that write alone; without, any SQL error
// escapes and fails the batch (Apply then retries with savepoints).
Status PostgresStore::ApplyBatch(pqxx::connection& conn, std::span<Write> batch, bool savepoints) {
  SetOutcomes(batch, Status::Ok());
  pqxx::work tx(conn);
  // The head row lock: held until COMMIT, so no other writer, in any process,
  // takes numbers until this transaction's events are visible.
  seq_ = tx.exec_prepared1("head_lock")[0].as<std::int64_t>();
  const std::int64_t first = seq_;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!savepoints) {
      // Consecutive sends without an idempotency key: one round trip for all.
      std::size_t end = i;
      while (end < batch.size() && IsPlainSend(batch[end].op)) ++end;
      if (end - i >= 2) {
        SendRun(tx, batch.subspan(i, end - i));
        i = end - 1;
        continue;
      }
    }
    Write& w = batch[i];
    const std::int64_t before = seq_;
    Status s;
    if (savepoints) {
      // Plain SAVEPOINT statements: libpqxx 6's subtransaction does not roll
      // back to its savepoint when its first statement failed.
      tx.exec0("SAVEPOINT quire_write");
      try {
        s = ApplyOne(tx, w.op);
      } catch (const pqxx::sql_error&) {
        bool broken = false;
        s = postgres::CurrentExceptionStatus(&broken);
        if (broken || !IsWriteLocal(s)) throw;
      }
      tx.exec0(s.ok() ? "RELEASE SAVEPOINT quire_write"
                      : "ROLLBACK TO SAVEPOINT quire_write; RELEASE SAVEPOINT quire_write");
    } else {
      s = ApplyOne(tx, w.op);
    }
    if (s.ok()) {
      w.last_seq = seq_ > before ? seq_ : 0;
    } else {
      // Nothing of this write committed, so its sequences were never seen.
      seq_ = before;
      w.status = std::move(s);
    }
  }
  if (seq_ != first) tx.exec_prepared("head_publish", seq_);
  tx.commit();
  return Status::Ok();
}

}  // namespace

Status OpenPostgresStore(const std::string& url, std::unique_ptr<Store>* out) {
  auto store = std::make_unique<PostgresStore>(postgres::ConnectionString(url));
  if (Status s = store->Open(); !s.ok()) return s;
  *out = std::move(store);
  return Status::Ok();
}

void RegisterPostgresBackend(Registry& registry) {
  auto open = [](const std::string& url, std::unique_ptr<Store>* out) {
    if (!url.starts_with("postgres://") && !url.starts_with("postgresql://")) {
      return Status::Invalid("not a PostgreSQL database URL: '" + RedactedUrl(url) +
                             "' (postgresql://USER@HOST/DB)");
    }
    return OpenPostgresStore(url, out);
  };
  registry.Register("postgres", open);
  registry.Register("postgresql", open);
}

}  // namespace quire::storage
