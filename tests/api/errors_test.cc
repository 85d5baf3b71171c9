// Error handling of every kind: not set up, unknown routes, wrong methods,
// size limits, malformed bodies, the precedence between errors, and requests
// that no well-behaved client sends.
#include <sys/wait.h>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

const std::string kUnknownUser = "U0000000000000000";
const std::string kUnknownConversation = "C0000000000000000";
const std::string kUnknownMessage = "M0000000000000000";
const std::string kUnknownInvitation = "I0000000000000000";

struct Call {
  std::string method;
  std::string path;
  std::optional<std::string> body;
};

std::string Describe(const Call& c) {
  return c.method + " " + c.path;
}

Response Send(Client& client, const Call& c) {
  client.set_timeout(5s);
  return client.request(c.method, c.path, c.body);
}

// A JSON object padded with trailing whitespace to exactly `size` bytes.
std::string PaddedJson(const Json& object, std::size_t size) {
  std::string s = object.dump();
  if (s.size() < size) s += std::string(size - s.size(), ' ');
  return s;
}

// The server process is alive and answers.
::testing::AssertionResult ServerAlive(QuireProcess& server) {
  int status = 0;
  if (waitpid(server.pid(), &status, WNOHANG) != 0)
    return ::testing::AssertionFailure()
           << "the server process is gone\nstderr: " << server.stderr_text();
  Client probe(server.base_url());
  probe.set_timeout(5s);
  Response r = probe.get("/api/boot");
  if (r.status != 401 && r.status != 200 && r.status != 503)
    return ::testing::AssertionFailure() << "the server no longer answers: " << r.Describe();
  return ::testing::AssertionSuccess();
}

using ErrorsTest = ApiTest;

// Every endpoint (and unknown paths and wrong methods) answers 503 until setup.
TEST_F(ErrorsTest, EverythingButSetupAnswers503BeforeSetup) {
  const std::string big = PaddedJson({{"name", "x"}}, 70000);
  const std::vector<Call> calls = {
      {"GET", "/api/boot", {}},
      {"POST", "/api/auth/login", R"({"name":"alice","password":"pw"})"},
      {"POST", "/api/auth/logout", "{}"},
      {"POST", "/api/password", R"({"password":"a","to":"b"})"},
      {"POST", "/api/invite", "{}"},
      {"GET", "/api/invite/" + kUnknownInvitation, {}},
      {"POST", "/api/invite/" + kUnknownInvitation, R"({"name":"bob","password":"pw"})"},
      {"POST", "/api/conversations", R"({"name":"general"})"},
      {"POST", "/api/conversations/" + kUnknownConversation, R"({"body":"hi"})"},
      {"DELETE", "/api/conversations/" + kUnknownConversation, {}},
      {"DELETE", "/api/messages/" + kUnknownMessage, {}},
      {"GET", "/api/events?resume_point=0", {}},
      {"GET", "/api/events", {}},
      // Unknown paths and wrong methods.
      {"GET", "/api/nope", {}},
      {"POST", "/api/nope", "{}"},
      {"GET", "/api/setup", {}},
      {"DELETE", "/api/setup", {}},
      {"PUT", "/api/boot", "{}"},
      {"GET", "/api/conversations", {}},
      {"POST", "/api/messages/" + kUnknownMessage, "{}"},
      // Bodies that would otherwise be 400 or 413.
      {"POST", "/api/conversations", "not json"},
      {"POST", "/api/conversations", big},
  };
  Client anonymous = NewClient();
  Client with_cookie = NewClient();
  with_cookie.set_token("made-up-token");
  for (const Call& c : calls) {
    EXPECT_TRUE(IsJsonError(Send(anonymous, c), 503)) << Describe(c);
    EXPECT_TRUE(IsJsonError(Send(with_cookie, c), 503)) << Describe(c) << " with a cookie";
  }
  // Setup is still possible: nothing above did anything.
  Client owner = Setup();
  Json boot = Boot(owner);
  EXPECT_EQ(boot["events"].size(), 1u);
}

