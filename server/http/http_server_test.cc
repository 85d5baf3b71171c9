#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace quire::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class CurlEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { curl_global_init(CURL_GLOBAL_DEFAULT); }
  void TearDown() override { curl_global_cleanup(); }
};
[[maybe_unused]] auto* const curl_env = ::testing::AddGlobalTestEnvironment(new CurlEnvironment);

// WhenDrained, waited for by the test: the callback's argument, or nullopt
// when it did not run within `wait`.
std::optional<bool> Drained(ResponseStream& stream, std::size_t limit,
                            std::chrono::milliseconds timeout, std::chrono::milliseconds wait) {
  auto done = std::make_shared<std::promise<bool>>();
  std::future<bool> result = done->get_future();
  stream.WhenDrained(limit, timeout, [done](bool drained) { done->set_value(drained); });
  if (result.wait_for(wait) != std::future_status::ready) return std::nullopt;
  return result.get();
}

// ---------------------------------------------------------------------------
// Clients.

struct CurlResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  long new_connections = 0;
  std::string headers;  // raw header lines, as received
  std::string body;
};

std::size_t AppendTo(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One request; pass `handle` to reuse a connection.
CurlResult Curl(const std::string& method, const std::string& url,
                const std::vector<std::string>& headers = {},
                const std::optional<std::string>& body = std::nullopt, CURL* handle = nullptr) {
  CURL* h = handle ? handle : curl_easy_init();
  CurlResult r;
  curl_slist* list = nullptr;
  for (const auto& hdr : headers) list = curl_slist_append(list, hdr.c_str());
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendTo);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &AppendTo);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  r.code = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r.new_connections);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(list);
  if (!handle) curl_easy_cleanup(h);
  return r;
}

// A plain TCP client, for exact bytes on the wire.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect failed");
    }
  }
  ~RawClient() { Close(); }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Reads into buf until `done(buf)` or EOF or the timeout. Returns done(buf).
  template <typename Pred>
  bool ReadUntil(Pred done, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (!done(buf)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || eof) return done(buf);
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[65536];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) {
        eof = true;
      } else {
        buf.append(tmp, static_cast<std::size_t>(n));
      }
    }
    return true;
  }

  bool WaitEof(std::chrono::milliseconds timeout) {
    ReadUntil([&](const std::string&) { return eof; }, timeout);
    return eof;
  }

  // Reads one response framed by Content-Length (none: no body) and removes
  // it from buf. Returns false on timeout.
  bool ReadResponse(std::string* head, std::string* body,
                    std::chrono::milliseconds timeout = 3000ms) {
    if (!ReadUntil([](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; },
                   timeout)) {
      return false;
    }
    std::size_t head_end = buf.find("\r\n\r\n") + 4;
    *head = buf.substr(0, head_end);
    std::size_t length = 0;
    if (auto pos = head->find("Content-Length: "); pos != std::string::npos) {
      length = std::stoul(head->substr(pos + 16));
    }
    if (!ReadUntil([&](const std::string& b) { return b.size() >= head_end + length; }, timeout)) {
      return false;
    }
    *body = buf.substr(head_end, length);
    buf.erase(0, head_end + length);
    return true;
  }

  std::string buf;
  bool eof = false;

 private:
  int fd_ = -1;
};

// Parses chunks from the front of `data` (after the head). Stops at an
// incomplete chunk; sets *final on the zero-size chunk. Removes what it read.
std::vector<std::string> TakeChunks(std::string* data, bool* final) {
  std::vector<std::string> out;
  for (;;) {
    std::size_t eol = data->find("\r\n");
    if (eol == std::string::npos) return out;
    std::size_t size = std::stoul(data->substr(0, eol), nullptr, 16);
    if (size == 0) {
      if (data->size() < eol + 4) return out;
      data->erase(0, eol + 4);
      *final = true;
      return out;
    }
    if (data->size() < eol + 2 + size + 2) return out;
    out.push_back(data->substr(eol + 2, size));
    data->erase(0, eol + 2 + size + 2);
  }
}

// Hands streams from the handler (a worker thread) to the test thread.
class StreamBox {
 public:
  void Put(std::shared_ptr<ResponseStream> s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      streams_.push_back(std::move(s));
    }
    cv_.notify_all();
  }
  std::shared_ptr<ResponseStream> Take(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !streams_.empty(); })) return nullptr;
    auto s = streams_.front();
    streams_.pop_front();
    return s;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<ResponseStream>> streams_;
};

