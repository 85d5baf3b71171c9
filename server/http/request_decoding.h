// How a request's target and Cookie header become the fields of a Request:
// path and query percent-decoded ('+' is a space in the query; the last of
// a query name wins), cookies split (the first of a name wins).
//
// Thread-safe: plain functions.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "server/http/http_server.h"

namespace quire::http {

// Sets req->path and req->query from a request target (a #fragment is
// dropped); a malformed percent escape is kept as is and sets
// req->query_malformed.
void SplitTarget(std::string_view target, Request* req);

// Adds the cookies of a Cookie header to *cookies.
void ParseCookies(std::string_view header, std::map<std::string, std::string>* cookies);

}  // namespace quire::http
