#include "server/chat/committer.h"

#include <vector>

namespace quire::chat {

struct Committer::Pending {
  storage::Write* write = nullptr;
  bool done = false;
  std::condition_variable done_cv;
};

Committer::Committer(storage::Store& store, std::size_t max_batch)
    : store_(store), max_batch_(max_batch), thread_([this] { Run(); }) {}

Committer::~Committer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  thread_.join();
}

void Committer::Submit(storage::Write& write) {
  Pending pending;
  pending.write = &write;
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&pending);
  work_.notify_one();
  pending.done_cv.wait(lock, [&] { return pending.done; });
}

void Committer::Run() {
  std::vector<Pending*> batch;
  std::vector<storage::Write> writes;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    // The store works on a contiguous array; move the writes in and back out.
    writes.clear();
    writes.reserve(batch.size());
    for (Pending* p : batch) writes.push_back(std::move(*p->write));
    store_.Apply(writes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Pending* p = batch[i];
        *p->write = std::move(writes[i]);
        p->done = true;
        p->done_cv.notify_one();
      }
    }
    batch.clear();
  }
}

}  // namespace quire::chat
