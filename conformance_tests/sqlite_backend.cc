#include "conformance_tests/sqlite_backend.h"

#include <stdlib.h>

#include <filesystem>
#include <mutex>
#include <vector>

#include "storage/registry.h"
#include "storage/sqlite/sqlite_store.h"

namespace quire::conformance {
namespace {

using storage::Registry;
using storage::Status;
using storage::Store;

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

Status OpenUrl(const std::string& url, const StoreWrapper& wrap, std::unique_ptr<Store>* out) {
  static Registry* registry = [] {
    auto* r = new Registry();
    storage::RegisterSqliteBackend(*r);
    return r;
  }();
  const Status s = registry->Open(url, out);
  if (s.ok() && wrap) *out = wrap(std::move(*out));
  return s;
}

}  // namespace

BackendUnderTest SqliteBackend(std::string name, StoreWrapper wrap) {
  auto url = std::make_shared<std::string>();
  return BackendUnderTest{
      .name = std::move(name),
      .make_fresh_store =
          [url, wrap](std::unique_ptr<Store>* out) {
            const std::string dir = temp_dirs->Make();
            if (dir.empty()) return Status::IoError("mkdtemp failed");
            *url = "sqlite:" + dir + "/quire.db";
            return OpenUrl(*url, wrap, out);
          },
      .reopen_same_store = [url,
                            wrap](std::unique_ptr<Store>* out) { return OpenUrl(*url, wrap, out); },
  };
}

}  // namespace quire::conformance
