// crash_loop: Quire's crash test, after RocksDB's db_crashtest.py.
//
// Under write load and with open streams, the server is killed with SIGKILL at
// random moments and started again on the same database, over and over. After
// every restart (and thoroughly at the end) the client checks what Quire
// promises (README.md, docs/api/README.md, docs/reliability.md):
//
//   - every message acknowledged with 202 is in a fresh boot exactly once,
//     with the id and body of its acknowledgement; a message whose send got
//     no answer (killed mid-request) is there at most once; a retry with the
//     same Idempotency-Key never makes a second message;
//   - sequence numbers are never reused: an event a stream was given as N
//     before a kill is still N, with the same content, after every restart;
//     no event is given two numbers; the boot's events have strictly
//     increasing numbers and the resume point is at least the highest number
//     any stream has seen;
//   - a stream that resumes with Last-Event-ID gets exactly what it missed:
//     the concatenation of everything each stream received, across every
//     reconnect and kill, is the boot's history after its start point, in
//     order, with no gap and no duplicate.
//
// Usage:
//   crash_loop --quire PATH --database-url URL [--kills N] [--seed S]
//              [--senders C] [--streams K] [--max-run-ms MS] [--server-log PATH] [--quiet]
//
// Prints one line per kill (unless --quiet), then
//   crash_loop: KILLS kills, MESSAGES acknowledged, EVENTS streamed, 0 failures
// and exits 0; on any failure (a server that does not start included) it
// says what broke, with the seed to run it again, and exits 1; 2 for a bad
// command line. docs/reliability.md has the figures of 100 kills per backend.
//
// Only libc, pthreads and nlohmann/json, like the benchmark clients whose
// socket helpers it shares (bench/bench_common.h).
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "bench/bench_common.h"

namespace crash {
namespace {

using Json = nlohmann::json;
using bench::IdentityCookie;
using bench::NowNs;

constexpr const char* kUser = "crash loop";
constexpr const char* kPassword = "crash loop password 0123";
constexpr int kAnswerTimeoutMs = 30000;  // a request unanswered this long on a live server fails
constexpr int kStartTimeoutMs = 30000;   // from exec to "quire listening on …"

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr,
               "crash_loop: %s\n"
               "usage: crash_loop --quire PATH --database-url URL [--kills N] [--seed S]\n"
               "                  [--senders C] [--streams K] [--max-run-ms MS]\n"
               "                  [--server-log PATH] [--quiet]\n",
               why.c_str());
  std::exit(2);
}

struct Options {
  std::string quire;
  std::string database_url;
  int kills = 10;
  std::uint64_t seed = 0;
  int senders = 8;
  int streams = 4;
  int max_run_ms = 1500;
  std::string server_log;  // "" = a temporary file, deleted after a clean run
  bool quiet = false;
};

long long ParseInt(const std::string& name, const std::string& value, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
    Usage("--" + name + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
          "], not '" + value + "'");
  }
  return v;
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  bool seeded = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") Usage("the crash test of a quire server");
    if (a.rfind("--", 0) != 0) Usage("unexpected argument '" + a + "'");
    a = a.substr(2);
    if (a == "quiet") {
      o.quiet = true;
      continue;
    }
    std::string value;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      Usage("--" + a + " wants a value");
    }
    if (a == "quire") {
      o.quire = value;
    } else if (a == "database-url") {
      o.database_url = value;
    } else if (a == "kills") {
      o.kills = static_cast<int>(ParseInt(a, value, 0, 1000000));
    } else if (a == "seed") {
      o.seed = static_cast<std::uint64_t>(ParseInt(a, value, 0, INT64_MAX));
      seeded = true;
    } else if (a == "senders") {
      o.senders = static_cast<int>(ParseInt(a, value, 0, 256));
    } else if (a == "streams") {
      o.streams = static_cast<int>(ParseInt(a, value, 0, 256));
    } else if (a == "max-run-ms") {
      o.max_run_ms = static_cast<int>(ParseInt(a, value, 1, 3600000));
    } else if (a == "server-log") {
      o.server_log = value;
    } else {
      Usage("unknown option --" + a);
    }
  }
  if (o.quire.empty()) Usage("--quire PATH is required");
  if (o.database_url.empty()) Usage("--database-url URL is required");
  if (access(o.quire.c_str(), X_OK) != 0) Usage("--quire " + o.quire + " is not executable");
  if (!seeded) {
    o.seed = static_cast<std::uint64_t>(NowNs() ^ (static_cast<std::int64_t>(getpid()) << 32)) %
             1000000000ULL;
  }
  return o;
}

std::string Clip(const std::string& s, std::size_t n = 160) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // whole characters
  return s.substr(0, n) + "…";
}

// ---------------------------------------------------------------------------
// Failures: collected from every thread; any one makes the run fail.

class Failures {
 public:
  void Add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (list_.size() < 200) list_.push_back(what);
    ++count_;
  }
  std::size_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::vector<std::string> list() const {
    std::lock_guard<std::mutex> lock(mu_);
    return list_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;
  std::size_t count_ = 0;
};

Failures g_failures;

void Fail(const std::string& what) {
  g_failures.Add(what);
}

// ---------------------------------------------------------------------------
// HTTP on plain sockets.

struct Endpoint {
  std::string host;
  int port = 0;
};

