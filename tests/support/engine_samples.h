// Test support for the maintenance functions of engines (engine interface
// version 2), shared by the tests beside each engine: a sample of every kind
// of record, reading a whole store back page by page through the listings,
// copying one store into another the way quire migrate does, and a workload
// that leaves deleted and purged records behind.
//
// Thread-safety: the functions use what they are given on the calling
// thread; a BackgroundWriter writes on a thread of its own, which it joins.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "storage/engine.h"
#include "storage/store.h"
#include "storage/write_ops.h"

namespace quire::testing {

using storage::Conversation;
using storage::Engine;
using storage::Event;
using storage::EventKind;
using storage::Head;
using storage::IdempotencyKey;
using storage::IdempotencyRecord;
using storage::Invitation;
using storage::Message;
using storage::Micros;
using storage::RecordBatch;
using storage::RecordReader;
using storage::Session;
using storage::Status;
using storage::User;
using storage::WriteTxn;

// Records as comparable tuples (the types only partly define ==).
inline auto Fields(const User& r) {
  return std::tie(r.id, r.name, r.canonical, r.password_hash, r.created_at);
}
inline auto Fields(const Session& r) {
  return std::tie(r.token_hash, r.user_id, r.created_at, r.last_used);
}
inline auto Fields(const Invitation& r) {
  return std::tie(r.id, r.issuer_id, r.issued_at, r.used);
}
inline auto Fields(const Conversation& r) {
  return std::tie(r.id, r.name, r.canonical, r.created_at, r.last_activity, r.deleted_at);
}
inline auto Fields(const Message& r) {
  return std::tie(r.id, r.conversation, r.sender, r.body, r.at, r.deleted_at);
}
inline auto Fields(const IdempotencyRecord& r) {
  return std::tie(r.sender, r.key, r.message_id, r.conversation, r.at, r.created_at);
}
inline auto Fields(const Event& r) {
  return std::tie(r.seq, r.kind, r.at, r.id, r.conversation, r.sender, r.text, r.deleted_at);
}

// Everything a store holds, each kind sorted by its fields (the listings'
// order is the engine's own).
struct Contents {
  Head head;
  std::vector<User> users;
  std::vector<Session> sessions;
  std::vector<Invitation> invitations;
  std::vector<Conversation> conversations;
  std::vector<Message> messages;
  std::vector<IdempotencyRecord> idempotency;
  std::vector<Event> events;  // in sequence order
};

template <typename T>
void SortByFields(std::vector<T>* records) {
  std::sort(records->begin(), records->end(),
            [](const T& a, const T& b) { return Fields(a) < Fields(b); });
}

// Compares two kinds of records as sorted lists, naming the kind.
template <typename T>
void ExpectSameRecords(const std::vector<T>& got, const std::vector<T>& want, const char* kind) {
  std::vector<T> a = got, b = want;
  SortByFields(&a);
  SortByFields(&b);
  ASSERT_EQ(a.size(), b.size()) << kind;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(Fields(a[i]) == Fields(b[i])) << kind << " #" << i;
  }
}

inline void ExpectSameContents(const Contents& got, const Contents& want) {
  EXPECT_EQ(got.head, want.head);
  ExpectSameRecords(got.users, want.users, "users");
  ExpectSameRecords(got.sessions, want.sessions, "sessions");
  ExpectSameRecords(got.invitations, want.invitations, "invitations");
  ExpectSameRecords(got.conversations, want.conversations, "conversations");
  ExpectSameRecords(got.messages, want.messages, "messages");
  ExpectSameRecords(got.idempotency, want.idempotency, "idempotency");
  EXPECT_EQ(got.events, want.events);
}

// Appends every page of a listing to *out, `page` records at a time, until
// a page comes back empty. `list(after, limit, out)` is the listing and
// `key_of` a record's key. Each page must be at most `page` long.
template <typename Key, typename T, typename List, typename KeyOf>
Status PageAll(List list, KeyOf key_of, std::size_t page, std::vector<T>* out) {
  Key after{};
  while (true) {
    std::vector<T> got;
    if (Status s = list(after, page, &got); !s.ok()) return s;
    if (got.size() > page) return Status::Invalid("a page longer than its limit");
    if (got.empty()) return Status::Ok();
    after = key_of(got.back());
    out->insert(out->end(), got.begin(), got.end());
    if (out->size() > 1000000) return Status::Invalid("the paging does not end");
  }
}

