// Boot and the event stream: shape, replay, live delivery, resume points,
// Last-Event-ID, heartbeats, and streams ending on logout and password change.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <vector>

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

// A boot is written in pieces (head, then chunks). With Nagle's algorithm on
// the server's socket, every piece after the first waits for the client's
// delayed ACK, ~40 ms on Linux, on a kept-alive connection every time (on a
// new connection quick-ACK mode hides it). The fastest of ten boots on one
// connection is far below that without Nagle, whatever the machine's load.
TEST_F(BootStreamTest, BootOnAKeptAliveConnectionDoesNotWaitForDelayedAcks) {
  Client owner = Setup();
  CreateConversation(owner, "general");
  ASSERT_TRUE(HasStatus(owner.get("/api/boot"), 200));  // the connection is open now
  auto fastest = std::chrono::steady_clock::duration::max();
  for (int i = 0; i < 10; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Response r = owner.get("/api/boot");
    fastest = std::min(fastest, std::chrono::steady_clock::now() - start);
    ASSERT_TRUE(HasStatus(r, 200));
  }
  EXPECT_LT(fastest, 20ms) << "the fastest kept-alive boot took "
                           << std::chrono::duration_cast<std::chrono::microseconds>(fastest).count()
                           << " us: does the server send with Nagle's algorithm on?";
}

// A client that asks for a boot and then does not read it: a socket with a
// small receive buffer that sends its request and reads only when told.
class UnreadBoot {
 public:
  UnreadBoot(int port, const std::string& token) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int small = 4096;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    const std::string request =
        "GET /api/boot HTTP/1.1\r\nHost: x\r\nCookie: identity=" + token + "\r\n\r\n";
    connected_ = connected_ && ::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) ==
                                   static_cast<ssize_t>(request.size());
  }
  ~UnreadBoot() { ::close(fd_); }
  bool connected() const { return connected_; }

  // Reads the whole response now; returns the de-chunked body ("" on failure).
  std::string ReadAll(std::chrono::milliseconds timeout) {
    std::string raw;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buffer[65536];
    while (raw.size() < 5 || raw.compare(raw.size() - 5, 5, "0\r\n\r\n") != 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) return "";
      raw.append(buffer, static_cast<std::size_t>(n));
    }
    std::size_t at = raw.find("\r\n\r\n");
    if (at == std::string::npos) return "";
    std::string body;
    for (at += 4;;) {
      std::size_t line_end = raw.find("\r\n", at);
      if (line_end == std::string::npos) return "";
      const std::size_t size = std::stoul(raw.substr(at, line_end - at), nullptr, 16);
      if (size == 0) return body;
      body.append(raw, line_end + 2, size);
      at = line_end + 2 + size + 2;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Boots that clients stop reading used to hold one worker each until a
// minute passed; with as many of them as workers, nothing else was answered.
// Now each holds a bounded queue and no thread: a send, a login and a boot of
// another client are answered meanwhile, and a stalled boot that is read
// later arrives whole.
TEST_F(BootStreamTest, BootsThatAreNotReadDoNotStallOtherRequests) {
  Client owner = Setup("alice", "alice-password");
  std::string conv = CreateConversation(owner, "big");
  // About 8 MB of history: far more than socket buffers and the server's
  // 1 MiB per-client queue.
  const std::string body(8000, 'x');
  constexpr int kMessages = 1000;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(HasStatus(owner.post("/api/conversations/" + conv, {{"body", body}}), 202));
  }
  const std::int64_t resume_point = ResumePoint(Boot(owner));

  // More unread boots than the server has workers (8 at --threads 2).
  std::vector<std::unique_ptr<UnreadBoot>> stalled;
  for (int i = 0; i < 12; ++i) {
    stalled.push_back(std::make_unique<UnreadBoot>(server().port(), *owner.token()));
    ASSERT_TRUE(stalled.back()->connected());
  }
  std::this_thread::sleep_for(500ms);  // let them fill their queues

  Client other = NewClient();
  other.set_timeout(10s);
  Response login =
      other.post("/api/auth/login", {{"name", "alice"}, {"password", "alice-password"}});
  ASSERT_TRUE(HasStatus(login, 200)) << "a login was not answered while boots went unread";
  Response sent = other.post("/api/conversations/" + conv, {{"body", "still here"}});
  ASSERT_TRUE(HasStatus(sent, 202)) << "a send was not answered while boots went unread";
  Response boot = other.get("/api/boot");
  ASSERT_TRUE(HasStatus(boot, 200)) << "a boot was not answered while boots went unread";
  EXPECT_EQ(boot.json()["events"].size(), static_cast<std::size_t>(kMessages + 3));

  // A stalled boot, read at last, is whole: every event up to its resume point.
  std::string late = stalled.front()->ReadAll(30s);
  ASSERT_FALSE(late.empty()) << "the stalled boot did not arrive whole once read";
  Json late_boot = Json::parse(late, nullptr, false);
  ASSERT_FALSE(late_boot.is_discarded());
  EXPECT_EQ(ResumePoint(late_boot), resume_point);
  EXPECT_EQ(late_boot["events"].size(), static_cast<std::size_t>(kMessages + 2));
}

