#include "storage/registry.h"

#include <gtest/gtest.h>

namespace quire::storage {
namespace {

TEST(RegistryTest, UrlScheme) {
  EXPECT_EQ(UrlScheme("sqlite:quire.db"), "sqlite");
  EXPECT_EQ(UrlScheme("postgresql://u@h/db"), "postgresql");
  EXPECT_EQ(UrlScheme("no scheme"), "");
}

TEST(RegistryTest, RedactedUrlHidesOnlyThePassword) {
  EXPECT_EQ(RedactedUrl("postgresql://quire:s3cret@db.example:5432/quire?sslmode=require"),
            "postgresql://quire:***@db.example:5432/quire?sslmode=require");
  EXPECT_EQ(RedactedUrl("postgres://quire@db/quire"), "postgres://quire@db/quire");
  EXPECT_EQ(RedactedUrl("postgres://db/quire"), "postgres://db/quire");
  // A password with '@' in it (percent-encoding is optional for libpq).
  EXPECT_EQ(RedactedUrl("postgresql://u:p@ss@h/db"), "postgresql://u:***@h/db");
  // An '@' after the authority is not a user part.
  EXPECT_EQ(RedactedUrl("postgresql://h/db?options=a:b@c"), "postgresql://h/db?options=a:b@c");
  EXPECT_EQ(RedactedUrl("sqlite:/var/lib/quire:db@x"), "sqlite:/var/lib/quire:db@x");
}

TEST(RegistryTest, UnknownSchemeIsInvalidAndRedacted) {
  Registry registry;
  std::unique_ptr<Store> store;
  Status s = registry.Open("mysql://root:hunter2@h/db", &store);
  EXPECT_EQ(s.code(), Status::Code::kInvalid);
  EXPECT_EQ(s.message().find("hunter2"), std::string::npos) << s.message();
  EXPECT_EQ(store, nullptr);
}

}  // namespace
}  // namespace quire::storage
