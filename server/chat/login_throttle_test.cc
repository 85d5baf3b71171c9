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
    throttle.Failed("alice", "10.0.0.1", now);
  }
  // Three in a row: the fourth waits until one has drained.
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.1", now), 10 * kSecond);
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.1", now + 4 * kSecond), 6 * kSecond);
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.1", now + 10 * kSecond), 0);
  // Another name from the same address is not held back by alice's bucket.
  EXPECT_EQ(throttle.RetryAfter("bob", "10.0.0.1", now), 0);
  // One more failure at 10 s fills it again.
  throttle.Failed("alice", "10.0.0.1", now + 10 * kSecond);
  EXPECT_GT(throttle.RetryAfter("alice", "10.0.0.1", now + 10 * kSecond), 0);
}

TEST(LoginThrottleTest, ASuccessEmptiesTheNamesBucketOnly) {
  LoginThrottle throttle({2, 60 * kSecond}, {3, 60 * kSecond});
  const storage::Micros now = 50 * kSecond;
  throttle.Failed("alice", "10.0.0.1", now);
  throttle.Failed("alice", "10.0.0.1", now);
  EXPECT_GT(throttle.RetryAfter("alice", "10.0.0.2", now), 0);
  throttle.Succeeded("alice");
  EXPECT_EQ(throttle.RetryAfter("alice", "10.0.0.2", now), 0);
  // The address keeps its two failures: one more and it is held back.
  throttle.Failed("carol", "10.0.0.1", now);
  EXPECT_EQ(throttle.RetryAfter("dave", "10.0.0.1", now), 60 * kSecond);
  EXPECT_EQ(throttle.RetryAfter("dave", "10.0.0.3", now), 0);
}

TEST(LoginThrottleTest, AWaitIsAtLeastASecond) {
  LoginThrottle throttle({1, kSecond / 10}, {100, kSecond});
  throttle.Failed("alice", "a", 0);
  EXPECT_EQ(throttle.RetryAfter("alice", "a", 0), kSecond);
}

TEST(LoginThrottleTest, MemoryIsBoundedAndTheFullestBucketsStay) {
  LoginThrottle throttle({2, 60 * kSecond}, {1000000, kSecond}, /*max_keys=*/100);
  const storage::Micros now = 1000 * kSecond;
  throttle.Failed("target", "x", now);
  throttle.Failed("target", "x", now);
  // A flood of other names (one failure each) cannot push the target out.
  for (int i = 0; i < 1000; ++i) throttle.Failed("name" + std::to_string(i), "x", now);
  EXPECT_GT(throttle.RetryAfter("target", "x", now), 0);
}

}  // namespace
}  // namespace quire::chat
