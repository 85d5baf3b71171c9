// Several quire processes on one database (PostgreSQL): writes through any
// instance reach the streams of every instance, a boot on one instance
// resumes gap-free on another, retention sweeps of several instances delete
// each thing once, and a database outage is a 503 that heals by itself.
#include <map>
#include <thread>

#include "tests/api/harness.h"
#include "tests/support/scratch_postgres.h"

namespace quire::apitest {
namespace {

std::int64_t ResumePoint(const Json& boot) {
  return boot.value("resume_point", -1);
}

// The `id` (sequence) of each event of a stream, heartbeats left out.
std::vector<std::int64_t> Seqs(const std::vector<SseEvent>& events) {
  std::vector<std::int64_t> seqs;
  for (const SseEvent& e : events) seqs.push_back(e.id.value_or(-1));
  return seqs;
}

// Two instances on the test's database: server() and second().
class InstancesTest : public ApiTest {
 protected:
  void SetUp() override {
    if (Backend() != "postgres") {
      GTEST_SKIP() << "several instances share a database on postgres only; " << Backend()
                   << " serves one process per database";
    }
    ApiTest::SetUp();
    if (HasFatalFailure()) return;
    second_ = std::make_unique<QuireProcess>(database().url(), ServerArgs());
    ASSERT_TRUE(second_->Start());
  }
  void TearDown() override {
    if (second_ && second_->running()) {
      EXPECT_TRUE(second_->Stop());
    }
    second_.reset();
    ApiTest::TearDown();
  }

  QuireProcess& second() { return *second_; }
  // A client of the second instance with `like`'s login.
  Client OnSecond(const Client& like) {
    Client c(second_->base_url());
    c.set_token(like.token());
    return c;
  }

