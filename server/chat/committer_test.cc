// Committer against a real SQLite file: writes submitted without waiting are
// all applied, in order, and each completion runs only after its commit.
#include "server/chat/committer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "storage/sqlite/sqlite_store.h"

namespace quire::chat {
namespace {

storage::Write NewConversation(int i) {
  const std::string name = "room " + std::to_string(i);
  // Ids of the right shape: C + 15 characters.
  std::string id = "C" + std::string(15 - std::to_string(i).size(), 'b') + std::to_string(i);
  return storage::Write{
      storage::op::CreateConversation{storage::Conversation{id, name, name, 1, 1, std::nullopt}},
      storage::Status::Ok(), 0};
}

// A real SQLite store in a fresh folder, removed afterwards.
class CommitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/quire-committer-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    ASSERT_TRUE(storage::OpenSqliteStore(dir_ + "/quire.db", &store).ok());
  }
  void TearDown() override {
    store.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<storage::Store> store;

 private:
  std::string dir_;
};

TEST_F(CommitterTest, OneThreadSubmitsManyWritesWithoutWaitingAndEachCompletesAfterItsCommit) {
  constexpr int kWrites = 300;
  std::mutex mu;
  std::vector<std::int64_t> seqs(kWrites, -1);
  std::vector<std::int64_t> heads(kWrites, -1);
  std::promise<void> all_done;
  std::atomic<int> remaining{kWrites};
  {
    Committer committer(*store, /*max_batch=*/64);
    // Submit returns before the commit: one thread has every write in flight.
    for (int i = 0; i < kWrites; ++i) {
      committer.Submit(NewConversation(i), [&, i](storage::Write w) {
        storage::Head head;
        const bool read = store->GetHead(&head).ok();  // what a boot would see now
        {
          std::lock_guard<std::mutex> lock(mu);
          seqs[i] = w.status.ok() ? w.last_seq : -2;
          heads[i] = read ? head.last_seq : -3;
        }
        if (--remaining == 0) all_done.set_value();
      });
    }
    ASSERT_EQ(all_done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready)
        << remaining.load() << " writes never completed";
  }
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_GT(seqs[i], 0) << "write " << i << " failed or emitted nothing";
    if (i > 0) {
      EXPECT_GT(seqs[i], seqs[i - 1]) << "write " << i << " committed out of order";
    }
    EXPECT_GE(heads[i], seqs[i]) << "write " << i << " completed before its commit was visible";
  }
}

TEST_F(CommitterTest, SubmitAndWaitReturnsTheOutcome) {
  {
    Committer committer(*store);
    storage::Write first = committer.SubmitAndWait(NewConversation(1));
    EXPECT_TRUE(first.status.ok());
    EXPECT_GT(first.last_seq, 0);
    storage::Write again = committer.SubmitAndWait(NewConversation(1));  // the same id and name
    EXPECT_FALSE(again.status.ok());
    EXPECT_EQ(again.last_seq, 0);
  }
}

// The event pump waits with AwaitReplies until a commit's replies are queued,
// so that they go out before the stream bytes of its events.
TEST_F(CommitterTest, AwaitRepliesReturnsOnlyOnceTheStartedBatchesRanTheirCompletions) {
  {
    Committer committer(*store);
    std::promise<void> completion_started, release_completion;
    std::shared_future<void> released = release_completion.get_future().share();
    committer.Submit(NewConversation(1), [&](storage::Write) {
      completion_started.set_value();
      released.wait();  // a reply still being queued
    });
    completion_started.get_future().wait();
    std::promise<void> awaited;
    std::future<void> returned = awaited.get_future();
    std::thread pump([&] {
      committer.AwaitReplies(std::chrono::seconds(10));
      awaited.set_value();
    });
    EXPECT_EQ(returned.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
        << "AwaitReplies returned while a completion of the batch was still running";
    release_completion.set_value();
    EXPECT_EQ(returned.wait_for(std::chrono::seconds(5)), std::future_status::ready);
    pump.join();
    // Nothing started since: at once.
    const auto start = std::chrono::steady_clock::now();
    committer.AwaitReplies(std::chrono::seconds(10));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  }
}

// The server paces the committer by its event streams: Pace runs after a
// batch committed, with the batch's highest sequence, and while it waits the
// writes submitted meanwhile gather into the next batch. (The batch's
// completions run on the reply thread meanwhile.)
TEST_F(CommitterTest, PaceRunsAfterEachBatchAndWritesGatherWhileItWaits) {
  std::mutex mu;
  std::vector<std::int64_t> paced;      // the sequences Pace was given
  std::vector<std::int64_t> completed;  // last_seq of every completion, in order
  std::promise<void> first_paced, release_pace;
  std::shared_future<void> released = release_pace.get_future().share();
  {
    Committer committer(*store, 256, [&](std::int64_t seq) {
      bool first;
      {
        std::lock_guard<std::mutex> lock(mu);
        first = paced.empty();
        paced.push_back(seq);
      }
      // The batch is committed (visible to readers) before its Pace.
      storage::Head head;
      EXPECT_TRUE(store->GetHead(&head).ok());
      EXPECT_GE(head.last_seq, seq);
      if (first) {
        first_paced.set_value();
        released.wait();  // the streams are behind: the committer waits here
      }
    });
    auto record = [&](storage::Write w) {
      std::lock_guard<std::mutex> lock(mu);
      completed.push_back(w.last_seq);
    };
    committer.Submit(NewConversation(0), record);
    first_paced.get_future().wait();
    for (int i = 1; i <= 20; ++i) committer.Submit(NewConversation(i), record);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    {
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_EQ(completed.size(), 1u) << "a batch was committed while Pace waited";
    }
    release_pace.set_value();
  }
  ASSERT_EQ(completed.size(), 21u);
  for (std::size_t i = 1; i < completed.size(); ++i) EXPECT_GT(completed[i], completed[i - 1]);
  // The 20 writes that waited went in one batch: two Pace calls in all.
  ASSERT_EQ(paced.size(), 2u);
  EXPECT_EQ(paced[0], completed[0]);
  EXPECT_EQ(paced[1], completed.back());
}

}  // namespace
}  // namespace quire::chat
