#include "storage/registry.h"

#include <algorithm>
#include <string>

#include "storage/chat_rules.h"

namespace quire::storage {

Registry& Registry::Global() {
  static Registry* registry = new Registry();
  return *registry;
}

namespace {

// Versions this build can use: the interface only grows, with default bodies.
Status CheckStoreInterfaceVersion(int version, const std::string& scheme) {
  if (version >= 1 && version <= kStoreInterfaceVersion) return Status::Ok();
  return Status::Invalid("the storage backend for '" + scheme +
                         ":' was built for store interface version " + std::to_string(version) +
                         "; this Quire knows versions 1 to " +
                         std::to_string(kStoreInterfaceVersion));
}

}  // namespace

Status Registry::Register(const std::string& scheme, StoreFactory factory,
                          int store_interface_version) {
  if (Status s = CheckStoreInterfaceVersion(store_interface_version, scheme); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  factories_[scheme] = std::move(factory);
  return Status::Ok();
}

Status Registry::Open(const std::string& url, std::unique_ptr<Store>* out) const {
  const std::string scheme = UrlScheme(url);
  StoreFactory factory;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = factories_.find(scheme);
    if (it == factories_.end()) return UnknownScheme(url);
    factory = it->second;
  }
  std::unique_ptr<Store> store;
  if (Status s = factory(url, &store); !s.ok()) return s;
  if (Status s = CheckStoreInterfaceVersion(store->interface_version(), scheme); !s.ok()) {
    return s;
  }
  *out = std::move(store);
  return Status::Ok();
}

Status Registry::UnknownScheme(const std::string& url) const {
  std::string known;
  for (const auto& [name, unused] : factories_) known += (known.empty() ? "" : ", ") + name;
  return Status::Invalid("unknown database URL scheme '" + UrlScheme(url) + "' in '" +
                         RedactedUrl(url) + "' (known: " + known + ")");
}

Status Registry::RegisterEngine(const std::string& scheme, EngineFactory factory,
                                int engine_interface_version) {
  if (Status s = CheckEngineInterfaceVersion(engine_interface_version); !s.ok()) return s;
  StoreFactory serve = [factory](const std::string& url, std::unique_ptr<Store>* out) {
    std::unique_ptr<Engine> engine;
    if (Status s = factory(url, EngineUse::kServe, &engine); !s.ok()) return s;
    return OpenEngineStore(std::move(engine), out);
  };
  std::lock_guard<std::mutex> lock(mu_);
  factories_[scheme] = std::move(serve);
  engine_factories_[scheme] = std::move(factory);
  return Status::Ok();
}

Status Registry::OpenEngine(const std::string& url, EngineUse use,
                            std::unique_ptr<Engine>* out) const {
  const std::string scheme = UrlScheme(url);
  EngineFactory factory;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = engine_factories_.find(scheme);
    if (it == engine_factories_.end()) {
      if (factories_.count(scheme) == 0) return UnknownScheme(url);
      return Status::Invalid("the storage backend for '" + scheme +
                             ":' offers no engine, so it cannot be copied, restored or checked");
    }
    factory = it->second;
  }
  std::unique_ptr<Engine> engine;
  if (Status s = factory(url, use, &engine); !s.ok()) return s;
  if (Status s = CheckEngineInterfaceVersion(engine->engine_interface_version()); !s.ok()) {
    return s;
  }
  *out = std::move(engine);
  return Status::Ok();
}

std::vector<std::string> Registry::Schemes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, unused] : factories_) names.push_back(name);
  return names;
}

std::string UrlScheme(const std::string& url) {
  const auto colon = url.find(':');
  return colon == std::string::npos ? std::string() : url.substr(0, colon);
}

std::string RedactedUrl(const std::string& url) {
  const std::size_t start = url.find("://");
  if (start == std::string::npos) return url;
  const std::size_t authority = start + 3;
  const std::size_t end = std::min(url.find_first_of("/?#", authority), url.size());
  const std::size_t at = url.rfind('@', end);
  if (at == std::string::npos || at < authority) return url;
  const std::size_t colon = url.find(':', authority);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace quire::storage
