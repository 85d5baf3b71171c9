// Unit tests of the LMDB backend beyond the conformance suite: URLs, the map
// growing past its initial size, the one-process lock, durability across
// reopening, refusing directories that are not Quire's, and the maintenance
// functions of the engine (listings, copying in, wiping, the serving lock,
// backups, the index check).
#include "storage/lmdb/lmdb_store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "storage/chat_rules.h"
#include "storage/lmdb/lmdb_codec.h"
#include "storage/lmdb/lmdb_options.h"
#include "tests/support/engine_samples.h"

namespace quire::storage {
namespace {

class LmdbStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "quire-lmdb-unit-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    dir_ = root_ + "/store";  // not there yet: opening creates it
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::unique_ptr<Store> Open(const std::string& url) {
    std::unique_ptr<Store> store;
    const Status s = OpenLmdbStore(url, &store);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return store;
  }

  static Write One(op::Operation operation) {
    Write w;
    w.op = std::move(operation);
    return w;
  }

  static void ApplyOk(Store& store, std::vector<Write>& batch) {
    const Status s = store.Apply(batch);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (const Write& w : batch) ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  }

  // A first user U1 and a conversation C1.
  static void SetUpRoom(Store& store) {
    std::vector<Write> batch;
    batch.push_back(
        One(op::Setup{User{"U1", "first", "first", "hash", 1}, Session{"token-1", "U1", 1, 1}}));
    batch.push_back(One(op::CreateConversation{Conversation{"C1", "room", "room", 2, 2, {}}}));
    ApplyOk(store, batch);
  }

  static Message MakeMessage(int n, const std::string& body) {
    return Message{"M" + std::to_string(n), "C1", "U1", body, 1000 + n, std::nullopt};
  }

  std::string root_;
  std::string dir_;
};

TEST_F(LmdbStoreTest, ParsesUrls) {
  LmdbOptions options;
  ASSERT_TRUE(ParseLmdbUrl("lmdb:/var/lib/quire", &options).ok());
  EXPECT_EQ(options.dir, "/var/lib/quire");
  EXPECT_TRUE(options.sync);
  ASSERT_TRUE(ParseLmdbUrl("lmdb:relative/dir?sync=off", &options).ok());
  EXPECT_EQ(options.dir, "relative/dir");
  EXPECT_FALSE(options.sync);
  ASSERT_TRUE(ParseLmdbUrl("lmdb:/d?sync=full", &options).ok());
  EXPECT_TRUE(options.sync);
  ASSERT_TRUE(ParseLmdbUrl("/plain/dir", &options).ok());
  EXPECT_EQ(options.dir, "/plain/dir");
}

TEST_F(LmdbStoreTest, RefusesBadUrls) {
  Registry registry;
  RegisterLmdbBackend(registry);
  for (const std::string url : {"lmdb:", "lmdb:?sync=off", "lmdb:/d?sync=maybe", "lmdb:/d?cache=1",
                                "lmdb:/d?", "lmdb:/d?sync=off&", "lmdb://host/d"}) {
    std::unique_ptr<Store> store;
    const Status s = registry.Open(url, &store);
    EXPECT_EQ(s.code(), Status::Code::kInvalid) << url << ": " << s.ToString();
    EXPECT_EQ(store, nullptr);
  }
  std::unique_ptr<Store> store;
  EXPECT_TRUE(registry.Open("lmdb:" + dir_, &store).ok());
}

TEST_F(LmdbStoreTest, CapabilitiesFollowSync) {
  std::unique_ptr<Store> store = Open("lmdb:" + dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->capabilities().multi_process_writers);
  EXPECT_TRUE(store->capabilities().survives_process_kill);
  EXPECT_TRUE(store->capabilities().survives_power_loss);
  store.reset();
  store = Open("lmdb:" + dir_ + "?sync=off");
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->capabilities().survives_process_kill);
  EXPECT_FALSE(store->capabilities().survives_power_loss);
}

