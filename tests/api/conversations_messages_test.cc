// Conversations and messages: creation, deletion, tombstones, body limits and
// Idempotency-Key.
#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

using ConversationsTest = ApiTest;

const std::set<std::string> kConversationCreated = {"type", "event", "at", "id", "name"};
const std::set<std::string> kConversationDeleted = {"type", "event", "at", "id"};
const std::set<std::string> kMessageSent = {"type",   "event", "at",  "conversation",
                                            "sender", "id",    "body"};
const std::set<std::string> kMessageDeleted = {"type", "event", "at", "id", "conversation"};

TEST_F(ConversationsTest, CreateConversation) {
  Client owner = Setup();
  Response r = owner.post("/api/conversations", {{"name", "general"}});
  ASSERT_TRUE(HasStatus(r, 202));
  Json j = r.json();
  EXPECT_EQ(Keys(j), (std::set<std::string>{"id", "name"}));
  EXPECT_TRUE(IsId(j["id"], 'C'));
  EXPECT_EQ(j["name"], "general");

  Json events = Boot(owner)["events"];
  ASSERT_EQ(events.size(), 2u);
  Json e = events[1];
  EXPECT_EQ(Keys(e), kConversationCreated);
  EXPECT_EQ(e["type"], "conversation");
  EXPECT_EQ(e["event"], "created");
  EXPECT_EQ(e["id"], j["id"]);
  EXPECT_EQ(e["name"], "general");
  EXPECT_TRUE(IsTimestamp(e["at"]));
  EXPECT_GE(TimestampMicros(e["at"]), TimestampMicros(events[0]["at"]));
}

TEST_F(ConversationsTest, CreateConversationFailures) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  CreateConversation(owner, "General Chat");
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.post("/api/conversations", {{"name", "x"}}), 401));
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", ""}}), 400));
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", " general"}}), 400));
  // Same canonical name (NFKC maps the no-break space to a space): 409, for anyone.
  for (const std::string name :
       {"General Chat", "general chat", "GENERAL CHAT", "General\u00a0Chat"}) {
    EXPECT_TRUE(IsJsonError(bob.post("/api/conversations", {{"name", name}}), 409)) << name;
  }
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "conversation", "created").size(), 1u);
}

TEST_F(ConversationsTest, ConversationNamesAreNfc) {
  Client owner = Setup();
  Response r = owner.post("/api/conversations", {{"name", "Re\u0301sume\u0301"}});
  ASSERT_TRUE(HasStatus(r, 202));
  EXPECT_EQ(r.json()["name"], "R\u00e9sum\u00e9");
  auto created = FindEvents(Boot(owner)["events"], "conversation", "created");
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0]["name"], "R\u00e9sum\u00e9");
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", "r\u00e9sum\u00e9"}}), 409));
}

TEST_F(ConversationsTest, SendMessage) {
  Client owner = Setup();
  std::string user_id = Str(Boot(owner)["login"], "id");
  std::string conv = CreateConversation(owner, "general");
  Response r = owner.post("/api/conversations/" + conv, {{"body", "hello, world"}});
  ASSERT_TRUE(HasStatus(r, 202));
  Json m = r.json();
  EXPECT_EQ(Keys(m), (std::set<std::string>{"id", "conversation", "sender", "body", "at"}));
  EXPECT_TRUE(IsId(m["id"], 'M'));
  EXPECT_EQ(m["conversation"], conv);
  EXPECT_EQ(m["sender"], user_id);
  EXPECT_EQ(m["body"], "hello, world");
  EXPECT_TRUE(IsTimestamp(m["at"]));

  Json events = Boot(owner)["events"];
  auto sent = FindEvents(events, "message", "sent");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(Keys(sent[0]), kMessageSent);
  EXPECT_EQ(sent[0]["id"], m["id"]);
  EXPECT_EQ(sent[0]["conversation"], conv);
  EXPECT_EQ(sent[0]["sender"], user_id);
  EXPECT_EQ(sent[0]["body"], "hello, world");
  EXPECT_EQ(sent[0]["at"], m["at"]);
}

