// SessionCache: what it keeps, what a write makes it forget, and the race it
// must lose (a read that began before a logout never brings the session back).
#include "server/chat/session_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace quire::chat {
namespace {

storage::Session S(const std::string& hash, storage::Micros last_used = 10) {
  return storage::Session{hash, "U1", 1, last_used};
}

TEST(SessionCacheTest, KeepsWhatWasReadAndForgetsOneOrAll) {
  SessionCache cache(true);
  EXPECT_FALSE(cache.Find("a").has_value());
  cache.Remember(S("a"), cache.Generation());
  cache.Remember(S("b"), cache.Generation());
  ASSERT_TRUE(cache.Find("a").has_value());
  EXPECT_EQ(cache.Find("a")->user_id, "U1");
  EXPECT_EQ(cache.Find("a")->last_used, 10);

  cache.Forget("a");
  EXPECT_FALSE(cache.Find("a").has_value());
  EXPECT_TRUE(cache.Find("b").has_value());

  cache.Forget("");
  EXPECT_FALSE(cache.Find("b").has_value());
}

TEST(SessionCacheTest, AReadThatBeganBeforeAForgetIsNotKept) {
  SessionCache cache(true);
  const std::uint64_t before_logout = cache.Generation();
  // The logout commits and forgets while the request's read is under way...
  cache.Forget("a");
  // ...and the read, which saw the session still stored, comes back.
  cache.Remember(S("a"), before_logout);
  EXPECT_FALSE(cache.Find("a").has_value());
  // A read that began after the forget is kept.
  cache.Remember(S("a"), cache.Generation());
  EXPECT_TRUE(cache.Find("a").has_value());
}

TEST(SessionCacheTest, DisabledKeepsNothing) {
  SessionCache cache(false);
  cache.Remember(S("a"), cache.Generation());
  EXPECT_FALSE(cache.Find("a").has_value());
}

TEST(SessionCacheTest, StaysWithinItsBound) {
  SessionCache cache(true, 3);
  for (const char* hash : {"a", "b", "c"}) cache.Remember(S(hash), cache.Generation());
  EXPECT_TRUE(cache.Find("c").has_value());
  cache.Remember(S("d"), cache.Generation());  // full: empties, then keeps d
  EXPECT_TRUE(cache.Find("d").has_value());
  EXPECT_FALSE(cache.Find("a").has_value());
}

TEST(SessionCacheTest, WritesThatChangeSessionsAreKnown) {
  namespace op = storage::op;
  std::string hash = "left over";
  EXPECT_TRUE(ChangesSessions(op::DeleteSession{"h1"}, &hash));
  EXPECT_EQ(hash, "h1");
  EXPECT_TRUE(ChangesSessions(op::TouchSession{"h2", 5}, &hash));
  EXPECT_EQ(hash, "h2");
  for (const op::Operation& every :
       {op::Operation(op::ChangePassword{"U1", "hash", {}}),
        op::Operation(op::DeleteUserSessions{"U1"}), op::Operation(op::Purge{})}) {
    EXPECT_TRUE(ChangesSessions(every, &hash));
    EXPECT_EQ(hash, "") << "a write that ends any number of sessions forgets them all";
  }
  for (const op::Operation& none :
       {op::Operation(op::CreateSession{S("h3")}), op::Operation(op::SendMessage{}),
        op::Operation(op::Expire{}), op::Operation(op::CreateConversation{})}) {
    EXPECT_FALSE(ChangesSessions(none, &hash));
  }
}

}  // namespace
}  // namespace quire::chat
