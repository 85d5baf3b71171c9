// EventHub against a real SQLite file and a fake stream: a session that ends
// while its stream is being attached ends that stream too (a logout racing
// the GET /api/events of the same session).
#include "server/fanout/event_hub.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
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
  std::size_t PendingBytes() const override { return 0; }
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

 private:
  mutable std::mutex mu_;
  bool ended_ = false;
  int writes_ = 0;
  std::string bytes_;
  std::function<void(bool)> drain_;
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
  void StartHub() {
    HubOptions options;
    options.read_page = 1;
    hub_ = std::make_unique<EventHub>(*store_, options);
    ASSERT_TRUE(hub_->Start().ok());
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

}  // namespace
}  // namespace quire::fanout