// The bytes that clients have not read, all streams together, are bounded
// (--stream-buffer-limit, here 2 MiB): unread boots each hold about 1 MiB, so
// the server cuts those stalled longest, and a client that reads is served.
class StreamBufferLimitTest : public BootStreamTest {
 protected:
  std::vector<std::string> ServerArgs() const override { return {"--stream-buffer-limit", "2"}; }
};

TEST_F(StreamBufferLimitTest, UnreadBootsBeyondTheLimitAreCut) {
  Client owner = Setup("alice", "alice-password");
  std::string conv = CreateConversation(owner, "big");
  const std::string body(8000, 'x');  // about 8 MB of history
  constexpr int kMessages = 1000;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(HasStatus(owner.post("/api/conversations/" + conv, {{"body", body}}), 202));
  }
  constexpr int kStalled = 8;
  std::vector<std::unique_ptr<UnreadBoot>> stalled;
  for (int i = 0; i < kStalled; ++i) {
    stalled.push_back(std::make_unique<UnreadBoot>(server().port(), *owner.token()));
    ASSERT_TRUE(stalled.back()->connected());
    std::this_thread::sleep_for(100ms);  // one after the other fills its queue
  }

  // Another client is served whole meanwhile.
  Response boot = owner.get("/api/boot");
  ASSERT_TRUE(HasStatus(boot, 200));
  EXPECT_EQ(boot.json()["events"].size(), static_cast<std::size_t>(kMessages + 2));

  // 8 boots of ~1 MiB each do not fit in 2 MiB: most were cut (their
  // connections closed before the end of the body). (All may be: the boot
  // above needed room too.) One that was not is whole.
  int whole = 0;
  for (auto& s : stalled) {
    const std::string late = s->ReadAll(30s);
    if (late.empty()) continue;
    Json j = Json::parse(late, nullptr, false);
    ASSERT_FALSE(j.is_discarded());
    EXPECT_EQ(j["events"].size(), static_cast<std::size_t>(kMessages + 2));
    ++whole;
  }
  EXPECT_LE(whole, 3) << whole << " of " << kStalled
                      << " unread boots of ~1 MiB each were kept under a 2 MiB limit";
  EXPECT_NE(server().stderr_text().find("their clients had not read (limit 2048 KiB)"),
            std::string::npos)
      << server().stderr_text();
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

  // From the middle: only what came after. A marker committed afterwards
  // arrives after everything the stream had to replay, so nothing more came.
  ASSERT_GE(events.size(), 3u);
  std::int64_t mid = *events[2].id;
  auto from_mid = OpenStream(owner, mid);
  ASSERT_TRUE(from_mid->WaitForEvents(n - 3, 5s));
  std::string marker = CreateConversation(owner, "marker");
  ASSERT_TRUE(from_mid->WaitForEvents(n - 2, 5s));
  auto got = Data(from_mid->events());
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(EventKey(got.back()), "conversation created " + marker);
  got.pop_back();
  EXPECT_EQ(got, Tail(boot["events"], 3));
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
  // Nothing more may come: a marker committed afterwards is the next event.
  std::string marker = CreateConversation(bob, "marker");
  for (auto* s : {alice_stream.get(), bob_stream.get()}) {
    ASSERT_TRUE(s->WaitForEvents(12, 5s));
    auto events = s->events();
    ASSERT_EQ(events.size(), 12u);
    EXPECT_EQ(EventKey(events.back().data), "conversation created " + marker);
    events.pop_back();
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
  ASSERT_EQ(probe->events().size(), 2u);
  std::int64_t seq_a = *probe->events()[0].id;
  std::int64_t seq_b = *probe->events()[1].id;
  probe->Close();

  // Each stream must start with b: b, then the markers committed so far, then
  // a new marker (committed once b has arrived) show that nothing else came.
  std::vector<std::string> after_b;
  auto expect_only_b = [&](StreamOptions o, const char* what) {
    o.token = owner.token();
    EventStream s(server().base_url(), o);
    ASSERT_TRUE(s.WaitForHeaders()) << what;
    EXPECT_EQ(s.status(), 200) << what << ": " << s.body();
    ASSERT_TRUE(s.WaitForEvents(1 + after_b.size(), 5s)) << what;
    after_b.push_back("conversation created " +
                      CreateConversation(owner, "marker " + std::to_string(after_b.size())));
    ASSERT_TRUE(s.WaitForEvents(1 + after_b.size(), 5s)) << what;
    auto events = s.events();
    ASSERT_EQ(events.size(), 1 + after_b.size()) << what;
    EXPECT_EQ(*events[0].id, seq_b) << what;
    EXPECT_EQ(EventKey(events[0].data), "conversation created " + b) << what;
    std::vector<std::string> rest = EventKeys(events);
    rest.erase(rest.begin());
    EXPECT_EQ(rest, after_b) << what;
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
           "abc", "1.5", "-1", "0x1", std::to_string(ResumePoint(Boot(owner)) + 1),
           "99999999999999999999999"}) {
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

// Boot is streamed in pages of 2,048 events (docs/decisions.md). A history
// of more than one page, with tombstones on both sides of the page boundary,
// boots to exactly what a stream from 0 delivers.
TEST_F(BootStreamTest, BootOfMoreThanOnePageEqualsTheStreamsHistory) {
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 525;  // 2,100 messages: 2,102 events before the deletions
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "many");
  std::vector<Client> writers;
  for (int w = 0; w < kWriters; ++w) writers.push_back(NewClient());
  for (Client& w : writers) w.set_token(owner.token());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        Response r =
            writers[w].post("/api/conversations/" + conv,
                            {{"body", "w" + std::to_string(w) + " #" + std::to_string(i)}});
        if (r.status != 202) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  const Json full = Boot(owner)["events"];
  ASSERT_EQ(full.size(), 2u + kWriters * kPerWriter);
  // Tombstones at the last event of the first page and the first of the second.
  for (std::size_t at : {2046u, 2047u, 2048u}) {
    ASSERT_EQ(Str(full[at], "type"), "message") << at;
    ASSERT_TRUE(HasStatus(owner.del("/api/messages/" + Str(full[at], "id")), 202)) << at;
  }

  Response r = owner.get("/api/boot");
  ASSERT_TRUE(HasStatus(r, 200));
  EXPECT_EQ(r.header("content-length"), "") << "boot is streamed in pages";
  const Json boot = r.json();
  ASSERT_TRUE(boot.is_object() && boot["events"].is_array()) << r.body.substr(0, 200);
  const Json& events = boot["events"];
  ASSERT_EQ(events.size(), 2u + kWriters * kPerWriter + 3);
  for (std::size_t at : {2046u, 2047u, 2048u}) {
    EXPECT_EQ(events[at]["body"], "") << at;
    EXPECT_TRUE(IsTimestamp(events[at]["deleted_at"])) << at;
  }
  const std::vector<std::string> keys = EventKeys(events);
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size()) << "duplicates";

  auto from_zero = OpenStream(owner, 0);
  ASSERT_TRUE(from_zero->WaitForEvents(events.size(), 60s))
      << "the stream has " << from_zero->event_count() << " of " << events.size();
  const std::vector<SseEvent> streamed = from_zero->events();
  ASSERT_EQ(streamed.size(), events.size());
  EXPECT_TRUE(IdsIncreaseFrom(streamed, 0));
  EXPECT_EQ(*streamed.back().id, ResumePoint(boot));
  for (std::size_t i = 0; i < streamed.size(); ++i) {
    ASSERT_EQ(streamed[i].data, events[i]) << "event " << i << " of " << events.size();
  }
}

