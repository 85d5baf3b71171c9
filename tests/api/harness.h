// End-to-end API test harness: runs the real `quire` binary and talks to it
// over HTTP the way a client would.
//
// Environment:
//   QUIRE_BIN           the quire binary (default: `quire` beside this test binary)
//   QUIRE_TEST_BACKEND  sqlite, lmdb or postgres; required (ctest sets it from the
//                       test name api/<backend>/...): without it every test
//                       fails, and a server that reports another backend fails
//                       its test (QuireProcess::Start)
//   QUIRE_TEST_POSTGRES_URL  for postgres: a server the tests may create databases on
//
// Tests include this header only. Its sections are implemented one file
// each: test_database.cc, quire_process.cc, http_client.cc, raw_http.cc,
// event_stream.cc, checks.cc and harness.cc (the fixture); harness_helpers.h
// is what those share.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace quire::apitest {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Environment and temporary storage

std::string QuireBin();
// QUIRE_TEST_BACKEND ("" when unset).
std::string Backend();
// The backend a server names in its stderr line "quire: storage SCHEME (URL)",
// with "postgresql" given as "postgres"; "" when there is no such line.
std::string StorageBackend(const std::string& stderr_text);

// A fresh folder under $TMPDIR (or /tmp), deleted with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A fresh, empty database for one test on the backend under test.
class TestDatabase {
 public:
  // Returns nullptr and sets *why when the backend cannot give one.
  static std::unique_ptr<TestDatabase> Create(std::string* why);
  ~TestDatabase();  // drops a scratch PostgreSQL database
  const std::string& url() const { return url_; }
  // A scratch folder of the test (exists for every backend).
  const std::string& dir() const { return dir_.path(); }

 private:
  TestDatabase() = default;
  TempDir dir_;
  std::string url_;
};

// For postgres: creates a fresh database on QUIRE_TEST_POSTGRES_URL and returns
// its URL, or nullopt with the reason.
std::optional<std::string> FreshPostgresDatabaseUrl(std::string* why);

// ---------------------------------------------------------------------------
// The server process

struct ExitStatus {
  bool exited = false;  // false: still running or timed out
  int code = -1;        // exit code when it exited normally
  int signal = 0;       // the signal that ended it, if any
  std::string Describe() const;
};

class QuireProcess {
 public:
  // `args` follow `serve --database-url URL --port 0` (no --database-url when
  // `database_url` is empty). `env` is added to the test's own environment
  // ("NAME=value").
  QuireProcess(std::string database_url, std::vector<std::string> args = {},
               std::vector<std::string> env = {});
  ~QuireProcess();  // kills the server if it is still running
  QuireProcess(const QuireProcess&) = delete;
  QuireProcess& operator=(const QuireProcess&) = delete;

  // Starts the server and waits (20 s at most) for "quire listening on http://ADDR:PORT";
  // fails (and kills it) unless its stderr names the storage of Backend().
  // Whenever a server is reaped (Stop, Kill, the destructor, or a Start whose
  // server exited), a ThreadSanitizer report on its stderr fails the current
  // test with that report (SanitizerReport), even when the test killed the
  // server on purpose or expected it to fail.
  ::testing::AssertionResult Start();
  // SIGTERM, then waits up to `timeout` for exit code 0.
  ::testing::AssertionResult Stop(std::chrono::milliseconds timeout = 5s);
  // SIGKILL and reap.
  void Kill();
  // Starts again on the same database (after Stop or Kill); the port changes.
  ::testing::AssertionResult Restart();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& base_url() const { return base_url_; }  // "http://127.0.0.1:PORT"
  const std::string& host() const { return host_; }          // "127.0.0.1" or "::1"
  int port() const { return port_; }
  const std::string& database_url() const { return database_url_; }
  std::string stdout_text() const;
  std::string stderr_text() const;

 private:
  // Fails the current test if this generation's server printed a sanitizer
  // report; once per generation.
  void CheckSanitizerReport();

  std::string database_url_;
  std::vector<std::string> args_;
  std::vector<std::string> env_;
  TempDir logs_;
  int generation_ = 0;
  int checked_generation_ = 0;  // the last generation CheckSanitizerReport looked at
  pid_t pid_ = -1;
  std::string base_url_;
  std::string host_;
  int port_ = 0;
};

// The ThreadSanitizer report(s) in a process's stderr, from the first
// "WARNING: ThreadSanitizer" on; "" when there is none. (A build with
// -DQUIRE_TSAN=ON prints one for each data race or lock-order inversion it
// sees; with TSAN_OPTIONS=halt_on_error=1 the process then exits with 66.)
std::string SanitizerReport(const std::string& stderr_text);

