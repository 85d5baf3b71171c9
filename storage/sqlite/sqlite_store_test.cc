// Tests of the SQLite backend on real files: opening, refusing, migrating,
// each operation's outcomes, tombstones, retention, idempotency, batches,
// concurrency, and the maintenance functions of the engine (listings,
// copying in, wiping, the serving lock, backups, integrity checks). (The
// backend-independent properties are also checked by the conformance suite
// in conformance_tests/.)
#include "storage/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "storage/chat_rules.h"
#include "storage/registry.h"
#include "tests/support/engine_samples.h"

namespace quire::storage {
namespace {

namespace fs = std::filesystem;

std::string Id(char kind, std::int64_t n) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%015lld", static_cast<long long>(n));
  return std::string(1, kind) + digits;
}

User MakeUser(std::int64_t n, const std::string& name, Micros at) {
  return User{Id('U', n), name, name, "hash" + std::to_string(n), at};
}
Session MakeSession(std::int64_t n, const std::string& user, Micros at) {
  return Session{"tok" + std::to_string(n), user, at, at};
}
Conversation MakeConversation(std::int64_t n, const std::string& name, Micros at) {
  return Conversation{Id('C', n), name, name, at, at, std::nullopt};
}
op::SendMessage Send(std::int64_t n, const std::string& conversation, const std::string& sender,
                     const std::string& body, Micros at, const std::string& key = "",
                     Micros key_after = 0) {
  return op::SendMessage{Message{Id('M', n), conversation, sender, body, at, std::nullopt}, key,
                         key_after, false};
}

// Runs one raw SQL statement on a file, outside the backend.
void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

std::string RawQuery(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string result;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    result = text ? reinterpret_cast<const char*>(text) : "";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "quire-sqlite-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/quire.db";
    Open();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void Open() {
    store_.reset();
    Status s = OpenSqliteStore(path_, &store_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  Write Apply(op::Operation operation) {
    std::vector<Write> batch(1);
    batch[0].op = std::move(operation);
    Status s = store_->Apply(batch);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return std::move(batch[0]);
  }
  Status ApplyStatus(op::Operation operation) { return Apply(std::move(operation)).status; }

  std::vector<Event> History(std::int64_t after = 0) {
    std::vector<Event> events;
    Status s = store_->ReadEvents(after, INT64_MAX, 1000000, &events);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return events;
  }
  Head GetHead() {
    Head head;
    EXPECT_TRUE(store_->GetHead(&head).ok());
    return head;
  }

  // Setup with user 1 ("alice") and a conversation C1 ("room").
  std::string SetUpBasics() {
    const User alice = MakeUser(1, "alice", 100);
    EXPECT_TRUE(ApplyStatus(op::Setup{alice, MakeSession(1, alice.id, 100)}).ok());
    EXPECT_TRUE(ApplyStatus(op::CreateConversation{MakeConversation(1, "room", 200)}).ok());
    return alice.id;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<Store> store_;
};

// ---- Opening ----

TEST_F(SqliteStoreTest, OpensWithWalAndSchemaVersion) {
  EXPECT_EQ(RawQuery(path_, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(RawQuery(path_, "PRAGMA user_version"), "2");
  EXPECT_EQ(RawQuery(path_, "PRAGMA application_id"), std::to_string(0x51756972));
  const Capabilities caps = store_->capabilities();
  EXPECT_FALSE(caps.multi_process_writers);
  EXPECT_TRUE(caps.survives_process_kill);
  EXPECT_TRUE(caps.survives_power_loss);
  EXPECT_EQ(store_->interface_version(), kStoreInterfaceVersion);
  bool has_users = true;
  ASSERT_TRUE(store_->HasUsers(&has_users).ok());
  EXPECT_FALSE(has_users);
  EXPECT_EQ(GetHead().last_seq, 0);
}

TEST_F(SqliteStoreTest, ReopenKeepsDataAndSequenceContinues) {
  const std::string alice = SetUpBasics();
  ASSERT_TRUE(ApplyStatus(Send(1, Id('C', 1), alice, "hello", 300)).ok());
  const Head head = GetHead();
  const std::vector<Event> history = History();
  ASSERT_EQ(history.size(), 3u);
  Open();
  EXPECT_EQ(History(), history);
  EXPECT_EQ(GetHead().last_seq, head.last_seq);
  Message m;
  ASSERT_TRUE(store_->GetMessage(Id('M', 1), &m).ok());
  EXPECT_EQ(m.body, "hello");
  Write w = Apply(Send(2, Id('C', 1), alice, "again", 400));
  EXPECT_GT(w.last_seq, head.last_seq);
  // Opening an up-to-date database twice in a row migrates nothing.
  Open();
  EXPECT_EQ(History().size(), 4u);
}

TEST_F(SqliteStoreTest, GarbageFileIsCorrupt) {
  store_.reset();
  const std::string garbage = dir_ + "/garbage.db";
  {
    std::ofstream out(garbage, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 7919) & 0xff));
  }
  std::unique_ptr<Store> store;
  Status s = OpenSqliteStore(garbage, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find("not a SQLite database"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
  EXPECT_EQ(store, nullptr);
}

TEST_F(SqliteStoreTest, NewerSchemaIsCorrupt) {
  store_.reset();
  RawExec(path_, "PRAGMA user_version = 7");
  std::unique_ptr<Store> store;
  Status s = OpenSqliteStore(path_, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find("schema version 7"), std::string::npos) << s.message();
}

TEST_F(SqliteStoreTest, OtherApplicationsDatabaseIsCorrupt) {
  const std::string other = dir_ + "/other.db";
  RawExec(other, "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)");
  std::unique_ptr<Store> store;
  Status s = OpenSqliteStore(other, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
  const std::string tagged = dir_ + "/tagged.db";
  RawExec(tagged, "PRAGMA application_id = 42");
  s = OpenSqliteStore(tagged, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
}

TEST_F(SqliteStoreTest, UnreachablePathIsUnavailable) {
  std::unique_ptr<Store> store;
  Status s = OpenSqliteStore(dir_ + "/no/such/dir/quire.db", &store);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("no/such/dir"), std::string::npos) << s.message();
  s = OpenSqliteStore(dir_, &store);  // a directory
  EXPECT_FALSE(s.ok());
  if (geteuid() != 0) {  // root ignores permissions
    const std::string locked = dir_ + "/locked";
    fs::create_directory(locked);
    fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
    s = OpenSqliteStore(locked + "/quire.db", &store);
    EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
    fs::permissions(locked, fs::perms::owner_all);
  }
}

TEST_F(SqliteStoreTest, RegistryUrls) {
  Registry registry;
  RegisterSqliteBackend(registry);
  std::unique_ptr<Store> store;
  EXPECT_EQ(registry.Open("sqlite:", &store).code(), Status::Code::kInvalid);
  EXPECT_EQ(registry.Open("sqlite::memory:", &store).code(), Status::Code::kInvalid);
  Status s = registry.Open("sqlite:" + dir_ + "/by-url.db", &store);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(fs::exists(dir_ + "/by-url.db"));
  store.reset();
  // A relative path is relative to the working directory.
  const std::string relative = fs::relative(dir_ + "/relative.db").string();
  ASSERT_FALSE(relative.empty());
  ASSERT_NE(relative[0], '/');
  s = registry.Open("sqlite:" + relative, &store);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(fs::exists(dir_ + "/relative.db"));
  store.reset();
  // The maintenance commands open the engine.
  std::unique_ptr<Engine> engine;
  s = registry.OpenEngine("sqlite:" + relative, EngineUse::kMaintain, &engine);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(registry.Open("sqlite:" + relative, &store).IsUnavailable());
}

// Reads run while another connection holds the write lock (WAL).
TEST_F(SqliteStoreTest, ReadsDoNotWaitForAWriter) {
  SetUpBasics();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE; DELETE FROM events", nullptr, nullptr, nullptr),
            SQLITE_OK);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(History().size(), 2u);
  Conversation c;
  EXPECT_TRUE(store_->GetConversation(Id('C', 1), &c).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
}

// ---- Operations ----

TEST_F(SqliteStoreTest, UsersSessionsAndInvitations) {
  const User alice = MakeUser(1, "alice", 100);
  Write setup = Apply(op::Setup{alice, MakeSession(1, alice.id, 100)});
  ASSERT_TRUE(setup.status.ok()) << setup.status.ToString();
  EXPECT_EQ(setup.last_seq, 1);
  EXPECT_TRUE(ApplyStatus(op::Setup{MakeUser(2, "bob", 100), MakeSession(2, Id('U', 2), 100)})
                  .IsConflict());
  User u;
  ASSERT_TRUE(store_->GetUser(alice.id, &u).ok());
  EXPECT_EQ(u.name, "alice");
  EXPECT_EQ(u.password_hash, "hash1");
  EXPECT_TRUE(store_->GetUser(Id('U', 9), &u).IsNotFound());
  ASSERT_TRUE(store_->FindUserByCanonicalName("alice", &u).ok());
  EXPECT_TRUE(store_->FindUserByCanonicalName("nobody", &u).IsNotFound());

  // Sessions.
  EXPECT_TRUE(ApplyStatus(op::CreateSession{MakeSession(2, alice.id, 150)}).ok());
  EXPECT_TRUE(ApplyStatus(op::CreateSession{MakeSession(2, alice.id, 150)}).IsConflict());
  EXPECT_TRUE(ApplyStatus(op::CreateSession{MakeSession(3, Id('U', 9), 150)}).IsNotFound());
  EXPECT_TRUE(ApplyStatus(op::TouchSession{"tok2", 170}).ok());
  EXPECT_TRUE(ApplyStatus(op::TouchSession{"tok2", 160}).ok());  // never goes back
  Session s;
  ASSERT_TRUE(store_->FindSession("tok2", &s).ok());
  EXPECT_EQ(s.last_used, 170);
  EXPECT_TRUE(ApplyStatus(op::TouchSession{"nope", 170}).IsNotFound());
  EXPECT_TRUE(ApplyStatus(op::DeleteSession{"tok2"}).ok());
  EXPECT_TRUE(ApplyStatus(op::DeleteSession{"tok2"}).IsNotFound());
  EXPECT_TRUE(
      ApplyStatus(op::ChangePassword{alice.id, "hash-new", MakeSession(4, alice.id, 180)}).ok());
  EXPECT_TRUE(store_->FindSession("tok1", &s).IsNotFound());
  EXPECT_TRUE(store_->FindSession("tok4", &s).ok());
  EXPECT_TRUE(ApplyStatus(op::ChangePassword{Id('U', 9), "h", MakeSession(5, Id('U', 9), 180)})
                  .IsNotFound());

  // Invitations.
  const Invitation inv{Id('I', 1), alice.id, 200, false};
  EXPECT_TRUE(ApplyStatus(op::CreateInvitation{inv}).ok());
  EXPECT_TRUE(ApplyStatus(op::CreateInvitation{inv}).IsConflict());
  Invitation got;
  ASSERT_TRUE(store_->GetInvitation(inv.id, &got).ok());
  EXPECT_FALSE(got.used);
  EXPECT_TRUE(store_->GetInvitation(Id('I', 9), &got).IsNotFound());
  auto accept = [&](std::int64_t n, const std::string& name, Micros after) {
    return op::AcceptInvitation{inv.id, after, MakeUser(n, name, 300),
                                MakeSession(n, Id('U', n), 300)};
  };
  EXPECT_TRUE(ApplyStatus(accept(2, "bob", 201)).IsNotFound());
  EXPECT_TRUE(ApplyStatus(accept(2, "alice", 200)).IsConflict());
  EXPECT_TRUE(ApplyStatus(op::AcceptInvitation{Id('I', 9), 0, MakeUser(2, "bob", 300),
                                               MakeSession(2, Id('U', 2), 300)})
                  .IsNotFound());
  Write accepted = Apply(accept(2, "bob", 200));
  ASSERT_TRUE(accepted.status.ok()) << accepted.status.ToString();
  EXPECT_EQ(accepted.last_seq, 2);
  EXPECT_TRUE(ApplyStatus(accept(3, "carol", 0)).IsNotFound());
  ASSERT_TRUE(store_->GetInvitation(inv.id, &got).ok());
  EXPECT_TRUE(got.used);

  const std::vector<Event> history = History();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1],
            (Event{2, EventKind::kUserCreated, 300, Id('U', 2), "", "", "bob", std::nullopt}));
}

TEST_F(SqliteStoreTest, ConversationsAndMessages) {
  const std::string alice = SetUpBasics();
  EXPECT_TRUE(ApplyStatus(op::CreateConversation{MakeConversation(2, "room", 210)}).IsConflict());
  EXPECT_TRUE(ApplyStatus(op::CreateConversation{MakeConversation(1, "other", 210)}).IsConflict());
  Write sent = Apply(Send(1, Id('C', 1), alice, "hello", 300));
  ASSERT_TRUE(sent.status.ok()) << sent.status.ToString();
  EXPECT_EQ(sent.last_seq, 3);
  EXPECT_FALSE(std::get<op::SendMessage>(sent.op).replayed);
  EXPECT_TRUE(ApplyStatus(Send(2, Id('C', 9), alice, "x", 300)).IsNotFound());
  EXPECT_TRUE(ApplyStatus(Send(1, Id('C', 1), alice, "dup id", 300)).IsConflict());
  Conversation c;
  ASSERT_TRUE(store_->GetConversation(Id('C', 1), &c).ok());
  EXPECT_EQ(c.last_activity, 300);
  EXPECT_EQ(c.created_at, 200);
  EXPECT_TRUE(store_->GetConversation(Id('C', 9), &c).IsNotFound());
  Message m;
  EXPECT_TRUE(store_->GetMessage(Id('M', 9), &m).IsNotFound());

  EXPECT_TRUE(ApplyStatus(op::DeleteConversation{Id('C', 1), 400}).IsConflict());
  EXPECT_TRUE(ApplyStatus(op::DeleteConversation{Id('C', 9), 400}).IsNotFound());
  EXPECT_TRUE(ApplyStatus(op::DeleteMessage{Id('M', 9), 400}).IsNotFound());
  ASSERT_TRUE(ApplyStatus(op::DeleteMessage{Id('M', 1), 400}).ok());
  EXPECT_TRUE(ApplyStatus(op::DeleteMessage{Id('M', 1), 410}).IsNotFound());
  ASSERT_TRUE(ApplyStatus(op::DeleteConversation{Id('C', 1), 500}).ok());
  EXPECT_TRUE(ApplyStatus(op::DeleteConversation{Id('C', 1), 510}).IsNotFound());

  // Tombstones: rows and created/sent events blank, deleted_at set; the
  // stored text is gone from the file's tables.
  ASSERT_TRUE(store_->GetMessage(Id('M', 1), &m).ok());
  EXPECT_EQ(m, (Message{Id('M', 1), Id('C', 1), alice, "", 300, Micros{400}}));
  ASSERT_TRUE(store_->GetConversation(Id('C', 1), &c).ok());
  EXPECT_EQ(c.name, "");
  EXPECT_EQ(c.canonical, "");
  EXPECT_EQ(c.deleted_at, std::optional<Micros>(500));
  const std::vector<Event> history = History();
  ASSERT_EQ(history.size(), 5u);
  EXPECT_EQ(history[1],
            (Event{2, EventKind::kConversationCreated, 200, Id('C', 1), "", "", "", Micros{500}}));
  EXPECT_EQ(history[2], (Event{3, EventKind::kMessageSent, 300, Id('M', 1), Id('C', 1), alice, "",
                               Micros{400}}));
  EXPECT_EQ(history[3], (Event{4, EventKind::kMessageDeleted, 400, Id('M', 1), Id('C', 1), "", "",
                               std::nullopt}));
  EXPECT_EQ(history[4],
            (Event{5, EventKind::kConversationDeleted, 500, Id('C', 1), "", "", "", std::nullopt}));
  EXPECT_EQ(RawQuery(path_, "SELECT count(*) FROM events WHERE text IN ('hello', 'room')"), "0");
  EXPECT_EQ(RawQuery(path_, "SELECT count(*) FROM messages WHERE body = 'hello'"), "0");

  // The name is free again at once.
  EXPECT_TRUE(ApplyStatus(op::CreateConversation{MakeConversation(2, "room", 600)}).ok());
}

// A write that fails after some of its effects is rolled back alone: the
// others of its batch commit, and its sequences are not skipped.
TEST_F(SqliteStoreTest, FailedWriteOfABatchRollsBackAlone) {
  const std::string alice = SetUpBasics();
  ASSERT_TRUE(ApplyStatus(op::CreateInvitation{{Id('I', 1), alice, 200, false}}).ok());
  std::vector<Write> batch(3);
  batch[0].op = Send(1, Id('C', 1), alice, "before", 300);
  // Inserts the user and its event, then fails on the duplicate session.
  batch[1].op =
      op::AcceptInvitation{Id('I', 1), 0, MakeUser(2, "bob", 300), MakeSession(1, Id('U', 2), 300)};
  batch[2].op = Send(2, Id('C', 1), alice, "after", 310);
  ASSERT_TRUE(store_->Apply(batch).ok());
  EXPECT_TRUE(batch[0].status.ok());
  EXPECT_TRUE(batch[1].status.IsConflict()) << batch[1].status.ToString();
  EXPECT_EQ(batch[1].last_seq, 0);
  EXPECT_TRUE(batch[2].status.ok());
  EXPECT_EQ(batch[0].last_seq, 3);
  EXPECT_EQ(batch[2].last_seq, 4);
  User u;
  EXPECT_TRUE(store_->GetUser(Id('U', 2), &u).IsNotFound());
  Invitation inv;
  ASSERT_TRUE(store_->GetInvitation(Id('I', 1), &inv).ok());
  EXPECT_FALSE(inv.used);
  EXPECT_EQ(History().size(), 4u);
  EXPECT_EQ(GetHead().last_seq, 4);
  // Empty batches are fine.
  EXPECT_TRUE(store_->Apply(std::span<Write>()).ok());
}

TEST_F(SqliteStoreTest, ExpireOrdersMessagesThenConversations) {
  const std::string alice = SetUpBasics();  // C1 "room" created at 200
  ASSERT_TRUE(ApplyStatus(op::CreateConversation{MakeConversation(2, "two", 250)}).ok());
  ASSERT_TRUE(ApplyStatus(op::CreateConversation{MakeConversation(3, "three", 5000)}).ok());
  ASSERT_TRUE(ApplyStatus(Send(1, Id('C', 2), alice, "c2 old", 300)).ok());
  ASSERT_TRUE(ApplyStatus(Send(2, Id('C', 1), alice, "c1 old", 310)).ok());
  ASSERT_TRUE(ApplyStatus(Send(3, Id('C', 2), alice, "c2 new", 900)).ok());
  ASSERT_TRUE(ApplyStatus(Send(4, Id('C', 1), alice, "c1 new", 950)).ok());
  ASSERT_TRUE(ApplyStatus(Send(5, Id('C', 3), alice, "c3", 5100)).ok());
  const std::int64_t before = GetHead().last_seq;

  // Messages before 500 are due; conversations idle before 1000 (C1 at 950,
  // C2 at 900) go too, each after its remaining messages. C3 stays.
  Write w = Apply(op::Expire{500, 1000, 7000});
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  const auto& expire = std::get<op::Expire>(w.op);
  EXPECT_EQ(expire.deleted_messages, 4);
  EXPECT_EQ(expire.deleted_conversations, 2);
  std::vector<std::string> order;
  for (const Event& e : History(before)) {
    EXPECT_EQ(e.at, 7000);
    order.push_back(std::to_string(static_cast<int>(e.kind)) + ":" + e.id);
  }
  const std::vector<std::string> expected = {
      "5:" + Id('M', 1), "5:" + Id('M', 2),   // due messages, oldest first
      "5:" + Id('M', 3), "3:" + Id('C', 2),   // C2 (idle since 900)
      "5:" + Id('M', 4), "3:" + Id('C', 1)};  // C1 (idle since 950)
  EXPECT_EQ(order, expected);
  EXPECT_EQ(w.last_seq, GetHead().last_seq);
  Conversation c;
  ASSERT_TRUE(store_->GetConversation(Id('C', 3), &c).ok());
  EXPECT_FALSE(c.deleted_at.has_value());
}

TEST_F(SqliteStoreTest, PurgeRemovesHistoryAndRaisesHorizon) {
  const std::string alice = SetUpBasics();
  ASSERT_TRUE(ApplyStatus(Send(1, Id('C', 1), alice, "one", 300)).ok());
  ASSERT_TRUE(ApplyStatus(Send(2, Id('C', 1), alice, "two", 310)).ok());
  ASSERT_TRUE(ApplyStatus(op::DeleteMessage{Id('M', 1), 400}).ok());
  Write expire = Apply(op::Expire{0, 1000, 1000});  // deletes M2 then C1
  ASSERT_EQ(std::get<op::Expire>(expire.op).deleted_conversations, 1);
  ASSERT_TRUE(ApplyStatus(op::CreateConversation{MakeConversation(2, "later", 1100)}).ok());
  const Head head = GetHead();

  // Nothing was deleted before 400.
  Write purge = Apply(op::Purge{400, 0, 0, 0});
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 0);
  EXPECT_EQ(GetHead().purged_through, 0);
  // M1 (deleted at 400) only.
  purge = Apply(op::Purge{401, 0, 0, 0});
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 2);
  EXPECT_EQ(GetHead().purged_through, 5);  // M1's deleted event
  // Then M2 and C1 (deleted at 1000).
  purge = Apply(op::Purge{1001, 0, 0, 0});
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 4);
  EXPECT_EQ(GetHead().purged_through, expire.last_seq);
  EXPECT_EQ(GetHead().last_seq, head.last_seq);
  const std::vector<Event> left = History();
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[1].id, Id('C', 2));
  EXPECT_EQ(RawQuery(path_, "SELECT count(*) FROM messages"), "0");
  EXPECT_EQ(RawQuery(path_, "SELECT count(*) FROM conversations"), "1");
}

TEST_F(SqliteStoreTest, IdempotentSendReplays) {
  const std::string alice = SetUpBasics();
  Write first = Apply(Send(1, Id('C', 1), alice, "hello", 300, "k"));
  ASSERT_TRUE(first.status.ok());
  Write replay = Apply(Send(2, Id('C', 1), alice, "other body", 350, "k", 300));
  const auto& r = std::get<op::SendMessage>(replay.op);
  EXPECT_TRUE(r.replayed);
  EXPECT_EQ(r.message, (Message{Id('M', 1), Id('C', 1), alice, "hello", 300, std::nullopt}));
  EXPECT_EQ(replay.last_seq, 0);
  // Expired key (created at 300 < 301): a new message, replacing the record.
  Write again = Apply(Send(3, Id('C', 1), alice, "new", 400, "k", 301));
  EXPECT_FALSE(std::get<op::SendMessage>(again.op).replayed);
  EXPECT_EQ(RawQuery(path_, "SELECT message_id FROM idempotency WHERE key = 'k'"), Id('M', 3));

  // Deleted, then purged: the replay still answers from the record.
  ASSERT_TRUE(ApplyStatus(op::DeleteMessage{Id('M', 3), 500}).ok());
  replay = Apply(Send(4, Id('C', 1), alice, "x", 550, "k", 0));
  EXPECT_EQ(std::get<op::SendMessage>(replay.op).message,
            (Message{Id('M', 3), Id('C', 1), alice, "", 400, Micros{500}}));
  ASSERT_TRUE(ApplyStatus(op::Purge{501, 0, 0, 0}).ok());
  Message m;
  ASSERT_TRUE(store_->GetMessage(Id('M', 3), &m).IsNotFound());
  replay = Apply(Send(5, Id('C', 1), alice, "x", 600, "k", 0));
  EXPECT_TRUE(std::get<op::SendMessage>(replay.op).replayed);
  EXPECT_EQ(std::get<op::SendMessage>(replay.op).message,
            (Message{Id('M', 3), Id('C', 1), alice, "", 400, std::nullopt}));
  // GC of the records.
  ASSERT_TRUE(ApplyStatus(op::Purge{0, 0, 0, 401}).ok());
  EXPECT_EQ(RawQuery(path_, "SELECT count(*) FROM idempotency"), "0");
}

TEST_F(SqliteStoreTest, SessionsAndInvitationsAreGarbageCollected) {
  const std::string alice = SetUpBasics();  // session tok1 used at 100
  ASSERT_TRUE(ApplyStatus(op::CreateSession{MakeSession(2, alice, 500)}).ok());
  ASSERT_TRUE(ApplyStatus(op::CreateInvitation{{Id('I', 1), alice, 100, false}}).ok());
  ASSERT_TRUE(ApplyStatus(op::CreateInvitation{{Id('I', 2), alice, 500, false}}).ok());
  ASSERT_TRUE(ApplyStatus(op::Purge{0, 200, 200, 0}).ok());
  Session s;
  EXPECT_TRUE(store_->FindSession("tok1", &s).IsNotFound());
  EXPECT_TRUE(store_->FindSession("tok2", &s).ok());
  Invitation inv;
  EXPECT_TRUE(store_->GetInvitation(Id('I', 1), &inv).IsNotFound());
  EXPECT_TRUE(store_->GetInvitation(Id('I', 2), &inv).ok());
}

// ---- Concurrency and notification ----

TEST_F(SqliteStoreTest, ConcurrentWritersAndPollingReader) {
  const std::string alice = SetUpBasics();
  constexpr int kThreads = 8;
  constexpr int kBatches = 30;
  std::atomic<bool> done{false};
  std::vector<std::int64_t> seen;
  bool reader_ok = true;
  std::thread reader([&] {
    std::int64_t cursor = 0;
    std::uint64_t generation = store_->CommitGeneration();
    while (true) {
      const bool last = done.load();
      std::vector<Event> got;
      if (!store_->ReadEvents(cursor, INT64_MAX, 100, &got).ok()) reader_ok = false;
      for (const Event& e : got) {
        if (e.seq <= cursor) reader_ok = false;
        cursor = e.seq;
        seen.push_back(e.seq);
      }
      if (got.size() == 100) continue;
      if (last) break;
      generation = store_->WaitForCommit(generation, std::chrono::milliseconds(5));
    }
  });
  std::vector<std::vector<std::int64_t>> acked(kThreads);
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<Write> batch(b % 3 == 0 ? 10 : 1);
        for (std::size_t k = 0; k < batch.size(); ++k) {
          const std::int64_t n = t * 100000 + b * 100 + static_cast<std::int64_t>(k);
          batch[k].op = Send(n, Id('C', 1), alice, "m", 1000 + b);
        }
        if (!store_->Apply(batch).ok()) return;
        for (const Write& w : batch) {
          if (w.status.ok()) acked[t].push_back(w.last_seq);
        }
      }
    });
  }
  for (std::thread& w : writers) w.join();
  done.store(true);
  reader.join();
  EXPECT_TRUE(reader_ok);

  std::set<std::int64_t> all;
  std::size_t count = 0;
  for (const auto& a : acked) {
    all.insert(a.begin(), a.end());
    count += a.size();
  }
  EXPECT_EQ(count, static_cast<std::size_t>(kThreads * (10 * 10 + 20)));
  EXPECT_EQ(all.size(), count);
  std::vector<std::int64_t> final_seqs;
  for (const Event& e : History()) final_seqs.push_back(e.seq);
  EXPECT_EQ(seen, final_seqs);
  // No gaps at all here: nothing failed, nothing was purged.
  ASSERT_FALSE(final_seqs.empty());
  EXPECT_EQ(final_seqs.front(), 1);
  EXPECT_EQ(final_seqs.back(), static_cast<std::int64_t>(final_seqs.size()));
}

