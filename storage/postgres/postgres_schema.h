// Internal to the PostgreSQL backend: the schema and its migrations.
#pragma once

#include <pqxx/pqxx>

#include "storage/status.h"

namespace quire::storage::postgres {

// The schema version this build writes; quire_meta.schema_version holds the
// database's.
inline constexpr int kSchemaVersion = 2;

// Brings the database to kSchemaVersion in one transaction, under an
// advisory lock, so that several instances starting at once migrate it once
// and none of them sees half a schema. Corrupt when the database has a newer
// schema, or has tables of Quire's names without being a Quire database.
// Throws pqxx exceptions for engine failures.
Status Migrate(pqxx::connection& conn);

}  // namespace quire::storage::postgres
