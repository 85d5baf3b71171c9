#include "storage/postgres/postgres_connection.h"

#include <gtest/gtest.h>

namespace quire::storage::postgres {
namespace {

TEST(PostgresConnectionTest, DefaultsAreAddedUnlessTheUrlSetsThem) {
  const std::string plain = ConnectionString("postgresql://quire@db/quire");
  EXPECT_EQ(plain.find("postgresql://quire@db/quire?gssencmode=disable&connect_timeout=5&"), 0u)
      << plain;
  EXPECT_NE(plain.find("&keepalives_idle=10"), std::string::npos) << plain;
  EXPECT_NE(plain.find("&application_name=quire"), std::string::npos) << plain;

  const std::string own =
      ConnectionString("postgres://db/quire?sslmode=require&connect_timeout=30&application_name=x");
  EXPECT_NE(own.find("connect_timeout=30"), std::string::npos);
  EXPECT_EQ(own.find("connect_timeout=5"), std::string::npos) << own;
  EXPECT_EQ(own.find("application_name=quire"), std::string::npos) << own;
  EXPECT_NE(own.find("sslmode=require&"), std::string::npos) << own;
  // A key that merely ends like one of ours is not ours.
  const std::string similar = ConnectionString("postgres://db/q?xconnect_timeout=1");
  EXPECT_NE(similar.find("&connect_timeout=5"), std::string::npos) << similar;
}

}  // namespace
}  // namespace quire::storage::postgres
