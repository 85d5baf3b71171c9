// Properties 1 to 3 (docs/backend-authors.md): sequences increase in commit
// order, concurrent writers (threads and processes) never make a reader skip
// an event, and a boot plus a resume is the whole history.
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

// ---- Property 1 ----

// Property 1 (docs/backend-authors.md): sequences strictly increase across
// single writes and batches, a failed write of a batch emits nothing, and the
// head is the last.
TEST_P(StoreConformance, P01_SequencesStrictlyIncrease) {
  const std::string user = SetUpFirstUser();
  std::int64_t last = Head().last_seq;
  EXPECT_GT(last, 0);

  for (int i = 0; i < 5; ++i) {
    Write w =
        Apply(op::CreateConversation{MakeConversation(i, "single " + std::to_string(i), 2000 + i)});
    ASSERT_TRUE(w.status.ok()) << w.status.ToString();
    EXPECT_GT(w.last_seq, last);
    last = w.last_seq;
  }

  std::vector<op::Operation> ops;
  for (int i = 10; i < 15; ++i) {
    ops.push_back(op::CreateConversation{MakeConversation(i, "batch " + std::to_string(i), 3000)});
  }
  // A failing write in the middle: the name of conversation 0 is taken.
  ops.insert(ops.begin() + 2, op::CreateConversation{MakeConversation(99, "single 0", 3000)});
  ops.push_back(op::SendMessage{MakeMessage(1, Id('C', 0), user, "hello", 3001), "", 0, false});
  std::vector<Write> writes = ApplyBatch(std::move(ops));
  for (std::size_t i = 0; i < writes.size(); ++i) {
    if (i == 2) {
      EXPECT_TRUE(writes[i].status.IsConflict()) << writes[i].status.ToString();
      EXPECT_EQ(writes[i].last_seq, 0);
      continue;
    }
    ASSERT_TRUE(writes[i].status.ok()) << i << ": " << writes[i].status.ToString();
    EXPECT_GT(writes[i].last_seq, last) << "write " << i << " of the batch";
    last = writes[i].last_seq;
  }

  // A write the engine itself refuses (an invitation id already stored: a
  // unique-key violation in SQL engines) fails alone; the rest commits.
  ASSERT_TRUE(Apply(op::CreateInvitation{{Id('I', 1), user, 3500, false}}).status.ok());
  writes = ApplyBatch({op::CreateConversation{MakeConversation(20, "around 1", 3600)},
                       op::CreateInvitation{{Id('I', 1), user, 3600, false}},
                       op::CreateConversation{MakeConversation(21, "around 2", 3600)}});
  EXPECT_TRUE(writes[1].status.IsConflict()) << writes[1].status.ToString();
  for (std::size_t i : {0u, 2u}) {
    ASSERT_TRUE(writes[i].status.ok()) << i << ": " << writes[i].status.ToString();
    EXPECT_GT(writes[i].last_seq, last);
    last = writes[i].last_seq;
  }
  storage::Invitation first_invitation;
  QUIRE_ASSERT_OK(store_->GetInvitation(Id('I', 1), &first_invitation));
  EXPECT_EQ(first_invitation.issued_at, 3500);

  // Expiry emits several events from one write; its last_seq is the highest.
  Write expire = Apply(op::Expire{4000, 0, 5000});
  ASSERT_TRUE(expire.status.ok()) << expire.status.ToString();
  EXPECT_EQ(std::get<op::Expire>(expire.op).deleted_messages, 1);
  EXPECT_GT(expire.last_seq, last);
  last = expire.last_seq;

  const std::vector<Event> history = History();
  const std::vector<std::int64_t> seqs = Seqs(history);
  EXPECT_TRUE(StrictlyIncreasing(seqs));
  ASSERT_FALSE(seqs.empty());
  EXPECT_EQ(seqs.back(), last);
  EXPECT_EQ(Head().last_seq, last);
  // 1 user + 5 + 5 + 2 conversations + 1 message + 1 message deleted.
  EXPECT_EQ(history.size(), 15u);
  // Pages of one event read the same history.
  EXPECT_EQ(History(0, INT64_MAX, 1), history);
  // `upto` bounds the read.
  EXPECT_EQ(History(0, seqs[3]).size(), 4u);
  // ReadEvents appends to what the caller's vector holds.
  std::vector<Event> appended(1);
  appended[0].id = "the caller's";
  QUIRE_ASSERT_OK(store_->ReadEvents(0, seqs[1], 10, &appended));
  ASSERT_EQ(appended.size(), 3u) << "ReadEvents did not append to the caller's vector";
  EXPECT_EQ(appended[0].id, "the caller's");
  EXPECT_EQ(appended[1], history[0]);
  EXPECT_EQ(appended[2], history[1]);
  // Sends to a conversation that is not live fail alone, in the middle of a
  // run of sends too (an engine may apply consecutive sends together), take
  // no sequence and store nothing; the conversation's last activity is its
  // last stored send's.
  writes =
      ApplyBatch({op::SendMessage{MakeMessage(7, Id('C', 0), user, "before", 3700), "", 0, false},
                  op::SendMessage{MakeMessage(8, Id('C', 404), user, "lost", 3710), "", 0, false},
                  op::SendMessage{MakeMessage(9, Id('C', 0), user, "after", 3720), "", 0, false},
                  op::SendMessage{MakeMessage(10, Id('C', 1), user, "other", 3715), "", 0, false}});
  EXPECT_TRUE(writes[1].status.IsNotFound()) << writes[1].status.ToString();
  EXPECT_EQ(writes[1].last_seq, 0);
  for (std::size_t i : {0u, 2u, 3u}) {
    ASSERT_TRUE(writes[i].status.ok()) << i << ": " << writes[i].status.ToString();
    EXPECT_GT(writes[i].last_seq, last) << "send " << i << " of the run";
    last = writes[i].last_seq;
  }
  storage::Message lost;
  EXPECT_TRUE(store_->GetMessage(Id('M', 8), &lost).IsNotFound());
  storage::Conversation zero;
  QUIRE_ASSERT_OK(store_->GetConversation(Id('C', 0), &zero));
  EXPECT_EQ(zero.last_activity, 3720);
}

