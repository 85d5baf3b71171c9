// The conformance suite run against the SQLite backend.
#include "conformance_tests/sqlite_backend.h"
#include "conformance_tests/suite.h"

QUIRE_INSTANTIATE_STORE_CONFORMANCE(Sqlite, quire::conformance::SqliteBackend("sqlite"));
