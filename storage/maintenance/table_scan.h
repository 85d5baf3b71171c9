// Reading and writing a whole store in pages: every record of a table, every
// event, one short read transaction per page, so a scan of millions of rows
// holds neither memory nor old versions; one write transaction per page. Used by migrate and check,
// which run with the store held for maintenance (Engine::Hold), so nothing changes between pages.
//
// Thread-safety: plain functions; the engine's own rules apply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "storage/engine.h"

namespace quire::storage::maintenance {

inline const std::string& KeyOf(const User& r) {
  return r.id;
}
inline const std::string& KeyOf(const Session& r) {
  return r.token_hash;
}
inline const std::string& KeyOf(const Invitation& r) {
  return r.id;
}
inline const std::string& KeyOf(const Conversation& r) {
  return r.id;
}
inline const std::string& KeyOf(const Message& r) {
  return r.id;
}
inline IdempotencyKey KeyOf(const IdempotencyRecord& r) {
  return {r.sender, r.key};
}

template <typename Record, typename Key>
using ListFunction = Status (RecordReader::*)(const Key&, std::size_t, std::vector<Record>*);

// Calls visit(std::vector<Record>&) for each page of the table that `list`
// lists, in the engine's key order, until a page is short or visit answers
// non-OK. Visit may move the page away.
template <typename Record, typename Key, typename Visit>
Status ForEachPage(Engine& engine, ListFunction<Record, Key> list, std::size_t page_size,
                   Visit visit) {
  Key after{};
  for (;;) {
    std::vector<Record> page;
    {
      std::unique_ptr<RecordReader> reader;
      if (Status s = engine.BeginRead(&reader); !s.ok()) return s;
      if (Status s = ((*reader).*list)(after, page_size, &page); !s.ok()) return s;
    }
    if (page.empty()) return Status::Ok();
    after = KeyOf(page.back());
    const bool last = page.size() < page_size;
    if (Status s = visit(page); !s.ok()) return s;  // may move the page away
    if (last) return Status::Ok();
  }
}

// Calls visit(const std::vector<Event>&) for each page of the retained
// events with seq <= upto, in sequence order.
template <typename Visit>
Status ForEachEventPage(Engine& engine, std::int64_t upto, std::size_t page_size, Visit visit) {
  std::int64_t after = 0;
  while (after < upto) {
    std::vector<Event> page;
    {
      std::unique_ptr<RecordReader> reader;
      if (Status s = engine.BeginRead(&reader); !s.ok()) return s;
      if (Status s = reader->ReadEvents(after, upto, page_size, &page); !s.ok()) return s;
    }
    if (page.empty()) return Status::Ok();
    after = page.back().seq;
    const bool last = page.size() < page_size;
    if (Status s = visit(page); !s.ok()) return s;  // may move the page away
    if (last) return Status::Ok();
  }
  return Status::Ok();
}

// Runs `fn` in one write transaction and commits it; again when the engine
// fixed what failed (LMDB grows its map).
inline Status WriteInOneTransaction(Engine& engine, const std::function<Status(WriteTxn&)>& fn) {
  for (;;) {
    Status s;
    {
      std::unique_ptr<WriteTxn> txn;
      s = engine.BeginWrite(&txn);
      if (s.ok()) s = fn(*txn);
      if (s.ok()) s = txn->Commit();
    }
    if (s.ok() || !engine.PrepareRetry(s)) return s;
  }
}

inline Status ReadHead(Engine& engine, Head* out) {
  std::unique_ptr<RecordReader> reader;
  if (Status s = engine.BeginRead(&reader); !s.ok()) return s;
  return reader->GetHead(out);
}

}  // namespace quire::storage::maintenance
