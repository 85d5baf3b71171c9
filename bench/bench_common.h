// Shared pieces of the Quire benchmark clients: clocks, a latency histogram,
// raw TCP sockets, a tiny blocking HTTP/1.1 client for setup calls, an
// incremental HTTP response parser for keep-alive senders, and the Quire
// setup sequence (setup or login, a conversation, the resume point).
//
// Only libc, pthreads and nlohmann/json: the hot paths are plain sockets and
// epoll, so the client costs as little CPU as possible on a machine it shares
// with the server.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace bench {

// ---------------------------------------------------------------------------
// Time.

inline std::int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

[[noreturn]] inline void Die(const std::string& message) {
  std::fprintf(stderr, "bench: %s\n", message.c_str());
  std::exit(2);
}

// ---------------------------------------------------------------------------
// Latency histogram: 1 µs buckets up to 100 ms, then 100 µs buckets up to
// 100 s. Exact maximum. Cheap to record from a hot loop.

class Histogram {
 public:
  Histogram() : fine_(kFine, 0), coarse_(kCoarse, 0) {}

  void Record(std::int64_t ns) {
    if (ns < 0) ns = 0;
    const std::int64_t us = ns / 1000;
    if (us < kFine) {
      ++fine_[static_cast<std::size_t>(us)];
    } else {
      std::int64_t b = us / 100;
      if (b >= kCoarse) b = kCoarse - 1;
      ++coarse_[static_cast<std::size_t>(b)];
    }
    ++count_;
    sum_us_ += static_cast<double>(us);
    max_ns_ = std::max(max_ns_, ns);
  }

  void Merge(const Histogram& other) {
    for (std::size_t i = 0; i < fine_.size(); ++i) fine_[i] += other.fine_[i];
    for (std::size_t i = 0; i < coarse_.size(); ++i) coarse_[i] += other.coarse_[i];
    count_ += other.count_;
    sum_us_ += other.sum_us_;
    max_ns_ = std::max(max_ns_, other.max_ns_);
  }

  std::uint64_t count() const { return count_; }
  double MaxMs() const { return static_cast<double>(max_ns_) / 1e6; }
  double MeanMs() const { return count_ ? sum_us_ / static_cast<double>(count_) / 1e3 : 0.0; }

  // The value (ms) below which a fraction `q` of the samples lie.
  double QuantileMs(double q) const {
    if (count_ == 0) return 0.0;
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < fine_.size(); ++i) {
      seen += fine_[i];
      if (seen >= rank) return static_cast<double>(i) / 1e3;
    }
    for (std::size_t i = 0; i < coarse_.size(); ++i) {
      seen += coarse_[i];
      if (seen >= rank) return static_cast<double>(i) * 100.0 / 1e3;
    }
    return MaxMs();
  }

 private:
  static constexpr std::int64_t kFine = 100000;     // 1 µs buckets to 100 ms
  static constexpr std::int64_t kCoarse = 1000000;  // 100 µs buckets to 100 s
  std::vector<std::uint64_t> fine_;
  std::vector<std::uint64_t> coarse_;
  std::uint64_t count_ = 0;
  double sum_us_ = 0;
  std::int64_t max_ns_ = 0;
};

// ---------------------------------------------------------------------------
// Command line: --name value pairs and --flag switches.

