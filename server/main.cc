// quire: the chat server binary. `quire serve --help` lists the options.
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <variant>

#include "server/admin/admin_requests.h"
#include "server/admin/admin_socket.h"
#include "server/api/api.h"
#include "server/chat/chat_service.h"
#include "server/chat/committer.h"
#include "server/client_assets/asset_server.h"
#include "server/commands/admin_command.h"
#include "server/commands/maintenance_commands.h"
#include "server/commands/open_database.h"
#include "server/config.h"
#include "server/fanout/event_hub.h"
#include "server/http/http_server.h"
#include "server/log/log.h"
#include "server/observe/observability.h"
#include "server/version.h"
#include "storage/lmdb/lmdb_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/registry.h"
#include "storage/sqlite/sqlite_store.h"

namespace {

// "/api" and everything under "/api/" is the API; every other path is the
// browser client.
bool IsApiPath(std::string_view path) {
  return path == "/api" || path.substr(0, 5) == "/api/";
}

// Runs the retention sweep every `interval` until stopped.
class RetentionLoop {
 public:
  RetentionLoop(quire::chat::ChatService& service, std::chrono::microseconds interval)
      : service_(service), interval_(interval), thread_([this] { Run(); }) {}
  ~RetentionLoop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!wake_.wait_for(lock, interval_, [this] { return stopping_; })) {
      lock.unlock();
      service_.RunRetention();  // failures are logged; the next round retries
      lock.lock();
    }
  }

  quire::chat::ChatService& service_;
  const std::chrono::microseconds interval_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// Raises the soft limit on open files to the hard one. Every connection is a
// file, and every open stream two (it writes to its own duplicate of the
// socket): the common default of 1,024 would cap a server at a few hundred
// streams.
// Returns the limit in force.
std::size_t RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    } else {
      std::fprintf(stderr, "quire: cannot raise the open file limit to %llu\n",
                   static_cast<unsigned long long>(limit.rlim_max));
    }
  }
  return static_cast<std::size_t>(limit.rlim_cur);
}

void RegisterBackends(quire::storage::Registry& registry) {
  quire::storage::RegisterSqliteBackend(registry);
  quire::storage::RegisterPostgresBackend(registry);
  quire::storage::RegisterLmdbBackend(registry);
}

