#include "storage/sqlite/sqlite_store.h"
#include "storage/commit_signal.h"

#include <sqlite3.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "storage/sqlite/sqlite_db.h"
#include "storage/sqlite/sqlite_schema.h"

namespace quire::storage {
namespace {

using sqlite::Db;
using sqlite::SqlFailure;
using sqlite::Stmt;

// Idle read connections kept for reuse; more are opened under load and closed
// when returned beyond this number.
constexpr std::size_t kMaxIdleReaders = 8;

// Runs `fn`, turning anything thrown into a Status.
template <typename Fn>
Status Guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const SqlFailure& failure) {
    return failure.status;
  } catch (const std::exception& e) {
    return Status::IoError(std::string("SQLite backend: ") + e.what());
  }
}

void RollbackQuietly(Db& db) {
  if (db.in_transaction()) sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

// A failure that concerns one write only: its savepoint is rolled back and
// the batch goes on. Anything else (I/O, full disk, busy…) fails the batch.
bool IsWriteLocal(const Status& s) {
  return s.code() == Status::Code::kNotFound || s.code() == Status::Code::kConflict ||
         s.code() == Status::Code::kInvalid;
}

// ---- Row mapping (column orders match the SELECTs below) ----

User UserFrom(const Stmt& q) {
  return User{q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4)};
}

Session SessionFrom(const Stmt& q) {
  return Session{q.Text(0), q.Text(1), q.Int(2), q.Int(3)};
}

Invitation InvitationFrom(const Stmt& q) {
  return Invitation{q.Text(0), q.Text(1), q.Int(2), q.Int(3) != 0};
}

Conversation ConversationFrom(const Stmt& q) {
  return Conversation{q.Text(0), q.Text(1), q.Text(2), q.Int(3), q.Int(4), q.OptInt(5)};
}

