// CommitSignal: the commit generation behind Store::CommitGeneration and
// Store::WaitForCommit, for backends to share rather than each write again.
//
// Thread-safety: every method may be called from any thread concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace quire::storage {

class CommitSignal {
 public:
  // The number of Notify() calls so far.
  std::uint64_t generation() const { return generation_.load(); }

  // A commit happened: bumps the generation and wakes every waiter.
  void Notify() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation_.fetch_add(1);
    }
    cv_.notify_all();
  }

  // Blocks until the generation differs from `seen`, `timeout` passes or the
  // signal is closed; returns the generation.
  std::uint64_t Wait(std::uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return generation_.load() != seen || closed_; });
    return generation_.load();
  }

  // Wakes every waiter; later waits return at once (the store is closing).
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<std::uint64_t> generation_{0};
  bool closed_ = false;  // guarded by mu_
};

}  // namespace quire::storage
