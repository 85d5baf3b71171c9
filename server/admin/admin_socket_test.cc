#include "server/admin/admin_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace quire::admin {
namespace {

using namespace std::chrono_literals;

class AdminSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/quire-admin-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/admin.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static AdminSocket::Handler Echo() {
    return [](const std::string& line) { return "echo " + line; };
  }

  std::string Call(const std::string& request, CallOutcome* outcome = nullptr) {
    std::string response, error;
    const CallOutcome got = CallAdminSocket(path_, request, 5s, &response, &error);
    if (outcome) *outcome = got;
    return got == CallOutcome::kAnswered ? response : error;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(AdminSocketTest, AnswersOneLineAndRemovesItsFile) {
  {
    AdminSocket socket(path_, Echo());
    std::string error;
    ASSERT_TRUE(socket.Start(&error)) << error;
    struct stat info {};
    ASSERT_EQ(stat(path_.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0600u) << "only the server's user may connect";
    EXPECT_EQ(Call("hello"), "echo hello");
    EXPECT_EQ(Call("again"), "echo again");
  }
  EXPECT_FALSE(std::filesystem::exists(path_)) << "the socket file outlived its server";
  CallOutcome outcome;
  Call("anyone?", &outcome);
  EXPECT_EQ(outcome, CallOutcome::kNoServer);
}

TEST_F(AdminSocketTest, ASilentClientHoldsTheSocketOnlyUntilItsTimeout) {
  AdminSocket socket(path_, Echo(), 300ms);
  std::string error;
  ASSERT_TRUE(socket.Start(&error)) << error;
  // Connects and sends nothing.
  const int silent = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, path_.c_str());
  ASSERT_EQ(connect(silent, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Call("next"), "echo next");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  close(silent);
}

TEST_F(AdminSocketTest, ReplacesAStaleSocketButNotALiveOne) {
  {
    // A socket file nobody listens on, as a killed server leaves it.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path_.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    close(fd);
  }
  AdminSocket first(path_, Echo());
  std::string error;
  ASSERT_TRUE(first.Start(&error)) << error;
  AdminSocket second(path_, Echo());
  EXPECT_FALSE(second.Start(&error));
  EXPECT_NE(error.find("another server"), std::string::npos) << error;
  EXPECT_EQ(Call("still"), "echo still") << "the second server took the first one's socket";
}

TEST_F(AdminSocketTest, RefusesAPathThatIsNotASocket) {
  {
    std::FILE* f = std::fopen(path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  AdminSocket socket(path_, Echo());
  std::string error;
  EXPECT_FALSE(socket.Start(&error));
  EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
  EXPECT_TRUE(std::filesystem::exists(path_)) << "a file that is not a socket was removed";
}

}  // namespace
}  // namespace quire::admin
