// The conformance suite run against the SQLite backend: a new database file
// in a new temporary directory per test.
#include "conformance_tests/suite.h"
#include "conformance_tests/url_backend.h"
#include "storage/sqlite/sqlite_store.h"

QUIRE_INSTANTIATE_STORE_CONFORMANCE(
    Sqlite, quire::conformance::UrlBackend("sqlite", quire::storage::RegisterSqliteBackend,
                                           quire::conformance::TempDirUrl("sqlite", "quire.db")));
