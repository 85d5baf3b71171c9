// A break in history: what a restore leaves so that no sequence number is
// ever used twice. After a restore the history ends at the backup's last
// sequence, but the lost timeline (the events committed after the backup
// was taken) may have handed out numbers above it to clients. New events
// therefore continue kBreakGap above it, and resume points in between are
// refused (server/fanout/resume_point.h): those clients boot again.
//
// Thread-safety: plain functions; MarkBreakInHistory writes one batch.
#pragma once

#include <cstdint>
#include <string>

#include "storage/engine.h"
#include "storage/status.h"

namespace quire::storage::maintenance {

// 2^40 (about 1.1 * 10^12): a lost timeline would need 35 years at 1,000
// events/s, or 1.7 years at the 20,000/s this machine's fastest durable
// path reaches, to use it up. 8,000 breaks still stay below 2^53, the
// largest integer a JavaScript client holds exactly.
inline constexpr std::int64_t kBreakGap = std::int64_t{1} << 40;
inline constexpr std::int64_t kLargestExactSequence = std::int64_t{1} << 53;

// The head `restored` goes on with. An earlier break the restored store
// carries is merged in: refused from its start on. Invalid when the new
// head would pass kLargestExactSequence.
Status HeadAfterBreak(const Head& restored, Head* out);

// Marks a break in the history of the store `engine` holds (which must be
// held with EngineUse::kMaintain): for a database restored by other means
// than quire restore. *before and *after get the heads.
Status MarkBreakInHistory(Engine& engine, Head* before, Head* after);

// "last_seq 120, purged_through 0[, break in history after 100 below 1099511627876]".
std::string DescribeHead(const Head& head);

}  // namespace quire::storage::maintenance