class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      if (std::strncmp(argv[i], "--", 2) != 0) {
        Die(std::string("unexpected argument '") + argv[i] + "'");
      }
      const std::string a(argv[i] + 2);
      if (auto eq = a.find('='); eq != std::string::npos) {
        values_[a.substr(0, eq)] = a.substr(eq + 1);
      } else if (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
        values_[a] = argv[++i];
      } else {
        values_[a] = "1";
      }
    }
  }
  std::string Str(const std::string& name, const std::string& fallback) {
    used_.push_back(name);
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  long long Int(const std::string& name, long long fallback) {
    const std::string s = Str(name, std::to_string(fallback));
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0') Die("--" + name + " wants an integer, not '" + s + "'");
    return v;
  }
  double Double(const std::string& name, double fallback) {
    const std::string s = Str(name, std::to_string(fallback));
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0') Die("--" + name + " wants a number, not '" + s + "'");
    return v;
  }
  bool Has(const std::string& name) {
    used_.push_back(name);
    return values_.count(name) != 0;
  }
  // Fails on any option that no Str/Int/Double/Has call asked for.
  void CheckAllUsed() const {
    for (const auto& [k, v] : values_) {
      if (std::find(used_.begin(), used_.end(), k) == used_.end()) Die("unknown option --" + k);
    }
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> used_;
};

// ---------------------------------------------------------------------------
// Sockets.

inline void RaiseFdLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

inline void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// A connected TCP socket to host:port (IPv4 literal), blocking; -1 on failure.
inline int ConnectTcp(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return -1;
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Writes all of `data` to a blocking or non-blocking socket (spins on EAGAIN,
// which only happens for large writes). False when the connection broke.
inline bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        usleep(100);
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

inline bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Incremental HTTP/1.1 response parser (Content-Length or chunked bodies),
// for keep-alive request/response loops. Feed bytes; Next() yields each
// complete response.

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

class ResponseParser {
 public:
  void Feed(const char* data, std::size_t n) { buf_.append(data, n); }

  // Moves the next complete response into `out`; false if not complete yet.
  // Throws std::runtime_error on a malformed response.
  bool Next(Response* out) {
    const std::size_t head_end = buf_.find("\r\n\r\n");
    if (head_end == std::string::npos) return false;
    Response r;
    std::size_t line_end = buf_.find("\r\n");
    const std::string status_line = buf_.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
      throw std::runtime_error("bad status line: " + status_line.substr(0, 80));
    }
    r.status = std::atoi(status_line.c_str() + 9);
    std::size_t pos = line_end + 2;
    while (pos < head_end) {
      std::size_t e = buf_.find("\r\n", pos);
      std::string line = buf_.substr(pos, e - pos);
      pos = e + 2;
      std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      std::string value = line.substr(v);
      auto [it, inserted] = r.headers.emplace(name, value);
      if (!inserted) it->second += "\n" + value;  // Set-Cookie may repeat
    }
    std::size_t body_start = head_end + 4;
    auto te = r.headers.find("transfer-encoding");
    if (te != r.headers.end() && IEquals(te->second, "chunked")) {
      std::size_t p = body_start;
      for (;;) {
        std::size_t e = buf_.find("\r\n", p);
        if (e == std::string::npos) return false;
        const std::size_t size = std::strtoul(buf_.c_str() + p, nullptr, 16);
        if (size == 0) {
          std::size_t end = buf_.find("\r\n", e + 2);  // no trailers expected
          if (end == std::string::npos) return false;
          buf_.erase(0, end + 2);
          break;
        }
        if (buf_.size() < e + 2 + size + 2) return false;
        r.body.append(buf_, e + 2, size);
        p = e + 2 + size + 2;
      }
    } else {
      std::size_t length = 0;
      auto cl = r.headers.find("content-length");
      if (cl != r.headers.end()) length = std::strtoul(cl->second.c_str(), nullptr, 10);
      if (buf_.size() < body_start + length) return false;
      r.body = buf_.substr(body_start, length);
      buf_.erase(0, body_start + length);
    }
    *out = std::move(r);
    return true;
  }

 private:
  std::string buf_;
};

// One blocking request on a fresh connection (Connection: close). For setup
// calls, not for measuring.
inline Response HttpCall(const std::string& host, int port, const std::string& method,
                         const std::string& path, const std::string& body,
                         const std::string& extra_headers = "") {
  int fd = ConnectTcp(host, port);
  if (fd < 0) Die("cannot connect to " + host + ":" + std::to_string(port));
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra_headers +
                    "Connection: close\r\n";
  if (!body.empty() || method == "POST") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  if (!WriteAll(fd, req)) Die("cannot send " + method + " " + path);
  ResponseParser parser;
  Response r;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    parser.Feed(buf, static_cast<std::size_t>(n));
    if (parser.Next(&r)) break;
  }
  close(fd);
  if (r.status == 0) Die(method + " " + path + ": no complete response");
  return r;
}

// ---------------------------------------------------------------------------
// Quire: a logged-in user, a conversation to post to, and the resume point.

struct QuireSession {
  std::string cookie;        // "identity=…"
  std::string conversation;  // "C…"
  std::int64_t resume_point = 0;
};

// "identity=…" from a response's Set-Cookie; "" when there is none.
inline std::string IdentityCookie(const Response& r) {
  auto it = r.headers.find("set-cookie");
  if (it == r.headers.end()) return "";
  const std::size_t start = it->second.find("identity=");
  if (start == std::string::npos) return "";
  const std::size_t end = it->second.find_first_of(";\n", start);
  return it->second.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

inline std::string CookieFrom(const Response& r) {
  std::string cookie = IdentityCookie(r);
  if (cookie.empty()) Die("no identity cookie in the login answer");
  return cookie;
}

inline QuireSession QuireSetup(const std::string& host, int port, const std::string& user,
                               const std::string& password) {
  QuireSession s;
  const std::string creds = nlohmann::json{{"name", user}, {"password", password}}.dump();
  Response r = HttpCall(host, port, "POST", "/api/setup", creds);
  if (r.status == 409) r = HttpCall(host, port, "POST", "/api/auth/login", creds);
  if (r.status != 200) Die("setup/login answered " + std::to_string(r.status) + ": " + r.body);
  s.cookie = CookieFrom(r);
  const std::string cookie_header = "Cookie: " + s.cookie + "\r\n";
  const std::string name = "bench " + std::to_string(getpid()) + " " + std::to_string(NowNs());
  r = HttpCall(host, port, "POST", "/api/conversations", nlohmann::json{{"name", name}}.dump(),
               cookie_header);
  if (r.status != 202) {
    Die("create conversation answered " + std::to_string(r.status) + ": " + r.body);
  }
  s.conversation = nlohmann::json::parse(r.body).at("id").get<std::string>();
  r = HttpCall(host, port, "GET", "/api/boot", "", cookie_header);
  if (r.status != 200) Die("boot answered " + std::to_string(r.status));
  s.resume_point = nlohmann::json::parse(r.body).at("resume_point").get<std::int64_t>();
  return s;
}

// The ~`size`-byte message text, stamped with its send time: "@@<ns>@@" then
// filler. The stamp is found again in the delivered event by the "@@" marker.
inline std::string StampedText(std::int64_t send_ns, std::size_t size) {
  char stamp[48];
  int n = std::snprintf(stamp, sizeof stamp, "@@%020lld@@", static_cast<long long>(send_ns));
  std::string text(stamp, static_cast<std::size_t>(n));
  static const char kFiller[] = "the quick brown fox jumps over the lazy dog ";
  while (text.size() < size) text += kFiller[text.size() % (sizeof kFiller - 1)];
  text.resize(std::max(size, static_cast<std::size_t>(n)));
  if (text.back() == ' ') text.back() = '.';  // no trailing whitespace
  return text;
}

// Parses the stamp after the first "@@" in [p, p+n); nullopt if none.
inline std::optional<std::int64_t> FindStamp(const char* p, std::size_t n) {
  const void* at = memmem(p, n, "@@", 2);
  if (!at) return std::nullopt;
  const char* d = static_cast<const char*>(at) + 2;
  const char* end = p + n;
  std::int64_t v = 0;
  int digits = 0;
  while (d < end && *d >= '0' && *d <= '9') {
    v = v * 10 + (*d - '0');
    ++d;
    ++digits;
  }
  if (digits == 0) return std::nullopt;
  return v;
}

inline std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// ---------------------------------------------------------------------------
// CPU time of another process, per thread, from /proc (for "what is busy").

struct ThreadCpu {
  int tid = 0;
  std::string comm;
  long long ticks = 0;  // utime + stime, in clock ticks
};

inline std::vector<ThreadCpu> SampleThreads(int pid) {
  std::vector<ThreadCpu> out;
  if (pid <= 0) return out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    FILE* f = std::fopen((dir + "/" + e->d_name + "/stat").c_str(), "r");
    if (!f) continue;
    char line[1024];
    const std::size_t n = std::fread(line, 1, sizeof line - 1, f);
    std::fclose(f);
    line[n] = '\0';
    char* open = std::strchr(line, '(');
    char* close_paren = std::strrchr(line, ')');
    if (!open || !close_paren) continue;
    ThreadCpu t;
    t.tid = std::atoi(e->d_name);
    t.comm.assign(open + 1, close_paren);
    // Fields after ")": state(3) ... utime(14) stime(15).
    char* p = close_paren + 2;
    long long utime = 0, stime = 0;
    for (int field = 3; field <= 15 && *p; ++field) {
      if (field == 14) utime = std::atoll(p);
      if (field == 15) stime = std::atoll(p);
      p = std::strchr(p, ' ');
      if (!p) break;
      ++p;
    }
    t.ticks = utime + stime;
    out.push_back(std::move(t));
  }
  closedir(d);
  return out;
}

// Threads of several processes ("PID,PID,…"; empty or "0" for none).
inline std::vector<ThreadCpu> SampleProcesses(const std::string& pids) {
  std::vector<ThreadCpu> out;
  std::size_t pos = 0;
  while (pos < pids.size()) {
    std::size_t comma = pids.find(',', pos);
    if (comma == std::string::npos) comma = pids.size();
    const int pid = std::atoi(pids.substr(pos, comma - pos).c_str());
    for (ThreadCpu& t : SampleThreads(pid)) out.push_back(std::move(t));
    pos = comma + 1;
  }
  return out;
}

// "tid role" lines (bench/thread_roles.sh writes them); empty map if no file.
inline std::map<int, std::string> ReadThreadRoles(const std::string& path) {
  std::map<int, std::string> roles;
  if (path.empty()) return roles;
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return roles;
  int tid = 0;
  char role[64];
  while (std::fscanf(f, "%d %63s", &tid, role) == 2) roles[tid] = role;
  std::fclose(f);
  return roles;
}

// "total% (role×n a%, …)": CPU between two samples, in % of one core, summed
// by thread role (from `roles`, else the thread's name), busiest first.
inline std::string CpuReport(const std::vector<ThreadCpu>& before,
                             const std::vector<ThreadCpu>& after, double seconds,
                             const std::map<int, std::string>& roles,
                             double* total_percent = nullptr) {
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::map<std::string, std::pair<double, int>> by_role;
  double total = 0;
  for (const ThreadCpu& a : after) {
    long long prev = 0;
    for (const ThreadCpu& b : before) {
      if (b.tid == a.tid) prev = b.ticks;
    }
    const double pct = static_cast<double>(a.ticks - prev) / hz / seconds * 100.0;
    total += pct;
    auto it = roles.find(a.tid);
    auto& slot = by_role[it == roles.end() ? a.comm : it->second];
    slot.first += pct;
    slot.second += 1;
  }
  std::vector<std::pair<double, std::string>> rows;
  for (const auto& [role, v] : by_role) {
    rows.emplace_back(v.first, v.second > 1 ? role + "x" + std::to_string(v.second) : role);
  }
  std::sort(rows.rbegin(), rows.rend());
  std::string out = Fixed(total, 0) + "% (";
  bool first = true;
  for (const auto& [pct, name] : rows) {
    if (pct < 1.0) break;
    if (!first) out += ", ";
    first = false;
    out += name + " " + Fixed(pct, 0) + "%";
  }
  out += ")";
  if (total_percent) *total_percent = total;
  return out;
}

// Busy CPU of the whole machine (all processes, kernel threads, interrupts,
// and time the hypervisor gave to other guests: steal), from /proc/stat, in
// ticks; `steal` receives the steal part alone.
inline long long MachineBusyTicks(long long* steal = nullptr) {
  FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return 0;
  long long v[10] = {0};
  const int n = std::fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", &v[0],
                            &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
  std::fclose(f);
  if (n < 8) return 0;
  if (steal) *steal = v[7];
  // user nice system idle iowait irq softirq steal (guest is inside user).
  return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

inline double TicksToPercent(long long ticks, double seconds) {
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK)) / seconds * 100.0;
}

// CPU seconds used by this process so far (all threads).
inline double SelfCpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace bench
