#include "server/chat/secrets.h"

#include <sodium.h>

#include <cstdlib>

namespace quire::chat {
namespace {

// sodium_init once, thread-safely; also run lazily by every function here so a
// caller that forgot InitSecrets still gets a seeded CSPRNG.
bool EnsureSodium() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

std::string Hex(const unsigned char* bytes, std::size_t size) {
  std::string hex(size * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes, size);
  hex.resize(size * 2);
  return hex;
}

}  // namespace

bool InitSecrets() {
  return EnsureSodium();
}

std::string HashPassword(std::string_view password) {
  if (!EnsureSodium()) return std::string();
  char out[crypto_pwhash_STRBYTES];
  // argon2id v1.3 explicitly (it is also crypto_pwhash_str's default).
  if (crypto_pwhash_str_alg(out, password.data(), password.size(),
                            crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return std::string();  // out of memory: an empty hash, which never verifies
  }
  return std::string(out);
}

bool VerifyPassword(std::string_view password, const std::string& hash) {
  if (!EnsureSodium()) return false;
  // The hash must be a NUL-free string that fits libsodium's buffer.
  if (hash.empty() || hash.size() >= crypto_pwhash_STRBYTES ||
      hash.find('\0') != std::string::npos) {
    return false;
  }
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

const std::string& DummyPasswordHash() {
  static const std::string hash = HashPassword(NewToken());
  return hash;
}

std::string NewToken() {
  if (!EnsureSodium()) std::abort();  // no CSPRNG: never hand out guessable tokens
  unsigned char bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  return Hex(bytes, sizeof bytes);
}

std::string NewPassword(std::size_t length) {
  if (!EnsureSodium()) std::abort();  // as NewToken: never a guessable password
  static constexpr char kAlphabet[] = "23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
  std::string password(length, '\0');
  // randombytes_uniform has no modulo bias.
  for (char& c : password) c = kAlphabet[randombytes_uniform(sizeof kAlphabet - 1)];
  return password;
}

std::string HashToken(std::string_view token) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(token.data()), token.size());
  return Hex(digest, sizeof digest);
}

}  // namespace quire::chat
