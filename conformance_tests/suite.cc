// The conformance suite's fixture and the helpers its files share. The tests
// are in the suite_*.cc files, one group of properties each (the table of
// docs/backend-authors.md, "The properties"); all of them are compiled into
// the quire_conformance OBJECT library, so that every program linking it has
// every test.
#include "conformance_tests/suite.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <utility>

#include "conformance_tests/suite_internal.h"

namespace quire::conformance {

// ---- Fixture ----

void StoreConformance::SetUp() {
  const BackendUnderTest& backend = GetParam();
  ASSERT_TRUE(backend.make_fresh_store) << "backend " << backend.name << " has no factory";
  Status s = backend.make_fresh_store(&store_);
  ASSERT_TRUE(s.ok()) << "make_fresh_store: " << s.ToString();
  ASSERT_NE(store_, nullptr);
}

void StoreConformance::TearDown() {
  store_.reset();
}

void StoreConformance::Reopen() {
  store_.reset();
  Status s = GetParam().reopen_same_store(&store_);
  ASSERT_TRUE(s.ok()) << "reopen_same_store: " << s.ToString();
  ASSERT_NE(store_, nullptr);
}

Write StoreConformance::Apply(op::Operation operation) {
  std::vector<Write> batch(1);
  batch[0].op = std::move(operation);
  const Status s = store_->Apply(batch);
  EXPECT_TRUE(s.ok()) << "Apply: " << s.ToString();
  return std::move(batch[0]);
}

std::vector<Write> StoreConformance::ApplyBatch(std::vector<op::Operation> ops) {
  std::vector<Write> batch(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) batch[i].op = std::move(ops[i]);
  const Status s = store_->Apply(batch);
  EXPECT_TRUE(s.ok()) << "Apply: " << s.ToString();
  return batch;
}

std::vector<Event> StoreConformance::History(std::int64_t after, std::int64_t upto,
                                             std::size_t page) {
  std::vector<Event> all;
  while (true) {
    std::vector<Event> got;
    const Status s = store_->ReadEvents(after, upto, page, &got);
    EXPECT_TRUE(s.ok()) << "ReadEvents: " << s.ToString();
    if (!s.ok() || got.empty()) break;
    EXPECT_LE(got.size(), page);
    after = got.back().seq;
    all.insert(all.end(), std::make_move_iterator(got.begin()), std::make_move_iterator(got.end()));
    if (got.size() < page) break;
  }
  return all;
}

storage::Head StoreConformance::Head() {
  storage::Head head;
  const Status s = store_->GetHead(&head);
  EXPECT_TRUE(s.ok()) << "GetHead: " << s.ToString();
  return head;
}

std::string StoreConformance::Id(char kind, std::int64_t n) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%015lld", static_cast<long long>(n));
  return std::string(1, kind) + digits;
}

User StoreConformance::MakeUser(std::int64_t n, const std::string& name, Micros at) {
  return User{Id('U', n), name, "canon:" + name, "hash-of-password-" + std::to_string(n), at};
}

Session StoreConformance::MakeSession(std::int64_t n, const std::string& user_id, Micros at) {
  return Session{"token-hash-" + std::to_string(n), user_id, at, at};
}

Conversation StoreConformance::MakeConversation(std::int64_t n, const std::string& name,
                                                Micros at) {
  return Conversation{Id('C', n), name, "canon:" + name, at, at, std::nullopt};
}

Message StoreConformance::MakeMessage(std::int64_t n, const std::string& conversation,
                                      const std::string& sender, const std::string& body,
                                      Micros at) {
  return Message{Id('M', n), conversation, sender, body, at, std::nullopt};
}

std::string StoreConformance::SetUpFirstUser(Micros at) {
  User user = MakeUser(1, "first", at);
  Write w = Apply(op::Setup{user, MakeSession(1, user.id, at)});
  EXPECT_TRUE(w.status.ok()) << w.status.ToString();
  return user.id;
}

Conversation StoreConformance::CreateRoom() {
  const Conversation room = MakeConversation(1, "room", 1000);
  Write w = Apply(op::CreateConversation{room});
  EXPECT_TRUE(w.status.ok()) << w.status.ToString();
  return room;
}

void PrintTo(const BackendUnderTest& backend, std::ostream* os) {
  *os << backend.name;
}

std::string BackendName(const ::testing::TestParamInfo<BackendUnderTest>& info) {
  return info.param.name;
}

std::vector<std::int64_t> Seqs(const std::vector<Event>& events) {
  std::vector<std::int64_t> seqs;
  for (const Event& e : events) seqs.push_back(e.seq);
  return seqs;
}

bool StrictlyIncreasing(const std::vector<std::int64_t>& seqs) {
  return std::adjacent_find(seqs.begin(), seqs.end(), std::greater_equal<>()) == seqs.end();
}

std::string FirstDifference(const std::vector<std::int64_t>& seen,
                            const std::vector<std::int64_t>& history) {
  const auto [s, h] = std::mismatch(seen.begin(), seen.end(), history.begin(), history.end());
  if (s == seen.end() && h == history.end()) return "";
  const std::size_t at = static_cast<std::size_t>(s - seen.begin());
  std::string text = "after " + std::to_string(at) + " events in order, ";
  if (h == history.end()) {
    text += "the reader saw " + std::to_string(*s) + ", which is not in the history";
  } else if (s == seen.end()) {
    text += "the reader never saw " + std::to_string(*h) + " (and the rest)";
  } else if (*s > *h) {
    text += "the reader skipped " + std::to_string(*h) + " and went on with " + std::to_string(*s);
  } else {
    text += "the reader saw " + std::to_string(*s) + " where the history has " + std::to_string(*h);
  }
  return text + " (reader saw " + std::to_string(seen.size()) + " events, history has " +
         std::to_string(history.size()) + ")";
}

}  // namespace quire::conformance

// A build that links the suite without instantiating it (e.g. a backend
// compiled out) is not an error.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StoreConformance);
