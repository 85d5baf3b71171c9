#include "server/chat/login_throttle.h"

#include <algorithm>

namespace quire::chat {

constexpr storage::Micros kSecond = 1000000;

LoginThrottle::LoginThrottle(ThrottleLimits per_name, ThrottleLimits per_address,
                             std::size_t max_keys)
    : names_(per_name, max_keys), addresses_(per_address, max_keys) {}

storage::Micros LoginThrottle::RetryAfter(const std::string& name_key, const std::string& address,
                                          storage::Micros now) {
  std::lock_guard<std::mutex> lock(mu_);
  return std::max(names_.RetryAfter(name_key, now), addresses_.RetryAfter(address, now));
}

void LoginThrottle::Attempted(const std::string& name_key, const std::string& address,
                              storage::Micros now) {
  std::lock_guard<std::mutex> lock(mu_);
  names_.Add(name_key, now);
  addresses_.Add(address, now);
}

void LoginThrottle::Succeeded(const std::string& name_key, const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  names_.Clear(name_key);
  addresses_.Refund(address);
}

void LoginThrottle::Buckets::Refund(const std::string& key) {
  auto it = buckets_.find(key);
  if (it != buckets_.end()) {
    it->second.debt = std::max<storage::Micros>(0, it->second.debt - limits_.drain_every);
  }
}

storage::Micros LoginThrottle::Buckets::Debt(const Bucket& b, storage::Micros now) const {
  return std::max<storage::Micros>(0, b.debt - std::max<storage::Micros>(0, now - b.at));
}

storage::Micros LoginThrottle::Buckets::RetryAfter(const std::string& key, storage::Micros now) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) return 0;
  const storage::Micros over =
      Debt(it->second, now) + limits_.drain_every - limits_.burst * limits_.drain_every;
  if (over <= 0) return 0;
  return std::max(kSecond, over);
}

void LoginThrottle::Buckets::Add(const std::string& key, storage::Micros now) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) {
      // Make room: first every drained bucket, else the emptiest one.
      std::erase_if(buckets_, [&](const auto& entry) { return Debt(entry.second, now) == 0; });
      if (buckets_.size() >= max_keys_) {
        auto emptiest = std::min_element(buckets_.begin(), buckets_.end(), [&](auto& a, auto& b) {
          return Debt(a.second, now) < Debt(b.second, now);
        });
        buckets_.erase(emptiest);
      }
    }
    it = buckets_.emplace(key, Bucket{}).first;
  }
  it->second.debt = Debt(it->second, now) + limits_.drain_every;
  it->second.at = now;
}

}  // namespace quire::chat
