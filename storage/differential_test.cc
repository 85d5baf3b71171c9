// The backends against each other: one seeded workload of every write
// operation (valid and refused ones: taken names, stored ids, unknown and
// deleted targets, repeated idempotency keys, expiry, purges) applied to
// each backend, which must give the same outcome for every write and end with
// the same head, history and records. The chat rules are shared; what this
// compares is the engines under them.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "storage/lmdb/lmdb_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/store.h"
#include "tests/support/scratch_postgres.h"

namespace quire::storage {
namespace {

constexpr Micros kSecond = 1'000'000;

// A workload: batches of writes with explicit times, the same for every backend.
class Workload {
 public:
  explicit Workload(unsigned seed) : random_(seed) {}

  std::vector<Write> NextBatch() {
    now_ += Pick(1, 3) * kSecond;
    std::vector<Write> batch;
    if (users_.empty()) {
      batch.push_back(WriteOf(op::Setup{NewUser(), NewSession("U0")}));
      return batch;
    }
    const int size = Pick(1, 8);
    for (int i = 0; i < size; ++i) batch.push_back(WriteOf(NextOperation()));
    return batch;
  }

  const std::vector<std::string>& users() const { return users_; }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::vector<std::string>& invitations() const { return invitations_; }
  const std::vector<std::string>& conversations() const { return conversations_; }
  const std::vector<std::string>& messages() const { return messages_; }

 private:
  static Write WriteOf(op::Operation operation) {
    Write w;
    w.op = std::move(operation);
    return w;
  }

  op::Operation NextOperation() {
    switch (Pick(0, 19)) {
      case 0:
        return op::CreateInvitation{Invitation{Id("I", &invitations_), users_[0], now_, false}};
      case 1: {
        const std::string user = "U" + std::to_string(users_.size());
        return op::AcceptInvitation{SomeOf(invitations_, "I-unknown"), now_ - 40 * kSecond,
                                    NewUser(), NewSession(user)};
      }
      case 2:
        return op::CreateSession{Session{Pick(0, 3) == 0 ? SomeOf(tokens_, "T0") : NewToken(),
                                         SomeOf(users_, "U-unknown"), now_, now_}};
      case 3:
        return op::DeleteSession{SomeOf(tokens_, "T-unknown")};
      case 4: {
        const std::string user = SomeOf(users_, "U-unknown");
        return op::ChangePassword{user, "hash-" + std::to_string(now_), NewSession(user)};
      }
      case 5:
        return op::TouchSession{SomeOf(tokens_, "T-unknown"), now_};
      case 6:
      case 7: {
        const std::string name = Name({"general", "random", "dev", "ops", "b\u00fcro"});
        const std::string id =
            Pick(0, 5) == 0 ? SomeOf(conversations_, "C0") : Id("C", &conversations_);
        return op::CreateConversation{Conversation{id, name, name, now_, now_, std::nullopt}};
      }
      case 8:
        return op::DeleteConversation{SomeOf(conversations_, "C-unknown"), now_};
      case 9:
      case 10:
        return op::DeleteMessage{SomeOf(messages_, "M-unknown"), now_};
      case 11:
        if (Pick(0, 3) == 0) {
          return op::Expire{now_ - 40 * kSecond, now_ - 60 * kSecond, now_};
        }
        [[fallthrough]];
      case 12:
        if (Pick(0, 3) == 0) {
          return op::Purge{now_ - 20 * kSecond, now_ - 100 * kSecond, now_ - 100 * kSecond,
                           now_ - 80 * kSecond};
        }
        [[fallthrough]];
      default: {
        op::SendMessage send;
        const std::string id = Pick(0, 15) == 0 ? SomeOf(messages_, "M0") : Id("M", &messages_);
        send.message = Message{id,
                               SomeOf(conversations_, "C-unknown"),
                               SomeOf(users_, "U0"),
                               "body " + std::to_string(Pick(0, 999)),
                               now_,
                               std::nullopt};
        if (Pick(0, 2) == 0) {
          send.idempotency_key = Name({"k1", "k2", "k3"});
          send.key_after = now_ - 30 * kSecond;
        }
        return send;
      }
    }
  }

