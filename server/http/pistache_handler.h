// PistacheHandler: Quire's Pistache Http::Handler. It replaces onInput and
// onConnection (private in Pistache 0.0.5, so they cannot be wrapped) with
// its own guard in front of Pistache's parser: each request's header block is
// scanned (request_head.h) before Pistache sees it, a connection's input
// waits while one of its requests is being answered, and a complete request
// goes to a worker with a ResponderImpl.
//
// Thread-safety: Pistache makes one clone per reactor thread and calls each
// only on its reactor; all per-connection state is in the peer's data map
// (connection.h). Ownership: the ServerCore outlives every clone.
#pragma once

#include <cstddef>
#include <memory>

#include <pistache/http.h>
#include <pistache/peer.h>

#include "server/http/server_core.h"

namespace quire::http {

class PistacheHandler final : public Pistache::Http::Handler {
 public:
  HTTP_PROTOTYPE(PistacheHandler)

  explicit PistacheHandler(ServerCore* core) : core_(core) {}

  // Unused: onInput below parses and dispatches itself (Http::Handler::onInput
  // is private in 0.0.5, so it cannot be wrapped).
  void onRequest(const Pistache::Http::Request&, Pistache::Http::ResponseWriter writer) override {
    writer.send(Pistache::Http::Code::Internal_Server_Error);
  }

  // Replaces Http::Handler::onConnection (private in 0.0.5, so it cannot be
  // called), which only does the first line (checked in the disassembly).
  void onConnection(const std::shared_ptr<Peer>& peer) override;

  void onInput(const char* buffer, std::size_t len, const std::shared_ptr<Peer>& peer) override;

  void onDisconnection(const std::shared_ptr<Peer>& peer) override;

 private:
  ServerCore* core_;
};

}  // namespace quire::http
