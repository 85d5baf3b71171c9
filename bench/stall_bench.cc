// stall_bench: clients that ask for a large boot and never read it must not
// slow down anyone else.
//
// The target (issue): "32 clients that never read their boots: a send, a
// login and a boot from another client each answered in < 100 ms".
//
// Against a running Quire on --port: sets up the first user (or logs in),
// creates a conversation and fills it with --history-mb of messages
// (--message-bytes each, default 8,000: 20 MB is 2,500 messages), so that a
// boot is far larger than the socket buffers and the server's per-client
// queue. Then opens --stalled connections (default 32) that each send
// `GET /api/boot` with the session cookie and never read a byte; waits
// --wait seconds (default 1); then, from another client, runs --samples
// rounds (default 20) of: a login (`POST /api/auth/login`, expects 200 and a
// cookie), a send with that cookie (`POST /api/conversations/ID`, expects
// 202), and a boot with it (`GET /api/boot`, expects 200, read to the end).
// Each request goes out on a new connection and is timed from before
// connect() to the last byte of its response; the boot also from before
// connect() to the first byte of the response (status line). Nothing is
// subtracted: a login includes its argon2id hash (~70 ms by design).
//
// Every request must succeed: a wrong status, a broken connection or no
// answer within --timeout seconds is a failure, counted, and the exit status
// is 1. Prints a human-readable report and one `RESULT bench=stall …` line.
#include <poll.h>
#include <sys/ioctl.h>

#include <thread>

#include "bench_common.h"

namespace bench {
namespace {

// A message text of exactly `size` bytes: plain ASCII words.
std::string Filler(std::size_t size, std::size_t salt) {
  static const char kWords[] = "the quick brown fox jumps over the lazy dog ";
  std::string text = "m" + std::to_string(salt) + " ";
  while (text.size() < size) text += kWords[text.size() % (sizeof kWords - 1)];
  text.resize(size);
  if (text.back() == ' ') text.back() = '.';  // no trailing white space
  return text;
}

std::string Post(const std::string& host, const std::string& path, const std::string& cookie,
                 const std::string& body) {
  std::string req = "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\n";
  if (!cookie.empty()) req += "Cookie: " + cookie + "\r\n";
  req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
  return req;
}

std::string Get(const std::string& host, const std::string& path, const std::string& cookie) {
  return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nCookie: " + cookie + "\r\n\r\n";
}

// Tells, in one pass over the bytes as they arrive, when `raw` holds a whole
// response (Content-Length or chunked body), so that a 20 MB body is not
// re-parsed on every read.
class Completion {
 public:
  bool Done(const std::string& raw) {
    if (body_start_ == std::string::npos) {
      const std::size_t head_end = raw.find("\r\n\r\n");
      if (head_end == std::string::npos) return false;
      body_start_ = head_end + 4;
      cursor_ = body_start_;
      std::string head = raw.substr(0, head_end + 2);
      for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const std::size_t te = head.find("\r\ntransfer-encoding:");
      chunked_ =
          te != std::string::npos &&
          head.substr(te, head.find("\r\n", te + 2) - te).find("chunked") != std::string::npos;
      const std::size_t cl = head.find("\r\ncontent-length:");
      if (cl != std::string::npos) length_ = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    }
    if (!chunked_) return raw.size() >= body_start_ + length_;
    for (;;) {
      const std::size_t e = raw.find("\r\n", cursor_);
      if (e == std::string::npos) return false;
      const std::size_t size = std::strtoul(raw.c_str() + cursor_, nullptr, 16);
      if (size == 0) return raw.size() >= e + 4;  // "0\r\n\r\n": no trailers expected
      if (raw.size() < e + 2 + size + 2) return false;
      cursor_ = e + 2 + size + 2;
    }
  }

