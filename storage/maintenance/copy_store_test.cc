// CopyStore (quire migrate, quire restore) between every pair of the three
// engines, on real files, environments and a real PostgreSQL; CheckStore on
// the copies, and on damage planted through the engine interface.
#include "storage/maintenance/copy_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "storage/lmdb/lmdb_store.h"
#include "storage/maintenance/check_store.h"
#include "storage/maintenance/history_break.h"
#include "storage/maintenance/table_scan.h"
#include "storage/postgres/postgres_store.h"
#include "storage/registry.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/scratch_postgres.h"
#include "tests/support/workload.h"

namespace quire::storage::maintenance {
namespace {

using quire::testing::Snapshot;
using quire::testing::Workload;

Registry& Backends() {
  static Registry* registry = [] {
    auto* r = new Registry();
    RegisterSqliteBackend(*r);
    RegisterLmdbBackend(*r);
    RegisterPostgresBackend(*r);
    return r;
  }();
  return *registry;
}

// Stores of each engine for one test: files and environments in a scratch
// directory, PostgreSQL scratch databases (dropped at the end).
class ScratchStores {
 public:
  ScratchStores() {
    dir_ = std::filesystem::temp_directory_path() /
           ("quire-copy-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~ScratchStores() {
    for (const std::string& url : postgres_) quire::testing::DropScratchDatabase(*admin_, url);
    std::filesystem::remove_all(dir_);
  }

  // A new, empty store's URL for `engine`, or nullopt (with *why) when that
  // engine cannot be tested here.
  std::optional<std::string> New(const std::string& engine, std::string* why) {
    const std::string name = engine + std::to_string(++count_);
    if (engine == "sqlite") return "sqlite:" + (dir_ / (name + ".db")).string();
    if (engine == "lmdb") return "lmdb:" + (dir_ / name).string();
    if (!admin_) admin_ = quire::testing::PostgresAdminUrl(why);
    if (!admin_) return std::nullopt;
    std::optional<std::string> url = quire::testing::CreateScratchDatabase(*admin_, why);
    if (url) postgres_.push_back(*url);
    return url;
  }

 private:
  std::filesystem::path dir_;
  int count_ = 0;
  std::optional<std::string> admin_;
  std::vector<std::string> postgres_;
};

// Applies `batches` batches of the seeded workload to the store of `url`
// and returns its snapshot.
std::string Fill(const std::string& url, Workload& workload, int batches) {
  std::unique_ptr<Store> store;
  Status s = Backends().Open(url, &store);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!store) return "";
  for (int n = 0; n < batches; ++n) {
    std::vector<Write> batch = workload.NextBatch();
    EXPECT_TRUE(store->Apply(batch).ok());
  }
  return Snapshot(*store, workload);
}

std::string SnapshotOf(const std::string& url, const Workload& workload) {
  std::unique_ptr<Store> store;
  Status s = Backends().Open(url, &store);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return store ? Snapshot(*store, workload) : "";
}

std::unique_ptr<Engine> Maintain(const std::string& url) {
  std::unique_ptr<Engine> engine;
  Status s = Backends().OpenEngine(url, EngineUse::kMaintain, &engine);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return engine;
}

std::vector<std::string> Problems(const std::string& url) {
  std::unique_ptr<Engine> engine = Maintain(url);
  if (!engine) return {"cannot open"};
  CheckReport report;
  Status s = CheckStore(*engine, 7, &report);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return report.problems;
}

CopyOptions Quiet() {
  CopyOptions options;
  options.log = nullptr;
  options.batch_rows = 13;  // many pages, and pages that end mid-table
  return options;
}

class CopyBetweenEngines : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(CopyBetweenEngines, CopiesEverythingAndTheCopyServesOn) {
  const auto [from, to] = GetParam();
  ScratchStores stores;
  std::string why;
  const std::optional<std::string> source = stores.New(from, &why);
  const std::optional<std::string> target = stores.New(to, &why);
  if (!source || !target) GTEST_SKIP() << why;

