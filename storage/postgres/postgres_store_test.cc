// Unit tests of the PostgreSQL backend beyond the conformance suite: the
// schema migration when several processes start at once, and refusing a
// database of a newer Quire or of another application (the SQLite and LMDB
// backends have the same tests beside them). Each test gets a scratch
// database on the server of $QUIRE_TEST_POSTGRES_URL and skips, saying so,
// only when that is not set.
#include "storage/postgres/postgres_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "storage/postgres/postgres_schema.h"
#include "tests/support/scratch_postgres.h"

namespace quire::storage {
namespace {

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    std::optional<std::string> admin = quire::testing::PostgresAdminUrl(&why);
    if (!admin) GTEST_SKIP() << why;
    admin_ = *admin;
    std::optional<std::string> url = quire::testing::CreateScratchDatabase(admin_, &why);
    ASSERT_TRUE(url.has_value()) << why;
    url_ = *url;
  }
  void TearDown() override {
    if (!url_.empty()) quire::testing::DropScratchDatabase(admin_, url_);
  }

  // Runs `sql` on the scratch database outside Quire.
  void Exec(const std::string& sql) {
    pqxx::connection conn(url_);
    pqxx::work tx(conn);
    tx.exec(sql);
    tx.commit();
  }
  // The first column of the first row of `sql`, as text ("" for no row).
  std::string Query(const std::string& sql) {
    pqxx::connection conn(url_);
    pqxx::work tx(conn);
    pqxx::result r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].c_str();
  }

  std::string admin_;
  std::string url_;
};

// Several instances starting at once on an empty database: every one opens,
// the schema is made once, and they share one history.
TEST_F(PostgresStoreTest, ConcurrentStartsMigrateOnce) {
  constexpr int kStarters = 8;
  std::vector<std::unique_ptr<Store>> stores(kStarters);
  std::vector<Status> statuses(kStarters, Status::Ok());
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kStarters; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < kStarters) std::this_thread::yield();  // start together
      statuses[i] = OpenPostgresStore(url_, &stores[i]);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStarters; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << "starter " << i << ": " << statuses[i].ToString();
    ASSERT_NE(stores[i], nullptr) << i;
  }
  EXPECT_EQ(Query("SELECT count(*) FROM quire_meta"), "1");
  EXPECT_EQ(Query("SELECT schema_version FROM quire_meta"),
            std::to_string(postgres::kSchemaVersion));
  // One history: a write through one store is read through another.
  Write w;
  w.op = op::Setup{User{"U1", "first", "first", "hash", 1}, Session{"token-1", "U1", 1, 1}};
  ASSERT_TRUE(stores[0]->Apply(std::span<Write>(&w, 1)).ok());
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  Head head;
  ASSERT_TRUE(stores[kStarters - 1]->GetHead(&head).ok());
  EXPECT_EQ(head.last_seq, w.last_seq);
  stores.clear();
  // Opening an up-to-date database again changes nothing.
  std::unique_ptr<Store> again;
  ASSERT_TRUE(OpenPostgresStore(url_, &again).ok());
  ASSERT_TRUE(again->GetHead(&head).ok());
  EXPECT_EQ(head.last_seq, w.last_seq);
}

TEST_F(PostgresStoreTest, RefusesANewerSchemaWithoutChangingIt) {
  {
    std::unique_ptr<Store> store;
    ASSERT_TRUE(OpenPostgresStore(url_, &store).ok());
  }
  Exec("UPDATE quire_meta SET schema_version = 99");
  std::unique_ptr<Store> store;
  const Status s = OpenPostgresStore(url_, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find("schema version 99, newer"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_EQ(store, nullptr);
  EXPECT_EQ(Query("SELECT schema_version FROM quire_meta"), "99");
}

TEST_F(PostgresStoreTest, RefusesAnotherApplicationsTablesWithoutTouchingThem) {
  for (const std::string table : {"users", "events"}) {
    SCOPED_TRACE(table);
    Exec("DROP TABLE IF EXISTS users, events");
    Exec("CREATE TABLE " + table + " (id integer PRIMARY KEY, note text)");
    Exec("INSERT INTO " + table + " VALUES (1, 'theirs')");
    std::unique_ptr<Store> store;
    const Status s = OpenPostgresStore(url_, &store);
    EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
    EXPECT_NE(s.message().find("not a Quire database"), std::string::npos) << s.message();
    EXPECT_EQ(store, nullptr);
    // Nothing of Quire's was made, and their data is as it was.
    EXPECT_EQ(Query("SELECT to_regclass('quire_meta')"), "");
    EXPECT_EQ(Query("SELECT note FROM " + table + " WHERE id = 1"), "theirs");
  }
}

}  // namespace
}  // namespace quire::storage
