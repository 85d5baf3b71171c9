#include "storage/postgres/postgres_schema.h"

#include <iterator>
#include <string>

namespace quire::storage::postgres {
namespace {

// pg_advisory_xact_lock key for migrations: "Quire" in ASCII.
constexpr long long kMigrationLock = 0x5175697265LL;

// Migration N (1-based) brings a database from version N-1 to N. Append only:
// never edit a migration that has shipped. Times are microseconds since the
// Unix epoch (bigint), as they cross the storage seam.
constexpr const char* kMigrations[] = {
    // 1: the initial schema.
    R"sql(
-- One row. last_seq: highest sequence ever committed, never lowered; every
-- write transaction locks this row first, which serializes sequence
-- allocation with commit order (docs/architecture.md). purged_through:
-- highest sequence ever purged, never lowered.
CREATE TABLE quire_meta (
  id             integer PRIMARY KEY CHECK (id = 1),
  schema_version integer NOT NULL,
  last_seq       bigint  NOT NULL,
  purged_through bigint  NOT NULL
);
INSERT INTO quire_meta (id, schema_version, last_seq, purged_through) VALUES (1, 0, 0, 0);

CREATE TABLE users (
  id            text PRIMARY KEY,
  name          text NOT NULL,
  canonical     text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  created_at    bigint NOT NULL
);

CREATE TABLE sessions (
  token_hash text PRIMARY KEY,
  user_id    text NOT NULL REFERENCES users (id),
  created_at bigint NOT NULL,
  last_used  bigint NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_last_used ON sessions (last_used);

CREATE TABLE invitations (
  id        text PRIMARY KEY,
  issuer_id text NOT NULL,
  issued_at bigint NOT NULL,
  used      boolean NOT NULL DEFAULT false
);
CREATE INDEX invitations_by_issued_at ON invitations (issued_at);

-- A deleted conversation keeps its row (blank name and canonical, deleted_at
-- set) until it is purged.
CREATE TABLE conversations (
  id            text PRIMARY KEY,
  name          text NOT NULL,
  canonical     text NOT NULL,
  created_at    bigint NOT NULL,
  last_activity bigint NOT NULL,
  deleted_at    bigint
);
CREATE UNIQUE INDEX conversations_live_canonical ON conversations (canonical)
  WHERE deleted_at IS NULL;
CREATE INDEX conversations_live_by_activity ON conversations (last_activity)
  WHERE deleted_at IS NULL;
CREATE INDEX conversations_by_deleted_at ON conversations (deleted_at)
  WHERE deleted_at IS NOT NULL;

CREATE TABLE messages (
  id           text PRIMARY KEY,
  conversation text NOT NULL REFERENCES conversations (id),
  sender       text NOT NULL,
  body         text NOT NULL,
  at           bigint NOT NULL,
  deleted_at   bigint
);
CREATE INDEX messages_by_conversation ON messages (conversation, deleted_at);
CREATE INDEX messages_live_by_at ON messages (at) WHERE deleted_at IS NULL;
CREATE INDEX messages_by_deleted_at ON messages (deleted_at) WHERE deleted_at IS NOT NULL;

-- The history. seq comes from quire_meta.last_seq inside the writing
-- transaction, never from a sequence object (see quire_meta).
CREATE TABLE events (
  seq          bigint PRIMARY KEY,
  kind         smallint NOT NULL CHECK (kind BETWEEN 1 AND 5),
  at           bigint NOT NULL,
  entity       text NOT NULL,
  conversation text NOT NULL DEFAULT '',
  sender       text NOT NULL DEFAULT '',
  text         text NOT NULL DEFAULT '',
  deleted_at   bigint
);
CREATE INDEX events_by_entity ON events (entity);

-- Idempotency keys of SendMessage. The message fields are kept so that a
-- replay still answers after the message itself was purged.
CREATE TABLE idempotency (
  sender       text NOT NULL,
  key          text NOT NULL,
  message_id   text NOT NULL,
  conversation text NOT NULL,
  at           bigint NOT NULL,
  created_at   bigint NOT NULL,
  PRIMARY KEY (sender, key)
);
CREATE INDEX idempotency_by_created_at ON idempotency (created_at);
)sql",
    // 2: the break in history that `quire restore` marks (Head::lost_after
    // and lost_through); 0 and 0 when the history never broke.
    R"sql(
ALTER TABLE quire_meta
  ADD COLUMN lost_after   bigint NOT NULL DEFAULT 0,
  ADD COLUMN lost_through bigint NOT NULL DEFAULT 0;
)sql",
};

static_assert(static_cast<int>(std::size(kMigrations)) == kSchemaVersion);

}  // namespace

Status Migrate(pqxx::connection& conn) {
  pqxx::work tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLock) + ")");
  int version = 0;
  if (tx.exec1("SELECT to_regclass('quire_meta') IS NOT NULL")[0].as<bool>()) {
    version = tx.exec1("SELECT schema_version FROM quire_meta WHERE id = 1")[0].as<int>();
  } else if (tx.exec1("SELECT to_regclass('events') IS NOT NULL OR to_regclass('users') IS NOT "
                      "NULL")[0]
                 .as<bool>()) {
    return Status::Corrupt(
        "the database has tables named like Quire's but is not a Quire database (no "
        "quire_meta); give Quire a database of its own");
  }
  if (version > kSchemaVersion) {
    return Status::Corrupt("the database has schema version " + std::to_string(version) +
                           ", newer than this Quire knows (" + std::to_string(kSchemaVersion) +
                           "); upgrade Quire");
  }
  for (int v = version; v < kSchemaVersion; ++v) tx.exec(kMigrations[v]);
  if (version < kSchemaVersion) {
    tx.exec("UPDATE quire_meta SET schema_version = " + std::to_string(kSchemaVersion));
  }
  tx.commit();
  return Status::Ok();
}

}  // namespace quire::storage::postgres
