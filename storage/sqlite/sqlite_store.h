// The SQLite backend: Quire's embedded default store.
//
// URL form: "sqlite:PATH". PATH is a file name, absolute or relative to the
// working directory, taken literally (no "file:" URI parsing); the file is
// created when missing. "sqlite:" alone and in-memory databases are refused
// (Invalid): readers use their own connections, so the data must be a file.
//
// The database runs in WAL mode with synchronous=FULL: an acknowledged write
// survives a process kill and power loss. One writer connection (per process)
// applies each batch in one transaction; reads use a pool of connections and
// run concurrently with the writer. Only one process should write a given
// file: commit notifications (WaitForCommit) do not cross processes.
//
// Nothing of the engine leaves this folder: errors are Status codes.
#pragma once

#include <memory>
#include <string>

#include "storage/engine.h"
#include "storage/registry.h"
#include "storage/status.h"
#include "storage/store.h"

namespace quire::storage {

// Opens (creating and migrating as needed) the SQLite store at `path`, for
// serving (EngineUse::kServe). Invalid for an empty path or ":memory:";
// Unavailable when the file cannot be opened or written (missing directory,
// permissions, locked by another process) or a maintenance command holds it;
// Corrupt when the file is not a SQLite database, is another application's
// database, or has a schema newer than this build knows.
Status OpenSqliteStore(const std::string& path, std::unique_ptr<Store>* out);

// Opens the same as an Engine for `use` and holds it (Engine::Hold): a
// shared or exclusive flock on PATH-lock, a file beside the database, created
// when missing. Unavailable, saying who has it, when a server (for
// kMaintain) or a maintenance command (for kServe) holds it already.
// Backup(path) writes a new file `path` (refused when it exists) with
// SQLite's online backup while servers keep writing; CheckIntegrity reports
// PRAGMA integrity_check and foreign_key_check.
Status OpenSqliteEngine(const std::string& path, EngineUse use, std::unique_ptr<Engine>* out);

// Registers the "sqlite" scheme with `registry`.
void RegisterSqliteBackend(Registry& registry);

}  // namespace quire::storage