TEST_F(LmdbStoreTest, MapGrowsPastInitialSize) {
  constexpr std::size_t kInitialMap = 1 << 20;
  constexpr int kMessages = 3000;
  const std::string body(2000, 'x');
  std::unique_ptr<Store> store;
  ASSERT_TRUE(OpenLmdbStoreWithOptions({dir_, true, kInitialMap}, &store).ok());
  SetUpRoom(*store);
  // Small batches, then one batch alone several times the initial map.
  int n = 0;
  for (int b = 0; b < 10; ++b) {
    std::vector<Write> batch;
    for (int k = 0; k < 50; ++k)
      batch.push_back(One(op::SendMessage{MakeMessage(++n, body), "", 0, false}));
    ApplyOk(*store, batch);
  }
  std::vector<Write> big;
  while (n < kMessages) big.push_back(One(op::SendMessage{MakeMessage(++n, body), "", 0, false}));
  ApplyOk(*store, big);
  EXPECT_EQ(big.back().last_seq, kMessages + 2);
  store.reset();
  EXPECT_GT(std::filesystem::file_size(dir_ + "/data.mdb"), 4 * kInitialMap);

  ASSERT_TRUE(OpenLmdbStoreWithOptions({dir_, true, kInitialMap}, &store).ok());
  Head head;
  ASSERT_TRUE(store->GetHead(&head).ok());
  EXPECT_EQ(head.last_seq, kMessages + 2);
  std::vector<Event> events;
  ASSERT_TRUE(store->ReadEvents(0, INT64_MAX, 1000000, &events).ok());
  ASSERT_EQ(events.size(), static_cast<std::size_t>(kMessages + 2));
  for (int i = 1; i <= kMessages; ++i) {
    Message m;
    ASSERT_TRUE(store->GetMessage("M" + std::to_string(i), &m).ok()) << i;
    EXPECT_EQ(m, MakeMessage(i, body));
    EXPECT_EQ(events[i + 1].seq, i + 2);
    EXPECT_EQ(events[i + 1].text, body);
  }
  // And it still grows after reopening.
  std::vector<Write> more;
  while (n < kMessages + 1000)
    more.push_back(One(op::SendMessage{MakeMessage(++n, body), "", 0, false}));
  ApplyOk(*store, more);
}

// A batch that does not fit even in the largest map fails as a whole, as
// IoError, and the store goes on.
TEST_F(LmdbStoreTest, BatchBeyondTheMapLimitFails) {
  std::unique_ptr<Store> store;
  ASSERT_TRUE(OpenLmdbStoreWithOptions({dir_, true, 1 << 20, 2 << 20}, &store).ok());
  SetUpRoom(*store);
  Head before;
  ASSERT_TRUE(store->GetHead(&before).ok());
  std::vector<Write> huge;
  for (int n = 1; n <= 2000; ++n) {
    huge.push_back(One(op::SendMessage{MakeMessage(n, std::string(2000, 'x')), "", 0, false}));
  }
  const Status s = store->Apply(huge);
  EXPECT_EQ(s.code(), Status::Code::kIoError) << s.ToString();
  for (const Write& w : huge) {
    EXPECT_EQ(w.status.code(), Status::Code::kIoError);
    EXPECT_EQ(w.last_seq, 0);
  }
  Head after;
  ASSERT_TRUE(store->GetHead(&after).ok());
  EXPECT_EQ(after.last_seq, before.last_seq);
  Message m;
  EXPECT_TRUE(store->GetMessage("M1", &m).IsNotFound());
  std::vector<Write> small;
  small.push_back(One(op::SendMessage{MakeMessage(1, "fits"), "", 0, false}));
  ApplyOk(*store, small);
  EXPECT_EQ(small[0].last_seq, before.last_seq + 1);
}