TEST_F(SqliteStoreTest, WaitForCommitWakesOnCommit) {
  const std::uint64_t g0 = store_->CommitGeneration();
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(store_->WaitForCommit(g0, std::chrono::milliseconds(30)), g0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(25));

  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    Apply(op::Setup{MakeUser(1, "alice", 1), MakeSession(1, Id('U', 1), 1)});
  });
  start = std::chrono::steady_clock::now();
  const std::uint64_t g1 = store_->WaitForCommit(g0, std::chrono::seconds(10));
  writer.join();
  EXPECT_NE(g1, g0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(store_->CommitGeneration(), g1);
}

// ---- Maintenance (engine interface version 2) ----

std::unique_ptr<Engine> OpenEngine(const std::string& path, EngineUse use = EngineUse::kServe) {
  std::unique_ptr<Engine> engine;
  const Status s = OpenSqliteEngine(path, use, &engine);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return engine;
}

TEST_F(SqliteStoreTest, HeadBreakRoundTripsAndSurvivesReopen) {
  store_.reset();
  const Head marked{40, 12, 20, 1000};
  testing::ExpectSetHead(*OpenEngine(path_), marked);
  EXPECT_EQ(testing::ReadHead(*OpenEngine(path_)), marked);
  // The chat rules keep the break when they move the head.
  Open();
  EXPECT_EQ(GetHead(), marked);
  Write w = Apply(op::Setup{MakeUser(1, "alice", 100), MakeSession(1, Id('U', 1), 100)});
  EXPECT_EQ(w.last_seq, 41);
  EXPECT_EQ(GetHead(), (Head{41, 12, 20, 1000}));
}

