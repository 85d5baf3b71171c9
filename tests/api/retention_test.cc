// Retention: message and conversation expiry, tombstones, purge, the purge
// horizon (410) and streams overtaken by a purge. Short flags, no long sleeps.
#include <fstream>
#include <iostream>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

std::int64_t ResumePoint(const Json& boot) {
  return boot.contains("resume_point") && boot["resume_point"].is_number_integer()
             ? boot["resume_point"].get<std::int64_t>()
             : -1;
}

// The stream's non-heartbeat events, as keys.
std::vector<std::string> StreamKeys(const EventStream& s) {
  return EventKeys(s.events());
}

// Waits until the stream has delivered an event with this key.
bool WaitForKey(const EventStream& s, const std::string& key, std::chrono::milliseconds timeout) {
  return WaitUntil([&] { return IndexOf(StreamKeys(s), key) >= 0; }, timeout);
}

Response GetEvents(Client& client, const std::string& query, const Headers& headers = {}) {
  client.set_timeout(3s);
  Response r = client.get("/api/events" + query, headers);
  client.set_timeout(15s);
  return r;
}

constexpr std::int64_t kSecond = 1000000;

class MessageTtlTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--message-ttl", "1s", "--purge-after", "1h"};
  }
};

TEST_F(MessageTtlTest, MessagesExpire) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  auto stream = OpenStream(owner, ResumePoint(Boot(owner)));
  Json m = SendMessage(owner, conv, "ephemeral words");
  std::string id = Str(m, "id");
  ASSERT_TRUE(WaitForKey(*stream, "message deleted " + id, 8s)) << "the message did not expire";
  auto events = stream->events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(EventKey(events[0].data), "message sent " + id);
  Json deleted = events[1].data;
  EXPECT_EQ(Keys(deleted), (std::set<std::string>{"type", "event", "at", "id", "conversation"}));
  EXPECT_EQ(deleted["conversation"], conv);
  std::int64_t lived = TimestampMicros(deleted["at"]) - TimestampMicros(m["at"]);
  EXPECT_GE(lived, kSecond - 50000) << "expired early";
  EXPECT_LE(lived, 7 * kSecond);

  Json boot = Boot(owner);
  auto sent = FindEvents(boot["events"], "message", "sent", id);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["body"], "");
  EXPECT_EQ(sent[0]["deleted_at"], deleted["at"]);
  EXPECT_EQ(boot["events"].dump().find("ephemeral words"), std::string::npos);
  EXPECT_EQ(boot["events"].back(), deleted);

  EXPECT_TRUE(IsJsonError(owner.del("/api/messages/" + id), 404));
  // The conversation itself lives on (its name is still taken).
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", "general"}}), 409));
}

class ConversationTtlTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--conversation-ttl", "2s", "--message-ttl", "1h", "--purge-after", "1h"};
  }
};

TEST_F(ConversationTtlTest, EmptyConversationsExpire) {
  Client owner = Setup();
  auto stream = OpenStream(owner, ResumePoint(Boot(owner)));
  Response created = owner.post("/api/conversations", {{"name", "room"}});
  ASSERT_TRUE(HasStatus(created, 202));
  std::string conv = Str(created.json(), "id");
  ASSERT_TRUE(WaitForKey(*stream, "conversation deleted " + conv, 10s));
  Json boot = Boot(owner);
  auto c = FindEvents(boot["events"], "conversation", "created", conv);
  auto d = FindEvents(boot["events"], "conversation", "deleted", conv);
  ASSERT_EQ(c.size(), 1u);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(c[0]["name"], "");
  EXPECT_EQ(c[0]["deleted_at"], d[0]["at"]);
  EXPECT_GE(TimestampMicros(d[0]["at"]) - TimestampMicros(c[0]["at"]), 2 * kSecond - 50000);
  // Its name is free again at once.
  EXPECT_NE(CreateConversation(owner, "room"), conv);
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations/" + conv, {{"body", "hi"}}), 404));
}

TEST_F(ConversationTtlTest, ExpiryCountsFromTheLastMessageAndDeletesMessagesFirst) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "busy");
  auto stream = OpenStream(owner, ResumePoint(Boot(owner)));
  std::this_thread::sleep_for(1200ms);
  Json m = SendMessage(owner, conv, "keeps it alive");
  std::string id = Str(m, "id");
  ASSERT_TRUE(WaitForKey(*stream, "conversation deleted " + conv, 10s));
  auto keys = StreamKeys(*stream);
  EXPECT_EQ(keys, (std::vector<std::string>{"message sent " + id, "message deleted " + id,
                                            "conversation deleted " + conv}));
  auto events = stream->events();
  ASSERT_EQ(events.size(), 3u);
  std::int64_t conv_deleted = TimestampMicros(events[2].data["at"]);
  EXPECT_GE(conv_deleted - TimestampMicros(m["at"]), 2 * kSecond - 50000)
      << "the conversation expired less than its TTL after its last message";
  EXPECT_LE(TimestampMicros(events[1].data["at"]), conv_deleted);
  Json boot = Boot(owner);
  EXPECT_EQ(FindEvents(boot["events"], "message", "sent", id)[0]["body"], "");
  EXPECT_EQ(FindEvents(boot["events"], "conversation", "created", conv)[0]["name"], "");
}

class PurgeTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--message-ttl", "1s", "--purge-after", "1s"};
  }
};

