// The LMDB backend: an embedded store in a directory, for one process.
//
// URL form: "lmdb:DIR" or "lmdb:DIR?sync=full|off". DIR is a directory path,
// absolute or relative to the working directory, taken literally; it is
// created when missing. "sync=full" (the default) syncs every commit: an
// acknowledged write survives a process kill and power loss. "sync=off"
// opens LMDB with MDB_NOSYNC: acknowledged writes survive a process kill but
// not power loss (capabilities() says so). Anything else is Invalid.
//
// One process at a time: the store holds an exclusive lock on DIR/quire.lock
// for its whole life, and a second process opening the same directory gets
// Unavailable instead of sharing (and corrupting) the in-process state. The
// map grows by itself (doubling, up to 1 TiB) when a batch does not fit.
// Every read is one short read-only transaction; LMDB readers never block the
// writer, nor it them.
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

// Opens (creating as needed) the LMDB store named by `url_or_dir_spec`: a URL
// "lmdb:DIR[?sync=full|off]" or the same without the "lmdb:" prefix.
// Invalid for a malformed spec; Unavailable when the directory cannot be
// created or opened, or another process has it open; Corrupt when it holds an
// LMDB database that is not Quire's, a schema newer than this build knows,
// or files that are not LMDB's.
// Opens it for serving (EngineUse::kServe); Unavailable also while a
// maintenance command holds it.
Status OpenLmdbStore(const std::string& url_or_dir_spec, std::unique_ptr<Store>* out);

// Opens the same as an Engine for `use` and holds it (Engine::Hold): a
// shared or exclusive flock on DIR itself, taken before quire.lock.
// Unavailable, saying who has it, when a server (for kMaintain) or a
// maintenance command (for kServe) holds it already. Backup(path) writes a
// compacted copy (mdb_env_copy2) into the directory `path`, created when
// missing and refused when not empty, while servers keep writing;
// CheckIntegrity compares the hand-kept index tables with the records.
Status OpenLmdbEngine(const std::string& url_or_dir_spec, EngineUse use,
                      std::unique_ptr<Engine>* out);

// Registers the "lmdb" scheme with `registry`.
void RegisterLmdbBackend(Registry& registry);

}  // namespace quire::storage
