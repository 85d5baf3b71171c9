#include "server/admin/admin_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

namespace quire::admin {
namespace {

using Clock = std::chrono::steady_clock;

// A request line is a name and a password (at most 4,096 bytes, JSON-escaped).
constexpr std::size_t kMaxLine = 64 * 1024;
constexpr std::chrono::milliseconds kOutOfFilesPause{100};

std::string Errno(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

bool MakeAddress(const std::string& path, sockaddr_un* address, std::string* error) {
  *address = {};
  address->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address->sun_path) {
    *error = "admin socket path '" + path + "' is empty or longer than " +
             std::to_string(sizeof address->sun_path - 1) + " bytes";
    return false;
  }
  std::memcpy(address->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Milliseconds left until `deadline`, for poll (0 once passed).
int MillisLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits for `events` on `fd` until `deadline`; false on timeout or error.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  while (true) {
    const int n = poll(&p, 1, MillisLeft(deadline));
    if (n > 0) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

// Reads one line (without its newline) before `deadline`.
bool ReadLine(int fd, Clock::time_point deadline, std::string* line) {
  line->clear();
  char buffer[4096];
  while (true) {
    if (!WaitFor(fd, POLLIN, deadline)) return false;
    const ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return false;
    line->append(buffer, static_cast<std::size_t>(n));
    if (const auto eol = line->find('\n'); eol != std::string::npos) {
      line->resize(eol);
      return true;
    }
    if (line->size() > kMaxLine) return false;
  }
}

// Writes `line` and a newline before `deadline`.
bool WriteLine(int fd, std::string line, Clock::time_point deadline) {
  line += '\n';
  std::size_t sent = 0;
  while (sent < line.size()) {
    if (!WaitFor(fd, POLLOUT, deadline)) return false;
    const ssize_t n = send(fd, line.data() + sent, line.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

AdminSocket::AdminSocket(std::string path, Handler handler, std::chrono::milliseconds io_timeout)
    : path_(std::move(path)), handler_(std::move(handler)), io_timeout_(io_timeout) {}

AdminSocket::~AdminSocket() {
  if (thread_.joinable()) {
    const char stop = 's';
    if (write(stop_pipe_[1], &stop, 1) < 0) std::perror("quire: admin socket stop");
    thread_.join();
  }
  if (listen_fd_ >= 0) {
    // Removed only while the path still names this socket: a server started
    // since may have replaced it.
    struct stat info {};
    if (stat(path_.c_str(), &info) == 0 && info.st_ino == inode_) unlink(path_.c_str());
    close(listen_fd_);
  }
  for (int fd : stop_pipe_) {
    if (fd >= 0) close(fd);
  }
}

bool AdminSocket::Start(std::string* error) {
  sockaddr_un address;
  if (!MakeAddress(path_, &address, error)) return false;
  struct stat info {};
  if (lstat(path_.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) {
      *error = "admin socket path " + path_ + " exists and is not a socket";
      return false;
    }
    // A socket file: in use when a server answers, else left by one that died.
    std::string response, ignored;
    if (CallAdminSocket(path_, "", std::chrono::milliseconds(0), &response, &ignored) !=
        CallOutcome::kNoServer) {
      *error = "another server listens on the admin socket " + path_;
      return false;
    }
    unlink(path_.c_str());
  }
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    *error = Errno("admin socket");
    return false;
  }
  if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    *error = Errno("cannot create the admin socket " + path_);
    close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  // Only the server's user may connect. Set before listen(): until then a
  // connection is refused, so nobody gets in under looser permissions.
  if (chmod(path_.c_str(), 0600) != 0 || lstat(path_.c_str(), &info) != 0 ||
      listen(listen_fd_, 8) != 0 || pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    *error = Errno("cannot set up the admin socket " + path_);
    unlink(path_.c_str());
    close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  inode_ = info.st_ino;
  thread_ = std::thread([this] { Run(); });
  return true;
}

void AdminSocket::Run() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
  while (true) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("quire: admin socket");
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    const int connection = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) {
      // Out of files: wait a little rather than spin; the next poll retries.
      // (Otherwise the client gave up already.)
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(kOutOfFilesPause);
      continue;
    }
    // Beside the file's mode: a peer of another user (but root) is refused.
    ucred peer{};
    socklen_t size = sizeof peer;
    if (getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0 &&
        (peer.uid == geteuid() || peer.uid == 0)) {
      Serve(connection);
    }
    close(connection);
  }
}

void AdminSocket::Serve(int connection) {
  std::string request;
  // The whole request within io_timeout, however slowly its bytes come.
  if (!ReadLine(connection, Clock::now() + io_timeout_, &request)) return;
  std::string response;
  try {
    response = handler_(request);
  } catch (const std::exception& e) {
    // The server goes on; the client reports that nobody answered.
    std::fprintf(stderr, "quire: admin request failed: %s\n", e.what());
    return;
  }
  WriteLine(connection, response, Clock::now() + io_timeout_);
}

CallOutcome CallAdminSocket(const std::string& path, const std::string& request,
                            std::chrono::milliseconds timeout, std::string* response,
                            std::string* error) {
  sockaddr_un address;
  if (!MakeAddress(path, &address, error)) return CallOutcome::kFailed;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *error = Errno("admin socket");
    return CallOutcome::kFailed;
  }
  // A non-blocking connect to a Unix socket never waits: it lands in the
  // backlog, or fails at once (EAGAIN when the backlog is full).
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int failure = errno;
    close(fd);
    if (failure == ENOENT || failure == ECONNREFUSED) return CallOutcome::kNoServer;
    if (failure == EAGAIN) {
      *error = "the server's admin socket " + path + " is busy, try again";
      return CallOutcome::kFailed;
    }
    errno = failure;
    *error = Errno("cannot connect to the admin socket " + path);
    return CallOutcome::kFailed;
  }
  const Clock::time_point deadline = Clock::now() + timeout;
  CallOutcome outcome = CallOutcome::kAnswered;
  if (timeout.count() > 0) {
    if (!WriteLine(fd, request, deadline) || !ReadLine(fd, deadline, response)) {
      *error = "the server at the admin socket " + path + " did not answer";
      outcome = CallOutcome::kFailed;
    }
  }
  close(fd);
  return outcome;
}

}  // namespace quire::admin
