// quire admin, run as an operator runs it, on the backend under test: with
// the server running it asks the server through its admin socket, and the
// user's cookies and open streams end at once; with the server stopped it
// acts on the database itself. reset-password (printed or from stdin),
// logout-all, invite, an unknown user, and bad usage.
#include <sys/stat.h>

#include <filesystem>
#include <regex>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

constexpr auto kCommandTimeout = 60s;

// Exited 0 with one line on stdout and nothing on stderr; *line is that line.
::testing::AssertionResult PrintedOneLine(const RunResult& r, std::string* line = nullptr) {
  std::string out = r.out;
  if (!out.empty() && out.back() == '\n') out.pop_back();
  if (r.status.exited && r.status.signal == 0 && r.status.code == 0 && !out.empty() &&
      out.find('\n') == std::string::npos && r.err.empty()) {
    if (line) *line = out;
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "quire admin " << r.status.Describe() << "\n  stderr: ["
                                       << r.err << "]\n  stdout: [" << r.out << "]";
}

// Exited with `code`, one line on stderr containing `text`, nothing on stdout.
::testing::AssertionResult FailedWith(const RunResult& r, int code, const std::string& text) {
  std::string err = r.err;
  if (!err.empty() && err.back() == '\n') err.pop_back();
  if (r.status.exited && r.status.signal == 0 && r.status.code == code && r.out.empty() &&
      err.find('\n') == std::string::npos && err.find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected exit " << code << " and one line on stderr naming '" << text
         << "'; quire admin " << r.status.Describe() << "\n  stderr: [" << r.err << "]\n  stdout: ["
         << r.out << "]";
}

// The last word of a line (where reset-password puts the new password).
std::string LastWord(const std::string& line) {
  return line.substr(line.find_last_of(' ') + 1);
}

// The invitation id in a line of `quire admin invite`.
std::string InvitationId(const std::string& line) {
  std::smatch match;
  static const std::regex kId("I[0-9a-z]{15}");
  return std::regex_search(line, match, kId) ? match.str() : "";
}

long BootStatusOf(Client& client) {
  return client.get("/api/boot").status;
}

class AdminTest : public ApiTest {
 protected:
  std::string SocketPath() const { return database_->dir() + "/admin.sock"; }

  std::vector<std::string> ServerArgs() const override { return {"--admin-socket", SocketPath()}; }

  // `quire admin ARGS...` for this test's server and database.
  RunResult Admin(std::vector<std::string> args, const std::optional<std::string>& input = {}) {
    std::vector<std::string> all = {"admin", "--socket", SocketPath(), "--database-url",
                                    database().url()};
    all.insert(all.end(), args.begin(), args.end());
    return input ? RunQuireWithInput(all, *input, kCommandTimeout) : RunQuire(all, kCommandTimeout);
  }

  long LogInStatus(const std::string& name, const std::string& password) {
    Client c = NewClient();
    return c.post("/api/auth/login", {{"name", name}, {"password", password}}).status;
  }

  long BootStatus(Client& client) { return BootStatusOf(client); }
};

TEST_F(AdminTest, ResetPasswordThroughTheRunningServer) {
  Client alice = Setup("alice", "owner pass");
  Client bob = Invite(alice, "bob", "old pass");
  auto bob_stream = OpenStream(bob, 0);
  auto alice_stream = OpenStream(alice, 0);
  ASSERT_TRUE(bob_stream->WaitForHeaders());
  ASSERT_TRUE(alice_stream->WaitForHeaders());
  EXPECT_EQ(bob_stream->status(), 200);

  struct stat info {};
  ASSERT_EQ(stat(SocketPath().c_str(), &info), 0) << "no admin socket at " << SocketPath();
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0600u) << "the admin socket must be the server user's alone";

  RunResult r = Admin({"reset-password", "bob"});
  std::string line;
  ASSERT_TRUE(PrintedOneLine(r, &line));
  const std::string password = LastWord(line);
  EXPECT_GE(password.size(), 20u) << line;
  EXPECT_TRUE(bob_stream->WaitForEnd(10s)) << "bob's open stream did not end";
  EXPECT_EQ(BootStatus(bob), 401) << "bob's old cookie still works";
  EXPECT_EQ(LogInStatus("bob", "old pass"), 401);
  EXPECT_EQ(LogInStatus("bob", password), 200) << "the printed password does not log in";
  // Alice is not touched.
  EXPECT_FALSE(alice_stream->ended()) << "another user's stream ended";
  EXPECT_EQ(BootStatus(alice), 200);

  // Every call makes a new password.
  RunResult again = Admin({"reset-password", "bob"});
  ASSERT_TRUE(PrintedOneLine(again, &line));
  EXPECT_NE(LastWord(line), password);
}

TEST_F(AdminTest, ResetPasswordFromStdin) {
  Client alice = Setup("alice", "owner pass");
  auto stream = OpenStream(alice, 0);
  ASSERT_TRUE(stream->WaitForHeaders());
  ASSERT_TRUE(PrintedOneLine(
      Admin({"reset-password", "alice", "--password-stdin"}, "  a new one, with spaces\n")));
  EXPECT_TRUE(stream->WaitForEnd(10s)) << "alice's open stream did not end";
  EXPECT_EQ(BootStatus(alice), 401);
  EXPECT_EQ(LogInStatus("alice", "owner pass"), 401);
  EXPECT_EQ(LogInStatus("ALICE", "  a new one, with spaces"), 200);
  // The API's rules for a new password apply.
  EXPECT_TRUE(FailedWith(Admin({"reset-password", "alice", "--password-stdin"}, "\n"), 1,
                         "password must not be empty"));
  EXPECT_TRUE(FailedWith(
      Admin({"reset-password", "alice", "--password-stdin"}, std::string(5000, 'x') + "\n"), 1,
      "password is too long"));
  EXPECT_EQ(LogInStatus("alice", "  a new one, with spaces"), 200);
}

TEST_F(AdminTest, LogoutAllKeepsThePassword) {
  Client alice = Setup("alice", "owner pass");
  Client bob = Invite(alice, "bob", "bob pass");
  Client bob_again = NewClient();
  ASSERT_EQ(bob_again.post("/api/auth/login", {{"name", "bob"}, {"password", "bob pass"}}).status,
            200);
  auto stream = OpenStream(bob, 0);
  auto other = OpenStream(bob_again, 0);
  auto alice_stream = OpenStream(alice, 0);
  ASSERT_TRUE(stream->WaitForHeaders());
  ASSERT_TRUE(other->WaitForHeaders());
  ASSERT_TRUE(alice_stream->WaitForHeaders());

  std::string line;
  ASSERT_TRUE(PrintedOneLine(Admin({"logout-all", "bob"}), &line));
  EXPECT_TRUE(stream->WaitForEnd(10s)) << "bob's stream did not end";
  EXPECT_TRUE(other->WaitForEnd(10s)) << "the stream of bob's second session did not end";
  EXPECT_EQ(BootStatus(bob), 401);
  EXPECT_EQ(BootStatus(bob_again), 401);
  EXPECT_EQ(LogInStatus("bob", "bob pass"), 200) << "logout-all changed the password";
  EXPECT_FALSE(alice_stream->ended());
  EXPECT_EQ(BootStatus(alice), 200);
}

TEST_F(AdminTest, InviteIsAcceptedThroughTheApi) {
  EXPECT_TRUE(FailedWith(Admin({"invite"}), 1, "setup"));
  Client alice = Setup("alice", "owner pass");
  Client bob = Invite(alice, "bob", "bob pass");
  std::string line;
  ASSERT_TRUE(PrintedOneLine(Admin({"invite"}), &line));
  const std::string id = InvitationId(line);
  ASSERT_FALSE(id.empty()) << line;
  EXPECT_NE(line.find("/invite/" + id), std::string::npos) << "no link path in: " << line;
  Response seen = NewClient().get("/api/invite/" + id);
  ASSERT_TRUE(HasStatus(seen, 200));
  EXPECT_EQ(Str(seen.json(), "issuer"), "alice") << "the owner issues by default";
  Client carol = NewClient();
  ASSERT_TRUE(
      HasStatus(carol.post("/api/invite/" + id, {{"name", "carol"}, {"password", "pw"}}), 200));
  EXPECT_EQ(BootStatus(carol), 200);

  // This server was started without --public-url: the command's makes the link.
  ASSERT_TRUE(PrintedOneLine(
      Admin({"invite", "--as", "bob", "--public-url", "https://chat.example.org/"}), &line));
  const std::string by_bob = InvitationId(line);
  EXPECT_EQ(line, "https://chat.example.org/invite/" + by_bob);
  Response issued = NewClient().get("/api/invite/" + by_bob);
  ASSERT_TRUE(HasStatus(issued, 200));
  EXPECT_EQ(Str(issued.json(), "issuer"), "bob");
  EXPECT_TRUE(FailedWith(Admin({"invite", "--as", "nobody"}), 1, "no user nobody"));
}

// A server started with --public-url links its invitations with it.
class AdminPublicUrlTest : public AdminTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--admin-socket", SocketPath(), "--public-url", "https://chat.example.org"};
  }
};

