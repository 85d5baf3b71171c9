#include "server/chat/ids.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>

namespace quire::chat {
namespace {

constexpr std::string_view kAlphabet = "0123456789bcdfghjklmnpqrstvwxz";

TEST(IdsTest, ShapeOfEveryKind) {
  for (IdKind kind :
       {IdKind::kUser, IdKind::kConversation, IdKind::kMessage, IdKind::kInvitation}) {
    const std::string id = NewId(kind);
    ASSERT_EQ(id.size(), 16u);
    EXPECT_EQ(id[0], static_cast<char>(kind));
    for (char c : id.substr(1)) EXPECT_NE(kAlphabet.find(c), std::string_view::npos) << id;
    EXPECT_TRUE(LooksLikeId(id, kind)) << id;
  }
  EXPECT_EQ(NewId(IdKind::kUser)[0], 'U');
  EXPECT_EQ(NewId(IdKind::kConversation)[0], 'C');
  EXPECT_EQ(NewId(IdKind::kMessage)[0], 'M');
  EXPECT_EQ(NewId(IdKind::kInvitation)[0], 'I');
}

// The random characters: all 15 of an invitation id, the last 10 of others.
TEST(IdsTest, UniqueAndUsesWholeAlphabet) {
  std::set<std::string> ids;
  std::map<char, int> counts;
  constexpr int kIds = 4000;
  for (int i = 0; i < kIds; ++i) {
    const std::string invitation = NewId(IdKind::kInvitation);
    const std::string message = NewId(IdKind::kMessage);
    ids.insert(invitation);
    ids.insert(message);
    for (char c : invitation.substr(1, 5)) ++counts[c];
    for (char c : message.substr(6)) ++counts[c];
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(2 * kIds));
  // 60000 draws over 30 characters: each is expected 2000 times.
  EXPECT_EQ(counts.size(), kAlphabet.size());
  for (auto [c, n] : counts) {
    EXPECT_NE(kAlphabet.find(c), std::string_view::npos) << c;
    EXPECT_GT(n, 1500) << c;
    EXPECT_LT(n, 2500) << c;
  }
}

// Ids other than invitations begin with the time in hundredths of a second,
// so ids made one after the other share their first characters and sort in
// the order they were made (an index takes them on one page); invitation ids
// are random from the first character.
TEST(IdsTest, IdsOtherThanInvitationsBeginWithTheTime) {
  std::set<std::string> message_prefixes, invitation_prefixes;
  for (int i = 0; i < 1000; ++i) {
    message_prefixes.insert(NewId(IdKind::kMessage).substr(1, 3));
    invitation_prefixes.insert(NewId(IdKind::kInvitation).substr(1, 3));
  }
  // Three characters of the time change every 30^2 hundredths (9 s): at
  // most twice in a loop this short.
  EXPECT_LE(message_prefixes.size(), 2u);
  // 27,000 random prefixes: 1,000 draws give well over 900 distinct ones.
  EXPECT_GT(invitation_prefixes.size(), 900u);

  const std::string first = NewId(IdKind::kConversation);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const std::string later = NewId(IdKind::kConversation);
  // Later sorts after, unless the 2.8-day cycle wrapped in between (only
  // possible when the first was made in the cycle's last 270 s).
  if (first.substr(1, 5) < "zz000") {
    EXPECT_LT(first.substr(1, 5), later.substr(1, 5)) << first << " " << later;
  }
}

TEST(IdsTest, LooksLikeIdRejects) {
  EXPECT_TRUE(LooksLikeId("U0123456789bcdfg", IdKind::kUser));
  EXPECT_TRUE(LooksLikeId("Chjklmnpqrstvwxz", IdKind::kConversation));
  EXPECT_FALSE(LooksLikeId("U0123456789bcdfg", IdKind::kConversation));  // wrong kind
  EXPECT_FALSE(LooksLikeId("u0123456789bcdfg", IdKind::kUser));          // lowercase letter
  EXPECT_FALSE(LooksLikeId("", IdKind::kUser));
  EXPECT_FALSE(LooksLikeId("U", IdKind::kUser));
  EXPECT_FALSE(LooksLikeId("U0123456789bcdf", IdKind::kUser));    // 15 long
  EXPECT_FALSE(LooksLikeId("U0123456789bcdfgh", IdKind::kUser));  // 17 long
  EXPECT_FALSE(LooksLikeId("U0123456789bcdfa", IdKind::kUser));   // vowel
  EXPECT_FALSE(LooksLikeId("U0123456789bcdfy", IdKind::kUser));   // 'y' is not used
  EXPECT_FALSE(LooksLikeId("U0123456789bcdfG", IdKind::kUser));   // uppercase
  EXPECT_FALSE(LooksLikeId("U0123456789bcd-g", IdKind::kUser));
  EXPECT_FALSE(LooksLikeId(std::string_view("U0123456789bcd\0g", 16), IdKind::kUser));
}

}  // namespace
}  // namespace quire::chat