// A database of schema 1 gets the break fields, 0 and 0, and keeps them.
TEST_F(SqliteStoreTest, MigratesSchema1) {
  store_.reset();
  RawExec(path_,
          "DELETE FROM meta WHERE key IN ('lost_after', 'lost_through'); "
          "PRAGMA user_version = 1");
  std::unique_ptr<Engine> engine = OpenEngine(path_);
  EXPECT_EQ(RawQuery(path_, "PRAGMA user_version"), "2");
  EXPECT_EQ(testing::ReadHead(*engine), Head{});
  testing::ExpectSetHead(*engine, Head{3, 1, 2, 50});
}

TEST_F(SqliteStoreTest, ListingsPageThroughEverythingOnce) {
  store_.reset();
  std::unique_ptr<Engine> engine = OpenEngine(path_);
  testing::ExpectListingsOfSample(*engine);
  // In key order: ids bytewise, idempotency by (sender, key).
  std::unique_ptr<RecordReader> reader;
  ASSERT_TRUE(engine->BeginRead(&reader).ok());
  std::vector<User> users;
  ASSERT_TRUE(reader->ListUsers("", 100, &users).ok());
  std::vector<std::string> ids;
  for (const User& u : users) ids.push_back(u.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"U1", "U2", "U3", "U4", "U5", "U6", "U7"}));
  users.clear();
  ASSERT_TRUE(reader->ListUsers("U3", 2, &users).ok());
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[0].id, "U4");
  std::vector<IdempotencyRecord> keys;
  ASSERT_TRUE(reader->ListIdempotency(IdempotencyKey{"U10", "a"}, 3, &keys).ok());
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].sender + "/" + keys[0].key, "U10/b");
  EXPECT_EQ(keys[1].sender + "/" + keys[1].key, "U2/k1");
  EXPECT_EQ(keys[2].sender + "/" + keys[2].key, "U2/zz");
}

