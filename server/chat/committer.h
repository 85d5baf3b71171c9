// Committer: group commit in front of a Store.
//
// Request threads hand their writes to one committer thread, which takes every
// write waiting at that moment and applies them as one batch, so one fsync
// acknowledges many sends. Apply returns only after the batch committed: a
// write acknowledged to a client is durable.
//
// Thread-safety: Submit may be called from any thread.
// Ownership: the Store must outlive the Committer.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>

#include "storage/store.h"

namespace quire::chat {

class Committer {
 public:
  explicit Committer(storage::Store& store, std::size_t max_batch = 256);
  ~Committer();  // applies what is queued, then stops
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // Applies `write` (in a batch with whatever else is waiting) and blocks until
  // its outcome is known; the outcome is in write.status and write.last_seq.
  void Submit(storage::Write& write);

 private:
  struct Pending;
  void Run();

  storage::Store& store_;
  const std::size_t max_batch_;
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Pending*> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace quire::chat