// ---- Property 2 ----

// Property 2 (docs/backend-authors.md): concurrent writers get distinct
// sequences, and a reader polling "events after my cursor" meanwhile never
// skips an event.
TEST_P(StoreConformance, P02_ConcurrentWritersNeverSkipEvents) {
  const std::string user = SetUpFirstUser();
  const Conversation room = CreateRoom();

  constexpr int kThreads = 8;
  constexpr int kBatches = 120;  // alternately 1 and 16 writes
  std::atomic<bool> done{false};
  std::vector<std::vector<std::int64_t>> acknowledged(kThreads);
  std::vector<std::string> problems(kThreads);
  // Each writer also reads, right after each of its commits, the window of
  // sequences below its highest: rule 1 says nothing in it may commit later.
  // These reads come exactly when another writer's lower sequence may still
  // be in flight, which a poller meets only by chance.
  struct Probe {
    std::int64_t through;
    std::vector<std::int64_t> seqs;  // the window (through - kWindow, through]
  };
  constexpr std::int64_t kWindow = 256;  // > every write all threads have in flight
  std::vector<std::vector<Probe>> probes(kThreads);

  std::vector<std::int64_t> seen;
  std::string reader_problem;
  // The reader and the writers start together, so that every batch meets
  // the others and the reader (not the first writer alone, while the other
  // threads are still being created).
  std::latch start(kThreads + 1);
  std::thread reader([&] {
    std::int64_t cursor = 0;
    std::uint64_t generation = store_->CommitGeneration();
    start.arrive_and_wait();
    while (true) {
      const bool last_round = done.load();
      std::vector<Event> got;
      Status s = store_->ReadEvents(cursor, INT64_MAX, 256, &got);
      if (!s.ok()) {
        reader_problem = s.ToString();
        return;
      }
      for (const Event& e : got) {
        if (e.seq <= cursor) {
          reader_problem =
              "event " + std::to_string(e.seq) + " after cursor " + std::to_string(cursor);
          return;
        }
        cursor = e.seq;
        seen.push_back(e.seq);
      }
      if (got.size() == 256) continue;
      if (last_round) return;
      generation = store_->WaitForCommit(generation, std::chrono::milliseconds(5));
    }
  });

  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int b = 0; b < kBatches; ++b) {
        const int size = b % 2 == 0 ? 1 : 16;
        std::vector<Write> batch(size);
        for (int k = 0; k < size; ++k) {
          const std::int64_t n = (t + 1) * 1000000 + b * 100 + k;
          batch[k].op = op::SendMessage{
              MakeMessage(n, room.id, user, "m" + std::to_string(n), 2000 + b), "", 0, false};
        }
        Status s = store_->Apply(batch);
        if (!s.ok()) {
          problems[t] = s.ToString();
          return;
        }
        for (const Write& w : batch) {
          if (!w.status.ok()) {
            problems[t] = w.status.ToString();
            return;
          }
          acknowledged[t].push_back(w.last_seq);
        }
        const std::int64_t through = batch.back().last_seq;
        std::vector<Event> window;
        s = store_->ReadEvents(std::max<std::int64_t>(0, through - kWindow), through, kWindow,
                               &window);
        if (!s.ok()) {
          problems[t] = s.ToString();
          return;
        }
        probes[t].push_back({through, Seqs(window)});
      }
    });
  }
  for (std::thread& w : writers) w.join();
  done.store(true);
  reader.join();

  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(problems[t], "") << "writer " << t;
  EXPECT_EQ(reader_problem, "");
  std::set<std::int64_t> distinct;
  std::size_t total = 0;
  for (const auto& seqs : acknowledged) {
    EXPECT_TRUE(StrictlyIncreasing(seqs));
    distinct.insert(seqs.begin(), seqs.end());
    total += seqs.size();
  }
  EXPECT_EQ(distinct.size(), total) << "a sequence was given to two writes";
  EXPECT_EQ(total, static_cast<std::size_t>(kThreads * (kBatches / 2) * 17));

  const std::vector<std::int64_t> final_seqs = Seqs(History());
  EXPECT_TRUE(StrictlyIncreasing(final_seqs));
  // The poller saw exactly the final history: nothing skipped, nothing twice.
  EXPECT_EQ(FirstDifference(seen, final_seqs), "");
  // Each writer's window saw all of it that was ever committed.
  for (int t = 0; t < kThreads; ++t) {
    for (const Probe& probe : probes[t]) {
      const auto from = std::upper_bound(final_seqs.begin(), final_seqs.end(),
                                         std::max<std::int64_t>(0, probe.through - kWindow));
      const auto to = std::upper_bound(final_seqs.begin(), final_seqs.end(), probe.through);
      const std::vector<std::int64_t> final_window(from, to);
      ASSERT_EQ(FirstDifference(probe.seqs, final_window), "")
          << "writer " << t << " read the sequences up to its own " << probe.through
          << " right after committing it; one of them committed later";
    }
  }
  for (std::int64_t seq : distinct) {
    EXPECT_TRUE(std::binary_search(final_seqs.begin(), final_seqs.end(), seq))
        << "acknowledged sequence " << seq << " is not in the history";
  }
}

