// Watching the server from outside: /healthz, /readyz and /metrics without a
// login, metrics that move as the server works, the loopback rule and
// --metrics-allow, and the access log, which never holds a password, a
// token or a message.
#include <regex>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

// The value of the sample `name` (with its labels, exactly as rendered) in a
// Prometheus text page; -1 when absent.
double Sample(const std::string& page, const std::string& name) {
  std::size_t at = 0;
  while ((at = page.find(name + " ", at)) != std::string::npos) {
    if (at == 0 || page[at - 1] == '\n') {
      return std::stod(page.substr(at + name.size() + 1));
    }
    at += name.size();
  }
  return -1;
}

class ObserveTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--access-log", "--trusted-proxy", "127.0.0.1,::1", "--metrics-allow",
            "198.51.100.0/24"};
  }

  std::string Metrics() {
    Client c = NewClient();
    Response r = c.get("/metrics");
    EXPECT_TRUE(HasStatus(r, 200));
    EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
  }
};

TEST_F(ObserveTest, HealthAndReadinessAnswerWithoutALogin) {
  Client c = NewClient();
  Response health = c.get("/healthz");
  ASSERT_TRUE(HasStatus(health, 200));
  EXPECT_EQ(health.json()["status"], "ok");
  // Ready once the probe has committed (it runs at start, then every 2 s).
  ASSERT_TRUE(WaitUntil([&] { return c.get("/readyz").status == 200; }, 10s));
  Response ready = c.get("/readyz");
  EXPECT_EQ(ready.json()["status"], "ready");
  EXPECT_EQ(ready.json()["database"], "ok");
  EXPECT_TRUE(IsJsonError(c.post("/healthz", Json::object()), 405));
}

TEST_F(ObserveTest, MetricsMoveAsTheServerWorks) {
  Client alice = Setup("alice", "alice pass");
  const std::string conv = CreateConversation(alice, "general");
  // The pump reads a commit's events after its 202: user and conversation
  // created.
  std::string before;
  ASSERT_TRUE(WaitUntil(
      [&] { return Sample(before = Metrics(), "quire_events_committed_total") == 2; }, 10s));
  const double committed = Sample(before, "quire_events_committed_total");
  EXPECT_EQ(Sample(before, "quire_streams_open"), 0);

  auto stream = OpenStream(alice, 0);
  ASSERT_TRUE(stream->WaitForEvents(2));
  SendMessage(alice, conv, "one");
  SendMessage(alice, conv, "two");
  ASSERT_TRUE(stream->WaitForEvents(4));
  Client wrong = NewClient();
  EXPECT_EQ(wrong.post("/api/auth/login", {{"name", "alice"}, {"password", "nope"}}).status, 401);

  const std::string after = Metrics();
  EXPECT_EQ(Sample(after, "quire_events_committed_total"), committed + 2);
  EXPECT_EQ(Sample(after, "quire_streams_open"), 1);
  // The pump notes how far the streams got right after writing to them.
  EXPECT_TRUE(WaitUntil([&] { return Sample(Metrics(), "quire_fanout_lag_events") == 0; }, 10s));
  EXPECT_GE(Sample(after, "quire_logins_failed_total"), 1);
  EXPECT_GE(Sample(after,
                   "quire_http_requests_total{route=\"/api/conversations/:id\",method=\"POST\","
                   "status=\"202\"}"),
            2);
  EXPECT_GE(Sample(after, "quire_commit_batch_writes_count"), 4);
  EXPECT_GE(
      Sample(after, "quire_http_request_duration_seconds_count{route=\"/api/conversations/:id\"}"),
      2);
  EXPECT_NE(after.find("# TYPE quire_commit_duration_seconds histogram"), std::string::npos);
  // No id of a conversation or message as a label: routes, not paths.
  EXPECT_EQ(after.find(conv), std::string::npos);

  stream.reset();
  ASSERT_TRUE(WaitUntil([&] { return Sample(Metrics(), "quire_streams_open") == 0; }, 10s));
}

TEST_F(ObserveTest, MetricsAreForLoopbackAndTheAllowedRangesOnly) {
  Client c = NewClient();
  // Through the trusted proxy (this test's loopback), the client is the
  // address it names.
  EXPECT_TRUE(IsJsonError(c.get("/metrics", {{"X-Forwarded-For", "203.0.113.7"}}), 403));
  EXPECT_TRUE(HasStatus(c.get("/metrics", {{"X-Forwarded-For", "198.51.100.20"}}), 200));
  EXPECT_TRUE(HasStatus(c.get("/metrics"), 200));
  // Health needs no such rule: load balancers probe it from anywhere.
  EXPECT_TRUE(HasStatus(c.get("/healthz", {{"X-Forwarded-For", "203.0.113.7"}}), 200));
}

TEST_F(ObserveTest, TheAccessLogHasALinePerRequestAndNoSecrets) {
  const std::string password = "Sekr1t-Pa55word-xyzzy";
  const std::string body = "a message body nobody may log 7f3a";
  Client alice = Setup("alice", password);
  const std::string conv = CreateConversation(alice, "general");
  SendMessage(alice, conv, body);
  Client again = NewClient();
  ASSERT_TRUE(
      HasStatus(again.post("/api/auth/login", {{"name", "alice"}, {"password", password}}), 200));
  ASSERT_TRUE(server().Stop());
  const std::string log = server().stderr_text();
  EXPECT_NE(log.find("quire access: method=POST route=/api/conversations/:id status=202"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("route=/api/auth/login status=200"), std::string::npos) << log;
  EXPECT_EQ(log.find(password), std::string::npos) << "the password was logged";
  EXPECT_EQ(log.find(body), std::string::npos) << "a message body was logged";
  EXPECT_EQ(log.find(conv), std::string::npos) << "a path with an id was logged";
  ASSERT_TRUE(alice.token().has_value());
  EXPECT_EQ(log.find(*alice.token()), std::string::npos) << "a session token was logged";
  ASSERT_TRUE(again.token().has_value());
  EXPECT_EQ(log.find(*again.token()), std::string::npos) << "a session token was logged";
}

class JsonLogTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--access-log", "--log-format", "json"};
  }
};

TEST_F(JsonLogTest, AccessLinesAreJsonObjects) {
  Client c = NewClient();
  EXPECT_EQ(c.get("/api/boot").status, 503);  // not set up yet
  ASSERT_TRUE(server().Stop());
  const std::string log = server().stderr_text();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(\{[^\n]*"log":"access"[^\n]*\})"))) << log;
  const Json line = Json::parse(m.str());
  EXPECT_EQ(line["route"], "/api/boot");
  EXPECT_EQ(line["status"], 503);
  EXPECT_EQ(line["method"], "GET");
  EXPECT_TRUE(line.contains("time"));
  EXPECT_TRUE(line.contains("ms"));
}

}  // namespace
}  // namespace quire::apitest
