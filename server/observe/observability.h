// Observability: how the server is watched from outside.
//  - GET /healthz: the process is up (200, no database call);
//  - GET /readyz: the database is reachable and takes a commit, as the
//    readiness probe last found it (a thread of its own commits an empty
//    write every two seconds, so a probe request never waits for the
//    database and probe floods cost the database nothing);
//  - GET /metrics: the Prometheus text format, only for loopback clients
//    and the ranges of --metrics-allow (403 for anyone else);
//  - per answered request (http::ServerOptions::on_answer): the request
//    counters and latency histogram, and the access-log line with
//    --access-log.
// None of them needs a login.
//
// Thread-safety: every method may be called from any thread.
// Ownership: the Store must outlive it; the destructor stops the probe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/http/http_server.h"
#include "server/observe/address_range.h"
#include "server/observe/metrics.h"
#include "storage/store.h"

namespace quire::observe {

struct ObservabilityOptions {
  std::vector<AddressRange> metrics_allow;   // besides loopback
  std::vector<std::string> trusted_proxies;  // as for the API: who may name the client
  bool access_log = false;
  std::chrono::milliseconds readiness_interval{2000};
  std::string version;  // shown by /healthz
};

// What the server is doing, read when /metrics is scraped. Each may be empty.
struct ServerGauges {
  std::function<std::size_t()> open_streams;
  std::function<std::size_t()> stream_bytes_queued;
  // The newest committed sequence minus the slowest live stream's position.
  std::function<std::int64_t()> fanout_lag;
  std::function<std::uint64_t()> events_committed;
  std::function<std::uint64_t()> database_errors;
};

class Observability {
 public:
  Observability(storage::Store& store, ObservabilityOptions options);
  ~Observability();
  Observability(const Observability&) = delete;
  Observability& operator=(const Observability&) = delete;

  // Before the server starts serving.
  void SetGauges(ServerGauges gauges);

  // /healthz, /readyz and /metrics.
  static bool Handles(std::string_view path);
  void Handle(const http::Request& request, http::Responder& responder);

  // http::ServerOptions::on_answer.
  void OnAnswer(const http::Exchange& exchange);
  // Committer's batch observer: one call per batch applied.
  void OnBatch(std::size_t writes, std::chrono::microseconds took, bool failed);

  MetricSet& metrics() { return metrics_; }

 private:
  void Probe();  // the readiness thread
  void AnswerReady(http::Responder& responder);
  void AnswerMetrics(const http::Request& request, http::Responder& responder);

  storage::Store& store_;
  const ObservabilityOptions options_;
  MetricSet metrics_;
  std::mutex gauges_mu_;
  ServerGauges gauges_;  // guarded by gauges_mu_

  std::mutex probe_mu_;
  std::condition_variable probe_wake_;
  bool stopping_ = false;                             // guarded by probe_mu_
  bool ready_ = false;                                // guarded by probe_mu_
  std::string not_ready_why_ = "not checked yet";     // guarded by probe_mu_
  double commit_ms_ = 0;                              // guarded by probe_mu_
  std::chrono::system_clock::time_point checked_at_;  // guarded by probe_mu_
  std::thread probe_;
};

}  // namespace quire::observe