TEST_F(ErrorsTest, SetupBodyErrorsBeforeSetup) {
  Client c = NewClient();
  EXPECT_TRUE(IsJsonError(
      c.post_raw("/api/setup", PaddedJson({{"name", "alice"}, {"password", "pw"}}, 65537)), 413));
  EXPECT_TRUE(IsJsonError(c.post_raw("/api/setup", "{"), 400));
  EXPECT_TRUE(IsJsonError(c.post("/api/setup", {{"name", "alice"}}), 400));
  EXPECT_TRUE(IsJsonError(c.post("/api/setup", {{"name", ""}, {"password", "pw"}}), 400));
  EXPECT_FALSE(c.token().has_value());
  // A body of exactly 64 KiB is accepted.
  Response ok =
      c.post_raw("/api/setup", PaddedJson({{"name", "alice"}, {"password", "pw"}}, 65536));
  EXPECT_TRUE(HasStatus(ok, 200));
}

TEST_F(ErrorsTest, UnknownApiPathsAre404) {
  Client owner = Setup();
  Client anonymous = NewClient();
  const std::vector<Call> calls = {
      {"GET", "/api/nope", {}},
      {"POST", "/api/nope", "{}"},
      {"DELETE", "/api/nope", {}},
      {"GET", "/api/", {}},
      {"GET", "/api/boot/extra", {}},
      {"POST", "/api/conversations/" + kUnknownConversation + "/extra", R"({"body":"x"})"},
      {"DELETE", "/api/messages", {}},
      {"GET", "/api/invite/" + kUnknownInvitation + "/extra", {}},
      {"GET", "/api/users/" + kUnknownUser, {}},
  };
  for (const Call& c : calls) {
    EXPECT_TRUE(IsJsonError(Send(owner, c), 404)) << Describe(c);
    // 404 comes before 401.
    EXPECT_TRUE(IsJsonError(Send(anonymous, c), 404)) << Describe(c) << " without a cookie";
  }
}