TEST_F(ConversationsTest, AnyUserPostsAnywhereAndMessagesKeepTheirText) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  std::string bob_id = Str(Boot(bob)["login"], "id");
  std::string conv = CreateConversation(owner, "general");
  const std::string text = "line one\nline two\r\n\ttabbed \"quoted\" \\ emoji \U0001F600 <b>&amp;";
  Json m = SendMessage(bob, conv, text);
  EXPECT_EQ(m["sender"], bob_id);
  EXPECT_EQ(m["body"], text);
  auto sent = FindEvents(Boot(owner)["events"], "message", "sent");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["body"], text);
  EXPECT_EQ(sent[0]["sender"], bob_id);
}

TEST_F(ConversationsTest, MessageBodiesAreNfc) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  Json m = SendMessage(owner, conv, "Cafe\u0301 \u212b");
  EXPECT_EQ(m["body"], "Caf\u00e9 \u00c5");
  auto sent = FindEvents(Boot(owner)["events"], "message", "sent");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["body"], "Caf\u00e9 \u00c5");
}

TEST_F(ConversationsTest, MessageBodyLimits) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  std::string path = "/api/conversations/" + conv;
  // 8192 characters are fine, whatever their UTF-8 length.
  for (const std::string unit : {"x", "\u00e9", "\u20ac", "\U0001F600"}) {
    Response ok = owner.post(path, {{"body", Repeat(unit, 8192)}});
    EXPECT_TRUE(HasStatus(ok, 202)) << "8192 x U+" << unit.size() << "-byte";
    EXPECT_EQ(Str(ok.json(), "body"), Repeat(unit, 8192));
    Response over = owner.post(path, {{"body", Repeat(unit, 8193)}});
    EXPECT_TRUE(IsJsonError(over, 400)) << "8193 x " << unit.size() << "-byte";
  }
  // Empty and whitespace-only.
  for (const std::string body : {"", " ", "   ", "\n", "\t\r\n ", "\u00a0", "\u3000 \u2028"}) {
    EXPECT_TRUE(IsJsonError(owner.post(path, {{"body", body}}), 400)) << "body: '" << body << "'";
  }
  // U+0000 (no backend can hold it in text alike); other controls are fine.
  EXPECT_TRUE(IsJsonError(owner.post(path, {{"body", std::string("a\0b", 3)}}), 400));
  EXPECT_TRUE(HasStatus(owner.post(path, {{"body", "bell \a and escape \x1b"}}), 202));
  // Surrounding whitespace is fine when there is text.
  EXPECT_TRUE(HasStatus(owner.post(path, {{"body", "  padded  "}}), 202));
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "message", "sent").size(), 6u);
}

TEST_F(ConversationsTest, SendMessageFailures) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.post("/api/conversations/" + conv, {{"body", "hi"}}), 401));
  EXPECT_TRUE(
      IsJsonError(owner.post("/api/conversations/C0000000000000000", {{"body", "hi"}}), 404));
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations/nope", {{"body", "hi"}}), 404));
  std::string user_id = Str(Boot(owner)["login"], "id");
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations/" + user_id, {{"body", "hi"}}), 404));
  // A deleted conversation.
  ASSERT_TRUE(HasStatus(owner.del("/api/conversations/" + conv), 202));
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations/" + conv, {{"body", "hi"}}), 404));
  EXPECT_TRUE(FindEvents(Boot(owner)["events"], "message", "sent").empty());
}

TEST_F(ConversationsTest, DeleteConversation) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  std::string conv = CreateConversation(owner, "general");
  // Anyone may delete an empty conversation.
  Response r = bob.del("/api/conversations/" + conv);
  ASSERT_TRUE(HasStatus(r, 202));
  EXPECT_EQ(r.json(), (Json{{"id", conv}}));

  Json events = Boot(owner)["events"];
  auto deleted = FindEvents(events, "conversation", "deleted");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_EQ(Keys(deleted[0]), kConversationDeleted);
  EXPECT_EQ(deleted[0]["id"], conv);
  EXPECT_TRUE(IsTimestamp(deleted[0]["at"]));
  // Tombstone: the created event keeps its place with deleted_at and no name.
  auto created = FindEvents(events, "conversation", "created", conv);
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0]["name"], "");
  EXPECT_TRUE(IsTimestamp(created[0]["deleted_at"]));
  EXPECT_EQ(created[0]["deleted_at"], deleted[0]["at"]);
  auto keys = EventKeys(events);
  EXPECT_LT(IndexOf(keys, "conversation created " + conv),
            IndexOf(keys, "conversation deleted " + conv));

  // Gone: a second delete is 404; the name is free again at once.
  EXPECT_TRUE(IsJsonError(owner.del("/api/conversations/" + conv), 404));
  std::string again = CreateConversation(owner, "GENERAL");
  EXPECT_NE(again, conv);
}

