// Properties 11 and 12 (docs/backend-authors.md): reads do not block
// writers, and commits wake whoever waits for them.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <set>
#include <thread>
#include <utility>

#include "conformance_tests/suite.h"
#include "conformance_tests/suite_internal.h"

namespace quire::conformance {

// ---- Property 11 ----

namespace {
using SteadyTime = std::chrono::steady_clock::time_point;
struct Interval {
  SteadyTime begin, end;
};
}  // namespace

// Property 11 (docs/backend-authors.md): read isolation. A read transaction is
// never held across calls: a writer is not held up by a reader that waits
// between two pages, and the reader's next page shows what committed meanwhile.
// And a long read does not block writers: writes keep completing while one
// ReadEvents of the whole history runs.
//
// How the second part tells, without timing targets: if reads and writes
// excluded each other, every read would hold a stretch as long as its own
// reading in which no write completes. Each concurrent read's widest stretch
// without a completed write is compared with a read of the same history
// alone, right after: when it is under half of that for most reads, reads
// and writes ran together. (Comparing with the shortest concurrent read let
// the fault escape: a writer that keeps the lock busy makes every read wait
// for it, so even the shortest read lasted twice the reading.) The history
// grows until reads are long enough for the writes to fill them (up to
// 160,000 events).
TEST_P(StoreConformance, P11_ReadsDoNotBlockWriters) {
  const std::string user = SetUpFirstUser();
  const Conversation room = CreateRoom();
  std::int64_t next_message = 1;
  auto append = [&](int count) {
    while (count > 0) {
      std::vector<Write> batch(std::min(count, 500));
      for (Write& w : batch) {
        const std::int64_t n = next_message++;
        w.op = op::SendMessage{
            MakeMessage(n, room.id, user, "history message " + std::to_string(n), 2000), "", 0,
            false};
      }
      count -= static_cast<int>(batch.size());
      const Status s = store_->Apply(batch);
      if (!s.ok()) return s;
    }
    return Status::Ok();
  };
  QUIRE_ASSERT_OK(append(1000));

  // A slow consumer: one page, then a pause in which another thread writes.
  std::vector<Event> page;
  QUIRE_ASSERT_OK(store_->ReadEvents(0, INT64_MAX, 100, &page));
  ASSERT_EQ(page.size(), 100u);
  Write late;
  std::thread writer([&] {
    std::vector<Write> batch(1);
    batch[0].op = op::SendMessage{MakeMessage(999999, room.id, user, "late", 3000), "", 0, false};
    if (store_->Apply(batch).ok()) late = batch[0];
  });
  writer.join();  // a backend holding the reader's transaction would hang here
  ASSERT_TRUE(late.status.ok()) << late.status.ToString();
  const std::vector<Event> rest = History(page.back().seq, INT64_MAX, 500);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back().seq, late.last_seq) << "the next page misses a write committed meanwhile";
  EXPECT_EQ(rest.back().id, Id('M', 999999));