 private:
  std::size_t body_start_ = std::string::npos;
  std::size_t cursor_ = 0;
  std::size_t length_ = 0;
  bool chunked_ = false;
};

struct Timed {
  bool answered = false;  // a whole response arrived in time
  std::string error;      // why not
  Response response;
  double first_byte_ms = 0;  // connect → first byte of the response
  double total_ms = 0;       // connect → last byte
  std::size_t bytes = 0;     // on the wire
};

// One request on a new connection, timed from before connect() to the last
// byte of the response.
Timed TimedCall(const std::string& host, int port, const std::string& request, double timeout_s) {
  Timed t;
  const std::int64_t start = NowNs();
  const std::int64_t deadline = start + static_cast<std::int64_t>(timeout_s * 1e9);
  const int fd = ConnectTcp(host, port);
  if (fd < 0) {
    t.error = "cannot connect";
    return t;
  }
  if (!WriteAll(fd, request)) {
    close(fd);
    t.error = "cannot send the request";
    return t;
  }
  std::string raw;
  Completion completion;
  static thread_local std::vector<char> buf(1 << 18);
  for (;;) {
    const std::int64_t left_ms = (deadline - NowNs()) / 1000000;
    if (left_ms <= 0) {
      t.error = "no whole answer within " + Fixed(timeout_s, 0) + " s (" +
                std::to_string(raw.size()) + " bytes received)";
      break;
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left_ms));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;  // the deadline check above ends it
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      t.error = "connection closed after " + std::to_string(raw.size()) + " bytes";
      break;
    }
    if (raw.empty()) t.first_byte_ms = static_cast<double>(NowNs() - start) / 1e6;
    raw.append(buf.data(), static_cast<std::size_t>(n));
    if (completion.Done(raw)) {
      t.total_ms = static_cast<double>(NowNs() - start) / 1e6;
      t.bytes = raw.size();
      ResponseParser parser;
      parser.Feed(raw.data(), raw.size());
      try {
        t.answered = parser.Next(&t.response);
        if (!t.answered) t.error = "incomplete response";
      } catch (const std::exception& e) {
        t.error = e.what();
      }
      break;
    }
  }
  close(fd);
  return t;
}

// Posts `count` messages over `connections` keep-alive connections, each
// waiting for its 202 before the next. Dies on any other answer.
void Fill(const std::string& host, int port, const QuireSession& s, int count, int connections,
          std::size_t message_bytes) {
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      int fd = -1;
      ResponseParser parser;
      std::vector<char> buf(65536);
      for (int i = c; i < count; i += connections) {
        if (fd < 0) {
          fd = ConnectTcp(host, port);
          if (fd < 0) Die("fill: cannot connect");
          parser = ResponseParser();
        }
        const std::string body =
            nlohmann::json{{"body", Filler(message_bytes, static_cast<std::size_t>(i))}}.dump();
        if (!WriteAll(fd, Post(host, "/api/conversations/" + s.conversation, s.cookie, body))) {
          Die("fill: cannot send");
        }
        Response r;
        for (;;) {
          const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) Die("fill: connection closed");
          parser.Feed(buf.data(), static_cast<std::size_t>(n));
          if (parser.Next(&r)) break;
        }
        if (r.status != 202) {
          Die("fill: a send answered " + std::to_string(r.status) + ": " + r.body.substr(0, 200));
        }
        auto conn = r.headers.find("connection");
        if (conn != r.headers.end() && IEquals(conn->second, "close")) {
          close(fd);
          fd = -1;
        }
      }
      if (fd >= 0) close(fd);
    });
  }
  for (std::thread& t : threads) t.join();
}

// A connection that asks for a boot and never reads: its socket's receive
// buffer fills, then the server's send buffer, then the server's queue.
int OpenStalledBoot(const std::string& host, int port, const std::string& cookie, int rcvbuf) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket failed");
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) Die("bad --host " + host);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Die("a stalled boot cannot connect");
  }
  if (!WriteAll(fd, Get(host, "/api/boot", cookie))) Die("a stalled boot cannot send");
  return fd;
}

// Bytes that arrived on the stalled sockets and wait there unread, and how
// many of those sockets the server has closed (its FIN arrived).
std::pair<std::size_t, int> StalledState(const std::vector<int>& fds) {
  std::size_t unread = 0;
  int closed = 0;
  for (int fd : fds) {
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) == 0 && n > 0) unread += static_cast<std::size_t>(n);
    pollfd p{fd, POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) ++closed;
  }
  return {unread, closed};
}

