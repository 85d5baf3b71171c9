// Registry: finds a storage backend by the scheme of a database URL.
//
// "sqlite:PATH" opens the backend registered under "sqlite"; a URL such as
// "postgresql://host/db" opens the one under "postgresql". Backends register a
// factory once at start-up; out-of-tree backends register theirs the same way.
//
// Thread-safety: Register and Open may be called concurrently.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/status.h"
#include "storage/store.h"

namespace quire::storage {

// Opens (creating if missing, and migrating to the current schema) the store
// named by `url`. Returns Unavailable when the engine cannot be reached,
// Corrupt when the data is unreadable, Invalid for a malformed URL.
using StoreFactory = std::function<Status(const std::string& url, std::unique_ptr<Store>* out)>;

class Registry {
 public:
  // The process-wide registry.
  static Registry& Global();

  // Registers `factory` for `scheme` (without the colon). A later
  // registration of the same scheme replaces the earlier one.
  // `store_interface_version` is the version of storage/store.h the backend
  // was compiled against: leave the default, which is evaluated where the
  // backend is compiled. Invalid, registering nothing, when this Quire does
  // not know that version.
  Status Register(const std::string& scheme, StoreFactory factory,
                  int store_interface_version = kStoreInterfaceVersion);

  // Opens `url` with the factory of its scheme; Invalid when none is
  // registered, or when the store it opens reports an interface version this
  // Quire does not know.
  Status Open(const std::string& url, std::unique_ptr<Store>* out) const;

  std::vector<std::string> Schemes() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, StoreFactory> factories_;
};

// The scheme of a database URL: the text before the first ':'; empty if none.
std::string UrlScheme(const std::string& url);

// The URL with the password of its user part, if any, replaced by "***"
// (scheme://user:***@host/…), for messages and logs.
std::string RedactedUrl(const std::string& url);

}  // namespace quire::storage
