#include "server/http/pistache_calls.h"

#include <utility>

namespace quire::http::pistache_calls {
namespace {

// The Pistache calls themselves. TSan names a frame after the caller of an
// instrumented function: Send and ArmTimer show in a report only because they
// call these (instrumented, never inlined), not libpistache directly.
[[gnu::noinline]] Pistache::Async::Promise<ssize_t> CallSend(Pistache::Tcp::Peer& peer,
                                                             const Pistache::RawBuffer& bytes) {
  return peer.send(bytes);
}

[[gnu::noinline]] void CallArmTimer(Pistache::Tcp::Transport& transport, int fd,
                                    std::chrono::milliseconds timeout,
                                    Pistache::Async::Deferred<std::uint64_t> deferred) {
  transport.armTimer(fd, timeout, std::move(deferred));
}

}  // namespace

Pistache::Async::Promise<ssize_t> Send(Pistache::Tcp::Peer& peer,
                                       const Pistache::RawBuffer& bytes) {
  return CallSend(peer, bytes);
}

void ArmTimer(Pistache::Tcp::Transport& transport, int fd, std::chrono::milliseconds timeout,
              Pistache::Async::Deferred<std::uint64_t> deferred) {
  CallArmTimer(transport, fd, timeout, std::move(deferred));
}

}  // namespace quire::http::pistache_calls
