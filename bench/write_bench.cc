// write_bench: durable message writes per second with C concurrent senders.
//
// Each sender is one keep-alive connection that posts a ~200-byte message and
// waits for its 202 (which Quire sends only after the commit is durable)
// before posting the next. With one sender every message pays a whole commit
// (one fsync); with more, the committer folds the waiting writes into one
// transaction, so throughput should rise with C until something else limits.
//
// --not-found instead sends `GET /api/…` for a path that does not exist,
// with the same session cookie, over the same connections, and counts the
// 404s: what the HTTP path answers at all, the yardstick for durable sends
// (issue 10: at least half of it).
//
// --fsync-probe DIR instead measures the disk alone: a 4 KiB overwrite and
// fdatasync in a loop for two seconds, the floor of one commit.
//
// Prints a human-readable report and one `RESULT key=value …` line.
#include <fcntl.h>

#include <thread>

#include "bench_common.h"
#include "sender.h"

namespace bench {
namespace {

// Overwrites 4 KiB blocks of a preallocated file, each followed by
// fdatasync: like SQLite's WAL, which reuses its file, so every sync flushes
// data only (no size change, no metadata journal commit).
int FsyncProbe(const std::string& dir, double seconds) {
  const std::string path = dir + "/fsync-probe.bin";
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) Die("cannot create " + path);
  constexpr std::size_t kBlock = 4096;
  constexpr std::size_t kBlocks = 1024;  // 4 MiB, cycled through
  std::string block(kBlock, 'x');
  for (std::size_t i = 0; i < kBlocks; ++i) {
    if (::write(fd, block.data(), kBlock) != static_cast<ssize_t>(kBlock)) Die("write failed");
  }
  if (fsync(fd) != 0) Die("fsync failed on " + path);
  Histogram h;
  std::size_t i = 0;
  const std::int64_t end = NowNs() + static_cast<std::int64_t>(seconds * 1e9);
  while (NowNs() < end) {
    const std::int64_t t = NowNs();
    const auto offset = static_cast<off_t>((i++ % kBlocks) * kBlock);
    if (::pwrite(fd, block.data(), kBlock, offset) != static_cast<ssize_t>(kBlock) ||
        fdatasync(fd) != 0) {
      Die("pwrite/fdatasync failed on " + path);
    }
    h.Record(NowNs() - t);
  }
  close(fd);
  unlink(path.c_str());
  const double per_s = static_cast<double>(h.count()) / seconds;
  std::printf(
      "== fsync probe: %s ==\n4 KiB overwrite + fdatasync: %.0f/s, p50 %.3f ms, p99 %.3f ms\n",
      dir.c_str(), per_s, h.QuantileMs(0.5), h.QuantileMs(0.99));
  std::printf("RESULT bench=fsync per_s=%.0f p50_ms=%.3f p99_ms=%.3f\n", per_s, h.QuantileMs(0.5),
              h.QuantileMs(0.99));
  return 0;
}

int Main(int argc, char** argv) {
  Args args(argc, argv);
  if (args.Has("help")) {
    std::printf(
        "write_bench --port N [--senders C] [--warmup S] [--duration S] [--payload BYTES]\n"
        "            [--not-found] [--server-pid PID] [--thread-roles FILE]\n"
        "write_bench --fsync-probe DIR [--duration S]\n");
    return 0;
  }
  const std::string probe = args.Str("fsync-probe", "");
  const std::string host = args.Str("host", "127.0.0.1");
  const int port = static_cast<int>(args.Int("port", 0));
  const int senders = static_cast<int>(args.Int("senders", 1));
  const double warmup = args.Double("warmup", 1);
  const double duration = args.Double("duration", 8);
  const auto payload = static_cast<std::size_t>(args.Int("payload", 200));
  const std::string server_pids = args.Str("server-pid", "");
  const std::string thread_roles = args.Str("thread-roles", "");
  const std::string user = args.Str("user", "bench");
  const std::string password = args.Str("password", "bench password 0123");
  const bool not_found = args.Has("not-found");
  args.CheckAllUsed();
  if (duration <= 0 || duration > 60) Die("--duration must be in (0, 60] seconds");
  if (!probe.empty()) return FsyncProbe(probe, std::min(duration, 2.0));
  if (port <= 0) Die("--port is required");
  if (senders < 1 || senders > 4096) Die("--senders must be in [1, 4096]");
  RaiseFdLimit();

  QuireSession session = QuireSetup(host, port, user, password);
  const std::string head = "POST /api/conversations/" + session.conversation +
                           " HTTP/1.1\r\nHost: " + host + "\r\nCookie: " + session.cookie +
                           "\r\nContent-Type: application/json\r\nContent-Length: ";
  SenderOptions so;
  so.host = host;
  so.port = port;
  so.connections = senders;
  const std::int64_t start = NowNs();
  so.measure_start_ns = start + static_cast<std::int64_t>(warmup * 1e9);
  so.stop_ns = so.measure_start_ns + static_cast<std::int64_t>(duration * 1e9);
  const std::string not_found_request = "GET /api/no-such-path HTTP/1.1\r\nHost: " + host +
                                        "\r\nCookie: " + session.cookie + "\r\n\r\n";
  if (not_found) so.expected_status = 404;
  so.build = [&](std::int64_t now) {
    if (not_found) return not_found_request;
    std::string body = "{\"body\":\"" + StampedText(now, payload) + "\"}";
    return head + std::to_string(body.size()) + "\r\n\r\n" + body;
  };

  // Sample the server's threads over the measured window from a helper thread.
  std::vector<ThreadCpu> before, after;
  long long machine_before = 0, machine_after = 0, steal_before = 0, steal_after = 0;
  double self_before = 0, self_after = 0;
  std::thread sampler([&] {
    while (NowNs() < so.measure_start_ns) usleep(1000);
    before = SampleProcesses(server_pids);
    machine_before = MachineBusyTicks(&steal_before);
    self_before = SelfCpuSeconds();
    while (NowNs() < so.stop_ns) usleep(1000);
    after = SampleProcesses(server_pids);
    machine_after = MachineBusyTicks(&steal_after);
    self_after = SelfCpuSeconds();
  });
  SenderResult r = SenderPool(so).Run();
  sampler.join();
  double server_cpu = 0;
  const std::string cpu =
      CpuReport(before, after, duration, ReadThreadRoles(thread_roles), &server_cpu);
  const double client_cpu = (self_after - self_before) / duration * 100.0;
  const double machine_cpu = TicksToPercent(machine_after - machine_before, duration);
  const double other_cpu = std::max(0.0, machine_cpu - server_cpu - client_cpu);
  const double steal_cpu = TicksToPercent(steal_after - steal_before, duration);

  const double per_s = static_cast<double>(r.ok_measured) / duration;
  const char* what = not_found ? "unknown-path requests" : "durable writes";
  std::printf("== %s: %d concurrent senders ==\n", what, senders);
  std::printf("%s: %.0f/s answered %s (%llu ok, %llu errors, %llu broken)\n",
              not_found ? "requests" : "messages", per_s,
              not_found ? "404" : "202 after the commit", static_cast<unsigned long long>(r.ok),
              static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.broken));
  if (!r.first_error.empty()) std::printf("first error: %s\n", r.first_error.c_str());
  std::printf("send → answer: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.latency.QuantileMs(0.5),
              r.latency.QuantileMs(0.99), r.latency.MaxMs());
  if (!server_pids.empty()) std::printf("server CPU: %s\n", cpu.c_str());
  std::printf(
      "client CPU: %.0f%%; whole machine %.0f%%, of which %.0f%% other processes, kernel threads "
      "and hypervisor steal (steal alone %.0f%%)\n",
      client_cpu, machine_cpu, other_cpu, steal_cpu);
  std::printf(
      "RESULT bench=%s senders=%d per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%llu "
      "server_cpu=%.0f client_cpu=%.0f other_cpu=%.0f steal_cpu=%.0f\n",
      not_found ? "notfound" : "write", senders, per_s, r.latency.QuantileMs(0.5),
      r.latency.QuantileMs(0.99), r.latency.MaxMs(), static_cast<unsigned long long>(r.errors),
      server_cpu, client_cpu, other_cpu, steal_cpu);
  return 0;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  return bench::Main(argc, argv);
}