// Reads everything `records` holds through the listings, `page` records a
// page, and the history.
inline Status ReadContents(RecordReader& records, std::size_t page, Contents* out) {
  *out = Contents{};
  if (Status s = records.GetHead(&out->head); !s.ok()) return s;
  Status s = PageAll<std::string>([&](const std::string& a, std::size_t l,
                                      std::vector<User>* o) { return records.ListUsers(a, l, o); },
                                  [](const User& r) { return r.id; }, page, &out->users);
  if (s.ok()) {
    s = PageAll<std::string>([&](const std::string& a, std::size_t l,
                                 std::vector<Session>* o) { return records.ListSessions(a, l, o); },
                             [](const Session& r) { return r.token_hash; }, page, &out->sessions);
  }
  if (s.ok()) {
    s = PageAll<std::string>(
        [&](const std::string& a, std::size_t l, std::vector<Invitation>* o) {
          return records.ListInvitations(a, l, o);
        },
        [](const Invitation& r) { return r.id; }, page, &out->invitations);
  }
  if (s.ok()) {
    s = PageAll<std::string>(
        [&](const std::string& a, std::size_t l, std::vector<Conversation>* o) {
          return records.ListConversations(a, l, o);
        },
        [](const Conversation& r) { return r.id; }, page, &out->conversations);
  }
  if (s.ok()) {
    s = PageAll<std::string>([&](const std::string& a, std::size_t l,
                                 std::vector<Message>* o) { return records.ListMessages(a, l, o); },
                             [](const Message& r) { return r.id; }, page, &out->messages);
  }
  if (s.ok()) {
    s = PageAll<IdempotencyKey>(
        [&](const IdempotencyKey& a, std::size_t l, std::vector<IdempotencyRecord>* o) {
          return records.ListIdempotency(a, l, o);
        },
        [](const IdempotencyRecord& r) {
          return IdempotencyKey{r.sender, r.key};
        },
        page, &out->idempotency);
  }
  if (s.ok() && out->head.last_seq > 0) {
    s = records.ReadEvents(0, out->head.last_seq, 1000000, &out->events);
  }
  return s;
}

// ReadContents in a read transaction of its own.
inline Status ReadContents(Engine& engine, std::size_t page, Contents* out) {
  std::unique_ptr<RecordReader> reader;
  if (Status s = engine.BeginRead(&reader); !s.ok()) return s;
  return ReadContents(*reader, page, out);
}

// Runs fn(txn) in one write transaction and commits it.
template <typename Fn>
Status InWriteTxn(Engine& engine, Fn&& fn) {
  std::unique_ptr<WriteTxn> txn;
  if (Status s = engine.BeginWrite(&txn); !s.ok()) return s;
  if (Status s = fn(*txn); !s.ok()) return s;
  return txn->Commit();
}

// Writes `from` into the empty store of `to` the way quire migrate does:
// each kind in batches of `batch` records, parents before children, each
// batch in a write transaction of its own, then the head.
inline Status CopyContents(const Contents& from, Engine& to, std::size_t batch) {
  auto in_batches = [&](const auto& records, auto member) {
    for (std::size_t i = 0; i < records.size(); i += batch) {
      RecordBatch b;
      const std::size_t end = std::min(records.size(), i + batch);
      (b.*member).assign(records.begin() + static_cast<std::ptrdiff_t>(i),
                         records.begin() + static_cast<std::ptrdiff_t>(end));
      Status s = InWriteTxn(to, [&](WriteTxn& txn) { return txn.InsertRecords(b); });
      if (!s.ok()) return s;
    }
    return Status::Ok();
  };
  Status s = in_batches(from.users, &RecordBatch::users);
  if (s.ok()) s = in_batches(from.conversations, &RecordBatch::conversations);
  if (s.ok()) s = in_batches(from.messages, &RecordBatch::messages);
  if (s.ok()) s = in_batches(from.events, &RecordBatch::events);
  if (s.ok()) s = in_batches(from.idempotency, &RecordBatch::idempotency);
  if (s.ok()) s = in_batches(from.sessions, &RecordBatch::sessions);
  if (s.ok()) s = in_batches(from.invitations, &RecordBatch::invitations);
  if (!s.ok()) return s;
  return InWriteTxn(to, [&](WriteTxn& txn) { return txn.SetHead(from.head); });
}

