#include "storage/maintenance/check_store.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

#include "storage/maintenance/table_scan.h"

namespace quire::storage::maintenance {
namespace {

constexpr Micros kForever = std::numeric_limits<Micros>::max();

const char* KindName(EventKind kind) {
  switch (kind) {
    case EventKind::kUserCreated:
      return "user_created";
    case EventKind::kConversationCreated:
      return "conversation_created";
    case EventKind::kConversationDeleted:
      return "conversation_deleted";
    case EventKind::kMessageSent:
      return "message_sent";
    case EventKind::kMessageDeleted:
      return "message_deleted";
  }
  return "unknown";
}

// An order-independent digest of a set of ids, to compare what a lookup
// lists with what the records say, without holding both in memory.
class IdSet {
 public:
  void Add(const std::string& id) {
    sum_ += Mix(std::hash<std::string>{}(id));
    ++count_;
  }
  std::uint64_t count() const { return count_; }
  friend bool operator==(const IdSet&, const IdSet&) = default;

 private:
  static std::uint64_t Mix(std::uint64_t x) {  // splitmix64's finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  std::uint64_t sum_ = 0;
  std::uint64_t count_ = 0;
};

class Checker {
 public:
  Checker(Engine& engine, std::size_t page_size, CheckReport* report)
      : engine_(engine), page_size_(page_size), report_(*report) {}

  Status Run() {
    if (Status s = ReadHead(engine_, &report_.head); !s.ok()) return s;
    CheckHead();
    if (Status s = CheckEvents(); !s.ok()) return s;
    if (Status s = CheckRecords(); !s.ok()) return s;
    if (Status s = CheckLookups(); !s.ok()) return s;
    return engine_.CheckIntegrity(&report_.problems);
  }

 private:
  void Problem(std::string line) { report_.problems.push_back(std::move(line)); }

  void CheckHead() {
    const Head& h = report_.head;
    if (h.last_seq < 0) Problem("head: last_seq " + std::to_string(h.last_seq) + " is negative");
    if (h.purged_through < 0 || h.purged_through > h.last_seq) {
      Problem("head: purged_through " + std::to_string(h.purged_through) +
              " is outside 0..last_seq " + std::to_string(h.last_seq));
    }
    if (!(h.lost_after == 0 && h.lost_through == 0) &&
        !(0 <= h.lost_after && h.lost_after < h.lost_through && h.lost_through <= h.last_seq)) {
      Problem("head: the break in history after " + std::to_string(h.lost_after) + " up to " +
              std::to_string(h.lost_through) + " does not lie below last_seq " +
              std::to_string(h.last_seq));
    }
  }

  // ---- Events, each against its record ----

  Status CheckEvents() {
    const Head& h = report_.head;
    std::int64_t last = 0;
    Status s = ForEachEventPage(
        engine_, std::numeric_limits<std::int64_t>::max(), page_size_,
        [&](const std::vector<Event>& page) {
          std::unique_ptr<RecordReader> reader;
          if (Status s = engine_.BeginRead(&reader); !s.ok()) return s;
          for (const Event& e : page) {
            ++report_.rows["events"];
            const std::string name = "event " + std::to_string(e.seq);
            if (e.seq <= last) {
              Problem(name + ": comes after event " + std::to_string(last));
            }
            last = std::max(last, e.seq);
            if (e.seq > h.last_seq) {
              Problem(name + ": above the head's last_seq " + std::to_string(h.last_seq));
            }
            if (e.seq > h.lost_after && e.seq < h.lost_through) {
              Problem(name + ": inside the break in history after " + std::to_string(h.lost_after));
            }
            if (Status s = CheckEvent(*reader, e, name); !s.ok()) return s;
          }
          return Status::Ok();
        });
    if (!s.ok()) return s;
    std::sort(creations_.begin(), creations_.end());
    for (std::size_t i = 1; i < creations_.size(); ++i) {
      if (creations_[i].first == creations_[i - 1].first) {
        Problem("events " + std::to_string(creations_[i - 1].second) + " and " +
                std::to_string(creations_[i].second) + ": both create the same entity");
      }
    }
    creations_ = {};
    return Status::Ok();
  }

  // A created/sent event of a deleted record is a tombstone; of a live one
  // it carries the record's text.
  void CheckCreationText(const Event& e, const std::string& name, bool deleted,
                         const std::string& text) {
    if (deleted && (e.deleted_at == std::nullopt || !e.text.empty())) {
      Problem(name + ": the record " + e.id + " is deleted but its " + KindName(e.kind) +
              " event still has its text");
    }
    if (!deleted && (e.deleted_at != std::nullopt || e.text != text)) {
      Problem(name + ": its text differs from the live record " + e.id);
    }
  }

