#include "server/http/request_decoding.h"

#include "server/http/header_text.h"

namespace quire::http {

const std::string* Request::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? nullptr : &it->second;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in`; '+' becomes a space when `plus_is_space`. A malformed
// escape is kept as is and sets *malformed.
std::string PercentDecode(std::string_view in, bool plus_is_space, bool* malformed) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 2 < in.size() ? HexValue(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
      *malformed = true;
      out += c;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

void SplitTarget(std::string_view target, Request* req) {
  std::size_t hash = target.find('#');
  if (hash != std::string_view::npos) target = target.substr(0, hash);
  std::size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  req->path = PercentDecode(path, false, &req->query_malformed);
  if (q == std::string_view::npos) return;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    std::string name = PercentDecode(pair.substr(0, eq), true, &req->query_malformed);
    std::string value;
    if (eq != std::string_view::npos) {
      value = PercentDecode(pair.substr(eq + 1), true, &req->query_malformed);
    }
    req->query[std::move(name)] = std::move(value);  // the last one wins
  }
}

void ParseCookies(std::string_view header, std::map<std::string, std::string>* cookies) {
  while (!header.empty()) {
    std::size_t semi = header.find(';');
    std::string_view pair = TrimSpace(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    std::string_view value = TrimSpace(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    // The first one wins: browsers send the most specific cookie first.
    cookies->emplace(std::string(TrimSpace(pair.substr(0, eq))), std::string(value));
  }
}

}  // namespace quire::http