// Property 2 (docs/backend-authors.md), several processes (for backends that
// declare multi_process_writers): forked writer processes, each with its own
// store opened by reopen_same_store, append while this process polls "events
// after my cursor". Distinct sequences, nothing skipped, nothing twice.
TEST_P(StoreConformance, P02_ConcurrentProcessesNeverSkipEvents) {
  if (!store_->capabilities().multi_process_writers) {
    GTEST_SKIP() << "backend declares multi_process_writers = false";
  }
  if (!GetParam().reopen_same_store) GTEST_SKIP() << "backend gives no reopen_same_store";
  const std::string user = SetUpFirstUser();
  const Conversation room = CreateRoom();

  // store.h: CommitGeneration grows with commits of other processes too.
  const std::uint64_t before_children = store_->CommitGeneration();
  constexpr int kProcesses = 3;
  constexpr int kBatches = 40;  // alternately 1 and 16 writes
  constexpr int kPerProcess = kBatches / 2 * 17;
  // The children report every acknowledged sequence through one pipe, read
  // only at the end: all of it must fit in the pipe's buffer.
  static_assert(kProcesses * kPerProcess * sizeof(std::int64_t) < 60000);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  // The writers open their stores, then wait until the last one is forked:
  // closing `go` starts them together.
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(fds[0]);
      std::unique_ptr<storage::Store> store;
      if (!GetParam().reopen_same_store(&store).ok()) _exit(2);
      close(go[1]);
      char byte;
      if (read(go[0], &byte, 1) != 0) _exit(6);
      for (int b = 0; b < kBatches; ++b) {
        const int size = b % 2 == 0 ? 1 : 16;
        std::vector<Write> batch(size);
        for (int k = 0; k < size; ++k) {
          const std::int64_t n = (p + 1) * 1000000 + b * 100 + k;
          batch[k].op = op::SendMessage{
              MakeMessage(n, room.id, user, "p" + std::to_string(n), 2000 + b), "", 0, false};
        }
        if (!store->Apply(batch).ok()) _exit(3);
        for (const Write& w : batch) {
          if (!w.status.ok()) _exit(4);
          if (write(fds[1], &w.last_seq, sizeof w.last_seq) != sizeof w.last_seq) _exit(5);
        }
      }
      store.reset();
      _exit(0);
    }
    children.push_back(child);
  }
  close(fds[1]);
  close(go[0]);
  close(go[1]);

  // Poll until every writer has exited, then once more.
  std::vector<std::int64_t> seen;
  std::int64_t cursor = 0;
  std::uint64_t generation = store_->CommitGeneration();
  std::vector<int> exit_codes;
  while (true) {
    const bool last_round = exit_codes.size() == children.size();
    std::vector<Event> got;
    QUIRE_ASSERT_OK(store_->ReadEvents(cursor, INT64_MAX, 256, &got));
    for (const Event& e : got) {
      ASSERT_GT(e.seq, cursor) << "an event at or before the cursor";
      cursor = e.seq;
      seen.push_back(e.seq);
    }
    if (got.size() == 256) continue;
    if (last_round) break;
    for (pid_t& child : children) {
      int wstatus = 0;
      if (child > 0 && waitpid(child, &wstatus, WNOHANG) == child) {
        exit_codes.push_back(WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus));
        child = 0;
      }
    }
    generation = store_->WaitForCommit(generation, std::chrono::milliseconds(5));
  }
  std::vector<std::int64_t> acknowledged;
  std::int64_t seq = 0;
  while (read(fds[0], &seq, sizeof seq) == sizeof seq) acknowledged.push_back(seq);
  close(fds[0]);

  for (int code : exit_codes) EXPECT_EQ(code, 0) << "a writer process failed";
  // Commits of other processes may reach this one late: wait for one.
  std::uint64_t after_children = store_->CommitGeneration();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (after_children == before_children && std::chrono::steady_clock::now() < deadline) {
    after_children = store_->WaitForCommit(before_children, std::chrono::milliseconds(100));
  }
  EXPECT_NE(after_children, before_children)
      << "commits of other processes did not change CommitGeneration";
  EXPECT_EQ(acknowledged.size(), static_cast<std::size_t>(kProcesses * kPerProcess));
  const std::set<std::int64_t> distinct(acknowledged.begin(), acknowledged.end());
  EXPECT_EQ(distinct.size(), acknowledged.size()) << "a sequence was given to two writes";
  const std::vector<std::int64_t> final_seqs = Seqs(History());
  EXPECT_TRUE(StrictlyIncreasing(final_seqs));
  EXPECT_EQ(FirstDifference(seen, final_seqs), "");
  for (std::int64_t s : distinct) {
    EXPECT_TRUE(std::binary_search(final_seqs.begin(), final_seqs.end(), s))
        << "acknowledged sequence " << s << " is not in the history";
  }
}