const std::vector<std::pair<std::string, std::string>> kEventHeaders = {
    {"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};

// ---------------------------------------------------------------------------

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}) {
    options.port = 0;
    server_ = std::make_unique<HttpServer>(
        options, [this](const Request& req, Responder& res) { Handle(req, res); });
    std::string error;
    ASSERT_TRUE(server_->Start(&error)) << error;
    ASSERT_NE(server_->port(), 0);
  }

  std::string Url(const std::string& target) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + target;
  }

  void Handle(const Request& req, Responder& res) {
    if (req.path == "/throw") throw std::runtime_error("secret database detail");
    if (req.path == "/silent") return;
    if (req.path == "/kept") {  // answered later by the test, from its own thread
      std::lock_guard<std::mutex> lock(kept_mu_);
      kept_.push_back(res.Keep());
      kept_cv_.notify_all();
      return;
    }
    if (req.path == "/kept-then-dropped") {
      res.Keep();  // and forgotten
      return;
    }
    if (req.path == "/nocontent") {
      res.Send(Response{204, "", "application/json", {}, {}});
      return;
    }
    if (req.path == "/login") {
      Response r;
      r.body = R"({"id":"U1"})";
      r.set_cookies = {"identity=tok123; HttpOnly; SameSite=Strict; Path=/", "other=1; Path=/"};
      res.Send(std::move(r));
      return;
    }
    if (req.path == "/headers" || req.path == "/not-modified") {
      Response r;
      r.status = req.path == "/headers" ? 200 : 304;
      r.content_type = "text/plain";
      r.body = "body";  // never sent with a 304
      r.headers = {{"ETag", "\"abc\""},
                   {"X-Bad", "a\r\nInjected: 1"},
                   {"X-Bad\nName", "b"},
                   {"", "no name"},
                   {"Cache-Control", "no-cache"}};
      res.Send(std::move(r));
      return;
    }
    if (req.path == "/slow") {
      std::this_thread::sleep_for(50ms);
      res.Send(Response{200, R"({"slow":true})", "application/json", {}, {}});
      return;
    }
    if (req.path == "/held") {  // runs until the test releases it (30 s at most)
      std::unique_lock<std::mutex> lock(held_mu_);
      held_started_ = true;
      held_cv_.notify_all();
      held_cv_.wait_for(lock, 30s, [&] { return held_released_; });
      res.Send(Response{200, R"({"held":true})", "application/json", {}, {}});
      return;
    }
    if (req.path == "/events") {
      box_.Put(res.StartStream(200, kEventHeaders));
      return;
    }
    nlohmann::json j;
    j["method"] = req.method;
    j["path"] = req.path;
    j["query"] = req.query;
    j["query_malformed"] = req.query_malformed;
    j["headers"] = req.headers;
    j["cookies"] = req.cookies;
    j["body"] = req.body;
    const std::string* ct = req.Header("content-type");
    j["has_ct"] = ct != nullptr;
    res.Send(Response{200, j.dump(), "application/json", {}, {}});
  }

  void TearDown() override { ReleaseHeld(); }

  bool WaitHeldStarted(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(held_mu_);
    return held_cv_.wait_for(lock, timeout, [&] { return held_started_; });
  }
  void ReleaseHeld() {
    {
      std::lock_guard<std::mutex> lock(held_mu_);
      held_released_ = true;
    }
    held_cv_.notify_all();
  }

  // Waits until `count` requests are kept (and their handlers returned).
  bool WaitKept(std::size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(kept_mu_);
    return kept_cv_.wait_for(lock, timeout, [&] { return kept_.size() >= count; });
  }
  std::vector<std::shared_ptr<Responder>> TakeKept() {
    std::lock_guard<std::mutex> lock(kept_mu_);
    return std::move(kept_);
  }

  std::mutex kept_mu_;
  std::condition_variable kept_cv_;
  std::vector<std::shared_ptr<Responder>> kept_;
  std::mutex held_mu_;
  std::condition_variable held_cv_;
  bool held_started_ = false;
  bool held_released_ = false;
  // Before server_: what the handler touches is destroyed after the server,
  // whose destructor waits for the workers (a handler may still be in
  // StreamBox::Put's notify when the test thread has taken the stream).
  StreamBox box_;
  std::unique_ptr<HttpServer> server_;
};

