#include "memory_store.h"

#include <algorithm>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <variant>

namespace example {

using storage::Conversation;
using storage::Event;
using storage::EventKind;
using storage::Invitation;
using storage::Message;
using storage::Micros;
using storage::Session;
using storage::Status;
using storage::User;
using storage::Write;
namespace op = storage::op;

// The whole state of a store. Every member function requires mu_ held.
//
// The rule that makes batches simple: each Do() checks everything that can
// fail before it changes anything. A failed write therefore leaves no trace
// (and emits nothing), so no undo log or savepoint is needed, and the rest of
// the batch goes on. Expire and Purge cannot fail.
struct MemoryStore::Data {
  // A conversation or message with the sequences of its events, so that
  // deleting it tombstones its created/sent event, and purging it removes its
  // events, without scanning the history.
  struct StoredConversation {
    Conversation record;
    std::int64_t created_seq = 0;
    std::int64_t deleted_seq = 0;       // 0 while live
    std::set<std::string> message_ids;  // every message, live or deleted
  };
  struct StoredMessage {
    Message record;
    std::int64_t sent_seq = 0;
    std::int64_t deleted_seq = 0;  // 0 while live
  };

  // head.last_seq doubles as the sequence counter. It is only ever raised, so
  // a sequence is never reused, also after the newest event is purged.
  storage::Head head;
  // By seq. An Event, once stored, never changes: a tombstone replaces it
  // with a blanked copy. So ReadEvents can take the pointers under the lock
  // and copy the events after releasing it (see there).
  std::map<std::int64_t, std::shared_ptr<const Event>> history;
  std::map<std::string, User> users;  // by id
  std::map<std::string, std::string> user_by_canonical;
  std::map<std::string, Session> sessions;        // by token_hash
  std::map<std::string, Invitation> invitations;  // by id
  std::map<std::string, StoredConversation> conversations;
  std::map<std::string, std::string> live_conversation_by_canonical;
  std::map<std::string, StoredMessage> messages;
  // Idempotency records by (sender, key), as keys are per sender. Each holds
  // the message, body blank, to answer a replay after the message is purged;
  // it counts as made at the message's time.
  std::map<std::pair<std::string, std::string>, Message> idempotency;

  // ---- Helpers ----

  // Appends an event with the next sequence; returns the sequence.
  std::int64_t Emit(EventKind kind, Micros at, const std::string& id,
                    const std::string& conversation, const std::string& sender,
                    const std::string& text) {
    const std::int64_t seq = ++head.last_seq;
    history.emplace(seq, std::make_shared<const Event>(
                             Event{seq, kind, at, id, conversation, sender, text, std::nullopt}));
    return seq;
  }

  // Deleted text is never served again: blank it in the created/sent event.
  void Tombstone(std::int64_t seq, Micros at) {
    auto it = history.find(seq);
    if (it == history.end()) return;
    auto blanked = std::make_shared<Event>(*it->second);
    blanked->text.clear();
    blanked->deleted_at = at;
    it->second = std::move(blanked);
  }

  void InsertUser(const User& user) {
    users.emplace(user.id, user);
    user_by_canonical.emplace(user.canonical, user.id);
    Emit(EventKind::kUserCreated, user.created_at, user.id, "", "", user.name);
  }

  // The live messages of a conversation, oldest first.
  std::vector<StoredMessage*> LiveMessagesOf(const StoredConversation& c) {
    std::vector<StoredMessage*> live;
    for (const std::string& id : c.message_ids) {
      StoredMessage& m = messages.at(id);
      if (!m.record.deleted_at) live.push_back(&m);
    }
    SortOldestFirst(live);
    return live;
  }

  // Expiry deletes in a fixed order, so that its events are deterministic.
  static void SortOldestFirst(std::vector<StoredMessage*>& v) {
    std::ranges::sort(v, {},
                      [](const StoredMessage* m) { return std::tie(m->record.at, m->record.id); });
  }

  void DeleteMessageEntry(StoredMessage& m, Micros at) {
    m.record.body.clear();
    m.record.deleted_at = at;
    Tombstone(m.sent_seq, at);
    m.deleted_seq =
        Emit(EventKind::kMessageDeleted, at, m.record.id, m.record.conversation, "", "");
  }

  void DeleteConversationEntry(StoredConversation& c, Micros at) {
    // The canonical name is the name's text too; clearing it frees the name.
    live_conversation_by_canonical.erase(c.record.canonical);
    c.record.name.clear();
    c.record.canonical.clear();
    c.record.deleted_at = at;
    Tombstone(c.created_seq, at);
    c.deleted_seq = Emit(EventKind::kConversationDeleted, at, c.record.id, "", "", "");
  }

  // ---- Operations: write_ops.h is the contract of each ----