struct Series {
  std::vector<double> ms;
  int failures = 0;
  std::string first_error;

  void Fail(const std::string& what) {
    ++failures;
    if (first_error.empty()) first_error = what;
  }
  // As Histogram::QuantileMs: the value below which a fraction q lies.
  double Quantile(double q) const {
    if (ms.empty()) return 0;
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    return s[static_cast<std::size_t>(q * static_cast<double>(s.size() - 1))];
  }
  double Max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }
  std::string Line() const {
    return "p50 " + Fixed(Quantile(0.5), 1) + " ms, p99 " + Fixed(Quantile(0.99), 1) + " ms, max " +
           Fixed(Max(), 1) + " ms (" + std::to_string(ms.size()) + " ok, " +
           std::to_string(failures) + " failed)";
  }
  std::string Fields(const std::string& kind) const {
    return kind + "_p50_ms=" + Fixed(Quantile(0.5), 2) + " " + kind +
           "_p99_ms=" + Fixed(Quantile(0.99), 2) + " " + kind + "_max_ms=" + Fixed(Max(), 2);
  }
};

// Checks a boot's body: whole JSON with a resume point at least `min_resume`
// and at least `min_events` events. Parsing 20 MB costs the client ~0.2 s, so
// it is done outside the timed part and only when `full` is set; otherwise
// only the ends of the body are looked at.
std::string CheckBoot(const Response& r, std::int64_t min_resume, std::size_t min_events,
                      bool full) {
  if (r.body.size() < 2 || r.body.front() != '{' || r.body.back() != '}') {
    return "boot body is not a whole JSON object (" + std::to_string(r.body.size()) + " bytes)";
  }
  if (!full) return "";
  const nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded()) return "boot body is not JSON";
  if (!j.contains("resume_point") || !j.contains("events")) return "boot lacks its fields";
  if (j["resume_point"].get<std::int64_t>() < min_resume) return "boot resume_point too small";
  if (j["events"].size() < min_events) {
    return "boot has " + std::to_string(j["events"].size()) + " events, expected at least " +
           std::to_string(min_events);
  }
  return "";
}