TEST_F(ConversationsTest, DeleteConversationFailures) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  Json m = SendMessage(owner, conv, "still here");
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.del("/api/conversations/" + conv), 401));
  EXPECT_TRUE(IsJsonError(owner.del("/api/conversations/C0000000000000000"), 404));
  EXPECT_TRUE(IsJsonError(owner.del("/api/conversations/" + Str(m, "id")), 404));
  // Live messages: 409, and nothing happens.
  EXPECT_TRUE(IsJsonError(owner.del("/api/conversations/" + conv), 409));
  EXPECT_TRUE(HasStatus(owner.post("/api/conversations/" + conv, {{"body", "more"}}), 202));
  EXPECT_TRUE(FindEvents(Boot(owner)["events"], "conversation", "deleted").empty());
  // Once its messages are deleted it can go.
  for (const auto& e : FindEvents(Boot(owner)["events"], "message", "sent")) {
    EXPECT_TRUE(HasStatus(owner.del("/api/messages/" + Str(e, "id")), 202));
  }
  EXPECT_TRUE(HasStatus(owner.del("/api/conversations/" + conv), 202));
}

TEST_F(ConversationsTest, DeleteMessage) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  Json m = SendMessage(owner, conv, "secret text");
  std::string id = Str(m, "id");
  Response r = owner.del("/api/messages/" + id);
  ASSERT_TRUE(HasStatus(r, 202));
  EXPECT_EQ(r.json(), (Json{{"id", id}}));

  Json events = Boot(owner)["events"];
  auto deleted = FindEvents(events, "message", "deleted");
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_EQ(Keys(deleted[0]), kMessageDeleted);
  EXPECT_EQ(deleted[0]["id"], id);
  EXPECT_EQ(deleted[0]["conversation"], conv);
  EXPECT_TRUE(IsTimestamp(deleted[0]["at"]));
  // Tombstone: the sent event has deleted_at and an empty body; the rest stays.
  auto sent = FindEvents(events, "message", "sent", id);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["body"], "");
  EXPECT_EQ(sent[0]["deleted_at"], deleted[0]["at"]);
  EXPECT_EQ(sent[0]["conversation"], conv);
  EXPECT_EQ(sent[0]["sender"], m["sender"]);
  EXPECT_EQ(sent[0]["at"], m["at"]);
  EXPECT_EQ(events.dump().find("secret text"), std::string::npos);

  EXPECT_TRUE(IsJsonError(owner.del("/api/messages/" + id), 404));
  // The conversation has no live message any more.
  EXPECT_TRUE(HasStatus(owner.del("/api/conversations/" + conv), 202));
}

TEST_F(ConversationsTest, DeleteMessageFailures) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  std::string conv = CreateConversation(owner, "general");
  Json m = SendMessage(owner, conv, "mine");
  std::string id = Str(m, "id");
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.del("/api/messages/" + id), 401));
  EXPECT_TRUE(IsJsonError(bob.del("/api/messages/" + id), 403));
  EXPECT_TRUE(IsJsonError(owner.del("/api/messages/M0000000000000000"), 404));
  EXPECT_TRUE(IsJsonError(owner.del("/api/messages/" + conv), 404));
  // Nothing happened.
  Json events = Boot(owner)["events"];
  EXPECT_TRUE(FindEvents(events, "message", "deleted").empty());
  auto sent = FindEvents(events, "message", "sent", id);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["body"], "mine");
}

