#include "server/chat/names.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace quire::chat {
namespace {

constexpr std::size_t kMaxNameScalars = 63;
constexpr std::size_t kMaxBodyScalars = 8192;

// Decodes the scalar value starting at text[*pos] and advances *pos past it.
// Returns -1 (and leaves *pos unchanged) when the bytes there are not a
// well-formed UTF-8 sequence (Unicode 15, table 3-7): no overlong forms, no
// surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncation.
std::int32_t Decode(std::string_view text, std::size_t* pos) {
  const std::size_t i = *pos;
  const std::size_t n = text.size();
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    *pos = i + 1;
    return b0;
  }
  std::size_t len;
  std::int32_t cp;
  unsigned char lo = 0x80;  // allowed range of the second byte
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return -1;  // continuation byte, C0/C1 (overlong) or F5..FF
  }
  if (n - i < len) return -1;
  for (std::size_t k = 1; k < len; ++k) {
    const unsigned char b = byte(i + k);
    const unsigned char min = k == 1 ? lo : 0x80;
    const unsigned char max = k == 1 ? hi : 0xBF;
    if (b < min || b > max) return -1;
    cp = (cp << 6) | (b & 0x3F);
  }
  *pos = i + len;
  return cp;
}

// Unicode White_Space (PropList.txt): 25 code points.
bool IsWhiteSpace(std::int32_t c) {
  return (c >= 0x0009 && c <= 0x000D) || c == 0x0020 || c == 0x0085 || c == 0x00A0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// General category Cc: the C0 and C1 controls and DEL.
bool IsControl(std::int32_t c) {
  return c <= 0x001F || (c >= 0x007F && c <= 0x009F);
}

// utf8proc_map over `text`; nullopt if utf8proc reports an error.
std::optional<std::string> Map(std::string_view text, int options) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &out,
                                            static_cast<utf8proc_option_t>(options));
  if (len < 0) {
    std::free(out);
    return std::nullopt;
  }
  std::string result(reinterpret_cast<const char*>(out), static_cast<std::size_t>(len));
  std::free(out);
  return result;
}

}  // namespace

bool IsValidUtf8(std::string_view bytes) {
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    // Runs of ASCII eight bytes at a time: boot checks every stored string
    // it renders, hundreds of megabytes of mostly ASCII text.
    std::uint64_t word;
    if (bytes.size() - pos >= sizeof word) {
      std::memcpy(&word, bytes.data() + pos, sizeof word);
      if ((word & 0x8080808080808080ULL) == 0) {
        pos += sizeof word;
        continue;
      }
    }
    if (Decode(bytes, &pos) < 0) return false;
  }
  return true;
}

std::optional<std::string> ToNfc(std::string_view text) {
  if (!IsValidUtf8(text)) return std::nullopt;
  if (text.empty()) return std::string();
  // ASCII is NFC as it is: most messages skip the decomposition.
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    return std::string(text);
  }
  return Map(text, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
}

std::string CanonicalName(std::string_view nfc_text) {
  if (nfc_text.empty() || !IsValidUtf8(nfc_text)) return std::string(nfc_text);
  // NFKC with full case folding; IGNORE drops Default_Ignorable_Code_Point
  // characters, as the NFKC_Casefold mapping does. Case folding can produce
  // text that is not NFKC (e.g. U+0345), hence the second NFKC pass.
  std::optional<std::string> folded =
      Map(nfc_text, UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD |
                        UTF8PROC_IGNORE);
  if (!folded) return std::string(nfc_text);  // unreachable for valid UTF-8
  if (folded->empty()) return *folded;
  std::optional<std::string> again =
      Map(*folded, UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE);
  return again ? *again : *folded;
}

std::size_t CountScalars(std::string_view text) {
  // Every scalar value has exactly one byte that is not a continuation byte.
  std::size_t count = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
  }
  return count;
}

std::optional<std::string> NameProblem(std::string_view nfc_name) {
  if (!IsValidUtf8(nfc_name)) return "name must be valid UTF-8";
  const std::size_t scalars = CountScalars(nfc_name);
  if (scalars < 1 || scalars > kMaxNameScalars) return "name must be 1 to 63 characters";
  std::size_t pos = 0;
  bool previous_space = false;
  bool first = true;
  bool last_space = false;
  while (pos < nfc_name.size()) {
    const std::int32_t c = Decode(nfc_name, &pos);
    if (IsControl(c)) return "name must not contain control characters";
    const bool space = IsWhiteSpace(c);
    if (space && first) return "name must not begin or end with whitespace";
    if (space && previous_space) return "name must not contain two whitespace characters in a row";
    previous_space = space;
    last_space = space;
    first = false;
  }
  if (last_space) return "name must not begin or end with whitespace";
  return std::nullopt;
}

std::optional<std::string> BodyProblem(std::string_view nfc_body) {
  if (!IsValidUtf8(nfc_body)) return "message body must be valid UTF-8";
  if (nfc_body.empty()) return "message body must not be empty";
  // PostgreSQL text cannot hold U+0000; refused on every backend alike.
  if (nfc_body.find('\0') != std::string_view::npos) {
    return "message body must not contain U+0000";
  }
  if (CountScalars(nfc_body) > kMaxBodyScalars) {
    return "message body must be at most 8192 characters";
  }
  std::size_t pos = 0;
  while (pos < nfc_body.size()) {
    if (!IsWhiteSpace(Decode(nfc_body, &pos))) return std::nullopt;
  }
  return "message body must not be only whitespace";
}

}  // namespace quire::chat