TEST(MakeChunkTest, Frames) {
  EXPECT_EQ(MakeChunk("hello")->bytes(), "5\r\nhello\r\n");
  EXPECT_EQ(MakeChunk(std::string(26, 'x'))->bytes(), "1a\r\n" + std::string(26, 'x') + "\r\n");
  EXPECT_EQ(MakeChunk("")->bytes(), "");  // never the terminating zero chunk
}

TEST_F(HttpServerTest, JsonRoundTripDecodesPathQueryHeadersCookies) {
  StartServer();
  auto r = Curl("POST", Url("/p/caf%C3%A9%20room?q=caf%C3%A9+x%26y&n=1&n=2&flag"),
                {"Cookie: identity=abc; theme=dark", "Last-Event-ID: 42", "Idempotency-Key: k-1",
                 "Content-Type: application/json", "X-Dup: 1", "X-Dup: 2"},
                R"({"a":1})");
  ASSERT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("Content-Type: application/json\r\n"), std::string::npos);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["path"], "/p/café room");
  EXPECT_EQ(j["query"]["q"], "café x&y");
  EXPECT_EQ(j["query"]["n"], "2");  // the last one wins
  EXPECT_EQ(j["query"]["flag"], "");
  EXPECT_EQ(j["query_malformed"], false);
  EXPECT_EQ(j["headers"]["cookie"], "identity=abc; theme=dark");
  EXPECT_EQ(j["headers"]["last-event-id"], "42");
  EXPECT_EQ(j["headers"]["idempotency-key"], "k-1");
  EXPECT_EQ(j["headers"]["content-type"], "application/json");
  EXPECT_EQ(j["headers"]["content-length"], "7");
  EXPECT_EQ(j["headers"]["x-dup"], "1, 2");
  EXPECT_EQ(j["has_ct"], true);
  EXPECT_EQ(j["cookies"]["identity"], "abc");
  EXPECT_EQ(j["cookies"]["theme"], "dark");
  EXPECT_EQ(j["body"], R"({"a":1})");

  auto bad = Curl("GET", Url("/x?a=%zz&b=%4"));
  auto jb = nlohmann::json::parse(bad.body);
  EXPECT_EQ(jb["query_malformed"], true);
  EXPECT_EQ(jb["query"]["a"], "%zz");
  EXPECT_EQ(jb["method"], "GET");
}

TEST_F(HttpServerTest, ExpectContinueIsAnsweredAtOnce) {
  StartServer();
  std::string body(200 * 1024, 'b');
  auto start = Clock::now();
  auto r = Curl("POST", Url("/echo"), {"Expect: 100-continue"}, body);
  EXPECT_LT(Clock::now() - start, 900ms);  // curl waits 1 s for a 100 that never comes
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(nlohmann::json::parse(r.body)["body"].get<std::string>().size(), body.size());
}

TEST_F(HttpServerTest, SetCookieBytesOnTheWire) {
  StartServer();
  RawClient c(server_->port());
  c.Send("POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  std::string head, body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("\r\nSet-Cookie: identity=tok123; HttpOnly; SameSite=Strict; Path=/\r\n"),
            std::string::npos)
      << head;
  EXPECT_NE(head.find("\r\nSet-Cookie: other=1; Path=/\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nContent-Type: application/json\r\n"), std::string::npos) << head;
  EXPECT_EQ(body, R"({"id":"U1"})");
}

TEST_F(HttpServerTest, NoContentHasNoBody) {
  StartServer();
  RawClient c(server_->port());
  c.Send("POST /nocontent HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head, body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 204 No Content\r\n", 0), 0u) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Type"), std::string::npos) << head;
  // The next bytes on the connection are the next response, not a body.
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_EQ(nlohmann::json::parse(body)["path"], "/x");
}

