#include "storage/sqlite/sqlite_schema.h"

#include <sqlite3.h>

#include <string>

namespace quire::storage::sqlite {
namespace {

// Migration N (1-based) brings a database from user_version N-1 to N. Append
// only: never edit a migration that has shipped.
constexpr const char* kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
-- last_seq: highest sequence ever committed; never lowered.
-- purged_through: highest sequence ever purged; never lowered.
INSERT INTO meta (key, value) VALUES ('last_seq', 0), ('purged_through', 0);

CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  canonical     TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users (id),
  created_at INTEGER NOT NULL,
  last_used  INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_last_used ON sessions (last_used);

CREATE TABLE invitations (
  id        TEXT PRIMARY KEY,
  issuer_id TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  used      INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1))
) STRICT;
CREATE INDEX invitations_by_issued_at ON invitations (issued_at);

-- A deleted conversation keeps its row (blank name and canonical, deleted_at
-- set) until it is purged.
CREATE TABLE conversations (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  canonical     TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  last_activity INTEGER NOT NULL,
  deleted_at    INTEGER
) STRICT;
CREATE UNIQUE INDEX conversations_live_canonical ON conversations (canonical)
  WHERE deleted_at IS NULL;
CREATE INDEX conversations_live_by_activity ON conversations (last_activity)
  WHERE deleted_at IS NULL;
CREATE INDEX conversations_by_deleted_at ON conversations (deleted_at)
  WHERE deleted_at IS NOT NULL;

CREATE TABLE messages (
  id           TEXT PRIMARY KEY,
  conversation TEXT NOT NULL REFERENCES conversations (id),
  sender       TEXT NOT NULL,
  body         TEXT NOT NULL,
  at           INTEGER NOT NULL,
  deleted_at   INTEGER
) STRICT;
-- (conversation, deleted_at IS NULL) finds a conversation's live messages.
CREATE INDEX messages_by_conversation ON messages (conversation, deleted_at);
CREATE INDEX messages_live_by_at ON messages (at) WHERE deleted_at IS NULL;
CREATE INDEX messages_by_deleted_at ON messages (deleted_at) WHERE deleted_at IS NOT NULL;

-- The history. seq is assigned from meta.last_seq inside the writing
-- transaction; the single writer makes commit order equal sequence order.
CREATE TABLE events (
  seq          INTEGER PRIMARY KEY,
  kind         INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 5),
  at           INTEGER NOT NULL,
  entity       TEXT NOT NULL,
  conversation TEXT NOT NULL DEFAULT '',
  sender       TEXT NOT NULL DEFAULT '',
  text         TEXT NOT NULL DEFAULT '',
  deleted_at   INTEGER
) STRICT;
CREATE INDEX events_by_entity ON events (entity);

-- Idempotency keys of SendMessage. The message fields are kept so that a
-- replay still answers after the message itself was purged.
CREATE TABLE idempotency (
  sender       TEXT NOT NULL,
  key          TEXT NOT NULL,
  message_id   TEXT NOT NULL,
  conversation TEXT NOT NULL,
  at           INTEGER NOT NULL,
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (sender, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_by_created_at ON idempotency (created_at);
)sql",
    // 2: the break in history that quire restore marks (Head::lost_after and
    // lost_through); 0 and 0 while the history never broke.
    R"sql(
INSERT INTO meta (key, value) VALUES ('lost_after', 0), ('lost_through', 0);
)sql",
};

constexpr int kMigrationCount = static_cast<int>(std::size(kMigrations));
static_assert(kMigrationCount == kSchemaVersion);

// Re-throws a failure of the first real read with a one-line explanation.
[[noreturn]] void ExplainFirstReadFailure(const SqlFailure& failure, const std::string& path) {
  const Status& s = failure.status;
  if (s.code() == Status::Code::kCorrupt) {
    throw SqlFailure{Status::Corrupt("'" + path +
                                     "' is not a SQLite database or is corrupt; refusing to "
                                     "open it")};
  }
  if (s.code() == Status::Code::kUnavailable) {
    throw SqlFailure{Status::Unavailable("SQLite database '" + path +
                                         "' is locked or unreadable: " + s.message())};
  }
  throw failure;
}

