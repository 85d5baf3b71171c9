#include "server/http/connection.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quire::http {

namespace {

// Shuts the connection's socket down (`how`: SHUT_WR or SHUT_RDWR) on the
// reactor thread and only while the connection is still ours: Pistache closes
// the fd on a disconnect (after onDisconnection marked it gone) or on a
// timeout (after which the peer is destroyed and the weak pointer expired),
// and a closed fd number may already be someone else's.
std::function<void()> ShutdownSocket(std::shared_ptr<ConnShared> conn, int how) {
  return [conn, how] {
    OnReactor(conn->reactor, [conn, how] {
      std::lock_guard<std::mutex> lock(conn->mu);
      if (conn->gone) return;
      if (auto peer = conn->peer.lock()) ::shutdown(peer->fd(), how);
    });
  };
}

}  // namespace

int DuplicateSocket(const ConnShared& conn) {
  auto peer = conn.peer.lock();
  if (!peer || conn.socket_inode == 0) return -1;
  int fd = ::fcntl(peer->fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_ino != conn.socket_inode) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::function<void()> HalfCloseWhenWritten(std::shared_ptr<ConnShared> conn) {
  return ShutdownSocket(std::move(conn), SHUT_WR);
}

std::function<void()> DropConnection(std::shared_ptr<ConnShared> conn) {
  return ShutdownSocket(std::move(conn), SHUT_RDWR);
}

}  // namespace quire::http