// Runs `$QUIRE_BIN args...` to completion (killing it after `timeout`), for
// command-line tests. A sanitizer report on its stderr fails the current test.
struct RunResult {
  ExitStatus status;
  std::string out;
  std::string err;
};
RunResult RunQuire(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                   const std::vector<std::string>& env = {});
// As RunQuire, with `stdin_text` as its standard input (else /dev/null).
RunResult RunQuireWithInput(const std::vector<std::string>& args, const std::string& stdin_text,
                            std::chrono::milliseconds timeout,
                            const std::vector<std::string>& env = {});
// As RunQuire, but kills it (SIGKILL) as soon as `kill_when` holds (polled
// every millisecond): to interrupt a command at a point the test watches for.
RunResult RunQuireUntil(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                        const std::function<bool()>& kill_when);

// ---------------------------------------------------------------------------
// HTTP

struct Response {
  long status = 0;                                  // 0: no response (the error says why)
  std::multimap<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;  // transport error, if any

  // The first value of a header ("" when absent); `name` in lower case.
  std::string header(const std::string& name) const;
  std::vector<std::string> header_values(const std::string& name) const;
  // The body as JSON; a discarded value when it is not JSON.
  Json json() const;
  // One line for failure messages.
  std::string Describe() const;
};

// A parsed Set-Cookie header.
struct SetCookie {
  std::string name;
  std::string value;
  std::map<std::string, std::string> attributes;  // lower-case names; flags map to ""
  bool Has(const std::string& attribute) const { return attributes.count(attribute) > 0; }
  std::string Get(const std::string& attribute) const;
  // True when the cookie deletes itself (empty value, Max-Age<=0 or Expires in the past).
  bool Clears() const;
};
std::optional<SetCookie> ParseSetCookie(const std::string& header);
// The `identity` Set-Cookie of a response, if any.
std::optional<SetCookie> IdentityCookie(const Response& r);

using Headers = std::vector<std::pair<std::string, std::string>>;

// One user agent: keeps its connection alive and its identity cookie, which it
// takes from Set-Cookie and sends back as `Cookie: identity=...`.
// Not thread-safe: one Client per thread.
class Client {
 public:
  explicit Client(std::string base_url);
  ~Client();
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Response get(const std::string& path, const Headers& headers = {});
  Response post(const std::string& path, const Json& body, const Headers& headers = {});
  // Sends `body` as is (Content-Type: application/json).
  Response post_raw(const std::string& path, const std::string& body, const Headers& headers = {});
  Response del(const std::string& path, const Headers& headers = {});
  // Any method; a body is sent when `body` is set.
  Response request(const std::string& method, const std::string& path,
                   const std::optional<std::string>& body, const Headers& headers = {});

  const std::optional<std::string>& token() const { return token_; }
  void set_token(std::optional<std::string> token) { token_ = std::move(token); }
  const std::string& base_url() const { return base_url_; }
  void set_base_url(std::string base_url) { base_url_ = std::move(base_url); }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  std::string base_url_;
  std::optional<std::string> token_;
  std::chrono::milliseconds timeout_ = 15s;
  void* curl_ = nullptr;  // CURL*
};

// A response read over a raw socket (for requests libcurl will not send).
struct RawResponse {
  int status = 0;          // 0: the server closed or timed out without a status line
  bool closed = false;     // the server closed the connection
  bool timed_out = false;  // nothing complete within the timeout
  std::multimap<std::string, std::string> headers;
  std::string body;  // de-chunked
  std::string raw;   // every byte received
  Json json() const;
  std::string Describe() const;
};

// Largest send buffer the kernel grants a socket, in bytes (for tests that
// must queue more than the kernel can hold for a client that does not read).
std::size_t MaxSendBuffer();

// Connects to host:port, sends `bytes` (in `pieces` parts, if given, with a
// short pause between them), then reads one HTTP response framed by
// Content-Length or chunked encoding, or until the server closes.
RawResponse SendRaw(const std::string& host, int port, const std::string& bytes,
                    std::chrono::milliseconds timeout = 10s,
                    const std::vector<std::size_t>& split_at = {});

// ---------------------------------------------------------------------------
// Server-sent events

struct SseEvent {
  std::optional<std::int64_t> id;  // the `id:` line, if any
  std::string data_text;           // the `data:` lines, joined with '\n'
  Json data;                       // data_text parsed (discarded if not JSON)
  bool had_event_field = false;    // an `event:` line was present
  bool IsHeartbeat() const;
};

struct StreamOptions {
  std::optional<std::string> token;          // identity cookie
  std::string query;                         // e.g. "resume_point=5" (without '?')
  std::optional<std::string> last_event_id;  // sent as Last-Event-ID when set (may be "")
  bool start_paused = false;                 // do not read from the socket until Resume()
};

