// The PostgreSQL backend: for larger installs, with several `quire serve`
// processes sharing one database.
//
// URL form: "postgres://…" or "postgresql://…", libpq's URI syntax, e.g.
// postgresql://quire:secret@db.example/quire?sslmode=require. Quire adds a
// connect timeout and TCP keepalives unless the URL sets them.
//
// Sequences follow commit order across every process: each write
// transaction first locks the one row of quire_meta that holds the last
// sequence, takes its numbers from it and commits before the next writer can
// lock it (docs/architecture.md says why, and what it costs). A commit
// NOTIFYs channel "quire_commits"; every store LISTENs on it, so
// WaitForCommit wakes for commits of any process.
//
// Connections: a pool (one connection at a time writes; reads run
// concurrently, each statement its own snapshot), one listening connection
// with a thread of its own, and one that holds the advisory lock keeping
// servers and maintenance commands apart. A lost connection is dropped and a new
// one made on the next call; while the server is unreachable calls return
// Unavailable quickly, and the store recovers by itself when it returns.
//
// Thread-safety: every method may be called from any thread concurrently.
// Nothing of the engine leaves this folder: errors are Status codes.
#pragma once

#include <memory>
#include <string>

#include "storage/engine.h"
#include "storage/registry.h"
#include "storage/status.h"
#include "storage/store.h"

namespace quire::storage {

// Connects to the database at `url`, migrates it to the current schema, and
// opens the store, holding the database for serving (EngineUse::kServe).
// Unavailable when the server cannot be reached or refuses the login, or a
// maintenance command has the database; Corrupt when the database has a
// newer or foreign schema.
Status OpenPostgresStore(const std::string& url, std::unique_ptr<Store>* out);

// Connects and migrates as OpenPostgresStore does, then holds the database
// for `use` (Engine::Hold) until the engine is destroyed: Unavailable when a
// server runs on it and `use` is kMaintain, or a maintenance command has it.
Status OpenPostgresEngine(const std::string& url, EngineUse use, std::unique_ptr<Engine>* out);

// Registers the engine for the "postgres" and "postgresql" schemes with
// `registry` (RegisterEngine: served stores and maintenance commands).
void RegisterPostgresBackend(Registry& registry);

}  // namespace quire::storage