TEST_F(SqliteStoreTest, RemoveEverythingLeavesANewStore) {
  testing::RunWorkload(*store_);
  store_.reset();
  testing::ExpectRemoveEverythingEmpties(*OpenEngine(path_, EngineUse::kMaintain));
  for (const char* table :
       {"users", "sessions", "invitations", "conversations", "messages", "events", "idempotency"}) {
    EXPECT_EQ(RawQuery(path_, std::string("SELECT count(*) FROM ") + table), "0") << table;
  }
  Open();
  Write setup = Apply(op::Setup{MakeUser(1, "alice", 100), MakeSession(1, Id('U', 1), 100)});
  EXPECT_EQ(setup.last_seq, 1);
}

TEST_F(SqliteStoreTest, InsertRecordsCopiesAStoreThatThenServes) {
  testing::RunWorkload(*store_);
  testing::Contents source;
  // A second engine for kServe beside the open store: servers share.
  ASSERT_TRUE(testing::ReadContents(*OpenEngine(path_), 2, &source).ok());
  ASSERT_FALSE(source.events.empty());
  const std::string copy = dir_ + "/copy.db";
  testing::ExpectCopies(source, *OpenEngine(copy, EngineUse::kMaintain));
  std::unique_ptr<Store> served;
  ASSERT_TRUE(OpenSqliteStore(copy, &served).ok());
  testing::ExpectServes(*served, source);
}