  Status CheckEvent(RecordReader& reader, const Event& e, const std::string& name) {
    auto missing = [&](Status s, const char* what) {
      if (s.IsNotFound()) {
        Problem(name + " (" + KindName(e.kind) + "): the " + what + " " + e.id + " does not exist");
        return Status::Ok();
      }
      return s;
    };
    switch (e.kind) {
      case EventKind::kUserCreated: {
        User u;
        Status s = reader.GetUser(e.id, &u);
        if (!s.ok()) return missing(s, "user");
        Created(e, "users");
        CheckCreationText(e, name, false, u.name);
        return Status::Ok();
      }
      case EventKind::kConversationCreated:
      case EventKind::kConversationDeleted: {
        Conversation c;
        Status s = reader.GetConversation(e.id, &c);
        if (!s.ok()) return missing(s, "conversation");
        if (e.kind == EventKind::kConversationCreated) {
          Created(e, "conversations");
          CheckCreationText(e, name, c.deleted_at.has_value(), c.name);
        } else if (!c.deleted_at) {
          Problem(name + " (conversation_deleted): the conversation " + e.id + " is live");
        }
        return Status::Ok();
      }
      case EventKind::kMessageSent:
      case EventKind::kMessageDeleted: {
        Message m;
        Status s = reader.GetMessage(e.id, &m);
        if (!s.ok()) return missing(s, "message");
        if (e.conversation != m.conversation) {
          Problem(name + ": names conversation " + e.conversation + ", its message " + e.id +
                  " is in " + m.conversation);
        }
        if (e.kind == EventKind::kMessageSent) {
          Created(e, "messages");
          if (e.sender != m.sender) Problem(name + ": its sender differs from message " + e.id);
          CheckCreationText(e, name, m.deleted_at.has_value(), m.body);
        } else if (!m.deleted_at) {
          Problem(name + " (message_deleted): the message " + e.id + " is live");
        }
        return Status::Ok();
      }
    }
    Problem(name + ": unknown kind " + std::to_string(static_cast<int>(e.kind)));
    return Status::Ok();
  }

  void Created(const Event& e, const std::string& table) {
    ++creation_events_[table];
    creations_.emplace_back(std::hash<std::string>{}(e.id), e.seq);
  }

  // ---- Records, against their creation events and references ----

  template <typename Record, typename Key, typename Visit>
  Status EachRecord(const std::string& table, ListFunction<Record, Key> list, Visit visit) {
    return ForEachPage(engine_, list, page_size_, [&](const std::vector<Record>& page) {
      std::unique_ptr<RecordReader> reader;
      if (Status s = engine_.BeginRead(&reader); !s.ok()) return s;
      for (const Record& r : page) {
        ++report_.rows[table];
        if (Status s = visit(*reader, r); !s.ok()) return s;
      }
      return Status::Ok();
    });
  }

  Status CheckRecords() {
    using R = RecordReader;
    Status s = EachRecord("users", &R::ListUsers, [&](RecordReader& reader, const User& u) {
      User found;
      Status s = reader.FindUserByCanonicalName(u.canonical, &found);
      if (s.IsNotFound() || (s.ok() && found.id != u.id)) {
        Problem("user " + u.id + ": not found by its canonical name");
        return Status::Ok();
      }
      return s;
    });
    if (s.ok()) {
      s = EachRecord("conversations", &R::ListConversations,
                     [&](RecordReader&, const Conversation& c) {
                       (c.deleted_at ? deleted_conversations_ : live_conversations_).Add(c.id);
                       if (!c.deleted_at) live_conversation_names_.emplace_back(c.canonical, c.id);
                       return Status::Ok();
                     });
    }
    if (s.ok()) {
      s = EachRecord("messages", &R::ListMessages, [&](RecordReader& reader, const Message& m) {
        (m.deleted_at ? deleted_messages_ : live_messages_).Add(m.id);
        Conversation c;
        return Reference(
            reader.GetConversation(m.conversation, &c),
            "message " + m.id + ": its conversation " + m.conversation + " does not exist");
      });
    }
    if (s.ok()) {
      s = EachRecord("sessions", &R::ListSessions, [&](RecordReader& reader, const Session& x) {
        Session found;
        Status s = reader.FindSession(x.token_hash, &found);
        if (s.IsNotFound()) {
          Problem("a session of user " + x.user_id + ": not found by its token hash");
        } else if (!s.ok()) {
          return s;
        }
        User u;
        return Reference(reader.GetUser(x.user_id, &u),
                         "a session: its user " + x.user_id + " does not exist");
      });
    }
    if (s.ok()) {
      s = EachRecord(
          "invitations", &R::ListInvitations, [&](RecordReader& reader, const Invitation& i) {
            User u;
            return Reference(
                reader.GetUser(i.issuer_id, &u),
                "invitation " + i.id + ": its issuer " + i.issuer_id + " does not exist");
          });
    }
    if (s.ok()) {
      s = EachRecord("idempotency records", &R::ListIdempotency,
                     [&](RecordReader&, const IdempotencyRecord&) { return Status::Ok(); });
    }
    if (!s.ok()) return s;
    for (const char* table : {"users", "conversations", "messages"}) {
      const std::uint64_t records = report_.rows[table];
      const std::uint64_t events = creation_events_[table];
      if (records != events) {
        Problem(std::string(table) + ": " + std::to_string(records) + " records but " +
                std::to_string(events) + " creation events (each record has exactly one)");
      }
    }
    return Status::Ok();
  }

