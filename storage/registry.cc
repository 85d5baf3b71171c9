#include "storage/registry.h"

namespace quire::storage {

Registry& Registry::Global() {
  static Registry* registry = new Registry();
  return *registry;
}

void Registry::Register(const std::string& scheme, StoreFactory factory) {
  std::lock_guard<std::mutex> lock(mu_);
  factories_[scheme] = std::move(factory);
}

Status Registry::Open(const std::string& url, std::unique_ptr<Store>* out) const {
  const std::string scheme = UrlScheme(url);
  StoreFactory factory;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = factories_.find(scheme);
    if (it == factories_.end()) {
      std::string known;
      for (const auto& [name, unused] : factories_) known += (known.empty() ? "" : ", ") + name;
      return Status::Invalid("unknown database URL scheme '" + scheme + "' in '" + url +
                             "' (known: " + known + ")");
    }
    factory = it->second;
  }
  return factory(url, out);
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

}  // namespace quire::storage