TEST_F(SqliteStoreTest, HoldKeepsServersAndMaintenanceApart) {
  std::unique_ptr<Engine> second = OpenEngine(path_);  // beside store_: shared
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(fs::exists(path_ + "-lock"));
  std::unique_ptr<Engine> engine;
  Status s = OpenSqliteEngine(path_, EngineUse::kMaintain, &engine);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_EQ(s.message(),
            "SQLite database '" + path_ + "' is in use by a running quire server; stop it first");
  // Still refused while one server is left.
  store_.reset();
  EXPECT_TRUE(OpenSqliteEngine(path_, EngineUse::kMaintain, &engine).IsUnavailable());
  second.reset();

  engine = OpenEngine(path_, EngineUse::kMaintain);
  ASSERT_NE(engine, nullptr);
  std::unique_ptr<Store> store;
  s = OpenSqliteStore(path_, &store);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_EQ(s.message(), "SQLite database '" + path_ +
                             "' is being migrated, restored or checked by another quire command");
  std::unique_ptr<Engine> other;
  s = OpenSqliteEngine(path_, EngineUse::kMaintain, &other);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("being migrated"), std::string::npos) << s.message();
  engine.reset();
  Open();  // released with the engine
}

TEST_F(SqliteStoreTest, BackupWhileWriting) {
  const std::string alice = SetUpBasics();
  std::unique_ptr<Engine> engine = OpenEngine(path_);  // beside store_, which writes
  const std::string backup = dir_ + "/backup.db";
  Head before, after;
  const std::vector<Event> history = testing::BackUpWhileWriting(
      *engine, *store_,
      [&](int n) { return Send(n, Id('C', 1), alice, std::string(500, 'x'), 1000 + n); }, backup,
      &before, &after);
  EXPECT_EQ(engine->Backup(backup).code(), Status::Code::kInvalid);
  EXPECT_FALSE(fs::exists(backup + "-wal"));  // one file
  std::unique_ptr<Store> copy;
  ASSERT_TRUE(OpenSqliteStore(backup, &copy).ok());
  testing::ExpectConsistentBackup(*copy, before, after, history);
  Head copied;
  ASSERT_TRUE(copy->GetHead(&copied).ok());
  EXPECT_EQ(RawQuery(backup, "SELECT count(*) FROM messages"), std::to_string(copied.last_seq - 2));
}

