// Boot and the event stream: shape, replay, live delivery, resume points,
// Last-Event-ID, heartbeats, and streams ending on logout and password change.
#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

using BootStreamTest = ApiTest;

std::int64_t ResumePoint(const Json& boot) {
  return boot.contains("resume_point") && boot["resume_point"].is_number_integer()
             ? boot["resume_point"].get<std::int64_t>()
             : -1;
}

// The ids of stream events are present and strictly increasing, all above `after`.
::testing::AssertionResult IdsIncreaseFrom(const std::vector<SseEvent>& events,
                                           std::int64_t after) {
  std::int64_t last = after;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (!events[i].id) return ::testing::AssertionFailure() << "event " << i << " has no id";
    if (*events[i].id <= last)
      return ::testing::AssertionFailure()
             << "event " << i << " has id " << *events[i].id << " after " << last;
    last = *events[i].id;
  }
  return ::testing::AssertionSuccess();
}

std::vector<Json> Data(const std::vector<SseEvent>& events) {
  std::vector<Json> v;
  for (const auto& e : events) v.push_back(e.data);
  return v;
}

std::vector<Json> Tail(const Json& events, std::size_t from) {
  std::vector<Json> v;
  for (std::size_t i = from; i < events.size(); ++i) v.push_back(events[i]);
  return v;
}

Response GetEvents(Client& client, const std::string& query, const Headers& headers = {}) {
  // Errors are plain responses; a stream opened by mistake times out.
  client.set_timeout(3s);
  Response r = client.get("/api/events" + query, headers);
  client.set_timeout(15s);
  return r;
}

TEST_F(BootStreamTest, BootShape) {
  Client owner = Setup("alice");
  std::string conv = CreateConversation(owner, "general");
  Json m = SendMessage(owner, conv, "hi");
  Response r = owner.get("/api/boot");
  ASSERT_TRUE(HasStatus(r, 200));
  EXPECT_EQ(r.header("content-type").rfind("application/json", 0), 0u);
  Json boot = r.json();
  EXPECT_EQ(Keys(boot), (std::set<std::string>{"login", "resume_point", "heartbeat", "events"}));
  EXPECT_EQ(Keys(boot["login"]), (std::set<std::string>{"id", "name"}));
  EXPECT_TRUE(IsId(boot["login"]["id"], 'U'));
  EXPECT_EQ(boot["login"]["name"], "alice");
  EXPECT_TRUE(boot["resume_point"].is_number_integer());
  EXPECT_GE(ResumePoint(boot), 3);
  EXPECT_EQ(boot["heartbeat"], 30);
  ASSERT_TRUE(boot["events"].is_array());
  EXPECT_EQ(
      EventKeys(boot["events"]),
      (std::vector<std::string>{"user created " + Str(boot["login"], "id"),
                                "conversation created " + conv, "message sent " + Str(m, "id")}));
  std::int64_t last = 0;
  for (const auto& e : boot["events"]) {
    EXPECT_TRUE(IsTimestamp(e["at"]));
    EXPECT_GE(TimestampMicros(e["at"]), last);
    last = TimestampMicros(e["at"]);
  }
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.get("/api/boot"), 401));
}

TEST_F(BootStreamTest, ResumePointFollowsCommits) {
  Client owner = Setup();
  std::int64_t r1 = ResumePoint(Boot(owner));
  EXPECT_EQ(ResumePoint(Boot(owner)), r1);
  CreateConversation(owner, "a");
  std::int64_t r2 = ResumePoint(Boot(owner));
  EXPECT_GT(r2, r1);
  // Failed requests commit nothing.
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", "a"}}), 409));
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", ""}}), 400));
  EXPECT_EQ(ResumePoint(Boot(owner)), r2);
}

TEST_F(BootStreamTest, HeadersArriveBeforeAnyEvent) {
  Client owner = Setup();
  std::int64_t r = ResumePoint(Boot(owner));
  auto stream = OpenStream(owner, r);
  ASSERT_TRUE(stream->WaitForHeaders(3s)) << "no response headers while no event is due";
  EXPECT_EQ(stream->status(), 200);
  EXPECT_EQ(stream->header("content-type").rfind("text/event-stream", 0), 0u)
      << stream->header("content-type");
  EXPECT_NE(stream->header("cache-control").find("no-cache"), std::string::npos)
      << stream->header("cache-control");
  EXPECT_EQ(stream->event_count(), 0u);
  EXPECT_FALSE(stream->ended());

  std::string conv = CreateConversation(owner, "live");
  ASSERT_TRUE(stream->WaitForEvents(1, 5s));
  auto events = stream->events();
  EXPECT_TRUE(IdsIncreaseFrom(events, r));
  EXPECT_EQ(EventKey(events[0].data), "conversation created " + conv);
  EXPECT_FALSE(events[0].had_event_field) << "no event: line";
  EXPECT_EQ(events[0].data, Boot(owner)["events"].back());
  EXPECT_EQ(*events[0].id, ResumePoint(Boot(owner)));
}