void SetTimeouts(int fd, int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string Request(const Endpoint& ep, const std::string& method, const std::string& path,
                    const std::string& body, const std::string& headers, bool keep_alive) {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + ep.host + ":" +
                    std::to_string(ep.port) + "\r\n" + headers;
  if (!keep_alive) req += "Connection: close\r\n";
  if (!body.empty() || method == "POST") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  return req;
}

// One request on a new connection (Connection: close). nullopt with *error
// when there was no complete answer (refused, cut off, or none in time).
std::optional<bench::Response> Call(const Endpoint& ep, const std::string& method,
                                    const std::string& path, const std::string& body,
                                    const std::string& headers, std::string* error,
                                    int timeout_ms = kAnswerTimeoutMs) {
  error->clear();
  int fd = bench::ConnectTcp(ep.host, ep.port);
  if (fd < 0) {
    *error = "cannot connect: " + std::string(std::strerror(errno));
    return std::nullopt;
  }
  SetTimeouts(fd, timeout_ms);
  if (!bench::WriteAll(fd, Request(ep, method, path, body, headers, false))) {
    *error = "cannot send: " + std::string(std::strerror(errno));
    close(fd);
    return std::nullopt;
  }
  // Everything up to the end of the response, parsed once: a boot can be
  // tens of megabytes, and re-parsing it after every read would be quadratic.
  std::string all;
  char buf[1 << 16];
  std::optional<bench::Response> out;
  auto try_parse = [&]() -> bool {
    bench::ResponseParser parser;
    parser.Feed(all.data(), all.size());
    bench::Response r;
    try {
      if (!parser.Next(&r)) return false;
    } catch (const std::exception& e) {
      *error = e.what();
      return true;  // malformed: stop reading, out stays empty
    }
    out = std::move(r);
    return true;
  };
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *error = "no answer within " + std::to_string(timeout_ms) + " ms";
      break;
    }
    if (n <= 0) {
      if (!try_parse() && error->empty()) {
        *error = n == 0 ? "connection closed before a complete answer"
                        : "connection broken: " + std::string(std::strerror(errno));
      }
      break;
    }
    all.append(buf, static_cast<std::size_t>(n));
    const std::size_t head_end = all.find("\r\n\r\n");
    if (head_end == std::string::npos) continue;
    const std::string head = all.substr(0, head_end);
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool complete = false;
    if (lower.find("transfer-encoding: chunked") != std::string::npos) {
      complete = all.size() >= head_end + 9 && all.ends_with("0\r\n\r\n");
    } else if (auto cl = lower.find("content-length:"); cl != std::string::npos) {
      complete = all.size() >= head_end + 4 + std::strtoul(lower.c_str() + cl + 15, nullptr, 10);
    }
    if (complete && try_parse()) break;
  }
  close(fd);
  return out;
}

// ---------------------------------------------------------------------------
// The server process.

class Server {
 public:
  Server(std::string quire, std::string url, std::string log)
      : quire_(std::move(quire)), url_(std::move(url)), log_(std::move(log)) {}
  ~Server() { Kill(); }

  // Starts `quire serve` and waits for its listening line.
  bool Start(int generation, std::string* error) {
    {
      std::ofstream log(log_, std::ios::app);
      log << "---- crash_loop: start " << generation << " ----\n";
    }
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
      *error = "pipe failed";
      return false;
    }
    const int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      *error = "cannot open the server log " + log_;
      close(out[0]);
      close(out[1]);
      return false;
    }
    const pid_t pid = fork();
    if (pid < 0) {
      *error = "fork failed";
      close(out[0]);
      close(out[1]);
      close(log_fd);
      return false;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the crash loop
      dup2(out[1], STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      const char* args[] = {quire_.c_str(), "serve", "--database-url", url_.c_str(),
                            "--port",       "0",     nullptr};
      execv(quire_.c_str(), const_cast<char* const*>(args));
      std::fprintf(stderr, "crash_loop: cannot run %s: %s\n", quire_.c_str(), std::strerror(errno));
      _exit(127);
    }
    close(out[1]);
    close(log_fd);
    pid_ = pid;
    stdout_fd_ = out[0];
    // Read stdout until the listening line.
    std::string text;
    const std::int64_t deadline = NowNs() + kStartTimeoutMs * 1000000LL;
    for (;;) {
      const std::size_t at = text.find("quire listening on http://");
      if (at != std::string::npos) {
        const std::size_t eol = text.find('\n', at);
        if (eol != std::string::npos) {
          const std::string addr = text.substr(at + 26, eol - at - 26);
          const std::size_t colon = addr.rfind(':');
          if (colon == std::string::npos) {
            *error = "cannot read the listening line: " + text;
            return false;
          }
          endpoint_.host = addr.substr(0, colon);
          if (endpoint_.host == "0.0.0.0") endpoint_.host = "127.0.0.1";
          endpoint_.port = std::atoi(addr.c_str() + colon + 1);
          return true;
        }
      }
      const std::int64_t left_ms = (deadline - NowNs()) / 1000000;
      if (left_ms <= 0) {
        *error = "no listening line within " + std::to_string(kStartTimeoutMs) + " ms";
        return false;
      }
      pollfd p{stdout_fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left_ms, 1000))) < 0 &&
          errno != EINTR) {
        *error = "poll failed";
        return false;
      }
      if (p.revents) {
        char buf[4096];
        const ssize_t n = ::read(stdout_fd_, buf, sizeof buf);
        if (n > 0) {
          text.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0) {
          int status = 0;
          waitpid(pid_, &status, 0);
          pid_ = -1;
          *error = "the server exited before listening (" + Describe(status) + ")";
          return false;
        }
      }
    }
  }

  // SIGKILL, and reap.
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    CloseStdout();
  }

  // SIGTERM; true when it exits with 0 within `timeout_ms`.
  bool Stop(int timeout_ms, std::string* error) {
    if (pid_ <= 0) return true;
    ::kill(pid_, SIGTERM);
    const std::int64_t deadline = NowNs() + timeout_ms * 1000000LL;
    for (;;) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        CloseStdout();
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
        *error = "SIGTERM ended it with " + Describe(status);
        return false;
      }
      if (NowNs() > deadline) {
        *error = "still running " + std::to_string(timeout_ms) + " ms after SIGTERM";
        Kill();
        return false;
      }
      usleep(10000);
    }
  }

  // When the server has died on its own: how (else nullopt).
  std::optional<std::string> DiedByItself() {
    if (pid_ <= 0) return std::nullopt;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
    pid_ = -1;
    CloseStdout();
    return Describe(status);
  }

  const Endpoint& endpoint() const { return endpoint_; }

  static std::string Describe(int status) {
    if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
      return "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) +
             ")";
    }
    return "status " + std::to_string(status);
  }

 private:
  void CloseStdout() {
    if (stdout_fd_ >= 0) close(stdout_fd_);
    stdout_fd_ = -1;
  }

  std::string quire_, url_, log_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  Endpoint endpoint_;
};

