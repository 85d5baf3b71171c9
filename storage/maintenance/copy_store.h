// CopyStore: copies a whole store from one engine into another, as it is:
// ids, sequence numbers, the head (highest sequence ever committed, purge
// horizon, break in history), tombstones, users with their password hashes,
// sessions, invitations and idempotency records. `quire migrate` is this;
// `quire restore` is this from a backup, with a break in history marked.
//
// How it goes:
//  1. The target must hold nothing, or an unfinished copy (records without
//     a head: a copy writes the head last, so an interrupted one is
//     recognized), which is removed and started over. A target holding a
//     store is replaced only with `force`.
//  2. Table by table, parents first, a page of `batch_rows` records at a
//     time: one short read transaction of the source, one write
//     transaction of the target. Memory stays bounded by a page.
//  3. The head, last.
//  4. Verification: every record and event of the target is read back and
//     compared with the source's (see RecordDigest), events also for
//     sequence order, and the head.
//
// Preconditions: both engines are held with EngineUse::kMaintain, so no
// server writes to either while the copy runs. They are different stores.
// Thread-safety: runs on the calling thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "storage/engine.h"
#include "storage/status.h"

namespace quire::storage::maintenance {

struct CopyOptions {
  // Replace a target that holds a store of its own.
  bool force = false;
  // Records per page and per target transaction.
  std::size_t batch_rows = 5000;
  // The head the target ends with, given the source's; the source's own by
  // default. Restore marks its break in history here, so the copy is only
  // finished once the break is marked.
  std::function<Head(const Head&)> final_head;
  // Names the command in progress lines ("migrate", "restore").
  std::string command = "migrate";
  // Progress and what was done go here; nullptr for none.
  std::FILE* log = stderr;
};

struct TableTally {
  std::string table;
  std::uint64_t rows = 0;
};

struct CopyReport {
  Head source_head;
  Head target_head;
  bool started_over = false;       // the target held an unfinished copy
  bool replaced = false;           // the target held a store (force)
  std::vector<TableTally> tables;  // in copy order; "events" among them
  std::uint64_t rows = 0;
  double copy_seconds = 0;
  double verify_seconds = 0;
};

// Copies `source` into `target` and verifies the copy. Conflict when the
// target holds a store and `force` is false; Corrupt, naming the table,
// when the verification finds a difference.
Status CopyStore(Engine& source, Engine& target, const CopyOptions& options, CopyReport* report);

// What the target holds, as CopyStore sees it.
enum class StoreState {
  kEmpty,
  kUnfinishedCopy,  // records or events without a head
  kStore,           // a head: a store of its own
};
Status InspectStore(Engine& target, StoreState* state, Head* head);

}  // namespace quire::storage::maintenance
