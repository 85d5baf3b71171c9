#include "storage/maintenance/history_break.h"

#include <algorithm>
#include <memory>
#include <string>

#include "storage/maintenance/table_scan.h"

namespace quire::storage::maintenance {

Status HeadAfterBreak(const Head& restored, Head* out) {
  if (restored.last_seq > kLargestExactSequence - kBreakGap) {
    return Status::Invalid("the history is too long for another break (last_seq " +
                           std::to_string(restored.last_seq) + ")");
  }
  Head head = restored;
  head.lost_after = restored.lost_through != 0 ? std::min(restored.lost_after, restored.last_seq)
                                               : restored.last_seq;
  head.lost_through = restored.last_seq + kBreakGap;
  head.last_seq = head.lost_through;
  *out = head;
  return Status::Ok();
}

Status MarkBreakInHistory(Engine& engine, Head* before, Head* after) {
  return WriteInOneTransaction(engine, [&](WriteTxn& txn) {
    Status s = txn.records().GetHead(before);
    if (s.ok()) s = HeadAfterBreak(*before, after);
    if (s.ok()) s = txn.SetHead(*after);
    return s;
  });
}

std::string DescribeHead(const Head& head) {
  std::string text = "last_seq " + std::to_string(head.last_seq) + ", purged_through " +
                     std::to_string(head.purged_through);
  if (head.lost_through != 0) {
    text += ", break in history after " + std::to_string(head.lost_after) + " below " +
            std::to_string(head.lost_through);
  }
  return text;
}

}  // namespace quire::storage::maintenance