// ---------------------------------------------------------------------------
// One run of the server between two kills, as the client threads see it.

struct Phase {
  int number = 0;
  Endpoint endpoint;
  std::string cookie;        // of the latest login
  std::string setup_cookie;  // of the setup (sessions are durable: it must still work)
  std::vector<std::string> conversations;
  std::int64_t catch_up_to = -1;  // final round: streams stop once they have this id
  std::atomic<bool> over{false};
  std::atomic<int> finished{0};  // client threads that have returned
};

// A message as sent.
struct Message {
  std::string conversation;
  std::string body;
  std::string key;  // Idempotency-Key, or ""
};

struct Ack {
  std::string id;
  Message message;
  int phase = 0;
};

// A sender: posts messages on one keep-alive connection, one at a time.
// Senders with odd index send an Idempotency-Key and retry a send that got no
// answer, with the same key and body, until it is acknowledged; the others
// give up on it (it may or may not have been committed) and send a new one.
struct Sender {
  int index = 0;
  bool idempotent = false;
  std::uint64_t next = 0;          // messages made so far
  std::optional<Message> pending;  // idempotent: sent, not yet acknowledged
  // Results of the current phase, taken by the main thread after it.
  std::vector<Ack> acks;
  std::vector<Message> unanswered;  // non-idempotent sends that got no answer
  std::uint64_t retries = 0;        // idempotent resends
  std::mt19937_64 rng;

  Message Make(std::uint64_t seed, const Phase& phase) {
    Message m;
    m.conversation = phase.conversations[rng() % phase.conversations.size()];
    m.body = "crash loop " + std::to_string(seed) + " sender " + std::to_string(index) + " #" +
             std::to_string(next);
    // A little variety: length, and characters that are already NFC.
    static const char* const kTails[] = {"", " é", " 中文", " — ok", " \\\"quoted\\\""};
    m.body += kTails[rng() % 5];
    const std::size_t filler = rng() % 4 == 0 ? rng() % 600 : rng() % 40;
    for (std::size_t i = 0; i < filler; ++i) m.body += static_cast<char>('a' + (i * 7 + next) % 26);
    if (idempotent) {
      m.key = "crash-" + std::to_string(seed) + "-" + std::to_string(index) + "-" +
              std::to_string(next);
    }
    ++next;
    return m;
  }

  void Run(const Phase& phase, std::uint64_t seed) {
    // Senders 0, 1, 4, 5, … use the latest login, 2, 3, 6, 7, … the session
    // made by setup on the first start (sessions are durable too).
    const std::string& cookie = index % 4 < 2 ? phase.cookie : phase.setup_cookie;
    int fd = -1;
    bench::ResponseParser parser;
    while (!phase.over.load()) {
      if (fd < 0) {
        fd = bench::ConnectTcp(phase.endpoint.host, phase.endpoint.port);
        if (fd < 0) {
          usleep(5000);
          continue;
        }
        SetTimeouts(fd, kAnswerTimeoutMs);
        parser = bench::ResponseParser();
      }
      if (idempotent && pending) ++retries;
      Message m = pending ? *pending : Make(seed, phase);
      if (idempotent) pending = m;
      std::string headers = "Cookie: " + cookie + "\r\n";
      if (!m.key.empty()) headers += "Idempotency-Key: " + m.key + "\r\n";
      const std::string body = Json{{"body", m.body}}.dump();
      bool answered = false;
      bench::Response r;
      if (bench::WriteAll(
              fd, Request(phase.endpoint, "POST", "/api/conversations/" + m.conversation, body,
                          headers, true))) {
        char buf[8192];
        for (;;) {
          try {
            if (parser.Next(&r)) {
              answered = true;
              break;
            }
          } catch (const std::exception& e) {
            Fail("sender " + std::to_string(index) + ": malformed answer: " + e.what());
            break;
          }
          const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !phase.over.load()) {
            Fail("sender " + std::to_string(index) + ": no answer to a send within " +
                 std::to_string(kAnswerTimeoutMs) + " ms (server hung?)");
            break;
          }
          if (n <= 0) break;
          parser.Feed(buf, static_cast<std::size_t>(n));
        }
      }
      if (!answered) {
        // Killed mid-request (or the connection was closed under it).
        if (!idempotent) unanswered.push_back(m);
        close(fd);
        fd = -1;
        continue;
      }
      if (r.status != 202) {
        Fail("sender " + std::to_string(index) + ": send answered " + std::to_string(r.status) +
             ": " + Clip(r.body));
        break;
      }
      Json j = Json::parse(r.body, nullptr, false);
      if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("body") ||
          j["body"] != m.body || j.value("conversation", "") != m.conversation) {
        Fail("sender " + std::to_string(index) + ": 202 for body '" + Clip(m.body, 60) +
             "' does not describe it: " + Clip(r.body));
        break;
      }
      acks.push_back(Ack{j["id"].get<std::string>(), m, phase.number});
      pending.reset();
      auto conn = r.headers.find("connection");
      if (conn != r.headers.end() && bench::IEquals(conn->second, "close")) {
        close(fd);
        fd = -1;
      }
    }
    if (fd >= 0) close(fd);
  }
};

// A stream: GET /api/events, reconnecting with Last-Event-ID whenever its
// connection ends (a kill, the server ending it, or now and then on purpose).
struct Stream {
  int index = 0;
  std::int64_t start = 0;             // resume_point of its first request
  std::size_t start_index = 0;        // how many boot events are at or below `start`
  std::int64_t last = -1;             // id of the last event it got (-1: none yet)
  std::vector<std::int64_t> history;  // every id it got, in order
  std::vector<std::size_t> hashes;    // and the hash of each event's data
  std::vector<std::pair<std::int64_t, std::string>> fresh;  // this phase: id, canonical data
  std::uint64_t connects = 0;  // connections made (every one after the first is a resume)
  std::mt19937_64 rng;

  std::int64_t Cursor() const { return last >= 0 ? last : start; }

