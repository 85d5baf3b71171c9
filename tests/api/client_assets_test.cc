// The built-in browser client: served from the binary for every path outside
// /api, before and after setup, with hashed immutable asset URLs, ETags and
// 304s, gzip when asked for, and a strict Content-Security-Policy.
#include <curl/curl.h>

#include <cstring>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

const char kCsp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

bool IsHex(const std::string& s, std::size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// An ETag as this server makes them: a quoted 16-hex-digit strong tag.
::testing::AssertionResult IsOurEtag(const std::string& etag) {
  if (etag.size() == 18 && etag.front() == '"' && etag.back() == '"' &&
      IsHex(etag.substr(1, 16), 16)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "not a quoted 16-hex ETag: [" << etag << "]";
}

// The security headers of every response that is not the API's.
::testing::AssertionResult HasSecurityHeaders(const Response& r) {
  if (r.header_values("content-security-policy") != std::vector<std::string>{kCsp}) {
    return ::testing::AssertionFailure()
           << "Content-Security-Policy: [" << r.header("content-security-policy") << "] in "
           << r.Describe();
  }
  if (r.header("x-content-type-options") != "nosniff" ||
      r.header("referrer-policy") != "no-referrer") {
    return ::testing::AssertionFailure() << "nosniff / no-referrer missing in " << r.Describe();
  }
  return ::testing::AssertionSuccess();
}

// The hashed URL "/assets/<16 hex>/<file>" the page names, or "".
std::string AssetUrl(const std::string& page, const std::string& file) {
  const std::string tail = "/" + file + "\"";
  for (std::size_t pos = page.find("\"/assets/"); pos != std::string::npos;
       pos = page.find("\"/assets/", pos + 1)) {
    const std::string hash = page.substr(pos + 9, 16);
    if (IsHex(hash, 16) && page.compare(pos + 25, tail.size(), tail) == 0) {
      return "/assets/" + hash + "/" + file;
    }
  }
  return "";
}

std::size_t Append(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// GET `url` with libcurl asking for gzip and decoding it, as a browser does.
// Returns the decoded body; *encoding gets the Content-Encoding header.
std::string GetDecoded(const std::string& url, std::string* encoding, long* status) {
  CURL* curl = curl_easy_init();
  std::string body, head;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "gzip");  // sends it and decodes
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &head);
  CURLcode rc = curl_easy_perform(curl);
  EXPECT_EQ(rc, CURLE_OK) << curl_easy_strerror(rc);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
  curl_easy_cleanup(curl);
  encoding->clear();
  for (const char* name : {"\r\nContent-Encoding: ", "\r\ncontent-encoding: "}) {
    std::size_t pos = head.find(name);
    if (pos != std::string::npos) {
      pos += std::strlen(name);
      *encoding = head.substr(pos, head.find("\r\n", pos) - pos);
    }
  }
  return body;
}

using ClientAssetsTest = ApiTest;

TEST_F(ClientAssetsTest, PageIsServedBeforeSetupWhileTheApiIs503) {
  Client c = NewClient();
  Response page = c.get("/");
  ASSERT_TRUE(HasStatus(page, 200));
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(page.header("cache-control"), "no-cache");
  EXPECT_TRUE(IsOurEtag(page.header("etag")));
  EXPECT_TRUE(HasSecurityHeaders(page));
  EXPECT_NE(page.body.find("<html"), std::string::npos) << page.Describe();
  EXPECT_EQ(page.body.find("__ASSETS__"), std::string::npos) << "placeholder left in the page";
  EXPECT_EQ(page.header("content-length"), std::to_string(page.body.size()));

  Response boot = c.get("/api/boot");
  EXPECT_TRUE(IsJsonError(boot, 503));
  EXPECT_TRUE(IsJsonError(c.get("/api/nope"), 503));

  // After setup: the same page, and the API answers.
  Client owner = Setup();
  Response after = owner.get("/");
  ASSERT_TRUE(HasStatus(after, 200));
  EXPECT_EQ(after.body, page.body);
  EXPECT_EQ(after.header("etag"), page.header("etag"));
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200));
  // The API's own responses are untouched by the client's headers.
  EXPECT_EQ(owner.get("/api/boot").header("content-security-policy"), "");
}

