// Helpers for engines whose store lives in this machine's file system
// (SQLite, LMDB): the lock of Engine::Hold, and syncing new files.
//
// ServingLock is flock(2) on a file or directory that stands for the store:
// shared for EngineUse::kServe and kBackup, exclusive for kMaintain, never
// waiting. flock
// belongs to the open file description, so each ServingLock opens a
// descriptor of its own: several engines opened for kServe in one process
// coexist, and one opened for kMaintain excludes them all. The lock ends when
// the descriptor closes, also when the process dies.
//
// Never lock (nor sync through SyncPath) a file that SQLite, or anything else
// relying on POSIX fcntl locks, has open: closing any descriptor of a file
// drops all of the process's fcntl locks on it. Lock a file beside it.
//
// Thread-safety: a ServingLock is used by one thread at a time; SyncPath may
// be called from any thread. Ownership: a ServingLock owns its descriptor.
#pragma once

#include <sys/types.h>

#include <string>

#include "storage/engine.h"
#include "storage/status.h"

namespace quire::storage {

class ServingLock {
 public:
  ServingLock() = default;
  ~ServingLock();
  ServingLock(const ServingLock&) = delete;
  ServingLock& operator=(const ServingLock&) = delete;

  // Opens `path` with `open_flags` (plus O_CLOEXEC; `mode` when O_CREAT
  // creates it) and locks it for `use`. `store` names the store in messages
  // ("SQLite database 'x'"). Unavailable when the other kind of user holds
  // it, saying which, or when `path` cannot be opened or locked; Invalid when
  // this lock is already held.
  Status Take(const std::string& path, int open_flags, mode_t mode, EngineUse use,
              const std::string& store);

  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// fsync of the file or directory `path` (a new file's data, or a new entry
// of a directory). IoError, naming it, when that fails.
Status SyncPath(const std::string& path);

}  // namespace quire::storage
