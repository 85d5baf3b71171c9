// The conformance suite run against the LMDB backend: a new directory per
// test.
#include "conformance_tests/suite.h"
#include "conformance_tests/url_backend.h"
#include "storage/lmdb/lmdb_store.h"

QUIRE_INSTANTIATE_STORE_CONFORMANCE(
    Lmdb, quire::conformance::UrlBackend("lmdb", quire::storage::RegisterLmdbBackend,
                                         quire::conformance::TempDirUrl("lmdb")));
