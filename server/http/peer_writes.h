// Writes through Pistache's queue for a connection (Tcp::Peer::send), with
// the byte counts that tell a stream when its head is written and let
// Shutdown() wait until what was queued has left. Peer::send only pushes onto
// the transport's queue, so it is safe from any thread; the reactor writes
// the bytes later and settles the write's promise.
//
// Thread-safety: a Pending may be shared by any threads. A Sent belongs to
// the thread that enqueued it until Attach hands it to Pistache.
#pragma once

#include <sys/types.h>

#include <pistache/async.h>
#include <pistache/peer.h>
#include <pistache/stream.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace quire::http {

using Pistache::Tcp::Peer;

// Byte accounting for the write queue.
struct Pending {
  std::atomic<std::size_t> bytes{0};
  std::mutex mu;
  std::condition_variable cv;
  // Runs after every decrease (a stream's drain check); set before the
  // counter is shared, never changed after.
  std::function<void()> on_sub;

  void Add(std::size_t n) { bytes.fetch_add(n); }
  void Sub(std::size_t n) {
    bytes.fetch_sub(n);
    Notify();
    if (on_sub) on_sub();
  }
  void Notify() {
    { std::lock_guard<std::mutex> lock(mu); }
    cv.notify_all();
  }
};

// One enqueued write. The continuation is attached by Attach(), which must be
// called without holding any lock that the continuation takes: it may run at
// once on this thread (if the reactor already wrote the bytes) while
// Pistache holds the promise's own mutex.
struct Sent {
  std::optional<Pistache::Async::Promise<ssize_t>> promise;
  std::size_t size = 0;
};

// Enqueues `bytes` on the peer's transport queue (Pistache copies them
// into it); counts them in `counters`.
Sent Enqueue(const std::shared_ptr<Peer>& peer, const Pistache::RawBuffer& bytes,
             std::initializer_list<Pending*> counters);
Sent Enqueue(const std::shared_ptr<Peer>& peer, std::string bytes,
             std::initializer_list<Pending*> counters);

// Decrements the counters once the reactor wrote the bytes, then runs
// `after` (on the reactor, or at once on this thread if the bytes are already
// written). If the connection breaks first, Pistache drops the write without
// settling it and nothing runs.
void Attach(Sent& sent, std::vector<std::shared_ptr<Pending>> counters,
            std::function<void()> after = nullptr);

}  // namespace quire::http
