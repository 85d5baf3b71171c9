// The browser client (client/), embedded in the binary at build time.
//
// cmake/embed_client.cmake turns client/ into one generated .cc that defines
// the table below, so a deployment is the quire binary alone and serving a
// file is a lookup: no file is read, hashed or compressed at run time.
//
// URLs: the app page (client/index.html) is "/"; client/sw.js is "/sw.js" and
// client/manifest.webmanifest is "/manifest.webmanifest" (found by browsers
// at a fixed URL); every other file is AssetsPrefix() + "/<relative path>",
// where the prefix "/assets/<16 hex>" changes whenever any file changes, so
// those URLs can be cached forever. Text files name their assets with
// `__ASSETS__`, replaced by the prefix at build time.
//
// Thread-safety: everything here is immutable, constant-initialized data; any
// thread may use it at any time, static initialization included.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>

namespace quire::client_assets {

enum class CachePolicy {
  kNoCache,    // revalidate every use (ETag): the app page, /sw.js, the manifest
  kImmutable,  // the URL names one content forever: /assets/<hash>/...
};

struct Asset {
  const char* path;          // URL path, e.g. "/" or "/assets/0123456789abcdef/app.js"
  const char* content_type;  // the Content-Type header value
  CachePolicy cache;
  const unsigned char* body;  // the identity body (nullptr when empty)
  std::size_t body_size;
  const unsigned char* gzip;  // the gzip body, nullptr when it would not be smaller
  std::size_t gzip_size;
  const char* etag;  // quoted: "\"<first 16 hex of the SHA-256 of body>\""

  std::string_view Body() const { return {reinterpret_cast<const char*>(body), body_size}; }
  std::string_view Gzip() const { return {reinterpret_cast<const char*>(gzip), gzip_size}; }
  bool has_gzip() const { return gzip_size > 0; }
};

// Every embedded asset, sorted by path (byte order).
std::span<const Asset> EmbeddedAssets();

// "/assets/<16 hex>": the prefix of the hashed URLs of this build.
std::string_view AssetsPrefix();

// The asset of `table` (sorted by path) at URL path `path`, or nullptr.
inline const Asset* FindAsset(std::span<const Asset> table, std::string_view path) {
  auto it = std::lower_bound(
      table.begin(), table.end(), path,
      [](const Asset& a, std::string_view p) { return std::string_view(a.path) < p; });
  return it != table.end() && std::string_view(it->path) == path ? &*it : nullptr;
}

// The embedded asset at URL path `path`, or nullptr.
inline const Asset* FindAsset(std::string_view path) {
  return FindAsset(EmbeddedAssets(), path);
}

// The embedded app page (client/index.html), served for "/" and for every
// path that is neither the API nor another asset (/c/<id>, /invite/<id>, ...).
inline const Asset& AppPage() {
  return *FindAsset("/");
}

}  // namespace quire::client_assets