TEST_F(BootStreamTest, ReplayMatchesBoot) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  std::string conv = CreateConversation(owner, "general");
  Json m1 = SendMessage(owner, conv, "one");
  Json m2 = SendMessage(bob, conv, "two");
  ASSERT_TRUE(HasStatus(bob.del("/api/messages/" + Str(m2, "id")), 202));
  Json boot = Boot(owner);
  std::size_t n = boot["events"].size();

  auto from_zero = OpenStream(owner, 0);
  ASSERT_TRUE(from_zero->WaitForEvents(n, 5s)) << from_zero->body();
  auto events = from_zero->events();
  EXPECT_TRUE(IdsIncreaseFrom(events, 0));
  EXPECT_EQ(*events.back().id, ResumePoint(boot));
  // Exactly the boot's events, tombstones included, in the same order.
  EXPECT_EQ(Data(events), Tail(boot["events"], 0));
  for (const auto& e : events) EXPECT_FALSE(e.had_event_field);

  // From the middle: only what came after.
  std::int64_t mid = *events[2].id;
  auto from_mid = OpenStream(owner, mid);
  ASSERT_TRUE(from_mid->WaitForEvents(n - 3, 5s));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(Data(from_mid->events()), Tail(boot["events"], 3));
}

TEST_F(BootStreamTest, LiveEventsReachEveryStreamOnceInOrder) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  Json boot = Boot(owner);
  std::int64_t r = ResumePoint(boot);
  std::size_t before = boot["events"].size();
  auto alice_stream = OpenStream(owner, r);
  auto bob_stream = OpenStream(bob, r);
  ASSERT_TRUE(alice_stream->WaitForHeaders());
  ASSERT_TRUE(bob_stream->WaitForHeaders());

  // Everyone sees everything (one firehose): bob sees alice's events.
  std::string conv = CreateConversation(owner, "general");
  for (int i = 0; i < 10; ++i) SendMessage(owner, conv, "message " + std::to_string(i));
  Json final_boot = Boot(owner);
  auto want = Tail(final_boot["events"], before);
  ASSERT_EQ(want.size(), 11u);
  for (auto* s : {alice_stream.get(), bob_stream.get()}) {
    ASSERT_TRUE(s->WaitForEvents(11, 5s));
  }
  std::this_thread::sleep_for(300ms);  // nothing more may come
  for (auto* s : {alice_stream.get(), bob_stream.get()}) {
    auto events = s->events();
    EXPECT_EQ(Data(events), want);
    EXPECT_TRUE(IdsIncreaseFrom(events, r));
    EXPECT_EQ(*events.back().id, ResumePoint(final_boot));
  }
}

TEST_F(BootStreamTest, LastEventIdTakesPrecedence) {
  Client owner = Setup();
  std::int64_t r0 = ResumePoint(Boot(owner));
  std::string a = CreateConversation(owner, "a");
  std::string b = CreateConversation(owner, "b");
  auto probe = OpenStream(owner, r0);
  ASSERT_TRUE(probe->WaitForEvents(2, 5s));
  std::int64_t seq_a = *probe->events()[0].id;
  std::int64_t seq_b = *probe->events()[1].id;
  probe->Close();

  auto expect_only_b = [&](StreamOptions o, const char* what) {
    o.token = owner.token();
    EventStream s(server().base_url(), o);
    ASSERT_TRUE(s.WaitForHeaders()) << what;
    EXPECT_EQ(s.status(), 200) << what << ": " << s.body();
    ASSERT_TRUE(s.WaitForEvents(1, 5s)) << what;
    std::this_thread::sleep_for(200ms);
    auto events = s.events();
    ASSERT_EQ(events.size(), 1u) << what;
    EXPECT_EQ(*events[0].id, seq_b) << what;
    EXPECT_EQ(EventKey(events[0].data), "conversation created " + b) << what;
  };
  StreamOptions o;
  o.query = "resume_point=0";
  o.last_event_id = std::to_string(seq_a);
  expect_only_b(o, "Last-Event-ID over resume_point=0");
  o.query = "resume_point=" + std::to_string(seq_b);
  expect_only_b(o, "Last-Event-ID over a later resume_point");
  o.query = "resume_point=" + std::to_string(seq_a);
  o.last_event_id = "";
  expect_only_b(o, "empty Last-Event-ID is ignored");

  for (const std::string& bad : std::vector<std::string>{
           "abc", "1.5", "-1", "0x1", std::to_string(seq_b + 1), "99999999999999999999999"}) {
    Response r = GetEvents(owner, "?resume_point=0", {{"Last-Event-ID", bad}});
    EXPECT_TRUE(IsJsonError(r, 400)) << "Last-Event-ID: " << bad;
  }
  // The query parameter stays required.
  EXPECT_TRUE(IsJsonError(GetEvents(owner, "", {{"Last-Event-ID", std::to_string(seq_a)}}), 400));
}