TEST_F(ConversationsTest, TombstonesForDeletedConversationsWithHistory) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "project x");
  Json m1 = SendMessage(owner, conv, "first");
  Json m2 = SendMessage(owner, conv, "second");
  ASSERT_TRUE(HasStatus(owner.del("/api/messages/" + Str(m1, "id")), 202));
  ASSERT_TRUE(HasStatus(owner.del("/api/messages/" + Str(m2, "id")), 202));
  ASSERT_TRUE(HasStatus(owner.del("/api/conversations/" + conv), 202));
  Json events = Boot(owner)["events"];
  std::vector<std::string> want = {
      "user created " + Str(Boot(owner)["login"], "id"),
      "conversation created " + conv,
      "message sent " + Str(m1, "id"),
      "message sent " + Str(m2, "id"),
      "message deleted " + Str(m1, "id"),
      "message deleted " + Str(m2, "id"),
      "conversation deleted " + conv,
  };
  EXPECT_EQ(EventKeys(events), want);
  std::string dump = events.dump();
  for (const char* text : {"project x", "first", "second"}) {
    EXPECT_EQ(dump.find(text), std::string::npos) << text << " is still served";
  }
  for (std::size_t i = 1; i < 4; ++i) EXPECT_TRUE(IsTimestamp(events[i]["deleted_at"])) << i;
}

TEST_F(ConversationsTest, IdempotencyKeyReplaysTheFirstMessage) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  std::string conv = CreateConversation(owner, "general");
  const Headers key = {{"Idempotency-Key", "key-123"}};
  Json first = SendMessage(owner, conv, "once", key);
  std::string id = Str(first, "id");
  std::size_t events_after_first = Boot(owner)["events"].size();

  // Same key, same user: the same message, nothing new. Also with another body.
  Json retry = SendMessage(owner, conv, "once", key);
  EXPECT_EQ(retry["id"], id);
  EXPECT_EQ(retry["body"], "once");
  Json changed = SendMessage(owner, conv, "twice?", key);
  EXPECT_EQ(changed["id"], id);
  EXPECT_EQ(changed["body"], "once");
  EXPECT_EQ(Boot(owner)["events"].size(), events_after_first);

  // Another key or no key: a new message.
  EXPECT_NE(SendMessage(owner, conv, "once", {{"Idempotency-Key", "key-456"}})["id"], id);
  EXPECT_NE(SendMessage(owner, conv, "once")["id"], id);
  // Another user with the same key: their own new message.
  Json bobs = SendMessage(bob, conv, "once", key);
  EXPECT_NE(bobs["id"], id);
  EXPECT_EQ(bobs["sender"], Str(Boot(bob)["login"], "id"));
  EXPECT_EQ(SendMessage(bob, conv, "again", key)["id"], bobs["id"]);

  // After the message is deleted the key still replays it, with an empty
  // body (deleted text is never served again), and emits nothing.
  ASSERT_TRUE(HasStatus(owner.del("/api/messages/" + id), 202));
  const Json before = Boot(owner)["events"];
  Response replay = owner.post("/api/conversations/" + conv, {{"body", "once"}}, key);
  ASSERT_TRUE(HasStatus(replay, 202));
  const Json replayed = replay.json();
  EXPECT_EQ(Keys(replayed), Keys(first)) << replay.body;
  EXPECT_EQ(replayed["id"], id);
  EXPECT_EQ(replayed["conversation"], conv);
  EXPECT_EQ(replayed["sender"], first["sender"]);
  EXPECT_EQ(replayed["at"], first["at"]);
  EXPECT_TRUE(replayed.contains("body") && replayed["body"] == "") << replay.body;
  EXPECT_EQ(replay.body.find("once"), std::string::npos) << "deleted text served again";
  const Json after = Boot(owner)["events"];
  EXPECT_EQ(after, before);
  EXPECT_EQ(FindEvents(after, "message", "sent").size(), 4u);
  // History shows the same: an empty body and the deletion time.
  auto tombstone = FindEvents(after, "message", "sent", id);
  ASSERT_EQ(tombstone.size(), 1u);
  EXPECT_EQ(tombstone[0]["body"], "");
  EXPECT_TRUE(IsTimestamp(tombstone[0]["deleted_at"])) << tombstone[0].dump();
  auto deletion = FindEvents(after, "message", "deleted", id);
  ASSERT_EQ(deletion.size(), 1u);
  EXPECT_EQ(tombstone[0]["deleted_at"], deletion[0]["at"]);
}