  void Run(const Phase& phase, int max_run_ms) {
    while (!phase.over.load()) {
      if (phase.catch_up_to >= 0 && Cursor() >= phase.catch_up_to) return;
      int fd = bench::ConnectTcp(phase.endpoint.host, phase.endpoint.port);
      if (fd < 0) {
        usleep(5000);
        continue;
      }
      ++connects;
      std::string headers = "Cookie: " + phase.cookie + "\r\n";
      if (last >= 0) headers += "Last-Event-ID: " + std::to_string(last) + "\r\n";
      const std::string req =
          Request(phase.endpoint, "GET", "/api/events?resume_point=" + std::to_string(start), "",
                  headers, true);
      // Now and then drop the connection on purpose and resume.
      std::int64_t drop_at = -1;
      if (phase.catch_up_to < 0 && rng() % 3 == 0) {
        drop_at = NowNs() + static_cast<std::int64_t>(rng() % max_run_ms) * 1000000LL;
      }
      if (bench::WriteAll(fd, req)) Read(fd, phase, drop_at);
      close(fd);
    }
  }

  // Reads one response; returns when it ends, the phase is over, or drop_at.
  void Read(int fd, const Phase& phase, std::int64_t drop_at) {
    std::string raw;  // bytes not yet taken apart
    std::string sse;  // de-chunked body not yet split into events
    bool head_done = false;
    int status = 0;
    char buf[1 << 16];
    for (;;) {
      if (phase.catch_up_to >= 0 && Cursor() >= phase.catch_up_to) return;
      if (phase.over.load()) return;
      if (drop_at >= 0 && NowNs() >= drop_at) return;
      pollfd p{fd, POLLIN, 0};
      const int pr = poll(&p, 1, 20);
      if (pr < 0 && errno != EINTR) return;
      if (pr <= 0) continue;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        if (!head_done && !raw.empty() && !phase.over.load()) {
          Fail("stream " + std::to_string(index) + ": cut off in its headers: " + Clip(raw));
        }
        return;
      }
      raw.append(buf, static_cast<std::size_t>(n));
      if (!head_done) {
        const std::size_t head_end = raw.find("\r\n\r\n");
        if (head_end == std::string::npos) continue;
        status = std::atoi(raw.c_str() + 9);
        std::string head = raw.substr(0, head_end);
        for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        raw.erase(0, head_end + 4);
        head_done = true;
        if (status != 200 || head.find("transfer-encoding: chunked") == std::string::npos) {
          // Give the body a moment to arrive, for the message.
          usleep(20000);
          const ssize_t m = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
          if (m > 0) raw.append(buf, static_cast<std::size_t>(m));
          if (!phase.over.load()) {
            Fail("stream " + std::to_string(index) + ": resuming after " +
                 std::to_string(Cursor()) + " answered " + std::to_string(status) + ": " +
                 Clip(raw) +
                 (status == 400 ? " (the server's newest event is older than one it streamed "
                                  "before: events were lost or numbers went back)"
                                : ""));
          }
          return;
        }
      }
      // De-chunk.
      for (;;) {
        const std::size_t eol = raw.find("\r\n");
        if (eol == std::string::npos) break;
        const std::size_t size = std::strtoul(raw.c_str(), nullptr, 16);
        if (size == 0) {  // the server ended the stream
          Dispatch(sse);
          return;
        }
        if (raw.size() < eol + 2 + size + 2) break;
        sse.append(raw, eol + 2, size);
        raw.erase(0, eol + 2 + size + 2);
      }
      Dispatch(sse);
    }
  }

  // Takes every complete event ("…\n\n") off the front of `sse`.
  void Dispatch(std::string& sse) {
    std::size_t pos = 0;
    for (;;) {
      const std::size_t end = sse.find("\n\n", pos);
      if (end == std::string::npos) break;
      std::int64_t id = -1;
      std::string data;
      std::size_t line = pos;
      while (line < end) {
        std::size_t eol = sse.find('\n', line);
        if (eol == std::string::npos || eol > end) eol = end;
        const std::string_view l(sse.data() + line, eol - line);
        if (l.starts_with("id: ")) {
          id = std::strtoll(std::string(l.substr(4)).c_str(), nullptr, 10);
        } else if (l.starts_with("data: ")) {
          if (!data.empty()) data += '\n';
          data.append(l.substr(6));
        }
        line = eol + 1;
      }
      pos = end + 2;
      if (id < 0) continue;  // a heartbeat
      if (id <= Cursor()) {
        Fail("stream " + std::to_string(index) + ": got id " + std::to_string(id) + " after id " +
             std::to_string(Cursor()) + " (a duplicate or out of order)");
      }
      Json j = Json::parse(data, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        Fail("stream " + std::to_string(index) + ": event " + std::to_string(id) +
             " has data that is not a JSON object: " + Clip(data));
        continue;
      }
      fresh.emplace_back(id, j.dump());
      last = id;
    }
    sse.erase(0, pos);
  }
};

// ---------------------------------------------------------------------------
// What the crash loop knows, and the checks.

// Failures of one kind, counted, reported once with the first examples.
class Tally {
 public:
  explicit Tally(std::string when) : when_(std::move(when)) {}
  void Add(const std::string& kind, const std::string& example) {
    auto& [count, examples] = kinds_[kind];
    ++count;
    if (examples.size() < 3) examples.push_back(example);
  }
  // Fails once per kind; true when there was any.
  bool Report() const {
    for (const auto& [kind, entry] : kinds_) {
      std::string line = when_ + ": " + std::to_string(entry.first) + " " + kind + "; e.g.";
      for (const std::string& e : entry.second) line += "\n      " + e;
      Fail(line);
    }
    return !kinds_.empty();
  }

 private:
  std::string when_;
  std::map<std::string, std::pair<std::size_t, std::vector<std::string>>> kinds_;
};

class Ledger {
 public:
  explicit Ledger(std::uint64_t seed) : seed_(seed) {}

