#include "storage/local_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace quire::storage {

ServingLock::~ServingLock() {
  if (fd_ >= 0) close(fd_);
}

Status ServingLock::Take(const std::string& path, int open_flags, mode_t mode, EngineUse use,
                         const std::string& store) {
  if (fd_ >= 0) return Status::Invalid(store + " is already held");
  const int fd = open(path.c_str(), open_flags | O_CLOEXEC, mode);
  if (fd < 0) {
    return Status::Unavailable("cannot open " + path + " to lock " + store + ": " +
                               std::strerror(errno));
  }
  const bool serve = use != EngineUse::kMaintain;  // servers and backups share
  if (flock(fd, (serve ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0) {
    fd_ = fd;
    return Status::Ok();
  }
  const int error = errno;
  std::string why;
  if (error != EWOULDBLOCK) {
    why = "cannot lock " + path + ": " + std::strerror(error);
  } else if (!serve && flock(fd, LOCK_SH | LOCK_NB) == 0) {
    // Only shared holders, so servers. The probe's lock goes with the fd.
    why = store + " is in use by a running quire server; stop it first";
  } else {
    why = store + " is being migrated, restored or checked by another quire command";
  }
  close(fd);
  return Status::Unavailable(why);
}

Status SyncPath(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) close(fd);
    return Status::IoError("cannot sync " + path + ": " + why);
  }
  close(fd);
  return Status::Ok();
}

}  // namespace quire::storage
