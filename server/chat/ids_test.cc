#include "server/chat/ids.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

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

TEST(IdsTest, UniqueAndUsesWholeAlphabet) {
  std::set<std::string> ids;
  std::map<char, int> counts;
  constexpr int kIds = 4000;
  for (int i = 0; i < kIds; ++i) {
    const std::string id = NewId(IdKind::kMessage);
    ids.insert(id);
    for (char c : id.substr(1)) ++counts[c];
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kIds));
  // 60000 draws over 30 characters: each is expected 2000 times.
  EXPECT_EQ(counts.size(), kAlphabet.size());
  for (auto [c, n] : counts) {
    EXPECT_NE(kAlphabet.find(c), std::string_view::npos) << c;
    EXPECT_GT(n, 1500) << c;
    EXPECT_LT(n, 2500) << c;
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
