// The conformance suite run against the PostgreSQL backend: each fresh store
// is a new scratch database on the server of $QUIRE_TEST_POSTGRES_URL
// (tools/test.sh starts a throwaway one), dropped when the program ends.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "conformance_tests/suite.h"
#include "conformance_tests/url_backend.h"
#include "storage/postgres/postgres_store.h"
#include "storage/registry.h"
#include "tests/support/scratch_postgres.h"

namespace {

using quire::storage::Status;

// Drops the scratch databases when the test program ends.
class ScratchDatabases : public ::testing::Environment {
 public:
  Status Make(std::string* url) {
    std::string why;
    const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(&why);
    if (!admin) return Status::Unavailable(why);
    const std::optional<std::string> fresh = quire::testing::CreateScratchDatabase(*admin, &why);
    if (!fresh) return Status::Unavailable(why);
    std::lock_guard<std::mutex> lock(mu_);
    admin_ = *admin;
    made_.push_back(*fresh);
    *url = *fresh;
    return Status::Ok();
  }
  void TearDown() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& url : made_) quire::testing::DropScratchDatabase(admin_, url);
    made_.clear();
  }

 private:
  std::mutex mu_;
  std::string admin_;
  std::vector<std::string> made_;
};

ScratchDatabases* const scratch =
    static_cast<ScratchDatabases*>(::testing::AddGlobalTestEnvironment(new ScratchDatabases));

}  // namespace

QUIRE_INSTANTIATE_STORE_CONFORMANCE(
    Postgres, quire::conformance::UrlBackend("postgres", quire::storage::RegisterPostgresBackend,
                                             [](std::string* url) { return scratch->Make(url); }));
