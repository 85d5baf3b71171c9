#include "memory_store.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "storage/chat_rules.h"
#include "storage/engine.h"

namespace example {
namespace {

namespace storage = quire::storage;
using storage::Change;
using storage::Conversation;
using storage::Event;
using storage::EventKind;
using storage::Head;
using storage::IdempotencyRecord;
using storage::Invitation;
using storage::Message;
using storage::Micros;
using storage::Session;
using storage::Status;
using storage::User;

// The tables. An engine keeps records and finds them; every rule about them
// (what a write checks, changes and emits) is Quire's, above the engine.
struct Tables {
  Head head;
  // By seq. A stored Event never changes (a tombstone stores a blanked
  // copy), so a reader may copy events after letting go of the lock.
  std::map<std::int64_t, std::shared_ptr<const Event>> events;
  // (entity, seq) → kind: the events of an entity, for tombstones and purges.
  std::map<std::pair<std::string, std::int64_t>, EventKind> events_by_entity;
  std::map<std::string, User> users;                  // by id
  std::map<std::string, std::string> user_by_name;    // canonical → id
  std::map<std::string, Session> sessions;            // by token hash
  std::map<std::string, Invitation> invitations;      // by id
  std::map<std::string, Conversation> conversations;  // by id
  std::map<std::string, Message> messages;            // by id
  std::map<std::pair<std::string, std::string>, IdempotencyRecord> idempotency;
};

Status NotFound(const std::string& what) {
  return Status::NotFound("no " + what);
}

template <typename T>
Status Copy(const T& value, T* out) {
  *out = value;
  return Status::Ok();
}

template <typename Map>
Status Find(const Map& map, const typename Map::key_type& key, typename Map::mapped_type* out) {
  const auto it = map.find(key);
  return it == map.end() ? NotFound("such record") : Copy(it->second, out);
}

// The reads. Each takes the engine's mutex, which a write transaction holds
// from BeginWrite to its end, so it sees whole batches only; inside a write
// transaction (no mutex given) the reads see its own writes.
class MemoryRecords final : public storage::RecordReader {
 public:
  MemoryRecords(const Tables& t, std::mutex* mu) : t_(t), mu_(mu) {}

  Status GetHead(Head* out) override {
    return Locked([&] { return Copy(t_.head, out); });
  }
  // Holds the mutex only to take the events, not to copy them: a long read
  // must not hold writers up.
  Status ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                    std::vector<Event>* out) override {
    std::vector<std::shared_ptr<const Event>> taken;
    Locked([&] {
      for (auto it = t_.events.upper_bound(after);
           it != t_.events.end() && it->first <= upto && taken.size() < limit; ++it) {
        taken.push_back(it->second);
      }
      return Status::Ok();
    });
    for (const auto& event : taken) out->push_back(*event);
    return Status::Ok();
  }
  Status HasUsers(bool* out) override {
    return Locked([&] { return Copy(!t_.users.empty(), out); });
  }
  Status GetUser(const std::string& id, User* out) override {
    return Locked([&] { return Find(t_.users, id, out); });
  }
  Status FindUserByCanonicalName(const std::string& canonical, User* out) override {
    return Locked([&] {
      const auto it = t_.user_by_name.find(canonical);
      return it == t_.user_by_name.end() ? NotFound("user") : Find(t_.users, it->second, out);
    });
  }
  Status FindSession(const std::string& token, Session* out) override {
    return Locked([&] { return Find(t_.sessions, token, out); });
  }
  Status GetInvitation(const std::string& id, Invitation* out) override {
    return Locked([&] { return Find(t_.invitations, id, out); });
  }
  Status GetConversation(const std::string& id, Conversation* out) override {
    return Locked([&] { return Find(t_.conversations, id, out); });
  }
  Status GetMessage(const std::string& id, Message* out) override {
    return Locked([&] { return Find(t_.messages, id, out); });
  }

 private:
  template <typename Fn>
  Status Locked(Fn&& fn) {
    if (mu_ == nullptr) return fn();
    std::lock_guard<std::mutex> lock(*mu_);
    return fn();
  }

  const Tables& t_;
  std::mutex* const mu_;
};

// A batch changes the tables in place and logs how to undo each change:
// a savepoint is a position in the log, a rollback replays it backwards.
// The engine's mutex is held from BeginWrite to the end of the transaction,
// so readers see whole batches only.
class MemoryWriteTxn final : public storage::WriteTxn {
 public:
  MemoryWriteTxn(Tables& t, std::mutex& mu) : t_(t), lock_(mu), records_(t, nullptr) {}
  ~MemoryWriteTxn() override { UndoTo(0); }  // a no-op after Commit

  storage::RecordReader& records() override { return records_; }

  Status Savepoint() override {
    savepoint_ = undo_.size();
    return Status::Ok();
  }
  Status ReleaseSavepoint() override { return Status::Ok(); }
  Status RollbackToSavepoint() override {
    UndoTo(savepoint_);
    return Status::Ok();
  }
  Status Commit() override {
    undo_.clear();
    return Status::Ok();
  }