// GET /api/events on a background thread.
class EventStream {
 public:
  EventStream(const std::string& base_url, StreamOptions options);
  ~EventStream();  // closes
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  // Waits until the response headers (status line included) have arrived.
  bool WaitForHeaders(std::chrono::milliseconds timeout = 10s);
  // Waits until at least `n` events that are not heartbeats have arrived.
  bool WaitForEvents(std::size_t n, std::chrono::milliseconds timeout = 10s);
  // Waits until at least `n` heartbeats have arrived.
  bool WaitForHeartbeats(std::size_t n, std::chrono::milliseconds timeout = 10s);
  // Waits until the response has ended (server closed it or it failed).
  bool WaitForEnd(std::chrono::milliseconds timeout = 10s);

  long status() const;
  std::string header(const std::string& name) const;  // lower-case name
  bool headers_received() const;
  bool ended() const;
  std::string body() const;                  // every byte of the body so far
  std::string error() const;                 // transport error at the end, if any
  std::vector<SseEvent> all_events() const;  // heartbeats included
  std::vector<SseEvent> events() const;      // heartbeats left out
  std::size_t heartbeat_count() const;
  std::size_t event_count() const;  // heartbeats left out

  void Pause();
  void Resume();
  void Close();

 public:
  struct State;  // shared with the transfer thread (defined in event_stream.cc)

 private:
  void Run(std::string url, std::vector<std::string> headers);
  std::shared_ptr<State> state_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------
// Checks. Each returns an AssertionResult that names the response on failure.

::testing::AssertionResult HasStatus(const Response& r, long status);
// `status`, a JSON body {"error": "<non-empty string>"} and a JSON content type.
::testing::AssertionResult IsJsonError(const Response& r, long status);
::testing::AssertionResult IsJsonError(const RawResponse& r, int status);
// Matches ^X[0-9a-z]{15}$ for the type letter X.
::testing::AssertionResult IsId(const Json& value, char type);
// Matches ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$ and is within a day of now.
::testing::AssertionResult IsTimestamp(const Json& value);
// The identity cookie is set, non-empty, HttpOnly, SameSite=Strict and Path=/.
::testing::AssertionResult SetsIdentityCookie(const Response& r);

// A key that names an event within history: "type event id", e.g. "message sent M...".
std::string EventKey(const Json& event);
std::vector<std::string> EventKeys(const Json& events);
std::vector<std::string> EventKeys(const std::vector<SseEvent>& events);

// j[key] when j is an object holding a string there, else "".
std::string Str(const Json& j, const std::string& key);
// The key names of an object.
std::set<std::string> Keys(const Json& j);
// Microseconds since the epoch of a timestamp in the API's format (0 when malformed).
std::int64_t TimestampMicros(const Json& value);
// The events of `events` (an array) with this type, event and, if given, id.
std::vector<Json> FindEvents(const Json& events, const std::string& type, const std::string& event,
                             const std::string& id = "");
// The position in `events` of the event with this key (-1 when absent).
int IndexOf(const std::vector<std::string>& keys, const std::string& key);

// Polls `condition` every 20 ms until it holds or `timeout` passes.
template <typename F>
bool WaitUntil(F condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

// ---------------------------------------------------------------------------
// The fixture: a fresh database and a running server for every test.

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Options after `serve --database-url URL --port 0`; override for other flags.
  virtual std::vector<std::string> ServerArgs() const { return {}; }

  QuireProcess& server() { return *server_; }
  TestDatabase& database() { return *database_; }
  Client NewClient() const { return Client(server_->base_url()); }

  // POST /api/setup; returns a client holding the owner's cookie.
  Client Setup(const std::string& name = "alice", const std::string& password = "owner pass");
  // An invitation from `inviter`, accepted as name/password; returns the new user's client.
  Client Invite(Client& inviter, const std::string& name, const std::string& password = "pass");
  // POST /api/conversations (expects 202); returns the id.
  std::string CreateConversation(Client& client, const std::string& name);
  // POST /api/conversations/:id (expects 202); returns the reply.
  Json SendMessage(Client& client, const std::string& conversation, const std::string& body,
                   const Headers& headers = {});
  // GET /api/boot (expects 200).
  Json Boot(Client& client);
  // Opens a stream for `client` from `resume_point`.
  std::unique_ptr<EventStream> OpenStream(const Client& client, std::int64_t resume_point);

  std::unique_ptr<TestDatabase> database_;
  std::unique_ptr<QuireProcess> server_;
};

// A string of `n` copies of `unit`.
std::string Repeat(const std::string& unit, std::size_t n);

}  // namespace quire::apitest