// docs/api: the server ends a stream whose client reads too slowly (over
// 1 MiB queued). A client that never reads while many events are sent has
// its stream ended; what it got before the end is exactly the start of the
// history, and its reconnect with Last-Event-ID delivers the rest. A client
// that reads is unaffected and the server keeps answering.
TEST_F(BootStreamTest, AStreamThatIsNotReadIsEndedAndNothingElseSuffers) {
  Client owner = Setup();
  Client bob = Invite(owner, "bob");
  std::string conv = CreateConversation(owner, "flood");
  const std::int64_t r0 = ResumePoint(Boot(owner));
  auto reader = OpenStream(bob, r0);
  ASSERT_TRUE(reader->WaitForHeaders());
  StreamOptions o;
  o.token = owner.token();
  o.query = "resume_point=" + std::to_string(r0);
  o.start_paused = true;
  EventStream idle(server().base_url(), o);
  ASSERT_TRUE(idle.WaitForHeaders());
  ASSERT_EQ(idle.status(), 200);

  // More than the kernel's socket buffers hold, and 1 MiB more than that.
  const std::string body = Repeat("x", 8192);
  const std::size_t count = (MaxSendBuffer() + (2u << 20)) / 8300 + 1;
  for (std::size_t i = 0; i < count; ++i) {
    ASSERT_TRUE(HasStatus(owner.post("/api/conversations/" + conv, {{"body", body}}), 202))
        << "message " << i << " (a stream that is not read must not block writers)";
  }
  ASSERT_TRUE(reader->WaitForEvents(count, 60s))
      << "the reading client has " << reader->event_count() << " of " << count;
  const std::vector<SseEvent> history = reader->events();
  ASSERT_EQ(history.size(), count);
  EXPECT_FALSE(reader->ended()) << "a client that reads was ended";
  Client other = NewClient();
  other.set_token(bob.token());
  other.set_timeout(5s);
  EXPECT_TRUE(HasStatus(other.get("/api/boot"), 200)) << "the server stays responsive";

  idle.Resume();
  ASSERT_TRUE(WaitUntil([&] { return idle.ended() || idle.event_count() >= count; }, 60s))
      << "the stream neither ended nor delivered its events; it has " << idle.event_count();
  ASSERT_TRUE(idle.WaitForEnd(5s)) << "the stream that was not read was not ended; it delivered "
                                   << idle.event_count() << " of " << count;
  const std::vector<SseEvent> got = idle.events();
  EXPECT_LT(got.size(), count) << "all " << count << " events stayed queued for it";
  ASSERT_LE(got.size(), count);
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].id, history[i].id) << "event " << i;
    ASSERT_EQ(got[i].data, history[i].data) << "event " << i;
  }

  // The reconnect from the last id it got delivers the rest, nothing lost.
  StreamOptions again = o;
  again.start_paused = false;
  again.last_event_id = std::to_string(got.empty() ? r0 : *got.back().id);
  EventStream rest(server().base_url(), again);
  ASSERT_TRUE(rest.WaitForEvents(count - got.size(), 60s))
      << "the reconnect delivered " << rest.event_count() << " of " << count - got.size();
  std::vector<SseEvent> joined = got;
  for (const SseEvent& e : rest.events()) joined.push_back(e);
  EXPECT_EQ(EventKeys(joined), EventKeys(history));
  // The reading client still gets new events.
  std::string later = CreateConversation(owner, "later");
  ASSERT_TRUE(reader->WaitForEvents(count + 1, 10s));
  EXPECT_EQ(EventKey(reader->events().back().data), "conversation created " + later);
}

