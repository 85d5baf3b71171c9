// HashingPool: the few threads that hash and check passwords.
//
// An argon2id hash takes ~70 ms and 64 MiB by design. Run on the request's
// worker, a flood of logins ran as many hashes at once as there are workers
// (and as much memory), and every other request waited behind them. Here at
// most `threads` hashes run at once; logins wait in a bounded queue, holding
// no thread, and are refused (the caller answers 503) when the queue is full.
//
// Thread-safety: Submit may be called from any thread; jobs run on the
// pool's threads. Ownership: the destructor runs the jobs already queued,
// then joins.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace quire::chat {

class HashingPool {
 public:
  HashingPool(int threads, std::size_t max_queued);
  ~HashingPool();
  HashingPool(const HashingPool&) = delete;
  HashingPool& operator=(const HashingPool&) = delete;

  // Queues `job`; false (and the job is dropped) when `max_queued` jobs wait.
  bool Submit(std::function<void()> job);

 private:
  void Run();

  const std::size_t max_queued_;
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace quire::chat