TEST_F(LmdbStoreTest, SecondProcessGetsUnavailable) {
  int ready[2], release[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(release), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    close(release[1]);
    std::unique_ptr<Store> store;
    if (!OpenLmdbStore("lmdb:" + dir_, &store).ok()) _exit(2);
    if (write(ready[1], "r", 1) != 1) _exit(3);
    char byte;
    while (read(release[0], &byte, 1) > 0) {
    }
    store.reset();
    _exit(0);
  }
  close(ready[1]);
  close(release[0]);
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1) << "the child could not open the store";

  std::unique_ptr<Store> store;
  const Status s = OpenLmdbStore("lmdb:" + dir_, &store);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_NE(s.message().find("LMDB directory " + dir_ + " is in use by another process"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(store, nullptr);

  close(release[1]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  close(ready[0]);
  EXPECT_TRUE(OpenLmdbStore("lmdb:" + dir_, &store).ok());
}

TEST_F(LmdbStoreTest, OneOpenAtATimeInOneProcessToo) {
  std::unique_ptr<Store> first = Open("lmdb:" + dir_);
  ASSERT_NE(first, nullptr);
  std::unique_ptr<Store> second;
  EXPECT_TRUE(OpenLmdbStore("lmdb:" + dir_, &second).IsUnavailable());
  first.reset();
  EXPECT_TRUE(OpenLmdbStore("lmdb:" + dir_, &second).ok());
}

TEST_F(LmdbStoreTest, ReopenKeepsEverything) {
  for (const std::string params : {"", "?sync=off"}) {
    SCOPED_TRACE(params);
    const std::string dir = dir_ + std::to_string(params.size());
    std::unique_ptr<Store> store = Open("lmdb:" + dir + params);
    ASSERT_NE(store, nullptr);
    SetUpRoom(*store);
    std::vector<Write> batch;
    batch.push_back(One(op::SendMessage{MakeMessage(1, "kept"), "key", 0, false}));
    batch.push_back(One(op::CreateInvitation{Invitation{"I1", "U1", 5, false}}));
    batch.push_back(One(op::TouchSession{"token-1", 9}));
    ApplyOk(*store, batch);
    Head head;
    ASSERT_TRUE(store->GetHead(&head).ok());
    store.reset();

    store = Open("lmdb:" + dir + params);
    ASSERT_NE(store, nullptr);
    Head reopened;
    ASSERT_TRUE(store->GetHead(&reopened).ok());
    EXPECT_EQ(reopened.last_seq, head.last_seq);
    Message m;
    ASSERT_TRUE(store->GetMessage("M1", &m).ok());
    EXPECT_EQ(m.body, "kept");
    Session session;
    ASSERT_TRUE(store->FindSession("token-1", &session).ok());
    EXPECT_EQ(session.last_used, 9);
    Invitation invitation;
    EXPECT_TRUE(store->GetInvitation("I1", &invitation).ok());
    User user;
    ASSERT_TRUE(store->FindUserByCanonicalName("first", &user).ok());
    EXPECT_EQ(user.id, "U1");
    std::vector<Write> replay;
    replay.push_back(One(op::SendMessage{MakeMessage(2, "again"), "key", 0, false}));
    ApplyOk(*store, replay);
    EXPECT_TRUE(std::get<op::SendMessage>(replay[0].op).replayed);
  }
}

// Canonical names longer than an LMDB key (511 bytes) are still exact.
TEST_F(LmdbStoreTest, LongNamesAreExact) {
  std::unique_ptr<Store> store = Open("lmdb:" + dir_);
  ASSERT_NE(store, nullptr);
  SetUpRoom(*store);
  const std::string stem(1000, 'n');
  std::vector<Write> batch;
  batch.push_back(One(op::CreateConversation{Conversation{"C2", "a", stem + "a", 3, 3, {}}}));
  batch.push_back(One(op::CreateConversation{Conversation{"C3", "b", stem + "b", 3, 3, {}}}));
  batch.push_back(One(op::CreateConversation{Conversation{"C4", "a", stem + "a", 3, 3, {}}}));
  batch.push_back(One(op::DeleteConversation{"C2", 4}));
  batch.push_back(One(op::CreateConversation{Conversation{"C5", "a", stem + "a", 5, 5, {}}}));
  ASSERT_TRUE(store->Apply(batch).ok());
  EXPECT_TRUE(batch[0].status.ok()) << batch[0].status.ToString();
  EXPECT_TRUE(batch[1].status.ok()) << batch[1].status.ToString();
  EXPECT_TRUE(batch[2].status.IsConflict()) << batch[2].status.ToString();
  EXPECT_TRUE(batch[3].status.ok()) << batch[3].status.ToString();
  EXPECT_TRUE(batch[4].status.ok()) << batch[4].status.ToString();

  std::vector<Write> users;
  users.push_back(One(op::CreateInvitation{Invitation{"I1", "U1", 5, false}}));
  users.push_back(One(op::AcceptInvitation{"I1", 0, User{"U2", "long", stem, "h", 6},
                                           Session{"token-2", "U2", 6, 6}}));
  ApplyOk(*store, users);
  User user;
  ASSERT_TRUE(store->FindUserByCanonicalName(stem, &user).ok());
  EXPECT_EQ(user.id, "U2");
  EXPECT_TRUE(store->FindUserByCanonicalName(stem + "x", &user).IsNotFound());
}

// A key LMDB cannot store fails that write alone, as Invalid.
TEST_F(LmdbStoreTest, OversizedKeyFailsOneWrite) {
  std::unique_ptr<Store> store = Open("lmdb:" + dir_);
  ASSERT_NE(store, nullptr);
  SetUpRoom(*store);
  std::vector<Write> batch;
  batch.push_back(One(op::CreateInvitation{Invitation{std::string(600, 'I'), "U1", 5, false}}));
  batch.push_back(One(op::CreateInvitation{Invitation{"I2", "U1", 5, false}}));
  ASSERT_TRUE(store->Apply(batch).ok());
  EXPECT_EQ(batch[0].status.code(), Status::Code::kInvalid) << batch[0].status.ToString();
  EXPECT_TRUE(batch[1].status.ok());
  Invitation invitation;
  EXPECT_TRUE(store->GetInvitation(std::string(600, 'I'), &invitation).IsNotFound());
  EXPECT_TRUE(store->GetInvitation("", &invitation).IsNotFound());
}

TEST_F(LmdbStoreTest, CreateSessionForUnknownUserIsNotFound) {
  std::unique_ptr<Store> store = Open("lmdb:" + dir_);
  ASSERT_NE(store, nullptr);
  SetUpRoom(*store);
  std::vector<Write> batch;
  batch.push_back(One(op::CreateSession{Session{"token-9", "U404", 1, 1}}));
  batch.push_back(One(op::CreateSession{Session{"token-1", "U1", 1, 1}}));
  ASSERT_TRUE(store->Apply(batch).ok());
  EXPECT_TRUE(batch[0].status.IsNotFound()) << batch[0].status.ToString();
  EXPECT_TRUE(batch[1].status.IsConflict()) << batch[1].status.ToString();
}

// The bytes of `bytes` for LMDB; `bytes` must outlive the call that uses it.
MDB_val Val(const std::string& bytes) {
  return MDB_val{bytes.size(), const_cast<char*>(bytes.data())};
}

// Runs fn(txn, dbi) in a write transaction on the database `name` (nullptr:
// the unnamed one) of a plain LMDB environment in `dir`, outside the
// backend (which must not have it open), and commits.
template <typename Fn>
void RawLmdb(const std::string& dir, const char* name, Fn fn, unsigned dbi_flags = 0) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 32), 0);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0644), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  ASSERT_EQ(mdb_dbi_open(txn, name, dbi_flags, &dbi), 0);
  fn(txn, dbi);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