TEST_F(BootStreamTest, BadResumePointsAre400) {
  Client owner = Setup();
  std::int64_t r = ResumePoint(Boot(owner));
  for (const std::string q :
       {"", "?", "?resume_point", "?resume_point=", "?resume_point=-1", "?resume_point=abc",
        "?resume_point=1.5", "?resume_point=1e3", "?resume_point=0x10", "?resume_point=%201",
        "?resume_point=99999999999999999999999", "?other=1"}) {
    EXPECT_TRUE(IsJsonError(GetEvents(owner, q), 400)) << "query: " << q;
  }
  // Newer than the newest committed event.
  EXPECT_TRUE(IsJsonError(GetEvents(owner, "?resume_point=" + std::to_string(r + 1)), 400));
  EXPECT_TRUE(IsJsonError(GetEvents(owner, "?resume_point=" + std::to_string(r + 1000)), 400));
  // The newest is fine.
  auto ok = OpenStream(owner, r);
  ASSERT_TRUE(ok->WaitForHeaders());
  EXPECT_EQ(ok->status(), 200);
}

TEST_F(BootStreamTest, StreamsNeedAValidCookie) {
  Client owner = Setup();
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(GetEvents(anonymous, "?resume_point=0"), 401));
  Client bogus = NewClient();
  bogus.set_token("bogus");
  EXPECT_TRUE(IsJsonError(GetEvents(bogus, "?resume_point=0"), 401));
}

TEST_F(BootStreamTest, LogoutEndsThatTokensStream) {
  Client owner = Setup("alice", "pw");
  Client second = NewClient();
  ASSERT_TRUE(
      HasStatus(second.post("/api/auth/login", {{"name", "alice"}, {"password", "pw"}}), 200));
  Client bob = Invite(owner, "bob");
  std::int64_t r = ResumePoint(Boot(owner));
  auto s1 = OpenStream(owner, r);
  auto s2 = OpenStream(second, r);
  auto s3 = OpenStream(bob, r);
  for (auto* s : {s1.get(), s2.get(), s3.get()}) ASSERT_TRUE(s->WaitForHeaders());

  ASSERT_TRUE(HasStatus(owner.post("/api/auth/logout", Json::object()), 204));
  EXPECT_TRUE(s1->WaitForEnd(5s)) << "the logged-out token's stream must end";
  // The others live on and still get events.
  CreateConversation(bob, "after logout");
  EXPECT_TRUE(s2->WaitForEvents(1, 5s));
  EXPECT_TRUE(s3->WaitForEvents(1, 5s));
  EXPECT_FALSE(s2->ended());
  EXPECT_FALSE(s3->ended());
  EXPECT_EQ(s1->event_count(), 0u);
}

TEST_F(BootStreamTest, PasswordChangeEndsOlderStreams) {
  Client owner = Setup("alice", "pw");
  Client second = NewClient();
  ASSERT_TRUE(
      HasStatus(second.post("/api/auth/login", {{"name", "alice"}, {"password", "pw"}}), 200));
  Client bob = Invite(owner, "bob");
  std::int64_t r = ResumePoint(Boot(owner));
  auto s1 = OpenStream(owner, r);
  auto s2 = OpenStream(second, r);
  auto s3 = OpenStream(bob, r);
  for (auto* s : {s1.get(), s2.get(), s3.get()}) ASSERT_TRUE(s->WaitForHeaders());

  ASSERT_TRUE(HasStatus(owner.post("/api/password", {{"password", "pw"}, {"to", "pw2"}}), 200));
  EXPECT_TRUE(s1->WaitForEnd(5s));
  EXPECT_TRUE(s2->WaitForEnd(5s));
  auto fresh = OpenStream(owner, r);  // with the new cookie
  ASSERT_TRUE(fresh->WaitForHeaders());
  EXPECT_EQ(fresh->status(), 200);
  CreateConversation(bob, "after password change");
  EXPECT_TRUE(fresh->WaitForEvents(1, 5s));
  EXPECT_TRUE(s3->WaitForEvents(1, 5s));
  EXPECT_FALSE(s3->ended());
}

class HeartbeatTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override { return {"--heartbeat", "1"}; }
};

TEST_F(HeartbeatTest, IdleStreamsGetHeartbeats) {
  Client owner = Setup();
  Json boot = Boot(owner);
  EXPECT_EQ(boot["heartbeat"], 1);
  auto stream = OpenStream(owner, ResumePoint(boot));
  ASSERT_TRUE(stream->WaitForHeaders());
  ASSERT_TRUE(stream->WaitForHeartbeats(2, 4s)) << stream->body();
  for (const auto& e : stream->all_events()) {
    ASSERT_TRUE(e.IsHeartbeat()) << e.data_text;
    EXPECT_FALSE(e.id.has_value()) << "heartbeats carry no id";
    EXPECT_FALSE(e.had_event_field);
    EXPECT_EQ(e.data, (Json{{"type", "heartbeat"}}));
  }
  // Heartbeats are never stored.
  Json later = Boot(owner);
  EXPECT_EQ(later["events"], boot["events"]);
  EXPECT_EQ(ResumePoint(later), ResumePoint(boot));
  // Real events still flow between heartbeats.
  std::string conv = CreateConversation(owner, "between beats");
  ASSERT_TRUE(stream->WaitForEvents(1, 3s));
  EXPECT_EQ(EventKey(stream->events()[0].data), "conversation created " + conv);
}

}  // namespace
}  // namespace quire::apitest
