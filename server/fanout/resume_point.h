// The resume rules: where a client's copy of the history ends (a resume
// point: boot's resume_point, or the id of the last event it got), whether a
// stream may continue from there, and how reads page through the history
// after it. The API checks a stream's start with these, the hub its live and
// replaying streams, boot its pages; so a 410 and a stream ended by a purge
// follow the same rule.
//
// Thread-safe: plain functions of their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/chat/chat_service.h"
#include "storage/types.h"

namespace quire::fanout {

// The resume point a boot gives: the highest sequence ever committed, even
// when that event was purged (sequences are never reused, so the stream
// from it starts with the next event).
std::int64_t BootResumePoint(const storage::Head& head);

// Where GET /api/events starts: a non-empty Last-Event-ID (what EventSource
// sends when it reconnects: the id of the last event it got) wins over the
// resume_point parameter (where the client started); the parameter is
// required all the same. Each must be a non-negative decimal integer.
// `resume_point` and `last_event_id` are nullptr when absent. A kBadRequest
// error names what is wrong.
chat::Result<std::int64_t> ParseResumePoint(const std::string* resume_point,
                                            const std::string* last_event_id);

// Whether a stream may start after `start`, given the store's head: not when
// `start` is newer than the newest event (kBadRequest: a point from another
// database, or from before a restore), nor when events after it have been
// purged (kGone: the client would miss them), nor when it lies in a break
// in history (kGone: the client saw events of a timeline lost in a restore).
// Either way the client boots again.
std::optional<chat::Error> CheckResumePoint(std::int64_t start, const storage::Head& head);

// True when events after `cursor` have been purged (`purged_through` is
// Head::purged_through): a stream there has lost events. One already open is
// ended, and its reconnect gets kGone from CheckResumePoint.
bool LostToPurge(std::int64_t cursor, std::int64_t purged_through);

// Paging: Store::ReadEvents(after, upto, limit) returns at most `limit`
// events. A page with fewer is the last up to `upto`: nothing else is
// retained there (the rest was purged, or never committed).
bool IsLastPage(std::size_t events_read, std::size_t limit);

// Where the next read starts after the page `events` read from `cursor` up
// to `upto` with `limit`: after its last event, or at `upto` after the last
// page.
std::int64_t CursorAfterPage(std::int64_t cursor, std::int64_t upto,
                             const std::vector<storage::Event>& events, std::size_t limit);

}  // namespace quire::fanout
