// The calls that hand Pistache work for its reactor threads from another
// thread: Peer::send and Transport::armTimer.
//
// They are functions of their own, in their own file and never inlined, so
// that they appear under these names in ThreadSanitizer's reports. What
// Pistache allocates in them (a write's buffer, its promise, a timer entry)
// reaches the reactor through Pistache's lock-free queue, whose atomics TSan
// cannot see in the uninstrumented libpistache; tools/tsan-suppressions.txt
// names these functions for that reason. Nothing but the Pistache call
// happens in them.
//
// Thread-safety: as Pistache's: any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>

#include <pistache/async.h>
#include <pistache/peer.h>
#include <pistache/stream.h>
#include <pistache/transport.h>

namespace quire::http::pistache_calls {

// peer.send(bytes): queues a copy of the bytes on the peer's transport.
[[gnu::noinline]] Pistache::Async::Promise<ssize_t> Send(Pistache::Tcp::Peer& peer,
                                                         const Pistache::RawBuffer& bytes);

// transport.armTimer(fd, timeout, deferred): queues a timer to the transport's reactor.
[[gnu::noinline]] void ArmTimer(Pistache::Tcp::Transport& transport, int fd,
                                std::chrono::milliseconds timeout,
                                Pistache::Async::Deferred<std::uint64_t> deferred);

}  // namespace quire::http::pistache_calls
