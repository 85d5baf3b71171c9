#include "server/chat/ids.h"

#include <sodium.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>

namespace quire::chat {
namespace {

// The digits, then the lowercase consonants of the English alphabet: every
// letter except the vowels a, e, i, o, u and also except 'y', which we count
// as a vowel here. 10 + 20 = 30 characters. Vowels are left out so that an id
// can never spell a word; 'y' goes with them for the same reason.
constexpr std::string_view kAlphabet = "0123456789bcdfghjklmnpqrstvwxz";
constexpr std::size_t kIdChars = 15;
constexpr std::size_t kTimeChars = 5;  // hundredths of a second, modulo 30^5

// Appends the time, most significant character first, so that ids sort by
// it (the alphabet is in ASCII order) until it wraps every 2.8 days.
void AppendTime(std::string& id) {
  auto hundredths =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count() /
                                 10);
  char digits[kTimeChars];
  for (std::size_t i = kTimeChars; i-- > 0;) {
    digits[i] = kAlphabet[hundredths % kAlphabet.size()];
    hundredths /= kAlphabet.size();
  }
  id.append(digits, kTimeChars);
}

bool InAlphabet(char c) {
  return kAlphabet.find(c) != std::string_view::npos;
}

}  // namespace

std::string NewId(IdKind kind) {
  // sodium_init is idempotent and thread-safe; run it once here so ids never
  // depend on the caller having initialised libsodium.
  static const bool initialised = sodium_init() >= 0;
  if (!initialised) std::abort();  // no CSPRNG: ids would not be unguessable
  std::string id;
  id.reserve(1 + kIdChars);
  id.push_back(static_cast<char>(kind));
  if (kind != IdKind::kInvitation) AppendTime(id);
  // One call to the CSPRNG per id, not one per character (each call is a
  // getrandom system call). A byte below 240 = 8 x 30 picks a character
  // without modulo bias; the rare others are drawn again.
  constexpr unsigned kUnbiased = 256 - 256 % kAlphabet.size();
  unsigned char bytes[32];
  while (id.size() < 1 + kIdChars) {
    randombytes_buf(bytes, sizeof bytes);
    for (unsigned char b : bytes) {
      if (b >= kUnbiased || id.size() == 1 + kIdChars) continue;
      id.push_back(kAlphabet[b % kAlphabet.size()]);
    }
  }
  return id;
}

bool LooksLikeId(std::string_view id, IdKind kind) {
  if (id.size() != 1 + kIdChars || id[0] != static_cast<char>(kind)) return false;
  for (char c : id.substr(1)) {
    if (!InAlphabet(c)) return false;
  }
  return true;
}

}  // namespace quire::chat