// docs/decisions.md: an Idempotency-Key is at most 255 bytes (400 otherwise,
// and nothing is sent); an empty header means no key.
TEST_F(ConversationsTest, IdempotencyKeyLimits) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  const Json before = Boot(owner)["events"];
  for (const std::string& key : {Repeat("k", 256), Repeat("k", 1000), Repeat("\u00e9", 128)}) {
    Response r = owner.post("/api/conversations/" + conv, {{"body", "too long a key"}},
                            {{"Idempotency-Key", key}});
    EXPECT_TRUE(IsJsonError(r, 400)) << key.size() << " bytes";
  }
  EXPECT_EQ(Boot(owner)["events"], before) << "a refused key sent nothing";

  // 255 bytes is a key like any other.
  const Headers longest = {{"Idempotency-Key", Repeat("k", 254) + "z"}};
  Json first = SendMessage(owner, conv, "longest key", longest);
  EXPECT_EQ(SendMessage(owner, conv, "longest key", longest)["id"], first["id"]);
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "message", "sent").size(), 1u);

  // An empty header is no key: every send is a new message.
  const Headers empty = {{"Idempotency-Key", ""}};
  Json a = SendMessage(owner, conv, "same", empty);
  Json b = SendMessage(owner, conv, "same", empty);
  EXPECT_NE(a["id"], b["id"]);
  EXPECT_NE(a["id"], first["id"]);
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "message", "sent").size(), 3u);
}

// A key is printable ASCII, checked the same on every backend: a NUL, a
// control character or a byte that is not ASCII is 400 and sends nothing
// (PostgreSQL used to answer 503 to a non-UTF-8 key and to cut keys at a NUL,
// so that "a\0b", "a\0c" and "a" were one key).
TEST_F(ConversationsTest, IdempotencyKeysThatAreNotPrintableAsciiAre400) {
  Client owner = Setup();
  const std::string conv = CreateConversation(owner, "general");
  const Json before = Boot(owner)["events"];
  const std::string body = R"({"body":"keyed"})";
  auto send_with_key = [&](const std::string& key) {
    return SendRaw(server().host(), server().port(),
                   "POST /api/conversations/" + conv +
                       " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       "Cookie: identity=" +
                       *owner.token() + "\r\nIdempotency-Key: " + key +
                       "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body,
                   5s);
  };
  for (const std::string& key :
       {std::string("a\0b", 3), std::string("a\0c", 3), std::string("k\xff"),
        std::string("\xc3\xa9"), std::string("a\x01z"), std::string("a\tz"),
        std::string("a\x7f")}) {
    RawResponse r = send_with_key(key);
    EXPECT_TRUE(IsJsonError(r, 400)) << "key of " << key.size() << " bytes: " << r.Describe();
  }
  EXPECT_EQ(Boot(owner)["events"], before) << "a refused key sent nothing";
  // Printable keys stay distinct from one another.
  RawResponse a = send_with_key("a");
  RawResponse ab = send_with_key("a b");
  ASSERT_EQ(a.status, 202) << a.Describe();
  ASSERT_EQ(ab.status, 202) << ab.Describe();
  EXPECT_NE(a.json()["id"], ab.json()["id"]);
  EXPECT_EQ(send_with_key("a").json()["id"], a.json()["id"]);
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "message", "sent").size(), 2u);
}

// docs/decisions.md: keys are per user across conversations: a retry to
// another conversation with the same key returns the first message and
// sends nothing.
TEST_F(ConversationsTest, IdempotencyKeysAreSharedAcrossConversations) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  std::string one = CreateConversation(owner, "one");
  std::string two = CreateConversation(owner, "two");
  const Headers key = {{"Idempotency-Key", "shared-key"}};
  Json first = SendMessage(owner, one, "in one", key);
  const Json before = Boot(owner)["events"];

  Json elsewhere = SendMessage(owner, two, "in two", key);
  EXPECT_EQ(elsewhere, first) << "the retry to another conversation is the first message";
  EXPECT_EQ(elsewhere["conversation"], one);
  EXPECT_EQ(Boot(owner)["events"], before) << "the retry sent nothing";
  EXPECT_TRUE(FindEvents(before, "message", "sent").size() == 1u);

  // Another user's key of the same text is theirs.
  Json bobs = SendMessage(bob, two, "bob in two", key);
  EXPECT_NE(bobs["id"], first["id"]);
  EXPECT_EQ(bobs["conversation"], two);
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "message", "sent").size(), 2u);
}

}  // namespace
}  // namespace quire::apitest
