#include "server/observe/observability.h"

#include <nlohmann/json.hpp>

#include "server/http/client_address.h"
#include "server/log/log.h"
#include "storage/write_ops.h"

namespace quire::observe {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

http::Response Json(int status, const json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump();
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

const std::vector<double> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const std::vector<double> kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256};

}  // namespace

Observability::Observability(storage::Store& store, ObservabilityOptions options)
    : store_(store), options_(std::move(options)) {
  metrics_.AddCounterFamily("quire_http_requests_total",
                            "HTTP requests answered, by route, method and status",
                            {"route", "method", "status"});
  metrics_.AddHistogramFamily("quire_http_request_duration_seconds",
                              "From a request read to its answer queued (a stream: its start)",
                              kLatencyBuckets, "route");
  metrics_.AddCounterFamily("quire_logins_failed_total", "Logins refused (wrong name or password)",
                            {});
  metrics_.AddCounterFamily("quire_logins_throttled_total", "Logins refused by the throttle (429)",
                            {});
  metrics_.AddHistogramFamily("quire_commit_batch_writes", "Writes per committed batch",
                              kBatchBuckets);
  metrics_.AddHistogramFamily("quire_commit_duration_seconds", "Time to apply and commit one batch",
                              kLatencyBuckets);
  metrics_.AddCounterFamily("quire_commit_batches_failed_total",
                            "Batches the database refused as a whole", {});
  probe_ = std::thread([this] { Probe(); });
}

Observability::~Observability() {
  {
    std::lock_guard<std::mutex> lock(probe_mu_);
    stopping_ = true;
  }
  probe_wake_.notify_all();
  probe_.join();
}

void Observability::SetGauges(ServerGauges gauges) {
  auto read = [this](auto member) {
    return [this, member]() -> double {
      std::lock_guard<std::mutex> lock(gauges_mu_);
      const auto& f = gauges_.*member;
      return f ? static_cast<double>(f()) : 0.0;
    };
  };
  {
    std::lock_guard<std::mutex> lock(gauges_mu_);
    gauges_ = std::move(gauges);
  }
  metrics_.AddCallback("quire_streams_open", "Event streams open", "gauge",
                       read(&ServerGauges::open_streams));
  metrics_.AddCallback("quire_stream_bytes_queued",
                       "Bytes written for event streams and not yet taken by their sockets",
                       "gauge", read(&ServerGauges::stream_bytes_queued));
  metrics_.AddCallback("quire_fanout_lag_events",
                       "Newest committed sequence minus the slowest live stream's position",
                       "gauge", read(&ServerGauges::fanout_lag));
  metrics_.AddCallback("quire_events_committed_total",
                       "Events committed (by this or another instance), as the event pump read "
                       "them since start",
                       "counter", read(&ServerGauges::events_committed));
  metrics_.AddCallback("quire_database_errors_total",
                       "Database calls that failed and were answered 503", "counter",
                       read(&ServerGauges::database_errors));
}

bool Observability::Handles(std::string_view path) {
  return path == "/healthz" || path == "/readyz" || path == "/metrics";
}

void Observability::Handle(const http::Request& request, http::Responder& responder) {
  responder.SetRoute(request.path);  // one of the three: no ids in it
  if (request.method != "GET" && request.method != "HEAD") {
    return responder.Send(Json(405, {{"error", "method not allowed"}}));
  }
  if (request.path == "/healthz") {
    return responder.Send(Json(200, {{"status", "ok"}, {"version", options_.version}}));
  }
  if (request.path == "/readyz") return AnswerReady(responder);
  AnswerMetrics(request, responder);
}

void Observability::AnswerReady(http::Responder& responder) {
  std::lock_guard<std::mutex> lock(probe_mu_);
  const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now() - checked_at_);
  // A probe that stopped coming back (a database call hanging) is not ready.
  const bool stale = age > 3 * options_.readiness_interval + std::chrono::seconds(5);
  if (ready_ && !stale) {
    return responder.Send(Json(200, {{"status", "ready"},
                                     {"database", "ok"},
                                     {"commit_ms", commit_ms_},
                                     {"checked_ms_ago", age.count()}}));
  }
  responder.Send(
      Json(503, {{"status", "not ready"},
                 {"error", stale && ready_ ? "the database check is overdue" : not_ready_why_}}));
}

void Observability::AnswerMetrics(const http::Request& request, http::Responder& responder) {
  const std::string client = http::ClientAddress(request, options_.trusted_proxies);
  bool allowed = IsLoopback(client);
  for (const AddressRange& range : options_.metrics_allow)
    allowed = allowed || range.Contains(client);
  if (!allowed) {
    return responder.Send(
        Json(403, {{"error", "metrics are answered to loopback and --metrics-allow only"}}));
  }
  http::Response r;
  r.status = 200;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = metrics_.Render();
  r.headers.emplace_back("Cache-Control", "no-store");
  responder.Send(std::move(r));
}

void Observability::OnAnswer(const http::Exchange& e) {
  const std::string route = e.route.empty() ? "(none)" : std::string(e.route);
  const std::string status = std::to_string(e.status);
  metrics_.Add("quire_http_requests_total", {route, std::string(e.method), status});
  metrics_.Observe("quire_http_request_duration_seconds", route,
                   std::chrono::duration<double>(e.duration).count());
  if (route == "/api/auth/login") {
    if (e.status == 401) metrics_.Add("quire_logins_failed_total", {});
    if (e.status == 429) metrics_.Add("quire_logins_throttled_total", {});
  }
  if (options_.access_log) {
    // Never the path (ids), a header, a cookie or a body: the route names it.
    log::Access({{"method", std::string(e.method)},
                 {"route", route},
                 {"status", status},
                 {"ms", std::to_string(e.duration.count() / 1000)},
                 {"bytes", std::to_string(e.body_bytes)},
                 {"stream", e.stream ? "yes" : "no"},
                 {"client", std::string(e.remote_address)}});
  }
}

void Observability::OnBatch(std::size_t writes, std::chrono::microseconds took, bool failed) {
  metrics_.Observe("quire_commit_batch_writes", "", static_cast<double>(writes));
  metrics_.Observe("quire_commit_duration_seconds", "",
                   std::chrono::duration<double>(took).count());
  if (failed) metrics_.Add("quire_commit_batches_failed_total", {});
}

void Observability::Probe() {
  std::unique_lock<std::mutex> lock(probe_mu_);
  while (!stopping_) {
    lock.unlock();
    // An empty purge: it takes the write lock and commits, and changes
    // nothing (no cutoff lies after the epoch).
    std::vector<storage::Write> probe(1);
    probe[0].op = storage::op::Purge{0, 0, 0, 0};
    const auto start = Clock::now();
    storage::Status s = store_.Apply(probe);
    if (s.ok()) s = probe[0].status;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    lock.lock();
    const bool first = checked_at_ == std::chrono::system_clock::time_point{};
    if (first ? !s.ok() : s.ok() != ready_) {
      if (s.ok()) {
        log::Info("readiness", "the database takes commits again");
      } else {
        log::Error("readiness", "the database takes no commit: " + s.ToString());
      }
    }
    ready_ = s.ok();
    not_ready_why_ = s.ok() ? "" : "the database takes no commit: " + s.message();
    commit_ms_ = ms;
    checked_at_ = std::chrono::system_clock::now();
    probe_wake_.wait_for(lock, options_.readiness_interval, [this] { return stopping_; });
  }
}

}  // namespace quire::observe
