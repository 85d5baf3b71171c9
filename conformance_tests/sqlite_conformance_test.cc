// The conformance suite run against the SQLite backend, opened through the
// registry as "sqlite:PATH" on a file in a new temporary directory per test.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "conformance_tests/suite.h"
#include "storage/registry.h"
#include "storage/sqlite/sqlite_store.h"

namespace {

using quire::conformance::BackendUnderTest;
using quire::storage::Registry;
using quire::storage::Status;
using quire::storage::Store;

// Removes the temporary directories when the test program ends.
class TempDirs : public ::testing::Environment {
 public:
  std::string Make() {
    std::string pattern = ::testing::TempDir() + "quire-sqlite-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) return std::string();
    std::lock_guard<std::mutex> lock(mu_);
    dirs_.push_back(pattern);
    return pattern;
  }
  void TearDown() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& dir : dirs_) {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
    dirs_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<std::string> dirs_;
};

TempDirs* const temp_dirs =
    static_cast<TempDirs*>(::testing::AddGlobalTestEnvironment(new TempDirs));

Status OpenUrl(const std::string& url, std::unique_ptr<Store>* out) {
  static Registry* registry = [] {
    auto* r = new Registry();
    quire::storage::RegisterSqliteBackend(*r);
    return r;
  }();
  return registry->Open(url, out);
}

BackendUnderTest SqliteBackend() {
  auto url = std::make_shared<std::string>();
  return BackendUnderTest{
      .name = "sqlite",
      .make_fresh_store =
          [url](std::unique_ptr<Store>* out) {
            const std::string dir = temp_dirs->Make();
            if (dir.empty()) return Status::IoError("mkdtemp failed");
            *url = "sqlite:" + dir + "/quire.db";
            return OpenUrl(*url, out);
          },
      .reopen_same_store = [url](std::unique_ptr<Store>* out) { return OpenUrl(*url, out); },
  };
}

}  // namespace

QUIRE_INSTANTIATE_STORE_CONFORMANCE(Sqlite, SqliteBackend());
