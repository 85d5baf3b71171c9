// LoginThrottle: how many failed logins a name, and a client address, may
// have before further attempts are refused for a while (429 with
// Retry-After), so that guessing passwords is slow and cannot keep the
// server busy hashing.
//
// Each key (a canonical name, an address) has a bucket that fills by one per
// failed login and drains by one every `drain_every`: `burst` failures in a
// row are allowed, then one per `drain_every`. A successful login empties the
// name's bucket and takes its own attempt back from the address's. Refusals
// are decided before any password is hashed, and the same way for names that
// exist and names that do not.
//
// Memory is bounded: at most `max_keys` buckets per kind; beyond that the
// emptiest bucket makes room.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "storage/store.h"

namespace quire::chat {

struct ThrottleLimits {
  int burst = 5;
  storage::Micros drain_every = 30LL * 1000000;
};

class LoginThrottle {
 public:
  LoginThrottle(ThrottleLimits per_name, ThrottleLimits per_address, std::size_t max_keys = 100000);

  // 0 when an attempt for `name_key` from `address` may go ahead now, else
  // how long until one may (at least a second).
  storage::Micros RetryAfter(const std::string& name_key, const std::string& address,
                             storage::Micros now);
  // Counts an attempt as failed, before its password is checked: attempts
  // made at once cannot slip through together.
  void Attempted(const std::string& name_key, const std::string& address, storage::Micros now);
  // The attempt succeeded: the name's bucket empties and the address gets
  // its attempt back.
  void Succeeded(const std::string& name_key, const std::string& address);

 private:
  // The fill level in time: each failure adds `drain_every`, and it drains
  // one microsecond per microsecond (integers, so waits are exact).
  struct Bucket {
    storage::Micros debt = 0;
    storage::Micros at = 0;  // when `debt` was last brought up to date
  };
  class Buckets {
   public:
    Buckets(ThrottleLimits limits, std::size_t max_keys) : limits_(limits), max_keys_(max_keys) {}
    storage::Micros RetryAfter(const std::string& key, storage::Micros now);
    void Add(const std::string& key, storage::Micros now);
    void Clear(const std::string& key) { buckets_.erase(key); }
    void Refund(const std::string& key);

   private:
    storage::Micros Debt(const Bucket& b, storage::Micros now) const;
    const ThrottleLimits limits_;
    const std::size_t max_keys_;
    std::unordered_map<std::string, Bucket> buckets_;
  };

  std::mutex mu_;
  Buckets names_;
  Buckets addresses_;
};

}  // namespace quire::chat