// Seven of each kind of record, deleted ones among them, with their events
// (tombstoned where deleted), consistent as the chat rules leave a store.
// Ids are not in key order, and idempotency senders differ in length.
inline Contents SampleContents() {
  Contents c;
  std::int64_t seq = 0;
  auto event = [&](EventKind kind, Micros at, const std::string& id, const std::string& conv,
                   const std::string& sender, const std::string& text) {
    c.events.push_back(Event{++seq, kind, at, id, conv, sender, text, std::nullopt});
  };
  for (const int n : {3, 1, 7, 2, 6, 4, 5}) {
    const std::string id = "U" + std::to_string(n);
    c.users.push_back(User{id, "User " + std::to_string(n), "user" + std::to_string(n),
                           "hash" + std::to_string(n), 100 + n});
    event(EventKind::kUserCreated, 100 + n, id, "", "", "User " + std::to_string(n));
  }
  // C6 and C7 are deleted; M5 is deleted, M6 and M7 went with C6.
  std::vector<std::size_t> created(8);
  for (int n = 1; n <= 7; ++n) {
    const std::string id = "C" + std::to_string(n);
    c.conversations.push_back(Conversation{id, "Room " + std::to_string(n),
                                           "room" + std::to_string(n), 200 + n, 200 + n,
                                           std::nullopt});
    event(EventKind::kConversationCreated, 200 + n, id, "", "", "Room " + std::to_string(n));
    created[n] = c.events.size() - 1;
  }
  std::vector<std::size_t> sent(8);
  for (int n = 1; n <= 7; ++n) {
    const std::string id = "M" + std::to_string(n);
    const std::string conv = n >= 6 ? "C6" : (n % 2 == 1 ? "C1" : "C2");
    const std::string sender = "U" + std::to_string(1 + n % 3);
    c.messages.push_back(
        Message{id, conv, sender, "body " + std::to_string(n), 300 + n, std::nullopt});
    event(EventKind::kMessageSent, 300 + n, id, conv, sender, "body " + std::to_string(n));
    sent[n] = c.events.size() - 1;
    for (Conversation& room : c.conversations) {
      if (room.id == conv) room.last_activity = 300 + n;
    }
  }
  auto delete_message = [&](int n, Micros at) {
    Message& m = c.messages[static_cast<std::size_t>(n - 1)];
    m.body.clear();
    m.deleted_at = at;
    c.events[sent[n]].text.clear();
    c.events[sent[n]].deleted_at = at;
    event(EventKind::kMessageDeleted, at, m.id, m.conversation, "", "");
  };
  delete_message(5, 400);
  delete_message(6, 410);
  delete_message(7, 410);
  for (const int n : {6, 7}) {
    Conversation& room = c.conversations[static_cast<std::size_t>(n - 1)];
    room.name.clear();
    room.canonical.clear();
    room.deleted_at = 410 + n;
    c.events[created[n]].text.clear();
    c.events[created[n]].deleted_at = 410 + n;
    event(EventKind::kConversationDeleted, 410 + n, room.id, "", "", "");
  }
  for (const auto& [sender, key, n] :
       std::vector<std::tuple<std::string, std::string, int>>{{"U1", "k2", 1},
                                                              {"U1", "k1", 3},
                                                              {"U10", "a", 2},
                                                              {"U2", "k1", 4},
                                                              {"U2", "zz", 5},
                                                              {"U3", "", 6},
                                                              {"U10", "b", 7}}) {
    const Message& m = c.messages[static_cast<std::size_t>(n - 1)];
    c.idempotency.push_back(IdempotencyRecord{sender, key, m.id, m.conversation, m.at, 500 + n});
  }
  for (int n = 1; n <= 7; ++n) {
    c.sessions.push_back(
        Session{"tok" + std::to_string(8 - n), "U" + std::to_string(n), 100 + n, 600 + n});
    c.invitations.push_back(Invitation{"I" + std::to_string(8 - n), "U1", 700 + n, n % 2 == 0});
  }
  c.head = Head{seq + 2, 0, 0, 0};  // sequences after the last event were taken and failed
  return c;
}