  Workload workload(20261203);
  const std::string before = Fill(*source, workload, 150);
  ASSERT_GT(workload.messages().size(), 80u);
  {
    std::unique_ptr<Engine> source_engine = Maintain(*source);
    std::unique_ptr<Engine> target_engine = Maintain(*target);
    ASSERT_TRUE(source_engine && target_engine);
    CopyReport report;
    Status s = CopyStore(*source_engine, *target_engine, Quiet(), &report);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(report.target_head, report.source_head);
    EXPECT_GT(report.source_head.purged_through, 0) << "the workload purges";
    std::map<std::string, std::uint64_t> rows;
    for (const TableTally& t : report.tables) rows[t.table] = t.rows;
    EXPECT_GT(rows["events"], 10u);
    EXPECT_GT(rows["messages"], 0u);
    EXPECT_GT(rows["idempotency records"], 0u);
    EXPECT_GT(rows["sessions"], 0u);
    EXPECT_GT(rows["invitations"], 0u);
  }
  EXPECT_EQ(SnapshotOf(*target, workload), before) << from << " -> " << to;
  EXPECT_EQ(Problems(*source), std::vector<std::string>{});
  EXPECT_EQ(Problems(*target), std::vector<std::string>{});

  // The copy serves on: the same workload continues on source and target,
  // with the same outcomes (the next sequence, the names taken, the keys).
  Workload again = workload;
  EXPECT_EQ(Fill(*target, workload, 40), Fill(*source, again, 40));
}

std::vector<std::pair<const char*, const char*>> EveryPair() {
  std::vector<std::pair<const char*, const char*>> pairs;
  for (const char* from : {"sqlite", "lmdb", "postgres"}) {
    for (const char* to : {"sqlite", "lmdb", "postgres"}) pairs.emplace_back(from, to);
  }
  return pairs;
}

INSTANTIATE_TEST_SUITE_P(EveryPair, CopyBetweenEngines, ::testing::ValuesIn(EveryPair()),
                         [](const auto& info) {
                           return std::string(info.param.first) + "To" + info.param.second;
                         });

class CopyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    source_ = *stores_.New("sqlite", &why);
    target_ = *stores_.New("lmdb", &why);
    before_ = Fill(source_, workload_, 60);
  }

  Status Copy(const CopyOptions& options, CopyReport* report) {
    std::unique_ptr<Engine> source = Maintain(source_);
    std::unique_ptr<Engine> target = Maintain(target_);
    if (!source || !target) return Status::Invalid("cannot open");
    return CopyStore(*source, *target, options, report);
  }

  ScratchStores stores_;
  Workload workload_{7};
  std::string source_, target_, before_;
};

