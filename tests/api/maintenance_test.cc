// quire migrate, backup, restore and check, run as an operator runs them,
// against the database of the backend under test and the real server:
// a migration round trip through every backend keeps logins, history and
// resume points; a served store is refused; an interrupted migration runs
// again; a backup taken while writes go on restores with a break in
// history, and a resume point of the lost timeline gets 410; check finds
// damage planted with SQL.
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <regex>
#include <thread>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

constexpr auto kCommandTimeout = 120s;

// The run ended with exit code 0.
::testing::AssertionResult Succeeded(const RunResult& r) {
  if (r.status.exited && r.status.signal == 0 && r.status.code == 0) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "quire " << r.status.Describe() << "\n  stderr: ["
                                       << r.err << "]\n  stdout: [" << r.out << "]";
}

// Exited non-zero with one line on stderr containing `text`.
::testing::AssertionResult RefusedWith(const RunResult& r, const std::string& text) {
  std::string err = r.err;
  if (!err.empty() && err.back() == '\n') err.pop_back();
  if (r.status.exited && r.status.signal == 0 && r.status.code != 0 &&
      err.find('\n') == std::string::npos && err.find(text) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected a one-line refusal naming '" << text << "'; quire " << r.status.Describe()
         << "\n  stderr: [" << r.err << "]\n  stdout: [" << r.out << "]";
}

// A new, empty database of `backend` in `dir` ("" when that backend cannot
// be had here: PostgreSQL without QUIRE_TEST_POSTGRES_URL).
std::string NewDatabase(const std::string& backend, const std::string& dir, int n) {
  const std::string name = dir + "/" + backend + "-" + std::to_string(n);
  if (backend == "sqlite") return "sqlite:" + name + ".db";
  if (backend == "lmdb") {
    std::filesystem::create_directories(name);
    return "lmdb:" + name;
  }
  std::string why;
  return FreshPostgresDatabaseUrl(&why).value_or("");
}

class MaintenanceTest : public ApiTest {
 protected:
  // A history with every kind of event, unicode names, an idempotency key,
  // a deleted message and a deleted conversation; returns alice's client.
  Client MakeHistory() {
    Client alice = Setup("alice", "alice pass");
    Client zoe = Invite(alice, "zo\u00eb", "zo\u00eb pass");
    const std::string office = CreateConversation(alice, "B\u00fcro \u65e5\u672c");
    const std::string gone = CreateConversation(zoe, "to be deleted");
    SendMessage(alice, office, "gr\u00fc\u00df dich");
    const Json kept = SendMessage(zoe, office, "keyed", {{"Idempotency-Key", "k-1"}});
    const Json deleted = SendMessage(alice, office, "deleted soon");
    EXPECT_TRUE(HasStatus(alice.del("/api/messages/" + Str(deleted, "id")), 202));
    EXPECT_TRUE(HasStatus(zoe.del("/api/conversations/" + gone), 202));
    for (int i = 0; i < 20; ++i) SendMessage(zoe, office, "message " + std::to_string(i));
    office_ = office;
    keyed_id_ = Str(kept, "id");
    return alice;
  }

  std::string office_, keyed_id_;
};

TEST_F(MaintenanceTest, AMigrationThroughEveryBackendAndBackKeepsLoginsHistoryAndResumePoints) {
  Client alice = MakeHistory();
  const Json before = Boot(alice);
  const std::int64_t head = before["resume_point"].get<std::int64_t>();
  ASSERT_TRUE(server().Stop());

  int n = 0;
  for (const std::string other : {"sqlite", "lmdb", "postgres"}) {
    SCOPED_TRACE(Backend() + " -> " + other + " -> " + Backend());
    const std::string there = NewDatabase(other, database().dir(), ++n);
    if (there.empty()) continue;  // no PostgreSQL here
    RunResult out =
        RunQuire({"migrate", "--from", database().url(), "--to", there}, kCommandTimeout);
    ASSERT_TRUE(Succeeded(out));
    EXPECT_NE(out.out.find("verified"), std::string::npos) << out.out;
    ASSERT_TRUE(Succeeded(RunQuire({"check", "--database-url", there}, kCommandTimeout)));

    // And back, into a new database of the backend under test, which the
    // server then serves.
    std::string why;
    std::unique_ptr<TestDatabase> back = TestDatabase::Create(&why);
    ASSERT_TRUE(back) << why;
    ASSERT_TRUE(
        Succeeded(RunQuire({"migrate", "--from", there, "--to", back->url()}, kCommandTimeout)));
    QuireProcess served(back->url());
    ASSERT_TRUE(served.Start());
    alice.set_base_url(served.base_url());
    const Json after = Boot(alice);  // the same login cookie
    EXPECT_EQ(after["resume_point"], before["resume_point"]);
    EXPECT_EQ(after["events"], before["events"]);
    Client zoe(served.base_url());
    EXPECT_TRUE(HasStatus(
        zoe.post("/api/auth/login", {{"name", "zo\u00eb"}, {"password", "zo\u00eb pass"}}), 200));
    // The idempotency record came along: the replay answers the same message.
    const Json replay = SendMessage(zoe, office_, "keyed", {{"Idempotency-Key", "k-1"}});
    EXPECT_EQ(Str(replay, "id"), keyed_id_);
    // A stream from an old resume point continues exactly after it.
    auto stream = OpenStream(alice, head - 5);
    ASSERT_TRUE(stream->WaitForEvents(5));
    EXPECT_EQ(stream->events().front().id, head - 4);
    SendMessage(alice, office_, "after the move");
    ASSERT_TRUE(stream->WaitForEvents(6));
    EXPECT_EQ(stream->events()[5].id, head + 1) << "the next sequence follows the copied head";
    stream.reset();
    ASSERT_TRUE(served.Stop());
  }
}

TEST_F(MaintenanceTest, AServedDatabaseIsNeitherMigratedNorChecked) {
  MakeHistory();
  const std::string target = NewDatabase("sqlite", database().dir(), 1);
  EXPECT_TRUE(RefusedWith(
      RunQuire({"migrate", "--from", database().url(), "--to", target}, kCommandTimeout),
      "in use by a running quire server"));
  EXPECT_TRUE(RefusedWith(RunQuire({"check", "--database-url", database().url()}, kCommandTimeout),
                          "in use by a running quire server"));
  EXPECT_TRUE(RefusedWith(
      RunQuire({"restore", "--mark", "--database-url", database().url()}, kCommandTimeout),
      "in use by a running quire server"));
  // The server went on undisturbed.
  Client c = NewClient();
  EXPECT_TRUE(HasStatus(c.get("/api/boot"), 401));
}

TEST_F(MaintenanceTest, ANonEmptyTargetIsRefusedUnlessForced) {
  MakeHistory();
  ASSERT_TRUE(server().Stop());
  const std::string target = NewDatabase("sqlite", database().dir(), 1);
  ASSERT_TRUE(Succeeded(
      RunQuire({"migrate", "--from", database().url(), "--to", target}, kCommandTimeout)));
  EXPECT_TRUE(RefusedWith(
      RunQuire({"migrate", "--from", database().url(), "--to", target}, kCommandTimeout),
      "--force"));
  EXPECT_TRUE(Succeeded(RunQuire({"migrate", "--from", database().url(), "--to", target, "--force"},
                                 kCommandTimeout)));
  EXPECT_TRUE(
      RefusedWith(RunQuire({"migrate", "--from", database().dir() + "/none.db", "--to", target},
                           kCommandTimeout),
                  "none.db"));
}

// How many messages the SQLite database at `path` holds (-1 when unreadable).
int CountMessages(const std::string& path) {
  sqlite3* db = nullptr;
  int count = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 1);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      count = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return count;
}