  // Every (sequence, event) ever observed: the same number must always carry
  // the same event, and an event must never carry two numbers.
  void Observe(std::int64_t seq, const std::string& data, const std::string& where) {
    auto [it, inserted] = by_seq_.emplace(seq, data);
    if (!inserted && it->second != data) {
      Fail("sequence " + std::to_string(seq) + " reused (" + where + "): it was " +
           Clip(it->second) + ", now " + Clip(data));
      return;
    }
    auto [jt, fresh] = by_data_.emplace(Hash(data), seq);
    if (!fresh && jt->second != seq && by_seq_[jt->second] == data) {
      Fail("one event under two sequence numbers, " + std::to_string(jt->second) + " and " +
           std::to_string(seq) + " (" + where + "): " + Clip(data));
    }
  }

  void Acknowledged(const Ack& a) {
    auto [it, inserted] = acked_.emplace(a.id, a);
    if (!inserted && it->second.message.body != a.message.body) {
      Fail("two different messages acknowledged with one id " + a.id + ": '" +
           Clip(it->second.message.body, 60) + "' and '" + Clip(a.message.body, 60) + "'");
    }
    sent_bodies_.insert(a.message.body);
  }
  void Unanswered(const Message& m) {
    sent_bodies_.insert(m.body);
    ++unanswered_;
  }
  void Pending(const Message& m) { sent_bodies_.insert(m.body); }

  std::size_t acked() const { return acked_.size(); }
  std::size_t unanswered() const { return unanswered_; }
  std::int64_t max_seq() const { return by_seq_.empty() ? 0 : by_seq_.rbegin()->first; }

  struct Boot {
    std::int64_t resume_point = 0;
    std::vector<std::string> events;                            // canonical JSON, in order
    std::vector<std::size_t> hashes;                            // Hash() of each
    std::vector<std::pair<std::string, std::string>> messages;  // id, body of each "sent"
  };

  static std::size_t Hash(const std::string& s) { return std::hash<std::string>()(s); }

  // Checks a boot against everything observed so far. `streams` are checked to
  // be a prefix of (or, with `complete`, exactly) the boot's history after
  // their start. `when` names the moment in the messages. Each kind of
  // failure is reported once, with how often it happened and an example.
  void CheckBoot(const Boot& boot, const std::vector<Stream>& streams, bool complete,
                 const std::string& when, std::size_t* unanswered_present = nullptr) {
    Tally tally(when);
    // Sequence numbers: the events the streams have numbered are there, in
    // the order of their numbers, and none is above the resume point.
    std::int64_t previous = 0;
    std::size_t numbered = 0;
    std::set<std::int64_t> present;
    for (std::size_t i = 0; i < boot.events.size(); ++i) {
      auto it = by_data_.find(boot.hashes[i]);
      if (it == by_data_.end() || by_seq_[it->second] != boot.events[i]) continue;
      ++numbered;
      present.insert(it->second);
      if (it->second <= previous) {
        tally.Add("boot events out of sequence order (numbers must strictly increase)",
                  "boot event #" + std::to_string(i) + " has sequence " +
                      std::to_string(it->second) + ", after " + std::to_string(previous));
      }
      previous = it->second;
    }
    for (const auto& [seq, data] : by_seq_) {
      if (seq > boot.resume_point) {
        tally.Add("streamed events above the resume point " + std::to_string(boot.resume_point) +
                      " (lost after they were streamed; their numbers will be reused)",
                  "event " + std::to_string(seq) + " " + Clip(data));
      } else if (!present.count(seq)) {
        tally.Add("streamed events missing from the boot",
                  "event " + std::to_string(seq) + " " + Clip(data));
      }
    }
    // Messages: every acknowledged one exactly once, as acknowledged; every
    // one at most once; nothing that was never sent.
    std::unordered_map<std::string, int> by_id, by_body;
    std::unordered_map<std::string, std::string> body_of;
    for (const auto& [id, body] : boot.messages) {
      ++by_id[id];
      ++by_body[body];
      body_of[id] = body;
      if (!sent_bodies_.count(body)) {
        tally.Add("messages in the boot that were never sent", id + " '" + Clip(body, 80) + "'");
      }
    }
    std::set<std::string> acked_bodies;
    std::set<std::string> idempotent_bodies;
    for (const auto& [id, a] : acked_) {
      acked_bodies.insert(a.message.body);
      if (!a.message.key.empty()) idempotent_bodies.insert(a.message.body);
    }
    for (const auto& [body, n] : by_body) {
      if (n > 1) {
        tally.Add(idempotent_bodies.count(body)
                      ? "messages sent once (with an Idempotency-Key) that are in the boot "
                        "several times"
                      : "messages sent once that are in the boot several times",
                  std::to_string(n) + " times '" + Clip(body, 80) + "'");
      }
    }
    for (const auto& [id, n] : by_id) {
      if (n > 1) tally.Add("message ids in the boot several times", id);
    }
    for (const auto& [id, a] : acked_) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        tally.Add("acknowledged messages (202) missing from the boot",
                  id + " (acknowledged in phase " + std::to_string(a.phase) + ", '" +
                      Clip(a.message.body, 60) + "')");
      } else if (body_of[id] != a.message.body) {
        tally.Add("acknowledged messages with another body in the boot",
                  id + ": '" + Clip(body_of[id], 60) + "', acknowledged as '" +
                      Clip(a.message.body, 60) + "'");
      }
    }
    if (unanswered_present) {
      *unanswered_present = 0;
      for (const auto& [body, n] : by_body) {
        if (!acked_bodies.count(body)) ++*unanswered_present;
      }
    }
    // Streams: what each got, concatenated, is the boot's history after its
    // start, in order (all of it when `complete`).
    for (const Stream& s : streams) {
      const std::size_t have = s.history.size();
      const std::size_t after_start =
          boot.events.size() - std::min(boot.events.size(), s.start_index);
      for (std::size_t i = 0; i < have; ++i) {
        if (i >= after_start) {
          tally.Add("streams with more events than the boot",
                    "stream " + std::to_string(s.index) + " got " + std::to_string(have) +
                        " events after its start, the boot has " + std::to_string(after_start));
          break;
        }
        if (s.hashes[i] == boot.hashes[s.start_index + i]) continue;  // the same event
        const std::string& got = by_seq_.at(s.history[i]);
        const std::string& want = boot.events[s.start_index + i];
        if (got != want) {
          tally.Add(
              "streams whose history differs from the boot (a gap, a duplicate or a "
              "reorder)",
              "stream " + std::to_string(s.index) + " event #" + std::to_string(i) + " (id " +
                  std::to_string(s.history[i]) + ") is " + Clip(got, 100) + ", the boot has " +
                  Clip(want, 100));
          break;
        }
      }
      if (complete && have < after_start) {
        tally.Add("streams that did not get every event of the boot",
                  "stream " + std::to_string(s.index) + " got " + std::to_string(have) +
                      " events after its start, the boot has " + std::to_string(after_start));
      }
    }
    if (tally.Report()) {
      Fail(when + ": run again with --seed " + std::to_string(seed_) +
           " (the same seed makes the same choices; the timing differs from run to run)");
    }
  }

 private:
  std::uint64_t seed_;
  std::map<std::int64_t, std::string> by_seq_;
  std::unordered_map<std::size_t, std::int64_t> by_data_;  // hash of the event → sequence
  std::map<std::string, Ack> acked_;
  std::set<std::string> sent_bodies_;
  std::size_t unanswered_ = 0;
};

