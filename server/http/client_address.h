// The address of the client behind a request: the connection's peer, or,
// when that peer is a trusted reverse proxy, the last address it appended
// to X-Forwarded-For (the one it got the request from).
//
// Thread-safe: a plain function.
#pragma once

#include <string>
#include <vector>

#include "server/http/http_server.h"

namespace quire::http {

std::string ClientAddress(const Request& request, const std::vector<std::string>& trusted_proxies);

}  // namespace quire::http
