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

#include "storage/engine.h"
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

  // Registers an engine (storage/engine.h) for `scheme`: Open then serves
  // it through the chat rules (opened with EngineUse::kServe), and
  // OpenEngine opens it for the maintenance commands. Invalid, registering
  // nothing, for an engine interface version this Quire does not know.
  Status RegisterEngine(const std::string& scheme, EngineFactory factory,
                        int engine_interface_version = kEngineInterfaceVersion);

  // Opens the engine of `url` for `use`. Invalid when the scheme is unknown
  // or its backend registered only a Store (no engine to copy or check).
  Status OpenEngine(const std::string& url, EngineUse use, std::unique_ptr<Engine>* out) const;

  std::vector<std::string> Schemes() const;

 private:
  Status UnknownScheme(const std::string& url) const;  // requires mu_

  mutable std::mutex mu_;
  std::map<std::string, StoreFactory> factories_;
  std::map<std::string, EngineFactory> engine_factories_;
};

// The scheme of a database URL: the text before the first ':'; empty if none.
std::string UrlScheme(const std::string& url);

// The URL with the password of its user part, if any, replaced by "***"
// (scheme://user:***@host/…), for messages and logs.
std::string RedactedUrl(const std::string& url);

}  // namespace quire::storage
