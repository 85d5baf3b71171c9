// fanout_bench: how many events per second reach N open SSE streams, how long
// an event takes from its send to its delivery, and how fast senders can post
// while those streams are open.
//
// One epoll loop (this thread) holds N raw TCP connections to the stream
// endpoint and parses `id:` / `data:` frames out of the (chunked) bodies. A
// sender thread posts ~200-byte messages over keep-alive connections, at full
// speed (each connection sends its next message when the previous one is
// answered) or at a fixed total rate. Each message carries its send time
// (CLOCK_MONOTONIC, ns) as "@@<ns>@@"; the receiver subtracts it from the time
// the event was read.
//
// Targets:
//   --target quire  POST /api/conversations/C… with the identity cookie;
//                   GET /api/events?resume_point=R (the client sets up a user
//                   and a conversation itself).
//   --target nchan  POST --pub-path (default /pub); GET --sub-path (default
//                   /sub) with Accept: text/event-stream (nchan EventSource).
//
// Prints a human-readable report and one `RESULT key=value …` line.
#include <sys/epoll.h>

#include <atomic>
#include <thread>

#include "bench_common.h"
#include "sender.h"

namespace bench {
namespace {

struct Options {
  std::string target = "quire";
  std::string host = "127.0.0.1";
  int port = 0;
  int streams = 0;
  int senders = 8;
  double rate = 0;
  double warmup = 2;
  double duration = 10;
  std::size_t payload = 200;
  std::string pub_path = "/pub";
  std::string sub_path = "/sub";
  std::string server_pids;  // "PID[,PID…]" whose threads are sampled
  std::string thread_roles;
  std::string label;
};

// One SSE connection and its incremental parser.
struct Stream {
  int fd = -1;
  enum class Phase { kHead, kBody, kEnded } phase = Phase::kHead;
  std::string head;
  int status = 0;
  bool chunked = false;
  // Chunked-body decoder.
  enum class Chunk { kSize, kExt, kData, kDataEnd, kDone } chunk = Chunk::kSize;
  std::size_t chunk_size = 0;
  std::size_t remaining = 0;
  // SSE parser.
  std::string line;
  bool has_id = false;
  std::int64_t id = 0;
  bool has_stamp = false;
  std::int64_t stamp = 0;
  std::int64_t last_id = -1;
  std::uint64_t events = 0;
  std::uint64_t gaps = 0;  // ids not exactly one above the previous (quire only)
};

class Receiver {
 public:
  Receiver(const Options& o, bool check_ids) : o_(o), check_ids_(check_ids) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    buf_.resize(256 * 1024);
  }
  ~Receiver() {
    for (Stream& s : streams_) {
      if (s.fd >= 0) close(s.fd);
    }
    close(epfd_);
  }

  // Opens `count` streams with `request`, a batch at a time, waiting for each
  // batch's response headers. Dies if one is refused.
  void Open(int count, const std::string& request) {
    streams_.resize(static_cast<std::size_t>(count));
    constexpr int kBatch = 100;
    for (int first = 0; first < count; first += kBatch) {
      const int last = std::min(count, first + kBatch);
      for (int i = first; i < last; ++i) {
        Stream& s = streams_[static_cast<std::size_t>(i)];
        s.fd = ConnectTcp(o_.host, o_.port);
        if (s.fd < 0) Die("stream " + std::to_string(i) + ": cannot connect");
        if (!WriteAll(s.fd, request)) Die("stream " + std::to_string(i) + ": cannot send");
        SetNonBlocking(s.fd);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = static_cast<std::uint64_t>(i);
        epoll_ctl(epfd_, EPOLL_CTL_ADD, s.fd, &ev);
      }
      const std::int64_t deadline = NowNs() + 30'000'000'000LL;
      while (headed_ < last) {
        if (NowNs() > deadline) Die("streams did not open within 30 s");
        Poll(100);
      }
    }
  }

  // Reads whatever is ready, waiting at most `timeout_ms`.
  void Poll(int timeout_ms) {
    epoll_event events[512];
    int n = epoll_wait(epfd_, events, 512, timeout_ms);
    if (n <= 0) return;
    for (int e = 0; e < n; ++e) {
      Stream& s = streams_[events[e].data.u64];
      ssize_t got = ::recv(s.fd, buf_.data(), buf_.size(), 0);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) {
        End(s);
        continue;
      }
      now_ = NowNs();
      Consume(s, buf_.data(), static_cast<std::size_t>(got));
    }
  }

