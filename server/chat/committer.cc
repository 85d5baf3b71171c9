#include "server/chat/committer.h"

#include <algorithm>
#include <future>
#include <vector>

namespace quire::chat {

Committer::Committer(storage::Store& store, std::size_t max_batch, Pace pace, BatchObserver observe)
    : store_(store),
      max_batch_(max_batch),
      pace_(std::move(pace)),
      observe_(std::move(observe)),
      replier_([this] { Reply(); }),
      thread_([this] { Run(); }) {}

Committer::~Committer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  thread_.join();  // applies what is queued and hands it to the reply thread
  {
    std::lock_guard<std::mutex> lock(mu_);
    applying_done_ = true;
  }
  reply_work_.notify_all();
  replier_.join();  // answers every batch handed to it
}

void Committer::Submit(storage::Write write, Completion done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Pending{std::move(write), std::move(done)});
  }
  work_.notify_one();
}

storage::Write Committer::SubmitAndWait(storage::Write write) {
  std::promise<storage::Write> outcome;
  std::future<storage::Write> result = outcome.get_future();
  Submit(std::move(write), [&outcome](storage::Write w) { outcome.set_value(std::move(w)); });
  return result.get();
}

void Committer::AwaitReplies(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::uint64_t started = batches_started_;
  answered_.wait_for(lock, limit, [&] { return batches_answered_ >= started; });
}

void Committer::Run() {
  std::vector<Completion> completions;
  std::vector<storage::Write> writes;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && writes.size() < max_batch_) {
        writes.push_back(std::move(queue_.front().write));
        completions.push_back(std::move(queue_.front().done));
        queue_.pop_front();
      }
      ++batches_started_;
    }
    const auto started = std::chrono::steady_clock::now();
    const storage::Status applied = store_.Apply(writes);  // one transaction for the batch
    if (observe_) {
      observe_(writes.size(),
               std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::steady_clock::now() - started),
               !applied.ok());
    }
    std::int64_t committed_seq = 0;
    for (const storage::Write& w : writes) {
      if (w.status.ok()) committed_seq = std::max(committed_seq, w.last_seq);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      applied_.push_back(Applied{std::move(writes), std::move(completions)});
    }
    reply_work_.notify_one();
    writes.clear();
    completions.clear();
    if (pace_) pace_(committed_seq);
  }
}

void Committer::Reply() {
  for (;;) {
    Applied batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      reply_work_.wait(lock, [&] { return applying_done_ || !applied_.empty(); });
      if (applied_.empty()) return;  // the committer ended and everything is answered
      batch = std::move(applied_.front());
      applied_.pop_front();
    }
    for (std::size_t i = 0; i < batch.writes.size(); ++i) {
      batch.completions[i](std::move(batch.writes[i]));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++batches_answered_;
    }
    answered_.notify_all();
  }
}

}  // namespace quire::chat