// A connected socket with `request` sent on it, or -1.
int ConnectAndSend(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// With 1,000 open streams, a send's 202 could be queued behind the commit's
// 1,000 stream writes on the same reactors (the pump raced the committer's
// replies), so it reached its client after every stream had the event. Now
// the reply is queued before the events are written, and streams are written
// without the reactors. Checked as an order, not a time: in each of ten
// sends, the 202 arrives before 90% of the streams have the event. (On the
// code before the fix, one send in five or so arrived after all of them.)
TEST_F(BootStreamTest, A202IsNotQueuedBehindAThousandStreams) {
  constexpr std::size_t kStreams = 1000;
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  ASSERT_GE(limit.rlim_max, kStreams + 200) << "the test needs more open files than allowed";
  limit.rlim_cur = limit.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);

  Client owner = Setup();
  const std::string conv = CreateConversation(owner, "wide");
  const std::int64_t r0 = ResumePoint(Boot(owner));
  const std::string cookie = "Cookie: identity=" + *owner.token() + "\r\n";

  struct Fds {
    std::vector<int> fds;
    ~Fds() {
      for (int fd : fds) ::close(fd);
    }
  } open;
  const std::string stream_request = "GET /api/events?resume_point=" + std::to_string(r0) +
                                     " HTTP/1.1\r\nHost: x\r\n" + cookie + "\r\n";
  for (std::size_t i = 0; i < kStreams; ++i) {
    int fd = ConnectAndSend(server().port(), stream_request);
    ASSERT_GE(fd, 0) << "stream " << i << " could not connect";
    open.fds.push_back(fd);
  }
  // Every stream's head, and whatever follows it, read before the sends.
  char buffer[65536];
  for (std::size_t i = 0; i < kStreams; ++i) {
    std::string head;
    while (head.find("\r\n\r\n") == std::string::npos) {
      pollfd p{open.fds[i], POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 10000), 1) << "stream " << i << " got no head";
      ssize_t n = ::recv(open.fds[i], buffer, sizeof buffer, 0);
      ASSERT_GT(n, 0) << "stream " << i << " closed";
      head.append(buffer, static_cast<std::size_t>(n));
    }
    ASSERT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  }
  std::this_thread::sleep_for(200ms);
  for (int fd : open.fds) {
    while (::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT) > 0) {
    }
  }

  const int sender = ConnectAndSend(server().port(), "");
  ASSERT_GE(sender, 0);
  open.fds.push_back(sender);
  std::vector<double> ahead;  // per send: the share of streams that had the event at its 202
  for (int round = 0; round < 10; ++round) {
    const std::string body = "{\"body\":\"round " + std::to_string(round) + "\"}";
    const std::string post =
        "POST /api/conversations/" + conv + " HTTP/1.1\r\nHost: x\r\n" + cookie +
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    std::vector<pollfd> polls;
    polls.push_back({sender, POLLIN, 0});  // first: counted before the streams of a round
    for (std::size_t i = 0; i < kStreams; ++i) polls.push_back({open.fds[i], POLLIN, 0});
    std::vector<bool> got(kStreams, false);
    std::size_t got_count = 0;
    std::optional<std::size_t> had_at_202;
    std::string answer;
    ASSERT_EQ(::send(sender, post.data(), post.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(post.size()));
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while ((!had_at_202 || got_count < kStreams) && std::chrono::steady_clock::now() < deadline) {
      if (::poll(polls.data(), polls.size(), 1000) <= 0) continue;
      for (std::size_t k = 0; k < polls.size(); ++k) {
        if (!(polls[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::recv(polls[k].fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n <= 0) continue;
        if (k == 0) {
          answer.append(buffer, static_cast<std::size_t>(n));
          if (!had_at_202 && answer.find("\r\n\r\n") != std::string::npos) {
            had_at_202 = got_count;
            ASSERT_EQ(answer.rfind("HTTP/1.1 202", 0), 0u) << answer;
          }
        } else if (!got[k - 1]) {
          got[k - 1] = true;
          ++got_count;
        }
      }
    }
    ASSERT_TRUE(had_at_202) << "round " << round << ": no 202";
    ASSERT_EQ(got_count, kStreams) << "round " << round << ": not every stream got the event";
    ahead.push_back(static_cast<double>(*had_at_202) / kStreams);
    std::this_thread::sleep_for(100ms);
    for (int fd : open.fds) {
      while (::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT) > 0) {
      }
    }
  }
  EXPECT_LT(*std::max_element(ahead.begin(), ahead.end()), 0.9)
      << "the 202s arrived after these shares of the streams had the event: "
      << ::testing::PrintToString(ahead);
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