  Status Do(op::Setup& o) {
    // Nothing else can collide: sessions exist only for existing users.
    if (!users.empty()) return Status::Conflict("setup has already been done");
    InsertUser(o.user);
    sessions.emplace(o.session.token_hash, o.session);
    return Status::Ok();
  }

  Status Do(op::AcceptInvitation& o) {
    auto inv = invitations.find(o.invitation_id);
    if (inv == invitations.end() || inv->second.used || inv->second.issued_at < o.issued_after) {
      return Status::NotFound("no usable invitation " + o.invitation_id);
    }
    // Checked before the invitation is marked: a taken name leaves it usable.
    if (user_by_canonical.contains(o.user.canonical)) return Status::Conflict("name is taken");
    if (users.contains(o.user.id)) return Status::Conflict("user " + o.user.id + " exists");
    if (sessions.contains(o.session.token_hash)) return Status::Conflict("session exists");
    inv->second.used = true;
    InsertUser(o.user);
    sessions.emplace(o.session.token_hash, o.session);
    return Status::Ok();
  }

  Status Do(op::CreateSession& o) {
    if (!users.contains(o.session.user_id)) return Status::NotFound("no user " + o.session.user_id);
    if (sessions.contains(o.session.token_hash)) return Status::Conflict("session exists");
    sessions.emplace(o.session.token_hash, o.session);
    return Status::Ok();
  }

  Status Do(op::DeleteSession& o) {
    if (sessions.erase(o.token_hash) == 0) return Status::NotFound("no such session");
    return Status::Ok();
  }

  Status Do(op::ChangePassword& o) {
    auto user = users.find(o.user_id);
    if (user == users.end()) return Status::NotFound("no user " + o.user_id);
    // The new token may only collide with a session that is about to go.
    auto clash = sessions.find(o.session.token_hash);
    if (clash != sessions.end() && clash->second.user_id != o.user_id) {
      return Status::Conflict("session exists");
    }
    user->second.password_hash = o.password_hash;
    std::erase_if(sessions, [&](const auto& entry) { return entry.second.user_id == o.user_id; });
    sessions.emplace(o.session.token_hash, o.session);
    return Status::Ok();
  }

  Status Do(op::TouchSession& o) {
    auto it = sessions.find(o.token_hash);
    if (it == sessions.end()) return Status::NotFound("no such session");
    // Never backwards: a late, reordered touch must not make a session look idle.
    it->second.last_used = std::max(it->second.last_used, o.at);
    return Status::Ok();
  }

  Status Do(op::CreateInvitation& o) {
    if (!invitations.emplace(o.invitation.id, o.invitation).second) {
      return Status::Conflict("invitation " + o.invitation.id + " exists");
    }
    return Status::Ok();
  }

  Status Do(op::CreateConversation& o) {
    const Conversation& c = o.conversation;
    if (live_conversation_by_canonical.contains(c.canonical)) {
      return Status::Conflict("a live conversation has that name");
    }
    if (conversations.contains(c.id)) return Status::Conflict("conversation " + c.id + " exists");
    StoredConversation& stored = conversations[c.id];
    stored.record = c;
    stored.record.deleted_at = std::nullopt;
    stored.created_seq = Emit(EventKind::kConversationCreated, c.created_at, c.id, "", "", c.name);
    live_conversation_by_canonical.emplace(c.canonical, c.id);
    return Status::Ok();
  }

  Status Do(op::SendMessage& o) {
    Message& m = o.message;
    o.replayed = false;
    // The key comes first: a retry is answered even if the conversation has
    // gone since, and even if the message has been purged.
    if (!o.idempotency_key.empty()) {
      auto it = idempotency.find({m.sender, o.idempotency_key});
      if (it != idempotency.end() && it->second.at >= o.key_after) {
        auto stored = messages.find(it->second.id);
        m = stored != messages.end() ? stored->second.record : it->second;
        o.replayed = true;
        return Status::Ok();
      }
    }
    auto c = conversations.find(m.conversation);
    if (c == conversations.end() || c->second.record.deleted_at) {
      return Status::NotFound("no live conversation " + m.conversation);
    }
    if (messages.contains(m.id)) return Status::Conflict("message " + m.id + " exists");
    m.deleted_at = std::nullopt;
    StoredMessage& stored = messages[m.id];
    stored.record = m;
    stored.sent_seq = Emit(EventKind::kMessageSent, m.at, m.id, m.conversation, m.sender, m.body);
    c->second.message_ids.insert(m.id);
    c->second.record.last_activity = m.at;
    if (!o.idempotency_key.empty()) {
      // Replaces a record of the same key older than key_after.
      idempotency[{m.sender, o.idempotency_key}] = {m.id, m.conversation, m.sender, "", m.at, {}};
    }
    return Status::Ok();
  }

