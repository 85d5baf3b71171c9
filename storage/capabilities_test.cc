// The capabilities each of Quire's backends declares, exactly. The
// conformance suite skips the properties a backend says it lacks, so a
// capability that changes by mistake would silently skip tests; here it fails.
// PostgreSQL needs $QUIRE_TEST_POSTGRES_URL and skips, saying so, without it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "storage/lmdb/lmdb_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/store.h"
#include "tests/support/scratch_postgres.h"

namespace quire::storage {
namespace {

// Every field of Capabilities, so that a field added to it is noticed here.
struct Declared {
  bool multi_process_writers;
  bool survives_process_kill;
  bool survives_power_loss;
  bool operator==(const Declared&) const = default;
};

Declared Of(const Store& store) {
  const Capabilities c = store.capabilities();
  static_assert(sizeof(Capabilities) == 3 * sizeof(bool),
                "Capabilities has a new field: add it to Declared and to the expectations below");
  return Declared{c.multi_process_writers, c.survives_process_kill, c.survives_power_loss};
}

std::ostream& operator<<(std::ostream& os, const Declared& d) {
  return os << "{multi_process_writers=" << d.multi_process_writers
            << ", survives_process_kill=" << d.survives_process_kill
            << ", survives_power_loss=" << d.survives_power_loss << "}";
}

class CapabilitiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "quire-capabilities-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(CapabilitiesTest, Sqlite) {
  std::unique_ptr<Store> store;
  ASSERT_TRUE(OpenSqliteStore(dir_ + "/quire.db", &store).ok());
  // One process per file (commit notifications do not cross processes);
  // WAL with synchronous=FULL survives a kill and power loss.
  EXPECT_EQ(Of(*store), (Declared{.multi_process_writers = false,
                                  .survives_process_kill = true,
                                  .survives_power_loss = true}));
}

TEST_F(CapabilitiesTest, Lmdb) {
  std::unique_ptr<Store> store;
  ASSERT_TRUE(OpenLmdbStore("lmdb:" + dir_ + "/durable", &store).ok());
  // One process per directory (an exclusive lock); durable by default.
  EXPECT_EQ(Of(*store), (Declared{.multi_process_writers = false,
                                  .survives_process_kill = true,
                                  .survives_power_loss = true}));
  store.reset();
  ASSERT_TRUE(OpenLmdbStore("lmdb:" + dir_ + "/fast?sync=off", &store).ok());
  // sync=off gives up power-loss safety only.
  EXPECT_EQ(Of(*store), (Declared{.multi_process_writers = false,
                                  .survives_process_kill = true,
                                  .survives_power_loss = false}));
}

TEST_F(CapabilitiesTest, Postgres) {
  std::string why;
  const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(&why);
  if (!admin) GTEST_SKIP() << why;
  const std::optional<std::string> url = quire::testing::CreateScratchDatabase(*admin, &why);
  ASSERT_TRUE(url.has_value()) << why;
  {
    std::unique_ptr<Store> store;
    const Status s = OpenPostgresStore(*url, &store);
    ASSERT_TRUE(s.ok()) << s.ToString();
    // Several processes share one database; the server's fsync keeps commits.
    EXPECT_EQ(Of(*store), (Declared{.multi_process_writers = true,
                                    .survives_process_kill = true,
                                    .survives_power_loss = true}));
  }
  quire::testing::DropScratchDatabase(*admin, *url);
}

}  // namespace
}  // namespace quire::storage