// Everything of `c` as one batch, for one InsertRecords.
inline RecordBatch AsBatch(const Contents& c) {
  return RecordBatch{c.users,       c.conversations, c.messages,   c.events,
                     c.idempotency, c.sessions,      c.invitations};
}

// ---- Checks of an engine's maintenance functions ----

inline Head ReadHead(Engine& engine) {
  std::unique_ptr<RecordReader> reader;
  Head head;
  EXPECT_TRUE(engine.BeginRead(&reader).ok());
  if (reader) {
    EXPECT_TRUE(reader->GetHead(&head).ok());
  }
  return head;
}

inline void ExpectSetHead(Engine& engine, const Head& head) {
  ASSERT_TRUE(InWriteTxn(engine, [&](WriteTxn& txn) { return txn.SetHead(head); }).ok());
  EXPECT_EQ(ReadHead(engine), head);
}

// Stores SampleContents() with one InsertRecords into the empty `engine` and
// reads it back through the listings, with pages of 1, 2 and 100 records,
// in a read transaction and in a write transaction (which sees its own
// writes). Returns the sample.
inline Contents ExpectListingsOfSample(Engine& engine) {
  const Contents sample = SampleContents();
  EXPECT_TRUE(InWriteTxn(engine, [&](WriteTxn& txn) {
                Status s = txn.InsertRecords(AsBatch(sample));
                return s.ok() ? txn.SetHead(sample.head) : s;
              }).ok());
  for (const std::size_t page : {1, 2, 100}) {
    SCOPED_TRACE(page);
    Contents got;
    EXPECT_TRUE(ReadContents(engine, page, &got).ok());
    ExpectSameContents(got, sample);
  }
  std::unique_ptr<WriteTxn> txn;
  EXPECT_TRUE(engine.BeginWrite(&txn).ok());
  if (!txn) return sample;
  EXPECT_TRUE(txn->InsertUser(User{"U9", "nine", "nine", "h", 9}).ok());
  Contents inside;
  EXPECT_TRUE(ReadContents(txn->records(), 2, &inside).ok());
  EXPECT_EQ(inside.users.size(), sample.users.size() + 1);
  return sample;  // the transaction rolls back
}

// RemoveEverything on a store with records and a break in its history
// leaves it as new.
inline void ExpectRemoveEverythingEmpties(Engine& engine) {
  ExpectSetHead(engine, Head{90, 5, 30, 80});
  ASSERT_TRUE(InWriteTxn(engine, [](WriteTxn& txn) { return txn.RemoveEverything(); }).ok());
  Contents left;
  ASSERT_TRUE(ReadContents(engine, 2, &left).ok());
  ExpectSameContents(left, Contents{});
  std::vector<std::string> problems;
  ASSERT_TRUE(engine.CheckIntegrity(&problems).ok());
  EXPECT_TRUE(problems.empty()) << problems.front();
}

// Copies `source` into the empty `target` (CopyContents, 3 records a
// batch); the copy reads back the same, passes the engine's integrity
// check, and refuses a stored key again.
inline void ExpectCopies(const Contents& source, Engine& target) {
  ASSERT_TRUE(CopyContents(source, target, 3).ok());
  Contents copied;
  ASSERT_TRUE(ReadContents(target, 2, &copied).ok());
  ExpectSameContents(copied, source);
  std::vector<std::string> problems;
  ASSERT_TRUE(target.CheckIntegrity(&problems).ok());
  EXPECT_TRUE(problems.empty()) << problems.front();
  RecordBatch again;
  again.users.push_back(source.users.front());
  EXPECT_TRUE(
      InWriteTxn(target, [&](WriteTxn& txn) { return txn.InsertRecords(again); }).IsConflict());
}

