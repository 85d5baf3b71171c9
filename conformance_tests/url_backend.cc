#include "conformance_tests/url_backend.h"

#include <stdlib.h>

#include <filesystem>
#include <mutex>
#include <vector>

namespace quire::conformance {
namespace {

using storage::Registry;
using storage::Status;
using storage::Store;

// Removes the temporary directories when the test program ends.
class TempDirs : public ::testing::Environment {
 public:
  std::string Make() {
    std::string pattern = ::testing::TempDir() + "quire-conformance-XXXXXX";
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

}  // namespace

BackendUnderTest UrlBackend(std::string name, RegisterBackend register_backend, FreshUrl fresh_url,
                            StoreWrapper wrap) {
  // Shared by every copy of the BackendUnderTest (GoogleTest keeps copies for
  // the whole run).
  auto registry = std::make_shared<Registry>();
  register_backend(*registry);
  auto url = std::make_shared<std::string>();
  auto open = [registry, url, wrap](std::unique_ptr<Store>* out) {
    const Status s = registry->Open(*url, out);
    if (s.ok() && wrap) *out = wrap(std::move(*out));
    return s;
  };
  return BackendUnderTest{
      .name = std::move(name),
      .make_fresh_store =
          [fresh_url, url, open](std::unique_ptr<Store>* out) {
            if (Status s = fresh_url(url.get()); !s.ok()) return s;
            return open(out);
          },
      .reopen_same_store = open,
  };
}

FreshUrl TempDirUrl(std::string scheme, std::string leaf) {
  return [scheme, leaf](std::string* url) {
    const std::string dir = temp_dirs->Make();
    if (dir.empty()) return Status::IoError("mkdtemp failed");
    *url = scheme + ":" + dir + (leaf.empty() ? "" : "/" + leaf);
    return Status::Ok();
  };
}

}  // namespace quire::conformance
