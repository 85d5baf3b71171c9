// The server's log lines on stderr, in one of two formats chosen once at
// start (--log-format): text, "quire: <about>: <message>", or JSON, one
// object per line ({"time","level","about","message"}), for log shippers.
// Errors are what nobody else hears of (a failed database call answered
// 503, a handler that threw); access lines are one per request
// (--access-log) and carry only the fields given, never a body, a token or
// a password.
//
// Thread-safe: each line is written whole with one write(2), so lines of
// several threads never interleave.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quire::log {

enum class Format { kText, kJson };

// Before any other thread logs.
void SetFormat(Format format);

// An unexpected error, about `about` ("storage", "http", "boot", ...).
void Error(std::string_view about, std::string_view message);
// Something an operator should know that is not an error (a recovery).
void Info(std::string_view about, std::string_view message);

// One access-log line: text "quire access: k=v k=v" (values with spaces
// quoted), or a JSON object with "time", "log": "access" and the fields.
// A field whose value is all digits is written as a number in JSON.
void Access(const std::vector<std::pair<std::string_view, std::string>>& fields);

}  // namespace quire::log