void CheckIdentity(Db& db, const std::string& path) {
  const std::int64_t app_id = db.QueryInt("PRAGMA application_id");
  const std::int64_t version = db.QueryInt("PRAGMA user_version");
  const std::int64_t objects = db.QueryInt("SELECT count(*) FROM sqlite_schema");
  if (app_id != 0 && app_id != kApplicationId) {
    throw SqlFailure{Status::Corrupt("'" + path + "' is a SQLite database of another application " +
                                     "(application_id " + std::to_string(app_id) + ")")};
  }
  if (version > kSchemaVersion) {
    throw SqlFailure{Status::Corrupt("'" + path + "' has schema version " +
                                     std::to_string(version) + ", newer than this Quire knows (" +
                                     std::to_string(kSchemaVersion) + "); upgrade Quire")};
  }
  if (version == 0 && objects != 0) {
    throw SqlFailure{Status::Corrupt("'" + path +
                                     "' is a SQLite database but not a Quire one (it has tables "
                                     "and no schema version)")};
  }
  if (version > 0 && app_id != kApplicationId) {
    throw SqlFailure{Status::Corrupt("'" + path + "' is a SQLite database but not a Quire one " +
                                     "(schema version " + std::to_string(version) +
                                     " without Quire's application_id)")};
  }
}

void Migrate(Db& db, const std::string& path) {
  if (db.QueryInt("PRAGMA user_version") == kSchemaVersion) return;
  db.Exec("BEGIN IMMEDIATE");
  try {
    // Another process may have migrated while we waited for the lock.
    CheckIdentity(db, path);
    const int from = static_cast<int>(db.QueryInt("PRAGMA user_version"));
    for (int v = from; v < kMigrationCount; ++v) db.Exec(kMigrations[v]);
    const std::string stamp = "PRAGMA user_version = " + std::to_string(kSchemaVersion) +
                              "; PRAGMA application_id = " + std::to_string(kApplicationId);
    db.Exec(stamp.c_str());
    db.Exec("COMMIT");
  } catch (...) {
    if (db.in_transaction()) sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

}  // namespace

void PrepareWriter(Db& db, const std::string& path) {
  sqlite3_busy_timeout(db.handle(), kBusyTimeoutMs);
  // The first real read: detects "file is not a database" and locks.
  try {
    db.QueryInt("SELECT count(*) FROM sqlite_schema");
  } catch (const SqlFailure& failure) {
    ExplainFirstReadFailure(failure, path);
  }
  if (sqlite3_db_readonly(db.handle(), "main") == 1) {
    throw SqlFailure{Status::Unavailable("SQLite database '" + path +
                                         "' can only be opened read-only; check the permissions "
                                         "of the file and its directory")};
  }
  CheckIdentity(db, path);
  {
    Stmt mode(db, "PRAGMA journal_mode = WAL");
    if (!mode.Next() || mode.Text(0) != "wal") {
      throw SqlFailure{
          Status::IoError("SQLite database '" + path + "': cannot switch to WAL journal mode")};
    }
  }
  db.Exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
  // The writer keeps the pages it rewrites on every commit (the tails of the
  // events and messages tables and of their indexes, the head row) in a
  // 16 MiB cache rather than the default 2 MiB, and a write's savepoint
  // journal in memory: durable sends at 64 senders 15,900/s -> 19,700/s
  // (docs/benchmarks.md, section 11).
  db.Exec("PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY");
  Migrate(db, path);
}

void PrepareReader(Db& db) {
  sqlite3_busy_timeout(db.handle(), kBusyTimeoutMs);
  db.Exec("PRAGMA query_only = ON");
}

}  // namespace quire::storage::sqlite
