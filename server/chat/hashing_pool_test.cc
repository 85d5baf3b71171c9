#include "server/chat/hashing_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace quire::chat {
namespace {

TEST(HashingPoolTest, RunsAtMostItsThreadsAtOnceAndRefusesBeyondItsQueue) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> running{0}, most{0}, done{0};
  {
    HashingPool pool(2, /*max_queued=*/3);
    auto job = [&] {
      const int now = running.fetch_add(1) + 1;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      released.wait();
      running.fetch_sub(1);
      done.fetch_add(1);
    };
    ASSERT_TRUE(pool.Submit(job));
    ASSERT_TRUE(pool.Submit(job));
    // Wait until both threads hold a job; then three may wait in the queue.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (running.load() < 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(running.load(), 2);
    EXPECT_TRUE(pool.Submit(job));
    EXPECT_TRUE(pool.Submit(job));
    EXPECT_TRUE(pool.Submit(job));
    EXPECT_FALSE(pool.Submit(job)) << "a fourth job waiting was accepted";
    release.set_value();
  }  // the destructor runs what is queued
  EXPECT_EQ(done.load(), 5);
  EXPECT_EQ(most.load(), 2);
}

}  // namespace
}  // namespace quire::chat