TEST_F(SqliteStoreTest, BackupRefusesAnExistingFile) {
  const std::string taken = dir_ + "/taken.db";
  std::ofstream(taken) << "x";
  std::unique_ptr<Engine> engine = OpenEngine(path_);
  const Status s = engine->Backup(taken);
  EXPECT_EQ(s.code(), Status::Code::kInvalid) << s.ToString();
  std::ifstream in(taken);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "x");
  EXPECT_FALSE(engine->Backup(dir_ + "/no/such/dir/b.db").ok());
}

TEST_F(SqliteStoreTest, CheckIntegrityFindsBrokenForeignKeys) {
  testing::RunWorkload(*store_);
  std::unique_ptr<Engine> engine = OpenEngine(path_);
  std::vector<std::string> problems;
  ASSERT_TRUE(engine->CheckIntegrity(&problems).ok());
  EXPECT_TRUE(problems.empty()) << problems.front();
  // A raw connection does not enforce foreign keys.
  RawExec(path_,
          "INSERT INTO messages (id, conversation, sender, body, at) "
          "VALUES ('M-orphan', 'C-gone', 'U1', 'x', 1); "
          "INSERT INTO sessions VALUES ('t-orphan', 'U-gone', 1, 1)");
  ASSERT_TRUE(engine->CheckIntegrity(&problems).ok());
  std::sort(problems.begin(), problems.end());
  EXPECT_EQ(problems, (std::vector<std::string>{
                          "SQLite foreign key: messages M-orphan refers to C-gone, which is not "
                          "in conversations",
                          "SQLite foreign key: sessions t-orphan refers to U-gone, which is not "
                          "in users"}));
}

}  // namespace
}  // namespace quire::storage
