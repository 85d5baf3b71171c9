// Backends of this repository as BackendUnderTest: opened by URL through a
// registry, the way `quire serve` opens them. Each fresh store gets a new URL
// (a new temporary directory, a new scratch database); reopening opens the
// last URL again.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "conformance_tests/suite.h"
#include "storage/registry.h"
#include "storage/status.h"
#include "storage/store.h"

namespace quire::conformance {

// Registers one backend's schemes.
using RegisterBackend = std::function<void(storage::Registry&)>;
// Makes the URL of a new, empty database.
using FreshUrl = std::function<storage::Status(std::string* url)>;
// Wraps a store just opened (see broken_store.h).
using StoreWrapper =
    std::function<std::unique_ptr<storage::Store>(std::unique_ptr<storage::Store>)>;

// `wrap`, when given, wraps every store opened (fresh or reopened).
BackendUnderTest UrlBackend(std::string name, RegisterBackend register_backend, FreshUrl fresh_url,
                            StoreWrapper wrap = nullptr);

// URLs "SCHEME:DIR" (or "SCHEME:DIR/LEAF" when `leaf` is given), each in a new
// temporary directory that is removed when the test program ends.
FreshUrl TempDirUrl(std::string scheme, std::string leaf = "");

}  // namespace quire::conformance
