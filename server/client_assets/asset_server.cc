#include "server/client_assets/asset_server.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "server/http/header_text.h"

namespace quire::client_assets {

const char kContentSecurityPolicy[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

namespace {

using http::TrimSpace;

constexpr std::string_view kAssetsDir = "/assets";
constexpr char kImmutable[] = "public, max-age=31536000, immutable";
constexpr char kNoCache[] = "no-cache";

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

// The q of one Accept-Encoding element's parameters ("; q=0.5"): false when
// it is zero ("0", "0.", "0.000"), true otherwise or when absent.
bool QualityNonZero(std::string_view params) {
  while (!params.empty()) {
    std::size_t semi = params.find(';');
    std::string_view param = TrimSpace(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    std::size_t eq = param.find('=');
    if (eq == std::string_view::npos || !EqualsIgnoreCase(TrimSpace(param.substr(0, eq)), "q")) {
      continue;
    }
    std::string_view q = TrimSpace(param.substr(eq + 1));
    return !(!q.empty() && q.front() == '0' && q.find_first_not_of("0.") == std::string_view::npos);
  }
  return true;
}

// Whether `path` is in the hashed asset namespace: "/assets" or under "/assets/".
bool InAssetsDir(std::string_view path) {
  return path.substr(0, kAssetsDir.size()) == kAssetsDir &&
         (path.size() == kAssetsDir.size() || path[kAssetsDir.size()] == '/');
}

http::Response Base(int status) {
  http::Response response;
  response.status = status;
  response.headers = {{"Content-Security-Policy", kContentSecurityPolicy},
                      {"X-Content-Type-Options", "nosniff"},
                      {"Referrer-Policy", "no-referrer"}};
  return response;
}

http::Response Error(int status, const char* json_body) {
  http::Response response = Base(status);
  response.content_type = "application/json";
  response.body = json_body;
  return response;
}

}  // namespace

bool AcceptsGzip(std::string_view accept_encoding) {
  bool star = false;
  while (!accept_encoding.empty()) {
    std::size_t comma = accept_encoding.find(',');
    std::string_view element = accept_encoding.substr(0, comma);
    accept_encoding =
        comma == std::string_view::npos ? std::string_view() : accept_encoding.substr(comma + 1);
    std::size_t semi = element.find(';');
    std::string_view coding = TrimSpace(element.substr(0, semi));
    std::string_view params =
        semi == std::string_view::npos ? std::string_view() : element.substr(semi + 1);
    if (EqualsIgnoreCase(coding, "gzip") || EqualsIgnoreCase(coding, "x-gzip")) {
      return QualityNonZero(params);  // named explicitly: "*" does not matter
    }
    if (coding == "*") star = QualityNonZero(params);
  }
  return star;
}

bool EtagMatches(std::string_view if_none_match, std::string_view etag) {
  std::string_view rest = if_none_match;
  while (true) {
    std::size_t start = rest.find_first_not_of(" \t,");
    if (start == std::string_view::npos) return false;
    rest.remove_prefix(start);
    if (rest.front() == '*') return true;
    if (rest.substr(0, 2) == "W/") rest.remove_prefix(2);
    if (!rest.empty() && rest.front() == '"') {
      std::size_t close = rest.find('"', 1);
      if (close == std::string_view::npos) return false;  // malformed: no match
      if (rest.substr(0, close + 1) == etag) return true;
      rest.remove_prefix(close + 1);
    } else {
      // Not an entity tag (no quotes): skip it.
      std::size_t comma = rest.find(',');
      if (comma == std::string_view::npos) return false;
      rest.remove_prefix(comma);
    }
  }
}

AssetServer::AssetServer() : AssetServer(EmbeddedAssets()) {}

AssetServer::AssetServer(std::span<const Asset> table) : table_(table) {
  if (!std::is_sorted(table.begin(), table.end(), [](const Asset& a, const Asset& b) {
        return std::string_view(a.path) < std::string_view(b.path);
      })) {
    throw std::invalid_argument("client assets are not sorted by path");
  }
  app_page_ = FindAsset(table_, "/");
  if (!app_page_) throw std::invalid_argument("client assets have no app page at /");
}

void AssetServer::Handle(const http::Request& request, http::Responder& responder) const {
  responder.Send(Answer(request));
}

http::Response AssetServer::Answer(const http::Request& request) const {
  if (request.method != "GET" && request.method != "HEAD") {
    http::Response response = Error(405, R"({"error":"method not allowed"})");
    response.headers.emplace_back("Allow", "GET, HEAD");
    return response;
  }
  const Asset* asset = FindAsset(table_, request.path);
  if (!asset) {
    if (InAssetsDir(request.path)) return Error(404, R"({"error":"no such file"})");
    asset = app_page_;
  }

  http::Response response = Base(200);
  response.content_type = asset->content_type;
  response.headers.emplace_back("ETag", asset->etag);
  response.headers.emplace_back("Cache-Control",
                                asset->cache == CachePolicy::kImmutable ? kImmutable : kNoCache);
  if (asset->has_gzip()) response.headers.emplace_back("Vary", "Accept-Encoding");

  if (const std::string* tags = request.Header("if-none-match");
      tags && EtagMatches(*tags, asset->etag)) {
    response.status = 304;  // the validators and caching headers, no body
    return response;
  }
  const std::string* accept = request.Header("accept-encoding");
  if (asset->has_gzip() && accept && AcceptsGzip(*accept)) {
    response.headers.emplace_back("Content-Encoding", "gzip");
    response.body = asset->Gzip();
  } else {
    response.body = asset->Body();
  }
  return response;
}

}  // namespace quire::client_assets