// Writes `name` → `value` into the unnamed database of a plain LMDB
// environment in `dir`, or, with `named`, creates a named database `name`.
void WriteRawLmdb(const std::string& dir, const std::string& name, const std::string& value,
                  bool named) {
  if (named) {
    RawLmdb(
        dir, name.c_str(), [](MDB_txn*, MDB_dbi) {}, MDB_CREATE);
    return;
  }
  RawLmdb(dir, nullptr, [&](MDB_txn* txn, MDB_dbi dbi) {
    MDB_val k = Val(name);
    MDB_val v = Val(value);
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  });
}

TEST_F(LmdbStoreTest, RefusesForeignLmdb) {
  std::filesystem::create_directories(dir_);
  WriteRawLmdb(dir_, "accounts", "", /*named=*/true);
  std::unique_ptr<Store> store;
  Status s = OpenLmdbStore("lmdb:" + dir_, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find("not Quire's"), std::string::npos) << s.message();

  const std::string plain = root_ + "/plain";
  std::filesystem::create_directories(plain);
  WriteRawLmdb(plain, "meta", "not a database", /*named=*/false);
  s = OpenLmdbStore("lmdb:" + plain, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
}

TEST_F(LmdbStoreTest, RefusesNewerSchema) {
  ASSERT_NE(Open("lmdb:" + dir_), nullptr);
  RawLmdb(dir_, "meta", [](MDB_txn* txn, MDB_dbi meta) {
    const std::string key = "schema_version";
    const std::string value = lmdb_codec::Encoder().Int(99).bytes();
    MDB_val k = Val(key);
    MDB_val v = Val(value);
    ASSERT_EQ(mdb_put(txn, meta, &k, &v, 0), 0);
  });

  std::unique_ptr<Store> store;
  const Status s = OpenLmdbStore("lmdb:" + dir_, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find("schema version 99, newer"), std::string::npos) << s.message();
}

TEST_F(LmdbStoreTest, RefusesFilesThatAreNotLmdb) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/data.mdb") << std::string(65536, 'z');
  std::unique_ptr<Store> store;
  const Status s = OpenLmdbStore("lmdb:" + dir_, &store);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt) << s.ToString();
}

