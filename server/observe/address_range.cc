#include "server/observe/address_range.h"

#include <arpa/inet.h>

#include <cstring>

namespace quire::observe {
namespace {

// The address as 16 bytes (IPv4 mapped into IPv6); false when unparsable.
bool ToBytes(const std::string& text, std::array<std::uint8_t, 16>* out, bool* v4) {
  in_addr a4{};
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    out->fill(0);
    (*out)[10] = 0xff;
    (*out)[11] = 0xff;
    std::memcpy(out->data() + 12, &a4, 4);
    *v4 = true;
    return true;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    std::memcpy(out->data(), &a6, 16);
    *v4 = false;
    return true;
  }
  return false;
}

}  // namespace

std::optional<AddressRange> AddressRange::Parse(const std::string& text) {
  const std::size_t slash = text.find('/');
  AddressRange range;
  bool v4 = false;
  if (!ToBytes(text.substr(0, slash), &range.bytes_, &v4)) return std::nullopt;
  const int max = v4 ? 32 : 128;
  int prefix = max;
  if (slash != std::string::npos) {
    const std::string digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    prefix = std::stoi(digits);
    if (prefix > max) return std::nullopt;
  }
  range.prefix_ = v4 ? prefix + 96 : prefix;
  return range;
}

bool AddressRange::Contains(const std::string& address) const {
  std::array<std::uint8_t, 16> bytes{};
  bool v4 = false;
  if (!ToBytes(address, &bytes, &v4)) return false;
  int bits = prefix_;
  for (std::size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const std::uint8_t mask = bits >= 8 ? 0xff : static_cast<std::uint8_t>(0xff << (8 - bits));
    if ((bytes[i] & mask) != (bytes_[i] & mask)) return false;
  }
  return true;
}

bool IsLoopback(const std::string& address) {
  static const AddressRange v4 = *AddressRange::Parse("127.0.0.0/8");
  static const AddressRange v6 = *AddressRange::Parse("::1");
  return v4.Contains(address) || v6.Contains(address);
}

}  // namespace quire::observe
