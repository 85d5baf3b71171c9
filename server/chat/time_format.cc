#include "server/chat/time_format.h"

#include <cstdint>
#include <limits>

namespace quire::chat {
namespace {

using storage::Micros;

constexpr Micros kMicrosPerSecond = 1000000;
constexpr std::int64_t kSecondsPerDay = 86400;

// Earliest and latest instants RFC 3339 can write (four-digit years):
// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
constexpr Micros kMinTime = -62167219200LL * kMicrosPerSecond;
constexpr Micros kMaxTime = 253402300800LL * kMicrosPerSecond - 1;

// Civil date from days since 1970-01-01 (proleptic Gregorian; H. Hinnant's
// civil_from_days).
void CivilFromDays(std::int64_t z, std::int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<std::int64_t>(yoe) + era * 400 + (*m <= 2 ? 1 : 0);
}

// Floor division and its non-negative remainder.
std::int64_t FloorDiv(std::int64_t a, std::int64_t b, std::int64_t* rem) {
  std::int64_t q = a / b;
  std::int64_t r = a % b;
  if (r < 0) {
    r += b;
    --q;
  }
  *rem = r;
  return q;
}

}  // namespace

void AppendTimestamp(std::string& out, Micros t) {
  // Times outside years 0000..9999 cannot be written in RFC 3339; clamp.
  if (t < kMinTime) t = kMinTime;
  if (t > kMaxTime) t = kMaxTime;
  std::int64_t micros;
  const std::int64_t seconds = FloorDiv(t, kMicrosPerSecond, &micros);
  std::int64_t second_of_day;
  const std::int64_t days = FloorDiv(seconds, kSecondsPerDay, &second_of_day);
  std::int64_t year;
  unsigned month;
  unsigned day;
  CivilFromDays(days, &year, &month, &day);
  // Digits by hand: boot renders a million of these, and snprintf was a
  // tenth of its time. Every field has a fixed width after the clamp.
  char buf[27];  // "YYYY-MM-DDTHH:MM:SS.uuuuuuZ"
  auto put = [&buf](int at, int width, std::int64_t value) {
    for (int i = at + width - 1; i >= at; --i) {
      buf[i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
  };
  put(0, 4, year);
  buf[4] = '-';
  put(5, 2, month);
  buf[7] = '-';
  put(8, 2, day);
  buf[10] = 'T';
  put(11, 2, second_of_day / 3600);
  buf[13] = ':';
  put(14, 2, second_of_day / 60 % 60);
  buf[16] = ':';
  put(17, 2, second_of_day % 60);
  buf[19] = '.';
  put(20, 6, micros);
  buf[26] = 'Z';
  out.append(buf, sizeof buf);
}

std::string FormatTimestamp(Micros t) {
  std::string out;
  AppendTimestamp(out, t);
  return out;
}

std::optional<Micros> ParseDuration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  Micros scale;
  if (unit == "ms") {
    scale = 1000;
  } else if (unit == "s") {
    scale = kMicrosPerSecond;
  } else if (unit == "m") {
    scale = 60 * kMicrosPerSecond;
  } else if (unit == "h") {
    scale = 3600 * kMicrosPerSecond;
  } else if (unit == "d") {
    scale = kSecondsPerDay * kMicrosPerSecond;
  } else {
    return std::nullopt;
  }
  constexpr Micros kMax = std::numeric_limits<Micros>::max();
  Micros value = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    const int digit = text[i] - '0';
    if (value > (kMax - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  if (value <= 0 || value > kMax / scale) return std::nullopt;
  return value * scale;
}

}  // namespace quire::chat
