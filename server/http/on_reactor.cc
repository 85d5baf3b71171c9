#include "server/http/on_reactor.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <pistache/async.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "server/http/log.h"
#include "server/http/pistache_calls.h"

namespace quire::http {

using Pistache::Async::Promise;

void OnReactor(const ReactorRef& r, std::function<void()> fn, bool defer) {
  if (!defer && std::this_thread::get_id() == r.thread) {
    fn();
    return;
  }
  if (!r.transport) return;
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) return;
  // Closes the timer fd once the continuation is gone (run or dropped).
  std::shared_ptr<void> closer(nullptr, [tfd](void*) { ::close(tfd); });
  std::optional<Pistache::Async::Deferred<uint64_t>> deferred;
  Promise<uint64_t> timer(
      [&](Pistache::Async::Deferred<uint64_t> d) { deferred.emplace(std::move(d)); });
  timer.then([fn, closer](uint64_t) { fn(); }, [closer](std::exception_ptr) {});
  try {
    pistache_calls::ArmTimer(*r.transport, tfd, std::chrono::milliseconds(1), std::move(*deferred));
  } catch (const std::exception& e) {
    Log(std::string("cannot arm a reactor timer: ") + e.what());
  }
}

}  // namespace quire::http
