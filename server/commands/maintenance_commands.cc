#include "server/commands/maintenance_commands.h"

#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <string>

#include "server/commands/open_database.h"
#include "storage/maintenance/check_store.h"
#include "storage/maintenance/copy_store.h"
#include "storage/maintenance/history_break.h"
#include "storage/maintenance/progress.h"
#include "storage/maintenance/table_scan.h"

namespace quire::commands {
namespace {

using storage::EngineUse;
using storage::Head;
using storage::RedactedUrl;
using storage::Status;
using storage::maintenance::DescribeHead;
using storage::maintenance::Thousands;

int Fail(const char* command, const std::string& what) {
  std::fprintf(stderr, "quire %s: %s\n", command, what.c_str());
  return 1;
}

// Opens `url` for `use`, or says in one line why not.
bool Open(const storage::Registry& registry, const char* command, const std::string& url,
          EngineUse use, std::unique_ptr<storage::Engine>* out) {
  Status s = registry.OpenEngine(url, use, out);
  if (s.ok()) return true;
  Fail(command, "cannot open " + RedactedUrl(url) + ": " + s.message());
  return false;
}

void PrintVerified(const char* command, const storage::maintenance::CopyReport& report) {
  std::string tables;
  for (const auto& tally : report.tables) {
    tables += (tables.empty() ? "" : ", ") + tally.table + " " + Thousands(tally.rows);
  }
  std::printf(
      "quire %s: copied %s rows in %.1f s and verified them in %.1f s, every row read "
      "back and compared with the source (SHA-256 of each record); head: %s; %s\n",
      command, Thousands(report.rows).c_str(), report.copy_seconds, report.verify_seconds,
      DescribeHead(report.target_head).c_str(), tables.c_str());
}

bool IsUrl(const std::string& text) {
  return text.find("://") != std::string::npos || text.starts_with("sqlite:") ||
         text.starts_with("lmdb:");
}

// The database URL of a backup named by its path: a directory is an LMDB
// environment, a file a SQLite database.
std::string BackupUrl(const std::string& from) {
  if (IsUrl(from)) return from;
  struct stat info {};
  const bool directory = stat(from.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
  return (directory ? "lmdb:" : "sqlite:") + from;
}

}  // namespace

int Migrate(const storage::Registry& registry, const MigrateConfig& config) {
  if (config.from == config.to) return Fail("migrate", "--from and --to name the same database");
  std::unique_ptr<storage::Engine> source, target;
  if (!Exists("migrate", config.from)) return 1;
  if (!Open(registry, "migrate", config.from, EngineUse::kMaintain, &source)) return 1;
  if (!Open(registry, "migrate", config.to, EngineUse::kMaintain, &target)) return 1;
  storage::maintenance::CopyOptions options;
  options.force = config.force;
  options.batch_rows = config.batch_rows;
  storage::maintenance::CopyReport report;
  if (Status s = CopyStore(*source, *target, options, &report); !s.ok()) {
    return Fail("migrate", s.message());
  }
  PrintVerified("migrate", report);
  return 0;
}

int Backup(const storage::Registry& registry, const BackupConfig& config) {
  std::unique_ptr<storage::Engine> engine;
  // Shared with running servers: a backup is taken while they write.
  if (!Exists("backup", config.database_url)) return 1;
  if (!Open(registry, "backup", config.database_url, EngineUse::kBackup, &engine)) return 1;
  if (Status s = engine->Backup(config.to); !s.ok()) return Fail("backup", s.message());
  engine.reset();
  // The copy must open as a store of its own.
  const std::string copy_url = storage::UrlScheme(config.database_url) + ":" + config.to;
  std::unique_ptr<storage::Engine> copy;
  if (!Open(registry, "backup", copy_url, EngineUse::kMaintain, &copy)) return 1;
  Head head;
  if (Status s = storage::maintenance::ReadHead(*copy, &head); !s.ok()) {
    return Fail("backup", "the copy cannot be read: " + s.message());
  }
  std::printf("quire backup: wrote a consistent copy of %s to %s (%s)\n",
              RedactedUrl(config.database_url).c_str(), config.to.c_str(),
              DescribeHead(head).c_str());
  return 0;
}

int Restore(const storage::Registry& registry, const RestoreConfig& config) {
  std::unique_ptr<storage::Engine> target;
  if (config.mark) {
    if (!Exists("restore", config.database_url)) return 1;
    if (!Open(registry, "restore", config.database_url, EngineUse::kMaintain, &target)) return 1;
    Head before, after;
    if (Status s = storage::maintenance::MarkBreakInHistory(*target, &before, &after); !s.ok()) {
      return Fail("restore", s.message());
    }
    std::printf(
        "quire restore: marked a break in history in %s: events continue after %lld; "
        "resume points after %lld and below %lld are refused (410), those clients boot "
        "again\n",
        RedactedUrl(config.database_url).c_str(), static_cast<long long>(after.last_seq),
        static_cast<long long>(after.lost_after), static_cast<long long>(after.lost_through));
    return 0;
  }
  const std::string from_url = BackupUrl(config.from);
  if (from_url == config.database_url) {
    return Fail("restore", "--from and --database-url name the same database");
  }
  std::unique_ptr<storage::Engine> source;
  if (!Exists("restore", from_url)) return 1;
  if (!Open(registry, "restore", from_url, EngineUse::kMaintain, &source)) return 1;
  if (!Open(registry, "restore", config.database_url, EngineUse::kMaintain, &target)) return 1;
  Head backup_head, restored_head;
  Status s = storage::maintenance::ReadHead(*source, &backup_head);
  if (s.ok()) s = storage::maintenance::HeadAfterBreak(backup_head, &restored_head);
  if (!s.ok()) return Fail("restore", s.message());
  storage::maintenance::CopyOptions options;
  options.force = true;  // a restore replaces what the database holds
  options.command = "restore";
  options.final_head = [restored_head](const Head&) { return restored_head; };
  storage::maintenance::CopyReport report;
  if (Status s = CopyStore(*source, *target, options, &report); !s.ok()) {
    return Fail("restore", s.message());
  }
  PrintVerified("restore", report);
  std::printf(
      "quire restore: %s now holds the backup's history up to %lld; events continue "
      "after %lld, and resume points after %lld and below %lld are refused (410), so "
      "clients that saw the lost events boot again\n",
      RedactedUrl(config.database_url).c_str(), static_cast<long long>(backup_head.last_seq),
      static_cast<long long>(restored_head.last_seq),
      static_cast<long long>(restored_head.lost_after),
      static_cast<long long>(restored_head.lost_through));
  return 0;
}

int Check(const storage::Registry& registry, const CheckConfig& config) {
  std::unique_ptr<storage::Engine> engine;
  if (!Exists("check", config.database_url)) return 1;
  if (!Open(registry, "check", config.database_url, EngineUse::kMaintain, &engine)) return 1;
  storage::maintenance::CheckReport report;
  if (Status s = CheckStore(*engine, 5000, &report); !s.ok()) {
    return Fail("check", "cannot read the store: " + s.message());
  }
  for (const std::string& problem : report.problems) std::printf("%s\n", problem.c_str());
  std::string rows;
  for (const auto& [table, count] : report.rows) {
    rows += (rows.empty() ? "" : ", ") + table + " " + Thousands(count);
  }
  if (rows.empty()) rows = "no rows";
  if (!report.problems.empty()) {
    std::fflush(stdout);
    return Fail("check", Thousands(report.problems.size()) + " problems in " +
                             RedactedUrl(config.database_url) + " (" + rows + ")");
  }
  std::printf("quire check: %s is consistent (%s; %s)\n", RedactedUrl(config.database_url).c_str(),
              DescribeHead(report.head).c_str(), rows.c_str());
  return 0;
}

}  // namespace quire::commands
