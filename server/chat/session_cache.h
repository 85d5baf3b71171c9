// SessionCache: the sessions that requests found, kept so that the next
// request of a session does not read it from the store again.
//
// Only for stores that one process writes (Capabilities::multi_process_writers
// false: SQLite, LMDB). There every change to a session is a write of this
// process's ChatService, which calls Forget after each write that can change
// or remove sessions (ChangesSessions), before the write is answered. With
// several writing processes (PostgreSQL) another server's logout would go
// unseen, so the cache is off and every request reads its session.
//
// A request that missed reads the store and then remembers what it read only
// if nothing was forgotten since it began (the generation it took first): a
// read that raced a logout never puts the ended session back.
//
// Memory is bounded: at most `max_entries` sessions; the cache empties when
// it is full.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "storage/types.h"
#include "storage/write_ops.h"

namespace quire::chat {

class SessionCache {
 public:
  explicit SessionCache(bool enabled, std::size_t max_entries = 65536);

  // Take before reading the store; pass to Remember.
  std::uint64_t Generation();
  // The session with this token hash, if the cache holds it.
  std::optional<storage::Session> Find(const std::string& token_hash);
  // Keeps `session`, read from the store after Generation() returned
  // `generation`, unless something was forgotten since.
  void Remember(const storage::Session& session, std::uint64_t generation);
  // After a write that changed or removed sessions: forgets the session of
  // `token_hash`, or every session when it is empty.
  void Forget(const std::string& token_hash);

 private:
  const bool enabled_;
  const std::size_t max_entries_;
  std::mutex mu_;
  std::uint64_t generation_ = 0;                                // guarded by mu_
  std::unordered_map<std::string, storage::Session> sessions_;  // guarded by mu_
};

// Whether committing `op` may change or remove a stored session, and which:
// sets *token_hash to the one session it touches, or to "" when it may touch
// any number (a password change, ending a user's sessions, a purge).
bool ChangesSessions(const storage::op::Operation& op, std::string* token_hash);

}  // namespace quire::chat
