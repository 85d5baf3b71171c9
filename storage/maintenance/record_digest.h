// RecordDigest: what a table holds, as a count and a sum of SHA-256 digests
// of its records. The sum does not depend on the order records were added
// in, so two engines that list a table in different orders (their own key
// orders) still compare equal exactly when they hold the same records.
// A migration compares every record of source and target this way.
//
// Thread-safety: a value; not for concurrent use.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "storage/engine.h"

namespace quire::storage::maintenance {

class RecordDigest {
 public:
  void Add(const User& r);
  void Add(const Session& r);
  void Add(const Invitation& r);
  void Add(const Conversation& r);
  void Add(const Message& r);
  void Add(const Event& r);
  void Add(const IdempotencyRecord& r);

  std::uint64_t count() const { return count_; }
  // The sum, in hex (for messages).
  std::string Hex() const;

  friend bool operator==(const RecordDigest&, const RecordDigest&) = default;

 private:
  void AddEncoded(const std::string& encoded);

  std::uint64_t count_ = 0;
  std::array<std::uint64_t, 4> sum_{};  // four 64-bit lanes, each mod 2^64
};

}  // namespace quire::storage::maintenance
