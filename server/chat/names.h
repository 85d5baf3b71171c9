// Names of users and conversations, and message bodies: Unicode rules.
//
// Pure functions, thread-safe. Input is arbitrary bytes; invalid UTF-8 is
// reported, never passed on.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace quire::chat {

// True when `bytes` is well-formed UTF-8 (no overlongs, surrogates or values
// above U+10FFFF).
bool IsValidUtf8(std::string_view bytes);

// Unicode NFC of valid UTF-8 `text`; nullopt when `text` is not valid UTF-8.
std::optional<std::string> ToNfc(std::string_view text);

// NFKC_Casefold of valid UTF-8 `text` (NFKC, full case folding, NFKC again):
// the form under which two names are the same name.
std::string CanonicalName(std::string_view nfc_text);

// Number of Unicode scalar values in valid UTF-8 `text`.
std::size_t CountScalars(std::string_view text);

// Why a name is invalid, or nullopt when the NFC name is valid: 1 to 63
// scalar values, first and last not White_Space, no Cc control characters,
// no run of two or more White_Space characters.
std::optional<std::string> NameProblem(std::string_view nfc_name);

// Why a message body is invalid, or nullopt when the NFC body is valid: not
// empty, not only White_Space, at most 8192 scalar values.
std::optional<std::string> BodyProblem(std::string_view nfc_body);

}  // namespace quire::chat
