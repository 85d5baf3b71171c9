// The command line: bad options and unusable databases give one line on
// stderr and a non-zero exit; options also come from the environment.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/api/harness.h"
#include "tests/support/scratch_postgres.h"

namespace quire::apitest {
namespace {

// The run failed the way the spec wants: exited (no signal, no hang) non-zero,
// with exactly one non-empty line on stderr, and never said it was listening.
::testing::AssertionResult FailsWithOneLine(const RunResult& r) {
  auto describe = [&] {
    return "\n  status: " + r.status.Describe() + "\n  stderr: [" + r.err + "]\n  stdout: [" +
           r.out + "]";
  };
  if (!r.status.exited)
    return ::testing::AssertionFailure() << "quire did not exit within the timeout" << describe();
  if (r.status.signal) return ::testing::AssertionFailure() << "quire crashed" << describe();
  if (r.status.code == 0) return ::testing::AssertionFailure() << "quire exited 0" << describe();
  std::string err = r.err;
  if (!err.empty() && err.back() == '\n') err.pop_back();
  if (err.empty() || err.find('\n') != std::string::npos)
    return ::testing::AssertionFailure() << "expected exactly one line on stderr" << describe();
  if (r.out.find("quire listening on") != std::string::npos)
    return ::testing::AssertionFailure() << "it said it was listening" << describe();
  return ::testing::AssertionSuccess();
}

std::vector<std::string> Serve(const std::string& url, std::vector<std::string> more) {
  std::vector<std::string> args = {"serve", "--database-url", url, "--port", "0"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    database_ = TestDatabase::Create(&reason);
    if (!database_) GTEST_FAIL() << "no test database: " << reason;
  }
  std::unique_ptr<TestDatabase> database_;
};

// "quire 0.1.0 (commit 1a2b3c4)\n": the project version, and the commit as 7+
// lower-case hex digits with an optional "-dirty", or "unknown".
::testing::AssertionResult IsVersionLine(const std::string& out) {
  const std::string prefix = std::string("quire ") + QUIRE_PROJECT_VERSION + " (commit ";
  const std::string suffix = ")\n";
  if (out.size() < prefix.size() + suffix.size() || out.rfind(prefix, 0) != 0 ||
      out.compare(out.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return ::testing::AssertionFailure()
           << "expected \"" << prefix << "...)\\n\", got [" << out << "]";
  }
  std::string commit = out.substr(prefix.size(), out.size() - prefix.size() - suffix.size());
  if (commit == "unknown") return ::testing::AssertionSuccess();
  const std::string dirty = "-dirty";
  if (commit.size() > dirty.size() &&
      commit.compare(commit.size() - dirty.size(), dirty.size(), dirty) == 0) {
    commit.resize(commit.size() - dirty.size());
  }
  const bool hex = std::all_of(commit.begin(), commit.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
  if (!hex || commit.size() < 7 || commit.size() > 40) {
    return ::testing::AssertionFailure() << "not a commit: [" << commit << "] in [" << out << "]";
  }
  return ::testing::AssertionSuccess();
}

TEST_F(CliTest, Version) {
  // Alone, although every other use needs a subcommand.
  RunResult r = RunQuire({"--version"}, 10s);
  ASSERT_TRUE(r.status.exited && !r.status.signal) << r.status.Describe();
  EXPECT_EQ(r.status.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(IsVersionLine(r.out));
  // The same line wherever it stands before the subcommand; --help lists it.
  RunResult before = RunQuire({"--version", "serve", "--port", "0"}, 10s);
  EXPECT_TRUE(before.status.exited && before.status.code == 0) << before.status.Describe();
  EXPECT_EQ(before.out, r.out);
  RunResult help = RunQuire({"--help"}, 10s);
  EXPECT_NE(help.out.find("--version"), std::string::npos) << help.out;
  // Without a subcommand nor --version it is still a usage error.
  EXPECT_TRUE(FailsWithOneLine(RunQuire({}, 10s)));
}

TEST_F(CliTest, BadOptions) {
  const std::string url = database_->url();
  const std::vector<std::vector<std::string>> cases = {
      Serve(url, {"--bogus"}),
      Serve(url, {"--bogus", "1"}),
      Serve(url, {"--heartbeat", "abc"}),
      Serve(url, {"--heartbeat", "-1"}),
      Serve(url, {"--message-ttl", "5x"}),
      Serve(url, {"--message-ttl", "abc"}),
      Serve(url, {"--message-ttl", ""}),
      Serve(url, {"--conversation-ttl", "-3d"}),
      Serve(url, {"--purge-after", "1.5.2h"}),
      Serve(url, {"--invite-ttl", "10 parsecs"}),
      Serve(url, {"--session-ttl", "s"}),
      Serve(url, {"--threads", "many"}),
      Serve(url, {"--message-ttl"}),
      {"serve", "--database-url", url, "--port", "70000"},
      {"serve", "--database-url", url, "--port", "http"},
      {"serve", "--database-url", url, "--port", "0", "--address", "not an address"},
      {"serve", "--database-url", "mysql://localhost/quire", "--port", "0"},
      {"serve", "--database-url", "", "--port", "0"},
      {"frobnicate"},
  };
  for (const auto& args : cases) {
    std::string line;
    for (const auto& a : args) line += " '" + a + "'";
    EXPECT_TRUE(FailsWithOneLine(RunQuire(args, 10s))) << "quire" << line;
  }
}

TEST_F(CliTest, UnusableSqliteDatabases) {
  if (Backend() != "sqlite") GTEST_SKIP() << "sqlite-specific";
  const std::string dir = database_->dir();
  // A file of garbage.
  {
    std::ofstream out(dir + "/garbage.db", std::ios::binary);
    std::string junk;
    for (int i = 0; i < 8192; ++i) junk += static_cast<char>((i * 7919 + 13) % 251);
    out << junk;
  }
  // Something that is not a file.
  std::filesystem::create_directory(dir + "/a-directory.db");
  const std::vector<std::string> urls = {
      "sqlite:" + dir + "/garbage.db",
      "sqlite:" + dir + "/a-directory.db",
      "sqlite:" + dir + "/no/such/folder/quire.db",
  };
  for (const auto& url : urls) {
    EXPECT_TRUE(FailsWithOneLine(RunQuire(Serve(url, {}), 10s))) << url;
  }
}

TEST_F(CliTest, UnreachablePostgres) {
  // Refused at once: nothing listens on port 1. The password never shows.
  for (const std::string scheme : {"postgresql", "postgres"}) {
    RunResult r = RunQuire(Serve(scheme + "://nobody:hunter2@127.0.0.1:1/quire", {}), 20s);
    EXPECT_TRUE(FailsWithOneLine(r)) << scheme;
    EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("***"), std::string::npos) << r.err;
  }
  // A server that is there, a database that is not.
  if (Backend() == "postgres") {
    std::string why;
    const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(&why);
    ASSERT_TRUE(admin.has_value()) << why;
    const std::string missing = quire::testing::WithDatabase(*admin, "quire_no_such_database");
    RunResult r = RunQuire(Serve(missing, {}), 20s);
    EXPECT_TRUE(FailsWithOneLine(r));
    EXPECT_NE(r.err.find("quire_no_such_database"), std::string::npos) << r.err;
  }
}

TEST_F(CliTest, ASecondServerOnOneLmdbDirectoryIsRefused) {
  if (Backend() != "lmdb") GTEST_SKIP() << "lmdb-specific: one process per LMDB directory";
  QuireProcess first(database_->url());
  ASSERT_TRUE(first.Start());
  RunResult second = RunQuire(Serve(database_->url(), {}), 20s);
  EXPECT_TRUE(FailsWithOneLine(second));
  EXPECT_NE(second.err.find("in use by another process"), std::string::npos) << second.err;
  // The first one is unharmed, and once it stops the directory opens again.
  Client c(first.base_url());
  EXPECT_TRUE(HasStatus(c.post("/api/setup", {{"name", "alice"}, {"password", "pw"}}), 200));
  ASSERT_TRUE(first.Stop());
  QuireProcess again(database_->url());
  ASSERT_TRUE(again.Start());
  Client d(again.base_url());
  EXPECT_TRUE(HasStatus(d.post("/api/auth/login", {{"name", "alice"}, {"password", "pw"}}), 200));
  EXPECT_TRUE(again.Stop());
}

TEST_F(CliTest, PortInUse) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int port = ntohs(addr.sin_port);
  RunResult r = RunQuire({"serve", "--database-url", database_->url(), "--address", "127.0.0.1",
                          "--port", std::to_string(port)},
                         10s);
  close(fd);
  EXPECT_TRUE(FailsWithOneLine(r)) << "port " << port;
}

TEST_F(CliTest, OptionsFromTheEnvironment) {
  QuireProcess server(
      "", {"--address", "127.0.0.1"},
      {"QUIRE_DATABASE_URL=" + database_->url(), "QUIRE_HEARTBEAT=7", "QUIRE_MESSAGE_TTL=1h"});
  ASSERT_TRUE(server.Start());
  Client c(server.base_url());
  ASSERT_TRUE(HasStatus(c.post("/api/setup", {{"name", "alice"}, {"password", "pw"}}), 200));
  Response boot = c.get("/api/boot");
  ASSERT_TRUE(HasStatus(boot, 200));
  EXPECT_EQ(boot.json()["heartbeat"], 7);
  EXPECT_TRUE(server.Stop());

  // The same database through the flag: the user is there.
  QuireProcess again(database_->url());
  ASSERT_TRUE(again.Start());
  Client d(again.base_url());
  EXPECT_TRUE(IsJsonError(d.post("/api/setup", {{"name", "bob"}, {"password", "pw"}}), 409));
  EXPECT_TRUE(HasStatus(d.post("/api/auth/login", {{"name", "alice"}, {"password", "pw"}}), 200));
  EXPECT_EQ(d.get("/api/boot").json()["heartbeat"], 30);
  EXPECT_TRUE(again.Stop());

  // A bad value from the environment is an error like a bad flag.
  EXPECT_TRUE(
      FailsWithOneLine(RunQuire(Serve(database_->url(), {}), 10s, {"QUIRE_HEARTBEAT=soon"})));
}

TEST_F(CliTest, ListeningLineAndAddress) {
  QuireProcess server(database_->url(), {"--address", "127.0.0.1", "--threads", "2"});
  ASSERT_TRUE(server.Start());
  EXPECT_EQ(server.host(), "127.0.0.1");
  EXPECT_GT(server.port(), 0);
  // Exactly one line on stdout.
  std::string out = server.stdout_text();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(out, "quire listening on http://127.0.0.1:" + std::to_string(server.port()) + "\n");
  EXPECT_TRUE(server.Stop());
}

}  // namespace
}  // namespace quire::apitest
