// HTTP through libcurl, for harness.h: Client (one user agent that keeps its
// connection and its identity cookie), its Responses, and Set-Cookie
// parsing.
//
// Thread-safety: a Client is used by one thread at a time (one Client per
// thread); Responses and SetCookies are values. Ownership: a Client owns its
// libcurl handle (moved with it).
#include <ctime>

#include <curl/curl.h>

#include "tests/api/harness.h"
#include "tests/api/harness_helpers.h"

namespace quire::apitest {

std::string Response::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

std::vector<std::string> Response::header_values(const std::string& name) const {
  std::vector<std::string> v;
  auto [b, e] = headers.equal_range(name);
  for (auto it = b; it != e; ++it) v.push_back(it->second);
  return v;
}

Json Response::json() const {
  return Json::parse(body, nullptr, false);
}

std::string Response::Describe() const {
  std::string s = "HTTP " + std::to_string(status);
  if (!error.empty()) s += " (transport error: " + error + ")";
  s += " content-type=" + header("content-type");
  s += " body=" + Clip(body, 600);
  return s;
}

std::string SetCookie::Get(const std::string& attribute) const {
  auto it = attributes.find(attribute);
  return it == attributes.end() ? "" : it->second;
}

bool SetCookie::Clears() const {
  if (value.empty()) return true;
  if (Has("max-age")) {
    try {
      if (std::stoll(Get("max-age")) <= 0) return true;
    } catch (...) {
    }
  }
  if (Has("expires")) {
    time_t t = curl_getdate(Get("expires").c_str(), nullptr);
    if (t != -1 && t < std::time(nullptr)) return true;
  }
  return false;
}

std::optional<SetCookie> ParseSetCookie(const std::string& header) {
  SetCookie c;
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t semi = header.find(';', start);
    parts.push_back(header.substr(start, semi == std::string::npos ? semi : semi - start));
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  std::size_t eq = parts[0].find('=');
  if (eq == std::string::npos) return std::nullopt;
  c.name = Trim(parts[0].substr(0, eq));
  c.value = Trim(parts[0].substr(eq + 1));
  for (std::size_t i = 1; i < parts.size(); ++i) {
    std::string p = Trim(parts[i]);
    if (p.empty()) continue;
    std::size_t e = p.find('=');
    if (e == std::string::npos) {
      c.attributes[ToLower(p)] = "";
    } else {
      c.attributes[ToLower(Trim(p.substr(0, e)))] = Trim(p.substr(e + 1));
    }
  }
  return c;
}

std::optional<SetCookie> IdentityCookie(const Response& r) {
  std::optional<SetCookie> found;
  for (const auto& h : r.header_values("set-cookie")) {
    auto c = ParseSetCookie(h);
    if (c && c->name == "identity") found = c;
  }
  return found;
}

namespace {

size_t CollectBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t CollectHeader(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<std::multimap<std::string, std::string>*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();  // a new response (e.g. after 100 Continue)
  } else {
    std::size_t colon = line.find(':');
    if (colon != std::string::npos) {
      headers->emplace(ToLower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
    }
  }
  return size * n;
}

curl_slist* BuildHeaders(const Headers& headers, const std::optional<std::string>& token,
                         bool json_body) {
  bool has_cookie = false, has_content_type = false;
  for (const auto& [name, value] : headers) {
    has_cookie |= ToLower(name) == "cookie";
    has_content_type |= ToLower(name) == "content-type";
  }
  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Expect:");
  if (json_body && !has_content_type)
    list = curl_slist_append(list, "Content-Type: application/json");
  if (token && !has_cookie) list = curl_slist_append(list, ("Cookie: identity=" + *token).c_str());
  for (const auto& [name, value] : headers) {
    // "Name;" is libcurl's way to send a header with an empty value.
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    list = curl_slist_append(list, line.c_str());
  }
  return list;
}

}  // namespace

Client::Client(std::string base_url) : base_url_(std::move(base_url)) {
  EnsureCurl();
  curl_ = curl_easy_init();
}

Client::~Client() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Client::Client(Client&& other) noexcept
    : base_url_(std::move(other.base_url_)),
      token_(std::move(other.token_)),
      timeout_(other.timeout_),
      curl_(other.curl_) {
  other.curl_ = nullptr;
}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
    base_url_ = std::move(other.base_url_);
    token_ = std::move(other.token_);
    timeout_ = other.timeout_;
    curl_ = other.curl_;
    other.curl_ = nullptr;
  }
  return *this;
}

Response Client::get(const std::string& path, const Headers& headers) {
  return request("GET", path, std::nullopt, headers);
}

Response Client::post(const std::string& path, const Json& body, const Headers& headers) {
  return request("POST", path, body.dump(), headers);
}

Response Client::post_raw(const std::string& path, const std::string& body,
                          const Headers& headers) {
  return request("POST", path, body, headers);
}

Response Client::del(const std::string& path, const Headers& headers) {
  return request("DELETE", path, std::nullopt, headers);
}

Response Client::request(const std::string& method, const std::string& path,
                         const std::optional<std::string>& body, const Headers& headers) {
  Response r;
  if (!curl_) curl_ = curl_easy_init();
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // keeps the live connection
  std::string url = base_url_ + path;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, CollectHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    if (method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  } else if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  curl_slist* list = BuildHeaders(headers, token_, body.has_value());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    r.error = std::string(curl_easy_strerror(rc)) + (errbuf[0] ? std::string(": ") + errbuf : "");
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  if (auto cookie = IdentityCookie(r)) {
    if (cookie->Clears()) {
      token_.reset();
    } else {
      token_ = cookie->value;
    }
  }
  return r;
}

}  // namespace quire::apitest
