// The guard's scan of a request's header block, before Pistache sees a byte
// of it: what the block says (RequestHead), or why it is refused (400, 411
// for Transfer-Encoding, 413 for a Content-Length over the hard limit).
// Pistache alone would reserve the announced size, and answer 400 to header
// values it cannot parse before the application could answer.
//
// Thread-safe: plain functions and values.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace quire::http {

constexpr std::size_t kMaxHeadBytes = 64 * 1024;  // request line + headers

// What the guard learned from a request's header block.
struct RequestHead {
  std::string method;
  std::string target;
  bool http10 = false;
  bool keep_alive = true;
  bool expect_continue = false;
  std::size_t content_length = 0;
  std::map<std::string, std::string> headers;
};

struct GuardError {
  int status;
  std::string message;
};

// Parses the header block (request line to the empty line, inclusive).
std::optional<GuardError> ScanHead(std::string_view block, std::size_t hard_body_limit,
                                   RequestHead* head);

}  // namespace quire::http
