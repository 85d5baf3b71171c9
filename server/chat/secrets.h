// Passwords and session tokens. Thread-safe.
//
// Passwords: argon2id (libsodium's crypto_pwhash_str, interactive limits),
// applied to the NFC form. Tokens: 256 random bits from libsodium's CSPRNG,
// sent to the client hex-encoded and stored only as their SHA-256 hash.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace quire::chat {

// Must be called once before any other function here; false if the CSPRNG
// cannot be initialised.
bool InitSecrets();

// A PHC-format argon2id hash of `password` (already NFC-normalized).
std::string HashPassword(std::string_view password);

// True when `password` matches `hash`. An empty or malformed hash never
// matches.
bool VerifyPassword(std::string_view password, const std::string& hash);

// A hash of a password nobody knows, to verify against when the user does not
// exist, so an unknown name takes as long as a wrong password.
const std::string& DummyPasswordHash();

// A new random token (64 hex characters).
std::string NewToken();

// A new random password of `length` characters for an operator to hand on
// (quire admin reset-password): letters and digits without the look-alikes
// 0, O, 1, l and I, about 5.8 bits each (20 characters: 116 bits).
std::string NewPassword(std::size_t length = 20);

// The hex SHA-256 of a token: what the store keeps.
std::string HashToken(std::string_view token);

}  // namespace quire::chat
