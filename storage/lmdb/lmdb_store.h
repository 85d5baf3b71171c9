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
Status OpenLmdbStore(const std::string& url_or_dir_spec, std::unique_ptr<Store>* out);

// Registers the "lmdb" scheme with `registry`.
void RegisterLmdbBackend(Registry& registry);

}  // namespace quire::storage
