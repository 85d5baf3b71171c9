#include "storage/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "storage/chat_rules.h"
#include "storage/engine.h"
#include "storage/local_files.h"
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
// Pages a backup copies per step.
constexpr int kBackupPagesPerStep = 1024;

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

// A limit as SQLite binds it.
std::int64_t Bounded(std::size_t limit) {
  const auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(limit, max));
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

IdempotencyRecord IdempotencyFrom(const Stmt& q) {
  return IdempotencyRecord{q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4), q.Int(5)};
}

// The two queries of a listing by primary key: the first page, and a page
// after the key ?1. "" is a key SQLite can store, so the first page is not
// "key > ''"; both walk the primary key's index.
#define QUIRE_SQLITE_PAGES(columns, table, key)                  \
  "SELECT " columns " FROM " table " ORDER BY " key " LIMIT ?2", \
      "SELECT " columns " FROM " table " WHERE " key " > ?1 ORDER BY " key " LIMIT ?2"

// The reads, on one connection: a pooled reader (each statement its own
// short read transaction, ended when the statement is reset), or the writer
// inside a batch.
class SqliteRecords final : public RecordReader {
 public:
  // `on_end` runs when the reader is destroyed (it returns a pooled
  // connection).
  SqliteRecords(Db& db, const std::string& path, std::function<void()> on_end = {})
      : db_(db), path_(path), on_end_(std::move(on_end)) {}
  ~SqliteRecords() override {
    if (on_end_) on_end_();
  }