TEST_F(AdminPublicUrlTest, InviteLinksWithTheServersPublicUrl) {
  Setup("alice", "owner pass");
  std::string line;
  ASSERT_TRUE(PrintedOneLine(Admin({"invite"}), &line));
  const std::string id = InvitationId(line);
  EXPECT_EQ(line, "https://chat.example.org/invite/" + id);
  EXPECT_TRUE(HasStatus(NewClient().get("/api/invite/" + id), 200));
}

TEST_F(AdminTest, UnknownUserAndBadUsage) {
  Setup("alice", "owner pass");
  EXPECT_TRUE(FailedWith(Admin({"reset-password", "nobody"}), 1, "no user nobody"));
  EXPECT_TRUE(FailedWith(Admin({"logout-all", "nobody"}), 1, "no user nobody"));
  EXPECT_TRUE(FailedWith(Admin({"reset-password"}), 2, "NAME"));
  EXPECT_TRUE(FailedWith(Admin({"rename", "alice"}), 2, "subcommand"));
  EXPECT_TRUE(FailedWith(RunQuire({"admin"}, kCommandTimeout), 2, "admin"));
}

// The same three commands with the server stopped: on the database itself.
TEST_F(AdminTest, WithTheServerStopped) {
  Client alice = Setup("alice", "owner pass");
  Client bob = Invite(alice, "bob", "bob pass");
  ASSERT_TRUE(server().Stop());
  EXPECT_FALSE(std::filesystem::exists(SocketPath())) << "the admin socket outlived its server";

  std::string line;
  ASSERT_TRUE(PrintedOneLine(Admin({"reset-password", "alice"}), &line));
  const std::string password = LastWord(line);
  ASSERT_TRUE(PrintedOneLine(Admin({"logout-all", "bob"})));
  ASSERT_TRUE(PrintedOneLine(Admin({"invite", "--public-url", "https://chat.example.org"}), &line));
  const std::string id = InvitationId(line);
  EXPECT_EQ(line, "https://chat.example.org/invite/" + id);
  EXPECT_TRUE(FailedWith(Admin({"logout-all", "nobody"}), 1, "no user nobody"));

  ASSERT_TRUE(server().Restart());
  alice.set_base_url(server().base_url());
  bob.set_base_url(server().base_url());
  EXPECT_EQ(BootStatus(alice), 401) << "a reset left alice's session";
  EXPECT_EQ(BootStatus(bob), 401) << "logout-all left bob's session";
  EXPECT_EQ(LogInStatus("alice", "owner pass"), 401);
  EXPECT_EQ(LogInStatus("alice", password), 200);
  EXPECT_EQ(LogInStatus("bob", "bob pass"), 200);
  Client carol = NewClient();
  EXPECT_TRUE(
      HasStatus(carol.post("/api/invite/" + id, {{"name", "carol"}, {"password", "pw"}}), 200));
}

// Without --admin-socket: beside a SQLite or LMDB database, so `quire admin`
// given the same database finds the server; none on PostgreSQL, where
// `quire admin` then finds the database served and says so.
class AdminDefaultSocketTest : public ApiTest {};

TEST_F(AdminDefaultSocketTest, FoundFromTheDatabaseUrl) {
  Client alice = Setup("alice", "owner pass");
  auto stream = OpenStream(alice, 0);
  ASSERT_TRUE(stream->WaitForHeaders());
  RunResult r = RunQuire({"admin", "logout-all", "alice"}, kCommandTimeout,
                         {"QUIRE_DATABASE_URL=" + database().url()});
  if (Backend() == "postgres") {
    EXPECT_TRUE(FailedWith(r, 1, "cannot open database"));
    EXPECT_EQ(BootStatusOf(alice), 200) << "a refused command changed something";
    return;
  }
  ASSERT_TRUE(PrintedOneLine(r));
  EXPECT_TRUE(stream->WaitForEnd(10s)) << "the server did not end the stream";
  EXPECT_EQ(BootStatusOf(alice), 401);
}

}  // namespace
}  // namespace quire::apitest