  // `per_writer` messages from each of `writers` threads, alternating
  // between the instances; returns the number of messages acknowledged.
  int WriteConcurrently(const Client& login, const std::string& conversation, int writers,
                        int per_writer) {
    std::atomic<int> acknowledged{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        Client c(w % 2 == 0 ? server().base_url() : second_->base_url());
        c.set_token(login.token());
        for (int i = 0; i < per_writer; ++i) {
          Response r = c.post("/api/conversations/" + conversation,
                              {{"body", "w" + std::to_string(w) + " m" + std::to_string(i)}});
          if (r.status == 202) acknowledged.fetch_add(1);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    return acknowledged.load();
  }

  std::unique_ptr<QuireProcess> second_;
};

TEST_F(InstancesTest, EveryStreamOnEveryInstanceSeesExactlyTheFinalHistory) {
  Client owner = Setup();
  Client on_second = OnSecond(owner);
  std::string conv = CreateConversation(on_second, "shared");
  const Json boot0 = Boot(owner);
  const std::int64_t r0 = ResumePoint(boot0);
  auto first_from_r0 = OpenStream(owner, r0);
  auto second_from_r0 = OpenStream(on_second, r0);
  auto second_from_0 = OpenStream(on_second, 0);
  ASSERT_TRUE(first_from_r0->WaitForHeaders());
  ASSERT_TRUE(second_from_r0->WaitForHeaders());

  ASSERT_EQ(WriteConcurrently(owner, conv, 4, 25), 100);
  Client bob = Invite(on_second, "bob");  // a user created through the second instance
  const Json final_events = Boot(owner)["events"];
  const std::vector<std::string> all_keys = EventKeys(final_events);
  ASSERT_EQ(all_keys.size(), boot0["events"].size() + 101);  // 100 messages and bob
  const std::vector<std::string> after_r0(all_keys.begin() + boot0["events"].size(),
                                          all_keys.end());

  ASSERT_TRUE(first_from_r0->WaitForEvents(after_r0.size(), 15s));
  ASSERT_TRUE(second_from_r0->WaitForEvents(after_r0.size(), 15s));
  ASSERT_TRUE(second_from_0->WaitForEvents(all_keys.size(), 15s));
  EXPECT_EQ(EventKeys(first_from_r0->events()), after_r0);
  EXPECT_EQ(EventKeys(second_from_r0->events()), after_r0);
  EXPECT_EQ(EventKeys(second_from_0->events()), all_keys);
  // The same sequence numbers on both instances, strictly increasing.
  const std::vector<std::int64_t> seqs = Seqs(first_from_r0->events());
  EXPECT_EQ(Seqs(second_from_r0->events()), seqs);
  EXPECT_TRUE(std::adjacent_find(seqs.begin(), seqs.end(), std::greater_equal<>()) == seqs.end());
  EXPECT_GT(seqs.front(), r0);
  // Both instances boot the same history.
  EXPECT_EQ(Boot(on_second)["events"], final_events);
}

TEST_F(InstancesTest, BootOnOneInstanceResumesOnTheOtherWithoutGapOrDuplicate) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "shared");
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    WriteConcurrently(owner, conv, 2, 40);
    writing.store(false);
  });
  // Boots on the first instance while both take writes, each resumed on the second.
  struct Resumed {
    Json boot;
    std::unique_ptr<EventStream> stream;
  };
  std::vector<Resumed> resumed;
  Client on_second = OnSecond(owner);
  while (writing.load() || resumed.size() < 2) {
    Json boot = Boot(owner);
    auto stream = OpenStream(on_second, ResumePoint(boot));
    ASSERT_TRUE(stream->WaitForHeaders());
    resumed.push_back({std::move(boot), std::move(stream)});
    std::this_thread::sleep_for(50ms);
  }
  writer.join();
  const Json final_events = Boot(owner)["events"];
  const std::vector<std::string> final_keys = EventKeys(final_events);
  for (Resumed& r : resumed) {
    const std::size_t booted = r.boot["events"].size();
    ASSERT_TRUE(r.stream->WaitForEvents(final_events.size() - booted, 15s))
        << "resume point " << ResumePoint(r.boot);
    std::vector<std::string> joined = EventKeys(r.boot["events"]);
    for (const std::string& key : EventKeys(r.stream->events())) joined.push_back(key);
    EXPECT_EQ(joined, final_keys) << "boot at " << ResumePoint(r.boot) << " on the first instance";
    for (const SseEvent& e : r.stream->events()) EXPECT_GT(e.id.value_or(-1), ResumePoint(r.boot));
  }
}

class InstancesRetentionTest : public InstancesTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--message-ttl", "1s", "--purge-after", "2s"};
  }
};

// The watcher's stream keeps every event once, in order, whatever is purged
// meanwhile, so it is the record of how often each message was deleted: no
// fixed wait for "enough sweeps", no race with the purge on a slow machine.
TEST_F(InstancesRetentionTest, SweepsOfSeveralInstancesDeleteEachThingOnce) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "shared");
  auto watcher = OpenStream(OnSecond(owner), ResumePoint(Boot(owner)));
  ASSERT_TRUE(watcher->WaitForHeaders());
  ASSERT_EQ(WriteConcurrently(owner, conv, 2, 10), 20);
  // Both instances sweep every 100 ms; each message is deleted, then purged.
  ASSERT_TRUE(WaitUntil(
      [&] {
        const Json events = Boot(owner)["events"];
        return FindEvents(events, "message", "sent").empty() &&
               FindEvents(events, "message", "deleted").empty();
      },
      60s))
      << "the messages were not all deleted and purged";
  // Every sweep of both instances between a deletion and its purge (2 s, some
  // 40 sweeps) could have deleted again; after the purge there is nothing left
  // to delete. A marker committed now comes after anything they emitted.
  const std::string marker = CreateConversation(owner, "marker");
  ASSERT_TRUE(WaitUntil(
      [&] { return IndexOf(EventKeys(watcher->events()), "conversation created " + marker) >= 0; },
      30s));
  const std::vector<SseEvent> seen = watcher->events();
  std::map<std::string, int> sent, deleted;
  for (const SseEvent& e : seen) {
    if (Str(e.data, "type") != "message") continue;
    ++(Str(e.data, "event") == "sent" ? sent : deleted)[Str(e.data, "id")];
  }
  EXPECT_EQ(sent.size(), 20u);
  EXPECT_EQ(deleted.size(), 20u);
  for (const auto& [id, n] : deleted) {
    EXPECT_EQ(n, 1) << id << " deleted " << n << " times";
    EXPECT_EQ(sent.count(id), 1u) << id;
  }
  EXPECT_EQ(seen.size(), 41u);  // 20 sent, 20 deleted, the marker
  std::vector<std::int64_t> seqs = Seqs(seen);
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()) &&
              std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end());

  // Both instances boot the same history, without the purged messages.
  const Json events = Boot(owner)["events"];
  Client on_second = OnSecond(owner);
  EXPECT_EQ(Boot(on_second)["events"], events);
  EXPECT_EQ(FindEvents(events, "conversation", "created", conv).size(), 1u);
  EXPECT_TRUE(FindEvents(events, "message", "sent").empty());
}