  void SetWindow(std::int64_t start, std::int64_t stop) {
    window_start_ = start;
    window_stop_ = stop;
  }

  std::uint64_t MinEvents() const {
    std::uint64_t m = UINT64_MAX;
    for (const Stream& s : streams_) {
      if (s.phase != Stream::Phase::kEnded) m = std::min(m, s.events);
    }
    return m == UINT64_MAX ? 0 : m;
  }
  std::uint64_t MaxEvents() const {
    std::uint64_t m = 0;
    for (const Stream& s : streams_) m = std::max(m, s.events);
    return m;
  }
  std::uint64_t StreamsWithAtLeast(std::uint64_t n) const {
    std::uint64_t c = 0;
    for (const Stream& s : streams_) c += s.events >= n ? 1 : 0;
    return c;
  }
  std::uint64_t Gaps() const {
    std::uint64_t g = 0;
    for (const Stream& s : streams_) g += s.gaps;
    return g;
  }
  int ended() const { return ended_; }
  int live() const { return static_cast<int>(streams_.size()) - ended_; }
  std::uint64_t delivered_in_window() const { return delivered_in_window_; }
  std::uint64_t delivered_total() const { return delivered_total_; }
  const Histogram& latency() const { return latency_; }

 private:
  void End(Stream& s) {
    if (s.phase == Stream::Phase::kEnded) return;
    if (s.phase == Stream::Phase::kHead) Die("a stream closed before its response headers");
    s.phase = Stream::Phase::kEnded;
    epoll_ctl(epfd_, EPOLL_CTL_DEL, s.fd, nullptr);
    close(s.fd);
    s.fd = -1;
    ++ended_;
  }

  void Consume(Stream& s, const char* p, std::size_t n) {
    if (s.phase == Stream::Phase::kHead) {
      s.head.append(p, n);
      const std::size_t end = s.head.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (s.head.size() > 65536) Die("stream response headers too long");
        return;
      }
      s.status = std::atoi(s.head.c_str() + 9);
      if (s.status != 200) {
        Die("stream answered " + s.head.substr(0, s.head.find("\r\n")) + "\n" + s.head);
      }
      std::string lower = s.head.substr(0, end);
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      s.chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
      s.phase = Stream::Phase::kBody;
      ++headed_;
      std::string rest = s.head.substr(end + 4);
      s.head.clear();
      s.head.shrink_to_fit();
      if (!rest.empty()) Body(s, rest.data(), rest.size());
      return;
    }
    if (s.phase == Stream::Phase::kBody) Body(s, p, n);
  }

  void Body(Stream& s, const char* p, std::size_t n) {
    if (!s.chunked) {
      Sse(s, p, n);
      return;
    }
    while (n > 0) {
      switch (s.chunk) {
        case Stream::Chunk::kSize:
        case Stream::Chunk::kExt: {
          const char c = *p++;
          --n;
          if (c == '\n') {
            if (s.chunk_size == 0) {
              s.chunk = Stream::Chunk::kDone;
              End(s);
              return;
            }
            s.remaining = s.chunk_size;
            s.chunk_size = 0;
            s.chunk = Stream::Chunk::kData;
          } else if (s.chunk == Stream::Chunk::kSize) {
            if (c >= '0' && c <= '9') {
              s.chunk_size = s.chunk_size * 16 + static_cast<std::size_t>(c - '0');
            } else if (c >= 'a' && c <= 'f') {
              s.chunk_size = s.chunk_size * 16 + static_cast<std::size_t>(c - 'a' + 10);
            } else if (c >= 'A' && c <= 'F') {
              s.chunk_size = s.chunk_size * 16 + static_cast<std::size_t>(c - 'A' + 10);
            } else if (c != '\r') {
              s.chunk = Stream::Chunk::kExt;
            }
          }
          break;
        }
        case Stream::Chunk::kData: {
          const std::size_t take = std::min(n, s.remaining);
          Sse(s, p, take);
          p += take;
          n -= take;
          s.remaining -= take;
          if (s.remaining == 0) s.chunk = Stream::Chunk::kDataEnd;
          break;
        }
        case Stream::Chunk::kDataEnd: {
          const char c = *p++;
          --n;
          if (c == '\n') s.chunk = Stream::Chunk::kSize;
          break;
        }
        case Stream::Chunk::kDone:
          return;
      }
    }
  }

  void Sse(Stream& s, const char* p, std::size_t n) {
    while (n > 0) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
      if (!nl) {
        s.line.append(p, n);
        return;
      }
      const auto len = static_cast<std::size_t>(nl - p);
      if (s.line.empty()) {
        Line(s, p, len);
      } else {
        s.line.append(p, len);
        Line(s, s.line.data(), s.line.size());
        s.line.clear();
      }
      p = nl + 1;
      n -= len + 1;
    }
  }

  void Line(Stream& s, const char* p, std::size_t n) {
    if (n > 0 && p[n - 1] == '\r') --n;
    if (n == 0) {
      Dispatch(s);
      return;
    }
    if (n > 3 && std::memcmp(p, "id:", 3) == 0) {
      s.has_id = true;
      s.id = std::strtoll(p + 3, nullptr, 10);  // quire ids are integers
    } else if (n > 5 && std::memcmp(p, "data:", 5) == 0) {
      if (auto stamp = FindStamp(p, n)) {
        s.has_stamp = true;
        s.stamp = *stamp;
      }
    }
  }

  void Dispatch(Stream& s) {
    if (s.has_stamp) {
      ++s.events;
      ++delivered_total_;
      if (now_ >= window_start_ && now_ < window_stop_) ++delivered_in_window_;
      if (s.stamp >= window_start_ && s.stamp < window_stop_) latency_.Record(now_ - s.stamp);
      if (check_ids_ && s.has_id) {
        if (s.last_id >= 0 && s.id != s.last_id + 1) ++s.gaps;
        s.last_id = s.id;
      }
    }
    s.has_id = false;
    s.has_stamp = false;
  }

  const Options& o_;
  const bool check_ids_;
  int epfd_ = -1;
  std::vector<char> buf_;
  std::vector<Stream> streams_;
  int headed_ = 0;
  int ended_ = 0;
  std::int64_t now_ = 0;
  std::int64_t window_start_ = INT64_MAX;
  std::int64_t window_stop_ = INT64_MAX;
  std::uint64_t delivered_in_window_ = 0;
  std::uint64_t delivered_total_ = 0;
  Histogram latency_;
};

