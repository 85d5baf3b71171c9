// Running work on a connection's reactor thread from another thread. What
// must happen there (half-closing after `Connection: close`, resuming
// pipelined input, closing an idle connection or every one at shutdown)
// hops there with a 1 ms Transport::armTimer.
//
// Thread-safety: OnReactor may be called from any thread; a ReactorRef is an
// immutable value, valid while the reactor runs.
#pragma once

#include <functional>
#include <thread>

#include <pistache/transport.h>

namespace quire::http {

// The reactor thread that owns a connection, and its transport.
struct ReactorRef {
  Pistache::Tcp::Transport* transport = nullptr;
  std::thread::id thread;
};

// Runs `fn` on the reactor thread of `r`: at once if called there (unless
// `defer`), else through a 1 ms timer armed on that transport
// (Transport::armTimer queues the timer to the reactor; the continuation is
// attached before the timer is armed, so it always runs there). It does not
// run if the reactor stops first.
void OnReactor(const ReactorRef& r, std::function<void()> fn, bool defer = false);

}  // namespace quire::http
