// Connections: idle keep-alive connections are closed after --idle-timeout,
// and at --max-connections the longest-idle ones make room for new ones
// (when none is idle, the new one is refused); open streams are neither.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

// One raw keep-alive connection.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Reads what arrives within `timeout`, until a full head and
  // Content-Length body (or, for a stream, the head).
  std::string ReadResponse(std::chrono::milliseconds timeout) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buffer[65536];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      got.append(buffer, static_cast<std::size_t>(n));
      const std::size_t end = got.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      const std::size_t cl = got.find("Content-Length: ");
      if (cl == std::string::npos || cl > end) return got;  // a stream's head
      const std::size_t length = std::stoul(got.substr(cl + 16));
      if (got.size() >= end + 4 + length) return got;
    }
    return got;
  }
  // True once the server closed the connection (EOF or reset) within `timeout`.
  bool ClosedWithin(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buffer[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n <= 0) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class ConnectionsTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--max-connections", "10", "--idle-timeout", "2"};
  }
  std::string BootRequest(const Client& c) {
    return "GET /api/boot HTTP/1.1\r\nHost: localhost\r\nCookie: identity=" + *c.token() +
           "\r\n\r\n";
  }
};

TEST_F(ConnectionsTest, IdleKeepAliveConnectionsAreClosedButStreamsStay) {
  Client owner = Setup();
  const std::int64_t start = Boot(owner)["resume_point"].get<std::int64_t>();
  auto stream = OpenStream(owner, start);
  ASSERT_TRUE(stream->WaitForHeaders());
  RawConnection idle(server().port());
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(idle.Send(BootRequest(owner)));
  ASSERT_EQ(idle.ReadResponse(5s).rfind("HTTP/1.1 200", 0), 0u);
  // Idle for 2 s: closed (the reaper looks every 0.2 s).
  EXPECT_TRUE(idle.ClosedWithin(6s)) << "an idle keep-alive connection stayed open";
  // The stream, older than that, is not idle.
  EXPECT_FALSE(stream->ended());
  CreateConversation(owner, "still streaming");
  EXPECT_TRUE(stream->WaitForEvents(1, 10s));
}

TEST_F(ConnectionsTest, AtTheLimitTheLongestIdleMakeRoomAndBusyOnesStay) {
  Client owner = Setup();
  const std::int64_t start = Boot(owner)["resume_point"].get<std::int64_t>();
  // The fixture's own client holds a connection; fill the rest with idle ones.
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 9; ++i) {
    idle.push_back(std::make_unique<RawConnection>(server().port()));
    ASSERT_TRUE(idle.back()->Send(BootRequest(owner)));
    ASSERT_EQ(idle.back()->ReadResponse(5s).rfind("HTTP/1.1 200", 0), 0u) << "connection " << i;
  }
  // One more: the longest idle (the fixture's client, then the first raw one)
  // makes room, and the newcomer is answered.
  RawConnection late(server().port());
  ASSERT_TRUE(late.Send(BootRequest(owner)));
  EXPECT_EQ(late.ReadResponse(5s).rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_TRUE(idle.front()->ClosedWithin(3s) || idle[1]->ClosedWithin(1s))
      << "no idle connection was closed to make room";

  // Now only streams: ten of them, then an eleventh connection is refused
  // and every stream goes on.
  idle.clear();
  std::vector<std::unique_ptr<RawConnection>> streams;
  const std::string open = "GET /api/events?resume_point=" + std::to_string(start) +
                           " HTTP/1.1\r\nHost: localhost\r\nCookie: identity=" + *owner.token() +
                           "\r\n\r\n";
  for (int i = 0; i < 10; ++i) {
    streams.push_back(std::make_unique<RawConnection>(server().port()));
    ASSERT_TRUE(streams.back()->Send(open));
    ASSERT_EQ(streams.back()->ReadResponse(5s).rfind("HTTP/1.1 200", 0), 0u) << "stream " << i;
  }
  RawConnection refused(server().port());
  refused.Send(BootRequest(owner));
  EXPECT_TRUE(refused.ClosedWithin(5s)) << "an eleventh connection was kept";
  for (auto& s : streams) EXPECT_FALSE(s->ClosedWithin(10ms));
}

}  // namespace
}  // namespace quire::apitest
