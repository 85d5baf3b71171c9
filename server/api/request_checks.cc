#include "server/api/request_checks.h"

#include <string>

#include "server/http/header_text.h"

namespace quire::api {
namespace {

using http::AsciiLower;
using http::TrimSpace;

// "host:port" without the scheme's default port, lower case.
std::string Authority(std::string_view host_port, std::string_view scheme) {
  std::string out = AsciiLower(host_port);
  const std::string default_port = scheme == "https" ? ":443" : ":80";
  if (out.size() > default_port.size() &&
      out.compare(out.size() - default_port.size(), default_port.size(), default_port) == 0) {
    out.resize(out.size() - default_port.size());
  }
  return out;
}

}  // namespace

bool IsJsonMediaType(std::string_view content_type) {
  const std::size_t semi = content_type.find(';');
  if (AsciiLower(TrimSpace(content_type.substr(0, semi))) != "application/json") return false;
  if (semi == std::string_view::npos) return true;
  std::string_view params = content_type.substr(semi + 1);
  while (!params.empty()) {
    const std::size_t next = params.find(';');
    const std::string_view param = TrimSpace(params.substr(0, next));
    params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
    if (param.empty()) continue;
    const std::size_t eq = param.find('=');
    if (eq == std::string_view::npos) return false;
    if (AsciiLower(TrimSpace(param.substr(0, eq))) != "charset") return false;
    std::string value = AsciiLower(TrimSpace(param.substr(eq + 1)));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (value != "utf-8" && value != "utf8") return false;
  }
  return true;
}

bool IsForeignOrigin(const http::Request& request) {
  if (const std::string* origin = request.Header("origin")) {
    // An origin is scheme "://" host [":" port]; anything else ("null",
    // garbage) is not ours.
    const std::string_view value = TrimSpace(*origin);
    const std::size_t sep = value.find("://");
    if (sep == std::string_view::npos) return true;
    const std::string scheme = AsciiLower(value.substr(0, sep));
    if (scheme != "http" && scheme != "https") return true;
    const std::string_view rest = value.substr(sep + 3);
    if (rest.empty() || rest.find('/') != std::string_view::npos) return true;
    const std::string* host = request.Header("host");
    if (!host) return true;
    return Authority(rest, scheme) != Authority(TrimSpace(*host), scheme);
  }
  if (const std::string* site = request.Header("sec-fetch-site")) {
    const std::string value = AsciiLower(TrimSpace(*site));
    return value != "same-origin" && value != "none";
  }
  return false;
}

}  // namespace quire::api