  // ---- Lookups: full scans, which keep an example short ----

  Status FindLiveConversationByName(const std::string& canonical, Conversation* out) override {
    for (const auto& [id, c] : t_.conversations) {
      if (!c.deleted_at && c.canonical == canonical) return Copy(c, out);
    }
    return NotFound("conversation");
  }
  Status GetIdempotency(const std::string& sender, const std::string& key,
                        IdempotencyRecord* out) override {
    return Find(t_.idempotency, {sender, key}, out);
  }
  Status ListLiveMessagesOf(const std::string& conversation, std::size_t limit,
                            std::vector<std::string>* ids) override {
    return Collect(t_.messages, ids, limit, [&](const Message& m) {
      return !m.deleted_at && m.conversation == conversation;
    });
  }
  Status ListLiveMessagesSentBefore(Micros before, std::vector<std::string>* ids) override {
    return Collect(t_.messages, ids, SIZE_MAX,
                   [&](const Message& m) { return !m.deleted_at && m.at < before; });
  }
  Status ListLiveConversationsIdleBefore(Micros before, std::vector<std::string>* ids) override {
    return Collect(t_.conversations, ids, SIZE_MAX, [&](const Conversation& c) {
      return !c.deleted_at && c.last_activity < before;
    });
  }
  Status ListMessagesDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return Collect(t_.messages, ids, SIZE_MAX,
                   [&](const Message& m) { return m.deleted_at && *m.deleted_at < before; });
  }
  Status ListConversationsDeletedBefore(Micros before, std::vector<std::string>* ids) override {
    return Collect(t_.conversations, ids, SIZE_MAX,
                   [&](const Conversation& c) { return c.deleted_at && *c.deleted_at < before; });
  }
  Status ListMessagesOf(const std::string& conversation, std::vector<std::string>* ids) override {
    return Collect(t_.messages, ids, SIZE_MAX,
                   [&](const Message& m) { return m.conversation == conversation; });
  }

  // ---- Records ----

  Status InsertUser(const User& u) override {
    if (Status s = Insert(t_.users, u.id, u); !s.ok()) return s;
    Set(t_.user_by_name, u.canonical, u.id);
    return Status::Ok();
  }
  Status UpdateUser(const Change<User>& c) override {
    Erase(t_.user_by_name, c.before.canonical);
    Set(t_.user_by_name, c.after.canonical, c.after.id);
    return Replace(t_.users, c.after.id, c.after);
  }
  Status InsertSession(const Session& s) override { return Insert(t_.sessions, s.token_hash, s); }
  Status UpdateSession(const Change<Session>& c) override {
    return Replace(t_.sessions, c.after.token_hash, c.after);
  }
  Status DeleteSession(const Session& s) override {
    Erase(t_.sessions, s.token_hash);
    return Status::Ok();
  }
  Status DeleteSessionsOfUser(const std::string& user_id) override {
    return EraseWhere(t_.sessions, [&](const Session& s) { return s.user_id == user_id; });
  }
  Status InsertInvitation(const Invitation& i) override { return Insert(t_.invitations, i.id, i); }
  Status UpdateInvitation(const Change<Invitation>& c) override {
    return Replace(t_.invitations, c.after.id, c.after);
  }
  Status InsertConversation(const Conversation& c) override {
    return Insert(t_.conversations, c.id, c);
  }
  Status UpdateConversation(const Change<Conversation>& c) override {
    return Replace(t_.conversations, c.after.id, c.after);
  }
  Status InsertMessage(const Message& m) override { return Insert(t_.messages, m.id, m); }
  Status UpdateMessage(const Change<Message>& c) override {
    return Replace(t_.messages, c.after.id, c.after);
  }
  Status PutIdempotency(const IdempotencyRecord& r) override {
    Set(t_.idempotency, {r.sender, r.key}, r);
    return Status::Ok();
  }

  // ---- History ----

  Status AppendEvent(const Event& e) override {
    if (!t_.events.empty() && e.seq <= t_.events.rbegin()->first) {
      return Status::Corrupt("event " + std::to_string(e.seq) + " is not above every stored one");
    }
    Set(t_.events, e.seq, std::make_shared<const Event>(e));
    Set(t_.events_by_entity, {e.id, e.seq}, e.kind);
    return Status::Ok();
  }
  Status TombstoneEvents(const std::string& entity, EventKind kind, Micros at) override {
    for (const std::int64_t seq : SeqsOf(entity)) {
      Event e = *t_.events.at(seq);
      if (e.kind != kind) continue;
      e.text.clear();
      e.deleted_at = at;
      Set(t_.events, seq, std::make_shared<const Event>(std::move(e)));
    }
    return Status::Ok();
  }
  Status RemoveEventsOf(const std::string& entity, std::int64_t* count,
                        std::int64_t* highest) override {
    for (const std::int64_t seq : SeqsOf(entity)) {
      Erase(t_.events, seq);
      Erase(t_.events_by_entity, {entity, seq});
      ++*count;
      *highest = std::max(*highest, seq);
    }
    return Status::Ok();
  }
  Status RemoveMessage(const std::string& id) override {
    Erase(t_.messages, id);
    return Status::Ok();
  }
  Status RemoveConversation(const std::string& id) override {
    Erase(t_.conversations, id);
    return Status::Ok();
  }
  Status RemoveSessionsUsedBefore(Micros before) override {
    return EraseWhere(t_.sessions, [&](const Session& s) { return s.last_used < before; });
  }
  Status RemoveInvitationsIssuedBefore(Micros before) override {
    return EraseWhere(t_.invitations, [&](const Invitation& i) { return i.issued_at < before; });
  }
  Status RemoveIdempotencyMadeBefore(Micros before) override {
    return EraseWhere(t_.idempotency,
                      [&](const IdempotencyRecord& r) { return r.created_at < before; });
  }

