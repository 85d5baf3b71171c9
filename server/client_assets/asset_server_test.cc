#include "server/client_assets/asset_server.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/client_assets/client_assets.h"

namespace quire::client_assets {
namespace {

// ---------------------------------------------------------------------------
// Helpers.

const unsigned char* Bytes(const char* s) {
  return reinterpret_cast<const unsigned char*>(s);
}

constexpr char kPage[] = "<!doctype html><title>page</title>";
constexpr char kPageGzip[] = "GZIP-OF-PAGE";  // the server never decodes it
constexpr char kScript[] = "console.log(1);";
constexpr char kIcon[] = "\x89PNG....";
constexpr char kWorker[] = "self.addEventListener('fetch', () => {});";
constexpr char kManifest[] = "{\"name\":\"Quire\"}";

// A table like the generated one, sorted by path.
const Asset kTable[] = {
    {"/", "text/html; charset=utf-8", CachePolicy::kNoCache, Bytes(kPage), sizeof kPage - 1,
     Bytes(kPageGzip), sizeof kPageGzip - 1, "\"1111111111111111\""},
    {"/assets/0123456789abcdef/app.js", "text/javascript; charset=utf-8", CachePolicy::kImmutable,
     Bytes(kScript), sizeof kScript - 1, nullptr, 0, "\"2222222222222222\""},
    {"/assets/0123456789abcdef/icons/icon.png", "image/png", CachePolicy::kImmutable, Bytes(kIcon),
     sizeof kIcon - 1, nullptr, 0, "\"3333333333333333\""},
    {"/manifest.webmanifest", "application/manifest+json", CachePolicy::kNoCache, Bytes(kManifest),
     sizeof kManifest - 1, nullptr, 0, "\"4444444444444444\""},
    {"/sw.js", "text/javascript; charset=utf-8", CachePolicy::kNoCache, Bytes(kWorker),
     sizeof kWorker - 1, nullptr, 0, "\"5555555555555555\""},
};

http::Request Make(const std::string& method, const std::string& path,
                   std::map<std::string, std::string> headers = {}) {
  http::Request request;
  request.method = method;
  request.path = path;
  request.headers = std::move(headers);
  return request;
}

// The values of header `name` (as written) in `response`.
std::vector<std::string> Values(const http::Response& response, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [n, v] : response.headers) {
    if (n == name) out.push_back(v);
  }
  return out;
}

// The one value of header `name`, "" when absent; fails the test when repeated.
std::string Value(const http::Response& response, const std::string& name) {
  std::vector<std::string> all = Values(response, name);
  EXPECT_LE(all.size(), 1u) << name << " is repeated";
  return all.empty() ? "" : all.front();
}

void ExpectSecurityHeaders(const http::Response& r) {
  EXPECT_EQ(Value(r, "Content-Security-Policy"),
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
  EXPECT_EQ(Value(r, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(Value(r, "Referrer-Policy"), "no-referrer");
}

class AssetServerTest : public ::testing::Test {
 protected:
  AssetServer server_{kTable};
};

// ---------------------------------------------------------------------------
// Serving a table.

TEST_F(AssetServerTest, AppPageForRootAndEveryClientRoute) {
  for (const char* path : {"/", "/c/C123", "/invite/I123", "/anything", "/deep/er/path", "/assetsX",
                           "/index.html", "/favicon.ico", "/sw.js/"}) {
    SCOPED_TRACE(path);
    http::Response r = server_.Answer(Make("GET", path));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, kPage);
    EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
    EXPECT_EQ(Value(r, "Cache-Control"), "no-cache");
    EXPECT_EQ(Value(r, "ETag"), "\"1111111111111111\"");
    EXPECT_EQ(Value(r, "Vary"), "Accept-Encoding");  // the page has a gzip variant
    EXPECT_EQ(Value(r, "Content-Encoding"), "");
    ExpectSecurityHeaders(r);
  }
}

TEST_F(AssetServerTest, HashedAssetsAreImmutable) {
  http::Response r = server_.Answer(Make("GET", "/assets/0123456789abcdef/app.js"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kScript);
  EXPECT_EQ(r.content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(Value(r, "Cache-Control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(Value(r, "ETag"), "\"2222222222222222\"");
  EXPECT_EQ(Value(r, "Vary"), "");  // no gzip variant: nothing varies
  ExpectSecurityHeaders(r);

  r = server_.Answer(Make("GET", "/assets/0123456789abcdef/icons/icon.png"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kIcon);
  EXPECT_EQ(r.content_type, "image/png");
}

TEST_F(AssetServerTest, WorkerAndManifestAtFixedUrlsAreNoCache) {
  http::Response r = server_.Answer(Make("GET", "/sw.js"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kWorker);
  EXPECT_EQ(r.content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(Value(r, "Cache-Control"), "no-cache");
  r = server_.Answer(Make("GET", "/manifest.webmanifest"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, kManifest);
  EXPECT_EQ(r.content_type, "application/manifest+json");
  EXPECT_EQ(Value(r, "Cache-Control"), "no-cache");
  EXPECT_EQ(Value(r, "ETag"), "\"4444444444444444\"");
}

TEST_F(AssetServerTest, UnknownPathsUnderAssetsAre404NeverThePage) {
  for (const char* path :
       {"/assets/0000000000000000/app.js", "/assets/0123456789abcdef/nope.js",
        "/assets/0123456789abcdef/", "/assets/0123456789abcdef", "/assets/", "/assets"}) {
    SCOPED_TRACE(path);
    http::Response r = server_.Answer(Make("GET", path));
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.body, R"({"error":"no such file"})");
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_EQ(Value(r, "ETag"), "");
    ExpectSecurityHeaders(r);
  }
}

TEST_F(AssetServerTest, OnlyGetAndHead) {
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    for (const char* path : {"/", "/c/C1", "/assets/0123456789abcdef/app.js", "/assets/x"}) {
      SCOPED_TRACE(std::string(method) + " " + path);
      http::Response r = server_.Answer(Make(method, path));
      EXPECT_EQ(r.status, 405);
      EXPECT_EQ(r.body, R"({"error":"method not allowed"})");
      EXPECT_EQ(r.content_type, "application/json");
      EXPECT_EQ(Value(r, "Allow"), "GET, HEAD");
      ExpectSecurityHeaders(r);
    }
  }
}

TEST_F(AssetServerTest, HeadAnswersLikeGet) {
  // The HTTP layer sends the head of this response only (with the body's
  // Content-Length); here it must equal the GET's.
  for (const char* path : {"/", "/assets/0123456789abcdef/app.js", "/assets/nope"}) {
    SCOPED_TRACE(path);
    http::Response get = server_.Answer(Make("GET", path, {{"accept-encoding", "gzip"}}));
    http::Response head = server_.Answer(Make("HEAD", path, {{"accept-encoding", "gzip"}}));
    EXPECT_EQ(head.status, get.status);
    EXPECT_EQ(head.body, get.body);
    EXPECT_EQ(head.content_type, get.content_type);
    EXPECT_EQ(head.headers, get.headers);
  }
}

TEST_F(AssetServerTest, IfNoneMatchGives304WithValidatorsAndNoBody) {
  const std::string etag = "\"2222222222222222\"";
  for (const std::string& tags :
       std::vector<std::string>{etag, "W/" + etag, "\"0000000000000000\", " + etag,
                                "\"a\",W/" + etag + " ,\"b\"", "*", " " + etag + " "}) {
    SCOPED_TRACE(tags);
    http::Response r =
        server_.Answer(Make("GET", "/assets/0123456789abcdef/app.js", {{"if-none-match", tags}}));
    EXPECT_EQ(r.status, 304);
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(Value(r, "ETag"), etag);
    EXPECT_EQ(Value(r, "Cache-Control"), "public, max-age=31536000, immutable");
    ExpectSecurityHeaders(r);
  }
  for (const std::string& tags :
       {std::string("\"2222222222222223\""), std::string("2222222222222222"),
        std::string("\"1111111111111111\""), std::string("\"2222222222222222"), std::string(""),
        std::string("W/")}) {
    SCOPED_TRACE(tags);
    http::Response r =
        server_.Answer(Make("GET", "/assets/0123456789abcdef/app.js", {{"if-none-match", tags}}));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, kScript);
  }
  // The page's own ETag on a client route, gzip asked for: 304 without encoding.
  http::Response r = server_.Answer(Make(
      "GET", "/c/C1", {{"if-none-match", "\"1111111111111111\""}, {"accept-encoding", "gzip"}}));
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(Value(r, "Content-Encoding"), "");
  EXPECT_EQ(Value(r, "Vary"), "Accept-Encoding");
}

TEST_F(AssetServerTest, GzipWhenAcceptedAndAvailable) {
  for (const char* accepted : {"gzip", "GZIP", "deflate, gzip;q=0.5, br", "x-gzip", "*",
                               "gzip; q=1.0", "br;q=1, *;q=0.1"}) {
    SCOPED_TRACE(accepted);
    http::Response r = server_.Answer(Make("GET", "/", {{"accept-encoding", accepted}}));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, kPageGzip);
    EXPECT_EQ(Value(r, "Content-Encoding"), "gzip");
    EXPECT_EQ(Value(r, "Vary"), "Accept-Encoding");
    EXPECT_EQ(Value(r, "ETag"), "\"1111111111111111\"");
    EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  }
  for (const char* refused : {"", "identity", "gzip;q=0", "gzip; q=0.000", "br, deflate", "*;q=0",
                              "gzip;q=0, *", "gzipx", "*;q=0.0, br"}) {
    SCOPED_TRACE(refused);
    http::Response r = server_.Answer(Make("GET", "/", {{"accept-encoding", refused}}));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, kPage);
    EXPECT_EQ(Value(r, "Content-Encoding"), "");
    EXPECT_EQ(Value(r, "Vary"), "Accept-Encoding");
  }
  // Without the header at all.
  EXPECT_EQ(server_.Answer(Make("GET", "/")).body, kPage);
  // No gzip variant: identity, and nothing varies.
  http::Response r =
      server_.Answer(Make("GET", "/assets/0123456789abcdef/app.js", {{"accept-encoding", "gzip"}}));
  EXPECT_EQ(r.body, kScript);
  EXPECT_EQ(Value(r, "Content-Encoding"), "");
  EXPECT_EQ(Value(r, "Vary"), "");
}

TEST(AssetServerConstruction, RejectsTablesItCannotServe) {
  const Asset unsorted[] = {kTable[1], kTable[0]};
  EXPECT_THROW(AssetServer{unsorted}, std::invalid_argument);
  const Asset no_page[] = {kTable[1], kTable[2]};
  EXPECT_THROW(AssetServer{no_page}, std::invalid_argument);
  EXPECT_NO_THROW(AssetServer{});
}

TEST(AcceptsGzipTest, Tokens) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip(" gzip , br"));
  EXPECT_TRUE(AcceptsGzip("br;q=1.0, gzip;q=0.001"));
  EXPECT_TRUE(AcceptsGzip("gzip;Q=0.5"));
  EXPECT_TRUE(AcceptsGzip("*;q=0.3"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("br"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;Q=0."));
  EXPECT_FALSE(AcceptsGzip("gzip ; q = 0.00"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0, *;q=1"));  // named explicitly, refused
  EXPECT_FALSE(AcceptsGzip("identity;q=1, *;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip-ish, xgzip"));
}

TEST(EtagMatchesTest, ListsWeakAndStar) {
  const std::string e = "\"abc\"";
  EXPECT_TRUE(EtagMatches("\"abc\"", e));
  EXPECT_TRUE(EtagMatches("W/\"abc\"", e));
  EXPECT_TRUE(EtagMatches("\"x\",\"abc\"", e));
  EXPECT_TRUE(EtagMatches("  \"x\" ,  W/\"abc\"  ", e));
  EXPECT_TRUE(EtagMatches("*", e));
  EXPECT_TRUE(EtagMatches("\"a,b\", \"abc\"", e));  // a comma inside an entity tag
  EXPECT_FALSE(EtagMatches("", e));
  EXPECT_FALSE(EtagMatches("\"abcd\"", e));
  EXPECT_FALSE(EtagMatches("abc", e));
  EXPECT_FALSE(EtagMatches("\"ab\", \"c\"", e));
  EXPECT_FALSE(EtagMatches("\"abc", e));
  EXPECT_FALSE(EtagMatches("w/\"abd\"", e));
}

// ---------------------------------------------------------------------------
// The embedded table, as cmake/embed_client.cmake built it from client/.

std::string Sha256Hex(std::string_view data) {
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : out) {
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  return hex;
}

std::uint32_t Crc32(std::string_view data) {
  std::uint32_t crc = 0xffffffffu;
  for (unsigned char b : data) {
    crc ^= b;
    for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::uint32_t Le32(std::string_view bytes) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

TEST(EmbeddedAssetsTest, PrefixAndAppPage) {
  const std::string prefix(AssetsPrefix());
  ASSERT_EQ(prefix.size(), 24u) << prefix;
  EXPECT_EQ(prefix.substr(0, 8), "/assets/");
  EXPECT_EQ(prefix.find_first_not_of("0123456789abcdef", 8), std::string::npos) << prefix;
  const Asset& page = AppPage();
  EXPECT_STREQ(page.path, "/");
  EXPECT_STREQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(page.cache, CachePolicy::kNoCache);
  EXPECT_NE(page.Body().find("<html"), std::string_view::npos);
  // index.html names its assets with __ASSETS__, replaced by this build's prefix.
  EXPECT_NE(page.Body().find(prefix + "/"), std::string_view::npos);
  ASSERT_NE(FindAsset(prefix + "/app.js"), nullptr);
  EXPECT_EQ(FindAsset(prefix + "/README.md"), nullptr);
  EXPECT_EQ(FindAsset("/nope"), nullptr);
}

TEST(EmbeddedAssetsTest, EveryAssetIsConsistent) {
  ASSERT_EQ(sodium_init() >= 0, true);
  const std::string prefix(AssetsPrefix());
  std::span<const Asset> all = EmbeddedAssets();
  ASSERT_GE(all.size(), 2u);
  std::size_t gzipped = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const Asset& a = all[i];
    const std::string_view path = a.path;
    SCOPED_TRACE(a.path);
    if (i > 0) {
      EXPECT_LT(std::string_view(all[i - 1].path), path);  // sorted, no duplicates
    }
    EXPECT_EQ(FindAsset(path), &a);

    const bool fixed = path == "/" || path == "/sw.js" || path == "/manifest.webmanifest";
    EXPECT_TRUE(fixed || path.substr(0, prefix.size() + 1) == prefix + "/");
    EXPECT_EQ(a.cache, fixed ? CachePolicy::kNoCache : CachePolicy::kImmutable);
    EXPECT_FALSE(EndsWith(path, ".md"));

    const std::string_view type = a.content_type;
    const std::string_view ext = path == "/" ? "html" : path.substr(path.rfind('.') + 1);
    const std::map<std::string_view, std::string_view> types = {
        {"html", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"png", "image/png"},
        {"svg", "image/svg+xml"},
        {"json", "application/json"},
        {"webmanifest", "application/manifest+json"}};
    if (auto it = types.find(ext); it != types.end()) {
      EXPECT_EQ(type, it->second);
    }

    EXPECT_EQ(std::string(a.etag), "\"" + Sha256Hex(a.Body()).substr(0, 16) + "\"");
    const bool text = type.substr(0, 5) == "text/" || type == "image/svg+xml" ||
                      type == "application/json" || type == "application/manifest+json";
    if (text) {
      EXPECT_EQ(a.Body().find("__ASSETS__"), std::string_view::npos);
    } else {
      EXPECT_FALSE(a.has_gzip()) << "binary assets are not compressed";
    }

    if (a.has_gzip()) {
      ++gzipped;
      const std::string_view gz = a.Gzip();
      ASSERT_GE(gz.size(), 18u);
      EXPECT_LT(gz.size(), a.body_size) << "a gzip variant is kept only when smaller";
      // RFC 1952: magic, deflate, no flags, MTIME 0 (reproducible builds).
      EXPECT_EQ(gz.substr(0, 8), std::string_view("\x1f\x8b\x08\x00\x00\x00\x00\x00", 8));
      // The trailer names the identity body: its CRC-32 and its size.
      EXPECT_EQ(Le32(gz.substr(gz.size() - 8, 4)), Crc32(a.Body()));
      EXPECT_EQ(Le32(gz.substr(gz.size() - 4, 4)), static_cast<std::uint32_t>(a.body_size));
    }
  }
  // The app page is well over a hundred bytes of HTML: compression must have
  // worked at least there.
  EXPECT_TRUE(AppPage().has_gzip());
  EXPECT_GE(gzipped, 1u);
}

TEST(EmbeddedAssetsTest, ServerAnswersFromTheEmbeddedTable) {
  AssetServer server;
  http::Request request;
  request.method = "GET";
  request.path = "/invite/I123";
  http::Response r = server.Answer(request);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, AppPage().Body());
  request.path = std::string(AssetsPrefix()) + "/app.js";
  r = server.Answer(request);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, FindAsset(request.path)->Body());
  EXPECT_EQ(r.content_type, "text/javascript; charset=utf-8");
}

}  // namespace
}  // namespace quire::client_assets
