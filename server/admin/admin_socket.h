// The admin socket: how `quire admin` asks a running server to act
// (docs/operations.md, "Admin commands"). A Unix domain socket, mode 0600,
// so only the server's own user may administer it (docs/security.md); one
// request per connection, one line each way.
//
// AdminSocket serves it on a thread of its own, never on the HTTP reactors
// or workers, one connection at a time: a client that is slow or silent
// holds only that thread, and for at most `io_timeout` per connection.
//
// Thread-safety: Start and the destructor are called from one thread; the
// handler runs on the socket's thread. Ownership: the socket owns its thread,
// its file descriptors and the socket file, which it removes when destroyed
// (if that path still names its socket); whatever the handler uses must
// outlive it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace quire::admin {

class AdminSocket {
 public:
  // Turns a request line into a response line (both without the newline).
  using Handler = std::function<std::string(const std::string& request)>;

  AdminSocket(std::string path, Handler handler,
              std::chrono::milliseconds io_timeout = std::chrono::seconds(5));
  ~AdminSocket();  // stops serving and removes the socket file
  AdminSocket(const AdminSocket&) = delete;
  AdminSocket& operator=(const AdminSocket&) = delete;

  // Creates the socket and starts serving. A stale socket file (nobody
  // answers) is replaced; false, with one line in *error, when a server
  // answers there already, the path is something else, or it cannot be made.
  bool Start(std::string* error);

 private:
  void Run();
  void Serve(int connection);

  const std::string path_;
  const Handler handler_;
  const std::chrono::milliseconds io_timeout_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};  // written once to stop Run
  ino_t inode_ = 0;              // of the socket file this made
  std::thread thread_;
};

// How a call went.
enum class CallOutcome {
  kAnswered,  // *response holds the server's line
  kNoServer,  // nothing listens at the path (no file, or a stale socket)
  kFailed,    // a server was there but the call failed; *error says why
};

// Sends `request` to the server at `path` and reads its one-line answer,
// waiting at most `timeout` in all.
CallOutcome CallAdminSocket(const std::string& path, const std::string& request,
                            std::chrono::milliseconds timeout, std::string* response,
                            std::string* error);

}  // namespace quire::admin