  Status GetHead(Head* out) override {
    return Guarded([&] {
      Stmt q(db_,
             "SELECT (SELECT value FROM meta WHERE key = 'last_seq'),"
             "       (SELECT value FROM meta WHERE key = 'purged_through'),"
             "       (SELECT value FROM meta WHERE key = 'lost_after'),"
             "       (SELECT value FROM meta WHERE key = 'lost_through')");
      if (!q.Next()) return Status::Corrupt("SQLite database '" + path_ + "': meta is empty");
      *out = Head{q.Int(0), q.Int(1), q.Int(2), q.Int(3)};
      return Status::Ok();
    });
  }
  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    const std::int64_t bounded = Bounded(limit);
    return Guarded([&] {
      Stmt q(db_,
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
    return Guarded([&] {
      *out = db_.QueryInt("SELECT EXISTS (SELECT 1 FROM users)") != 0;
      return Status::Ok();
    });
  }
  Status GetUser(const std::string& id, User* out) override {
    return One("SELECT id, name, canonical, password_hash, created_at FROM users WHERE id = ?1", id,
               "no user " + id, out, UserFrom);
  }
  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return One(
        "SELECT id, name, canonical, password_hash, created_at FROM users WHERE canonical = ?1",
        canonical, "no user with that name", out, UserFrom);
  }
  Status FindSession(const std::string& token_hash, Session* out) override {
    return One(
        "SELECT token_hash, user_id, created_at, last_used FROM sessions WHERE token_hash = ?1",
        token_hash, "no such session", out, SessionFrom);
  }
  Status GetInvitation(const std::string& id, Invitation* out) override {
    return One("SELECT id, issuer_id, issued_at, used FROM invitations WHERE id = ?1", id,
               "no invitation " + id, out, InvitationFrom);
  }
  Status GetConversation(const std::string& id, Conversation* out) override {
    return One(
        "SELECT id, name, canonical, created_at, last_activity, deleted_at "
        "FROM conversations WHERE id = ?1",
        id, "no conversation " + id, out, ConversationFrom);
  }
  Status GetMessage(const std::string& id, Message* out) override {
    return One("SELECT id, conversation, sender, body, at, deleted_at FROM messages WHERE id = ?1",
               id, "no message " + id, out, MessageFrom);
  }

  Status ListUsers(const std::string& after, std::size_t limit, std::vector<User>* out) override {
    return Page(QUIRE_SQLITE_PAGES("id, name, canonical, password_hash, created_at", "users", "id"),
                after.empty(), limit, out, UserFrom, after);
  }
  Status ListSessions(const std::string& after, std::size_t limit,
                      std::vector<Session>* out) override {
    return Page(
        QUIRE_SQLITE_PAGES("token_hash, user_id, created_at, last_used", "sessions", "token_hash"),
        after.empty(), limit, out, SessionFrom, after);
  }
  Status ListInvitations(const std::string& after, std::size_t limit,
                         std::vector<Invitation>* out) override {
    return Page(QUIRE_SQLITE_PAGES("id, issuer_id, issued_at, used", "invitations", "id"),
                after.empty(), limit, out, InvitationFrom, after);
  }
  Status ListConversations(const std::string& after, std::size_t limit,
                           std::vector<Conversation>* out) override {
    return Page(QUIRE_SQLITE_PAGES("id, name, canonical, created_at, last_activity, deleted_at",
                                   "conversations", "id"),
                after.empty(), limit, out, ConversationFrom, after);
  }
  Status ListMessages(const std::string& after, std::size_t limit,
                      std::vector<Message>* out) override {
    return Page(
        QUIRE_SQLITE_PAGES("id, conversation, sender, body, at, deleted_at", "messages", "id"),
        after.empty(), limit, out, MessageFrom, after);
  }
  Status ListIdempotency(const IdempotencyKey& after, std::size_t limit,
                         std::vector<IdempotencyRecord>* out) override {
    // A row-value comparison walks the (sender, key) primary key too.
    return Page(
        "SELECT sender, key, message_id, conversation, at, created_at FROM idempotency "
        "ORDER BY sender, key LIMIT ?3",
        "SELECT sender, key, message_id, conversation, at, created_at FROM idempotency "
        "WHERE (sender, key) > (?1, ?2) ORDER BY sender, key LIMIT ?3",
        after.empty(), limit, out, IdempotencyFrom, after.sender, after.key);
  }

  // Runs a one-row query bound to `key`; NotFound(missing) without a row.
  template <typename T, typename Map>
  Status One(const char* sql, const std::string& key, const std::string& missing, T* out, Map map) {
    return Guarded([&] {
      Stmt q(db_, sql);
      if (!q.Bind(key).Next()) return Status::NotFound(missing);
      *out = map(q);
      return Status::Ok();
    });
  }

 private:
  // Binds the key parameters `after` and the limit after them; runs
  // `first` (which ignores the keys) when from_start, `next` otherwise.
  template <typename T, typename Map, typename... Keys>
  Status Page(const char* first, const char* next, bool from_start, std::size_t limit,
              std::vector<T>* out, Map map, const Keys&... after) {
    return Guarded([&] {
      Stmt q(db_, from_start ? first : next);
      q.Bind(after..., Bounded(limit));
      while (q.Next()) out->push_back(map(q));
      return Status::Ok();
    });
  }

  Db& db_;
  const std::string& path_;
  const std::function<void()> on_end_;
};

#undef QUIRE_SQLITE_PAGES

// Appends the first column of every row of `q` to *ids.
void CollectIds(Stmt& q, std::vector<std::string>* ids) {
  while (q.Next()) ids->push_back(q.Text(0));
}

// The write transaction of a batch, on the single writer connection.
class SqliteWriteTxn final : public WriteTxn {
 public:
  SqliteWriteTxn(Db& db, const std::string& path) : db_(db), records_(db, path) {}

  ~SqliteWriteTxn() override {
    if (db_.in_transaction()) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }

  RecordReader& records() override { return records_; }

  Status Savepoint() override { return Run("SAVEPOINT quire_write"); }
  Status ReleaseSavepoint() override { return Run("RELEASE quire_write"); }
  Status RollbackToSavepoint() override {
    if (Status s = Run("ROLLBACK TO quire_write"); !s.ok()) return s;
    return Run("RELEASE quire_write");
  }
  Status Commit() override { return Run("COMMIT"); }

  Status FindLiveConversationByName(const std::string& canonical, Conversation* out) override {
    return records_.One(
        "SELECT id, name, canonical, created_at, last_activity, deleted_at "
        "FROM conversations WHERE canonical = ?1 AND deleted_at IS NULL",
        canonical, "no live conversation with that name", out, ConversationFrom);
  }

  Status GetIdempotency(const std::string& sender, const std::string& key,
                        IdempotencyRecord* out) override {
    return Guarded([&] {
      Stmt q(db_,
             "SELECT message_id, conversation, at, created_at FROM idempotency "
             "WHERE sender = ?1 AND key = ?2");
      if (!q.Bind(sender, key).Next()) return Status::NotFound("no idempotency record");
      *out = IdempotencyRecord{sender, key, q.Text(0), q.Text(1), q.Int(2), q.Int(3)};
      return Status::Ok();
    });
  }

