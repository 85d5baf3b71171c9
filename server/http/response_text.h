// The text of what the HTTP layer writes itself: reason phrases, JSON error
// bodies, and whole error responses for requests refused before they reach
// a worker; and the check that keeps CR and LF out of header lines.
//
// Thread-safe: plain functions.
#pragma once

#include <string>
#include <string_view>

namespace quire::http {

// {"error":"<message>"}: quotes and backslashes escaped, control characters
// left out.
std::string ErrorJson(std::string_view message);

// The reason phrase of a status ("Not Found"); "Status" for one not listed.
const char* Reason(int status);

// True when `s` holds a CR or LF: a header line with one would split the
// response, so it is dropped instead.
bool HasCrLf(std::string_view s);

// A whole error response with a JSON body; `close` says Connection: close,
// else keep-alive.
std::string ErrorResponse(int status, std::string_view message, bool close);

}  // namespace quire::http
