// EventHub against a real SQLite file and a fake stream: a session that ends
// while its stream is being attached ends that stream too (a logout racing
// the GET /api/events of the same session).
#include "server/fanout/event_hub.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/chat/event_json.h"
#include "storage/sqlite/sqlite_store.h"

namespace quire::fanout {
namespace {

// A ResponseStream that keeps its drain callback until End(), which runs it
// with false as the real one does when it closes.
class FakeStream final : public http::ResponseStream {
 public:
  bool Write(http::ChunkPtr chunk) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return false;
    ++writes_;
    bytes_ += chunk->bytes();
    return true;
  }
  std::size_t PendingBytes() const override { return pending_.load(); }
  void WhenDrained(std::size_t, std::chrono::milliseconds,
                   std::function<void(bool)> callback) override {
    std::lock_guard<std::mutex> lock(mu_);
    drain_ = std::move(callback);
  }
  void End() override {
    std::function<void(bool)> drain;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ended_) return;
      ended_ = true;
      drain.swap(drain_);
    }
    if (drain) drain(false);
  }
  bool Closed() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return ended_;
  }
  void OnClose(std::function<void()>) override {}

  int writes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return writes_;
  }
  // Every byte written, chunk framing included.
  std::string bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }
  bool waits_for_drain() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<bool>(drain_);
  }
  // What PendingBytes() reports: bytes the client has not read.
  void set_pending(std::size_t bytes) { pending_.store(bytes); }
  bool Stalled(std::chrono::milliseconds) const override { return stalled_.load(); }
  void set_stalled(bool stalled) { stalled_.store(stalled); }
  void LimitSendBuffer(std::size_t bytes) override { send_buffer_.store(bytes); }
  std::size_t send_buffer() const { return send_buffer_.load(); }

 private:
  mutable std::mutex mu_;
  bool ended_ = false;
  int writes_ = 0;
  std::string bytes_;
  std::function<void(bool)> drain_;
  std::atomic<std::size_t> pending_{0};
  std::atomic<bool> stalled_{false};
  std::atomic<std::size_t> send_buffer_{0};
};

class EventHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/quire-hub-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    ASSERT_TRUE(storage::OpenSqliteStore(dir_ + "/quire.db", &store_).ok());
    // The owner and a session (one event), and two conversations (two more).
    storage::User user{"U000000000000001", "alice", "alice", "x", 1};
    storage::Session session{kToken, user.id, 1, 1};
    Apply(storage::op::Setup{user, session});
    for (int i = 1; i <= 2; ++i) {
      const std::string name = "room " + std::to_string(i);
      Apply(storage::op::CreateConversation{storage::Conversation{
          "C00000000000000" + std::to_string(i), name, name, 1, 1, std::nullopt}});
    }
  }
  void TearDown() override {
    hub_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Apply(storage::op::Operation op) {
    std::vector<storage::Write> batch{storage::Write{std::move(op), storage::Status::Ok(), 0}};
    ASSERT_TRUE(store_->Apply(batch).ok());
    ASSERT_TRUE(batch[0].status.ok()) << batch[0].status.ToString();
  }

  // A hub that replays one event per page, so a replay from 0 waits for its
  // stream to drain after the first.
  void StartHub(HubOptions options = {}) {
    options.read_page = 1;
    hub_ = std::make_unique<EventHub>(*store_, options);
    ASSERT_TRUE(hub_->Start().ok());
  }

  // Commits one more event and waits until the pump has delivered it.
  void CommitAndPublish(int n) {
    const std::string name = "more " + std::to_string(n);
    Apply(storage::op::CreateConversation{storage::Conversation{
        "C00000000000010" + std::to_string(n), name, name, 1, 1, std::nullopt}});
    storage::Head head;
    ASSERT_TRUE(store_->GetHead(&head).ok());
    for (int i = 0; i < 5000 && hub_->GetStats().published < head.last_seq; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(hub_->GetStats().published, head.last_seq);
  }

  static constexpr const char* kToken = "token-hash-1";
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<EventHub> hub_;

 private:
  std::string dir_;
};

TEST_F(EventHubTest, AStreamWhoseSessionEndedBeforeItWasAttachedIsEnded) {
  StartHub();
  // The logout committed (and its SessionEnded found no stream) after the
  // request was authenticated and before the hub knew of its stream.
  Apply(storage::op::DeleteSession{kToken});
  hub_->SessionEnded(kToken);
  auto stream = std::make_shared<FakeStream>();
  hub_->Attach(stream, 0, "U000000000000001", kToken);
  EXPECT_TRUE(stream->Closed()) << "the stream of a logged-out session must end";
  EXPECT_EQ(hub_->LiveStreams(), 0u);
}

TEST_F(EventHubTest, ASessionThatEndsWhileItsStreamReplaysEndsTheStream) {
  StartHub();
  auto stream = std::make_shared<FakeStream>();
  hub_->Attach(stream, 0, "U000000000000001", kToken);
  ASSERT_TRUE(stream->waits_for_drain()) << "the replay should wait after its first page";
  EXPECT_EQ(stream->writes(), 1);
  EXPECT_EQ(hub_->OpenSessions(), std::vector<std::string>{kToken});

  Apply(storage::op::DeleteSession{kToken});
  hub_->SessionEnded(kToken);  // ends it, and its drain callback (false) runs on this thread
  EXPECT_TRUE(stream->Closed()) << "the stream of a logged-out session must end";
  EXPECT_EQ(stream->writes(), 1);
  EXPECT_EQ(hub_->LiveStreams(), 0u);
  EXPECT_TRUE(hub_->OpenSessions().empty()) << "an ended replay must leave the hub";
}

TEST_F(EventHubTest, AReplayThatDrainsBecomesLiveWithItsSession) {
  StartHub();
  auto stream = std::make_shared<FakeStream>();
  hub_->Attach(stream, 2, "U000000000000001", kToken);  // one event left: one page
  EXPECT_FALSE(stream->Closed());
  EXPECT_EQ(stream->writes(), 1);
  EXPECT_EQ(hub_->LiveStreams(), 0u);  // waits for the page to drain
  EXPECT_EQ(hub_->OpenSessions(), std::vector<std::string>{kToken});
  hub_->UserSessionsEnded("U000000000000001", /*kept_token_hash=*/"another");
  EXPECT_TRUE(stream->Closed()) << "a password change ends the replaying streams of the user";
}

TEST_F(EventHubTest, AnEventGoesOutAsOneChunkHoldingItsSseFrame) {
  StartHub();
  auto stream = std::make_shared<FakeStream>();
  hub_->Attach(stream, 2, "U000000000000001", kToken);  // replays event 3
  std::vector<storage::Event> events;
  ASSERT_TRUE(store_->ReadEvents(2, 3, 1, &events).ok());
  ASSERT_EQ(events.size(), 1u);
  const std::string frame = "id: 3\ndata: " + chat::EventJson(events[0]) + "\n\n";
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", frame.size());
  EXPECT_EQ(stream->bytes(), size + frame + "\r\n");
  stream->End();  // runs the drain callback, which holds the replay and so the stream
}

// A hub whose Pace waits for streams that lag more than 1,000 bytes, up to
// `lag_wait` per commit, with one live stream holding `pending` unread bytes
// when the pump delivers the next event (the 4th).
class PaceTest : public EventHubTest {
 protected:
  std::shared_ptr<FakeStream> LiveStreamAfterACommit(std::chrono::milliseconds lag_wait,
                                                     std::size_t pending, bool stalled = false) {
    HubOptions options;
    options.lag_bytes = 1000;
    options.lag_wait = lag_wait;
    StartHub(options);
    auto stream = std::make_shared<FakeStream>();
    hub_->Attach(stream, 3, "U000000000000001", kToken);  // level with the hub: live at once
    EXPECT_EQ(hub_->LiveStreams(), 1u);
    EXPECT_EQ(stream->send_buffer(), options.live_send_buffer) << "a live stream's kernel buffer";
    stream->set_pending(pending);
    stream->set_stalled(stalled);
    CommitAndPublish(1);
    return stream;
  }
};

// Clients that all read slower than the senders send: the committer waits
// for them (a brake on the senders) instead of their streams growing until
// they are cut. It waits until they drain, and no longer.
TEST_F(PaceTest, PaceWaitsWhileTheStreamsLagUntilTheyDrain) {
  auto stream = LiveStreamAfterACommit(std::chrono::seconds(20), 5000);
  std::atomic<std::int64_t> drained_at{0};
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    drained_at.store(std::chrono::steady_clock::now().time_since_epoch().count());
    stream->set_pending(0);
  });
  const auto started = std::chrono::steady_clock::now();
  hub_->Pace(4);
  const auto returned = std::chrono::steady_clock::now();
  reader.join();
  EXPECT_GE(returned.time_since_epoch().count(), drained_at.load())
      << "Pace returned while the stream still lagged";
  EXPECT_LT(returned - started, std::chrono::seconds(10)) << "Pace waited past the drain";
  stream->End();
}

// A client that stopped reading (its socket took nothing for a while) does
// not hold the senders back: it is cut once it holds max_pending_bytes.
TEST_F(PaceTest, PaceDoesNotWaitForAStreamWhoseClientStoppedReading) {
  auto stream = LiveStreamAfterACommit(std::chrono::seconds(60), 500000, /*stalled=*/true);
  const auto started = std::chrono::steady_clock::now();
  hub_->Pace(4);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30))
      << "a stalled client held the committer";
  stream->End();
}

// Slow readers hold each commit back by lag_wait at most.
TEST_F(PaceTest, PaceWaitsForLaggingStreamsAtMostLagWaitPerCommit) {
  auto stream = LiveStreamAfterACommit(std::chrono::milliseconds(50), 500000);
  const auto started = std::chrono::steady_clock::now();
  hub_->Pace(4);
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_GE(waited, std::chrono::milliseconds(50)) << "Pace did not wait for a lagging stream";
  EXPECT_LT(waited, std::chrono::seconds(30));
  stream->End();
}

}  // namespace
}  // namespace quire::fanout