TEST_F(MaintenanceTest, AnInterruptedMigrationRunsAgain) {
  Client alice = MakeHistory();
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      Client c(server().base_url());
      c.set_token(alice.token());
      for (int i = 0; i < 300; ++i) {
        c.post("/api/conversations/" + office_,
               {{"body", std::to_string(t) + "/" + std::to_string(i)}});
      }
    });
  }
  for (std::thread& t : senders) t.join();
  ASSERT_TRUE(server().Stop());

  const std::string path = database().dir() + "/target.db";
  const std::vector<std::string> migrate = {
      "migrate", "--from", database().url(), "--to", "sqlite:" + path, "--batch", "1"};
  // Killed as soon as the first messages are in: a transaction per row.
  RunResult cut = RunQuireUntil(migrate, kCommandTimeout, [&] { return CountMessages(path) > 0; });
  ASSERT_EQ(cut.status.signal, SIGKILL) << cut.status.Describe() << " " << cut.err;
  ASSERT_LT(CountMessages(path), 1200) << "the copy had finished";

  RunResult again = RunQuire(migrate, kCommandTimeout);
  ASSERT_TRUE(Succeeded(again));
  EXPECT_NE(again.err.find("unfinished copy; starting over"), std::string::npos) << again.err;
  EXPECT_TRUE(Succeeded(RunQuire({"check", "--database-url", "sqlite:" + path}, kCommandTimeout)));
}