Message MessageFrom(const Stmt& q) {
  return Message{q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4), q.OptInt(5)};
}

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, std::unique_ptr<Db> writer)
      : path_(std::move(path)), writer_(std::move(writer)) {}

  ~SqliteStore() override {
    // Readers first: the writer, closing last, checkpoints and removes the WAL.
    idle_readers_.clear();
    writer_.reset();
  }

  Capabilities capabilities() const override {
    Capabilities caps;
    // One writer connection per process, and commit notifications
    // (WaitForCommit) do not reach other processes.
    caps.multi_process_writers = false;
    caps.survives_process_kill = true;
    caps.survives_power_loss = true;  // WAL with synchronous=FULL
    return caps;
  }

  Status Apply(std::span<Write> batch) override;

  Status GetHead(Head* out) override {
    return Read([&](Db& db) {
      Stmt q(db,
             "SELECT (SELECT value FROM meta WHERE key = 'last_seq'),"
             "       (SELECT value FROM meta WHERE key = 'purged_through')");
      if (!q.Next()) return Status::Corrupt("SQLite database '" + path_ + "': meta is empty");
      *out = Head{q.Int(0), q.Int(1)};
      return Status::Ok();
    });
  }

  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    if (limit == 0 || upto <= after) return Status::Ok();
    const auto max_limit = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    const auto bounded = static_cast<std::int64_t>(std::min(limit, max_limit));
    return Read([&](Db& db) {
      Stmt q(db,
             "SELECT seq, kind, at, entity, conversation, sender, text, deleted_at FROM events "
             "WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3");
      q.Bind(after, upto, bounded);
      while (q.Next()) {
        const std::int64_t kind = q.Int(1);
        if (kind < 1 || kind > 5) {
          return Status::Corrupt("SQLite database '" + path_ + "': event " +
                                 std::to_string(q.Int(0)) + " has unknown kind " +
                                 std::to_string(kind));
        }
        out->push_back(Event{q.Int(0), static_cast<EventKind>(kind), q.Int(2), q.Text(3), q.Text(4),
                             q.Text(5), q.Text(6), q.OptInt(7)});
      }
      return Status::Ok();
    });
  }

  Status HasUsers(bool* out) override {
    return Read([&](Db& db) {
      *out = db.QueryInt("SELECT EXISTS (SELECT 1 FROM users)") != 0;
      return Status::Ok();
    });
  }

  Status GetUser(const std::string& id, User* out) override {
    return Read([&](Db& db) {
      Stmt q(db, "SELECT id, name, canonical, password_hash, created_at FROM users WHERE id = ?1");
      if (!q.Bind(id).Next()) return Status::NotFound("no user " + id);
      *out = UserFrom(q);
      return Status::Ok();
    });
  }

  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return Read([&](Db& db) {
      Stmt q(db,
             "SELECT id, name, canonical, password_hash, created_at FROM users "
             "WHERE canonical = ?1");
      if (!q.Bind(canonical).Next()) return Status::NotFound("no user with that name");
      *out = UserFrom(q);
      return Status::Ok();
    });
  }

  Status FindSession(const std::string& token_hash, Session* out) override {
    return Read([&](Db& db) {
      Stmt q(db,
             "SELECT token_hash, user_id, created_at, last_used FROM sessions "
             "WHERE token_hash = ?1");
      if (!q.Bind(token_hash).Next()) return Status::NotFound("no such session");
      *out = SessionFrom(q);
      return Status::Ok();
    });
  }

  Status GetInvitation(const std::string& id, Invitation* out) override {
    return Read([&](Db& db) {
      Stmt q(db, "SELECT id, issuer_id, issued_at, used FROM invitations WHERE id = ?1");
      if (!q.Bind(id).Next()) return Status::NotFound("no invitation " + id);
      *out = InvitationFrom(q);
      return Status::Ok();
    });
  }

  Status GetConversation(const std::string& id, Conversation* out) override {
    return Read([&](Db& db) {
      Stmt q(db,
             "SELECT id, name, canonical, created_at, last_activity, deleted_at "
             "FROM conversations WHERE id = ?1");
      if (!q.Bind(id).Next()) return Status::NotFound("no conversation " + id);
      *out = ConversationFrom(q);
      return Status::Ok();
    });
  }

  Status GetMessage(const std::string& id, Message* out) override {
    return Read([&](Db& db) {
      Stmt q(db,
             "SELECT id, conversation, sender, body, at, deleted_at FROM messages WHERE id = ?1");
      if (!q.Bind(id).Next()) return Status::NotFound("no message " + id);
      *out = MessageFrom(q);
      return Status::Ok();
    });
  }

  std::uint64_t CommitGeneration() override { return commits_.generation(); }

  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) override {
    return commits_.Wait(seen, timeout);
  }

 private:
  // ---- Reads ----

  // Runs `fn` on a pooled read connection. Each statement is its own short
  // read transaction, ended when the statement is reset.
  template <typename Fn>
  Status Read(Fn&& fn) {
    std::unique_ptr<Db> db;
    Status status = Guarded([&] {
      db = AcquireReader();
      return fn(*db);
    });
    if (db) ReleaseReader(std::move(db));
    return status;
  }

  std::unique_ptr<Db> AcquireReader() {
    {
      std::lock_guard<std::mutex> lock(readers_mu_);
      if (!idle_readers_.empty()) {
        std::unique_ptr<Db> db = std::move(idle_readers_.back());
        idle_readers_.pop_back();
        return db;
      }
    }
    auto db = std::make_unique<Db>(path_, SQLITE_OPEN_READWRITE);
    sqlite::PrepareReader(*db);
    return db;
  }

  void ReleaseReader(std::unique_ptr<Db> db) {
    std::lock_guard<std::mutex> lock(readers_mu_);
    if (idle_readers_.size() < kMaxIdleReaders) idle_readers_.push_back(std::move(db));
  }

  // ---- Writes: all run on writer_ inside Apply's transaction ----

  Status ApplyOne(op::Operation& operation) {
    return std::visit([this](auto& o) { return Do(o); }, operation);
  }

  std::int64_t ReadMeta(const char* key) {
    Stmt q(*writer_, "SELECT value FROM meta WHERE key = ?1");
    if (!q.Bind(key).Next()) {
      throw SqlFailure{
          Status::Corrupt("SQLite database '" + path_ + "': meta." + key + " is missing")};
    }
    return q.Int(0);
  }

  // Appends an event with the next sequence.
  void Emit(EventKind kind, Micros at, const std::string& id, const std::string& conversation,
            const std::string& sender, const std::string& text) {
    Stmt(*writer_,
         "INSERT INTO events (seq, kind, at, entity, conversation, sender, text) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        .Bind(++seq_, static_cast<int>(kind), at, id, conversation, sender, text)
        .Run();
  }

  // Blanks the text of an entity's created/sent event and marks it deleted.
  void Tombstone(EventKind kind, const std::string& id, Micros at) {
    Stmt(*writer_, "UPDATE events SET text = '', deleted_at = ?1 WHERE entity = ?2 AND kind = ?3")
        .Bind(at, id, static_cast<int>(kind))
        .Run();
  }

  bool Exists(const char* sql, const std::string& key) {
    Stmt q(*writer_, sql);
    return q.Bind(key).Next();
  }

  Status InsertUser(const User& user) {
    if (Exists("SELECT 1 FROM users WHERE canonical = ?1", user.canonical)) {
      return Status::Conflict("user name is taken");
    }
    Stmt(*writer_,
         "INSERT INTO users (id, name, canonical, password_hash, created_at) "
         "VALUES (?1, ?2, ?3, ?4, ?5)")
        .Bind(user.id, user.name, user.canonical, user.password_hash, user.created_at)
        .Run();
    Emit(EventKind::kUserCreated, user.created_at, user.id, "", "", user.name);
    return Status::Ok();
  }

  void InsertSession(const Session& s) {
    Stmt(*writer_,
         "INSERT INTO sessions (token_hash, user_id, created_at, last_used) "
         "VALUES (?1, ?2, ?3, ?4)")
        .Bind(s.token_hash, s.user_id, s.created_at, s.last_used)
        .Run();
  }

  void DeleteMessageRow(const std::string& id, const std::string& conversation, Micros at) {
    Stmt(*writer_, "UPDATE messages SET body = '', deleted_at = ?1 WHERE id = ?2")
        .Bind(at, id)
        .Run();
    Tombstone(EventKind::kMessageSent, id, at);
    Emit(EventKind::kMessageDeleted, at, id, conversation, "", "");
  }

  void DeleteConversationRow(const std::string& id, Micros at) {
    // The canonical name goes too: it is the name's text, and it frees the name.
    Stmt(*writer_,
         "UPDATE conversations SET name = '', canonical = '', deleted_at = ?1 WHERE id = ?2")
        .Bind(at, id)
        .Run();
    Tombstone(EventKind::kConversationCreated, id, at);
    Emit(EventKind::kConversationDeleted, at, id, "", "", "");
  }

  // Live messages of a conversation, oldest first: (id).
  std::vector<std::string> LiveMessagesOf(const std::string& conversation) {
    std::vector<std::string> ids;
    Stmt q(*writer_,
           "SELECT id FROM messages WHERE conversation = ?1 AND deleted_at IS NULL "
           "ORDER BY at, id");
    q.Bind(conversation);
    while (q.Next()) ids.push_back(q.Text(0));
    return ids;
  }

  Status Do(op::Setup& o) {
    if (writer_->QueryInt("SELECT EXISTS (SELECT 1 FROM users)") != 0) {
      return Status::Conflict("setup has already been done");
    }
    if (Status s = InsertUser(o.user); !s.ok()) return s;
    InsertSession(o.session);
    return Status::Ok();
  }

  Status Do(op::AcceptInvitation& o) {
    {
      Stmt q(*writer_, "SELECT issued_at, used FROM invitations WHERE id = ?1");
      if (!q.Bind(o.invitation_id).Next() || q.Int(1) != 0 || q.Int(0) < o.issued_after) {
        return Status::NotFound("no usable invitation " + o.invitation_id);
      }
    }
    if (Status s = InsertUser(o.user); !s.ok()) return s;
    Stmt(*writer_, "UPDATE invitations SET used = 1 WHERE id = ?1").Bind(o.invitation_id).Run();
    InsertSession(o.session);
    return Status::Ok();
  }

  Status Do(op::CreateSession& o) {
    InsertSession(o.session);
    return Status::Ok();
  }

  Status Do(op::DeleteSession& o) {
    Stmt q(*writer_, "DELETE FROM sessions WHERE token_hash = ?1");
    q.Bind(o.token_hash).Run();
    if (q.Changes() == 0) return Status::NotFound("no such session");
    return Status::Ok();
  }

  Status Do(op::ChangePassword& o) {
    {
      Stmt q(*writer_, "UPDATE users SET password_hash = ?1 WHERE id = ?2");
      q.Bind(o.password_hash, o.user_id).Run();
      if (q.Changes() == 0) return Status::NotFound("no user " + o.user_id);
    }
    Stmt(*writer_, "DELETE FROM sessions WHERE user_id = ?1").Bind(o.user_id).Run();
    InsertSession(o.session);
    return Status::Ok();
  }

  Status Do(op::TouchSession& o) {
    Stmt q(*writer_, "UPDATE sessions SET last_used = max(last_used, ?1) WHERE token_hash = ?2");
    q.Bind(o.at, o.token_hash).Run();
    if (q.Changes() == 0) return Status::NotFound("no such session");
    return Status::Ok();
  }

  Status Do(op::CreateInvitation& o) {
    const Invitation& i = o.invitation;
    Stmt(*writer_,
         "INSERT INTO invitations (id, issuer_id, issued_at, used) VALUES (?1, ?2, ?3, ?4)")
        .Bind(i.id, i.issuer_id, i.issued_at, i.used)
        .Run();
    return Status::Ok();
  }

  Status Do(op::CreateConversation& o) {
    const Conversation& c = o.conversation;
    if (Exists("SELECT 1 FROM conversations WHERE canonical = ?1 AND deleted_at IS NULL",
               c.canonical)) {
      return Status::Conflict("a live conversation has that name");
    }
    Stmt(*writer_,
         "INSERT INTO conversations (id, name, canonical, created_at, last_activity) "
         "VALUES (?1, ?2, ?3, ?4, ?5)")
        .Bind(c.id, c.name, c.canonical, c.created_at, c.last_activity)
        .Run();
    Emit(EventKind::kConversationCreated, c.created_at, c.id, "", "", c.name);
    return Status::Ok();
  }

  Status Do(op::SendMessage& o) {
    Message& m = o.message;
    o.replayed = false;
    if (!o.idempotency_key.empty()) {
      Stmt q(*writer_,
             "SELECT message_id, conversation, at FROM idempotency "
             "WHERE sender = ?1 AND key = ?2 AND created_at >= ?3");
      if (q.Bind(m.sender, o.idempotency_key, o.key_after).Next()) {
        Message first{q.Text(0), q.Text(1), m.sender, "", q.Int(2), std::nullopt};
        Stmt stored(*writer_,
                    "SELECT id, conversation, sender, body, at, deleted_at FROM messages "
                    "WHERE id = ?1");
        // A purged message is answered from the idempotency record.
        if (stored.Bind(first.id).Next()) first = MessageFrom(stored);
        m = std::move(first);
        o.replayed = true;
        return Status::Ok();
      }
    }
    {
      Stmt q(*writer_, "SELECT deleted_at FROM conversations WHERE id = ?1");
      if (!q.Bind(m.conversation).Next() || q.OptInt(0).has_value()) {
        return Status::NotFound("no live conversation " + m.conversation);
      }
    }
    m.deleted_at = std::nullopt;
    Stmt(*writer_,
         "INSERT INTO messages (id, conversation, sender, body, at) VALUES (?1, ?2, ?3, ?4, ?5)")
        .Bind(m.id, m.conversation, m.sender, m.body, m.at)
        .Run();
    Stmt(*writer_, "UPDATE conversations SET last_activity = ?1 WHERE id = ?2")
        .Bind(m.at, m.conversation)
        .Run();
    Emit(EventKind::kMessageSent, m.at, m.id, m.conversation, m.sender, m.body);
    if (!o.idempotency_key.empty()) {
      // Replaces an expired record of the same key.
      Stmt(*writer_,
           "INSERT OR REPLACE INTO idempotency "
           "(sender, key, message_id, conversation, at, created_at) "
           "VALUES (?1, ?2, ?3, ?4, ?5, ?5)")
          .Bind(m.sender, o.idempotency_key, m.id, m.conversation, m.at)
          .Run();
    }
    return Status::Ok();
  }

  Status Do(op::DeleteConversation& o) {
    {
      Stmt q(*writer_, "SELECT deleted_at FROM conversations WHERE id = ?1");
      if (!q.Bind(o.id).Next() || q.OptInt(0).has_value()) {
        return Status::NotFound("no live conversation " + o.id);
      }
    }
    if (Exists("SELECT 1 FROM messages WHERE conversation = ?1 AND deleted_at IS NULL", o.id)) {
      return Status::Conflict("the conversation still has live messages");
    }
    DeleteConversationRow(o.id, o.at);
    return Status::Ok();
  }

  Status Do(op::DeleteMessage& o) {
    std::string conversation;
    {
      Stmt q(*writer_, "SELECT conversation, deleted_at FROM messages WHERE id = ?1");
      if (!q.Bind(o.id).Next() || q.OptInt(1).has_value()) {
        return Status::NotFound("no live message " + o.id);
      }
      conversation = q.Text(0);
    }
    DeleteMessageRow(o.id, conversation, o.at);
    return Status::Ok();
  }

  Status Do(op::Expire& o) {
    o.deleted_messages = 0;
    o.deleted_conversations = 0;
    // Due messages first, oldest first.
    std::vector<std::pair<std::string, std::string>> due;  // (id, conversation)
    {
      Stmt q(*writer_,
             "SELECT id, conversation FROM messages WHERE deleted_at IS NULL AND at < ?1 "
             "ORDER BY at, id");
      q.Bind(o.messages_sent_before);
      while (q.Next()) due.emplace_back(q.Text(0), q.Text(1));
    }
    for (const auto& [id, conversation] : due) {
      DeleteMessageRow(id, conversation, o.at);
      ++o.deleted_messages;
    }
    // Then idle conversations, each after its live messages.
    std::vector<std::string> idle;
    {
      Stmt q(*writer_,
             "SELECT id FROM conversations WHERE deleted_at IS NULL AND last_activity < ?1 "
             "ORDER BY last_activity, id");
      q.Bind(o.conversations_idle_before);
      while (q.Next()) idle.push_back(q.Text(0));
    }
    for (const std::string& conversation : idle) {
      for (const std::string& id : LiveMessagesOf(conversation)) {
        DeleteMessageRow(id, conversation, o.at);
        ++o.deleted_messages;
      }
      DeleteConversationRow(conversation, o.at);
      ++o.deleted_conversations;
    }
    return Status::Ok();
  }

  Status Do(op::Purge& o) {
    o.purged_events = 0;
    std::int64_t highest = 0;
    auto drain = [&](Stmt& q) {
      while (q.Next()) {
        ++o.purged_events;
        highest = std::max(highest, q.Int(0));
      }
    };
    const Micros cutoff = o.deleted_before;
    // Messages deleted before the cutoff. (A conversation is deleted only
    // after its messages, so a purged conversation's messages are among them;
    // the second pair of statements makes sure of it.)
    {
      Stmt q(*writer_,
             "DELETE FROM events WHERE entity IN "
             "(SELECT id FROM messages WHERE deleted_at < ?1) RETURNING seq");
      q.Bind(cutoff);
      drain(q);
    }
    Stmt(*writer_, "DELETE FROM messages WHERE deleted_at < ?1").Bind(cutoff).Run();
    {
      Stmt q(*writer_,
             "DELETE FROM events WHERE entity IN (SELECT m.id FROM messages m "
             "JOIN conversations c ON c.id = m.conversation WHERE c.deleted_at < ?1) "
             "RETURNING seq");
      q.Bind(cutoff);
      drain(q);
    }
    Stmt(*writer_,
         "DELETE FROM messages WHERE conversation IN "
         "(SELECT id FROM conversations WHERE deleted_at < ?1)")
        .Bind(cutoff)
        .Run();
    // Conversations deleted before the cutoff.
    {
      Stmt q(*writer_,
             "DELETE FROM events WHERE entity IN "
             "(SELECT id FROM conversations WHERE deleted_at < ?1) RETURNING seq");
      q.Bind(cutoff);
      drain(q);
    }
    Stmt(*writer_, "DELETE FROM conversations WHERE deleted_at < ?1").Bind(cutoff).Run();
    if (highest > 0) {
      Stmt(*writer_, "UPDATE meta SET value = max(value, ?1) WHERE key = 'purged_through'")
          .Bind(highest)
          .Run();
    }
    Stmt(*writer_, "DELETE FROM sessions WHERE last_used < ?1").Bind(o.sessions_used_before).Run();
    Stmt(*writer_, "DELETE FROM invitations WHERE issued_at < ?1")
        .Bind(o.invitations_issued_before)
        .Run();
    Stmt(*writer_, "DELETE FROM idempotency WHERE created_at < ?1")
        .Bind(o.idempotency_before)
        .Run();
    return Status::Ok();
  }

  const std::string path_;

  std::mutex write_mu_;         // serializes Apply: one transaction at a time
  std::unique_ptr<Db> writer_;  // guarded by write_mu_
  std::int64_t seq_ = 0;        // last sequence allocated in the open transaction

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Db>> idle_readers_;  // guarded by readers_mu_

  CommitSignal commits_;
};

