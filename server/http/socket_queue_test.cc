#include "server/http/socket_queue.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "server/http/writable_watcher.h"

namespace quire::http {
namespace {

using namespace std::chrono_literals;

// A connected pair of non-blocking stream sockets with small buffers, so that
// a few kilobytes fill them.
class SocketPair {
 public:
  SocketPair() {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds_), 0);
    const int small = 4096;
    ::setsockopt(fds_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ::setsockopt(fds_[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  ~SocketPair() {
    CloseReader();
    ::close(fds_[0]);
  }
  int writer() const { return fds_[0]; }
  void CloseReader() {
    if (fds_[1] >= 0) ::close(fds_[1]);
    fds_[1] = -1;
  }
  // Everything readable now.
  std::string ReadAvailable() {
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fds_[1], buf, sizeof buf);
      if (n <= 0) return out;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }

 private:
  int fds_[2] = {-1, -1};
};

ChunkPtr Numbered(int i) {
  return MakeChunk("event " + std::to_string(i) + " " + std::string(300, 'x'));
}

// The server's count of unread stream bytes: a chunk queued by several
// streams counts once, and leaves the count when the last queue lets it go
// (written, taken, or the queue destroyed).
TEST(SocketQueueTest, CountsEachQueuedChunkOnceWhateverTheQueuesHoldingIt) {
  std::atomic<std::size_t> total{0};
  ChunkPtr shared = MakeChunk(std::string(1000, 's'));
  ChunkPtr own = MakeChunk(std::string(500, 'o'));
  const std::size_t shared_bytes = shared->bytes().size();
  const std::size_t own_bytes = own->bytes().size();
  {
    SocketQueue a(&total);
    SocketQueue b(&total);
    a.Push(shared);
    EXPECT_EQ(total.load(), shared_bytes);
    b.Push(shared);
    EXPECT_EQ(total.load(), shared_bytes) << "a chunk two queues hold counts once";
    b.Push(own);
    EXPECT_EQ(total.load(), shared_bytes + own_bytes);
    EXPECT_EQ(a.TakeRest().size(), shared_bytes);
    EXPECT_EQ(total.load(), shared_bytes + own_bytes) << "b still holds the shared chunk";

    SocketPair pair;  // b writes what its socket takes: both chunks fit
    EXPECT_EQ(b.Flush(pair.writer()), SocketQueue::Result::kWritten);
    EXPECT_EQ(total.load(), 0u);

    a.Push(own);
    b.Push(own);
    EXPECT_EQ(total.load(), own_bytes);
  }
  EXPECT_EQ(total.load(), 0u) << "destroyed queues still counted";
}

// Blocked bytes count until the socket takes them.
TEST(SocketQueueTest, CountsWhatAFullSocketRefusedUntilItIsWritten) {
  std::atomic<std::size_t> total{0};
  SocketPair pair;
  SocketQueue queue(&total);
  int i = 0;
  while (queue.Write(pair.writer(), Numbered(i++)) == SocketQueue::Result::kWritten) {
    ASSERT_LT(i, 10000);
  }
  EXPECT_GT(total.load(), 0u);
  EXPECT_LE(total.load(), queue.bytes() + Numbered(0)->bytes().size())
      << "more counted than the queue holds (its front chunk may be partly written)";
  EXPECT_GE(total.load(), queue.bytes());
  while (queue.Flush(pair.writer()) == SocketQueue::Result::kBlocked) {
    ASSERT_FALSE(pair.ReadAvailable().empty());
  }
  EXPECT_EQ(total.load(), 0u);
}

TEST(SocketQueueTest, WritesAtOnceWhileTheSocketTakesThem) {
  SocketPair pair;
  SocketQueue queue;
  EXPECT_EQ(queue.Write(pair.writer(), Numbered(1)), SocketQueue::Result::kWritten);
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.bytes(), 0u);
  EXPECT_EQ(pair.ReadAvailable(), std::string(Numbered(1)->bytes()));
}

TEST(SocketQueueTest, KeepsWhatAFullSocketRefusesAndDeliversAllInOrder) {
  SocketPair pair;
  SocketQueue queue;
  std::string expected;
  int i = 0;
  SocketQueue::Result result = SocketQueue::Result::kWritten;
  while (result == SocketQueue::Result::kWritten) {
    ChunkPtr chunk = Numbered(++i);
    expected += chunk->bytes();
    result = queue.Write(pair.writer(), chunk);
    ASSERT_LT(i, 100000) << "the socket never filled";
  }
  ASSERT_EQ(result, SocketQueue::Result::kBlocked);
  // Later chunks queue behind, even if the socket had room meanwhile.
  for (int k = 0; k < 10; ++k) {
    ChunkPtr chunk = Numbered(++i);
    expected += chunk->bytes();
    queue.Write(pair.writer(), chunk);
  }
  EXPECT_GT(queue.bytes(), 10 * Numbered(0)->bytes().size() - 1);

  std::string received;
  for (int round = 0; round < 10000 && !queue.empty(); ++round) {
    received += pair.ReadAvailable();
    queue.Flush(pair.writer());
  }
  received += pair.ReadAvailable();
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.bytes(), 0u);
  EXPECT_EQ(received, expected);
}

TEST(SocketQueueTest, TakeRestReturnsExactlyTheUnwrittenBytes) {
  SocketPair pair;
  SocketQueue queue;
  const ChunkPtr big = MakeChunk(std::string(200000, 'b'));  // larger than the buffers
  EXPECT_EQ(queue.Write(pair.writer(), big), SocketQueue::Result::kBlocked);
  const ChunkPtr small = Numbered(7);
  queue.Write(pair.writer(), small);
  const std::size_t left = queue.bytes();
  const std::string received = pair.ReadAvailable();
  const std::string rest = queue.TakeRest();
  EXPECT_EQ(rest.size(), left);
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(received + rest, std::string(big->bytes()) + std::string(small->bytes()));
}

TEST(SocketQueueTest, PushWaitsForTheFirstFlush) {
  SocketPair pair;
  SocketQueue queue;
  queue.Push(Numbered(1));
  queue.Push(Numbered(2));
  EXPECT_EQ(pair.ReadAvailable(), "");
  EXPECT_EQ(queue.Flush(pair.writer()), SocketQueue::Result::kWritten);
  EXPECT_EQ(pair.ReadAvailable(),
            std::string(Numbered(1)->bytes()) + std::string(Numbered(2)->bytes()));
}

TEST(SocketQueueTest, AGoneClientIsBrokenWithoutASignal) {
  SocketPair pair;
  SocketQueue queue;
  pair.CloseReader();
  // MSG_NOSIGNAL: no SIGPIPE ends the test process here.
  EXPECT_EQ(queue.Write(pair.writer(), Numbered(1)), SocketQueue::Result::kBroken);
}

TEST(WritableWatcherTest, CallsBackWhenAFullSocketDrainsAndNotAfterForget) {
  SocketPair pair;
  SocketQueue queue;
  while (queue.Write(pair.writer(), Numbered(1)) == SocketQueue::Result::kWritten) {
  }
  WritableWatcher watcher;
  std::atomic<int> calls{0};
  // Edge-triggered: a call may come at once (the registration), none after
  // that until the reader makes room.
  const std::uint64_t id = watcher.Watch(pair.writer(), [&] { calls.fetch_add(1); });
  ASSERT_NE(id, 0u);
  std::this_thread::sleep_for(50ms);
  const int before = calls.load();
  EXPECT_LE(before, 1);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(calls.load(), before) << "called again while nothing changed";

  pair.ReadAvailable();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (calls.load() == before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GT(calls.load(), before) << "no call after the socket drained";

  watcher.Forget(id, pair.writer());
  while (queue.Flush(pair.writer()) == SocketQueue::Result::kWritten) {
    queue.Write(pair.writer(), Numbered(2));
  }
  const int after_forget = calls.load();
  pair.ReadAvailable();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls.load(), after_forget) << "called after Forget";
}

}  // namespace
}  // namespace quire::http