// A database outage, with one instance: every call that needs the database
// answers 503 meanwhile, nothing is a 500, the server stays up, and it
// recovers by itself; a stream opened before the outage goes on after it.
class PostgresOutageTest : public ApiTest {
 protected:
  void SetUp() override {
    if (Backend() != "postgres") GTEST_SKIP() << "an outage of a database server is postgres's";
    ApiTest::SetUp();
  }
  void SetAllowed(bool allowed) {
    std::string why;
    const std::optional<std::string> admin = quire::testing::PostgresAdminUrl(&why);
    ASSERT_TRUE(admin.has_value()) << why;
    ASSERT_TRUE(quire::testing::SetConnectionsAllowed(*admin, database().url(), allowed, &why))
        << why;
  }
};

TEST_F(PostgresOutageTest, AnswersServiceUnavailableAndRecovers) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  SendMessage(owner, conv, "before");
  auto stream = OpenStream(owner, ResumePoint(Boot(owner)));
  ASSERT_TRUE(stream->WaitForHeaders());

  SetAllowed(false);
  if (HasFatalFailure()) return;
  Client anonymous = NewClient();
  for (int round = 0; round < 3; ++round) {
    EXPECT_TRUE(IsJsonError(owner.post("/api/conversations/" + conv, {{"body", "during"}}), 503));
    EXPECT_TRUE(IsJsonError(owner.get("/api/boot"), 503));
    EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", "new"}}), 503));
    EXPECT_TRUE(IsJsonError(
        anonymous.post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}), 503));
    EXPECT_TRUE(IsJsonError(owner.get("/api/events?resume_point=0"), 503));
  }
  // Input errors that need no database are still theirs.
  EXPECT_TRUE(IsJsonError(owner.get("/api/nowhere"), 404));
  // Alive, and not ready: the readiness probe (every 2 s) found no commit.
  EXPECT_TRUE(HasStatus(anonymous.get("/healthz"), 200));
  EXPECT_TRUE(WaitUntil([&] { return anonymous.get("/readyz").status == 503; }, 15s));

  SetAllowed(true);
  if (HasFatalFailure()) return;
  Response after;
  EXPECT_TRUE(WaitUntil(
      [&] {
        after = owner.post("/api/conversations/" + conv, {{"body", "after"}});
        return after.status == 202;
      },
      15s))
      << after.Describe();
  EXPECT_TRUE(server().running());
  EXPECT_TRUE(WaitUntil([&] { return anonymous.get("/readyz").status == 200; }, 15s));
  ASSERT_TRUE(stream->WaitForEvents(1, 10s)) << "the stream opened before the outage";
  EXPECT_EQ(stream->events().back().data["body"], "after");
  const Json events = Boot(owner)["events"];
  EXPECT_EQ(FindEvents(events, "message", "sent").size(), 2u)
      << "nothing of the outage was written";
}

}  // namespace
}  // namespace quire::apitest
