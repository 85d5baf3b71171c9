// The state of one connection. ConnState is reactor-confined and kept in
// the peer's data map (under kConnStateKey), so it dies with the peer (also
// after a timeout close, which does not call onDisconnection) and then
// closes the connection's streams. ConnShared is what the reactor shares
// with the workers: whether the connection is gone, its open streams, its
// queued bytes, and whether a request of it is being answered (requests are
// answered in order). ConnRegistry knows every live connection.
//
// Thread-safety: ConnShared and ConnRegistry may be used from any thread
// (each guards its state with its mutex); ConnState only on its reactor.
// Ownership: the peer owns its ConnState, which owns the connection's
// ConnShared with whoever answers its requests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/http/on_reactor.h"
#include "server/http/peer_writes.h"
#include "server/http/request_head.h"
#include "server/http/stream_impl.h"

namespace quire::http {

constexpr const char* kConnStateKey = "quire.conn";

// Shared between the reactor (disconnect) and the workers (answers, streams).
struct ConnShared;

// Every live connection, so that Shutdown() can wait for their queued bytes.
struct ConnRegistry {
  std::mutex mu;
  std::unordered_map<const ConnShared*, std::weak_ptr<ConnShared>> conns;

  void Add(const std::shared_ptr<ConnShared>& c) {
    std::lock_guard<std::mutex> lock(mu);
    conns.emplace(c.get(), c);
  }
  void Remove(const ConnShared* c) {
    std::lock_guard<std::mutex> lock(mu);
    conns.erase(c);
  }
  std::size_t Count() {
    std::lock_guard<std::mutex> lock(mu);
    return conns.size();
  }
  std::vector<std::shared_ptr<ConnShared>> Snapshot() {
    std::vector<std::shared_ptr<ConnShared>> out;
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [key, weak] : conns) {
      if (auto c = weak.lock()) out.push_back(std::move(c));
    }
    return out;
  }
};

struct ConnShared {
  ConnShared(std::shared_ptr<ConnRegistry> r, std::weak_ptr<Peer> p, ReactorRef reactor_ref,
             ino_t inode)
      : registry(std::move(r)), peer(std::move(p)), reactor(reactor_ref), socket_inode(inode) {}

  const std::shared_ptr<ConnRegistry> registry;
  const std::weak_ptr<Peer> peer;
  const ReactorRef reactor;
  // Tells this connection's socket from a later one given the same fd number.
  const ino_t socket_inode;
  // Bytes queued on this connection and not yet written. Pistache drops the
  // writes of a connection that broke without settling them, so this only
  // means something while the connection is not gone.
  const std::shared_ptr<Pending> pending = std::make_shared<Pending>();
  std::mutex mu;
  bool gone = false;
  std::vector<std::weak_ptr<StreamImpl>> streams;
  // Requests are answered in order (HTTP/1.1 pipelining): while one is being
  // answered (`busy`), input waits in ConnState::backlog and `wake` asks the
  // answer to resume the connection on its reactor.
  bool busy = false;
  bool wake = false;
  std::chrono::steady_clock::time_point last_active = std::chrono::steady_clock::now();

  bool IsGone() {
    std::lock_guard<std::mutex> lock(mu);
    return gone;
  }
  void SetBusy() {
    std::lock_guard<std::mutex> lock(mu);
    busy = true;
    last_active = std::chrono::steady_clock::now();
  }
  // Since when the connection has been an idle keep-alive connection: no
  // request in progress, no open stream. Nullopt while it is not.
  std::optional<std::chrono::steady_clock::time_point> IdleSince() {
    std::lock_guard<std::mutex> lock(mu);
    if (busy || gone) return std::nullopt;
    for (const auto& w : streams) {
      auto stream = w.lock();
      if (stream && !stream->Closed()) return std::nullopt;
    }
    return last_active;
  }
  // Reactor: true if input must wait.
  bool WaitIfBusy() {
    std::lock_guard<std::mutex> lock(mu);
    if (busy) wake = true;
    return busy;
  }
  // Answer: true if waiting input must be resumed.
  bool Release() {
    std::lock_guard<std::mutex> lock(mu);
    busy = false;
    last_active = std::chrono::steady_clock::now();
    bool w = wake && !gone;
    wake = false;
    return w;
  }

  bool AddStream(const std::shared_ptr<StreamImpl>& s) {
    std::lock_guard<std::mutex> lock(mu);
    if (gone) return false;
    std::erase_if(streams, [](const std::weak_ptr<StreamImpl>& w) {
      auto p = w.lock();
      return !p || p->Closed();
    });
    streams.push_back(s);
    return true;
  }

  void CloseAll() {
    std::vector<std::weak_ptr<StreamImpl>> list;
    {
      std::lock_guard<std::mutex> lock(mu);
      gone = true;
      list.swap(streams);
    }
    registry->Remove(this);
    for (auto& w : list) {
      if (auto s = w.lock()) s->MarkGone();
    }
  }
};

// The connection's socket under a new fd owned by the caller, or -1. Pistache
// closes its own fd on its reactor at any moment (a disconnect, a timeout)
// and the number can be reused at once, so the duplicate is checked to be
// this connection's socket: sockets have unique inode numbers.
int DuplicateSocket(const ConnShared& conn);

// Half-closes the connection (FIN after what was written); run once the
// answer is written.
std::function<void()> HalfCloseWhenWritten(std::shared_ptr<ConnShared> conn);

// Closes the connection at once, both directions.
std::function<void()> DropConnection(std::shared_ptr<ConnShared> conn);

// Reactor-confined; stored in the peer's data map, so it dies with the peer.
struct ConnState {
  ConnState(ReactorRef reactor_ref, const std::shared_ptr<ConnRegistry>& conns,
            std::weak_ptr<Peer> peer, ino_t socket_inode)
      : shared(std::make_shared<ConnShared>(conns, std::move(peer), reactor_ref, socket_inode)),
        reactor(reactor_ref) {
    conns->Add(shared);
  }
  ~ConnState() { shared->CloseAll(); }
  ConnState(const ConnState&) = delete;
  ConnState& operator=(const ConnState&) = delete;

  const std::shared_ptr<ConnShared> shared;
  const ReactorRef reactor;
  bool rejected = false;    // an error was answered; all further input is dropped
  bool in_request = false;  // bytes of a request have arrived
  bool in_body = false;     // its header block is complete
  // Input that arrived while a request was being answered; see ConnShared.
  std::string backlog;
  std::string head_bytes;
  std::size_t body_left = 0;
  RequestHead head;
};

}  // namespace quire::http