TEST_F(LmdbStoreTest, DirectoryThatCannotBeCreatedIsUnavailable) {
  std::ofstream(root_ + "/file") << "x";
  std::unique_ptr<Store> store;
  const Status s = OpenLmdbStore("lmdb:" + root_ + "/file/store", &store);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
}

TEST(LmdbCodecTest, IntegersSortNumerically) {
  const std::vector<std::int64_t> values = {INT64_MIN, -5, -1, 0, 1, 255, 256, INT64_MAX};
  for (std::size_t i = 1; i < values.size(); ++i) {
    EXPECT_LT(lmdb_codec::Encoder().Int(values[i - 1]).bytes(),
              lmdb_codec::Encoder().Int(values[i]).bytes());
  }
  for (std::int64_t v : values) {
    EXPECT_EQ(lmdb_codec::Decoder(lmdb_codec::Encoder().Int(v).bytes()).Int(), v);
  }
}

TEST(LmdbCodecTest, TruncatedRecordsAreCorrupt) {
  const Event event{7, EventKind::kMessageSent, 5, "M1", "C1", "U1", "text", Micros{9}};
  const std::string bytes = lmdb_codec::Encode(event);
  Event decoded = lmdb_codec::Decode<Event>(bytes);
  decoded.seq = 7;  // not in the record: it is the key
  EXPECT_EQ(decoded, event);
  EXPECT_THROW(lmdb_codec::Decode<Event>(bytes.substr(0, bytes.size() - 1)),
               lmdb_codec::CorruptRecord);
  EXPECT_THROW(lmdb_codec::Decode<Event>(bytes + "x"), lmdb_codec::CorruptRecord);
}

// ---- Maintenance (engine interface version 2) ----

std::unique_ptr<Engine> OpenEngine(const std::string& dir, EngineUse use = EngineUse::kServe) {
  std::unique_ptr<Engine> engine;
  const Status s = OpenLmdbEngine("lmdb:" + dir, use, &engine);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return engine;
}

// Runs RunWorkload on a store in `dir`, closed again after.
void FillWithWorkload(const std::string& dir) {
  std::unique_ptr<Store> store;
  ASSERT_TRUE(OpenLmdbStore("lmdb:" + dir, &store).ok());
  testing::RunWorkload(*store);
}

TEST_F(LmdbStoreTest, HeadBreakRoundTripsAndSurvivesReopen) {
  const Head marked{40, 12, 20, 1000};
  testing::ExpectSetHead(*OpenEngine(dir_), marked);
  EXPECT_EQ(testing::ReadHead(*OpenEngine(dir_)), marked);
  std::unique_ptr<Store> store = Open("lmdb:" + dir_);
  ASSERT_NE(store, nullptr);
  SetUpRoom(*store);
  Head head;
  ASSERT_TRUE(store->GetHead(&head).ok());
  EXPECT_EQ(head, (Head{42, 12, 20, 1000}));
}

// Environments written before the break fields existed read them as 0.
TEST_F(LmdbStoreTest, EnvironmentWithoutBreakFieldsOpens) {
  testing::ExpectSetHead(*OpenEngine(dir_), Head{7, 3, 5, 6});
  RawLmdb(dir_, "meta", [](MDB_txn* txn, MDB_dbi meta) {
    for (const std::string key : {"lost_after", "lost_through"}) {
      MDB_val k = Val(key);
      EXPECT_EQ(mdb_del(txn, meta, &k, nullptr), 0) << key;
    }
  });
  std::unique_ptr<Engine> engine = OpenEngine(dir_);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(testing::ReadHead(*engine), (Head{7, 3, 0, 0}));
}