  // Long reads while a writer writes.
  const auto ms = [](std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
  };
  bool overlapped = false;
  std::string observed;
  for (int size = 20000; size <= 160000 && !overlapped; size *= 2) {
    QUIRE_ASSERT_OK(append(size - static_cast<int>(Head().last_seq)));
    std::string problem;
    std::atomic<bool> writing{true};
    std::atomic<int> reads_done{0};
    std::vector<Interval> reads;
    std::latch start(2);
    std::thread reader([&] {
      start.arrive_and_wait();
      while (writing.load() && problem.empty()) {
        const SteadyTime begin = std::chrono::steady_clock::now();
        std::vector<Event> all;
        const Status s = store_->ReadEvents(0, INT64_MAX, 1000000, &all);
        if (!s.ok() || all.size() + 10 < static_cast<std::size_t>(size)) {
          problem = s.ToString() + ", read " + std::to_string(all.size());
        }
        reads.push_back({begin, std::chrono::steady_clock::now()});
        reads_done.fetch_add(1);
      }
    });
    // Write until kReads reads have finished (bounded by 5 s and 200,000
    // writes, for a reader that never gets a turn), noting when each write
    // completed.
    constexpr int kReads = 7;
    std::vector<SteadyTime> completed;
    std::string write_problem;
    start.arrive_and_wait();
    const SteadyTime deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (reads_done.load() < kReads && completed.size() < 200000 && write_problem.empty() &&
           std::chrono::steady_clock::now() < deadline) {
      std::vector<Write> batch(1);
      batch[0].op = op::SendMessage{MakeMessage(next_message++, room.id, user, "concurrent", 4000),
                                    "", 0, false};
      const Status s = store_->Apply(batch);
      if (!s.ok() || !batch[0].status.ok()) write_problem = "a write failed: " + s.ToString();
      completed.push_back(std::chrono::steady_clock::now());
    }
    writing.store(false);
    reader.join();
    ASSERT_EQ(problem, "");
    ASSERT_EQ(write_problem, "");
    // The reading itself: the fastest of three reads with nothing else going on.
    auto alone = std::chrono::steady_clock::duration::max();
    for (int i = 0; i < 3; ++i) {
      const SteadyTime begin = std::chrono::steady_clock::now();
      std::vector<Event> all;
      QUIRE_ASSERT_OK(store_->ReadEvents(0, INT64_MAX, 1000000, &all));
      alone = std::min(alone, std::chrono::steady_clock::now() - begin);
    }

    // Per read wholly among the writes: its widest stretch without a
    // completed write.
    std::vector<std::pair<std::chrono::steady_clock::duration, std::chrono::steady_clock::duration>>
        widest_of;  // (widest stretch, duration)
    for (const Interval& r : reads) {
      if (r.begin < completed.front() || r.end > completed.back()) continue;
      SteadyTime last = r.begin;
      auto widest = std::chrono::steady_clock::duration::zero();
      for (const SteadyTime& c : completed) {
        if (c <= r.begin || c >= r.end) continue;
        widest = std::max(widest, c - last);
        last = c;
      }
      widest = std::max(widest, r.end - last);
      widest_of.emplace_back(widest, r.end - r.begin);
    }
    std::size_t filled = 0;
    std::string stretches;
    for (const auto& [widest, duration] : widest_of) {
      filled += widest < alone / 2;
      stretches += " " + std::to_string(ms(widest)) + "/" + std::to_string(ms(duration));
    }
    overlapped = !widest_of.empty() && filled * 2 > widest_of.size();
    observed += "history " + std::to_string(size) + ": a read alone " + std::to_string(ms(alone)) +
                " ms; " + std::to_string(completed.size()) + " writes during " +
                std::to_string(reads.size()) + " reads; per read wholly " +
                "among the writes, ms without a completed write / ms of the read:" +
                (stretches.empty() ? " none" : stretches) + "\n";
  }
  EXPECT_TRUE(overlapped) << "reads of the whole history leave room for an exclusive lock: "
                             "do reads block writers?\n"
                          << observed;
  RecordProperty("p11_observed", observed);
}

// ---- Property 12 ----

// Property 12: change notification (store.h). CommitGeneration grows with
// every commit, and WaitForCommit returns once the generation differs from
// what its caller saw: at once when a commit came before the call (the event
// pump reads, then waits; a commit in between must not be slept through),
// and as soon as another thread commits while it waits. The waits are bounded
// by kTimeout; a correct backend returns from each in far less than half.
TEST_P(StoreConformance, P12_CommitsWakeWaiters) {
  constexpr auto kTimeout = std::chrono::seconds(2);
  const std::string user = SetUpFirstUser();
  const Conversation room = CreateRoom();
  auto send = [&](std::int64_t n) {
    return Apply(op::SendMessage{MakeMessage(n, room.id, user, "wake", 2000 + n), "", 0, false})
        .status.ok();
  };
  // Waits until the generation differs from `seen` (WaitForCommit may return
  // early, spuriously); returns how long that took, and the generation.
  auto wait_from = [&](std::uint64_t seen, std::uint64_t* generation) {
    const auto begin = std::chrono::steady_clock::now();
    const auto deadline = begin + kTimeout;
    *generation = seen;
    while (*generation == seen && std::chrono::steady_clock::now() < deadline) {
      *generation =
          store_->WaitForCommit(seen, std::chrono::duration_cast<std::chrono::milliseconds>(
                                          deadline - std::chrono::steady_clock::now()));
    }
    return std::chrono::steady_clock::now() - begin;
  };

  const std::uint64_t before = store_->CommitGeneration();
  ASSERT_TRUE(send(1));
  const std::uint64_t after_one = store_->CommitGeneration();
  EXPECT_GT(after_one, before) << "a commit did not raise CommitGeneration";

  ASSERT_TRUE(send(2));
  std::uint64_t generation = 0;
  auto waited = wait_from(after_one, &generation);
  EXPECT_NE(generation, after_one);
  EXPECT_LT(waited, kTimeout / 2) << "WaitForCommit slept through a commit made before the call";

  const std::uint64_t idle = store_->CommitGeneration();
  std::latch waiting(2);
  std::thread waiter([&] {
    waiting.arrive_and_wait();
    waited = wait_from(idle, &generation);
  });
  waiting.arrive_and_wait();
  ASSERT_TRUE(send(3));
  waiter.join();
  EXPECT_NE(generation, idle);
  EXPECT_LT(waited, kTimeout / 2) << "a commit did not wake a waiter";
}

}  // namespace quire::conformance
