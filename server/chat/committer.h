// Committer: group commit in front of a Store.
//
// Writers hand their writes to one committer thread, which takes every write
// waiting at that moment, however many, and applies them as one batch, so one
// fsync acknowledges many sends. Nobody waits with a thread: each write
// carries a completion that the committer calls once its batch committed (or
// failed), and only then may a client be told: a write acknowledged is
// durable.
//
// Thread-safety: Submit and SubmitAndWait may be called from any thread.
// Completions run on the committer's reply thread, batch after batch in
// commit order, one after another, and must not block (they queue a reply,
// they do not wait for anything). The committer thread hands each committed
// batch to the reply thread and starts the next batch at once: answering a
// batch (rendering JSON, queueing bytes, waking reactors) overlaps the next
// commit instead of delaying it.
// Ownership: the Store must outlive the Committer. The destructor applies what
// is queued, runs its completions, then stops.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "storage/store.h"

namespace quire::chat {

class Committer {
 public:
  // Runs on the committer thread after each batch was handed to the reply
  // thread, with the highest sequence the batch committed (0 if none). It may wait there: the
  // server waits while its event streams are more than one batch behind, so
  // that writes batch up instead of running ahead of the fan-out.
  using Pace = std::function<void(std::int64_t committed_seq)>;

  // Runs on the committer thread after each batch was applied: its number
  // of writes, how long Apply took, and whether the batch failed as a whole
  // (metrics). Keep it quick.
  using BatchObserver =
      std::function<void(std::size_t writes, std::chrono::microseconds took, bool failed)>;

  explicit Committer(storage::Store& store, std::size_t max_batch = 256, Pace pace = nullptr,
                     BatchObserver observe = nullptr);
  ~Committer();  // applies what is queued, then stops
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // Receives a write after its batch: the outcome is in write.status and
  // write.last_seq.
  using Completion = std::function<void(storage::Write write)>;

  // Queues `write` for the next batch and returns at once; `done` runs on the
  // reply thread after the batch committed (or failed).
  void Submit(storage::Write write, Completion done);

  // Queues `write` and waits for its outcome, for callers that hold a thread
  // anyway (password hashing, tests).
  storage::Write SubmitAndWait(storage::Write write);

  // Waits (at most `limit`) until every batch started so far has run its
  // completions. The event pump calls it when a commit woke it, so that the
  // replies of that commit are queued before the stream bytes of its events.
  void AwaitReplies(std::chrono::milliseconds limit);

 private:
  struct Pending {
    storage::Write write;
    Completion done;
  };
  // A batch applied, waiting for the reply thread to run its completions.
  struct Applied {
    std::vector<storage::Write> writes;
    std::vector<Completion> completions;
  };
  void Run();
  void Reply();

  storage::Store& store_;
  const std::size_t max_batch_;
  const Pace pace_;
  const BatchObserver observe_;
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Pending> queue_;
  std::uint64_t batches_started_ = 0;   // guarded by mu_
  std::uint64_t batches_answered_ = 0;  // guarded by mu_
  std::condition_variable answered_;
  bool stopping_ = false;
  std::deque<Applied> applied_;  // guarded by mu_
  bool applying_done_ = false;   // the committer thread ended; guarded by mu_
  std::condition_variable reply_work_;
  std::thread replier_;  // started before thread_, joined after it
  std::thread thread_;
};

}  // namespace quire::chat