// ---- Property 3 ----

// Property 3 (docs/backend-authors.md): for any R taken from a history read,
// history(<=R) + events(>R) equals a later full history.
TEST_P(StoreConformance, P03_BootResumeEquivalence) {
  const std::string user = SetUpFirstUser();
  const Conversation room = CreateRoom();

  std::atomic<bool> writing{true};
  std::string problem;
  std::latch start(2);
  std::thread writer([&] {
    start.arrive_and_wait();
    for (int i = 0; i < 150; ++i) {
      std::vector<Write> batch(1 + i % 3);
      for (std::size_t k = 0; k < batch.size(); ++k) {
        const std::int64_t n = i * 10 + static_cast<std::int64_t>(k);
        if (k == 2) {
          batch[k].op =
              op::CreateConversation{MakeConversation(100 + n, "c" + std::to_string(n), 2000 + i)};
        } else {
          batch[k].op = op::SendMessage{
              MakeMessage(n, room.id, user, "b" + std::to_string(n), 2000 + i), "", 0, false};
        }
      }
      Status s = store_->Apply(batch);
      if (!s.ok()) problem = s.ToString();
    }
    writing.store(false);
  });

  struct Boot {
    std::int64_t resume_point;
    std::vector<Event> events;
  };
  std::vector<Boot> boots;
  start.arrive_and_wait();
  while (writing.load() || boots.size() < 3) {
    const std::int64_t r = Head().last_seq;
    boots.push_back(Boot{r, History(0, r, 50)});
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  writer.join();
  EXPECT_EQ(problem, "");

  const std::vector<Event> full = History();
  for (const Boot& boot : boots) {
    for (const Event& e : boot.events) ASSERT_LE(e.seq, boot.resume_point);
    std::vector<Event> joined = boot.events;
    const std::vector<Event> resumed = History(boot.resume_point, INT64_MAX, 7);
    joined.insert(joined.end(), resumed.begin(), resumed.end());
    EXPECT_EQ(joined, full) << "boot at resume point " << boot.resume_point;
  }
}

}  // namespace quire::conformance
