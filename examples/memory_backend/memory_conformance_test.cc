// The conformance suite run against the in-memory backend, opened through a
// Registry as "memory:", the way the server opens any backend by its URL.
#include <memory>
#include <string>

#include "conformance_tests/suite.h"
#include "memory_store.h"
#include "storage/registry.h"
#include "storage/status.h"
#include "storage/store.h"

namespace {

using quire::conformance::BackendUnderTest;
using quire::storage::Registry;
using quire::storage::Status;
using quire::storage::Store;

Status OpenUrl(const std::string& url, std::unique_ptr<Store>* out) {
  static Registry* const registry = [] {
    auto* r = new Registry();  // never destroyed: tests may run until exit
    example::RegisterMemoryBackend(*r);
    return r;
  }();
  return registry->Open(url, out);
}

BackendUnderTest MemoryBackend() {
  return BackendUnderTest{
      .name = "memory",
      .make_fresh_store = [](std::unique_ptr<Store>* out) { return OpenUrl("memory:", out); },
      // Empty: the data does not outlive the Store, so there is nothing to
      // reopen. The suite skips its reopen and crash tests, saying why.
      .reopen_same_store = {},
  };
}

}  // namespace

QUIRE_INSTANTIATE_STORE_CONFORMANCE(Memory, MemoryBackend());
