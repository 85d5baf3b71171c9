// Internal to the LMDB backend: Engine::CheckIntegrity. LMDB knows nothing of
// the index tables; the backend keeps them by hand (lmdb_tables.h), and the
// records of conversations and messages carry the sequences of their events.
// This compares them both ways.
//
// Thread-safety: runs inside one transaction, on the calling thread.
#pragma once

#include <string>
#include <vector>

#include "storage/lmdb/lmdb_tables.h"

namespace quire::storage::lmdb_tables {

// Appends one line per disagreement, naming the table and the key: an index
// entry without the record it points at (or pointing at one that says
// otherwise), a record without its index entries, an event without its
// record or a record's event sequence without the event, an undecodable
// record or key. At most kMaxProblemLines lines, then one saying how many
// more were found. Throws lmdb::error when LMDB itself fails.
inline constexpr std::size_t kMaxProblemLines = 1000;
void CheckIndexes(const Tx& tx, std::vector<std::string>* problems);

}  // namespace quire::storage::lmdb_tables
