#include "server/http/request_head.h"

#include "server/http/header_text.h"

namespace quire::http {

namespace {

// A header name: RFC 9110 token characters only.
bool IsToken(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::optional<GuardError> ScanHead(std::string_view block, std::size_t hard_body_limit,
                                   RequestHead* head) {
  const GuardError bad{400, "malformed request"};
  std::size_t eol = block.find("\r\n");
  std::string_view line = block.substr(0, eol);
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1 || sp1 == 0) return bad;
  head->method = std::string(line.substr(0, sp1));
  head->target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string_view version = line.substr(sp2 + 1);
  if (head->target.empty() || head->target.find(' ') != std::string::npos) return bad;
  for (char c : head->target) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) return bad;
  }
  if (version == "HTTP/1.1") {
    head->http10 = false;
  } else if (version == "HTTP/1.0") {
    head->http10 = true;
  } else {
    return GuardError{400, "unsupported HTTP version"};
  }

  bool has_length = false;
  bool has_encoding = false;
  std::size_t pos = eol + 2;
  while (pos < block.size()) {
    std::size_t end = block.find("\r\n", pos);
    if (end == std::string_view::npos) return bad;
    line = block.substr(pos, end - pos);
    pos = end + 2;
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') return bad;  // obsolete line folding
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return bad;
    std::string name = AsciiLower(line.substr(0, colon));
    if (!IsToken(name)) return bad;
    std::string_view value = TrimSpace(line.substr(colon + 1));
    // No control characters in a value (a bare CR, a NUL...) but the tab.
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) {
        return GuardError{400, "invalid character in a header value"};
      }
    }
    if (name == "host" && head->headers.count("host") > 0) {
      return GuardError{400, "more than one Host header"};
    }
    if (name == "transfer-encoding") {
      has_encoding = true;
    } else if (name == "content-length") {
      if (value.empty() || value.size() > 19 ||
          value.find_first_not_of("0123456789") != std::string_view::npos) {
        return GuardError{400, "invalid Content-Length"};
      }
      std::size_t n = std::stoull(std::string(value));
      if (has_length && n != head->content_length) {
        return GuardError{400, "conflicting Content-Length headers"};
      }
      has_length = true;
      head->content_length = n;
    }
    auto [it, inserted] = head->headers.emplace(name, std::string(value));
    if (!inserted && name != "content-length") {
      it->second += name == "cookie" ? "; " : ", ";
      it->second += value;
    }
  }
  if (!head->http10 && head->headers.count("host") == 0) {
    return GuardError{400, "an HTTP/1.1 request needs a Host header"};
  }
  if (has_encoding) {
    return GuardError{411, "Transfer-Encoding is not supported: send the body with Content-Length"};
  }
  if (has_length && head->content_length > hard_body_limit) {
    return GuardError{413, "request body too large"};
  }

  std::string connection;
  if (auto it = head->headers.find("connection"); it != head->headers.end()) {
    connection = AsciiLower(it->second);
  }
  auto has_token = [&](std::string_view token) {
    std::string_view rest = connection;
    while (!rest.empty()) {
      std::size_t comma = rest.find(',');
      if (TrimSpace(rest.substr(0, comma)) == token) return true;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    return false;
  };
  head->keep_alive = head->http10 ? has_token("keep-alive") : !has_token("close");
  if (auto it = head->headers.find("expect"); it != head->headers.end()) {
    head->expect_continue = !head->http10 && AsciiLower(it->second) == "100-continue";
  }
  return std::nullopt;
}

}  // namespace quire::http