// Applies make(1), make(2), … to a store on a thread of its own until
// stopped or a write fails.
class BackgroundWriter {
 public:
  BackgroundWriter(storage::Store& store, std::function<storage::op::Operation(int)> make)
      : thread_([this, &store, make = std::move(make)] {
          for (int n = 1; !stop_.load(); ++n) {
            std::vector<storage::Write> batch(1);
            batch[0].op = make(n);
            if (!store.Apply(batch).ok() || !batch[0].status.ok()) return;
            ++written_;
          }
        }) {}
  ~BackgroundWriter() { Stop(); }

  int written() const { return written_.load(); }
  // Waits (20 s at most) until `count` writes are done.
  void WaitFor(int count) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (written() < count && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> written_{0};
  std::thread thread_;  // last: it starts once the counters exist
};

// Engine::Backup of the engine under `store` to `path` while another thread
// writes; returns the store's history once the writer stopped, and in
// *before and *after its head when the backup started and ended. The writer
// must go on during and after the backup.
inline std::vector<Event> BackUpWhileWriting(Engine& engine, storage::Store& store,
                                             std::function<storage::op::Operation(int)> make,
                                             const std::string& path, Head* before, Head* after) {
  BackgroundWriter writer(store, std::move(make));
  writer.WaitFor(200);
  EXPECT_TRUE(store.GetHead(before).ok());
  const Status s = engine.Backup(path);
  EXPECT_TRUE(store.GetHead(after).ok());
  const int by_then = writer.written();
  writer.WaitFor(by_then + 20);
  writer.Stop();
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_GE(writer.written(), by_then + 20) << "the writer waited for the backup";
  std::vector<Event> history;
  EXPECT_TRUE(store.ReadEvents(0, INT64_MAX, 1000000, &history).ok());
  return history;
}

// A backup of a store taken while its head went from `before` to `after`:
// its head is between them, and its history is the store's up to its head.
inline void ExpectConsistentBackup(storage::Store& backup, const Head& before, const Head& after,
                                   std::vector<Event> history) {
  Head copied;
  ASSERT_TRUE(backup.GetHead(&copied).ok());
  EXPECT_GE(copied.last_seq, before.last_seq);
  EXPECT_LE(copied.last_seq, after.last_seq);
  std::vector<Event> copied_events;
  ASSERT_TRUE(backup.ReadEvents(0, INT64_MAX, 1000000, &copied_events).ok());
  ASSERT_FALSE(copied_events.empty());
  EXPECT_EQ(copied_events.back().seq, copied.last_seq);
  ASSERT_GE(history.size(), copied_events.size());
  history.resize(copied_events.size());
  EXPECT_EQ(copied_events, history);
}

// ---- Through a Store ----

inline void ApplyOne(storage::Store& store, storage::op::Operation operation,
                     storage::Write* out = nullptr) {
  std::vector<storage::Write> batch(1);
  batch[0].op = std::move(operation);
  const Status s = store.Apply(batch);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(batch[0].status.ok()) << batch[0].status.ToString();
  if (out != nullptr) *out = std::move(batch[0]);
}

// Writes through the chat rules that leave every kind of record behind:
// live, deleted and purged ones, a used invitation, idempotency keys.
inline void RunWorkload(storage::Store& store) {
  namespace op = storage::op;
  ApplyOne(store, op::Setup{User{"U1", "Ann", "ann", "h1", 10}, Session{"t1", "U1", 10, 10}});
  ApplyOne(store, op::CreateInvitation{Invitation{"I1", "U1", 11, false}});
  ApplyOne(store, op::CreateInvitation{Invitation{"I2", "U1", 12, false}});
  ApplyOne(store, op::AcceptInvitation{"I1", 0, User{"U2", "Bo", "bo", "h2", 13},
                                       Session{"t2", "U2", 13, 13}});
  for (int n = 1; n <= 4; ++n) {
    const std::string id = "C" + std::to_string(n);
    ApplyOne(store, op::CreateConversation{Conversation{id, "Room " + id, "room " + id, 20 + n,
                                                        20 + n, std::nullopt}});
  }
  for (int n = 1; n <= 9; ++n) {
    const std::string conv = "C" + std::to_string(1 + n % 4);
    ApplyOne(store, op::SendMessage{Message{"M" + std::to_string(n), conv, n % 2 ? "U1" : "U2",
                                            "text " + std::to_string(n), 100 + n, std::nullopt},
                                    n % 3 == 0 ? "key" + std::to_string(n) : "", 0, false});
  }
  // Last activity: C1 108, C2 109, C3 106, C4 107. C3 (M2, M6) is deleted
  // and purged; C4 (M3, M7) and M5 are deleted and stay.
  ApplyOne(store, op::DeleteMessage{"M2", 200});
  ApplyOne(store, op::Expire{0, 107, 300});
  ApplyOne(store, op::Purge{301, 0, 0, 0});
  ApplyOne(store, op::Expire{0, 108, 400});
  ApplyOne(store, op::DeleteMessage{"M5", 500});
}

// Checks that `store`, opened on a copy of `copied`, serves: names are
// found, taken names refused, new writes take sequences above the head,
// live messages keep their conversation, and expiring and purging find
// every record and event they must.
inline void ExpectServes(storage::Store& store, const Contents& copied) {
  namespace op = storage::op;
  for (const User& u : copied.users) {
    User found;
    ASSERT_TRUE(store.FindUserByCanonicalName(u.canonical, &found).ok()) << u.canonical;
    EXPECT_EQ(found.id, u.id);
  }
  const Conversation* live = nullptr;
  for (const Conversation& c : copied.conversations) {
    if (!c.deleted_at) live = &c;
  }
  ASSERT_NE(live, nullptr);
  std::vector<storage::Write> batch(1);
  batch[0].op = op::CreateConversation{Conversation{"C-new", "x", live->canonical, 900, 900, {}}};
  ASSERT_TRUE(store.Apply(batch).ok());
  EXPECT_TRUE(batch[0].status.IsConflict()) << batch[0].status.ToString();

  storage::Write sent;
  ApplyOne(
      store,
      op::SendMessage{Message{"M-new", live->id, copied.users[0].id, "new", 901, {}}, "", 0, false},
      &sent);
  EXPECT_EQ(sent.last_seq, copied.head.last_seq + 1);
  batch[0] = storage::Write{};
  batch[0].op = op::DeleteConversation{live->id, 902};
  ASSERT_TRUE(store.Apply(batch).ok());
  EXPECT_TRUE(batch[0].status.IsConflict()) << "live messages: " << batch[0].status.ToString();

  std::int64_t live_messages = 1, live_conversations = 0;
  for (const Message& m : copied.messages) live_messages += m.deleted_at ? 0 : 1;
  for (const Conversation& c : copied.conversations) live_conversations += c.deleted_at ? 0 : 1;
  storage::Write expired;
  ApplyOne(store, op::Expire{1000000, 1000000, 1000000}, &expired);
  EXPECT_EQ(std::get<op::Expire>(expired.op).deleted_messages, live_messages);
  EXPECT_EQ(std::get<op::Expire>(expired.op).deleted_conversations, live_conversations);
  ApplyOne(store, op::Purge{1000001, 0, 0, 0});
  std::vector<Event> left;
  ASSERT_TRUE(store.ReadEvents(0, INT64_MAX, 1000000, &left).ok());
  EXPECT_EQ(left.size(), copied.users.size());  // the users' created events
  for (const Event& e : left) EXPECT_EQ(e.kind, EventKind::kUserCreated) << e.seq;
}

}  // namespace quire::testing