TEST_F(PurgeTest, PurgeRemovesHistoryAndStaleResumePointsGet410) {
  Client owner = Setup();
  CreateConversation(owner, "keep");
  Json b0 = Boot(owner);
  std::int64_t r0 = ResumePoint(b0);
  auto caught_up = OpenStream(owner, r0);
  ASSERT_TRUE(caught_up->WaitForHeaders());
  Json m = SendMessage(owner, CreateConversation(owner, "other"), "short-lived");
  std::string id = Str(m, "id");
  ASSERT_TRUE(WaitForKey(*caught_up, "message deleted " + id, 8s));
  auto delivered = caught_up->events();
  ASSERT_EQ(delivered.size(), 3u);
  std::int64_t sent_seq = *delivered[1].id;
  std::int64_t deleted_seq = *delivered[2].id;

  // Purged: every event of the message leaves history.
  ASSERT_TRUE(WaitUntil(
      [&] {
        Json events = Boot(owner)["events"];
        return FindEvents(events, "message", "sent", id).empty() &&
               FindEvents(events, "message", "deleted", id).empty();
      },
      10s))
      << "the message's events were not purged";
  Json b1 = Boot(owner);
  EXPECT_GE(ResumePoint(b1), deleted_seq) << "the resume point is remembered past a purge";
  EXPECT_EQ(EventKeys(b1["events"]).size(), b0["events"].size() + 1) << b1["events"].dump();
  EXPECT_EQ(b1["events"].dump().find(id), std::string::npos);

  // Start points behind the purge horizon: 410, also through Last-Event-ID.
  for (std::int64_t stale : {r0, sent_seq}) {
    EXPECT_TRUE(IsJsonError(GetEvents(owner, "?resume_point=" + std::to_string(stale)), 410))
        << "resume_point " << stale;
  }
  EXPECT_TRUE(IsJsonError(GetEvents(owner, "?resume_point=" + std::to_string(ResumePoint(b1)),
                                    {{"Last-Event-ID", std::to_string(r0)}}),
                          410));
  // A fresh boot's resume point works, and so does the caught-up stream's last id.
  for (std::int64_t fresh : {ResumePoint(b1), deleted_seq}) {
    auto s = OpenStream(owner, fresh);
    ASSERT_TRUE(s->WaitForHeaders());
    EXPECT_EQ(s->status(), 200) << "resume_point " << fresh << ": " << s->body();
  }
  // The caught-up stream was not overtaken: it lives on.
  EXPECT_FALSE(caught_up->ended());
  std::string later = CreateConversation(owner, "later");
  EXPECT_TRUE(WaitForKey(*caught_up, "conversation created " + later, 5s));
}

// Largest send buffer the kernel grants a socket, in bytes.
std::size_t MaxSendBuffer() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_wmem");
  std::size_t min = 0, def = 0, max = 0;
  if (in >> min >> def >> max) return max;
  return 4 << 20;
}

// A reader that stops reading falls behind while its events are deleted and
// purged. Whatever the server does with it (end it as too slow, end it as
// overtaken by the purge, or deliver what it had already queued), the client
// never sees a gap: either every event in order, or an end after which its
// reconnect from the last id it got is told to boot again (410) when anything
// after that id has been purged.
TEST_F(PurgeTest, AStreamBehindAPurgeNeverShowsAGap) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "flood");
  std::int64_t r0 = ResumePoint(Boot(owner));
  StreamOptions o;
  o.token = owner.token();
  o.query = "resume_point=" + std::to_string(r0);
  o.start_paused = true;
  EventStream stream(server().base_url(), o);
  ASSERT_TRUE(stream.WaitForHeaders());
  ASSERT_EQ(stream.status(), 200);

  // More than the kernel's socket buffers hold, so that the server holds
  // events it has not written yet when they are purged.
  const std::string body = Repeat("x", 8192);
  const std::size_t need = MaxSendBuffer() + (2u << 20);
  const std::size_t count = std::min<std::size_t>(need / 8300 + 1, 2000);
  for (std::size_t i = 0; i < count; ++i) {
    Response r = owner.post("/api/conversations/" + conv, {{"body", body}});
    ASSERT_TRUE(HasStatus(r, 202))
        << "message " << i << " (a paused stream must not block writers)";
  }
  ASSERT_TRUE(
      WaitUntil([&] { return FindEvents(Boot(owner)["events"], "message", "sent").empty(); }, 30s))
      << "the messages were not all purged";
  const std::int64_t head = ResumePoint(Boot(owner));

  stream.Resume();
  ASSERT_TRUE(WaitUntil([&] { return stream.ended() || stream.event_count() >= 2 * count; }, 30s))
      << "the stream neither ended nor delivered its events; it has " << stream.event_count();
  auto events = stream.events();
  std::int64_t last = r0;
  for (const auto& e : events) {
    ASSERT_TRUE(e.id.has_value());
    ASSERT_GT(*e.id, last) << "out of order or duplicated";
    last = *e.id;
  }
  if (stream.ended() && last < head) {
    // Events after `last` have all been purged: the reconnect must boot again.
    EXPECT_TRUE(IsJsonError(GetEvents(owner, "?resume_point=" + std::to_string(last)), 410))
        << "ended after " << events.size() << " of " << 2 * count << " events";
  } else {
    EXPECT_EQ(events.size(), 2 * count);
    EXPECT_EQ(last, head);
    std::cout << "[ info ] the server delivered all " << events.size()
              << " queued events (deleted and purged text included) to the late reader\n";
  }
  // The server is fine.
  auto fresh = OpenStream(owner, ResumePoint(Boot(owner)));
  ASSERT_TRUE(fresh->WaitForHeaders());
  EXPECT_EQ(fresh->status(), 200);
}

}  // namespace
}  // namespace quire::apitest