// Where a scan of JSON text is with respect to strings: Inside(c) is true
// for each character inside a string, its closing quote included.
class JsonStringState {
 public:
  void Open() { in_string_ = true; }
  bool Inside(char c) {
    if (!in_string_) return false;
    if (escaped_) {
      escaped_ = false;
    } else if (c == '\\') {
      escaped_ = true;
    } else if (c == '"') {
      in_string_ = false;
    }
    return true;
  }

 private:
  bool in_string_ = false;
  bool escaped_ = false;
};

// Splits a boot body {…,"events":[E1,E2,…]} into its head (the object
// without "events") and the raw text of each event. False when it is not of
// that shape.
bool SplitBoot(const std::string& body, std::string* head, std::vector<std::string_view>* events) {
  static const std::string kKey = "\"events\":[";
  int depth = 0;
  JsonStringState string;
  std::size_t i = 0, start = std::string::npos;
  for (; i < body.size(); ++i) {
    const char c = body[i];
    if (string.Inside(c)) continue;
    if (depth == 1 && c == '"' && body.compare(i, kKey.size(), kKey) == 0) {
      start = i + kKey.size();
      break;
    }
    if (c == '"') string.Open();
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
  }
  if (start == std::string::npos) return false;
  *head = body.substr(0, i);
  while (!head->empty() && (head->back() == ',' || head->back() == ' ')) head->pop_back();
  *head += '}';
  depth = 0;
  std::size_t element = start;
  for (i = start; i < body.size(); ++i) {
    const char c = body[i];
    if (string.Inside(c)) continue;
    if (c == '"') {
      string.Open();
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == ',' || c == ']') && depth == 0) {
      if (i > element) events->emplace_back(body.data() + element, i - element);
      element = i + 1;
      if (c == ']') return body.compare(i, std::string::npos, "]}") == 0;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

std::optional<Ledger::Boot> GetBoot(const Endpoint& ep, const std::string& cookie,
                                    const std::string& when) {
  std::string error;
  auto r = Call(ep, "GET", "/api/boot", "", "Cookie: " + cookie + "\r\n", &error, 120000);
  if (!r) {
    Fail(when + ": boot failed: " + error);
    return std::nullopt;
  }
  if (r->status != 200) {
    Fail(when + ": boot answered " + std::to_string(r->status) + ": " + Clip(r->body));
    return std::nullopt;
  }
  // The events array is taken apart without building one document of it all
  // (a boot of a long run is tens of megabytes): each event is parsed alone.
  Ledger::Boot b;
  std::string head;
  std::vector<std::string_view> raw_events;
  if (!SplitBoot(r->body, &head, &raw_events)) {
    Fail(when + ": boot is not the expected JSON: " + Clip(r->body));
    return std::nullopt;
  }
  Json j = Json::parse(head, nullptr, false);
  if (!j.is_object() || !j.contains("resume_point") || !j["resume_point"].is_number_integer()) {
    Fail(when + ": boot is not the expected JSON: " + Clip(r->body));
    return std::nullopt;
  }
  b.resume_point = j["resume_point"].get<std::int64_t>();
  b.events.reserve(raw_events.size());
  for (std::string_view raw : raw_events) {
    Json e = Json::parse(raw, nullptr, false);
    if (!e.is_object()) {
      Fail(when + ": a boot event is not a JSON object: " + Clip(std::string(raw)));
      return std::nullopt;
    }
    b.events.push_back(e.dump());
    b.hashes.push_back(Ledger::Hash(b.events.back()));
    if (e.value("type", "") == "message" && e.value("event", "") == "sent") {
      b.messages.emplace_back(e.value("id", ""), e.value("body", ""));
    }
  }
  return b;
}

// Replays every event from 0 up to `to` (the final, complete check of the
// numbers): returns (id, canonical data) pairs.
std::vector<std::pair<std::int64_t, std::string>> Replay(const Endpoint& ep,
                                                         const std::string& cookie,
                                                         std::int64_t to) {
  Phase phase;
  phase.endpoint = ep;
  phase.cookie = cookie;
  phase.catch_up_to = to;
  Stream s;
  s.index = -1;
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    const std::int64_t deadline = NowNs() + 120 * 1000000000LL;
    while (!done.load() && NowNs() < deadline) usleep(10000);
    phase.over.store(true);
  });
  if (to > 0) s.Run(phase, 1000);
  done.store(true);
  watchdog.join();
  if (s.Cursor() < to) {
    Fail("final replay from 0 reached id " + std::to_string(s.Cursor()) + ", not " +
         std::to_string(to) + ", within 120 s");
  }
  return s.fresh;
}

std::string LastLines(const std::string& path, int n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > static_cast<std::size_t>(n) ? lines.size() - n : 0;
       i < lines.size(); ++i) {
    out += "  | " + lines[i] + "\n";
  }
  return out;
}

