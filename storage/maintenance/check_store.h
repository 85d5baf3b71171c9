// CheckStore: an offline consistency check of a whole store (quire check),
// over the engine interface, so it is written once for every engine:
//  - the head: purge horizon and break in history within it;
//  - the events: strictly increasing, none above the head or inside a break,
//    each about a record that exists and agrees with it (a deleted record's
//    creation event is a tombstone), no entity created twice;
//  - no record without its creation event (records and creation events
//    are counted against each other, per kind);
//  - the lookups agree with the records: users by canonical name, sessions
//    by token hash, live conversations by name, messages by conversation,
//    live and deleted messages and conversations by time;
//  - references: a message's conversation, a session's user, an
//    invitation's issuer;
//  - and what the engine checks of itself (Engine::CheckIntegrity).
//
// Preconditions: the engine is held with EngineUse::kMaintain.
// Thread-safety: runs on the calling thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "storage/engine.h"
#include "storage/status.h"

namespace quire::storage::maintenance {

struct CheckReport {
  Head head;
  // Rows looked at, by table ("events" among them).
  std::map<std::string, std::uint64_t> rows;
  // One line per problem; empty when the store is consistent.
  std::vector<std::string> problems;
};

// Non-OK only when the store could not be read; what is wrong with it goes
// to report->problems.
Status CheckStore(Engine& engine, std::size_t page_size, CheckReport* report);

}  // namespace quire::storage::maintenance