TEST_F(ErrorsTest, WrongMethodsAre405) {
  Client owner = Setup();
  Client anonymous = NewClient();
  const std::vector<Call> calls = {
      {"PUT", "/api/boot", "{}"},
      {"POST", "/api/boot", "{}"},
      {"DELETE", "/api/boot", {}},
      {"GET", "/api/setup", {}},
      {"GET", "/api/auth/login", {}},
      {"GET", "/api/auth/logout", {}},
      {"GET", "/api/password", {}},
      {"GET", "/api/invite", {}},
      {"DELETE", "/api/invite/" + kUnknownInvitation, {}},
      {"GET", "/api/conversations", {}},
      {"DELETE", "/api/conversations", {}},
      {"GET", "/api/conversations/" + kUnknownConversation, {}},
      {"PUT", "/api/conversations/" + kUnknownConversation, R"({"body":"x"})"},
      {"GET", "/api/messages/" + kUnknownMessage, {}},
      {"POST", "/api/messages/" + kUnknownMessage, "{}"},
      {"POST", "/api/events?resume_point=0", "{}"},
      {"PATCH", "/api/conversations", R"({"name":"x"})"},
  };
  for (const Call& c : calls) {
    EXPECT_TRUE(IsJsonError(Send(owner, c), 405)) << Describe(c);
    // 405 comes before 401.
    EXPECT_TRUE(IsJsonError(Send(anonymous, c), 405)) << Describe(c) << " without a cookie";
  }
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

TEST_F(ErrorsTest, PrecedenceBetweenErrors) {
  Client owner = Setup();
  Client anonymous = NewClient();
  Client bogus = NewClient();
  bogus.set_token("not-a-real-token");
  const std::string big = PaddedJson({{"name", "big"}}, 65537);

  // 404/405 before 413.
  EXPECT_TRUE(IsJsonError(anonymous.post_raw("/api/nope", big), 404));
  EXPECT_TRUE(IsJsonError(owner.request("PUT", "/api/boot", big), 405));
  // 413 before 401.
  EXPECT_TRUE(IsJsonError(anonymous.post_raw("/api/conversations", big), 413));
  EXPECT_TRUE(IsJsonError(bogus.post_raw("/api/conversations", big), 413));
  // 401 before 400.
  EXPECT_TRUE(IsJsonError(anonymous.post_raw("/api/conversations", "{not json"), 401));
  EXPECT_TRUE(IsJsonError(bogus.post_raw("/api/conversations", "[]"), 401));
  EXPECT_TRUE(
      IsJsonError(anonymous.post("/api/password", {{"password", "wrong"}, {"to", "x"}}), 401));
  EXPECT_TRUE(IsJsonError(anonymous.get("/api/events?resume_point=abc"), 401));
  EXPECT_TRUE(IsJsonError(anonymous.get("/api/events"), 401));
  // 401 before 404 for the state of the thing.
  EXPECT_TRUE(IsJsonError(anonymous.del("/api/messages/" + kUnknownMessage), 401));
  EXPECT_TRUE(IsJsonError(anonymous.del("/api/conversations/" + kUnknownConversation), 401));
  EXPECT_TRUE(IsJsonError(
      anonymous.post("/api/conversations/" + kUnknownConversation, {{"body", "x"}}), 401));
  // 400 before 404 and 409.
  EXPECT_TRUE(IsJsonError(owner.post_raw("/api/conversations/" + kUnknownConversation, "{"), 400));
  EXPECT_TRUE(
      IsJsonError(owner.post("/api/conversations/" + kUnknownConversation, {{"body", ""}}), 400));
  EXPECT_TRUE(
      IsJsonError(owner.post("/api/conversations/" + kUnknownConversation, {{"body", "x"}}), 404));
  EXPECT_TRUE(IsJsonError(anonymous.post_raw("/api/invite/" + kUnknownInvitation, "{"), 400));
  EXPECT_TRUE(IsJsonError(
      anonymous.post("/api/invite/" + kUnknownInvitation, {{"name", " bad"}, {"password", "pw"}}),
      400));
  EXPECT_TRUE(IsJsonError(
      anonymous.post("/api/invite/" + kUnknownInvitation, {{"name", "bob"}, {"password", "pw"}}),
      404));
  // Setup once set up: a bad body is 400, a good one 409.
  EXPECT_TRUE(IsJsonError(anonymous.post_raw("/api/setup", "{"), 400));
  EXPECT_TRUE(IsJsonError(anonymous.post("/api/setup", {{"name", ""}, {"password", "pw"}}), 400));
  EXPECT_TRUE(
      IsJsonError(anonymous.post("/api/setup", {{"name", "mallory"}, {"password", "pw"}}), 409));
  // Nothing above changed anything.
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

TEST_F(ErrorsTest, BodiesOver64KiBAre413) {
  Client owner = Setup();
  Response exact = owner.post_raw("/api/conversations", PaddedJson({{"name", "exact"}}, 65536));
  EXPECT_TRUE(HasStatus(exact, 202));
  Response over = owner.post_raw("/api/conversations", PaddedJson({{"name", "over"}}, 65537));
  EXPECT_TRUE(IsJsonError(over, 413));
  Response much = owner.post_raw("/api/conversations", PaddedJson({{"name", "much"}}, 1 << 20));
  EXPECT_TRUE(IsJsonError(much, 413));
  std::string id = CreateConversation(owner, "after");
  Response msg =
      owner.post_raw("/api/conversations/" + id, PaddedJson({{"body", Repeat("x", 100)}}, 65537));
  EXPECT_TRUE(IsJsonError(msg, 413));
  Json events = Boot(owner)["events"];
  EXPECT_EQ(EventKeys(events).size(), 3u);  // user, "exact", "after"
  EXPECT_EQ(FindEvents(events, "conversation", "created").size(), 2u);
  EXPECT_TRUE(FindEvents(events, "message", "sent").empty());
}

TEST_F(ErrorsTest, MalformedBodiesAre400AndDoNothing) {
  Client owner = Setup("alice", "owner pass");
  std::string conversation = CreateConversation(owner, "general");
  Json before = Boot(owner)["events"];

  // Bodies for POST /api/conversations, a route that takes {"name"}.
  const std::vector<std::string> name_bodies = {
      "",
      "{",
      "not json",
      "{\"name\":\"x\"} trailing",
      "{\"name\":\"x\",}",
      "{'name':'x'}",
      "[]",
      "[{\"name\":\"x\"}]",
      "\"name\"",
      "42",
      "null",
      "true",
      "{}",
      "{\"nam\":\"x\"}",
      "{\"name\":null}",
      "{\"name\":5}",
      "{\"name\":true}",
      "{\"name\":[\"x\"]}",
      "{\"name\":{\"name\":\"x\"}}",
      // Invalid UTF-8 inside the string.
      "{\"name\":\"a\xff"
      "b\"}",
      "{\"name\":\"a\xc3\"}",
      "{\"name\":\"a\xc0\xaf"
      "b\"}",
      "{\"name\":\"a\xed\xa0\x80"
      "b\"}",
      "{\"name\":\"a\xf4\x90\x80\x80"
      "b\"}",
      "{\"name\":\"\xfe\xfe\xff\xff\"}",
      // Escapes that are not Unicode scalar values.
      "{\"name\":\"a\\ud800b\"}",
      "{\"name\":\"a\\udc00\"}",
      "{\"name\":\"a\\x41\"}",
  };
  for (const auto& body : name_bodies) {
    EXPECT_TRUE(IsJsonError(owner.post_raw("/api/conversations", body), 400)) << "body: " << body;
  }

  // Bodies for POST /api/conversations/:id, which takes {"body"}.
  const std::vector<std::string> message_bodies = {
      "",
      "{",
      "[]",
      "{}",
      "{\"text\":\"hi\"}",
      "{\"body\":null}",
      "{\"body\":1}",
      "{\"body\":[\"hi\"]}",
      "{\"body\":\"hi\xff"
      "there\"}",
      "{\"body\":\"\\udfff\"}",
  };
  for (const auto& body : message_bodies) {
    EXPECT_TRUE(IsJsonError(owner.post_raw("/api/conversations/" + conversation, body), 400))
        << "body: " << body;
  }

  // Setup, login, password, invitations and logout.
  Client anonymous = NewClient();
  const std::vector<std::pair<std::string, std::string>> other = {
      {"/api/auth/login", "{\"name\":\"alice\"}"},
      {"/api/auth/login", "{\"password\":\"owner pass\"}"},
      {"/api/auth/login", "{\"name\":\"alice\",\"password\":5}"},
      {"/api/auth/login", "{\"name\":[\"alice\"],\"password\":\"owner pass\"}"},
      {"/api/auth/login", "[\"alice\",\"owner pass\"]"},
      {"/api/auth/login", "{\"name\":\"alice\xff\",\"password\":\"owner pass\"}"},
      {"/api/invite/" + kUnknownInvitation, "{\"name\":\"bob\"}"},
      {"/api/invite/" + kUnknownInvitation, "[]"},
  };
  for (const auto& [path, body] : other) {
    EXPECT_TRUE(IsJsonError(anonymous.post_raw(path, body), 400)) << path << " body: " << body;
  }
  EXPECT_FALSE(anonymous.token().has_value());
  const std::vector<std::pair<std::string, std::string>> authed = {
      {"/api/password", "{\"password\":\"owner pass\"}"},
      {"/api/password", "{\"to\":\"new pass\"}"},
      {"/api/password", "{\"password\":\"owner pass\",\"to\":7}"},
      {"/api/password", "{\"password\":\"owner pass\",\"to\":\"new\xff\"}"},
      {"/api/password", "[]"},
      {"/api/invite", "not json"},
      {"/api/invite", "[]"},
      {"/api/auth/logout", "not json"},
      {"/api/auth/logout", "[]"},
  };
  std::string token = *owner.token();
  for (const auto& [path, body] : authed) {
    EXPECT_TRUE(IsJsonError(owner.post_raw(path, body), 400)) << path << " body: " << body;
    ASSERT_EQ(owner.token(), token) << "a 400 must not change the cookie";
  }

  // Nothing changed: same history, same token, same password.
  Json after = Boot(owner)["events"];
  EXPECT_EQ(after, before);
  Client relogin = NewClient();
  EXPECT_TRUE(HasStatus(
      relogin.post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}), 200));
}