  int Pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }

  std::string Name(std::initializer_list<const char*> names) {
    return *(names.begin() + Pick(0, static_cast<int>(names.size()) - 1));
  }

  // A new id with `prefix`, remembered in *ids.
  static std::string Id(const char* prefix, std::vector<std::string>* ids) {
    ids->push_back(prefix + std::to_string(ids->size()));
    return ids->back();
  }

  // Mostly one of `ids`, sometimes `otherwise` (an unknown one).
  std::string SomeOf(const std::vector<std::string>& ids, const std::string& otherwise) {
    if (ids.empty() || Pick(0, 9) == 0) return otherwise;
    return ids[static_cast<std::size_t>(Pick(0, static_cast<int>(ids.size()) - 1))];
  }

  User NewUser() {
    const std::string name = Name({"ann", "bob", "cy", "dee", "eve", "fay"});
    const std::string id = "U" + std::to_string(users_.size());
    users_.push_back(id);
    return User{id, name, name, "hash-" + id, now_};
  }

  std::string NewToken() {
    tokens_.push_back("T" + std::to_string(tokens_.size()));
    return tokens_.back();
  }

  Session NewSession(const std::string& user) { return Session{NewToken(), user, now_, now_}; }

  std::mt19937 random_;
  Micros now_ = 1'700'000'000 * kSecond;
  std::vector<std::string> users_, tokens_, invitations_, conversations_, messages_;
};

// What a write answered, as text to compare (status messages may differ).
std::string Outcome(const Write& w) {
  std::ostringstream out;
  out << CodeName(w.status.code()) << " seq " << w.last_seq;
  if (const auto* send = std::get_if<op::SendMessage>(&w.op)) {
    const Message& m = send->message;
    out << " replayed " << send->replayed << " message " << m.id << "/" << m.conversation << "/"
        << m.sender << "/" << m.body << "/" << m.at << "/" << m.deleted_at.value_or(-1);
  } else if (const auto* expire = std::get_if<op::Expire>(&w.op)) {
    out << " expired " << expire->deleted_messages << "/" << expire->deleted_conversations;
  } else if (const auto* purge = std::get_if<op::Purge>(&w.op)) {
    out << " purged " << purge->purged_events;
  }
  return out.str();
}

template <typename Record, typename Describe>
std::string Read(Status s, const Record& record, Describe describe) {
  if (!s.ok()) return CodeName(s.code());
  return describe(record);
}

// Everything a store holds that the workload can name, as text.
std::string Snapshot(Store& store, const Workload& workload) {
  std::ostringstream out;
  Head head;
  EXPECT_TRUE(store.GetHead(&head).ok());
  out << "head " << head.last_seq << " purged " << head.purged_through << "\n";
  std::vector<Event> events;
  EXPECT_TRUE(store.ReadEvents(0, head.last_seq, 1'000'000, &events).ok());
  for (const Event& e : events) {
    out << "event " << e.seq << " " << static_cast<int>(e.kind) << " " << e.at << " " << e.id << " "
        << e.conversation << " " << e.sender << " " << e.text << " " << e.deleted_at.value_or(-1)
        << "\n";
  }
  for (const std::string& id : workload.users()) {
    User u;
    out << "user " << id << " " << Read(store.GetUser(id, &u), u, [](const User& u) {
      return u.name + "/" + u.canonical + "/" + u.password_hash + "/" +
             std::to_string(u.created_at);
    }) << "\n";
  }
  for (const std::string& token : workload.tokens()) {
    Session s;
    out << "session " << token << " "
        << Read(store.FindSession(token, &s), s,
                [](const Session& s) {
                  return s.user_id + "/" + std::to_string(s.created_at) + "/" +
                         std::to_string(s.last_used);
                })
        << "\n";
  }
  for (const std::string& id : workload.invitations()) {
    Invitation i;
    out << "invitation " << id << " "
        << Read(store.GetInvitation(id, &i), i,
                [](const Invitation& i) {
                  return i.issuer_id + "/" + std::to_string(i.issued_at) + "/" +
                         std::to_string(i.used);
                })
        << "\n";
  }
  for (const std::string& id : workload.conversations()) {
    Conversation c;
    out << "conversation " << id << " "
        << Read(store.GetConversation(id, &c), c,
                [](const Conversation& c) {
                  return c.name + "/" + c.canonical + "/" + std::to_string(c.created_at) + "/" +
                         std::to_string(c.last_activity) + "/" +
                         std::to_string(c.deleted_at.value_or(-1));
                })
        << "\n";
  }
  for (const std::string& id : workload.messages()) {
    Message m;
    out << "message " << id << " " << Read(store.GetMessage(id, &m), m, [](const Message& m) {
      return m.conversation + "/" + m.sender + "/" + m.body + "/" + std::to_string(m.at) + "/" +
             std::to_string(m.deleted_at.value_or(-1));
    }) << "\n";
  }
  return out.str();
}

// Applies the same workload to `a` and `b`, comparing every outcome, and the
// whole stores every 25 batches and at the end.
void ExpectSameBehaviour(Store& a, Store& b, const char* a_name, const char* b_name) {
  Workload workload(20261203);
  int refused = 0;
  for (int n = 1; n <= 300; ++n) {
    std::vector<Write> batch_a = workload.NextBatch();
    std::vector<Write> batch_b = batch_a;
    ASSERT_TRUE(a.Apply(batch_a).ok()) << a_name << ", batch " << n;
    ASSERT_TRUE(b.Apply(batch_b).ok()) << b_name << ", batch " << n;
    for (std::size_t i = 0; i < batch_a.size(); ++i) {
      ASSERT_EQ(Outcome(batch_a[i]), Outcome(batch_b[i]))
          << a_name << " and " << b_name << " differ on write " << i << " of batch " << n;
      if (!batch_a[i].status.ok()) ++refused;
    }
    if (n % 25 == 0) {
      ASSERT_EQ(Snapshot(a, workload), Snapshot(b, workload))
          << a_name << " and " << b_name << " hold different things after batch " << n;
    }
  }
  // The workload exercised refusals as well as writes.
  EXPECT_GT(refused, 100);
  EXPECT_GT(workload.messages().size(), 200u);
}

class StoreDifferentialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("quire-differential-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Store> OpenSqlite() {
    std::unique_ptr<Store> store;
    EXPECT_TRUE(OpenSqliteStore((dir_ / "quire.db").string(), &store).ok());
    return store;
  }

