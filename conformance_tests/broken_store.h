// BrokenStore: a fault-injecting wrapper around a real Store, for the
// conformance suite's self-test. Each fault is a bug a real backend could
// have; the self-test runs the suite against each and checks that the
// property the bug breaks fails (a suite that cannot fail proves nothing).
//
// Thread-safety: as the wrapped store; the wrapper's own state is guarded.
// Ownership: the wrapper owns the wrapped store.
#pragma once

#include <memory>
#include <string>

#include "storage/store.h"

namespace quire::conformance {

enum class Fault {
  // None: passes everything through (the self-test's control). It declares
  // multi_process_writers, so that the suite's several-processes test runs
  // too: the wrapped store must then really support them.
  kNone,
  // Sequences out of commit order: now and then a write's event stays
  // invisible to readers for a while after higher sequences are visible, as
  // with a bigserial allocated at insert and visible at commit. Breaks rule 1.
  kOutOfCommitOrder,
  // The same, but every batch, and only for 200 microseconds: a window
  // about as narrow as a thread switch, as in a backend that takes its
  // numbers under a lock and commits after releasing it. Breaks rule 1.
  kBrieflyOutOfCommitOrder,
  // "Events after N" also drops N+1 (an off-by-one at the resume boundary).
  kDropAtResumeBoundary,
  // On reopen the next sequence is derived from the highest retained event,
  // so numbers of purged events are handed out again. Breaks rule 2.
  kReuseAfterReopen,
  // Conversation names are checked for uniqueness outside the write
  // transaction (check, then act), so two racing creators both win. (The
  // wrapper's set of taken names never frees a deleted conversation's name,
  // so property 7 fails too.)
  kNonAtomicUniqueness,
  // Reads and writes share one lock, so a long read stalls every writer.
  // Breaks property 11.
  kReadsBlockWriters,
  // A sequence is taken at insert and becomes visible at commit (the
  // bigserial trap), and the backend serializes "take a number and commit"
  // with a mutex of its own process: threads of one process are in order,
  // but a write of one process can still become visible after a higher
  // sequence of another. Declares multi_process_writers. Breaks rule 1 across
  // processes only (property 2, several processes).
  kProcessLocalCommitLock,
  // Apply acknowledges a batch once it is in a write-behind queue that is
  // written out three batches later (and on close): a SIGKILL loses the last
  // acknowledged batches. Breaks rule 3 (property 5).
  kAcknowledgeBeforeDurable,
  // A soft delete: deletion sets deleted_at and blanks the event, but the
  // message and conversation records keep their text, which GetMessage and
  // GetConversation still return. Breaks property 7.
  kDeleteKeepsContent,
  // Each purge overwrites the purge horizon with the highest sequence it
  // removed, 0 when it removed none, instead of raising it: a stale resume
  // point is no longer refused. Breaks property 8 (and rule 2).
  kPurgeLowersHorizon,
  // A password change sets the new hash and session but leaves the user's
  // other sessions valid. Breaks property 9.
  kPasswordChangeKeepsSessions,
  // Idempotency keys are looked up among committed writes only, so a key
  // repeated within one batch gives two messages. Breaks property 10.
  kKeyRepeatedInBatch,
  // After a purge the counter restarts at the highest retained event, in the
  // same process (no reopen needed): purging the newest events hands their
  // numbers out again. Breaks rule 2 (property 8).
  kReuseAfterPurge,
  // Expiry deletes a message but leaves its text in its sent event (only
  // DeleteMessage tombstones). Breaks property 8.
  kExpireKeepsText,
  // ReadEvents clears the caller's vector instead of appending to it.
  // Breaks ReadEvents' contract (property 1).
  kReadReplacesOutput,
  // A write that emits nothing (a session, an invitation, a purge) reports
  // the head as its last_seq, as if it had emitted the newest event. Breaks
  // Write::last_seq (property 9).
  kSilentWritesReportSequence,
  // CommitGeneration never changes (waiters are still woken). Breaks
  // property 12.
  kGenerationStandsStill,
  // WaitForCommit waits for a commit after the call, so a commit between
  // the caller's last read and its wait is slept through (a lost wake-up).
  // Breaks property 12.
  kWaitMissesEarlierCommit,
  // Declares multi_process_writers, but its commit generation counts the
  // commits of this process only: a process waiting for commits sleeps
  // through those of the others. Breaks property 2 (several processes).
  kGenerationOfThisProcessOnly,
  // A session whose token hash is stored replaces the stored one (an
  // INSERT OR REPLACE) instead of failing with Conflict. Breaks property 9.
  kSessionUpsert,
  // An invitation accepted with a session token that is stored already is
  // refused with Conflict, but its user and the invitation's use stay
  // committed (no savepoint around the accept's steps). Breaks property 9.
  kAcceptNotAtomic,
  // A password change revokes the sessions of every user, not only its
  // own. Breaks property 9.
  kPasswordChangeDropsAllSessions,
  // An idempotency key is found only when recorded after key_after, not at
  // it. Breaks property 10.
  kKeyAfterExclusive,
  // A replayed send moves the conversation's last activity to its own time,
  // although a replay writes nothing. Breaks property 10.
  kReplayTouchesConversation,
  // Expiry and purge take "before T" as "at or before T". Breaks property 8.
  kRetentionCutoffsInclusive,
  // HasUsers says yes on an empty store. Breaks property 9.
  kHasUsersOnEmptyStore,
};

// A name for test listings: "None", "OutOfCommitOrder", …
std::string FaultName(Fault fault);

// Wraps `inner`, a store just opened (fresh or reopened), with `fault`.
std::unique_ptr<storage::Store> WrapWithFault(std::unique_ptr<storage::Store> inner, Fault fault);

}  // namespace quire::conformance
