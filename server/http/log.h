// Log: how the HTTP layer reports what it cannot answer to anyone (a failed
// send, a handler that threw, a stream cut for a slow client): one error line
// about "http" (server/log/log.h).
//
// Thread-safe: each line is written whole, so lines of several threads do
// not interleave.
#pragma once

#include <string>

namespace quire::http {

void Log(const std::string& line);

}  // namespace quire::http
