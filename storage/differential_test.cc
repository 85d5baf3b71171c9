// The backends against each other: one seeded workload of every write
// operation (valid and refused ones: taken names, stored ids, unknown and
// deleted targets, repeated idempotency keys, expiry, purges) applied to
// each backend, which must give the same outcome for every write and end with
// the same head, history and records. The chat rules are shared; what this
// compares is the engines under them.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "storage/lmdb/lmdb_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/store.h"
#include "tests/support/scratch_postgres.h"
#include "tests/support/workload.h"

namespace quire::storage {
namespace {

using quire::testing::Snapshot;
using quire::testing::Workload;

// What a write answered, as text to compare (status messages may differ).
std::string Outcome(const Write& w) {
  std::ostringstream out;
  out << CodeName(w.status.code()) << " seq " << w.last_seq;
  if (const auto* send = std::get_if<op::SendMessage>(&w.op)) {
    const Message& m = send->message;
    out << " replayed " << send->replayed << " message " << m.id << "/" << m.conversation << "/"
        << m.sender << "/" << m.body << "/" << m.at << "/" << m.deleted_at.value_or(-1);
  } else if (const auto* expire = std::get_if<op::Expire>(&w.op)) {
    out << " expired " << expire->deleted_messages << "/" << expire->deleted_conversations;
  } else if (const auto* purge = std::get_if<op::Purge>(&w.op)) {
    out << " purged " << purge->purged_events;
  }
  return out.str();
}

// Applies the same workload to `a` and `b`, comparing every outcome, and the
// whole stores every 25 batches and at the end.
void ExpectSameBehaviour(Store& a, Store& b, const char* a_name, const char* b_name) {
  Workload workload(20261203);
  int refused = 0;
  for (int n = 1; n <= 300; ++n) {
    std::vector<Write> batch_a = workload.NextBatch();
    std::vector<Write> batch_b = batch_a;
    ASSERT_TRUE(a.Apply(batch_a).ok()) << a_name << ", batch " << n;
    ASSERT_TRUE(b.Apply(batch_b).ok()) << b_name << ", batch " << n;
    for (std::size_t i = 0; i < batch_a.size(); ++i) {
      ASSERT_EQ(Outcome(batch_a[i]), Outcome(batch_b[i]))
          << a_name << " and " << b_name << " differ on write " << i << " of batch " << n;
      if (!batch_a[i].status.ok()) ++refused;
    }
    if (n % 25 == 0) {
      ASSERT_EQ(Snapshot(a, workload), Snapshot(b, workload))
          << a_name << " and " << b_name << " hold different things after batch " << n;
    }
  }
  // The workload exercised refusals as well as writes.
  EXPECT_GT(refused, 100);
  EXPECT_GT(workload.messages().size(), 200u);
}

class StoreDifferentialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("quire-differential-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Store> OpenSqlite() {
    std::unique_ptr<Store> store;
    EXPECT_TRUE(OpenSqliteStore((dir_ / "quire.db").string(), &store).ok());
    return store;
  }

  std::filesystem::path dir_;
};

TEST_F(StoreDifferentialTest, SqliteAndLmdbAgree) {
  std::unique_ptr<Store> sqlite = OpenSqlite();
  std::unique_ptr<Store> lmdb;
  ASSERT_TRUE(OpenLmdbStore((dir_ / "lmdb").string(), &lmdb).ok());
  ASSERT_TRUE(sqlite && lmdb);
  ExpectSameBehaviour(*sqlite, *lmdb, "SQLite", "LMDB");
}

TEST_F(StoreDifferentialTest, PostgresAgreesWithSqlite) {
  std::string why;
  const std::optional<std::string> admin = testing::PostgresAdminUrl(&why);
  if (!admin) GTEST_SKIP() << why;
  const std::optional<std::string> url = testing::CreateScratchDatabase(*admin, &why);
  ASSERT_TRUE(url) << why;
  {
    std::unique_ptr<Store> sqlite = OpenSqlite();
    std::unique_ptr<Store> postgres;
    ASSERT_TRUE(OpenPostgresStore(*url, &postgres).ok());
    ASSERT_TRUE(sqlite);
    ExpectSameBehaviour(*sqlite, *postgres, "SQLite", "PostgreSQL");
  }
  testing::DropScratchDatabase(*admin, *url);
}

}  // namespace
}  // namespace quire::storage