  Status Do(op::DeleteConversation& o) {
    auto c = conversations.find(o.id);
    if (c == conversations.end() || c->second.record.deleted_at) {
      return Status::NotFound("no live conversation " + o.id);
    }
    if (!LiveMessagesOf(c->second).empty()) {
      return Status::Conflict("the conversation still has live messages");
    }
    DeleteConversationEntry(c->second, o.at);
    return Status::Ok();
  }

  Status Do(op::DeleteMessage& o) {
    auto m = messages.find(o.id);
    if (m == messages.end() || m->second.record.deleted_at) {
      return Status::NotFound("no live message " + o.id);
    }
    DeleteMessageEntry(m->second, o.at);
    return Status::Ok();
  }

  Status Do(op::Expire& o) {
    o.deleted_messages = 0;
    o.deleted_conversations = 0;
    // Due messages first, oldest first. (A real engine would use an index on
    // the time; a scan keeps the example short.)
    std::vector<StoredMessage*> due;
    for (auto& [id, m] : messages) {
      if (!m.record.deleted_at && m.record.at < o.messages_sent_before) due.push_back(&m);
    }
    SortOldestFirst(due);
    for (StoredMessage* m : due) DeleteMessageEntry(*m, o.at);
    o.deleted_messages += static_cast<std::int64_t>(due.size());

    // Then idle conversations, longest idle first, each after its messages.
    std::vector<StoredConversation*> idle;
    for (auto& [id, c] : conversations) {
      if (!c.record.deleted_at && c.record.last_activity < o.conversations_idle_before) {
        idle.push_back(&c);
      }
    }
    std::ranges::sort(idle, {}, [](const StoredConversation* c) {
      return std::tie(c->record.last_activity, c->record.id);
    });
    for (StoredConversation* c : idle) {
      for (StoredMessage* m : LiveMessagesOf(*c)) {
        DeleteMessageEntry(*m, o.at);
        ++o.deleted_messages;
      }
      DeleteConversationEntry(*c, o.at);
      ++o.deleted_conversations;
    }
    return Status::Ok();
  }

  Status Do(op::Purge& o) {
    o.purged_events = 0;
    std::int64_t highest = 0;
    // Removes an entity's created/sent and deleted events.
    auto remove_events = [&](std::int64_t first, std::int64_t second) {
      for (std::int64_t seq : {first, second}) {
        if (history.erase(seq) == 0) continue;
        ++o.purged_events;
        highest = std::max(highest, seq);
      }
    };
    auto deleted_before = [&](const std::optional<Micros>& deleted_at) {
      return deleted_at && *deleted_at < o.deleted_before;
    };
    // A purged conversation takes all of its messages with it. They are all
    // deleted (a conversation is deleted only after its messages), but their
    // times need not be before the cutoff: the times come from the caller.
    std::erase_if(conversations, [&](const auto& entry) {
      const StoredConversation& c = entry.second;
      if (!deleted_before(c.record.deleted_at)) return false;
      for (const std::string& id : c.message_ids) {
        auto m = messages.find(id);
        remove_events(m->second.sent_seq, m->second.deleted_seq);
        messages.erase(m);
      }
      remove_events(c.created_seq, c.deleted_seq);
      return true;
    });
    std::erase_if(messages, [&](const auto& entry) {
      const StoredMessage& m = entry.second;
      if (!deleted_before(m.record.deleted_at)) return false;
      remove_events(m.sent_seq, m.deleted_seq);
      conversations.at(m.record.conversation).message_ids.erase(entry.first);
      return true;
    });
    // Never lowered: a later purge of older events leaves the horizon alone.
    head.purged_through = std::max(head.purged_through, highest);

    std::erase_if(sessions,
                  [&](const auto& e) { return e.second.last_used < o.sessions_used_before; });
    std::erase_if(invitations,
                  [&](const auto& e) { return e.second.issued_at < o.invitations_issued_before; });
    std::erase_if(idempotency, [&](const auto& e) { return e.second.at < o.idempotency_before; });
    return Status::Ok();
  }
};

// ---- MemoryStore ----

MemoryStore::MemoryStore() : data_(std::make_unique<Data>()) {}
MemoryStore::~MemoryStore() = default;

// The data is in this process only, and dies with it (or with the store).
storage::Capabilities MemoryStore::capabilities() const {
  return {
      .multi_process_writers = false, .survives_process_kill = false, .survives_power_loss = false};
}

Status MemoryStore::Apply(std::span<Write> batch) {
  if (batch.empty()) return Status::Ok();
  Status failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      if (broken_) throw std::runtime_error("unusable after an earlier failure");
      for (Write& w : batch) {
        const std::int64_t before = data_->head.last_seq;
        w.status = std::visit([this](auto& o) { return data_->Do(o); }, w.op);
        w.last_seq = data_->head.last_seq > before ? data_->head.last_seq : 0;
      }
      ++generation_;
    } catch (const std::exception& e) {
      // Only allocation can throw in a Do(), possibly halfway through a write.
      // There is no undo log, so rather than serve a half-applied batch the
      // store refuses every later call.
      broken_ = true;
      failed = Status::IoError(std::string("memory store: ") + e.what());
    }
  }
  if (!failed.ok()) {
    for (Write& w : batch) {
      w.status = failed;
      w.last_seq = 0;
    }
    return failed;
  }
  // After unlocking, so that woken waiters do not block on mu_ straight away.
  committed_.notify_all();
  return Status::Ok();
}

