// Store: the storage seam of Quire, at the level of the chat domain.
//
// Interface version 1. The interface is append-only: a later version adds
// virtual functions with default bodies and never changes existing ones, so a
// backend written against version 1 keeps compiling and keeps its meaning.
//
// Sequence rules every backend guarantees (docs/backend-authors.md explains):
//  1. Sequences strictly increase in commit order: once any reader has seen
//     sequence N, no event with a sequence below N commits later.
//  2. Sequences are never reused (not after a failed write, a purge, a restart
//     or a crash). Gaps are allowed.
//  3. A write is durable when Apply returns: it survives a process kill.
//
// Thread-safety: every method may be called from any thread concurrently.
// Ownership: the caller owns the Store; destroying it closes the engine and
// must not race with calls in flight.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "storage/status.h"
#include "storage/types.h"
#include "storage/write_ops.h"

namespace quire::storage {

inline constexpr int kStoreInterfaceVersion = 1;

// What a backend can and cannot do. The conformance suite skips, with the
// reason, the tests of what a backend declares it cannot do.
struct Capabilities {
  // Several processes may open and write the same store at once.
  bool multi_process_writers = false;
  // Acknowledged writes survive a kill of the writing process.
  bool survives_process_kill = true;
  // Acknowledged writes survive power loss in the default durability mode.
  bool survives_power_loss = true;
};

class Store {
 public:
  virtual ~Store() = default;
  Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  virtual int interface_version() const { return kStoreInterfaceVersion; }
  virtual Capabilities capabilities() const = 0;

  // ---- Writes ----

  // Applies the writes in order, each atomically (see write_ops.h), and sets
  // each one's status and last_seq. Backends are encouraged to commit the
  // whole batch in one transaction (group commit). Returns non-OK only when
  // the batch as a whole failed; then nothing of it committed and every
  // write's status is that error. Every write with an OK status is durable
  // once Apply returns.
  virtual Status Apply(std::span<Write> batch) = 0;

  // ---- Reads (each is one short read transaction) ----

  virtual Status GetHead(Head* out) = 0;

  // Appends to *out the retained events with after < seq <= upto, in sequence
  // order, at most `limit` of them.
  virtual Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                            std::vector<Event>* out) = 0;

  virtual Status HasUsers(bool* out) = 0;
  virtual Status GetUser(const std::string& id, User* out) = 0;
  virtual Status FindUserByCanonicalName(const std::string& canonical, User* out) = 0;
  virtual Status FindSession(const std::string& token_hash, Session* out) = 0;
  virtual Status GetInvitation(const std::string& id, Invitation* out) = 0;
  virtual Status GetConversation(const std::string& id, Conversation* out) = 0;
  virtual Status GetMessage(const std::string& id, Message* out) = 0;

  // ---- Change notification ----

  // A counter that grows whenever a write commits, in this process or (for
  // multi-process backends) in any other.
  virtual std::uint64_t CommitGeneration() = 0;

  // Blocks until CommitGeneration() differs from `seen` or `timeout` passes;
  // returns the current generation. Spurious returns are allowed.
  virtual std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) = 0;
};

}  // namespace quire::storage
