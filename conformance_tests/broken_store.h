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
  // "Events after N" also drops N+1 (an off-by-one at the resume boundary).
  kDropAtResumeBoundary,
  // On reopen the next sequence is derived from the highest retained event,
  // so numbers of purged events are handed out again. Breaks rule 2.
  kReuseAfterReopen,
  // Conversation names are checked for uniqueness outside the write
  // transaction (check, then act), so two racing creators both win.
  kNonAtomicUniqueness,
  // Reads and writes share one lock, so a long read stalls every writer.
  // Breaks property 11.
  kReadsBlockWriters,
};

// A name for test listings: "None", "OutOfCommitOrder", …
std::string FaultName(Fault fault);

// Wraps `inner`, a store just opened (fresh or reopened), with `fault`.
std::unique_ptr<storage::Store> WrapWithFault(std::unique_ptr<storage::Store> inner, Fault fault);

}  // namespace quire::conformance