TEST_F(ClientAssetsTest, ClientRoutesServeTheSamePage) {
  Client c = NewClient();
  Response root = c.get("/");
  ASSERT_TRUE(HasStatus(root, 200));
  for (const char* path : {"/c/C123", "/invite/I123", "/anything", "/c/C0000000000000000?x=1",
                           "/deep/ly/nested/path", "/apix"}) {
    SCOPED_TRACE(path);
    Response r = c.get(path);
    ASSERT_TRUE(HasStatus(r, 200));
    EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(r.body, root.body);
    EXPECT_EQ(r.header("etag"), root.header("etag"));
    EXPECT_EQ(r.header("cache-control"), "no-cache");
    EXPECT_TRUE(HasSecurityHeaders(r));
  }
}

TEST_F(ClientAssetsTest, IfNoneMatchGives304) {
  Client c = NewClient();
  Response page = c.get("/c/C1");
  ASSERT_TRUE(HasStatus(page, 200));
  const std::string etag = page.header("etag");
  ASSERT_TRUE(IsOurEtag(etag));
  for (const std::string& tags :
       {etag, "W/" + etag, "\"0000000000000000\", " + etag, std::string("*")}) {
    SCOPED_TRACE(tags);
    Response r = c.get("/invite/I1", {{"If-None-Match", tags}});
    EXPECT_TRUE(HasStatus(r, 304));
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.header("etag"), etag);
    EXPECT_EQ(r.header("cache-control"), "no-cache");
    EXPECT_TRUE(HasSecurityHeaders(r));
  }
  Response other = c.get("/", {{"If-None-Match", "\"0000000000000000\""}});
  EXPECT_TRUE(HasStatus(other, 200));
  EXPECT_EQ(other.body, page.body);
  // The connection is still in step after the 304s.
  EXPECT_TRUE(IsJsonError(c.get("/api/boot"), 503));
}

