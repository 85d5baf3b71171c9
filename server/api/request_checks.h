// Checks of a request that come before the application looks at it: its
// body's media type and where a browser sent it from. Pure functions of the
// request, so that every route applies them the same way (docs/api/README.md,
// "Conventions").
#pragma once

#include <string_view>

#include "server/http/http_server.h"

namespace quire::api {

// True for `application/json`, with an optional `charset=utf-8` parameter
// (names and values case-insensitive, spaces around `;` and `=` allowed).
bool IsJsonMediaType(std::string_view content_type);

// True when a browser says the request comes from another origin than the
// server's own: an `Origin` header (the "null" origin included) whose host
// and port differ from the request's `Host`, or without `Origin` a
// `Sec-Fetch-Site` other than `same-origin` or `none`. Clients that send
// neither (curl, apps) are never foreign. `Host` is what the browser
// addressed, so a reverse proxy must pass it through unchanged.
bool IsForeignOrigin(const http::Request& request);

}  // namespace quire::api
