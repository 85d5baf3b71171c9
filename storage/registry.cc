#include "storage/registry.h"

#include <algorithm>

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
      return Status::Invalid("unknown database URL scheme '" + scheme + "' in '" +
                             RedactedUrl(url) + "' (known: " + known + ")");
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
