#include "storage/maintenance/copy_store.h"

#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "storage/maintenance/history_break.h"
#include "storage/maintenance/progress.h"
#include "storage/maintenance/record_digest.h"
#include "storage/maintenance/table_scan.h"

namespace quire::storage::maintenance {
namespace {

constexpr std::int64_t kNoEnd = std::numeric_limits<std::int64_t>::max();

// The tables in copy order (parents first), each with how to list it and
// where its records go in a RecordBatch. Events are copied in between, by
// ForEachEventPage.
template <typename Fn>
Status ForEachTable(Fn fn, bool events_too) {
  using R = RecordReader;
  Status s = fn("users", &R::ListUsers, &RecordBatch::users);
  if (s.ok()) s = fn("conversations", &R::ListConversations, &RecordBatch::conversations);
  if (s.ok()) s = fn("messages", &R::ListMessages, &RecordBatch::messages);
  if (s.ok() && events_too) s = fn("events", nullptr, &RecordBatch::events);
  if (s.ok()) s = fn("idempotency records", &R::ListIdempotency, &RecordBatch::idempotency);
  if (s.ok()) s = fn("sessions", &R::ListSessions, &RecordBatch::sessions);
  if (s.ok()) s = fn("invitations", &R::ListInvitations, &RecordBatch::invitations);
  return s;
}

// Adds the records of the table `list` lists to *digest.
template <typename Record, typename Key>
Status DigestTable(Engine& engine, ListFunction<Record, Key> list, std::int64_t,
                   std::size_t page_size, RecordDigest* digest) {
  return ForEachPage(engine, list, page_size, [&](const std::vector<Record>& page) {
    for (const Record& record : page) digest->Add(record);
    return Status::Ok();
  });
}

// The events', which must also come in strictly increasing sequence order,
// none above `upto`.
Status DigestTable(Engine& engine, std::nullptr_t, std::int64_t upto, std::size_t page_size,
                   RecordDigest* digest) {
  std::int64_t last = 0;
  return ForEachEventPage(engine, upto, page_size, [&](const std::vector<Event>& page) {
    for (const Event& e : page) {
      if (e.seq <= last) {
        return Status::Corrupt("event " + std::to_string(e.seq) + " comes after event " +
                               std::to_string(last));
      }
      last = e.seq;
      digest->Add(e);
    }
    return Status::Ok();
  });
}

Status DigestStore(Engine& engine, std::int64_t upto, std::size_t page_size,
                   std::map<std::string, RecordDigest>* digests) {
  return ForEachTable(
      [&](const char* table, auto list, auto) {
        return DigestTable(engine, list, upto, page_size, &(*digests)[table]);
      },
      /*events_too=*/true);
}

template <typename Record, typename Key>
Status HoldsAny(RecordReader& reader, ListFunction<Record, Key> list, bool* any) {
  std::vector<Record> page;
  if (Status s = (reader.*list)(Key{}, 1, &page); !s.ok()) return s;
  *any = !page.empty();
  return Status::Ok();
}

Status HoldsAny(RecordReader& reader, std::nullptr_t, bool* any) {
  std::vector<Event> page;
  if (Status s = reader.ReadEvents(0, kNoEnd, 1, &page); !s.ok()) return s;
  *any = !page.empty();
  return Status::Ok();
}

// Writes one page of records (or events) in one target transaction.
template <typename Record>
Status WritePage(Engine& target, std::vector<Record>&& page,
                 std::vector<Record> RecordBatch::*field,
                 const std::function<void(std::size_t)>& copied) {
  const std::size_t rows = page.size();
  RecordBatch batch;
  batch.*field = std::move(page);
  Status s = WriteInOneTransaction(target, [&](WriteTxn& txn) { return txn.InsertRecords(batch); });
  if (s.ok()) copied(rows);
  return s;
}

// Runs `read` (which hands each page it reads to its argument) on a thread
// of its own, and `write` on the caller's for each page, at most two pages
// apart: the source's reads overlap the target's writes.
template <typename Page, typename Read, typename Write>
Status Pipelined(Read read, Write write) {
  std::mutex mu;
  std::condition_variable changed;
  std::deque<Page> pages;  // guarded by mu
  bool reading = true;     // guarded by mu
  bool stop = false;       // guarded by mu: the writer failed
  Status read_status;
  std::thread reader([&] {
    Status s = read([&](Page& page) {
      std::unique_lock<std::mutex> lock(mu);
      changed.wait(lock, [&] { return pages.size() < 2 || stop; });
      if (stop) return Status::Invalid("the copy stopped");
      pages.push_back(std::move(page));
      changed.notify_all();
      return Status::Ok();
    });
    std::lock_guard<std::mutex> lock(mu);
    read_status = s;
    reading = false;
    changed.notify_all();
  });
  Status write_status;
  for (;;) {
    Page page;
    {
      std::unique_lock<std::mutex> lock(mu);
      changed.wait(lock, [&] { return !pages.empty() || !reading; });
      if (pages.empty()) break;
      page = std::move(pages.front());
      pages.pop_front();
      changed.notify_all();
    }
    write_status = write(std::move(page));
    if (!write_status.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
      changed.notify_all();
      break;
    }
  }
  reader.join();
  return write_status.ok() ? read_status : write_status;
}

// Copies one table, a page per target transaction.
template <typename Record, typename Key>
Status CopyTable(Engine& source, Engine& target, ListFunction<Record, Key> list,
                 std::vector<Record> RecordBatch::*field, std::int64_t, std::size_t page_size,
                 const std::function<void(std::size_t)>& copied) {
  return Pipelined<std::vector<Record>>(
      [&](auto hand_over) { return ForEachPage(source, list, page_size, hand_over); },
      [&](std::vector<Record>&& page) {
        return WritePage(target, std::move(page), field, copied);
      });
}

Status CopyTable(Engine& source, Engine& target, std::nullptr_t,
                 std::vector<Event> RecordBatch::*field, std::int64_t upto, std::size_t page_size,
                 const std::function<void(std::size_t)>& copied) {
  return Pipelined<std::vector<Event>>(
      [&](auto hand_over) { return ForEachEventPage(source, upto, page_size, hand_over); },
      [&](std::vector<Event>&& page) { return WritePage(target, std::move(page), field, copied); });
}

void Log(const CopyOptions& options, const std::string& line) {
  if (options.log == nullptr) return;
  std::fprintf(options.log, "quire %s: %s\n", options.command.c_str(), line.c_str());
  std::fflush(options.log);
}

}  // namespace

Status InspectStore(Engine& target, StoreState* state, Head* head) {
  if (Status s = ReadHead(target, head); !s.ok()) return s;
  if (!(*head == Head{})) {
    *state = StoreState::kStore;
    return Status::Ok();
  }
  std::unique_ptr<RecordReader> reader;
  if (Status s = target.BeginRead(&reader); !s.ok()) return s;
  bool anything = false;
  Status s = ForEachTable(
      [&](const char*, auto list, auto) {
        bool any = false;
        Status s = HoldsAny(*reader, list, &any);
        anything = anything || any;
        return s;
      },
      /*events_too=*/true);
  if (!s.ok()) return s;
  *state = anything ? StoreState::kUnfinishedCopy : StoreState::kEmpty;
  return Status::Ok();
}

Status CopyStore(Engine& source, Engine& target, const CopyOptions& options, CopyReport* report) {
  *report = CopyReport{};
  if (Status s = ReadHead(source, &report->source_head); !s.ok()) return s;
  const std::int64_t upto = report->source_head.last_seq;
  StoreState source_state;
  Head unused;
  if (Status s = InspectStore(source, &source_state, &unused); !s.ok()) return s;
  if (source_state != StoreState::kStore) {
    return Status::Invalid(source_state == StoreState::kEmpty
                               ? "the source holds no store: nothing to copy"
                               : "the source holds an unfinished copy, not a store");
  }

  StoreState state;
  Head target_head;
  if (Status s = InspectStore(target, &state, &target_head); !s.ok()) return s;
  if (state == StoreState::kStore && !options.force) {
    return Status::Conflict("the target holds a Quire store (" + DescribeHead(target_head) +
                            "); pass --force to replace it");
  }
  if (state != StoreState::kEmpty) {
    report->started_over = state == StoreState::kUnfinishedCopy;
    report->replaced = state == StoreState::kStore;
    Log(options, report->started_over
                     ? "the target holds an unfinished copy; starting over"
                     : "replacing the store the target holds (" + DescribeHead(target_head) + ")");
    Status s = WriteInOneTransaction(target, [](WriteTxn& txn) { return txn.RemoveEverything(); });
    if (!s.ok()) return s;
  }

  // What the source holds, counted (for progress) and digested (for the
  // verification) before anything is copied.
  std::map<std::string, RecordDigest> expected;
  if (Status s = DigestStore(source, upto, options.batch_rows, &expected); !s.ok()) return s;
  std::uint64_t total = 0;
  for (const auto& [table, digest] : expected) total += digest.count();
  Log(options, "copying " + Thousands(total) + " rows (" + DescribeHead(report->source_head) +
                   "); neither database can be served until this ends");

  Progress progress(options.command, total, options.log ? options.log : stderr);
  std::uint64_t done = 0;
  Status s = ForEachTable(
      [&](const char* table, auto list, auto field) {
        const std::string name = table;
        return CopyTable(source, target, list, field, upto, options.batch_rows,
                         [&](std::size_t rows) {
                           done += rows;
                           if (options.log) progress.Update(done, name);
                         });
      },
      /*events_too=*/true);
  if (!s.ok()) return s;
  const Head final_head =
      options.final_head ? options.final_head(report->source_head) : report->source_head;
  s = WriteInOneTransaction(target, [&](WriteTxn& txn) { return txn.SetHead(final_head); });
  if (!s.ok()) return s;
  if (options.log) progress.Finish(done);
  report->rows = done;
  report->copy_seconds = progress.seconds();

  // Verification: the target read back, compared with the source.
  Progress verifying(options.command, 0, options.log ? options.log : stderr);
  std::map<std::string, RecordDigest> copied;
  if (Status s = ReadHead(target, &report->target_head); !s.ok()) return s;
  if (!(report->target_head == final_head)) {
    return Status::Corrupt("verification: the target's head (" + DescribeHead(report->target_head) +
                           ") is not the one written (" + DescribeHead(final_head) + ")");
  }
  if (Status s = DigestStore(target, upto, options.batch_rows, &copied); !s.ok()) {
    return Status::Corrupt("verification: the target's " + s.message());
  }
  s = ForEachTable(
      [&](const char* table, auto, auto) {
        const RecordDigest& want = expected[table];
        const RecordDigest& got = copied[table];
        report->tables.push_back({table, want.count()});
        if (want == got) return Status::Ok();
        return Status::Corrupt("verification: the target's " + std::string(table) +
                               " differ from "
                               "the source's (" +
                               Thousands(got.count()) + " rows against " + Thousands(want.count()) +
                               ", or their contents)");
      },
      /*events_too=*/true);
  report->verify_seconds = verifying.seconds();
  return s;
}

}  // namespace quire::storage::maintenance
