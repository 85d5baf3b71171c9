// Properties 4 and 5 (docs/backend-authors.md): what was acknowledged
// survives a reopen and a kill of the writer, and sequences go on upward.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <set>
#include <thread>
#include <utility>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conformance_tests/suite.h"
#include "conformance_tests/suite_internal.h"

namespace quire::conformance {

// ---- Property 4 ----

// Property 4 (docs/backend-authors.md) (and rule 2): after close and reopen
// everything acknowledged is there, and the next sequence is above every
// earlier one — also when the newest event was purged.
TEST_P(StoreConformance, P04_ReopenKeepsAcknowledged) {
  if (!GetParam().reopen_same_store) GTEST_SKIP() << "backend gives no reopen_same_store";
  const std::string user = SetUpFirstUser();
  const Conversation room = CreateRoom();
  ASSERT_TRUE(Apply(op::SendMessage{MakeMessage(1, room.id, user, "one", 1100), "key", 0, false})
                  .status.ok());
  ASSERT_TRUE(
      Apply(op::SendMessage{MakeMessage(2, room.id, user, "two", 1200), "", 0, false}).status.ok());
  ASSERT_TRUE(Apply(op::DeleteMessage{Id('M', 2), 1300}).status.ok());
  ASSERT_TRUE(Apply(op::CreateInvitation{{Id('I', 1), user, 1400, false}}).status.ok());
  ASSERT_TRUE(Apply(op::CreateSession{MakeSession(2, user, 1500)}).status.ok());

  const storage::Head head = Head();
  const std::vector<Event> history = History();
  Reopen();
  if (HasFatalFailure()) return;

  EXPECT_EQ(History(), history);
  const storage::Head reopened = Head();
  EXPECT_EQ(reopened.last_seq, head.last_seq);
  EXPECT_EQ(reopened.purged_through, head.purged_through);
  User u;
  QUIRE_EXPECT_OK(store_->GetUser(user, &u));
  Session session;
  QUIRE_EXPECT_OK(store_->FindSession(MakeSession(2, user, 0).token_hash, &session));
  storage::Invitation invitation;
  QUIRE_EXPECT_OK(store_->GetInvitation(Id('I', 1), &invitation));
  Message m;
  QUIRE_EXPECT_OK(store_->GetMessage(Id('M', 2), &m));
  EXPECT_EQ(m.body, "");
  EXPECT_TRUE(m.deleted_at.has_value());
  // The idempotency record survived too.
  Write replay =
      Apply(op::SendMessage{MakeMessage(3, room.id, user, "one again", 1600), "key", 0, false});
  EXPECT_TRUE(std::get<op::SendMessage>(replay.op).replayed);

  // Purge the newest events: the head still remembers them.
  const Conversation gone = MakeConversation(2, "gone", 2000);
  ASSERT_TRUE(Apply(op::CreateConversation{gone}).status.ok());
  Write deleted = Apply(op::DeleteConversation{gone.id, 2100});
  ASSERT_TRUE(deleted.status.ok());
  ASSERT_GT(deleted.last_seq, head.last_seq);
  // Purges the deleted message (sent, deleted) and conversation (created, deleted).
  Write purge = Apply(op::Purge{2200, 0, 0, 0});
  ASSERT_TRUE(purge.status.ok());
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 4);
  Reopen();
  if (HasFatalFailure()) return;
  const storage::Head after_purge = Head();
  EXPECT_EQ(after_purge.last_seq, deleted.last_seq);
  EXPECT_EQ(after_purge.purged_through, deleted.last_seq);
  std::vector<Event> retained = history;
  std::erase_if(retained, [&](const Event& e) { return e.id == Id('M', 2); });
  EXPECT_EQ(History(), retained);
  Write next = Apply(op::CreateConversation{MakeConversation(3, "next", 4000)});
  ASSERT_TRUE(next.status.ok());
  EXPECT_GT(next.last_seq, deleted.last_seq);
}

// ---- Property 5 ----

// Property 5 (docs/backend-authors.md): a writer process killed (SIGKILL)
// mid-stream loses nothing it acknowledged, and the sequence continues upward
// on reopen. The writer is a forked child that opens the store with
// reopen_same_store.
TEST_P(StoreConformance, P05_CrashKeepsAcknowledged) {
  if (!store_->capabilities().survives_process_kill) {
    GTEST_SKIP() << "backend declares survives_process_kill = false";
  }
  if (!GetParam().reopen_same_store) GTEST_SKIP() << "backend gives no reopen_same_store";
  const std::string user = SetUpFirstUser();
  const Conversation room = CreateRoom();
  store_.reset();  // the child is the only writer

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child: write forever, reporting each acknowledged (seq, n).
    close(fds[0]);
    std::unique_ptr<storage::Store> store;
    if (!GetParam().reopen_same_store(&store).ok()) _exit(2);
    for (std::int64_t n = 1;; ++n) {
      std::vector<Write> batch(1 + n % 4);
      for (std::size_t k = 0; k < batch.size(); ++k) {
        const std::int64_t id = n * 10 + static_cast<std::int64_t>(k);
        batch[k].op =
            op::SendMessage{MakeMessage(id, room.id, user, "crash", 2000 + n), "", 0, false};
      }
      if (!store->Apply(batch).ok()) _exit(3);
      for (std::size_t k = 0; k < batch.size(); ++k) {
        const std::int64_t record[2] = {batch[k].last_seq, n * 10 + static_cast<std::int64_t>(k)};
        if (write(fds[1], record, sizeof record) != sizeof record) _exit(4);
      }
    }
  }
  close(fds[1]);
  std::vector<std::pair<std::int64_t, std::int64_t>> acknowledged;  // (seq, message n)
  std::int64_t record[2];
  while (acknowledged.size() < 300 && read(fds[0], record, sizeof record) == sizeof record) {
    acknowledged.emplace_back(record[0], record[1]);
  }
  kill(child, SIGKILL);
  // Acknowledgements already in the pipe count too.
  while (read(fds[0], record, sizeof record) == sizeof record) {
    acknowledged.emplace_back(record[0], record[1]);
  }
  close(fds[0]);
  int wstatus = 0;
  waitpid(child, &wstatus, 0);
  ASSERT_TRUE(WIFSIGNALED(wstatus))
      << "the writer exited early with status " << WEXITSTATUS(wstatus);
  ASSERT_GE(acknowledged.size(), 300u);

  Reopen();
  if (HasFatalFailure()) return;
  const std::vector<Event> history = History();
  std::int64_t highest = 0;
  for (const auto& [seq, n] : acknowledged) {
    auto it = std::lower_bound(history.begin(), history.end(), seq,
                               [](const Event& e, std::int64_t s) { return e.seq < s; });
    ASSERT_TRUE(it != history.end() && it->seq == seq) << "acknowledged " << seq << " is lost";
    EXPECT_EQ(it->id, Id('M', n));
    highest = std::max(highest, seq);
  }
  EXPECT_GE(Head().last_seq, highest);
  Write next = Apply(op::CreateConversation{MakeConversation(2, "after the crash", 9000)});
  ASSERT_TRUE(next.status.ok()) << next.status.ToString();
  EXPECT_GT(next.last_seq, highest);
}

}  // namespace quire::conformance