TEST_F(MaintenanceTest, ABackupTakenWhileWritesGoOnRestoresWithABreakInHistory) {
  Client alice = MakeHistory();
  const std::string backup = database().dir() + "/backup";
  if (Backend() == "postgres") {
    EXPECT_TRUE(RefusedWith(
        RunQuire({"backup", "--database-url", database().url(), "--to", backup}, kCommandTimeout),
        "pg_dump"));
    return;  // restore --mark, below, is PostgreSQL's restore
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    Client c(server().base_url());
    c.set_token(alice.token());
    for (int i = 0; !stop; ++i)
      c.post("/api/conversations/" + office_, {{"body", "w" + std::to_string(i)}});
  });
  RunResult taken =
      RunQuire({"backup", "--database-url", database().url(), "--to", backup}, kCommandTimeout);
  std::smatch m;
  const bool printed = std::regex_search(taken.out, m, std::regex("last_seq ([0-9]+)"));
  const std::int64_t backup_last = printed ? std::stoll(m[1]) : 0;
  // The lost timeline: writes committed after the backup. Waited for rather
  // than slept for: under ThreadSanitizer 200 ms once held none.
  std::int64_t lost_last = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (printed && std::chrono::steady_clock::now() < deadline) {
    lost_last = Boot(alice)["resume_point"].get<std::int64_t>();
    if (lost_last > backup_last) break;
    std::this_thread::sleep_for(50ms);
  }
  stop = true;
  writer.join();
  ASSERT_TRUE(Succeeded(taken));
  ASSERT_TRUE(printed) << taken.out;
  lost_last = Boot(alice)["resume_point"].get<std::int64_t>();
  ASSERT_GT(lost_last, backup_last) << "writes went on after the backup";
  ASSERT_TRUE(server().Stop());

  RunResult restored =
      RunQuire({"restore", "--from", backup, "--database-url", database().url()}, kCommandTimeout);
  ASSERT_TRUE(Succeeded(restored));
  ASSERT_TRUE(Succeeded(RunQuire({"check", "--database-url", database().url()}, kCommandTimeout)));
  ASSERT_TRUE(server().Restart());
  alice.set_base_url(server().base_url());

  const Json boot = Boot(alice);
  const std::int64_t resumed = boot["resume_point"].get<std::int64_t>();
  EXPECT_GT(resumed, lost_last + 1'000'000) << "far above anything the lost timeline used";

  // A client that saw the lost events: 410, boot again.
  for (std::int64_t seen : {backup_last + 1, lost_last}) {
    auto stream = OpenStream(alice, seen);
    ASSERT_TRUE(stream->WaitForEnd());
    EXPECT_EQ(stream->status(), 410) << seen;
  }
  // One that stopped before the backup point continues, into the new timeline.
  auto stream = OpenStream(alice, backup_last - 2);
  ASSERT_TRUE(stream->WaitForEvents(2));
  EXPECT_EQ(stream->status(), 200);
  EXPECT_EQ(stream->events()[1].id, backup_last) << "the history ends where the backup was taken";
  SendMessage(alice, office_, "after the restore");
  ASSERT_TRUE(stream->WaitForEvents(3));
  EXPECT_EQ(stream->events()[2].id, resumed + 1);
}

TEST_F(MaintenanceTest, MarkingABreakOnADatabaseRestoredByOtherMeans) {
  Client alice = MakeHistory();
  const std::int64_t last = Boot(alice)["resume_point"].get<std::int64_t>();
  ASSERT_TRUE(server().Stop());
  RunResult marked =
      RunQuire({"restore", "--mark", "--database-url", database().url()}, kCommandTimeout);
  ASSERT_TRUE(Succeeded(marked));
  ASSERT_TRUE(server().Restart());
  alice.set_base_url(server().base_url());
  EXPECT_GT(Boot(alice)["resume_point"].get<std::int64_t>(), last + 1'000'000);
  auto lost = OpenStream(alice, last + 3);
  ASSERT_TRUE(lost->WaitForEnd());
  EXPECT_EQ(lost->status(), 410);
  auto kept = OpenStream(alice, last);
  ASSERT_TRUE(kept->WaitForHeaders());
  EXPECT_EQ(kept->status(), 200);
}

TEST_F(MaintenanceTest, CheckFindsDamagePlantedWithSql) {
  MakeHistory();
  ASSERT_TRUE(server().Stop());
  ASSERT_TRUE(Succeeded(RunQuire({"check", "--database-url", database().url()}, kCommandTimeout)));
  if (Backend() != "sqlite") return;  // the engines' own tests plant damage in LMDB and PostgreSQL
  const std::string path = database().url().substr(7);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DELETE FROM events WHERE seq = (SELECT max(seq) FROM events WHERE kind = "
                         "4); UPDATE messages SET body = 'changed' WHERE body = 'message 3'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  RunResult checked = RunQuire({"check", "--database-url", database().url()}, kCommandTimeout);
  EXPECT_TRUE(RefusedWith(checked, "2 problems"));
  EXPECT_NE(checked.out.find("messages: 23 records but 22 creation events"), std::string::npos)
      << checked.out;
  EXPECT_NE(checked.out.find("its text differs from the live record"), std::string::npos)
      << checked.out;
}

}  // namespace
}  // namespace quire::apitest