int Main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Options o = ParseOptions(argc, argv);
  bench::RaiseFdLimit();
  const bool own_log = o.server_log.empty();
  if (own_log) {
    const char* tmp = std::getenv("TMPDIR");
    o.server_log = std::string(tmp && *tmp ? tmp : "/tmp") + "/quire-crash-loop-" +
                   std::to_string(getpid()) + ".log";
  }
  std::printf(
      "crash_loop: seed %llu, %d kills, %d senders, %d streams, up to %d ms between "
      "kills, %s\n",
      static_cast<unsigned long long>(o.seed), o.kills, o.senders, o.streams, o.max_run_ms,
      o.database_url.c_str());
  std::fflush(stdout);
  const std::int64_t t0 = NowNs();
  std::mt19937_64 rng(o.seed);
  Server server(o.quire, o.database_url, o.server_log);
  Ledger ledger(o.seed);

  std::vector<Sender> senders(static_cast<std::size_t>(o.senders));
  for (int i = 0; i < o.senders; ++i) {
    senders[i].index = i;
    senders[i].idempotent = i % 2 == 1;
    senders[i].rng.seed(o.seed * 1000003 + static_cast<std::uint64_t>(i));
  }
  std::vector<Stream> streams(static_cast<std::size_t>(o.streams));
  for (int i = 0; i < o.streams; ++i) {
    streams[i].index = i;
    streams[i].rng.seed(o.seed * 7919 + static_cast<std::uint64_t>(i));
  }
  std::string setup_cookie;
  std::vector<std::string> conversations;
  std::size_t unanswered_present = 0;
  std::uint64_t retries = 0;

  // Exits with the failures listed.
  auto finish = [&](int kills_done) -> int {
    const auto failures = g_failures.list();
    const std::size_t count = g_failures.count();
    std::uint64_t events = 0;
    for (const Stream& s : streams) events += s.history.size();
    const double seconds = static_cast<double>(NowNs() - t0) / 1e9;
    if (count == 0) {
      std::uint64_t connects = 0;
      for (const Stream& s : streams) connects += s.connects;
      std::printf(
          "crash_loop: %.1f s; %zu sends unanswered (killed mid-request; %zu of them "
          "committed, none twice), %llu idempotent resends, %llu stream connections\n",
          seconds, ledger.unanswered(), unanswered_present,
          static_cast<unsigned long long>(retries), static_cast<unsigned long long>(connects));
      std::printf(
          "crash_loop: %d kills, %zu messages acknowledged, %llu events streamed, "
          "0 failures\n",
          kills_done, ledger.acked(), static_cast<unsigned long long>(events));
      if (own_log) unlink(o.server_log.c_str());
      return 0;
    }
    for (const std::string& f : failures) std::printf("crash_loop: FAILED: %s\n", f.c_str());
    if (count > failures.size()) {
      std::printf("crash_loop: … and %zu more failures\n", count - failures.size());
    }
    std::printf("crash_loop: server stderr (all of it in %s), last lines:\n%s",
                o.server_log.c_str(), LastLines(o.server_log, 30).c_str());
    std::printf(
        "crash_loop: reproduce with: crash_loop --quire %s --database-url <fresh "
        "database> --seed %llu --kills %d --senders %d --streams %d --max-run-ms %d\n",
        o.quire.c_str(), static_cast<unsigned long long>(o.seed), o.kills, o.senders, o.streams,
        o.max_run_ms);
    std::printf(
        "crash_loop: %d kills, %zu messages acknowledged, %llu events streamed, %zu "
        "failures\n",
        kills_done, ledger.acked(), static_cast<unsigned long long>(events), count);
    return 1;
  };

  for (int generation = 0;; ++generation) {
    const bool final_round = generation == o.kills;
    const std::string when =
        generation == 0 ? "first start" : "after kill " + std::to_string(generation);
    const std::int64_t start_ns = NowNs();
    std::string error;
    if (!server.Start(generation, &error)) {
      Fail(when + ": the server did not start: " + error);
      return finish(generation);
    }
    const double start_ms = static_cast<double>(NowNs() - start_ns) / 1e6;
    const Endpoint ep = server.endpoint();
    const std::string creds = Json{{"name", kUser}, {"password", kPassword}}.dump();
    std::string cookie;
    if (generation == 0) {
      auto r = Call(ep, "POST", "/api/setup", creds, "", &error);
      if (!r || r->status != 200) {
        Fail("setup failed (the database must be new): " +
             (r ? std::to_string(r->status) + " " + Clip(r->body) : error));
        return finish(0);
      }
      cookie = setup_cookie = IdentityCookie(*r);
      for (const char* name : {"crash loop one", "crash loop two"}) {
        r = Call(ep, "POST", "/api/conversations", Json{{"name", name}}.dump(),
                 "Cookie: " + cookie + "\r\n", &error);
        if (!r || r->status != 202) {
          Fail(std::string("cannot create a conversation: ") +
               (r ? std::to_string(r->status) + " " + Clip(r->body) : error));
          return finish(0);
        }
        conversations.push_back(Json::parse(r->body).at("id").get<std::string>());
      }
    } else {
      auto r = Call(ep, "POST", "/api/auth/login", creds, "", &error);
      if (!r || r->status != 200) {
        Fail(when +
             ": login failed: " + (r ? std::to_string(r->status) + " " + Clip(r->body) : error));
        return finish(generation);
      }
      cookie = IdentityCookie(*r);
    }
    if (cookie.empty()) {
      Fail(when + ": no identity cookie in the login answer");
      return finish(generation);
    }

    // Final round: resend what idempotent senders never got an answer for;
    // a send that was committed before its kill must come back as that message.
    if (final_round) {
      for (Sender& s : senders) {
        if (!s.pending) continue;
        std::string headers =
            "Cookie: " + cookie + "\r\nIdempotency-Key: " + s.pending->key + "\r\n";
        ++retries;
        auto r = Call(ep, "POST", "/api/conversations/" + s.pending->conversation,
                      Json{{"body", s.pending->body}}.dump(), headers, &error);
        if (!r || r->status != 202) {
          Fail(when + ": idempotent resend failed: " +
               (r ? std::to_string(r->status) + " " + Clip(r->body) : error));
          continue;
        }
        Json j = Json::parse(r->body, nullptr, false);
        if (!j.is_object() || j.value("body", "") != s.pending->body || !j.contains("id")) {
          Fail(when + ": idempotent resend answered another message: " + Clip(r->body));
          continue;
        }
        ledger.Acknowledged(Ack{j["id"].get<std::string>(), *s.pending, generation});
        s.pending.reset();
      }
    }

    // Check what survived, before the streams resume.
    auto boot = GetBoot(ep, cookie, when);
    if (!boot) return finish(generation);
    ledger.CheckBoot(*boot, streams, false, when, &unanswered_present);
    if (g_failures.count()) return finish(generation);
    if (generation == 0) {
      // Streams start at 0 (the whole history) or at this boot's resume point.
      for (Stream& s : streams) {
        const bool from_zero = s.index % 2 == 0;
        s.start = from_zero ? 0 : boot->resume_point;
        s.start_index = from_zero ? 0 : boot->events.size();
      }
    }

    const double check_ms = static_cast<double>(NowNs() - start_ns) / 1e6 - start_ms;

    Phase phase;
    phase.number = generation;
    phase.endpoint = ep;
    phase.cookie = cookie;
    phase.setup_cookie = setup_cookie;
    phase.conversations = conversations;
    if (final_round) phase.catch_up_to = boot->resume_point;

    std::vector<std::thread> threads;
    for (Stream& s : streams) {
      threads.emplace_back([&s, &phase, &o] {
        s.Run(phase, o.max_run_ms);
        phase.finished.fetch_add(1);
      });
    }
    if (!final_round) {
      for (Sender& s : senders) {
        threads.emplace_back([&s, &phase, &o] {
          s.Run(phase, o.seed);
          phase.finished.fetch_add(1);
        });
      }
    }

    // Load for a random time, then SIGKILL; in the final round, no load: the
    // streams catch up with the boot (a minute at most) and stop.
    const int run_ms = final_round ? 60000 : static_cast<int>(rng() % (o.max_run_ms + 1));
    const std::int64_t until = NowNs() + run_ms * 1000000LL;
    std::optional<std::string> died;
    while (NowNs() < until && g_failures.count() == 0) {
      if ((died = server.DiedByItself())) break;
      if (final_round && phase.finished.load() == static_cast<int>(threads.size())) break;
      usleep(2000);
    }
    if (died) {
      Fail(when + ": the server died by itself (" + *died + ")");
    } else if (!final_round) {
      server.Kill();  // the moment of truth: SIGKILL, in the middle of whatever it was doing
    }
    phase.over.store(true);
    for (std::thread& t : threads) t.join();

    // Gather what the threads saw.
    std::size_t acked_now = 0, unanswered_now = 0;
    for (Sender& s : senders) {
      for (const Ack& a : s.acks) ledger.Acknowledged(a);
      for (const Message& m : s.unanswered) ledger.Unanswered(m);
      if (s.pending) ledger.Pending(*s.pending);
      acked_now += s.acks.size();
      unanswered_now += s.unanswered.size() + (s.pending ? 1 : 0);
      retries += s.retries;
      s.acks.clear();
      s.unanswered.clear();
      s.retries = 0;
    }
    std::size_t streamed_now = 0;
    for (Stream& s : streams) {
      for (const auto& [id, data] : s.fresh) {
        ledger.Observe(id, data, "stream " + std::to_string(s.index) + ", " + when);
        s.history.push_back(id);
        s.hashes.push_back(Ledger::Hash(data));
      }
      streamed_now += s.fresh.size();
      s.fresh.clear();
    }
    if (!o.quiet && !final_round) {
      std::printf(
          "crash_loop: kill %d/%d after %d ms: %zu acknowledged (%zu in all), %zu "
          "unanswered, %zu events streamed; before it: restart %.0f ms, login and "
          "checks %.0f ms\n",
          generation + 1, o.kills, run_ms, acked_now, ledger.acked(), unanswered_now, streamed_now,
          start_ms, check_ms);
      std::fflush(stdout);
    }
    if (g_failures.count()) return finish(generation + (died || final_round ? 0 : 1));

    if (final_round) {
      for (const Stream& s : streams) {
        if (s.Cursor() < boot->resume_point) {
          Fail("final: stream " + std::to_string(s.index) + " stopped at id " +
               std::to_string(s.Cursor()) + ", the resume point is " +
               std::to_string(boot->resume_point));
        }
      }
      // The numbers of every event, from a replay of the whole history.
      auto replay = Replay(ep, cookie, boot->resume_point);
      std::int64_t previous = 0;
      for (const auto& [id, data] : replay) {
        if (id <= previous) {
          Fail("final replay: id " + std::to_string(id) + " after " + std::to_string(previous));
        }
        previous = id;
        ledger.Observe(id, data, "final replay");
      }
      if (replay.size() != boot->events.size()) {
        Fail("final replay from 0 gave " + std::to_string(replay.size()) +
             " events, the boot has " + std::to_string(boot->events.size()));
      } else {
        for (std::size_t i = 0; i < replay.size(); ++i) {
          if (replay[i].second != boot->events[i]) {
            Fail("final replay event #" + std::to_string(i) + " (id " +
                 std::to_string(replay[i].first) + ") differs from the boot's: " +
                 Clip(replay[i].second) + " vs " + Clip(boot->events[i]));
            break;
          }
        }
      }
      // And once more with the final boot: every stream is complete.
      auto last = GetBoot(ep, cookie, "final");
      if (last) {
        if (last->events != boot->events) {
          Fail("final: a second boot differs from the first, with no writes in between");
        }
        ledger.CheckBoot(*last, streams, true, "final", &unanswered_present);
      }
      if (!server.Stop(10000, &error)) Fail("final: the server did not stop cleanly: " + error);
      return finish(o.kills);
    }
  }
}

}  // namespace
}  // namespace crash

int main(int argc, char** argv) {
  return crash::Main(argc, argv);
}
