// MemoryStore: a complete Quire storage backend that keeps everything in the
// memory of the process: a small backend that passes the conformance suite,
// written to be copied as the starting point of a real one.
//
// URL form: "memory:" with nothing after the colon. Every open makes a new,
// empty store; two opens never share data.
//
// Thread-safety: every method may be called from any thread concurrently.
// One mutex guards all state. Each Apply batch runs under it from start to
// end: sequences are allocated and committed under the one lock, which is
// what keeps them strictly increasing in commit order. Each read runs under
// it too, so it sees all of a batch or none of it; ReadEvents holds it only
// to take references to the (immutable) events and copies them unlocked, so
// that a long read does not hold writers up.
//
// Ownership: the caller owns the store, and the store owns its data.
// Destroying the store frees the data; it must not race with calls in flight
// (a thread blocked in WaitForCommit counts as one).
//
// What it cannot do, as capabilities() declares: the data lives and dies with
// the MemoryStore object, so nothing survives a process kill or power loss,
// and no other process can open it. "Durable when Apply returns" holds only
// in the sense that every later call on the same object sees the write.
// Memory grows with the history until Purge removes what retention allows.
// Should an allocation fail in the middle of a batch, the store answers every
// later call with IoError rather than serve half a batch.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "storage/registry.h"
#include "storage/status.h"
#include "storage/store.h"

namespace example {

namespace storage = quire::storage;

class MemoryStore final : public storage::Store {
 public:
  MemoryStore();
  ~MemoryStore() override;

  storage::Capabilities capabilities() const override;

  storage::Status Apply(std::span<storage::Write> batch) override;

  storage::Status GetHead(storage::Head* out) override;
  storage::Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                             std::vector<storage::Event>* out) override;
  storage::Status HasUsers(bool* out) override;
  storage::Status GetUser(const std::string& id, storage::User* out) override;
  storage::Status FindUserByCanonicalName(const std::string& canonical,
                                          storage::User* out) override;
  storage::Status FindSession(const std::string& token_hash, storage::Session* out) override;
  storage::Status GetInvitation(const std::string& id, storage::Invitation* out) override;
  storage::Status GetConversation(const std::string& id, storage::Conversation* out) override;
  storage::Status GetMessage(const std::string& id, storage::Message* out) override;

  std::uint64_t CommitGeneration() override;
  std::uint64_t WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) override;

 private:
  struct Data;  // the tables and the history; see memory_store.cc

  // Runs `fn(const Data&)` under the lock, turning anything thrown into a Status.
  template <typename Fn>
  storage::Status Read(Fn&& fn);

  std::mutex mu_;
  std::condition_variable committed_;  // notified after generation_ grows
  std::unique_ptr<Data> data_;         // guarded by mu_
  std::uint64_t generation_ = 0;       // guarded by mu_
  bool broken_ = false;                // guarded by mu_; see Apply
};

// Registers the "memory" scheme with `registry`. Open("memory:") gives a new,
// empty MemoryStore; any other "memory:…" URL is Invalid, because there are
// no named stores to find again.
void RegisterMemoryBackend(storage::Registry& registry);

}  // namespace example