TEST_F(ErrorsTest, HugeContentLengthIs413WithoutReadingTheBody) {
  Client owner = Setup();
  for (bool with_cookie : {false, true}) {
    std::string request =
        "POST /api/conversations HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000000000\r\n";
    if (with_cookie) request += "Cookie: identity=" + *owner.token() + "\r\n";
    request += "\r\n{\"name\":\"";
    auto started = std::chrono::steady_clock::now();
    RawResponse r = SendRaw(server().host(), server().port(), request, 5s);
    EXPECT_TRUE(IsJsonError(r, 413)) << (with_cookie ? "with" : "without") << " a cookie";
    EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  }
  EXPECT_TRUE(ServerAlive(server()));
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

// docs/decisions.md: any request with Transfer-Encoding is refused with 411
// before Pistache parses it, however small or large its chunks.
TEST_F(ErrorsTest, ChunkedBodiesAreRefusedWith411) {
  Client owner = Setup();
  const Json before = Boot(owner);
  const std::string head =
      "POST /api/conversations HTTP/1.1\r\nHost: localhost\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
      "Cookie: identity=" +
      *owner.token() + "\r\n\r\n";
  // A small valid body in two chunks, sent in pieces.
  std::string small = head + "8\r\n{\"name\":\r\n9\r\n\"chunked\"\r\n1\r\n}\r\n0\r\n\r\n";
  RawResponse r = SendRaw(server().host(), server().port(), small, 5s, {head.size() + 5});
  EXPECT_TRUE(IsJsonError(r, 411)) << "small chunked body";
  // Over 64 KiB in chunks.
  std::string big = head;
  std::string chunk(4096, ' ');
  big += "8\r\n{\"name\":\r\n";
  for (int i = 0; i < 20; ++i) big += "1000\r\n" + chunk + "\r\n";
  big += "6\r\n\"big\"}\r\n0\r\n\r\n";
  RawResponse b = SendRaw(server().host(), server().port(), big, 5s);
  EXPECT_TRUE(IsJsonError(b, 411)) << "chunked body over 64 KiB";
  // Another encoding than chunked, and a chunked request without a body.
  RawResponse gzip = SendRaw(server().host(), server().port(),
                             "POST /api/conversations HTTP/1.1\r\nHost: localhost\r\n"
                             "Transfer-Encoding: gzip, chunked\r\nCookie: identity=" +
                                 *owner.token() + "\r\n\r\n0\r\n\r\n",
                             5s);
  EXPECT_TRUE(IsJsonError(gzip, 411)) << "Transfer-Encoding: gzip, chunked";
  // Nothing changed, and the server still answers.
  EXPECT_EQ(Boot(owner), before);
  EXPECT_TRUE(ServerAlive(server()));
}

// Requests no well-behaved client sends: each gets an answer (never a 5xx,
// never silence) with the status it calls for, and the server answers the
// next request. docs/decisions.md fixes 431 for a head over 64 KiB; the rest
// are 400 for what is not HTTP, 401 without a valid cookie, 404 for ids and
// paths that do not exist.
TEST_F(ErrorsTest, MalformedRequestsGetA4xxAndTheServerGoesOn) {
  Client owner = Setup();
  const std::string cookie = "Cookie: identity=" + *owner.token() + "\r\n";
  static const char kNulInHeader[] = "GET /api/boot HTTP/1.1\r\nHost: local\0host\r\n\r\n";
  struct Case {
    std::string request;
    int status;
  };
  const std::vector<Case> cases = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET\r\n\r\n", 400},
      {"GET /api/boot HTTP/1.1\r\nHost localhost\r\n\r\n", 400},
      {"POST /api/conversations HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n" + cookie +
           "\r\n",
       400},
      {"POST /api/conversations HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n" + cookie +
           "\r\n",
       400},
      {"POST /api/conversations HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
       "Content-Length: 9\r\n" +
           cookie + "\r\n{\"a\":1}xx",
       400},
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\r\nX-Long: " + std::string(100000, 'a') +
           "\r\n\r\n",
       431},
      {"GET /api/invite/%zz HTTP/1.1\r\nHost: localhost\r\n\r\n", 404},
      {"GET /api/invite/%00 HTTP/1.1\r\nHost: localhost\r\n\r\n", 404},
      {"GET /api/events?resume_point=%ff HTTP/1.1\r\nHost: localhost\r\n" + cookie + "\r\n", 400},
      {"GET /api/events?resume_point=1&resume_point=x HTTP/1.1\r\nHost: localhost\r\n" + cookie +
           "\r\n",
       400},
      {"DELETE /api/messages/" + std::string(5000, 'M') + " HTTP/1.1\r\nHost: localhost\r\n" +
           cookie + "\r\n",
       404},
      {"DELETE /api/messages/..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: localhost\r\n" + cookie +
           "\r\n",
       404},
      {"GET /api/invite/'%20OR%201=1-- HTTP/1.1\r\nHost: localhost\r\n\r\n", 404},
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\r\nCookie: identity=\xff\xfe\r\n\r\n", 401},
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\r\nCookie: identity=\xff\xfe\x01\r\n\r\n", 400},
      // A garbled Cookie header holds no identity: not logged in.
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\r\nCookie: ;;;==;identity\r\n\r\n", 401},
      {"GET /api/boot HTTP/9.9\r\nHost: localhost\r\n\r\n", 400},
      // Stricter than Pistache alone: control characters in a value, a
      // request without Host, two Hosts, a bad header name, lines ended by
      // bare LFs (answered at once, not after the 30 s header timeout).
      {std::string(kNulInHeader, sizeof kNulInHeader - 1), 400},
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n" + cookie + "\r\n", 400},
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\r\nX-A: \x01\r\n" + cookie + "\r\n", 400},
      {"GET /api/boot HTTP/1.1\r\n" + cookie + "\r\n", 400},
      {"GET /api/boot HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + cookie + "\r\n", 400},
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\r\nX(A): 1\r\n" + cookie + "\r\n", 400},
      {"GET /api/boot HTTP/1.1\nHost: localhost\n\n", 400},
      {"GET /api/boot HTTP/1.1\r\nHost: localhost\n\n", 400},
      // HTTP/1.0 needs no Host.
      {"GET /api/boot HTTP/1.0\r\n\r\n", 401},
  };
  for (const Case& c : cases) {
    RawResponse r = SendRaw(server().host(), server().port(), c.request, 5s);
    EXPECT_TRUE(IsJsonError(r, c.status)) << "request: " << c.request.substr(0, 200);
    ASSERT_TRUE(ServerAlive(server())) << "after: " << c.request.substr(0, 200);
  }
  // Two identity cookies are not malformed: an answer, not an error of the server.
  RawResponse two = SendRaw(server().host(), server().port(),
                            "GET /api/boot HTTP/1.1\r\nHost: localhost\r\n" + cookie +
                                "Cookie: identity=\r\nConnection: close\r\n\r\n",
                            5s);
  EXPECT_TRUE(two.status == 200 || IsJsonError(two, 401)) << two.Describe();
  // Odd ids through the normal client: 404, never 500.
  for (const std::string id :
       {"x", "M", "M00000000000000000000000", "C0000000000000000", "%2e%2e", "M%00", "%C3%A9"}) {
    Response r = owner.del("/api/messages/" + id);
    EXPECT_TRUE(IsJsonError(r, 404)) << "id " << id;
  }
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

// docs/decisions.md: a request head (request line and headers) over 64 KiB
// gets 431 with a JSON error; 64 KiB exactly is served.
TEST_F(ErrorsTest, RequestHeadsOver64KiBAre431) {
  Client owner = Setup();
  const std::string start =
      "GET /api/boot HTTP/1.1\r\nHost: localhost\r\nCookie: identity=" + *owner.token() + "\r\n";
  // A head of exactly `size` bytes, its final CRLF CRLF included.
  auto head_of = [&](std::size_t size) {
    const std::string frame = start + "X-Pad: \r\n\r\n";
    return start + "X-Pad: " + std::string(size - frame.size(), 'p') + "\r\n\r\n";
  };
  ASSERT_EQ(head_of(65536).size(), 65536u);
  RawResponse exact = SendRaw(server().host(), server().port(), head_of(65536), 10s);
  EXPECT_EQ(exact.status, 200) << exact.Describe();
  EXPECT_TRUE(exact.json().is_object() && exact.json().contains("events")) << exact.Describe();

  RawResponse over = SendRaw(server().host(), server().port(), head_of(65537), 10s);
  EXPECT_TRUE(IsJsonError(over, 431)) << "a head of 65,537 bytes";
  // Many small headers, and a head that never ends: the same.
  std::string many = start;
  for (int i = 0; many.size() < 70000; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  RawResponse lots = SendRaw(server().host(), server().port(), many + "\r\n", 10s);
  EXPECT_TRUE(IsJsonError(lots, 431)) << "many headers";
  RawResponse endless =
      SendRaw(server().host(), server().port(), start + "X-Long: " + std::string(70000, 'a'), 10s);
  EXPECT_TRUE(IsJsonError(endless, 431)) << "a head without an end";
  // The same for a POST, before its body is looked at: nothing is created.
  RawResponse post = SendRaw(server().host(), server().port(),
                             "POST /api/conversations HTTP/1.1\r\nHost: localhost\r\n" +
                                 std::string("Cookie: identity=") + *owner.token() +
                                 "\r\nX-Long: " + std::string(70000, 'a') +
                                 "\r\nContent-Length: 14\r\n\r\n{\"name\":\"big\"}",
                             10s);
  EXPECT_TRUE(IsJsonError(post, 431)) << "POST with a long head";

  EXPECT_TRUE(ServerAlive(server()));
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

// A body must say it is JSON (415 otherwise, and nothing is done): a page on
// another site can make a browser send text/plain, form-encoded or multipart
// bodies without asking first, but not application/json.
TEST_F(ErrorsTest, BodiesNotSentAsJsonAre415AndDoNothing) {
  Client owner = Setup("alice", "owner pass");
  const std::string conv = CreateConversation(owner, "room");
  const std::vector<std::string> refused = {"text/plain",
                                            "text/plain; charset=utf-8",
                                            "application/x-www-form-urlencoded",
                                            "multipart/form-data; boundary=x",
                                            "application/xml",
                                            "text/html",
                                            "application/json; charset=latin1",
                                            "application/jsonp"};
  for (const std::string& type : refused) {
    const Headers header = {{"Content-Type", type}};
    EXPECT_TRUE(IsJsonError(
        owner.post_raw("/api/conversations", Json{{"name", "x " + type}}.dump(), header), 415))
        << "Content-Type: " << type;
    EXPECT_TRUE(IsJsonError(
        owner.post_raw("/api/conversations/" + conv, R"({"body":"<b>hi</b>"})", header), 415))
        << "a message sent as " << type;
    Client plain = NewClient();
    EXPECT_TRUE(IsJsonError(
        plain.post_raw("/api/auth/login", R"({"name":"alice","password":"owner pass"})", header),
        415))
        << "a login sent as " << type;
    EXPECT_FALSE(IdentityCookie(
        plain.post_raw("/api/auth/login", R"({"name":"alice","password":"owner pass"})", header)));
  }
  // A body without any Content-Type.
  const std::string body = R"({"name":"untyped"})";
  RawResponse none = SendRaw(
      server().host(), server().port(),
      "POST /api/conversations HTTP/1.1\r\nHost: localhost\r\nCookie: identity=" + *owner.token() +
          "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body,
      5s);
  EXPECT_TRUE(IsJsonError(none, 415)) << none.Describe();

  // JSON with a UTF-8 charset, in any case, is accepted.
  for (const std::string type : {"application/json; charset=utf-8", "Application/JSON"}) {
    EXPECT_TRUE(HasStatus(
        owner.post_raw("/api/conversations", Json{{"name", type}}.dump(), {{"Content-Type", type}}),
        202))
        << "Content-Type: " << type;
  }
  // A request without a body needs no Content-Type.
  const std::string message = Str(SendMessage(owner, conv, "to delete"), "id");
  RawResponse deleted =
      SendRaw(server().host(), server().port(),
              "DELETE /api/messages/" + message +
                  " HTTP/1.1\r\nHost: localhost\r\nCookie: identity=" + *owner.token() + "\r\n\r\n",
              5s);
  EXPECT_EQ(deleted.status, 202) << deleted.Describe();

  // Precedence: 413 before 415; 415 before 401 and 400.
  EXPECT_TRUE(IsJsonError(owner.post_raw("/api/conversations", std::string(70 * 1024, 'x'),
                                         {{"Content-Type", "text/plain"}}),
                          413));
  EXPECT_TRUE(IsJsonError(NewClient().post_raw("/api/conversations", R"({"name":"n"})",
                                               {{"Content-Type", "text/plain"}}),
                          415))
      << "415 comes before 401";
  EXPECT_TRUE(IsJsonError(
      owner.post_raw("/api/conversations", "name=x", {{"Content-Type", "text/plain"}}), 415))
      << "415 comes before 400";

  const Json events = Boot(owner)["events"];
  EXPECT_EQ(FindEvents(events, "conversation", "created").size(), 3u);
  EXPECT_EQ(FindEvents(events, "message", "sent").size(), 1u);
  EXPECT_EQ(FindEvents(events, "message", "deleted").size(), 1u);
}

// A state-changing request that a browser sends from another origin is 403
// and does nothing; the server's own origin, and clients that send no
// Origin, are fine. Reads are not refused (a foreign page cannot read the
// answer without CORS, which Quire never grants).
TEST_F(ErrorsTest, StateChangesFromAnotherOriginAre403AndDoNothing) {
  Client owner = Setup("alice", "owner pass");
  const std::string conv = CreateConversation(owner, "room");
  const std::string message = Str(SendMessage(owner, conv, "hello"), "id");
  const std::string own = "http://" + server().host() + ":" + std::to_string(server().port());

  const std::vector<Headers> foreign = {{{"Origin", "http://evil.example"}},
                                        {{"Origin", "null"}},
                                        {{"Origin", own + "1"}},
                                        {{"Sec-Fetch-Site", "cross-site"}},
                                        {{"Sec-Fetch-Site", "same-site"}}};
  for (const Headers& h : foreign) {
    const std::string what = h.begin()->first + ": " + h.begin()->second;
    EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", "csrf"}}, h), 403)) << what;
    EXPECT_TRUE(IsJsonError(owner.post("/api/conversations/" + conv, {{"body", "csrf"}}, h), 403))
        << what;
    EXPECT_TRUE(IsJsonError(owner.del("/api/messages/" + message, h), 403)) << what;
    EXPECT_TRUE(IsJsonError(owner.post("/api/invite", Json::object(), h), 403)) << what;
    EXPECT_TRUE(IsJsonError(owner.post("/api/auth/logout", Json::object(), h), 403)) << what;
    Client stranger = NewClient();
    EXPECT_TRUE(IsJsonError(
        stranger.post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}, h), 403))
        << "a login from " << what;
    EXPECT_TRUE(HasStatus(owner.get("/api/boot", h), 200)) << "a read with " << what;
  }
  // The server's own origin and a same-origin fetch are accepted.
  EXPECT_TRUE(
      HasStatus(owner.post("/api/conversations", {{"name", "mine"}}, {{"Origin", own}}), 202));
  EXPECT_TRUE(HasStatus(owner.post("/api/conversations/" + conv, {{"body", "same"}},
                                   {{"Sec-Fetch-Site", "same-origin"}}),
                        202));
  // Precedence: 415 before 403; 403 before 401.
  EXPECT_TRUE(IsJsonError(
      owner.post_raw("/api/conversations", R"({"name":"n"})",
                     {{"Content-Type", "text/plain"}, {"Origin", "http://evil.example"}}),
      415));
  EXPECT_TRUE(IsJsonError(
      NewClient().post("/api/conversations", {{"name", "n"}}, {{"Origin", "http://evil.example"}}),
      403))
      << "403 comes before 401";

  const Json events = Boot(owner)["events"];
  EXPECT_EQ(FindEvents(events, "conversation", "created").size(), 2u);
  EXPECT_EQ(FindEvents(events, "message", "sent").size(), 2u);
  EXPECT_EQ(FindEvents(events, "message", "deleted").size(), 0u);
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200)) << "the session was not logged out";
}

}  // namespace
}  // namespace quire::apitest