  Status SetHead(const Head& head) override {
    const Head old = t_.head;
    undo_.push_back([this, old] { t_.head = old; });
    t_.head = head;
    return Status::Ok();
  }

 private:
  // Ids of the records that `pick` chooses, by (time, id) like the indexes
  // of a real engine, at most `limit`.
  template <typename Map, typename Pick>
  static Status Collect(const Map& map, std::vector<std::string>* ids, std::size_t limit,
                        Pick pick) {
    std::vector<std::pair<Micros, std::string>> found;
    for (const auto& [id, record] : map) {
      if (!pick(record)) continue;
      if constexpr (std::is_same_v<typename Map::mapped_type, Message>) {
        found.emplace_back(record.at, id);
      } else {
        found.emplace_back(record.last_activity, id);
      }
    }
    std::sort(found.begin(), found.end());
    for (std::size_t i = 0; i < found.size() && i < limit; ++i) ids->push_back(found[i].second);
    return Status::Ok();
  }

  std::vector<std::int64_t> SeqsOf(const std::string& entity) const {
    std::vector<std::int64_t> seqs;
    for (auto it = t_.events_by_entity.lower_bound({entity, 0});
         it != t_.events_by_entity.end() && it->first.first == entity; ++it) {
      seqs.push_back(it->first.second);
    }
    return seqs;
  }

  // ---- Changes, each logged with its undo ----

  template <typename Map>
  void Set(Map& map, const typename Map::key_type& key, const typename Map::mapped_type& value) {
    const auto it = map.find(key);
    if (it == map.end()) {
      undo_.push_back([&map, key] { map.erase(key); });
      map.emplace(key, value);
    } else {
      undo_.push_back([&map, key, old = it->second] { map.insert_or_assign(key, old); });
      it->second = value;
    }
  }

  template <typename Map>
  void Erase(Map& map, const typename Map::key_type& key) {
    const auto it = map.find(key);
    if (it == map.end()) return;
    undo_.push_back([&map, key, old = it->second] { map.emplace(key, old); });
    map.erase(it);
  }

  template <typename Map>
  Status Insert(Map& map, const typename Map::key_type& key,
                const typename Map::mapped_type& value) {
    if (map.contains(key)) return Status::Conflict("the key is already stored");
    Set(map, key, value);
    return Status::Ok();
  }

  template <typename Map>
  Status Replace(Map& map, const typename Map::key_type& key,
                 const typename Map::mapped_type& value) {
    if (!map.contains(key)) return NotFound("such record");
    Set(map, key, value);
    return Status::Ok();
  }

  template <typename Map, typename Pred>
  Status EraseWhere(Map& map, Pred doomed) {
    std::vector<typename Map::key_type> keys;
    for (const auto& [key, value] : map) {
      if (doomed(value)) keys.push_back(key);
    }
    for (const auto& key : keys) Erase(map, key);
    return Status::Ok();
  }

  void UndoTo(std::size_t mark) {
    while (undo_.size() > mark) {
      undo_.back()();
      undo_.pop_back();
    }
  }

  Tables& t_;
  std::unique_lock<std::mutex> lock_;
  MemoryRecords records_;
  std::vector<std::function<void()>> undo_;
  std::size_t savepoint_ = 0;
};

class MemoryEngine final : public storage::Engine {
 public:
  storage::Capabilities capabilities() const override {
    storage::Capabilities caps;
    caps.multi_process_writers = false;
    caps.survives_process_kill = false;
    caps.survives_power_loss = false;
    return caps;
  }

  Status BeginWrite(std::unique_ptr<storage::WriteTxn>* out) override {
    *out = std::make_unique<MemoryWriteTxn>(tables_, mu_);
    return Status::Ok();
  }

  Status BeginRead(std::unique_ptr<storage::RecordReader>* out) override {
    *out = std::make_unique<MemoryRecords>(tables_, &mu_);
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  Tables tables_;  // guarded by mu_
};

}  // namespace

void RegisterMemoryBackend(storage::Registry& registry) {
  registry.Register("memory", [](const std::string& url, std::unique_ptr<storage::Store>* out) {
    if (url != "memory:") {
      return Status::Invalid("database URL '" + url +
                             "': the memory backend takes 'memory:' and nothing after it");
    }
    return storage::OpenEngineStore(std::make_unique<MemoryEngine>(), out);
  });
}

}  // namespace example
