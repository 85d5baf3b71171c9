// HttpServer on Pistache 0.0.5 (Debian snapshot 2022-09-01).
//
// How the traps of that snapshot are handled (see http_server.h and
// docs/architecture.md, "Pistache"):
//
//  - Http::Handler::onInput/onConnection are private in 0.0.5, so they cannot
//    be wrapped. PistacheHandler replaces them, using the public parser API
//    (getParser / feed / parse / reset), with its own guard in front: each
//    request's header block is scanned before Pistache sees a byte, and
//    Transfer-Encoding (411), Content-Length over the hard limit (413) and
//    oversized header blocks (431) are refused with a JSON error,
//    `Connection: close`, a half-close once the answer is written, and every
//    further byte of the connection is dropped. Pistache alone reserves the
//    announced size (a chunk size of 7fffffff reserves 2 GiB of address space
//    per connection; Content-Length 1e14 answers 500 "std::bad_alloc").
//  - Responses and stream heads go through Tcp::Peer::send(RawBuffer), which
//    only pushes onto the transport's MPSC queue, so it is safe from any
//    thread. ResponseWriter and ResponseStream are never used: the first drops
//    raw headers and re-serializes cookies, the second crashes when flushed
//    off the reactor thread.
//  - Stream chunks bypass that queue: through Pistache each one cost a copy,
//    a promise, an eventfd wake-up, a send() and an epoll_ctl on the reactor,
//    and two reactors saturated at ~160,000 chunks/s. A stream writes to its
//    own dup() of the socket (Pistache may close its fd number at any moment
//    and the number be reused; the duplicate is checked by inode to be this
//    connection's socket), from the thread that produces the chunk, once its
//    head has left Pistache's queue; what a full socket refuses waits in a
//    SocketQueue until a WritableWatcher sees it drain. At the end, whatever
//    is still waiting goes back to Pistache's queue with the final chunk, so
//    the connection's next response follows it in order.
//  - Pistache's idle reaper (every 500 ms) sends a 408 into a busy peer after
//    headerTimeout, measured from the parser's last reset. Peer::setIdle is a
//    plain bool read by the reactor, so it is only written here, on the
//    reactor thread: false (and a parser reset, restarting the clock) when the
//    first byte of a request arrives, true (and a reset) when the request is
//    complete and handed to a worker. A request being handled, a stream and an
//    idle keep-alive connection are all "idle" for Pistache: closed silently
//    after keepaliveTimeout, never sent a 408. Streams are ended with a final
//    chunk by our reaper just before that deadline.
//  - Work that must happen on a connection's reactor thread but is triggered
//    elsewhere (half-closing after `Connection: close`, resuming pipelined
//    input, closing at shutdown) hops there with a 1 ms Transport::armTimer
//    whose continuation is attached before the timer is armed (OnReactor).
//  - Requests of one connection are answered in order: while one is in a
//    worker (or its stream is open), further input waits in a backlog.
//  - Per-connection state lives in the peer's data map (reactor-confined). Its
//    destructor runs when Pistache drops the peer (also after a timeout close,
//    which does not call onDisconnection), and closes the connection's streams.
//  - Pistache never closes peer sockets on shutdown; Shutdown() shuts each one
//    down on its reactor so that Pistache closes it as for a disconnect.
//
// Where: pistache_handler (the guard and the parser), request_head (the scan
// of a header block), request_decoding, connection (per-connection state),
// responder_impl, stream_impl (with socket_queue and writable_watcher),
// peer_writes (Pistache's queue), on_reactor, worker_pool, server_core (what
// they share), response_text, log; chunk.cc frames chunks. This file starts
// and stops the server.
#include "server/http/http_server.h"

#include <pistache/endpoint.h>
#include <pistache/net.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "server/http/connection.h"
#include "server/http/log.h"
#include "server/http/pistache_handler.h"
#include "server/http/request_head.h"
#include "server/http/server_core.h"

namespace quire::http {

struct HttpServer::Impl {
  ServerCore core;
  std::unique_ptr<Pistache::Http::Endpoint> endpoint;
  std::shared_ptr<PistacheHandler> handler;
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;

  std::thread reaper;
  std::mutex reaper_mu;
  std::condition_variable reaper_cv;
  bool reaper_stop = false;

  // Ends streams that reached keepalive_timeout (minus a margin), so they
  // finish with a final chunk before Pistache drops the idle connection.
  void Reap() {
    std::unique_lock<std::mutex> lock(reaper_mu);
    while (!reaper_stop) {
      reaper_cv.wait_for(lock, std::chrono::milliseconds(200));
      if (reaper_stop) break;
      lock.unlock();
      auto now = std::chrono::steady_clock::now();
      for (auto& s : core.registry->Snapshot()) {
        if (s->deadline() <= now) s->End();
        s->CheckDrain(now);  // drops a stream whose client stopped reading
      }
      CloseIdle(core, core.options.max_connections > 0 ? core.options.max_connections
                                                       : std::numeric_limits<std::size_t>::max());
      lock.lock();
    }
  }

