// An address range in CIDR notation ("10.0.0.0/8", "2001:db8::/32", or a
// single address), for --metrics-allow.
//
// Thread-safe: an immutable value.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace quire::observe {

class AddressRange {
 public:
  // nullopt when `text` is not an IPv4 or IPv6 address with an optional
  // prefix length in range.
  static std::optional<AddressRange> Parse(const std::string& text);
  // Whether `address` (as the server sees a peer: "127.0.0.1", "::1",
  // "::ffff:10.1.2.3") lies in the range.
  bool Contains(const std::string& address) const;

 private:
  std::array<std::uint8_t, 16> bytes_{};  // IPv4 as IPv4-mapped IPv6
  int prefix_ = 128;
};

// 127.0.0.0/8, ::1 and their IPv4-mapped forms.
bool IsLoopback(const std::string& address);

}  // namespace quire::observe
