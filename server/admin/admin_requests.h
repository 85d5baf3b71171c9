// The operations of `quire admin` and their wire form: one JSON line each
// way over the admin socket (admin_socket.h). Execute runs an operation
// through ChatService, the same in the running server (the socket's thread)
// and in `quire admin` when no server runs, so both print the same line.
//
// Thread-safety: stateless functions; Execute may run concurrently with the
// server's requests (ChatService is thread-safe).
#pragma once

#include <optional>
#include <string>

#include "server/chat/chat_service.h"

namespace quire::admin {

struct Request {
  std::string command;                  // "reset-password", "logout-all" or "invite"
  std::string name;                     // reset-password, logout-all: the user
  std::optional<std::string> password;  // reset-password: given; none: a new random one
  std::string as;                       // invite: the issuer; empty: the owner (first user)
  std::string public_url;               // invite: the link's base; empty: the server's
};

struct Response {
  int exit_code = 0;  // 0: done, `line` goes to stdout; else the failure, for stderr
  std::string line;
};

std::string EncodeRequest(const Request& request);
// False, with the reason in *error, when `line` is not a request.
bool DecodeRequest(const std::string& line, Request* request, std::string* error);
std::string EncodeResponse(const Response& response);
bool DecodeResponse(const std::string& line, Response* response);

// Runs `request`. An invitation's link starts with the request's public URL,
// else `server_public_url`; with neither, the id and the path are printed.
Response Execute(chat::ChatService& service, const Request& request,
                 const std::string& server_public_url);

}  // namespace quire::admin
