#include "server/fanout/resume_point.h"

#include <charconv>
#include <string_view>

namespace quire::fanout {
namespace {

using chat::Error;

// A non-negative decimal integer that fits in int64, nothing else.
std::optional<std::int64_t> ParseSequence(std::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::int64_t BootResumePoint(const storage::Head& head) {
  return head.last_seq;
}

chat::Result<std::int64_t> ParseResumePoint(const std::string* resume_point,
                                            const std::string* last_event_id) {
  if (!resume_point) return Error{Error::Kind::kBadRequest, "resume_point is required"};
  std::optional<std::int64_t> start = ParseSequence(*resume_point);
  if (!start) {
    return Error{Error::Kind::kBadRequest, "resume_point must be a non-negative integer"};
  }
  if (last_event_id && !last_event_id->empty()) {
    start = ParseSequence(*last_event_id);
    if (!start) {
      return Error{Error::Kind::kBadRequest, "Last-Event-ID must be a non-negative integer"};
    }
  }
  return *start;
}

std::optional<chat::Error> CheckResumePoint(std::int64_t start, const storage::Head& head) {
  if (start > head.last_seq) {
    return Error{Error::Kind::kBadRequest,
                 "resume_point is newer than the newest event; boot again"};
  }
  if (LostToPurge(start, head.purged_through)) {
    return Error{Error::Kind::kGone, "events after resume_point have been purged; boot again"};
  }
  if (start > head.lost_after && start < head.lost_through) {
    return Error{Error::Kind::kGone,
                 "resume_point belongs to a history lost in a restore from a backup; boot again"};
  }
  return std::nullopt;
}

bool LostToPurge(std::int64_t cursor, std::int64_t purged_through) {
  return cursor < purged_through;
}

bool IsLastPage(std::size_t events_read, std::size_t limit) {
  return events_read < limit;
}

std::int64_t CursorAfterPage(std::int64_t cursor, std::int64_t upto,
                             const std::vector<storage::Event>& events, std::size_t limit) {
  if (IsLastPage(events.size(), limit)) return upto;
  return events.empty() ? cursor : events.back().seq;
}

}  // namespace quire::fanout
