// Times and durations as text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "storage/types.h"

namespace quire::chat {

// RFC 3339, UTC, microseconds, 'Z': "2025-06-19T15:14:40.431627Z".
std::string FormatTimestamp(storage::Micros t);
// The same, appended to `out`.
void AppendTimestamp(std::string& out, storage::Micros t);

// Parses a duration "500ms", "30s", "15m", "24h", "7d" (a positive integer
// and one unit) into microseconds; nullopt when malformed or not positive.
std::optional<storage::Micros> ParseDuration(std::string_view text);

}  // namespace quire::chat
