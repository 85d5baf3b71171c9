// Internal to the SQLite backend: the schema, its migrations and the checks
// and settings applied to a database when it is opened.
#pragma once

#include <cstdint>
#include <string>

#include "storage/sqlite/sqlite_db.h"

namespace quire::storage::sqlite {

// The schema version this build writes (PRAGMA user_version).
inline constexpr int kSchemaVersion = 2;
// PRAGMA application_id of a Quire database: "Quir".
inline constexpr std::int64_t kApplicationId = 0x51756972;
// How long a connection waits for a lock held by another connection.
inline constexpr int kBusyTimeoutMs = 5000;

// Checks that the writer connection `db` (opened on `path`) holds a Quire
// database this build can use, sets WAL / synchronous=FULL / foreign keys /
// busy timeout, and applies the pending migrations in one transaction.
// Throws SqlFailure: Corrupt for a file that is not a SQLite database, another
// application's database or a newer schema; Unavailable when it is locked or
// read-only.
void PrepareWriter(Db& db, const std::string& path);

// Settings of a read connection (query only, busy timeout).
void PrepareReader(Db& db);

}  // namespace quire::storage::sqlite