  std::filesystem::path dir_;
};

TEST_F(StoreDifferentialTest, SqliteAndLmdbAgree) {
  std::unique_ptr<Store> sqlite = OpenSqlite();
  std::unique_ptr<Store> lmdb;
  ASSERT_TRUE(OpenLmdbStore((dir_ / "lmdb").string(), &lmdb).ok());
  ASSERT_TRUE(sqlite && lmdb);
  ExpectSameBehaviour(*sqlite, *lmdb, "SQLite", "LMDB");
}

TEST_F(StoreDifferentialTest, PostgresAgreesWithSqlite) {
  std::string why;
  const std::optional<std::string> admin = testing::PostgresAdminUrl(&why);
  if (!admin) GTEST_SKIP() << why;
  const std::optional<std::string> url = testing::CreateScratchDatabase(*admin, &why);
  ASSERT_TRUE(url) << why;
  {
    std::unique_ptr<Store> sqlite = OpenSqlite();
    std::unique_ptr<Store> postgres;
    ASSERT_TRUE(OpenPostgresStore(*url, &postgres).ok());
    ASSERT_TRUE(sqlite);
    ExpectSameBehaviour(*sqlite, *postgres, "SQLite", "PostgreSQL");
  }
  testing::DropScratchDatabase(*admin, *url);
}

}  // namespace
}  // namespace quire::storage