TEST_F(ClientAssetsTest, GzipWhenAskedAndItDecodesToTheSameBytes) {
  Client c = NewClient();
  Response identity = c.get("/");
  ASSERT_TRUE(HasStatus(identity, 200));
  EXPECT_EQ(identity.header("content-encoding"), "");
  EXPECT_EQ(identity.header("vary"), "Accept-Encoding");

  // The bytes on the wire (the harness does not decode).
  Response gz = c.get("/", {{"Accept-Encoding", "gzip, deflate, br"}});
  ASSERT_TRUE(HasStatus(gz, 200));
  EXPECT_EQ(gz.header("content-encoding"), "gzip");
  EXPECT_EQ(gz.header("vary"), "Accept-Encoding");
  EXPECT_EQ(gz.header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(gz.header("etag"), identity.header("etag"));
  ASSERT_GE(gz.body.size(), 18u);
  EXPECT_EQ(gz.body.substr(0, 3), std::string("\x1f\x8b\x08", 3));
  EXPECT_LT(gz.body.size(), identity.body.size());
  EXPECT_TRUE(HasSecurityHeaders(gz));

  // Decoded by libcurl, as a browser would: the same bytes as identity.
  ASSERT_TRUE(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_LIBZ)
      << "this libcurl cannot decode gzip";
  std::string encoding;
  long status = 0;
  std::string decoded = GetDecoded(server().base_url() + "/invite/I1", &encoding, &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(encoding, "gzip");
  EXPECT_EQ(decoded, identity.body);

  // q=0 refuses gzip.
  Response refused = c.get("/", {{"Accept-Encoding", "gzip;q=0, br"}});
  ASSERT_TRUE(HasStatus(refused, 200));
  EXPECT_EQ(refused.header("content-encoding"), "");
  EXPECT_EQ(refused.body, identity.body);
}

TEST_F(ClientAssetsTest, HashedAssetsAreImmutableAndStaleOnesAre404) {
  Client c = NewClient();
  Response page = c.get("/");
  ASSERT_TRUE(HasStatus(page, 200));
  const std::string app = AssetUrl(page.body, "app.js");
  ASSERT_FALSE(app.empty()) << "the page names no /assets/<16 hex>/app.js: " << page.body;

  Response js = c.get(app);
  ASSERT_TRUE(HasStatus(js, 200));
  EXPECT_EQ(js.header("content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(js.header("cache-control"), "public, max-age=31536000, immutable");
  EXPECT_TRUE(IsOurEtag(js.header("etag")));
  EXPECT_NE(js.header("etag"), page.header("etag"));
  EXPECT_TRUE(HasSecurityHeaders(js));
  EXPECT_FALSE(js.body.empty());
  EXPECT_EQ(js.body.find("<html"), std::string::npos) << "got the page, not the script";
  EXPECT_EQ(js.body.find("__ASSETS__"), std::string::npos);
  Response again = c.get(app, {{"If-None-Match", js.header("etag")}});
  EXPECT_TRUE(HasStatus(again, 304));
  EXPECT_EQ(again.header("cache-control"), "public, max-age=31536000, immutable");

  // Another build's URL, or no such file: a JSON 404, never the page.
  for (const std::string& path : {std::string("/assets/0000000000000000/app.js"), app + ".map",
                                  std::string("/assets/"), app.substr(0, 24) + "/nope.css"}) {
    SCOPED_TRACE(path);
    Response r = c.get(path);
    EXPECT_TRUE(IsJsonError(r, 404));
    EXPECT_EQ(r.json().value("error", ""), "no such file");
    EXPECT_TRUE(HasSecurityHeaders(r));
  }
}

// The service worker and the manifest keep fixed URLs (browsers find them by
// URL) and are revalidated on every use.
TEST_F(ClientAssetsTest, WorkerAndManifestAtFixedUrls) {
  Client c = NewClient();
  Response page = c.get("/");
  ASSERT_TRUE(HasStatus(page, 200));
  Response sw = c.get("/sw.js");
  ASSERT_TRUE(HasStatus(sw, 200));
  EXPECT_EQ(sw.header("content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(sw.header("cache-control"), "no-cache");
  EXPECT_TRUE(IsOurEtag(sw.header("etag")));
  EXPECT_NE(sw.body, page.body);
  EXPECT_EQ(sw.body.find("__ASSETS__"), std::string::npos);
  Response manifest = c.get("/manifest.webmanifest");
  ASSERT_TRUE(HasStatus(manifest, 200));
  EXPECT_EQ(manifest.header("content-type"), "application/manifest+json");
  EXPECT_EQ(manifest.header("cache-control"), "no-cache");
  EXPECT_TRUE(manifest.json().is_object()) << manifest.Describe();
  EXPECT_NE(page.body.find("/manifest.webmanifest"), std::string::npos);
}

TEST_F(ClientAssetsTest, OtherMethodsAre405AndUnknownApiPathsStay404) {
  Client c = NewClient();
  for (const char* method : {"POST", "DELETE", "PUT"}) {
    SCOPED_TRACE(method);
    Response r = c.request(method, "/", std::string("{}"));
    EXPECT_TRUE(IsJsonError(r, 405));
    EXPECT_EQ(r.json().value("error", ""), "method not allowed");
    EXPECT_TRUE(HasSecurityHeaders(r));
  }
  EXPECT_TRUE(IsJsonError(c.del("/c/C123"), 405));

  Client owner = Setup();
  for (const char* path : {"/api/nope", "/api", "/api/"}) {
    SCOPED_TRACE(path);
    Response r = owner.get(path);
    EXPECT_TRUE(IsJsonError(r, 404));
    EXPECT_EQ(r.header("content-security-policy"), "") << "an API answer, not the client's";
  }
  EXPECT_TRUE(IsJsonError(owner.request("POST", "/", std::string("{}")), 405));
}

TEST_F(ClientAssetsTest, HeadSendsHeadersOnly) {
  Client c = NewClient();
  Response get = c.get("/");
  ASSERT_TRUE(HasStatus(get, 200));
  Response head = c.request("HEAD", "/", std::nullopt);
  ASSERT_TRUE(HasStatus(head, 200));
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(head.header("content-length"), std::to_string(get.body.size()));
  EXPECT_EQ(head.header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(head.header("etag"), get.header("etag"));
  EXPECT_TRUE(HasSecurityHeaders(head));

  // On the wire: nothing after the head (the server closes after it).
  RawResponse raw = SendRaw(server().host(), server().port(),
                            "HEAD /c/C1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5s);
  EXPECT_EQ(raw.status, 200) << raw.Describe();
  EXPECT_TRUE(raw.closed) << raw.Describe();
  const std::size_t head_end = raw.raw.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << raw.Describe();
  EXPECT_EQ(raw.raw.size(), head_end + 4) << "bytes after the head of a HEAD: " << raw.Describe();
  EXPECT_NE(raw.raw.find("Content-Length: " + std::to_string(get.body.size()) + "\r\n"),
            std::string::npos)
      << raw.Describe();
}

}  // namespace
}  // namespace quire::apitest
