// Durability and concurrency: acknowledged writes survive SIGKILL, SIGTERM is
// clean with open streams, and concurrent writers interleave with a stream
// without loss or duplication.
#include <atomic>

#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

std::int64_t ResumePoint(const Json& boot) {
  return boot.contains("resume_point") && boot["resume_point"].is_number_integer()
             ? boot["resume_point"].get<std::int64_t>()
             : -1;
}

using DurabilityTest = ApiTest;

TEST_F(DurabilityTest, AcknowledgedWritesSurviveSigkill) {
  Client owner = Setup();
  std::string conv = CreateConversation(owner, "general");
  Json b0 = Boot(owner);
  auto stream = OpenStream(owner, ResumePoint(b0));
  std::vector<Json> acked;
  for (int i = 0; i < 30; ++i)
    acked.push_back(SendMessage(owner, conv, "durable " + std::to_string(i)));
  std::string last_conv = CreateConversation(owner, "last one");
  server().Kill();  // right after the last 202
  std::int64_t seen = ResumePoint(b0);
  for (const auto& e : stream->events())
    if (e.id) seen = std::max(seen, *e.id);
  stream->Close();

  ASSERT_TRUE(server().Restart());
  owner.set_base_url(server().base_url());
  // Sessions are stored: the cookie still works.
  Json b1 = Boot(owner);
  auto sent = FindEvents(b1["events"], "message", "sent");
  ASSERT_EQ(sent.size(), acked.size());
  for (std::size_t i = 0; i < acked.size(); ++i) {
    EXPECT_EQ(sent[i]["id"], acked[i]["id"]) << i;
    EXPECT_EQ(sent[i]["body"], acked[i]["body"]) << i;
    EXPECT_EQ(sent[i]["at"], acked[i]["at"]) << i;
  }
  EXPECT_EQ(FindEvents(b1["events"], "conversation", "created", last_conv).size(), 1u);
  EXPECT_GE(ResumePoint(b1), ResumePoint(b0) + 31);
  EXPECT_GE(ResumePoint(b1), seen);

  // New events get higher sequence numbers than anything before the crash.
  auto after = OpenStream(owner, ResumePoint(b1));
  Json m = SendMessage(owner, conv, "after the crash");
  ASSERT_TRUE(after->WaitForEvents(1, 5s));
  EXPECT_GT(*after->events()[0].id, ResumePoint(b1));
  EXPECT_GT(*after->events()[0].id, seen);
  EXPECT_EQ(after->events()[0].data["id"], m["id"]);
  // IDs are never reused.
  for (const auto& s : sent) EXPECT_NE(s["id"], m["id"]);
}