int Main(int argc, char** argv) {
  Args args(argc, argv);
  if (args.Has("help")) {
    std::printf(
        "stall_bench --port N [--stalled 32] [--samples 20] [--history-mb 20]\n"
        "            [--message-bytes 8000] [--wait 1] [--timeout 10] [--rcvbuf BYTES]\n"
        "            [--fill-connections 8] [--server-pid PID] [--thread-roles FILE]\n"
        "            [--host 127.0.0.1] [--user NAME] [--password PASSWORD]\n");
    return 0;
  }
  const std::string host = args.Str("host", "127.0.0.1");
  const int port = static_cast<int>(args.Int("port", 0));
  const int stalled_count = static_cast<int>(args.Int("stalled", 32));
  const int samples = static_cast<int>(args.Int("samples", 20));
  const double history_mb = args.Double("history-mb", 20);
  const auto message_bytes = static_cast<std::size_t>(args.Int("message-bytes", 8000));
  const double wait_s = args.Double("wait", 1);
  const double timeout_s = args.Double("timeout", 10);
  const int rcvbuf = static_cast<int>(args.Int("rcvbuf", 0));
  const int fill_connections = static_cast<int>(args.Int("fill-connections", 8));
  const std::string server_pids = args.Str("server-pid", "");
  const std::string thread_roles = args.Str("thread-roles", "");
  const std::string user = args.Str("user", "bench");
  const std::string password = args.Str("password", "bench password 0123");
  args.CheckAllUsed();
  if (port <= 0) Die("--port is required");
  if (stalled_count < 0 || stalled_count > 10000) Die("--stalled must be in [0, 10000]");
  if (samples < 1 || samples > 1000) Die("--samples must be in [1, 1000]");
  if (message_bytes < 1 || message_bytes > 8192) Die("--message-bytes must be in [1, 8192]");
  if (history_mb < 0 || history_mb > 1000) Die("--history-mb must be in [0, 1000]");
  if (wait_s < 0 || wait_s > 60 || timeout_s <= 0 || timeout_s > 60) {
    Die("--wait must be in [0, 60] and --timeout in (0, 60] seconds");
  }
  RaiseFdLimit();

  // The user, a conversation and its history.
  const QuireSession session = QuireSetup(host, port, user, password);
  const int messages =
      static_cast<int>(history_mb * 1e6 / static_cast<double>(message_bytes) + 0.5);
  std::int64_t t0 = NowNs();
  Fill(host, port, session, messages, std::max(1, fill_connections), message_bytes);
  const double fill_s = static_cast<double>(NowNs() - t0) / 1e9;
  std::printf("== %d stalled boots, %d samples ==\n", stalled_count, samples);
  std::printf("history: %d messages of %zu bytes posted in %.1f s (%.0f/s, %d connections)\n",
              messages, message_bytes, fill_s, messages / std::max(fill_s, 1e-9), fill_connections);

  // One boot before anything is stalled: the size, and warm caches.
  const Timed warm = TimedCall(host, port, Get(host, "/api/boot", session.cookie), 30);
  if (!warm.answered || warm.response.status != 200) {
    Die("the first boot failed: " +
        (warm.answered ? std::to_string(warm.response.status) : warm.error));
  }
  const std::int64_t resume_point =
      nlohmann::json::parse(warm.response.body).at("resume_point").get<std::int64_t>();
  const std::string check =
      CheckBoot(warm.response, resume_point, static_cast<std::size_t>(messages), true);
  if (!check.empty()) Die("the first boot: " + check);
  const double boot_mb = static_cast<double>(warm.response.body.size()) / 1e6;
  std::printf("boot alone, before any stall: %.1f MB, first byte %.1f ms, whole %.1f ms\n", boot_mb,
              warm.first_byte_ms, warm.total_ms);

  // The stalled boots.
  const auto roles = ReadThreadRoles(thread_roles);
  std::vector<ThreadCpu> wait_before = SampleProcesses(server_pids);
  t0 = NowNs();
  std::vector<int> stalled;
  for (int i = 0; i < stalled_count; ++i) {
    stalled.push_back(OpenStalledBoot(host, port, session.cookie, rcvbuf));
  }
  usleep(static_cast<useconds_t>(wait_s * 1e6));
  const double wait_elapsed = static_cast<double>(NowNs() - t0) / 1e9;
  const std::string wait_cpu =
      CpuReport(wait_before, SampleProcesses(server_pids), wait_elapsed, roles);
  const auto [unread_before, closed_before] = StalledState(stalled);
  std::printf(
      "stalled: %d connections asked for the boot and read nothing; after %.1f s %.1f MB wait "
      "unread in their sockets, %d closed by the server\n",
      stalled_count, wait_s, static_cast<double>(unread_before) / 1e6, closed_before);
  if (!server_pids.empty()) {
    std::printf("server CPU while the stalled boots were sent: %s\n", wait_cpu.c_str());
  }

  // The samples: login, send, boot, from another client.
  const std::string creds = nlohmann::json{{"name", user}, {"password", password}}.dump();
  Series login, send, boot_first, boot;
  const std::vector<ThreadCpu> before = SampleProcesses(server_pids);
  long long steal_before = 0, steal_after = 0;
  const long long machine_before = MachineBusyTicks(&steal_before);
  const double self_before = SelfCpuSeconds();
  const std::int64_t measure_start = NowNs();
  for (int i = 0; i < samples; ++i) {
    Timed l = TimedCall(host, port, Post(host, "/api/auth/login", "", creds), timeout_s);
    std::string cookie;
    if (!l.answered) {
      login.Fail("login: " + l.error);
    } else if (l.response.status != 200) {
      login.Fail("login answered " + std::to_string(l.response.status) + ": " +
                 l.response.body.substr(0, 200));
    } else if ((cookie = IdentityCookie(l.response)).empty()) {
      login.Fail("login answered 200 without an identity cookie");
    } else {
      login.ms.push_back(l.total_ms);
    }
    if (cookie.empty()) cookie = session.cookie;  // the sends and boots still run

    const std::string body = nlohmann::json{{"body", StampedText(NowNs(), 200)}}.dump();
    Timed s = TimedCall(host, port,
                        Post(host, "/api/conversations/" + session.conversation, cookie, body),
                        timeout_s);
    if (!s.answered) {
      send.Fail("send: " + s.error);
    } else if (s.response.status != 202) {
      send.Fail("send answered " + std::to_string(s.response.status) + ": " +
                s.response.body.substr(0, 200));
    } else {
      send.ms.push_back(s.total_ms);
    }

    Timed b = TimedCall(host, port, Get(host, "/api/boot", cookie), timeout_s);
    std::string bad;
    if (!b.answered) {
      bad = "boot: " + b.error;
    } else if (b.response.status != 200) {
      bad = "boot answered " + std::to_string(b.response.status) + ": " +
            b.response.body.substr(0, 200);
    } else {
      bad = CheckBoot(b.response, resume_point, static_cast<std::size_t>(messages),
                      i == 0 || i == samples - 1);
    }
    if (!bad.empty()) {
      boot.Fail(bad);
    } else {
      boot_first.ms.push_back(b.first_byte_ms);
      boot.ms.push_back(b.total_ms);
    }
  }
  const double measured = static_cast<double>(NowNs() - measure_start) / 1e9;
  const std::vector<ThreadCpu> after = SampleProcesses(server_pids);
  const long long machine_after = MachineBusyTicks(&steal_after);
  const double self_after = SelfCpuSeconds();
  const auto [unread_after, closed_after] = StalledState(stalled);
  for (int fd : stalled) close(fd);

  double server_cpu = 0;
  const std::string cpu = CpuReport(before, after, measured, roles, &server_cpu);
  const double client_cpu = (self_after - self_before) / measured * 100.0;
  const double machine_cpu = TicksToPercent(machine_after - machine_before, measured);
  const double other_cpu = std::max(0.0, machine_cpu - server_cpu - client_cpu);
  const double steal_cpu = TicksToPercent(steal_after - steal_before, measured);
  const int failures = login.failures + send.failures + boot.failures;

  std::printf("login (argon2id included, nothing subtracted): %s\n", login.Line().c_str());
  std::printf("send → 202:                                    %s\n", send.Line().c_str());
  std::printf("boot → first byte:                             %s\n", boot_first.Line().c_str());
  std::printf("boot → last byte (%.1f MB):                     %s\n", boot_mb, boot.Line().c_str());
  for (const Series* s : {&login, &send, &boot}) {
    if (!s->first_error.empty()) std::printf("first failure: %s\n", s->first_error.c_str());
  }
  std::printf(
      "stalled at the end: %.1f MB unread in their sockets, %d of %d closed by the server\n",
      static_cast<double>(unread_after) / 1e6, closed_after, stalled_count);
  if (!server_pids.empty()) std::printf("server CPU: %s\n", cpu.c_str());
  std::printf(
      "client CPU: %.0f%%; whole machine %.0f%%, of which %.0f%% other processes, kernel threads "
      "and hypervisor steal (steal alone %.0f%%)\n",
      client_cpu, machine_cpu, other_cpu, steal_cpu);
  std::printf(
      "RESULT bench=stall stalled=%d samples=%d messages=%d boot_mb=%.1f %s %s "
      "boot_first_p50_ms=%.2f "
      "boot_first_p99_ms=%.2f boot_first_max_ms=%.2f %s failures=%d stalled_unread_mb=%.1f "
      "stalled_closed=%d server_cpu=%.0f client_cpu=%.0f other_cpu=%.0f steal_cpu=%.0f\n",
      stalled_count, samples, messages, boot_mb, send.Fields("send").c_str(),
      login.Fields("login").c_str(), boot_first.Quantile(0.5), boot_first.Quantile(0.99),
      boot_first.Max(), boot.Fields("boot").c_str(), failures,
      static_cast<double>(unread_after) / 1e6, closed_after, server_cpu, client_cpu, other_cpu,
      steal_cpu);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  return bench::Main(argc, argv);
}
