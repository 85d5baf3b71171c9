#include "server/chat/event_json.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <string>
#include <vector>

namespace quire::chat {
namespace {

using storage::Event;
using storage::EventKind;

constexpr storage::Micros kAt = 1750346080431627;  // 2025-06-19T15:14:40.431627Z

TEST(EventJson, MessageSentHasTheFieldsOfTheContractInOrder) {
  Event e{1313,
          EventKind::kMessageSent,
          kAt,
          "Mbbbbbbbbbbbbbbb",
          "Cccccccccccccccc",
          "Udddddddddddddd0",
          "hello \"world\"\n",
          std::nullopt};
  EXPECT_EQ(EventJson(e),
            "{\"type\":\"message\",\"event\":\"sent\",\"at\":\"2025-06-19T15:14:40.431627Z\","
            "\"conversation\":\"Cccccccccccccccc\",\"sender\":\"Udddddddddddddd0\","
            "\"id\":\"Mbbbbbbbbbbbbbbb\",\"body\":\"hello \\\"world\\\"\\n\"}");
}

// The 202 of a send: the contract's order, the same escaping and time format
// as the events.
TEST(EventJson, ASentMessageAsItsReplyShowsIt) {
  storage::Message m{
      "Mbbbbbbbbbbbbbbb", "Cccccccccccccccc", "Udddddddddddddd0", "tab\there \u00e9 \"q\"", kAt,
      std::nullopt};
  EXPECT_EQ(MessageJson(m),
            "{\"id\":\"Mbbbbbbbbbbbbbbb\",\"conversation\":\"Cccccccccccccccc\","
            "\"sender\":\"Udddddddddddddd0\",\"body\":\"tab\\there \u00e9 \\\"q\\\"\","
            "\"at\":\"2025-06-19T15:14:40.431627Z\"}");
  const nlohmann::json parsed = nlohmann::json::parse(MessageJson(m));
  EXPECT_EQ(parsed["body"], m.body);
}

TEST(EventJson, EveryKindParsesWithItsTypeAndEvent) {
  const std::pair<EventKind, std::pair<const char*, const char*>> kinds[] = {
      {EventKind::kUserCreated, {"user", "created"}},
      {EventKind::kConversationCreated, {"conversation", "created"}},
      {EventKind::kConversationDeleted, {"conversation", "deleted"}},
      {EventKind::kMessageSent, {"message", "sent"}},
      {EventKind::kMessageDeleted, {"message", "deleted"}},
  };
  for (const auto& [kind, names] : kinds) {
    Event e{7, kind, kAt, "X", "C", "U", "text", std::nullopt};
    auto parsed = nlohmann::json::parse(EventJson(e));
    EXPECT_EQ(parsed["type"], names.first);
    EXPECT_EQ(parsed["event"], names.second);
    EXPECT_EQ(parsed["id"], "X");
    EXPECT_FALSE(parsed.contains("deleted_at"));
  }
}

TEST(EventJson, TombstoneCarriesDeletedAtAndEmptyText) {
  Event e{5, EventKind::kConversationCreated, kAt, "Cccccccccccccccc", "", "", "", kAt + 1};
  auto parsed = nlohmann::json::parse(EventJson(e));
  EXPECT_EQ(parsed["name"], "");
  EXPECT_EQ(parsed["deleted_at"], "2025-06-19T15:14:40.431628Z");
}

TEST(EventJson, MessageDeletedNamesItsConversation) {
  Event e{
      9,           EventKind::kMessageDeleted, kAt, "Mbbbbbbbbbbbbbbb", "Cccccccccccccccc", "", "",
      std::nullopt};
  auto parsed = nlohmann::json::parse(EventJson(e));
  EXPECT_EQ(parsed["conversation"], "Cccccccccccccccc");
  EXPECT_FALSE(parsed.contains("body"));
  EXPECT_FALSE(parsed.contains("sender"));
}

// The renderer escapes strings itself (for speed); it must write exactly
// what nlohmann::json writes, for every kind of character, and turn bytes
// that are not UTF-8 into U+FFFD the same way.
TEST(EventJson, StringsAreEscapedExactlyAsNlohmannJsonDoes) {
  const std::vector<std::string> pieces = {"a",
                                           "Z",
                                           " ",
                                           "\"",
                                           "\\",
                                           "/",
                                           "\x7f",
                                           "\x01",
                                           "\x1f",
                                           "\b",
                                           "\f",
                                           "\n",
                                           "\r",
                                           "\t",
                                           "é",
                                           "€",
                                           "😀",
                                           "\u2028",
                                           "\xc3",
                                           "\xe2\x82",
                                           "\xff",
                                           "\xc0\xaf",
                                           "\xed\xa0\x80",
                                           "\xf4\x90\x80\x80",
                                           "eight or more plain bytes"};
  std::mt19937 random(20261201);
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const int length = static_cast<int>(random() % 40);
    for (int i = 0; i < length; ++i) text += pieces[random() % pieces.size()];
    Event e{7,           EventKind::kConversationCreated, kAt, "Caaaaaaaaaaaaaaa", "", "", text,
            std::nullopt};
    const std::string expected =
        "{\"type\":\"conversation\",\"event\":\"created\",\"at\":\"2025-06-19T15:14:40.431627Z\","
        "\"id\":\"Caaaaaaaaaaaaaaa\",\"name\":" +
        nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "}";
    ASSERT_EQ(EventJson(e), expected) << "round " << round;
  }
}

TEST(EventJson, AppendsAfterWhatIsThere) {
  Event e{1, EventKind::kUserCreated, kAt, "Uaaaaaaaaaaaaaaa", "", "", "x", std::nullopt};
  std::string out = "[";
  AppendEventJson(out, e);
  EXPECT_EQ(out, "[" + EventJson(e));
}

TEST(EventJson, HeartbeatIsATypeOnlyObject) {
  EXPECT_EQ(nlohmann::json::parse(kHeartbeatJson), (nlohmann::json{{"type", "heartbeat"}}));
}

}  // namespace
}  // namespace quire::chat