  void StopReaper() {
    {
      std::lock_guard<std::mutex> lock(reaper_mu);
      reaper_stop = true;
    }
    reaper_cv.notify_all();
    if (reaper.joinable()) reaper.join();
  }
};

HttpServer::HttpServer(ServerOptions options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->core.options = std::move(options);
  impl_->core.registry->limit = impl_->core.options.stream_buffer_limit;
  impl_->core.handler = std::move(handler);
}

HttpServer::~HttpServer() {
  Shutdown();
}

bool HttpServer::Start(std::string* error) {
  auto fail = [&](const std::string& message) {
    if (error) *error = message;
    return false;
  };
  if (impl_->started) return fail("the server was already started");
  const ServerOptions& o = impl_->core.options;
  const std::string where = o.address + ":" + std::to_string(o.port);
  try {
    Pistache::Address address(o.address, Pistache::Port(o.port));
    auto endpoint = std::make_unique<Pistache::Http::Endpoint>(address);
    auto opts = Pistache::Http::Endpoint::options()
                    .threads(std::max(1, o.reactor_threads))
                    // SO_REUSEADDR only skips TIME_WAIT; a port in use still
                    // fails (verified), unlike ReusePort.
                    .flags(Pistache::Tcp::Options::ReuseAddr)
                    .maxRequestSize(o.hard_body_limit + kMaxHeadBytes)
                    .headerTimeout(o.header_timeout)
                    .bodyTimeout(o.header_timeout)
                    .keepaliveTimeout(o.keepalive_timeout);
    endpoint->init(opts);
    auto handler = std::make_shared<PistacheHandler>(&impl_->core);
    endpoint->setHandler(handler);
    endpoint->serveThreaded();
    impl_->port = endpoint->getPort();
    impl_->endpoint = std::move(endpoint);
    impl_->handler = std::move(handler);
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    return fail("cannot listen on " + where + ": " + what);
  }
  impl_->started = true;
  impl_->core.pool.Start(impl_->core.options.worker_threads);
  impl_->reaper = std::thread([impl = impl_.get()] { impl->Reap(); });
  return true;
}

std::uint16_t HttpServer::port() const {
  return impl_->port;
}

HttpServer::Stats HttpServer::GetStats() const {
  Stats stats;
  const std::shared_ptr<StreamRegistry>& registry = impl_->core.registry;
  {
    std::lock_guard<std::mutex> lock(registry->mu);
    stats.open_streams = registry->streams.size();
  }
  stats.unread_stream_bytes = registry->unread.load();
  return stats;
}

void HttpServer::Shutdown() {
  Impl& impl = *impl_;
  if (!impl.started || impl.stopped) return;
  impl.stopped = true;
  ServerCore& core = impl.core;

  // 1. New requests get 503 from now on.
  core.accepting.store(false);
  // 2. End every open stream; streams started from now on are born ended.
  {
    std::lock_guard<std::mutex> lock(core.registry->mu);
    core.registry->stopping = true;
  }
  for (auto& s : core.registry->Snapshot()) s->End();
  impl.StopReaper();
  // 3. Let handlers in flight (and queued) finish; new jobs are refused.
  //    Then let the requests they kept be answered (their commits complete).
  core.pool.Drain();
  core.WaitKept();
  // 4. Give the reactors a moment to write what is queued to the clients
  //    still there (one that does not read must not hold us up).
  const auto flush_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  for (auto& conn : core.conns->Snapshot()) {
    std::unique_lock<std::mutex> lock(conn->pending->mu);
    conn->pending->cv.wait_until(
        lock, flush_deadline, [&] { return conn->pending->bytes.load() == 0 || conn->IsGone(); });
  }
  // 5. Stop the listener and the reactors; dropping the endpoint closes every
  //    connection.
  // 5. Close every connection. Pistache 0.0.5 never closes a peer's socket
  //    on shutdown (the fds stay open until the process exits and clients
  //    hang), and Endpoint::shutdown() only signals the reactor threads, so
  //    the sockets cannot be closed from here either. Instead each one is
  //    shut down on its own reactor; Pistache then reads EOF and closes and
  //    forgets it as for any disconnect. Connections accepted meanwhile are
  //    caught by the next round.
  const auto close_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  std::unordered_map<const ConnShared*, std::weak_ptr<ConnShared>> asked;
  for (;;) {
    auto live = core.conns->Snapshot();
    if (live.empty() || std::chrono::steady_clock::now() >= close_deadline) break;
    for (auto& conn : live) {
      if (!asked.emplace(conn.get(), conn).second) continue;
      DropConnection(conn)();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // 6. Stop the acceptor and the reactors (joined when the endpoint is
  //    destroyed).
  try {
    impl.endpoint->shutdown();
  } catch (const std::exception& e) {
    Log(std::string("endpoint shutdown failed: ") + e.what());
  }
  impl.endpoint.reset();
  impl.handler.reset();
}

}  // namespace quire::http
