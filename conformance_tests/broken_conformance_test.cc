// The conformance suite run against deliberately broken backends: the SQLite
// store behind each fault of broken_store.h, and behind no fault (the
// control). This program is expected to fail; selftest_test.cc runs it and
// checks that each fault fails the property it breaks.
#include "conformance_tests/broken_store.h"
#include "conformance_tests/suite.h"
#include "conformance_tests/url_backend.h"
#include "storage/sqlite/sqlite_store.h"

namespace {

using quire::conformance::Fault;

quire::conformance::BackendUnderTest Broken(Fault fault) {
  return quire::conformance::UrlBackend(FaultName(fault), quire::storage::RegisterSqliteBackend,
                                        quire::conformance::TempDirUrl("sqlite", "quire.db"),
                                        [fault](std::unique_ptr<quire::storage::Store> inner) {
                                          return quire::conformance::WrapWithFault(std::move(inner),
                                                                                   fault);
                                        });
}

}  // namespace

QUIRE_INSTANTIATE_STORE_CONFORMANCE(
    Broken, Broken(Fault::kNone), Broken(Fault::kOutOfCommitOrder),
    Broken(Fault::kBrieflyOutOfCommitOrder), Broken(Fault::kDropAtResumeBoundary),
    Broken(Fault::kReuseAfterReopen), Broken(Fault::kNonAtomicUniqueness),
    Broken(Fault::kReadsBlockWriters), Broken(Fault::kProcessLocalCommitLock),
    Broken(Fault::kAcknowledgeBeforeDurable), Broken(Fault::kDeleteKeepsContent),
    Broken(Fault::kPurgeLowersHorizon), Broken(Fault::kPasswordChangeKeepsSessions),
    Broken(Fault::kKeyRepeatedInBatch), Broken(Fault::kReuseAfterPurge),
    Broken(Fault::kExpireKeepsText), Broken(Fault::kReadReplacesOutput),
    Broken(Fault::kSilentWritesReportSequence), Broken(Fault::kGenerationStandsStill),
    Broken(Fault::kWaitMissesEarlierCommit), Broken(Fault::kGenerationOfThisProcessOnly),
    Broken(Fault::kSessionUpsert), Broken(Fault::kAcceptNotAtomic),
    Broken(Fault::kPasswordChangeDropsAllSessions), Broken(Fault::kKeyAfterExclusive),
    Broken(Fault::kReplayTouchesConversation), Broken(Fault::kRetentionCutoffsInclusive),
    Broken(Fault::kHasUsersOnEmptyStore));