TEST_F(LmdbStoreTest, ListingsPageThroughEverythingOnce) {
  std::unique_ptr<Engine> engine = OpenEngine(dir_);
  testing::ExpectListingsOfSample(*engine);
  std::unique_ptr<RecordReader> reader;
  ASSERT_TRUE(engine->BeginRead(&reader).ok());
  std::vector<Message> messages;
  ASSERT_TRUE(reader->ListMessages("M3", 2, &messages).ok());
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].id, "M4");
  EXPECT_EQ(messages[1].id, "M5");
  EXPECT_TRUE(messages[1].deleted_at.has_value());
}

TEST_F(LmdbStoreTest, RemoveEverythingLeavesANewStore) {
  FillWithWorkload(dir_);
  testing::ExpectRemoveEverythingEmpties(*OpenEngine(dir_, EngineUse::kMaintain));
  // Every table is empty, the index tables too; meta keeps the schema
  // version and the head.
  RawLmdb(dir_, nullptr, [](MDB_txn* txn, MDB_dbi main) {
    MDB_cursor* cursor = nullptr;
    ASSERT_EQ(mdb_cursor_open(txn, main, &cursor), 0);
    MDB_val name, unused;
    for (int rc = mdb_cursor_get(cursor, &name, &unused, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &name, &unused, MDB_NEXT)) {
      const std::string table(static_cast<const char*>(name.mv_data), name.mv_size);
      MDB_dbi dbi;
      ASSERT_EQ(mdb_dbi_open(txn, table.c_str(), 0, &dbi), 0);
      MDB_stat stat;
      ASSERT_EQ(mdb_stat(txn, dbi, &stat), 0);
      EXPECT_EQ(stat.ms_entries, table == "meta" ? 5u : 0u) << table;
    }
    mdb_cursor_close(cursor);
  });
  std::unique_ptr<Store> store = Open("lmdb:" + dir_);
  ASSERT_NE(store, nullptr);
  std::vector<Write> batch;
  batch.push_back(
      One(op::Setup{User{"U1", "first", "first", "hash", 1}, Session{"token-1", "U1", 1, 1}}));
  ApplyOk(*store, batch);
  EXPECT_EQ(batch[0].last_seq, 1);
}

TEST_F(LmdbStoreTest, InsertRecordsCopiesAStoreThatThenServes) {
  FillWithWorkload(dir_);
  testing::Contents source;
  ASSERT_TRUE(testing::ReadContents(*OpenEngine(dir_), 2, &source).ok());
  ASSERT_FALSE(source.events.empty());
  const std::string copy = root_ + "/copy";
  testing::ExpectCopies(source, *OpenEngine(copy, EngineUse::kMaintain));
  {
    std::unique_ptr<Store> served = Open("lmdb:" + copy);
    ASSERT_NE(served, nullptr);
    testing::ExpectServes(*served, source);
  }
  // Serving it kept every index in step.
  std::vector<std::string> problems;
  ASSERT_TRUE(OpenEngine(copy)->CheckIntegrity(&problems).ok());
  EXPECT_TRUE(problems.empty()) << problems.front();
}

TEST_F(LmdbStoreTest, HoldKeepsServersAndMaintenanceApart) {
  std::unique_ptr<Store> store = Open("lmdb:" + dir_);
  ASSERT_NE(store, nullptr);
  std::unique_ptr<Engine> engine;
  Status s = OpenLmdbEngine("lmdb:" + dir_, EngineUse::kMaintain, &engine);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_EQ(s.message(),
            "LMDB store " + dir_ + " is in use by a running quire server; stop it first");
  store.reset();

  engine = OpenEngine(dir_, EngineUse::kMaintain);
  ASSERT_NE(engine, nullptr);
  s = OpenLmdbStore("lmdb:" + dir_, &store);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  EXPECT_EQ(s.message(), "LMDB store " + dir_ +
                             " is being migrated, restored or checked by another quire command");
  std::unique_ptr<Engine> other;
  s = OpenLmdbEngine("lmdb:" + dir_, EngineUse::kMaintain, &other);
  EXPECT_NE(s.message().find("being migrated"), std::string::npos) << s.ToString();
  engine.reset();
  store = Open("lmdb:" + dir_);  // released with the engine
  EXPECT_NE(store, nullptr);

  Registry registry;
  RegisterLmdbBackend(registry);
  store.reset();
  ASSERT_TRUE(registry.OpenEngine("lmdb:" + dir_, EngineUse::kMaintain, &engine).ok());
  EXPECT_TRUE(registry.Open("lmdb:" + dir_, &store).IsUnavailable());
}