template <typename Fn>
Status MemoryStore::Read(Fn&& fn) {
  try {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) return Status::IoError("memory store is unusable after an earlier failure");
    return fn(std::as_const(*data_));
  } catch (const std::exception& e) {
    return Status::IoError(std::string("memory store: ") + e.what());
  }
}

Status MemoryStore::GetHead(storage::Head* out) {
  return Read([&](const Data& d) {
    *out = d.head;
    return Status::Ok();
  });
}

// A long read must not hold writers up (conformance property 11). Under the
// lock this takes only references to the events, a consistent snapshot since
// stored events never change; the copying, the slow part, runs unlocked.
Status MemoryStore::ReadEvents(std::int64_t after, std::int64_t upto, std::size_t limit,
                               std::vector<Event>* out) {
  std::vector<std::shared_ptr<const Event>> snapshot;
  Status s = Read([&](const Data& d) {
    // upper_bound(after): the first seq > after, without computing after + 1.
    for (auto it = d.history.upper_bound(after);
         it != d.history.end() && it->first <= upto && snapshot.size() < limit; ++it) {
      snapshot.push_back(it->second);
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  try {
    for (const auto& event : snapshot) out->push_back(*event);
  } catch (const std::exception& e) {
    return Status::IoError(std::string("memory store: ") + e.what());
  }
  return Status::Ok();
}

Status MemoryStore::HasUsers(bool* out) {
  return Read([&](const Data& d) {
    *out = !d.users.empty();
    return Status::Ok();
  });
}

namespace {

// Copies the record under `key` (through `field`, for a Stored* wrapper) to
// *out; NotFound when there is none.
template <typename Table, typename Out, typename Field = std::identity>
Status Find(const Table& table, const std::string& key, Out* out, const char* what,
            Field field = {}) {
  auto it = table.find(key);
  if (it == table.end()) return Status::NotFound(std::string("no such ") + what);
  *out = std::invoke(field, it->second);
  return Status::Ok();
}

}  // namespace

Status MemoryStore::GetUser(const std::string& id, User* out) {
  return Read([&](const Data& d) { return Find(d.users, id, out, "user"); });
}

Status MemoryStore::FindUserByCanonicalName(const std::string& canonical, User* out) {
  return Read([&](const Data& d) {
    auto it = d.user_by_canonical.find(canonical);
    if (it == d.user_by_canonical.end()) return Status::NotFound("no user with that name");
    return Find(d.users, it->second, out, "user");
  });
}

Status MemoryStore::FindSession(const std::string& token_hash, Session* out) {
  return Read([&](const Data& d) { return Find(d.sessions, token_hash, out, "session"); });
}

Status MemoryStore::GetInvitation(const std::string& id, Invitation* out) {
  return Read([&](const Data& d) { return Find(d.invitations, id, out, "invitation"); });
}

Status MemoryStore::GetConversation(const std::string& id, Conversation* out) {
  return Read([&](const Data& d) {
    return Find(d.conversations, id, out, "conversation", &Data::StoredConversation::record);
  });
}

Status MemoryStore::GetMessage(const std::string& id, Message* out) {
  return Read([&](const Data& d) {
    return Find(d.messages, id, out, "message", &Data::StoredMessage::record);
  });
}

std::uint64_t MemoryStore::CommitGeneration() {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

std::uint64_t MemoryStore::WaitForCommit(std::uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  committed_.wait_for(lock, timeout, [&] { return generation_ != seen; });
  return generation_;
}

void RegisterMemoryBackend(storage::Registry& registry) {
  registry.Register("memory", [](const std::string& url, std::unique_ptr<storage::Store>* out) {
    if (url != "memory:") {
      return Status::Invalid("database URL '" + url +
                             "': the memory backend takes 'memory:' and nothing after it");
    }
    try {
      *out = std::make_unique<MemoryStore>();
    } catch (const std::exception& e) {
      return Status::IoError(std::string("memory store: ") + e.what());
    }
    return Status::Ok();
  });
}

}  // namespace example