TEST_F(DurabilityTest, SigtermWithOpenStreamsExitsCleanly) {
  Client owner = Setup();
  CreateConversation(owner, "general");
  std::int64_t r = ResumePoint(Boot(owner));
  auto s1 = OpenStream(owner, r);
  auto s2 = OpenStream(owner, 0);
  ASSERT_TRUE(s1->WaitForHeaders());
  ASSERT_TRUE(s2->WaitForEvents(2, 5s));
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(server().Stop(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_TRUE(s1->WaitForEnd(2s)) << "open streams end when the server stops";
  EXPECT_TRUE(s2->WaitForEnd(2s));
}

TEST_F(DurabilityTest, RestartKeepsEverything) {
  Client owner = Setup("alice", "pw");
  Client bob = Invite(owner, "bob");
  std::string conv = CreateConversation(owner, "general");
  SendMessage(bob, conv, "hello");
  Json m = SendMessage(owner, conv, "to delete");
  ASSERT_TRUE(HasStatus(owner.del("/api/messages/" + Str(m, "id")), 202));
  Json before = Boot(owner);
  ASSERT_TRUE(server().Stop());
  ASSERT_TRUE(server().Restart());
  owner.set_base_url(server().base_url());
  Json after = Boot(owner);
  EXPECT_EQ(after["events"], before["events"]);
  EXPECT_EQ(ResumePoint(after), ResumePoint(before));
  // Setup stays done, logins work, names stay taken.
  Client c(server().base_url());
  EXPECT_TRUE(IsJsonError(c.post("/api/setup", {{"name", "x"}, {"password", "pw"}}), 409));
  EXPECT_TRUE(HasStatus(c.post("/api/auth/login", {{"name", "bob"}, {"password", "pass"}}), 200));
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", "General"}}), 409));
}

TEST_F(DurabilityTest, ConcurrentWritersAndAStreamAgreeWithBoot) {
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 100;
  Client owner = Setup();
  std::vector<Client> writers;
  for (int i = 0; i < kWriters; ++i)
    writers.push_back(Invite(owner, "writer " + std::to_string(i)));
  std::string c1 = CreateConversation(owner, "one");
  std::string c2 = CreateConversation(owner, "two");
  Json early = Boot(owner);
  std::int64_t r = ResumePoint(early);
  // Some history between the boot and the stream's start.
  SendMessage(owner, c1, "before the stream");
  auto stream = OpenStream(owner, r);
  ASSERT_TRUE(stream->WaitForHeaders());

  std::vector<std::vector<std::string>> acked(kWriters);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      Client& c = writers[w];
      for (int i = 0; i < kPerWriter; ++i) {
        const std::string& conv = (i % 2) ? c1 : c2;
        Response resp = c.post("/api/conversations/" + conv,
                               {{"body", "w" + std::to_string(w) + " #" + std::to_string(i)}});
        Json j = resp.json();
        if (resp.status != 202 || !j.is_object() || !j.contains("id")) {
          ++failures;
          continue;
        }
        acked[w].push_back(j["id"].get<std::string>());
        if (i == kPerWriter / 2 && w == 0 && !acked[w].empty()) {
          // A deletion in the middle of it all.
          Response d = c.del("/api/messages/" + acked[w].front());
          if (d.status != 202) ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_EQ(acked[0].size(), static_cast<std::size_t>(kPerWriter));

  Json final_boot = Boot(owner);
  std::size_t want = final_boot["events"].size() - early["events"].size();
  ASSERT_TRUE(stream->WaitForEvents(want, 30s))
      << "stream has " << stream->event_count() << " of " << want << " events";
  // Nothing more may come: a marker committed now is the very next event.
  const std::string marker = CreateConversation(owner, "marker");
  ASSERT_TRUE(stream->WaitForEvents(want + 1, 30s));
  auto events = stream->events();
  ASSERT_EQ(events.size(), want + 1) << "duplicates or extra events";
  EXPECT_EQ(EventKey(events.back().data), "conversation created " + marker);
  events.pop_back();

  // boot(R) + stream == final boot: same events, same order, no duplicates.
  std::vector<std::string> combined = EventKeys(early["events"]);
  for (const auto& k : EventKeys(events)) combined.push_back(k);
  EXPECT_EQ(combined, EventKeys(final_boot["events"]));
  std::set<std::string> unique(combined.begin(), combined.end());
  EXPECT_EQ(unique.size(), combined.size());
  std::int64_t last = r;
  for (const auto& e : events) {
    ASSERT_TRUE(e.id.has_value());
    EXPECT_GT(*e.id, last);
    last = *e.id;
  }
  EXPECT_EQ(last, ResumePoint(final_boot));
  // Every acknowledged message is there, in each writer's own order.
  std::vector<std::string> keys = EventKeys(final_boot["events"]);
  for (int w = 0; w < kWriters; ++w) {
    ASSERT_EQ(acked[w].size(), static_cast<std::size_t>(kPerWriter));
    int previous = -1;
    for (const auto& id : acked[w]) {
      int at = IndexOf(keys, "message sent " + id);
      EXPECT_GT(at, previous) << "writer " << w << " message " << id;
      previous = at;
    }
  }
  // The live stream delivered the same data a boot shows (except the tombstone,
  // which the stream saw before the deletion).
  std::size_t offset = early["events"].size();
  std::string deleted_id = acked[0].front();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Json& b = final_boot["events"][offset + i];
    if (Str(b, "id") == deleted_id && Str(b, "event") == "sent") continue;
    EXPECT_EQ(events[i].data, b) << i;
  }
}

}  // namespace
}  // namespace quire::apitest