int Main(int argc, char** argv) {
  Args args(argc, argv);
  Options o;
  o.target = args.Str("target", o.target);
  o.host = args.Str("host", o.host);
  o.port = static_cast<int>(args.Int("port", 0));
  o.streams = static_cast<int>(args.Int("streams", o.streams));
  o.senders = static_cast<int>(args.Int("senders", o.senders));
  o.rate = args.Double("rate", o.rate);
  o.warmup = args.Double("warmup", o.warmup);
  o.duration = args.Double("duration", o.duration);
  o.payload = static_cast<std::size_t>(args.Int("payload", static_cast<long long>(o.payload)));
  o.pub_path = args.Str("pub-path", o.pub_path);
  o.sub_path = args.Str("sub-path", o.sub_path);
  o.server_pids = args.Str("server-pid", "");
  o.thread_roles = args.Str("thread-roles", "");
  o.label = args.Str("label", o.target);
  const std::string user = args.Str("user", "bench");
  const std::string password = args.Str("password", "bench password 0123");
  if (args.Has("help")) {
    std::printf(
        "fanout_bench --target quire|nchan --port N [--streams N] [--senders K] [--rate R]\n"
        "             [--warmup S] [--duration S] [--payload BYTES] [--server-pid PID[,PID]]\n"
        "             [--thread-roles FILE] [--pub-path /pub] [--sub-path /sub] [--label NAME]\n");
    return 0;
  }
  args.CheckAllUsed();
  if (o.port <= 0) Die("--port is required");
  if (o.target != "quire" && o.target != "nchan") Die("--target is quire or nchan");
  if (o.duration <= 0 || o.duration > 60) Die("--duration must be in (0, 60] seconds");
  if (o.senders < 1 || o.streams < 0) Die("--senders >= 1, --streams >= 0");
  RaiseFdLimit();

  const bool quire = o.target == "quire";
  std::string stream_request, publish_head;
  std::function<std::string(std::int64_t)> build;
  if (quire) {
    QuireSession session = QuireSetup(o.host, o.port, user, password);
    stream_request = "GET /api/events?resume_point=" + std::to_string(session.resume_point) +
                     " HTTP/1.1\r\nHost: " + o.host + "\r\nCookie: " + session.cookie +
                     "\r\nAccept: text/event-stream\r\n\r\n";
    publish_head = "POST /api/conversations/" + session.conversation +
                   " HTTP/1.1\r\nHost: " + o.host + "\r\nCookie: " + session.cookie +
                   "\r\nContent-Type: application/json\r\nContent-Length: ";
    build = [&o, publish_head](std::int64_t now) {
      // The text is JSON-safe: digits, '@', letters, spaces and a period.
      std::string body = "{\"body\":\"" + StampedText(now, o.payload) + "\"}";
      return publish_head + std::to_string(body.size()) + "\r\n\r\n" + body;
    };
  } else {
    stream_request = "GET " + o.sub_path + " HTTP/1.1\r\nHost: " + o.host +
                     "\r\nAccept: text/event-stream\r\n\r\n";
    publish_head = "POST " + o.pub_path + " HTTP/1.1\r\nHost: " + o.host +
                   "\r\nContent-Type: text/plain\r\nContent-Length: ";
    build = [&o, publish_head](std::int64_t now) {
      std::string body = StampedText(now, o.payload);
      return publish_head + std::to_string(body.size()) + "\r\n\r\n" + body;
    };
  }

  Receiver rx(o, /*check_ids=*/quire);
  const std::int64_t open_start = NowNs();
  rx.Open(o.streams, stream_request);
  const double open_seconds = static_cast<double>(NowNs() - open_start) / 1e9;

  // Prime: one message that every stream must see before the clock starts, so
  // that every stream is live (attached to the hub / subscribed) when it does.
  std::uint64_t primed = 0;
  if (o.streams > 0) {
    std::string req = build(NowNs());
    const std::size_t head_end = req.find("\r\n\r\n");
    const std::string body = req.substr(head_end + 4);
    const std::string path = quire ? req.substr(5, req.find(' ', 5) - 5) : o.pub_path;
    std::string headers;
    if (quire) headers = stream_request.substr(stream_request.find("Cookie:"));
    if (quire) headers = headers.substr(0, headers.find("\r\n") + 2);
    Response r = HttpCall(o.host, o.port, "POST", path, body, headers);
    if (r.status < 200 || r.status >= 300) {
      Die("priming send answered " + std::to_string(r.status) + ": " + r.body);
    }
    primed = 1;
    const std::int64_t deadline = NowNs() + 20'000'000'000LL;
    while (rx.StreamsWithAtLeast(1) < static_cast<std::uint64_t>(o.streams)) {
      if (NowNs() > deadline) {
        Die("only " + std::to_string(rx.StreamsWithAtLeast(1)) + " of " +
            std::to_string(o.streams) + " streams got the priming event within 20 s");
      }
      rx.Poll(50);
    }
  }

  const std::int64_t start = NowNs();
  const std::int64_t measure_start = start + static_cast<std::int64_t>(o.warmup * 1e9);
  const std::int64_t stop = measure_start + static_cast<std::int64_t>(o.duration * 1e9);
  rx.SetWindow(measure_start, stop);

  SenderOptions so;
  so.host = o.host;
  so.port = o.port;
  so.connections = o.senders;
  so.rate = o.rate;
  so.measure_start_ns = measure_start;
  so.stop_ns = stop;
  so.build = build;
  SenderResult sent;
  std::atomic<bool> sender_done{false};
  std::thread sender([&] {
    sent = SenderPool(so).Run();
    sender_done.store(true);
  });

  // Receive until the sender is done, then until every live stream has every
  // message (or 10 s).
  bool sampled_start = false, sampled_stop = false;
  std::vector<ThreadCpu> cpu_before, cpu_after;
  double self_before = 0, self_after = 0;
  long long machine_before = 0, machine_after = 0, steal_before = 0, steal_after = 0;
  std::int64_t drain_deadline = 0;
  for (;;) {
    const std::int64_t now = NowNs();
    if (!sampled_start && now >= measure_start) {
      cpu_before = SampleProcesses(o.server_pids);
      self_before = SelfCpuSeconds();
      machine_before = MachineBusyTicks(&steal_before);
      sampled_start = true;
    }
    if (!sampled_stop && now >= stop) {
      cpu_after = SampleProcesses(o.server_pids);
      self_after = SelfCpuSeconds();
      machine_after = MachineBusyTicks(&steal_after);
      sampled_stop = true;
    }
    if (sender_done.load()) {
      if (drain_deadline == 0) drain_deadline = now + 10'000'000'000LL;
      const std::uint64_t expected = primed + sent.ok;
      if (o.streams == 0 || rx.live() == 0 || rx.MinEvents() >= expected || now > drain_deadline) {
        break;
      }
    }
    if (o.streams > 0) {
      rx.Poll(10);
    } else {
      usleep(10000);
    }
  }
  sender.join();

  const double secs = o.duration;
  const double sends_per_s = static_cast<double>(sent.ok_measured) / secs;
  const double delivered_per_s = static_cast<double>(rx.delivered_in_window()) / secs;
  const std::uint64_t expected = primed + sent.ok;
  const Histogram& lat = rx.latency();
  double server_cpu = 0;
  const std::string server_report =
      CpuReport(cpu_before, cpu_after, secs, ReadThreadRoles(o.thread_roles), &server_cpu);
  const double client_cpu = (self_after - self_before) / secs * 100.0;
  const double machine_cpu = TicksToPercent(machine_after - machine_before, secs);
  const double other_cpu = std::max(0.0, machine_cpu - server_cpu - client_cpu);
  const double steal_cpu = TicksToPercent(steal_after - steal_before, secs);

  std::printf("== fan-out: %s, %d streams, %d sender connections, %s ==\n", o.label.c_str(),
              o.streams, o.senders,
              o.rate > 0 ? (Fixed(o.rate, 0) + " sends/s offered").c_str() : "full speed");
  std::printf("streams opened in %.2f s; warm-up %.1f s, measured %.1f s\n", open_seconds, o.warmup,
              secs);
  std::printf("sends: %.0f/s answered 2xx (total %llu sent, %llu ok, %llu errors, %llu late)\n",
              sends_per_s, static_cast<unsigned long long>(sent.sent),
              static_cast<unsigned long long>(sent.ok),
              static_cast<unsigned long long>(sent.errors),
              static_cast<unsigned long long>(sent.late));
  if (!sent.first_error.empty()) std::printf("first error: %s\n", sent.first_error.c_str());
  std::printf("send → answer: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              sent.latency.QuantileMs(0.50), sent.latency.QuantileMs(0.99), sent.latency.MaxMs());
  if (o.streams > 0) {
    std::printf("delivered: %.0f events/s in the window (%llu in total)\n", delivered_per_s,
                static_cast<unsigned long long>(rx.delivered_total()));
    std::printf("send → deliver: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms (%llu)\n",
                lat.QuantileMs(0.50), lat.QuantileMs(0.99), lat.QuantileMs(0.999), lat.MaxMs(),
                static_cast<unsigned long long>(lat.count()));
    std::printf(
        "completeness: %llu expected per stream, min %llu, max %llu; %d streams ended by the "
        "server; %llu id gaps\n",
        static_cast<unsigned long long>(expected), static_cast<unsigned long long>(rx.MinEvents()),
        static_cast<unsigned long long>(rx.MaxEvents()), rx.ended(),
        static_cast<unsigned long long>(rx.Gaps()));
  }
  if (!o.server_pids.empty()) std::printf("server CPU: %s\n", server_report.c_str());
  std::printf(
      "client CPU: %.0f%%; whole machine %.0f%% of %ld00%%, of which %.0f%% other processes, "
      "kernel threads and hypervisor steal (steal alone %.0f%%)\n",
      client_cpu, machine_cpu, sysconf(_SC_NPROCESSORS_ONLN), other_cpu, steal_cpu);
  std::printf(
      "RESULT bench=fanout label=%s target=%s streams=%d senders=%d rate=%.0f sends_per_s=%.1f "
      "send_p50_ms=%.3f send_p99_ms=%.3f delivered_per_s=%.0f lat_p50_ms=%.3f lat_p99_ms=%.3f "
      "lat_max_ms=%.3f expected=%llu min_events=%llu ended=%d gaps=%llu errors=%llu "
      "server_cpu=%.0f client_cpu=%.0f other_cpu=%.0f steal_cpu=%.0f\n",
      o.label.c_str(), o.target.c_str(), o.streams, o.senders, o.rate, sends_per_s,
      sent.latency.QuantileMs(0.5), sent.latency.QuantileMs(0.99), delivered_per_s,
      lat.QuantileMs(0.5), lat.QuantileMs(0.99), lat.MaxMs(),
      static_cast<unsigned long long>(expected), static_cast<unsigned long long>(rx.MinEvents()),
      rx.ended(), static_cast<unsigned long long>(rx.Gaps()),
      static_cast<unsigned long long>(sent.errors), server_cpu, client_cpu, other_cpu, steal_cpu);
  return 0;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  return bench::Main(argc, argv);
}
