// Api: the pilcrow HTTP API on top of ChatService and EventHub.
//
// Routes requests, applies the error precedence of the contract (503 not set
// up, 404/405, 413, 401, 400, then the state of the thing addressed), parses
// and checks JSON bodies, and writes replies. Boot and the event stream are
// streamed in pages, never built whole in memory and never holding a read
// transaction while writing to a socket.
//
// Thread-safety: Handle may be called concurrently from worker threads.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "server/chat/chat_service.h"
#include "server/fanout/event_hub.h"
#include "server/http/http_server.h"

namespace quire::api {

struct ApiOptions {
  int heartbeat_seconds = 30;
  std::size_t max_body_bytes = 64 * 1024;
  // Peers whose X-Forwarded-For names the client (reverse proxies);
  // from anyone else the header is ignored.
  std::vector<std::string> trusted_proxies;
  // --public-url starts with https://: every cookie is Secure.
  bool public_url_is_https = false;
  std::size_t boot_page = 2048;  // events per store read during boot
};

class Api {
 public:
  Api(chat::ChatService& service, fanout::EventHub& hub, ApiOptions options);

  void Handle(const http::Request& request, http::Responder& responder);

 private:
  struct Call;
  struct Route;
  static const Route kRoutes[];

  void Dispatch(Call& call);
  void ReplyLogin(Call& call, const chat::Result<chat::Login>& result);
  void ReplyInvitation(Call& call, const chat::Result<chat::InvitationView>& result);

  // One per route.
  void Setup(Call& call);
  void LogIn(Call& call);
  // The client's address: the peer, or what a trusted proxy says it is.
  std::string ClientAddress(const http::Request& request) const;
  // True when the client reached the server over TLS: --public-url is
  // https, or a trusted proxy says X-Forwarded-Proto: https.
  bool OverTls(const http::Request& request) const;
  void LogOut(Call& call);
  void ChangePassword(Call& call);
  void Invite(Call& call);
  void GetInvitation(Call& call);
  void AcceptInvitation(Call& call);
  void Boot(Call& call);
  void Events(Call& call);
  void CreateConversation(Call& call);
  void SendMessage(Call& call);
  void DeleteConversation(Call& call);
  void DeleteMessage(Call& call);

  chat::ChatService& service_;
  fanout::EventHub& hub_;
  const ApiOptions options_;
};

}  // namespace quire::api
