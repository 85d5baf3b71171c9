// The conformance suite run against the LMDB backend: each fresh store is a
// new temporary directory (removed when the test program ends), opened
// through a registry as "lmdb:DIR".
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "conformance_tests/suite.h"
#include "storage/lmdb/lmdb_store.h"
#include "storage/registry.h"

namespace {

using quire::storage::Registry;
using quire::storage::Status;
using quire::storage::Store;

// Removes the temporary directories when the test program ends.
class TempDirs : public ::testing::Environment {
 public:
  std::string Make() {
    std::string pattern = ::testing::TempDir() + "quire-lmdb-XXXXXX";
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
    quire::storage::RegisterLmdbBackend(*r);
    return r;
  }();
  return registry->Open(url, out);
}

quire::conformance::BackendUnderTest LmdbBackend() {
  auto url = std::make_shared<std::string>();
  return quire::conformance::BackendUnderTest{
      .name = "lmdb",
      .make_fresh_store =
          [url](std::unique_ptr<Store>* out) {
            const std::string dir = temp_dirs->Make();
            if (dir.empty()) return Status::IoError("mkdtemp failed");
            *url = "lmdb:" + dir;
            return OpenUrl(*url, out);
          },
      .reopen_same_store = [url](std::unique_ptr<Store>* out) { return OpenUrl(*url, out); },
  };
}

}  // namespace

QUIRE_INSTANTIATE_STORE_CONFORMANCE(Lmdb, LmdbBackend());