TEST_F(LmdbStoreTest, BackupWhileWriting) {
  std::unique_ptr<Engine> engine = OpenEngine(dir_);
  Engine* raw = engine.get();  // the store owns it; it may be used from any thread
  std::unique_ptr<Store> store;
  ASSERT_TRUE(OpenEngineStore(std::move(engine), &store).ok());
  SetUpRoom(*store);
  const std::string backup = root_ + "/backup";
  Head before, after;
  const std::vector<Event> history = testing::BackUpWhileWriting(
      *raw, *store,
      [](int n) {
        return op::SendMessage{MakeMessage(n, std::string(500, 'x')), "", 0, false};
      },
      backup, &before, &after);
  EXPECT_EQ(raw->Backup(backup).code(), Status::Code::kInvalid);  // not empty
  store.reset();
  std::unique_ptr<Store> copy = Open("lmdb:" + backup);
  ASSERT_NE(copy, nullptr);
  testing::ExpectConsistentBackup(*copy, before, after, history);
}

TEST_F(LmdbStoreTest, BackupIntoAnEmptyDirectoryOnly) {
  std::unique_ptr<Engine> engine = OpenEngine(dir_);
  const std::string empty = root_ + "/empty";
  std::filesystem::create_directories(empty);
  ASSERT_TRUE(engine->Backup(empty).ok());
  EXPECT_TRUE(std::filesystem::exists(empty + "/data.mdb"));
  const std::string taken = root_ + "/taken";
  std::filesystem::create_directories(taken);
  std::ofstream(taken + "/file") << "x";
  EXPECT_EQ(engine->Backup(taken).code(), Status::Code::kInvalid);
  EXPECT_FALSE(std::filesystem::exists(taken + "/data.mdb"));
}

TEST_F(LmdbStoreTest, CheckIntegrityFindsIndexesOutOfStep) {
  FillWithWorkload(dir_);
  std::vector<std::string> problems;
  ASSERT_TRUE(OpenEngine(dir_)->CheckIntegrity(&problems).ok());
  EXPECT_TRUE(problems.empty()) << problems.front();

  using lmdb_codec::Encoder;
  // M1 (sent at 101 to C2) loses its entry in messages_live_by_at...
  RawLmdb(dir_, "messages_live_by_at", [](MDB_txn* txn, MDB_dbi dbi) {
    const std::string m1 = Encoder().Int(101).Raw("M1").bytes();
    MDB_val key = Val(m1);
    EXPECT_EQ(mdb_del(txn, dbi, &key, nullptr), 0);
  });
  // ...conversation_messages gains an entry for a message never stored...
  RawLmdb(dir_, "conversation_messages", [](MDB_txn* txn, MDB_dbi dbi) {
    const std::string ghost = Encoder().Str("C1").Raw("M-ghost").bytes();
    const std::string empty;
    MDB_val key = Val(ghost);
    MDB_val value = Val(empty);
    EXPECT_EQ(mdb_put(txn, dbi, &key, &value, 0), 0);
  });
  // ...and the user named "bo" is no longer found by name.
  RawLmdb(dir_, "users_by_name", [](MDB_txn* txn, MDB_dbi dbi) {
    const std::string bucket = "nbo";
    MDB_val key = Val(bucket);
    EXPECT_EQ(mdb_del(txn, dbi, &key, nullptr), 0);
  });
  ASSERT_TRUE(OpenEngine(dir_, EngineUse::kMaintain)->CheckIntegrity(&problems).ok());
  std::sort(problems.begin(), problems.end());
  EXPECT_EQ(problems,
            (std::vector<std::string>{
                "conversation_messages: entry (C1, M-ghost) points at no message",
                "messages_live_by_at: no entry for message M1 (of conversation C2, sent at 101)",
                "users_by_name: no entry for user U2 named 'bo'"}));
}

}  // namespace
}  // namespace quire::storage
