// Unit tests of the LMDB backend beyond the conformance suite: URLs, the map
// growing past its initial size, the one-process lock, durability across
// reopening, and refusing directories that are not Quire's.
#include "storage/lmdb/lmdb_store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "storage/lmdb/lmdb_codec.h"
#include "storage/lmdb/lmdb_options.h"

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

// Writes `name` → `value` into the unnamed database of a plain LMDB
// environment in `dir`, or, with `named`, creates a named database `name`.
void WriteRawLmdb(const std::string& dir, const std::string& name, const std::string& value,
                  bool named) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 32), 0);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0644), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  if (named) {
    ASSERT_EQ(mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbi), 0);
  } else {
    ASSERT_EQ(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
    MDB_val k{name.size(), const_cast<char*>(name.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  }
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
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
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 32), 0);
  ASSERT_EQ(mdb_env_open(env, dir_.c_str(), 0, 0644), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi meta;
  ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), 0);
  const std::string key = "schema_version";
  const std::string value = lmdb_codec::Encoder().Int(99).bytes();
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, meta, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);

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

}  // namespace
}  // namespace quire::storage
