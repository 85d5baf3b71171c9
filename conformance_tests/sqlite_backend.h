// The SQLite backend as a BackendUnderTest: each fresh store is a new file in
// a new temporary directory (removed when the test program ends), opened
// through a registry as "sqlite:PATH".
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "conformance_tests/suite.h"
#include "storage/store.h"

namespace quire::conformance {

using StoreWrapper =
    std::function<std::unique_ptr<storage::Store>(std::unique_ptr<storage::Store>)>;

// `wrap`, when given, wraps every store opened (fresh or reopened).
BackendUnderTest SqliteBackend(std::string name, StoreWrapper wrap = nullptr);

}  // namespace quire::conformance