  Status Reference(Status s, const std::string& line) {
    if (s.IsNotFound()) {
      Problem(line);
      return Status::Ok();
    }
    return s;
  }

  // ---- The lookups writes use, against the records ----

  Status CheckLookups() {
    std::unique_ptr<WriteTxn> txn;  // never committed: destroying it rolls back
    if (Status s = engine_.BeginWrite(&txn); !s.ok()) return s;
    auto compare = [&](const std::vector<std::string>& ids, const IdSet& records,
                       const std::string& what) {
      IdSet listed;
      for (const std::string& id : ids) listed.Add(id);
      if (!(listed == records)) {
        Problem(what + ": the lookup lists " + std::to_string(listed.count()) +
                ", the records say " + std::to_string(records.count()));
      }
    };
    std::vector<std::string> ids;
    if (Status s = txn->ListLiveConversationsIdleBefore(kForever, &ids); !s.ok()) return s;
    compare(ids, live_conversations_, "live conversations by activity");
    ids.clear();
    if (Status s = txn->ListConversationsDeletedBefore(kForever, &ids); !s.ok()) return s;
    compare(ids, deleted_conversations_, "deleted conversations by time");
    ids.clear();
    if (Status s = txn->ListLiveMessagesSentBefore(kForever, &ids); !s.ok()) return s;
    compare(ids, live_messages_, "live messages by time");
    ids.clear();
    if (Status s = txn->ListMessagesDeletedBefore(kForever, &ids); !s.ok()) return s;
    compare(ids, deleted_messages_, "deleted messages by time");

    IdSet by_conversation;
    for (const auto& [canonical, id] : live_conversation_names_) {
      Conversation found;
      Status s = txn->FindLiveConversationByName(canonical, &found);
      if (s.IsNotFound() || (s.ok() && found.id != id)) {
        Problem("conversation " + id + ": not found by its name");
      } else if (!s.ok()) {
        return s;
      }
      ids.clear();
      s = txn->ListLiveMessagesOf(id, std::numeric_limits<std::size_t>::max(), &ids);
      if (!s.ok()) return s;
      for (const std::string& m : ids) by_conversation.Add(m);
    }
    compare_ids_of_conversations(by_conversation);
    return Status::Ok();
  }

  void compare_ids_of_conversations(const IdSet& listed) {
    if (!(listed == live_messages_)) {
      Problem("live messages by conversation: the lookups list " + std::to_string(listed.count()) +
              ", the records say " + std::to_string(live_messages_.count()));
    }
  }

  Engine& engine_;
  const std::size_t page_size_;
  CheckReport& report_;

  std::map<std::string, std::uint64_t> creation_events_;
  std::vector<std::pair<std::size_t, std::int64_t>> creations_;  // (hash of id, seq)
  IdSet live_conversations_, deleted_conversations_, live_messages_, deleted_messages_;
  std::vector<std::pair<std::string, std::string>> live_conversation_names_;  // (canonical, id)
};

}  // namespace

Status CheckStore(Engine& engine, std::size_t page_size, CheckReport* report) {
  *report = CheckReport{};
  return Checker(engine, page_size, report).Run();
}

}  // namespace quire::storage::maintenance
