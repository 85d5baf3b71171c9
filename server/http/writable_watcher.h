// WritableWatcher: one thread that waits for full sockets to take bytes again.
//
// Streams write to their sockets from whichever thread produces the bytes;
// when a socket is full, the stream asks to be told when it drains. Nothing
// waits meanwhile: the watcher's thread sleeps in epoll_wait (edge-triggered)
// and calls the stream back.
//
// Thread-safety: all methods may be called from any thread. A callback runs on
// the watcher's thread, never while the watcher holds its own lock, so it may
// take the caller's locks; a caller may hold its own lock while calling Watch
// or Forget.
// Ownership: the caller owns the fd and keeps it open until after Forget().
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace quire::http {

class WritableWatcher {
 public:
  WritableWatcher();   // starts the thread
  ~WritableWatcher();  // stops it; callbacks not yet run are dropped
  WritableWatcher(const WritableWatcher&) = delete;
  WritableWatcher& operator=(const WritableWatcher&) = delete;

  // From now on, calls `on_writable` each time `fd` becomes writable (or
  // fails) until Forget(id). At least once soon if it is writable already.
  // Returns 0 if the fd cannot be watched.
  std::uint64_t Watch(int fd, std::function<void()> on_writable);

  // Stops watching. A callback that already started may still be running;
  // callbacks must therefore check their owner's state under its lock.
  void Forget(std::uint64_t id, int fd);

 private:
  void Run();

  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd that ends the thread
  std::mutex mu_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, std::function<void()>> callbacks_;
  std::thread thread_;
};

}  // namespace quire::http