TEST_F(CopyStoreTest, ATargetHoldingAStoreIsRefusedUnlessForcedAndThenReplaced) {
  Workload other(99);
  const std::string other_snapshot = Fill(target_, other, 10);
  CopyReport report;
  Status s = Copy(Quiet(), &report);
  ASSERT_TRUE(s.IsConflict()) << s.ToString();
  EXPECT_NE(s.message().find("--force"), std::string::npos) << s.message();
  EXPECT_EQ(SnapshotOf(target_, other), other_snapshot) << "a refused copy changes nothing";

  CopyOptions forced = Quiet();
  forced.force = true;
  s = Copy(forced, &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(report.replaced);
  EXPECT_EQ(SnapshotOf(target_, workload_), before_);
  EXPECT_EQ(Problems(target_), std::vector<std::string>{});
}

TEST_F(CopyStoreTest, AnInterruptedCopyIsRecognizedAndStartedOverWithoutForce) {
  // What an interrupted copy leaves: some records, no head (it is written
  // last).
  {
    std::unique_ptr<Engine> source = Maintain(source_);
    std::unique_ptr<Engine> target = Maintain(target_);
    ASSERT_TRUE(source && target);
    RecordBatch part;
    std::unique_ptr<RecordReader> reader;
    ASSERT_TRUE(source->BeginRead(&reader).ok());
    ASSERT_TRUE(reader->ListUsers("", 100, &part.users).ok());
    ASSERT_TRUE(reader->ListConversations("", 3, &part.conversations).ok());
    reader.reset();
    ASSERT_TRUE(WriteInOneTransaction(*target, [&](WriteTxn& txn) {
                  return txn.InsertRecords(part);
                }).ok());
    StoreState state;
    Head head;
    ASSERT_TRUE(InspectStore(*target, &state, &head).ok());
    EXPECT_EQ(state, StoreState::kUnfinishedCopy);
  }
  CopyReport report;
  Status s = Copy(Quiet(), &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(report.started_over);
  EXPECT_EQ(SnapshotOf(target_, workload_), before_);
}

TEST_F(CopyStoreTest, AnEmptySourceIsRefused) {
  std::string why;
  const std::string empty = *stores_.New("sqlite", &why);
  std::unique_ptr<Engine> source = Maintain(empty);
  std::unique_ptr<Engine> target = Maintain(target_);
  ASSERT_TRUE(source && target);
  CopyReport report;
  Status s = CopyStore(*source, *target, Quiet(), &report);
  EXPECT_EQ(s.code(), Status::Code::kInvalid) << s.ToString();
}

TEST_F(CopyStoreTest, AServedStoreCannotBeHeldForMaintenanceNorTheOtherWayRound) {
  std::unique_ptr<Store> served;
  ASSERT_TRUE(Backends().Open(source_, &served).ok());
  std::unique_ptr<Engine> engine;
  Status s = Backends().OpenEngine(source_, EngineUse::kMaintain, &engine);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
  served.reset();
  engine = Maintain(source_);
  ASSERT_TRUE(engine);
  s = Backends().Open(source_, &served);
  EXPECT_TRUE(s.IsUnavailable()) << s.ToString();
}

TEST_F(CopyStoreTest, RestoreMarksABreakAndTheCopyContinuesAboveIt) {
  Head backup_head, restored;
  {
    std::unique_ptr<Engine> source = Maintain(source_);
    ASSERT_TRUE(ReadHead(*source, &backup_head).ok());
  }
  ASSERT_TRUE(HeadAfterBreak(backup_head, &restored).ok());
  CopyOptions options = Quiet();
  options.final_head = [restored](const Head&) { return restored; };
  CopyReport report;
  ASSERT_TRUE(Copy(options, &report).ok());
  EXPECT_EQ(report.target_head, restored);
  EXPECT_EQ(restored.lost_after, backup_head.last_seq);
  EXPECT_EQ(restored.last_seq, backup_head.last_seq + kBreakGap);
  EXPECT_EQ(Problems(target_), std::vector<std::string>{});

  std::unique_ptr<Store> store;
  ASSERT_TRUE(Backends().Open(target_, &store).ok());
  std::vector<Write> batch = workload_.NextBatch();
  ASSERT_TRUE(store->Apply(batch).ok());
  Head after;
  ASSERT_TRUE(store->GetHead(&after).ok());
  EXPECT_GE(after.last_seq, restored.last_seq) << "no sequence below the break is handed out";
  for (const Write& w : batch) {
    if (w.status.ok() && w.last_seq != 0) {
      EXPECT_GT(w.last_seq, restored.last_seq);
    }
  }
}

TEST(HistoryBreak, GoesOnFarAboveTheBackupAndMergesAnEarlierBreak) {
  Head restored;
  ASSERT_TRUE(HeadAfterBreak(Head{120, 7, 0, 0}, &restored).ok());
  EXPECT_EQ(restored, (Head{120 + kBreakGap, 7, 120, 120 + kBreakGap}));

  Head twice;
  ASSERT_TRUE(
      HeadAfterBreak(Head{restored.last_seq + 30, 7, 120, restored.lost_through}, &twice).ok());
  EXPECT_EQ(twice.lost_after, 120) << "refused from the earliest break on";
  EXPECT_EQ(twice.lost_through, restored.last_seq + 30 + kBreakGap);
  EXPECT_EQ(twice.last_seq, twice.lost_through);

  Head none;
  EXPECT_FALSE(HeadAfterBreak(Head{kLargestExactSequence - 5, 0, 0, 0}, &none).ok());
}

// Damage planted through the engine interface, on each engine: quire check
// must name it.
class CheckFindsDamage : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string why;
    std::optional<std::string> url = stores_.New(GetParam(), &why);
    if (!url) GTEST_SKIP() << why;
    url_ = *url;
    Fill(url_, workload_, 80);
    ASSERT_EQ(Problems(url_), std::vector<std::string>{}) << "healthy before the damage";
  }

  // A live message of the store, and its conversation.
  Message SomeLiveMessage() {
    std::unique_ptr<Engine> engine = Maintain(url_);
    std::unique_ptr<RecordReader> reader;
    EXPECT_TRUE(engine->BeginRead(&reader).ok());
    std::vector<Message> messages;
    EXPECT_TRUE(reader->ListMessages("", 1000, &messages).ok());
    for (const Message& m : messages) {
      if (!m.deleted_at) return m;
    }
    ADD_FAILURE() << "no live message";
    return {};
  }

  void Damage(const std::function<Status(WriteTxn&)>& change) {
    std::unique_ptr<Engine> engine = Maintain(url_);
    Status s = WriteInOneTransaction(*engine, change);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  static bool Mentions(const std::vector<std::string>& problems, const std::string& text) {
    for (const std::string& p : problems) {
      if (p.find(text) != std::string::npos) return true;
    }
    return false;
  }

  ScratchStores stores_;
  Workload workload_{11};
  std::string url_;
};

TEST_P(CheckFindsDamage, ALiveMessageWithoutItsEvent) {
  const Message m = SomeLiveMessage();
  Damage([&](WriteTxn& txn) {
    std::int64_t count = 0, highest = 0;
    return txn.RemoveEventsOf(m.id, &count, &highest);
  });
  const std::vector<std::string> problems = Problems(url_);
  EXPECT_TRUE(Mentions(problems, "creation events")) << ::testing::PrintToString(problems);
}

TEST_P(CheckFindsDamage, AMessageWhoseTextDiffersFromItsEvent) {
  const Message m = SomeLiveMessage();
  Damage([&](WriteTxn& txn) {
    Message changed = m;
    changed.body = "not what was sent";
    return txn.UpdateMessage({m, changed});
  });
  const std::vector<std::string> problems = Problems(url_);
  EXPECT_TRUE(Mentions(problems, "differs from the live record " + m.id))
      << ::testing::PrintToString(problems);
}

TEST_P(CheckFindsDamage, AHeadBelowItsEvents) {
  Damage([&](WriteTxn& txn) {
    Head head;
    Status s = txn.records().GetHead(&head);
    head.last_seq -= 3;
    head.purged_through = std::min(head.purged_through, head.last_seq);
    return s.ok() ? txn.SetHead(head) : s;
  });
  const std::vector<std::string> problems = Problems(url_);
  EXPECT_TRUE(Mentions(problems, "above the head's last_seq"))
      << ::testing::PrintToString(problems);
}

TEST_P(CheckFindsDamage, AnInvitationWhoseIssuerIsGone) {
  std::unique_ptr<Engine> engine = Maintain(url_);
  std::unique_ptr<RecordReader> reader;
  ASSERT_TRUE(engine->BeginRead(&reader).ok());
  std::vector<Invitation> invitations;
  ASSERT_TRUE(reader->ListInvitations("", 1, &invitations).ok());
  ASSERT_FALSE(invitations.empty());
  reader.reset();
  engine.reset();
  const Invitation i = invitations.front();
  Damage([&](WriteTxn& txn) {
    Invitation moved = i;
    moved.issuer_id = "U-nowhere";
    return txn.UpdateInvitation({i, moved});
  });
  const std::vector<std::string> problems = Problems(url_);
  EXPECT_TRUE(Mentions(problems, "its issuer U-nowhere does not exist"))
      << ::testing::PrintToString(problems);
}

INSTANTIATE_TEST_SUITE_P(EveryEngine, CheckFindsDamage,
                         ::testing::Values("sqlite", "lmdb", "postgres"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace quire::storage::maintenance
