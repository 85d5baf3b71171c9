#include "server/chat/login_throttle.h"

#include <gtest/gtest.h>

namespace quire::chat {
namespace {

constexpr storage::Micros kSecond = 1000000;

TEST(LoginThrottleTest, ABurstOfFailuresThenOneEveryDrainPeriod) {
  LoginThrottle throttle({3, 10 * kSecond}, {100, kSecond});
  storage::Micros now = 1000 * kSecond;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.1", now), 0) << "failure " << i;
    throttle.Attempted("alice", "10.0.0.1", now);
  }
  // Three in a row: the fourth waits until one has drained.
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.1", now), 10 * kSecond);
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.1", now + 4 * kSecond), 6 * kSecond);
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.1", now + 10 * kSecond), 0);
  // Another name from the same address is not held back by alice's bucket.
  EXPECT_EQ(throttle.RetryAfter("bob", "10.0.0.1", now), 0);
  // One more failure at 10 s fills it again.
  throttle.Attempted("alice", "10.0.0.1", now + 10 * kSecond);
  EXPECT_GT(throttle.RetryAfter("alice", "10.0.0.1", now + 10 * kSecond), 0);
}

TEST(LoginThrottleTest, ASuccessEmptiesTheNamesBucketAndRefundsTheAddress) {
  LoginThrottle throttle({2, 60 * kSecond}, {3, 60 * kSecond});
  const storage::Micros now = 50 * kSecond;
  throttle.Attempted("alice", "10.0.0.1", now);
  throttle.Attempted("alice", "10.0.0.1", now);
  EXPECT_GT(throttle.RetryAfter("alice", "10.0.0.2", now), 0);
  // A success (from 10.0.0.1 too) empties alice's bucket and gives the
  // address back its own attempt: it keeps one failure.
  throttle.Attempted("alice", "10.0.0.1", now);
  throttle.Succeeded("alice", "10.0.0.1");
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.2", now), 0);
  throttle.Attempted("carol", "10.0.0.1", now);
  EXPECT_EQ(throttle.RetryAfter("dave", "10.0.0.3", now), 0);
  EXPECT_EQ(throttle.RetryAfter("dave", "10.0.0.1", now), 60 * kSecond)
      << "three failures and a success from one address: its burst of 3 is used up";
}

TEST(LoginThrottleTest, AWaitIsAtLeastASecond) {
  LoginThrottle throttle({1, kSecond / 10}, {100, kSecond});
  throttle.Attempted("alice", "a", 0);
  EXPECT_EQ(throttle.RetryAfter("alice", "a", 0), kSecond);
}

TEST(LoginThrottleTest, MemoryIsBoundedAndTheFullestBucketsStay) {
  LoginThrottle throttle({2, 60 * kSecond}, {1000000, kSecond}, /*max_keys=*/100);
  const storage::Micros now = 1000 * kSecond;
  throttle.Attempted("target", "x", now);
  throttle.Attempted("target", "x", now);
  // A flood of other names (one failure each) cannot push the target out.
  for (int i = 0; i < 1000; ++i) throttle.Attempted("name" + std::to_string(i), "x", now);
  EXPECT_GT(throttle.RetryAfter("target", "x", now), 0);
}

}  // namespace
}  // namespace quire::chat
