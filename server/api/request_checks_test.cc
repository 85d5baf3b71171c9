#include "server/api/request_checks.h"

#include <gtest/gtest.h>

namespace quire::api {
namespace {

http::Request WithHeaders(std::map<std::string, std::string> headers) {
  http::Request r;
  r.method = "POST";
  r.path = "/api/conversations";
  r.headers = std::move(headers);
  return r;
}

TEST(IsJsonMediaTypeTest, AcceptsJsonWithAnOptionalUtf8Charset) {
  EXPECT_TRUE(IsJsonMediaType("application/json"));
  EXPECT_TRUE(IsJsonMediaType("Application/JSON"));
  EXPECT_TRUE(IsJsonMediaType("application/json; charset=utf-8"));
  EXPECT_TRUE(IsJsonMediaType("application/json;charset=UTF-8"));
  EXPECT_TRUE(IsJsonMediaType(" application/json ; charset = \"utf-8\" "));
}

TEST(IsJsonMediaTypeTest, RefusesWhatAFormOrAnotherTypeSends) {
  EXPECT_FALSE(IsJsonMediaType(""));
  EXPECT_FALSE(IsJsonMediaType("text/plain"));
  EXPECT_FALSE(IsJsonMediaType("text/plain; charset=utf-8"));
  EXPECT_FALSE(IsJsonMediaType("application/x-www-form-urlencoded"));
  EXPECT_FALSE(IsJsonMediaType("multipart/form-data; boundary=x"));
  EXPECT_FALSE(IsJsonMediaType("application/jsonx"));
  EXPECT_FALSE(IsJsonMediaType("application/json; charset=latin1"));
  EXPECT_FALSE(IsJsonMediaType("application/json; boundary=x"));
  EXPECT_FALSE(IsJsonMediaType("application/json; charset"));
}

TEST(IsForeignOriginTest, NoOriginAndNoFetchMetadataIsNotForeign) {
  EXPECT_FALSE(IsForeignOrigin(WithHeaders({{"host", "chat.example:8080"}})));
  EXPECT_FALSE(IsForeignOrigin(WithHeaders({})));
}

TEST(IsForeignOriginTest, TheServersOwnOriginIsNotForeign) {
  EXPECT_FALSE(IsForeignOrigin(
      WithHeaders({{"host", "chat.example:8080"}, {"origin", "http://chat.example:8080"}})));
  EXPECT_FALSE(
      IsForeignOrigin(WithHeaders({{"host", "Chat.Example"}, {"origin", "https://chat.example"}})));
  // Default ports are left out by browsers and sometimes written by proxies.
  EXPECT_FALSE(IsForeignOrigin(
      WithHeaders({{"host", "chat.example:443"}, {"origin", "https://chat.example"}})));
  EXPECT_FALSE(IsForeignOrigin(
      WithHeaders({{"host", "chat.example"}, {"origin", "http://chat.example:80"}})));
  EXPECT_FALSE(IsForeignOrigin(
      WithHeaders({{"host", "127.0.0.1:9000"}, {"origin", "http://127.0.0.1:9000"}})));
}

TEST(IsForeignOriginTest, AnotherOriginIsForeign) {
  EXPECT_TRUE(IsForeignOrigin(
      WithHeaders({{"host", "chat.example:8080"}, {"origin", "http://evil.example"}})));
  EXPECT_TRUE(IsForeignOrigin(
      WithHeaders({{"host", "chat.example:8080"}, {"origin", "http://chat.example:8081"}})));
  EXPECT_TRUE(IsForeignOrigin(
      WithHeaders({{"host", "chat.example"}, {"origin", "http://sub.chat.example"}})));
  EXPECT_TRUE(IsForeignOrigin(WithHeaders({{"host", "chat.example"}, {"origin", "null"}})));
  EXPECT_TRUE(IsForeignOrigin(WithHeaders({{"host", "chat.example"}, {"origin", "garbage"}})));
  EXPECT_TRUE(
      IsForeignOrigin(WithHeaders({{"host", "chat.example"}, {"origin", "ftp://chat.example"}})));
  EXPECT_TRUE(IsForeignOrigin(WithHeaders({{"origin", "http://chat.example"}})));  // no Host
}

TEST(IsForeignOriginTest, FetchMetadataDecidesWithoutOrigin) {
  EXPECT_FALSE(IsForeignOrigin(WithHeaders({{"sec-fetch-site", "same-origin"}})));
  EXPECT_FALSE(IsForeignOrigin(WithHeaders({{"sec-fetch-site", "none"}})));
  EXPECT_TRUE(IsForeignOrigin(WithHeaders({{"sec-fetch-site", "cross-site"}})));
  EXPECT_TRUE(IsForeignOrigin(WithHeaders({{"sec-fetch-site", "same-site"}})));
}

}  // namespace
}  // namespace quire::api