  Status ListLiveMessagesOf(const std::string& conversation, std::size_t limit,
                            std::vector<std::string>* ids) override {
    return List(
        "SELECT id FROM messages WHERE conversation = ?1 AND deleted_at IS NULL "
        "ORDER BY at, id LIMIT ?2",
        ids, conversation, Bounded(limit));
  }
  Status ListLiveMessagesSentBefore(Micros before, std::vector<std::string>* ids) override {
    return List("SELECT id FROM messages WHERE deleted_at IS NULL AND at < ?1 ORDER BY at, id", ids,
                before);
  }
  Status ListLiveConversationsIdleBefore(Micros before, std::vector<std::string>* ids) override {
    return List(
        "SELECT id FROM conversations WHERE deleted_at IS NULL AND last_activity < ?1 "
        "ORDER BY last_activity, id",
        ids, before);
  }
  Status ListMessagesDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return List("SELECT id FROM messages WHERE deleted_at < ?1", ids, before);
  }
  Status ListConversationsDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return List("SELECT id FROM conversations WHERE deleted_at < ?1", ids, before);
  }
  Status ListMessagesOf(const std::string& conversation, std::vector<std::string>* ids) override {
    return List("SELECT id FROM messages WHERE conversation = ?1", ids, conversation);
  }

  Status InsertUser(const User& u) override {
    return Run(
        "INSERT INTO users (id, name, canonical, password_hash, created_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5)",
        u.id, u.name, u.canonical, u.password_hash, u.created_at);
  }
  Status UpdateUser(const Change<User>& c) override {
    const User& u = c.after;
    return Update(
        "UPDATE users SET name = ?2, canonical = ?3, password_hash = ?4, created_at = ?5 "
        "WHERE id = ?1",
        "no user " + u.id, u.id, u.name, u.canonical, u.password_hash, u.created_at);
  }
  Status InsertSession(const Session& s) override {
    return Run(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_used) "
        "VALUES (?1, ?2, ?3, ?4)",
        s.token_hash, s.user_id, s.created_at, s.last_used);
  }
  Status UpdateSession(const Change<Session>& c) override {
    const Session& s = c.after;
    return Update(
        "UPDATE sessions SET user_id = ?2, created_at = ?3, last_used = ?4 WHERE token_hash = ?1",
        "no such session", s.token_hash, s.user_id, s.created_at, s.last_used);
  }
  Status DeleteSession(const Session& s) override {
    return Run("DELETE FROM sessions WHERE token_hash = ?1", s.token_hash);
  }
  Status DeleteSessionsOfUser(const std::string& user_id) override {
    return Run("DELETE FROM sessions WHERE user_id = ?1", user_id);
  }
  Status InsertInvitation(const Invitation& i) override {
    return Run("INSERT INTO invitations (id, issuer_id, issued_at, used) VALUES (?1, ?2, ?3, ?4)",
               i.id, i.issuer_id, i.issued_at, i.used);
  }
  Status UpdateInvitation(const Change<Invitation>& c) override {
    const Invitation& i = c.after;
    return Update("UPDATE invitations SET issuer_id = ?2, issued_at = ?3, used = ?4 WHERE id = ?1",
                  "no invitation " + i.id, i.id, i.issuer_id, i.issued_at, i.used);
  }
  Status InsertConversation(const Conversation& c) override {
    return Run(
        "INSERT INTO conversations (id, name, canonical, created_at, last_activity, deleted_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        c.id, c.name, c.canonical, c.created_at, c.last_activity, c.deleted_at);
  }
  Status UpdateConversation(const Change<Conversation>& change) override {
    const Conversation& b = change.before;
    const Conversation& c = change.after;
    if (b.name == c.name && b.canonical == c.canonical && b.created_at == c.created_at &&
        b.deleted_at == c.deleted_at) {
      // A send: only the activity moves, and only its index is touched.
      return Update("UPDATE conversations SET last_activity = ?2 WHERE id = ?1",
                    "no conversation " + c.id, c.id, c.last_activity);
    }
    return Update(
        "UPDATE conversations SET name = ?2, canonical = ?3, created_at = ?4, "
        "last_activity = ?5, deleted_at = ?6 WHERE id = ?1",
        "no conversation " + c.id, c.id, c.name, c.canonical, c.created_at, c.last_activity,
        c.deleted_at);
  }
  Status InsertMessage(const Message& m) override {
    return Run(
        "INSERT INTO messages (id, conversation, sender, body, at, deleted_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        m.id, m.conversation, m.sender, m.body, m.at, m.deleted_at);
  }
  Status UpdateMessage(const Change<Message>& change) override {
    const Message& m = change.after;
    return Update(
        "UPDATE messages SET conversation = ?2, sender = ?3, body = ?4, at = ?5, deleted_at = ?6 "
        "WHERE id = ?1",
        "no message " + m.id, m.id, m.conversation, m.sender, m.body, m.at, m.deleted_at);
  }
  Status PutIdempotency(const IdempotencyRecord& r) override {
    return Run(
        "INSERT OR REPLACE INTO idempotency "
        "(sender, key, message_id, conversation, at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        r.sender, r.key, r.message_id, r.conversation, r.at, r.created_at);
  }

  Status AppendEvent(const Event& e) override {
    return Run(
        "INSERT INTO events (seq, kind, at, entity, conversation, sender, text, deleted_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        e.seq, static_cast<int>(e.kind), e.at, e.id, e.conversation, e.sender, e.text,
        e.deleted_at);
  }
  Status TombstoneEvents(const std::string& entity, EventKind kind, Micros at) override {
    return Run("UPDATE events SET text = '', deleted_at = ?1 WHERE entity = ?2 AND kind = ?3", at,
               entity, static_cast<int>(kind));
  }
  Status RemoveEventsOf(const std::string& entity, std::int64_t* count,
                        std::int64_t* highest) override {
    return Guarded([&] {
      Stmt q(db_, "DELETE FROM events WHERE entity = ?1 RETURNING seq");
      q.Bind(entity);
      while (q.Next()) {
        ++*count;
        *highest = std::max(*highest, q.Int(0));
      }
      return Status::Ok();
    });
  }
  Status RemoveMessage(const std::string& id) override {
    return Run("DELETE FROM messages WHERE id = ?1", id);
  }
  Status RemoveConversation(const std::string& id) override {
    return Run("DELETE FROM conversations WHERE id = ?1", id);
  }
  Status RemoveSessionsUsedBefore(Micros before) override {
    return Run("DELETE FROM sessions WHERE last_used < ?1", before);
  }
  Status RemoveInvitationsIssuedBefore(Micros before) override {
    return Run("DELETE FROM invitations WHERE issued_at < ?1", before);
  }
  Status RemoveIdempotencyMadeBefore(Micros before) override {
    return Run("DELETE FROM idempotency WHERE created_at < ?1", before);
  }

  Status SetHead(const Head& head) override {
    return Run(
        "UPDATE meta SET value = CASE key WHEN 'last_seq' THEN ?1 WHEN 'purged_through' THEN ?2 "
        "WHEN 'lost_after' THEN ?3 ELSE ?4 END "
        "WHERE key IN ('last_seq', 'purged_through', 'lost_after', 'lost_through')",
        head.last_seq, head.purged_through, head.lost_after, head.lost_through);
  }

  Status RemoveEverything() override {
    // Children before their parents, for the foreign keys.
    Status s = Guarded([&] {
      db_.Exec(
          "DELETE FROM sessions; DELETE FROM invitations; DELETE FROM idempotency; "
          "DELETE FROM events; DELETE FROM messages; DELETE FROM conversations; "
          "DELETE FROM users");
      return Status::Ok();
    });
    return s.ok() ? SetHead(Head{}) : s;
  }

 private:
  template <typename... Args>
  Status Run(const char* sql, const Args&... args) {
    return Guarded([&] {
      Stmt(db_, sql).Bind(args...).Run();
      return Status::Ok();
    });
  }

  // An UPDATE of one row; NotFound(missing) when no row matched.
  template <typename... Args>
  Status Update(const char* sql, const std::string& missing, const Args&... args) {
    return Guarded([&] {
      Stmt q(db_, sql);
      q.Bind(args...).Run();
      return q.Changes() == 0 ? Status::NotFound(missing) : Status::Ok();
    });
  }

  template <typename... Args>
  Status List(const char* sql, std::vector<std::string>* ids, const Args&... args) {
    return Guarded([&] {
      Stmt q(db_, sql);
      q.Bind(args...);
      CollectIds(q, ids);
      return Status::Ok();
    });
  }

  Db& db_;
  SqliteRecords records_;
};

// ---- Maintenance helpers ----

// Permissions for a file made beside the database (its lock file, a
// backup): the database's for group and others, read and write for the
// owner, who opens it again.
mode_t FileMode(const std::string& path) {
  struct stat st;
  return (stat(path.c_str(), &st) == 0 ? (st.st_mode & 0066) : 0) | 0600;
}

// One line for a row PRAGMA foreign_key_check reported, naming the row by
// its key where the table is known.
std::string ForeignKeyProblem(Db& db, const std::string& table, std::int64_t rowid,
                              const std::string& parent) {
  const char* sql = nullptr;
  if (table == "messages") sql = "SELECT id, conversation FROM messages WHERE rowid = ?1";
  if (table == "sessions") sql = "SELECT token_hash, user_id FROM sessions WHERE rowid = ?1";
  if (sql != nullptr) {
    Stmt q(db, sql);
    if (q.Bind(rowid).Next()) {
      return "SQLite foreign key: " + table + " " + q.Text(0) + " refers to " + q.Text(1) +
             ", which is not in " + parent;
    }
  }
  return "SQLite foreign key: " + table + " rowid " + std::to_string(rowid) +
         " refers to a row that is not in " + parent;
}

class SqliteEngine final : public Engine {
 public:
  SqliteEngine(std::string path, std::unique_ptr<Db> writer)
      : path_(std::move(path)), writer_(std::move(writer)) {}

  ~SqliteEngine() override {
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

  // A send in its own savepoint costs two statements more and rewrites its
  // conversation's row once per send rather than once per run of sends.
  EngineTraits traits() const override { return EngineTraits{.cheap_savepoints = false}; }

  Status BeginWrite(std::unique_ptr<WriteTxn>* out) override {
    return Guarded([&] {
      Stmt(*writer_, "BEGIN IMMEDIATE").Run();
      *out = std::make_unique<SqliteWriteTxn>(*writer_, path_);
      return Status::Ok();
    });
  }

  Status BeginRead(std::unique_ptr<RecordReader>* out) override {
    return Guarded([&] {
      Db* db = AcquireReader().release();
      *out = std::make_unique<SqliteRecords>(
          *db, path_, [this, db] { ReleaseReader(std::unique_ptr<Db>(db)); });
      return Status::Ok();
    });
  }

  // flock on a file beside the database: SQLite's own locks are POSIX fcntl
  // locks, which closing any descriptor of the database file would drop.
  Status Hold(EngineUse use) override {
    return hold_.Take(path_ + "-lock", O_RDONLY | O_CREAT, FileMode(path_), use,
                      "SQLite database '" + path_ + "'");
  }

  // The online backup API, from a connection of its own inside one read
  // transaction: with WAL that is one snapshot, which the writer does not
  // wait for, and a commit between two steps does not restart the copy.
  Status Backup(const std::string& path) override {
    const std::string what = "backup of SQLite database '" + path_ + "' to '" + path + "'";
    if (path.empty()) return Status::Invalid("the backup path is empty");
    for (const char* suffix : {"-journal", "-wal"}) {
      std::error_code ignored;
      if (std::filesystem::exists(path + suffix, ignored)) {
        return Status::Invalid(what + ": '" + path + suffix + "' exists; remove it first");
      }
    }
    // O_EXCL: never over an existing file, nor one another backup just made.
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FileMode(path_));
    if (fd < 0) {
      if (errno == EEXIST) return Status::Invalid(what + ": '" + path + "' exists");
      return Status::Unavailable(what + ": cannot create it: " + std::strerror(errno));
    }
    close(fd);  // no connection has it open yet, so no lock is dropped
    Status s = Guarded([&] {
      CopyTo(path);
      // The copy's data is synced by its commit; its directory entry is not.
      const std::string dir = std::filesystem::path(path).parent_path().string();
      return SyncPath(dir.empty() ? "." : dir);
    });
    if (!s.ok()) {
      std::error_code ignored;
      for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
        std::filesystem::remove(path + suffix, ignored);
      }
    }
    return s;
  }

  Status CheckIntegrity(std::vector<std::string>* problems) override {
    return Guarded([&] {
      std::unique_ptr<Db> db = AcquireReader();
      {
        Stmt q(*db, "PRAGMA integrity_check");
        while (q.Next()) {
          // A row may hold several lines, the first naming the schema.
          std::string lines = q.Text(0);
          for (std::size_t start = 0; start < lines.size();) {
            std::size_t end = lines.find('\n', start);
            if (end == std::string::npos) end = lines.size();
            const std::string line = lines.substr(start, end - start);
            if (line != "ok" && !line.starts_with("*** in database")) {
              problems->push_back("SQLite integrity_check: " + line);
            }
            start = end + 1;
          }
        }
      }
      {
        Stmt q(*db, "PRAGMA foreign_key_check");
        while (q.Next()) {
          problems->push_back(ForeignKeyProblem(*db, q.Text(0), q.Int(1), q.Text(2)));
        }
      }
      ReleaseReader(std::move(db));
      return Status::Ok();
    });
  }

 private:
  // Copies the database into the empty file `path` and checks that the
  // copy is a Quire database of the same schema. Throws.
  void CopyTo(const std::string& path) {
    Db source(path_, SQLITE_OPEN_READONLY);
    sqlite::PrepareReader(source);
    source.Exec("BEGIN");
    // The first read starts the read transaction the whole copy runs in.
    const std::int64_t application_id = source.QueryInt("PRAGMA application_id");
    const std::int64_t version = source.QueryInt("PRAGMA user_version");
    Db copy(path, SQLITE_OPEN_READWRITE);
    sqlite3_backup* backup = sqlite3_backup_init(copy.handle(), "main", source.handle(), "main");
    if (backup == nullptr) copy.Fail(sqlite3_extended_errcode(copy.handle()), "backup init");
    int rc = SQLITE_OK;
    while (rc == SQLITE_OK) rc = sqlite3_backup_step(backup, kBackupPagesPerStep);
    const int finished = sqlite3_backup_finish(backup);
    if (rc != SQLITE_DONE) copy.Fail(rc, "backup step");
    if (finished != SQLITE_OK) copy.Fail(finished, "backup finish");
    source.Exec("COMMIT");
    if (application_id != sqlite::kApplicationId ||
        copy.QueryInt("PRAGMA application_id") != application_id ||
        copy.QueryInt("PRAGMA user_version") != version) {
      throw SqlFailure{Status::Corrupt("the backup '" + path +
                                       "' is not a Quire database of schema version " +
                                       std::to_string(version))};
    }
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

  const std::string path_;
  ServingLock hold_;            // declared first: released after the writer closes
  std::unique_ptr<Db> writer_;  // used by one WriteTxn at a time (the rules serialize batches)

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Db>> idle_readers_;  // guarded by readers_mu_
};

}  // namespace

Status OpenSqliteEngine(const std::string& path, EngineUse use, std::unique_ptr<Engine>* out) {
  if (path.empty()) return Status::Invalid("SQLite database path is empty");
  if (path == ":memory:" || path.starts_with("file::memory:")) {
    return Status::Invalid(
        "in-memory SQLite databases are not supported (readers need a shared file)");
  }
  return Guarded([&] {
    auto writer = std::make_unique<Db>(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    Db& db = *writer;
    auto engine = std::make_unique<SqliteEngine>(path, std::move(writer));
    // Held before the schema is read or migrated: a server must not touch a
    // database that a restore is rewriting.
    if (Status s = engine->Hold(use); !s.ok()) return s;
    sqlite::PrepareWriter(db, path);
    *out = std::move(engine);
    return Status::Ok();
  });
}

Status OpenSqliteStore(const std::string& path, std::unique_ptr<Store>* out) {
  std::unique_ptr<Engine> engine;
  if (Status s = OpenSqliteEngine(path, EngineUse::kServe, &engine); !s.ok()) return s;
  return OpenEngineStore(std::move(engine), out);
}

void RegisterSqliteBackend(Registry& registry) {
  registry.RegisterEngine(
      "sqlite", [](const std::string& url, EngineUse use, std::unique_ptr<Engine>* out) {
        constexpr std::string_view kPrefix = "sqlite:";
        if (!url.starts_with(kPrefix)) {
          return Status::Invalid("not a SQLite database URL: '" + url + "'");
        }
        const std::string path = url.substr(kPrefix.size());
        if (path.empty()) {
          return Status::Invalid("database URL 'sqlite:' has no path (sqlite:PATH)");
        }
        return OpenSqliteEngine(path, use, out);
      });
}

}  // namespace quire::storage
