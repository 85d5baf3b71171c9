// The environment and scratch storage of harness.h: which backend the tests
// run on (QUIRE_TEST_BACKEND, and the guard that fails every test without
// it), temporary folders, and a fresh database per test.
//
// Thread-safety: TempDir and TestDatabase are owned by one test; Backend()
// only reads the environment.
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "tests/api/harness.h"
#include "tests/support/scratch_postgres.h"

namespace quire::apitest {

std::string Backend() {
  const char* b = std::getenv("QUIRE_TEST_BACKEND");
  return b ? b : "";
}

namespace {

// No backend, no test: without a known QUIRE_TEST_BACKEND every test fails
// with one message, before its fixture runs (a fixture that skips on other
// backends would otherwise skip), rather than run on some default backend.
// ctest sets it per test (the root CMakeLists.txt). A fatal failure in
// OnTestStart keeps gtest from running the test at all.
class BackendGuard : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo&) override {
    const std::string backend = Backend();
    if (backend == "sqlite" || backend == "lmdb" || backend == "postgres") return;
    GTEST_FAIL() << "QUIRE_TEST_BACKEND is "
                 << (std::getenv("QUIRE_TEST_BACKEND") ? "'" + backend + "'" : "unset")
                 << ": set it to sqlite, lmdb or postgres (ctest sets it from the test name "
                    "api/<backend>/...); no API test runs without it";
  }
};
[[maybe_unused]] const bool backend_guard_installed = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new BackendGuard);
  return true;
}();

}  // namespace

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/quire-api-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::optional<std::string> FreshPostgresDatabaseUrl(std::string* why) {
  const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(why);
  if (!admin) return std::nullopt;
  return quire::testing::CreateScratchDatabase(*admin, why);
}

TestDatabase::~TestDatabase() {
  if (Backend() != "postgres") return;
  std::string unused;
  if (const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(&unused)) {
    quire::testing::DropScratchDatabase(*admin, url_);
  }
}

std::unique_ptr<TestDatabase> TestDatabase::Create(std::string* why) {
  std::unique_ptr<TestDatabase> db(new TestDatabase());
  std::string backend = Backend();
  if (backend == "sqlite") {
    db->url_ = "sqlite:" + db->dir() + "/quire.db";
  } else if (backend == "lmdb") {
    std::string dir = db->dir() + "/lmdb";
    std::filesystem::create_directory(dir);
    db->url_ = "lmdb:" + dir;
  } else if (backend == "postgres") {
    auto url = FreshPostgresDatabaseUrl(why);
    if (!url) return nullptr;
    db->url_ = *url;
  } else {
    throw std::runtime_error("unknown QUIRE_TEST_BACKEND: " + backend);
  }
  return db;
}

}  // namespace quire::apitest
