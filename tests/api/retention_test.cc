// Retention: message and conversation expiry, tombstones, purge, the purge
// horizon (410) and streams overtaken by a purge. Short flags, no long sleeps.

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
  using Clock = std::chrono::steady_clock;
  Client owner = Setup();
  // The message comes 1.2 s after the creation, inside the 2 s TTL, so that
  // expiry counted from the creation and from the message differ. A machine
  // stalled past the TTL lets the conversation expire first (404): such an
  // attempt proves nothing and is made again with a new conversation.
  std::string conv, id;
  Json m;
  std::unique_ptr<EventStream> stream;
  for (int attempt = 0; id.empty(); ++attempt) {
    ASSERT_LT(attempt, 3) << "every attempt stalled past the conversation TTL";
    conv = CreateConversation(owner, "busy " + std::to_string(attempt));
    const auto created = Clock::now();
    stream = OpenStream(owner, ResumePoint(Boot(owner)));
    std::this_thread::sleep_until(created + 1200ms);
    Response r = owner.post("/api/conversations/" + conv, {{"body", "keeps it alive"}});
    if (r.status == 404 && Clock::now() - created >= 2s) continue;
    ASSERT_TRUE(HasStatus(r, 202));
    m = r.json();
    id = Str(m, "id");
  }
  ASSERT_TRUE(WaitForKey(*stream, "conversation deleted " + conv, 30s));
  // This attempt's events (an earlier attempt's conversation may expire meanwhile).
  std::vector<SseEvent> events;
  for (const SseEvent& e : stream->events()) {
    if (Str(e.data, "id") == id || Str(e.data, "id") == conv) events.push_back(e);
  }
  EXPECT_EQ(EventKeys(events),
            (std::vector<std::string>{"message sent " + id, "message deleted " + id,
                                      "conversation deleted " + conv}));
  ASSERT_EQ(events.size(), 3u);
  std::int64_t conv_deleted = TimestampMicros(events[2].data["at"]);
  EXPECT_GE(conv_deleted - TimestampMicros(m["at"]), 2 * kSecond - 50000)
      << "the conversation expired less than its TTL after its last message";
  EXPECT_LE(TimestampMicros(events[1].data["at"]), conv_deleted);
  Json boot = Boot(owner);
  auto sent = FindEvents(boot["events"], "message", "sent", id);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["body"], "");
  auto created = FindEvents(boot["events"], "conversation", "created", conv);
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0]["name"], "");
  EXPECT_GE(TimestampMicros(m["at"]) - TimestampMicros(created[0]["at"]), kSecond)
      << "the message did not come late enough to tell the two apart";
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

// A reader that stops reading falls behind while its events are deleted and
// purged. The server must end that stream: it has far more than 1 MiB queued
// (docs/api: "when the client reads too slowly (over 1 MiB queued)"), and a
// purge overtakes it (the contract: the server "must end ... a stream that a
// purge has overtaken (its reconnect gets 410)"). Before its end it delivers
// exactly the start of the history as a reader that kept up saw it: nothing
// missing, nothing repeated, nothing reordered. Its reconnect from the last id
// it got is told to boot again (410), and the reader that kept up lives on.
TEST_F(PurgeTest, AStreamBehindAPurgeNeverShowsAGap) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "flood");
  std::int64_t r0 = ResumePoint(Boot(owner));
  auto keeping_up = OpenStream(owner, r0);
  ASSERT_TRUE(keeping_up->WaitForHeaders());
  ASSERT_EQ(keeping_up->status(), 200);
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
      WaitUntil([&] { return FindEvents(Boot(owner)["events"], "message", "sent").empty(); }, 60s))
      << "the messages were not all purged";
  // Every message was sent, then deleted (its TTL), then purged.
  ASSERT_TRUE(keeping_up->WaitForEvents(2 * count, 60s))
      << "the reader that kept up has " << keeping_up->event_count() << " of " << 2 * count;
  const std::vector<SseEvent> history = keeping_up->events();
  ASSERT_EQ(history.size(), 2 * count);
  ASSERT_EQ(FindEvents(Boot(owner)["events"], "message", "deleted").size(), 0u);

  stream.Resume();
  ASSERT_TRUE(
      WaitUntil([&] { return stream.ended() || stream.event_count() >= history.size(); }, 60s))
      << "the stream neither ended nor delivered its events; it has " << stream.event_count();
  ASSERT_TRUE(stream.WaitForEnd(5s))
      << "the server did not end the stream it could not deliver; it delivered "
      << stream.event_count() << " of " << history.size() << " events";
  const std::vector<SseEvent> got = stream.events();
  EXPECT_LT(got.size(), history.size()) << "a stream with megabytes queued was not ended early";
  // Exactly a prefix of the history: same ids, same events, in order.
  ASSERT_LE(got.size(), history.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].id.has_value()) << "event " << i;
    ASSERT_EQ(got[i].id, history[i].id)
        << "event " << i << " of the late reader is not the " << i << "th event of the history";
    ASSERT_EQ(got[i].data, history[i].data) << "event " << i;
  }
  // Its reconnect from the last id it got must boot again: what came after
  // that id has been purged.
  const std::int64_t last = got.empty() ? r0 : *got.back().id;
  EXPECT_TRUE(IsJsonError(GetEvents(owner, "?resume_point=" + std::to_string(last)), 410))
      << "reconnect after " << got.size() << " of " << history.size() << " events";
  EXPECT_TRUE(IsJsonError(
      GetEvents(owner, "?resume_point=0", {{"Last-Event-ID", std::to_string(last)}}), 410));

  // The reader that kept up was not ended, and the server is fine.
  EXPECT_FALSE(keeping_up->ended());
  std::string later = CreateConversation(owner, "later");
  EXPECT_TRUE(WaitForKey(*keeping_up, "conversation created " + later, 10s));
  auto fresh = OpenStream(owner, ResumePoint(Boot(owner)));
  ASSERT_TRUE(fresh->WaitForHeaders());
  EXPECT_EQ(fresh->status(), 200);
}

}  // namespace
}  // namespace quire::apitest