TEST_F(HttpServerTest, ExtraHeadersAreWrittenAndCrLfOnesDropped) {
  StartServer();
  RawClient c(server_->port());
  // A 304 on a kept-alive connection: headers, no body, then the next response.
  c.Send(
      "GET /headers HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /not-modified HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head, body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("\r\nETag: \"abc\"\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nCache-Control: no-cache\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nContent-Type: text/plain\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("X-Bad"), std::string::npos) << head;
  EXPECT_EQ(head.find("Injected"), std::string::npos) << head;
  EXPECT_EQ(head.find("no name"), std::string::npos) << head;
  EXPECT_EQ(body, "body");

  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 304 Not Modified\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("\r\nETag: \"abc\"\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nCache-Control: no-cache\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Type"), std::string::npos) << head;
  EXPECT_EQ(body, "");
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_EQ(nlohmann::json::parse(body)["path"], "/x");
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  RawClient c(server_->port());
  c.Send(
      "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
      "GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head, body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(body, R"({"slow":true})");
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(nlohmann::json::parse(body)["body"], "abc");
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(nlohmann::json::parse(body)["path"], "/two");

  // A request sent while a stream is open waits for the end of the stream.
  c.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = box_.Take();
  ASSERT_TRUE(stream);
  EXPECT_TRUE(stream->Write(MakeChunk("data: x\n\n")));
  std::this_thread::sleep_for(50ms);
  stream->End();
  ASSERT_TRUE(c.ReadUntil(
      [](const std::string& b) { return b.find("/three") != std::string::npos; }, 2000ms));
  std::size_t end_of_stream = c.buf.find("\r\n0\r\n\r\n");
  ASSERT_NE(end_of_stream, std::string::npos) << c.buf;
  EXPECT_LT(end_of_stream, c.buf.find("HTTP/1.1 200 OK", 10)) << c.buf;
}

TEST_F(HttpServerTest, IdleKeepAliveIsNotTimedOutButAStalledRequestIs) {
  ServerOptions o;
  o.header_timeout = 1s;
  StartServer(o);
  RawClient idle(server_->port());
  idle.Send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head, body;
  ASSERT_TRUE(idle.ReadResponse(&head, &body));
  RawClient stalled(server_->port());
  stalled.Send("GET /never HTTP/1.1\r\nHo");
  EXPECT_TRUE(stalled.WaitEof(2500ms));
  EXPECT_EQ(stalled.buf.rfind("HTTP/1.1 408", 0), 0u) << stalled.buf;
  // The idle connection outlived the header timeout and still works.
  idle.Send("GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(idle.ReadResponse(&head, &body));
  EXPECT_EQ(nlohmann::json::parse(body)["path"], "/second");
}

TEST_F(HttpServerTest, HandlerThrowingGives500WithoutDetails) {
  StartServer();
  auto r = Curl("GET", Url("/throw"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, R"({"error":"internal error"})");
  EXPECT_EQ(r.body.find("secret"), std::string::npos);
  EXPECT_NE(r.headers.find("Content-Type: application/json\r\n"), std::string::npos);
}

TEST_F(HttpServerTest, HandlerNotAnsweringGives500) {
  StartServer();
  auto r = Curl("GET", Url("/silent"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, R"({"error":"internal error"})");
}

// A kept request holds no worker: four times as many requests as workers wait
// at once, each handler returned, and all are answered later from another
// thread (as the committer answers sends).
TEST_F(HttpServerTest, KeptRequestsWaitWithoutHoldingAWorker) {
  ServerOptions options;
  options.worker_threads = 2;
  StartServer(options);
  constexpr std::size_t kRequests = 8;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (std::size_t i = 0; i < kRequests; ++i) {
    clients.push_back(std::make_unique<RawClient>(server_->port()));
    clients.back()->Send("GET /kept HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  ASSERT_TRUE(WaitKept(kRequests, 10s))
      << "fewer requests were kept than sent: kept requests still hold workers";
  // Still answered by the workers meanwhile.
  EXPECT_EQ(Curl("GET", Url("/plain")).status, 200);
  std::vector<std::shared_ptr<Responder>> kept = TakeKept();
  ASSERT_EQ(kept.size(), kRequests);
  std::thread answerer([&] {
    for (auto& responder : kept) {
      responder->Send(Response{202, R"({"later":true})", "application/json", {}, {}});
    }
    kept.clear();
  });
  for (auto& client : clients) {
    std::string head, body;
    ASSERT_TRUE(client->ReadResponse(&head, &body, 10s)) << "a kept request was never answered";
    EXPECT_EQ(head.rfind("HTTP/1.1 202 ", 0), 0u) << head;
    EXPECT_EQ(body, R"({"later":true})");
  }
  answerer.join();
}

TEST_F(HttpServerTest, AKeptRequestDroppedUnansweredGives500) {
  StartServer();
  auto r = Curl("GET", Url("/kept-then-dropped"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, R"({"error":"internal error"})");
}

TEST_F(HttpServerTest, ShutdownWaitsForKeptRequestsToBeAnswered) {
  StartServer();
  RawClient client(server_->port());
  client.Send("GET /kept HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(WaitKept(1, 10s));
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    server_->Shutdown();
    stopped = true;
  });
  // New requests are refused once the shutdown began; the kept one still waits.
  for (auto deadline = Clock::now() + 10s; Clock::now() < deadline;) {
    if (Curl("GET", Url("/plain")).status == 503) break;
  }
  EXPECT_FALSE(stopped.load()) << "Shutdown returned while a kept request was unanswered";
  std::vector<std::shared_ptr<Responder>> kept = TakeKept();
  ASSERT_EQ(kept.size(), 1u);
  kept[0]->Send(Response{202, R"({"late":true})", "application/json", {}, {}});
  kept.clear();
  std::string head, body;
  ASSERT_TRUE(client.ReadResponse(&head, &body, 10s));
  EXPECT_EQ(body, R"({"late":true})");
  stopper.join();
  EXPECT_TRUE(stopped.load());
}

TEST_F(HttpServerTest, ChunkedRequestBodyGets411AndClose) {
  StartServer();
  RawClient c(server_->port());
  // A huge chunk size: Pistache alone would reserve 2 GiB for it.
  c.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "7fffffff\r\nabc");
  std::string head, body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 411 Length Required\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Connection: close\r\n"), std::string::npos) << head;
  EXPECT_TRUE(nlohmann::json::parse(body).contains("error")) << body;
  c.Send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n");  // dropped
  EXPECT_TRUE(c.WaitEof(2000ms));
  EXPECT_TRUE(c.buf.empty()) << c.buf;
}

TEST_F(HttpServerTest, ContentLengthOverHardLimitGets413) {
  ServerOptions o;
  o.hard_body_limit = 1000;
  StartServer(o);
  RawClient c(server_->port());
  c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\nxx");
  std::string head, body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 413 ", 0), 0u) << head;
  EXPECT_NE(head.find("Connection: close\r\n"), std::string::npos) << head;
  EXPECT_EQ(body, R"({"error":"request body too large"})");
  EXPECT_TRUE(c.WaitEof(2000ms));

  // At the limit is fine.
  auto r = Curl("POST", Url("/echo"), {}, std::string(1000, 'a'));
  EXPECT_EQ(r.status, 200);
  auto big = Curl("POST", Url("/echo"), {}, std::string(1001, 'a'));
  EXPECT_EQ(big.status, 413);
}

TEST_F(HttpServerTest, KeepAliveIsAnsweredAndUsed) {
  StartServer();
  CURL* h = curl_easy_init();
  auto first = Curl("GET", Url("/a"), {}, std::nullopt, h);
  auto second = Curl("GET", Url("/b"), {}, std::nullopt, h);
  curl_easy_cleanup(h);
  EXPECT_NE(first.headers.find("Connection: keep-alive\r\n"), std::string::npos) << first.headers;
  EXPECT_EQ(first.new_connections, 1);
  EXPECT_EQ(second.new_connections, 0);  // the connection was reused
  EXPECT_EQ(nlohmann::json::parse(second.body)["path"], "/b");

  // Connection: close is honoured: the server half-closes after answering.
  RawClient c(server_->port());
  c.Send("GET /c HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(c.WaitEof(2000ms));
  EXPECT_NE(c.buf.find("Connection: close\r\n"), std::string::npos) << c.buf;
}

TEST_F(HttpServerTest, StreamFromWorkerInOrderUnderLoadThenConnectionReused) {
  StartServer();
  RawClient c(server_->port());
  c.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = box_.Take();
  ASSERT_TRUE(stream);
  ASSERT_TRUE(c.ReadUntil(
      [](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; }, 2000ms));
  std::string head = c.buf.substr(0, c.buf.find("\r\n\r\n") + 4);
  c.buf.erase(0, head.size());
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Type: text/event-stream\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Cache-Control: no-cache\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << head;

  constexpr int kEvents = 200;
  std::thread writer([&] {
    for (int i = 0; i < kEvents; ++i) {
      EXPECT_TRUE(stream->Write(MakeChunk("data: " + std::to_string(i) + "\n\n")));
      if (i % 20 == 0) std::this_thread::sleep_for(5ms);
    }
  });
  std::vector<std::thread> load;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    load.emplace_back([&] {
      if (Curl("GET", Url("/slow")).status == 200) ++ok;
    });
  }
  writer.join();
  for (auto& t : load) t.join();
  EXPECT_EQ(ok.load(), 20);

  stream->End();
  EXPECT_TRUE(stream->Closed());
  EXPECT_FALSE(stream->Write(MakeChunk("late")));

  std::vector<std::string> got;
  bool final = false;
  ASSERT_TRUE(c.ReadUntil(
      [&](const std::string&) {
        for (auto& s : TakeChunks(&c.buf, &final)) got.push_back(s);
        return final;
      },
      3000ms));
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) EXPECT_EQ(got[i], "data: " + std::to_string(i) + "\n\n");

  // The connection is free for the next request.
  c.Send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(nlohmann::json::parse(body)["path"], "/after");
}

// Chunks written faster than a slow client reads queue up behind each other;
// they must still arrive whole, in order, with the final chunk last, and a
// request pipelined meanwhile must be answered only after it.
TEST_F(HttpServerTest, ChunksQueuedBehindASlowClientArriveInOrderThenTheConnectionIsReused) {
  StartServer();
  RawClient c(server_->port(), /*rcvbuf=*/4096);
  c.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = box_.Take();
  ASSERT_TRUE(stream);
  constexpr int kChunks = 3000;  // ~3 MiB: far beyond what the sockets hold
  const std::string pad(1000, 'p');
  for (int i = 0; i < kChunks; ++i) {
    ASSERT_TRUE(stream->Write(MakeChunk(std::to_string(i) + pad)));
  }
  stream->End();
  // The next request is pipelined behind the stream on the same connection.
  c.Send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");

  ASSERT_TRUE(c.ReadUntil(
      [](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; }, 3000ms));
  std::string head = c.buf.substr(0, c.buf.find("\r\n\r\n") + 4);
  c.buf.erase(0, head.size());
  std::vector<std::string> got;
  bool final = false;
  ASSERT_TRUE(c.ReadUntil(
      [&](const std::string&) {
        if (final) return true;
        for (auto& chunk : TakeChunks(&c.buf, &final)) got.push_back(chunk);
        return final;
      },
      10000ms));
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kChunks));
  for (int i = 0; i < kChunks; ++i) ASSERT_EQ(got[i], std::to_string(i) + pad) << i;
  EXPECT_TRUE(Drained(*stream, 0, 3000ms, 5000ms).value_or(false) || stream->Closed());

  std::string body;
  ASSERT_TRUE(c.ReadResponse(&head, &body));
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_EQ(nlohmann::json::parse(body)["path"], "/after");
}

TEST_F(HttpServerTest, ClientDisconnectClosesStream) {
  StartServer();
  auto c = std::make_unique<RawClient>(server_->port());
  c->Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = box_.Take();
  ASSERT_TRUE(stream);
  std::promise<void> closed;
  std::atomic<int> calls{0};
  stream->OnClose([&] {
    if (++calls == 1) closed.set_value();
  });
  EXPECT_TRUE(stream->Write(MakeChunk("data: 1\n\n")));
  c.reset();  // the client goes
  ASSERT_EQ(closed.get_future().wait_for(2s), std::future_status::ready);
  EXPECT_TRUE(stream->Closed());
  EXPECT_FALSE(stream->Write(MakeChunk("data: 2\n\n")));
  stream->End();  // idempotent, no second callback
  bool late = false;
  stream->OnClose([&] { late = true; });  // runs at once
  EXPECT_TRUE(late);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(HttpServerTest, StreamOutlivesHeaderTimeoutAndEndsAtKeepalive) {
  ServerOptions o;
  o.header_timeout = 2s;
  o.keepalive_timeout = 4s;  // the stream is ended 1 s before: at ~3 s
  StartServer(o);
  RawClient c(server_->port());
  auto start = Clock::now();
  c.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = box_.Take();
  ASSERT_TRUE(stream);
  std::promise<void> closed;
  stream->OnClose([&] { closed.set_value(); });
  std::thread writer([&] {
    for (int i = 0; stream->Write(MakeChunk("data: tick\n\n")); ++i) {
      std::this_thread::sleep_for(250ms);
    }
  });
  // Only lower bounds on time, and a generous deadline: a slow machine makes
  // this slower, never red.
  bool final = false;
  int ticks = 0;
  Clock::duration last_tick{};
  c.ReadUntil(
      [&](const std::string&) {
        if (c.buf.find("\r\n\r\n") != std::string::npos && c.buf.rfind("HTTP/1.1 200", 0) == 0) {
          c.buf.erase(0, c.buf.find("\r\n\r\n") + 4);
        }
        const int got = static_cast<int>(TakeChunks(&c.buf, &final).size());
        if (got > 0) last_tick = Clock::now() - start;
        ticks += got;
        return final;
      },
      30000ms);
  auto elapsed = Clock::now() - start;
  writer.join();
  EXPECT_TRUE(final) << "the stream must end with the final chunk";
  EXPECT_GT(elapsed, 2500ms);  // well past the 2 s header timeout
  EXPECT_GT(last_tick, 2000ms) << "no chunk arrived after the header timeout; " << ticks;
  EXPECT_EQ(c.buf.find("408"), std::string::npos) << c.buf;
  EXPECT_EQ(closed.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(stream->Closed());
}

// A stream with a capped kernel buffer keeps what its client has not read
// where PendingBytes() sees it, and tells a client that stopped reading
// (Stalled) from one that reads.
TEST_F(HttpServerTest, AStreamKnowsWhatItsClientHasNotReadAndWhetherItStopped) {
  StartServer();
  auto c = std::make_unique<RawClient>(server_->port(), /*rcvbuf=*/4096);
  c->Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = box_.Take();
  ASSERT_TRUE(stream);
  stream->LimitSendBuffer(16 << 10);
  auto chunk = MakeChunk(std::string(16 * 1024, 'x'));
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(stream->Write(chunk));  // 1 MiB
  EXPECT_GT(stream->PendingBytes(), (1u << 20) - (200u << 10))
      << "the kernel took more than its capped buffer";
  EXPECT_FALSE(stream->Stalled(2000ms)) << "bytes have only just begun to wait";
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(stream->Stalled(100ms)) << "the client has read nothing for 300 ms";
  c->ReadUntil([](const std::string& b) { return b.size() > (1u << 20); }, 5000ms);
  for (int i = 0; i < 500 && stream->PendingBytes() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(stream->PendingBytes(), 0u);
  EXPECT_FALSE(stream->Stalled(0ms)) << "nothing waits once the client read it all";
  stream->End();
}

// WhenDrained calls back, on a worker and with no thread waiting meanwhile,
// once the client read enough, at once when it already has, with false once
// the client goes, and with false after its timeout, when the stream is
// dropped and the connection closed.
TEST_F(HttpServerTest, WhenDrainedFollowsAClientThatReadsStopsOrGoes) {
  StartServer();
  auto c = std::make_unique<RawClient>(server_->port(), /*rcvbuf=*/4096);
  c->Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = box_.Take();
  ASSERT_TRUE(stream);
  auto chunk = MakeChunk(std::string(64 * 1024, 'x'));
  for (int i = 0; i < 256; ++i) ASSERT_TRUE(stream->Write(chunk));  // 16 MiB
  std::size_t pending = stream->PendingBytes();
  EXPECT_GT(pending, 4u << 20) << "the kernel cannot have taken 12 MiB";
  EXPECT_EQ(Drained(*stream, pending + chunk->bytes().size(), 10s, 1000ms), true)
      << "already below the limit: called back at once";

  // Called back once the client reads, not before.
  auto done = std::make_shared<std::promise<bool>>();
  std::future<bool> drained = done->get_future();
  stream->WhenDrained(0, 10s, [done](bool d) { done->set_value(d); });
  EXPECT_EQ(drained.wait_for(300ms), std::future_status::timeout) << "called back before draining";
  std::thread reader(
      [&] { c->ReadUntil([](const std::string& b) { return b.size() > (16u << 20); }, 5000ms); });
  ASSERT_EQ(drained.wait_for(5000ms), std::future_status::ready);
  EXPECT_TRUE(drained.get());
  EXPECT_EQ(stream->PendingBytes(), 0u);
  reader.join();

  // A client that goes: false at once.
  for (int i = 0; i < 256; ++i) stream->Write(chunk);
  std::thread closer([&] {
    std::this_thread::sleep_for(100ms);
    c.reset();
  });
  EXPECT_EQ(Drained(*stream, 0, 30s, 3000ms), false);
  closer.join();
  EXPECT_TRUE(stream->Closed());

  // A client that stops reading: false after the timeout, and disconnected.
  RawClient stalled(server_->port(), /*rcvbuf=*/4096);
  stalled.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  auto second = box_.Take();
  ASSERT_TRUE(second);
  for (int i = 0; i < 256; ++i) second->Write(chunk);
  EXPECT_EQ(Drained(*second, 0, 300ms, 5000ms), false);
  EXPECT_TRUE(second->Closed());
  EXPECT_TRUE(stalled.WaitEof(10s)) << "the connection of a stalled client stayed open";
}

TEST_F(HttpServerTest, ShutdownWithOpenStreamsIsQuickAndEndsThem) {
  StartServer();
  std::vector<std::unique_ptr<RawClient>> clients;
  std::vector<std::shared_ptr<ResponseStream>> streams;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<RawClient>(server_->port()));
    clients.back()->Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    streams.push_back(box_.Take());
    ASSERT_TRUE(streams.back());
    EXPECT_TRUE(streams.back()->Write(MakeChunk("data: hi\n\n")));
  }
  auto start = Clock::now();
  server_->Shutdown();
  EXPECT_LT(Clock::now() - start, 1s);
  server_->Shutdown();  // idempotent
  for (auto& s : streams) {
    EXPECT_TRUE(s->Closed());
    EXPECT_FALSE(s->Write(MakeChunk("data: late\n\n")));
  }
  for (auto& c : clients) {
    EXPECT_TRUE(c->WaitEof(2000ms));
    std::size_t head = c->buf.find("\r\n\r\n");
    ASSERT_NE(head, std::string::npos);
    std::string rest = c->buf.substr(head + 4);
    bool final = false;
    auto chunks = TakeChunks(&rest, &final);
    EXPECT_EQ(chunks, std::vector<std::string>{"data: hi\n\n"});
    EXPECT_TRUE(final) << "the client sees the end of the stream";
  }
}

// No sleeps: the handler in flight runs until the test releases it, and the
// connection that was open before the shutdown is asked until it is refused.
TEST_F(HttpServerTest, ShutdownFinishesHandlersInFlightAndRefusesNewRequests) {
  StartServer();
  RawClient waiting(server_->port());  // connected before the shutdown
  waiting.Send("GET /warmup HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string head, body;
  ASSERT_TRUE(waiting.ReadResponse(&head, &body));

  RawClient busy(server_->port());
  busy.Send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(WaitHeldStarted(10s)) << "the handler did not start";
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    server_->Shutdown();
    stopped = true;
  });
  // Served until the shutdown has begun, then refused with 503.
  bool refused = false;
  for (auto deadline = Clock::now() + 10s; !refused && Clock::now() < deadline;) {
    waiting.Send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(waiting.ReadResponse(&head, &body, 10s)) << "no answer during the shutdown";
    refused = head.rfind("HTTP/1.1 503 ", 0) == 0;
    if (!refused) {
      ASSERT_EQ(head.rfind("HTTP/1.1 200 ", 0), 0u) << head;
    }
  }
  ASSERT_TRUE(refused) << "requests were still served 10 s after the shutdown began";
  EXPECT_EQ(body, R"({"error":"server is shutting down"})");
  EXPECT_FALSE(stopped.load()) << "Shutdown returned while a handler was still running";

  ReleaseHeld();
  const auto released = Clock::now();
  ASSERT_TRUE(busy.ReadResponse(&head, &body, 10s));
  EXPECT_EQ(body, R"({"held":true})") << "the handler in flight was not let finish";
  stopper.join();
  EXPECT_LT(Clock::now() - released, 5s) << "Shutdown lingered after the last handler";
}

TEST_F(HttpServerTest, PortInUseFailsWithOneLine) {
  StartServer();
  ServerOptions o;
  o.port = server_->port();
  HttpServer second(o, [](const Request&, Responder&) {});
  std::string error;
  EXPECT_FALSE(second.Start(&error));
  EXPECT_NE(error.find("in use"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
  // The first server still answers.
  EXPECT_EQ(Curl("GET", Url("/x")).status, 200);
}

}  // namespace
}  // namespace quire::http
