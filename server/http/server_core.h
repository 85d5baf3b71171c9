// ServerCore: what the parts of the server share (the options, the
// application's handler, the worker pool, the registries of streams and
// connections, the socket watcher, the count of kept requests). CloseIdle
// closes idle keep-alive connections.
//
// Thread-safety: options and handler are set before Start and only read
// after; the other members are thread-safe themselves, the kept count is
// guarded by kept_mu. Ownership: HttpServer::Impl owns it; the Pistache
// handler clones and the responders point to it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "server/http/connection.h"
#include "server/http/http_server.h"
#include "server/http/log.h"
#include "server/http/stream_impl.h"
#include "server/http/worker_pool.h"
#include "server/http/writable_watcher.h"

namespace quire::http {

// What the handler class needs of the server; shared with every handler clone.
struct ServerCore {
  ServerOptions options;
  Handler handler;
  WorkerPool pool;
  std::shared_ptr<StreamRegistry> registry = std::make_shared<StreamRegistry>();
  std::shared_ptr<ConnRegistry> conns = std::make_shared<ConnRegistry>();
  // Streams wait here for their full sockets to drain; outlives every open
  // stream (Shutdown ends them all before the ServerCore goes).
  WritableWatcher watcher;
  std::atomic<bool> accepting{true};

  // Requests kept past their handler (Responder::Keep) and not answered yet.
  std::mutex kept_mu;
  std::condition_variable kept_cv;
  std::size_t kept = 0;

  void AddKept() {
    std::lock_guard<std::mutex> lock(kept_mu);
    ++kept;
  }
  void ReleaseKept() {
    std::lock_guard<std::mutex> lock(kept_mu);
    if (--kept == 0) kept_cv.notify_all();
  }
  void WaitKept() {
    std::unique_lock<std::mutex> lock(kept_mu);
    while (!kept_cv.wait_for(lock, std::chrono::seconds(5), [&] { return kept == 0; })) {
      Log("shutdown waits for " + std::to_string(kept) + " kept requests to be answered");
    }
  }
};

// Closes idle keep-alive connections, longest idle first: every one idle for
// longer than the idle timeout, and as many more as it takes to bring the
// count down to `keep`. Returns how many it closed.
std::size_t CloseIdle(ServerCore& core, std::size_t keep);

}  // namespace quire::http