int Serve(const quire::ServeConfig& config) {
  using namespace quire;
  log::SetFormat(config.log_format == "json" ? log::Format::kJson : log::Format::kText);
  const std::size_t open_files = RaiseOpenFileLimit();
  storage::Registry& registry = storage::Registry::Global();
  RegisterBackends(registry);

  std::unique_ptr<storage::Store> store;
  if (!commands::OpenChatStore(registry, config.database_url, storage::EngineUse::kServe, "quire",
                               &store)) {
    return 1;
  }

  observe::ObservabilityOptions observe_options;
  for (const std::string& range : config.metrics_allow) {
    observe_options.metrics_allow.push_back(*observe::AddressRange::Parse(range));  // checked
  }
  observe_options.trusted_proxies = config.trusted_proxies;
  observe_options.access_log = config.access_log;
  observe_options.version = Version();
  observe::Observability observability(*store, observe_options);

  chat::SystemClock clock;
  // The committer waits for the event streams (EventHub::Pace) once the hub
  // runs; unlinked before the hub goes.
  struct PaceLink {
    std::mutex mu;
    fanout::EventHub* hub = nullptr;
  } pace_link;
  chat::Committer committer(
      *store, 256,
      [&pace_link](std::int64_t committed_seq) {
        std::lock_guard<std::mutex> lock(pace_link.mu);
        if (pace_link.hub) pace_link.hub->Pace(committed_seq);
      },
      [&observability](std::size_t writes, std::chrono::microseconds took, bool failed) {
        observability.OnBatch(writes, took, failed);
      });
  chat::ChatService service(*store, committer, clock, config.policy);
  fanout::HubOptions hub_options;
  hub_options.heartbeat = std::chrono::seconds(config.heartbeat_seconds);
  // A commit's 202s are queued before its events' stream bytes.
  hub_options.before_publish = [&committer] {
    committer.AwaitReplies(std::chrono::milliseconds(20));
  };
  fanout::EventHub hub(*store, hub_options);
  service.set_session_observer(&hub);
  std::unique_ptr<PaceLink, void (*)(PaceLink*)> unlink_pace(&pace_link, [](PaceLink* link) {
    std::lock_guard<std::mutex> lock(link->mu);
    link->hub = nullptr;  // runs before the hub goes, on every return
  });
  {
    std::lock_guard<std::mutex> lock(pace_link.mu);
    pace_link.hub = &hub;
  }
  storage::Status status = hub.Start();
  if (!status.ok()) {
    std::fprintf(stderr, "quire: cannot read the database: %s\n", status.ToString().c_str());
    return 1;
  }
  api::ApiOptions api_options;
  api_options.heartbeat_seconds = config.heartbeat_seconds;
  api_options.trusted_proxies = config.trusted_proxies;
  api_options.public_url_is_https = config.public_url.rfind("https://", 0) == 0;
  api::Api api(service, hub, api_options);

  http::ServerOptions http_options;
  http_options.address = config.address;
  http_options.port = static_cast<std::uint16_t>(config.port);
  http_options.reactor_threads = config.threads;
  http_options.worker_threads = std::max(8, 4 * config.threads);
  http_options.idle_timeout = std::chrono::seconds(config.idle_timeout_seconds);
  http_options.stream_buffer_limit = static_cast<std::size_t>(config.stream_buffer_limit_mib) << 20;
  // Half the open files (a stream holds two), less room for the databases,
  // the listener and the rest: accept() never runs out of files.
  http_options.max_connections =
      config.max_connections > 0
          ? static_cast<std::size_t>(config.max_connections)
          : std::max<std::size_t>(16, open_files > 256 ? (open_files - 128) / 2 : open_files / 4);
  const client_assets::AssetServer assets;
  http_options.on_answer = [&observability](const http::Exchange& exchange) {
    observability.OnAnswer(exchange);
  };

  // `quire admin` asks through it; its requests run on its own thread.
  std::unique_ptr<admin::AdminSocket> admin_socket;
  if (!config.admin_socket.empty()) {
    admin_socket = std::make_unique<admin::AdminSocket>(
        config.admin_socket, [&service, &config](const std::string& line) {
          admin::Request request;
          std::string why;
          if (!admin::DecodeRequest(line, &request, &why)) {
            return admin::EncodeResponse(admin::Response{2, why});
          }
          return admin::EncodeResponse(admin::Execute(service, request, config.public_url));
        });
    if (std::string error; !admin_socket->Start(&error)) {
      if (config.admin_socket_required) {
        std::fprintf(stderr, "quire: %s\n", error.c_str());
        return 1;
      }
      std::fprintf(stderr, "quire: %s; serving without an admin socket (set --admin-socket)\n",
                   error.c_str());
      admin_socket.reset();
    }
  }
  http::HttpServer server(
      http_options,
      [&api, &assets, &observability](const http::Request& request, http::Responder& responder) {
        if (observe::Observability::Handles(request.path)) {
          observability.Handle(request, responder);
        } else if (IsApiPath(request.path)) {
          api.Handle(request, responder);
        } else {
          responder.SetRoute("(browser client)");
          assets.Handle(request, responder);
        }
      });
  observe::ServerGauges gauges;
  gauges.open_streams = [&hub] {
    const fanout::EventHub::Stats stats = hub.GetStats();
    return stats.live_streams + stats.replaying_streams;
  };
  gauges.stream_bytes_queued = [&server] { return server.GetStats().unread_stream_bytes; };
  gauges.fanout_lag = [&hub, &store]() -> std::int64_t {
    const fanout::EventHub::Stats stats = hub.GetStats();
    storage::Head head;
    if (stats.live_streams == 0 || !store->GetHead(&head).ok()) return 0;
    return std::max<std::int64_t>(0, head.last_seq - stats.published);
  };
  gauges.events_committed = [&hub] { return hub.GetStats().events_published; };
  gauges.database_errors = [] { return chat::StorageErrorCount(); };
  observability.SetGauges(std::move(gauges));
  std::string error;
  if (!server.Start(&error)) {
    std::fprintf(stderr, "quire: %s\n", error.c_str());
    return 1;
  }
  RetentionLoop retention(service, std::chrono::microseconds(service.RetentionInterval()));
  // The backend that serves, named by the scheme the registry opened it by.
  // On stderr, so stdout stays the one listening line; printed only once
  // everything started, so a failure to start stays one line on stderr. The
  // API tests check it against the backend they are meant to test.
  std::fprintf(stderr, "quire: storage %s (%s)\n", storage::UrlScheme(config.database_url).c_str(),
               storage::RedactedUrl(config.database_url).c_str());
  std::printf("quire listening on http://%s:%u\n", config.address.c_str(), server.port());
  std::fflush(stdout);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int signal_number = 0;
  sigwait(&signals, &signal_number);

  // No new admin requests (the socket file goes); then streams end first,
  // then requests in flight finish (their writes commit), then the committer
  // drains and the store closes as the objects go.
  admin_socket.reset();
  hub.Stop();
  server.Shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Fixed malloc thresholds. With glibc's dynamic ones, the buffers of boot
  // and fan-out (a page of events, up to ~1 MiB, allocated on one thread and
  // freed on a reactor) are returned to the kernel and faulted in again one
  // page after another: a third of a large boot's time went to page faults.
  // Up to 4 MiB of free heap is now kept per arena.
  mallopt(M_MMAP_THRESHOLD, 2 << 20);
  mallopt(M_TRIM_THRESHOLD, 4 << 20);

  quire::Command command;
  int exit_code = 0;
  if (!quire::ParseCommandLine(argc, argv, &command, &exit_code)) return exit_code;
  signal(SIGPIPE, SIG_IGN);
  if (const auto* config = std::get_if<quire::ServeConfig>(&command)) {
    // Block the stop signals before any thread starts, so every thread
    // inherits the mask and only sigwait in main sees them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    return Serve(*config);
  }
  // The maintenance commands stop at a signal as they are: what a write
  // transaction had not committed is rolled back, and a copy cut short is
  // recognized and started over when run again.
  quire::storage::Registry& registry = quire::storage::Registry::Global();
  RegisterBackends(registry);
  using namespace quire::commands;
  if (const auto* config = std::get_if<quire::MigrateConfig>(&command)) {
    return Migrate(registry, *config);
  }
  if (const auto* config = std::get_if<quire::BackupConfig>(&command)) {
    return Backup(registry, *config);
  }
  if (const auto* config = std::get_if<quire::RestoreConfig>(&command)) {
    return Restore(registry, *config);
  }
  if (const auto* config = std::get_if<quire::AdminConfig>(&command)) {
    return Admin(registry, *config);
  }
  return Check(registry, std::get<quire::CheckConfig>(command));
}
