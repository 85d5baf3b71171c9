#include "server/http/server_core.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace quire::http {

std::size_t CloseIdle(ServerCore& core, std::size_t keep) {
  const auto now = std::chrono::steady_clock::now();
  const auto conns = core.conns->Snapshot();
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::shared_ptr<ConnShared>>> idle;
  for (const auto& c : conns) {
    if (auto since = c->IdleSince()) idle.emplace_back(*since, c);
  }
  std::sort(idle.begin(), idle.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const std::size_t excess = conns.size() > keep ? conns.size() - keep : 0;
  std::size_t closed = 0;
  for (const auto& [since, conn] : idle) {
    if (now - since < core.options.idle_timeout && closed >= excess) break;
    // The close runs on the connection's reactor, later than this decision
    // (unless this is that reactor): a request that arrived meanwhile must not
    // be handled and lose its answer (the client would send it again: a
    // second POST). So the reactor closes only if the connection is still
    // idle since `since` (it alone marks a connection busy, so nothing comes
    // between check and close), and stops parsing its input first: bytes of a
    // request already in the socket can still be read after the shutdown.
    OnReactor(conn->reactor, [conn = conn, since = since] {
      if (conn->IdleSince() != since) return;
      if (auto peer = conn->peer.lock()) {
        auto* st = static_cast<ConnState*>(peer->tryGetData(kConnStateKey).get());
        if (st) st->rejected = true;
      }
      DropConnection(conn)();  // at once: this is the reactor
    });
    ++closed;
  }
  return closed;
}

}  // namespace quire::http