Status SqliteStore::Apply(std::span<Write> batch) {
  SetOutcomes(batch, Status::Ok());
  if (batch.empty()) return Status::Ok();

  std::lock_guard<std::mutex> lock(write_mu_);
  Db& db = *writer_;
  Status failed = Guarded([&] {
    Stmt(db, "BEGIN IMMEDIATE").Run();
    seq_ = ReadMeta("last_seq");
    const std::int64_t first = seq_;
    for (Write& w : batch) {
      Stmt(db, "SAVEPOINT quire_write").Run();
      const std::int64_t before = seq_;
      Status s;
      try {
        s = ApplyOne(w.op);
      } catch (const SqlFailure& failure) {
        if (!IsWriteLocal(failure.status)) throw;
        s = failure.status;
      }
      if (s.ok()) {
        Stmt(db, "RELEASE quire_write").Run();
        w.last_seq = seq_ > before ? seq_ : 0;
      } else {
        // Nothing of this write committed, so its sequences were never seen.
        Stmt(db, "ROLLBACK TO quire_write").Run();
        Stmt(db, "RELEASE quire_write").Run();
        seq_ = before;
        w.status = std::move(s);
      }
    }
    if (seq_ != first) {
      Stmt(db, "UPDATE meta SET value = ?1 WHERE key = 'last_seq'").Bind(seq_).Run();
    }
    Stmt(db, "COMMIT").Run();
    return Status::Ok();
  });
  if (!failed.ok()) {
    RollbackQuietly(db);
    SetOutcomes(batch, failed);
    return failed;
  }
  commits_.Notify();
  return Status::Ok();
}

}  // namespace

Status OpenSqliteStore(const std::string& path, std::unique_ptr<Store>* out) {
  if (path.empty()) return Status::Invalid("SQLite database path is empty");
  if (path == ":memory:" || path.starts_with("file::memory:")) {
    return Status::Invalid(
        "in-memory SQLite databases are not supported (readers need a shared file)");
  }
  return Guarded([&] {
    auto writer = std::make_unique<Db>(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite::PrepareWriter(*writer, path);
    *out = std::make_unique<SqliteStore>(path, std::move(writer));
    return Status::Ok();
  });
}

void RegisterSqliteBackend(Registry& registry) {
  registry.Register("sqlite", [](const std::string& url, std::unique_ptr<Store>* out) {
    constexpr std::string_view kPrefix = "sqlite:";
    if (!url.starts_with(kPrefix)) {
      return Status::Invalid("not a SQLite database URL: '" + url + "'");
    }
    const std::string path = url.substr(kPrefix.size());
    if (path.empty()) return Status::Invalid("database URL 'sqlite:' has no path (sqlite:PATH)");
    return OpenSqliteStore(path, out);
  });
}

}  // namespace quire::storage
