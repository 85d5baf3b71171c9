// AssetServer: answers the browser's requests for the embedded client.
//
// Every path outside /api comes here. Paths under /assets/ are hashed URLs:
// one that is not in the table is a 404, never the app page, so a page that
// asks for the assets of another build fails loudly instead of getting HTML
// as a script. Any other path that is not an asset (/, /c/<id>, /invite/<id>,
// ...) gets the app page, which routes on the client.
//
// Caching: hashed URLs are `immutable` for a year; the app page, /sw.js and
// the manifest are `no-cache`, so a new build is seen on the next load. Every
// asset has a strong ETag, and If-None-Match gives a 304. The ETag names the
// content, not the encoding: a cached gzip or identity copy is the same
// content, so either revalidates.
//
// Compression: a text asset has a gzip variant when that is smaller; it is
// sent when Accept-Encoding allows gzip, and such assets carry
// `Vary: Accept-Encoding`.
//
// Every response from here (errors and 304s too) carries a strict
// Content-Security-Policy (scripts, styles and connections from this origin
// only, no framing), `X-Content-Type-Options: nosniff` and
// `Referrer-Policy: no-referrer`.
//
// Thread-safety: immutable after construction; Handle and Answer may be called
// concurrently from any thread.
#pragma once

#include <span>
#include <string_view>

#include "server/client_assets/client_assets.h"
#include "server/http/http_server.h"

namespace quire::client_assets {

class AssetServer {
 public:
  // Serves the embedded client.
  AssetServer();
  // Serves `table`, which must be sorted by path and hold the app page at
  // "/" (std::invalid_argument otherwise). For tests.
  explicit AssetServer(std::span<const Asset> table);

  // Answers `request` (GET or HEAD of a path outside /api) through `responder`.
  void Handle(const http::Request& request, http::Responder& responder) const;

  // The response to `request`. Handle sends exactly this.
  http::Response Answer(const http::Request& request) const;

 private:
  std::span<const Asset> table_;
  const Asset* app_page_;
};

// The Content-Security-Policy sent with every response of AssetServer.
extern const char kContentSecurityPolicy[];

// True when an Accept-Encoding value allows gzip: "gzip" or "x-gzip" with a
// non-zero q, or else "*" with a non-zero q. Codings are case-insensitive.
bool AcceptsGzip(std::string_view accept_encoding);

// True when an If-None-Match value matches `etag` (quoted) by the weak
// comparison of RFC 9110: "*", or a comma-separated list of entity tags any of
// which, with a "W/" prefix ignored, equals `etag`.
bool EtagMatches(std::string_view if_none_match, std::string_view etag);

}  // namespace quire::client_assets
