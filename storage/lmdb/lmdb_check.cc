#include "storage/lmdb/lmdb_check.h"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace quire::storage::lmdb_tables {
namespace {

using lmdb_codec::ConversationRecord;

// Bytes for a message line: text as it is, anything else as \xNN.
std::string Shown(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", byte);
      out += hex;
    }
  }
  return out;
}

std::string N(std::int64_t n) {
  return std::to_string(n);
}

const char* KindName(EventKind kind) {
  switch (kind) {
    case EventKind::kUserCreated:
      return "user created";
    case EventKind::kConversationCreated:
      return "conversation created";
    case EventKind::kConversationDeleted:
      return "conversation deleted";
    case EventKind::kMessageSent:
      return "message sent";
    case EventKind::kMessageDeleted:
      return "message deleted";
  }
  return "unknown";
}

std::string Describe(const Conversation& c) {
  std::string text = "conversation " + Shown(c.id) + " (last active at " + N(c.last_activity);
  if (c.deleted_at) text += ", deleted at " + N(*c.deleted_at);
  return text + ")";
}

std::string Describe(const Message& m) {
  std::string text = "message " + Shown(m.id) + " (of conversation " + Shown(m.conversation) +
                     ", sent at " + N(m.at);
  if (m.deleted_at) text += ", deleted at " + N(*m.deleted_at);
  return text + ")";
}

class Checker {
 public:
  Checker(const Tx& tx, std::vector<std::string>* problems) : tx_(tx), problems_(problems) {}

  void Run() {
    CheckMeta();
    CheckUsers();
    CheckSessions();
    CheckConversations();
    CheckMessages();
    CheckDeleted();
    CheckEvents();
    if (found_ > kMaxProblemLines) {
      problems_->push_back("and " + std::to_string(found_ - kMaxProblemLines) +
                           " more problems, not listed");
    }
  }

 private:
  void Problem(Db db, const std::string& what) {
    if (++found_ <= kMaxProblemLines) problems_->push_back(std::string(kDbNames[db]) + ": " + what);
  }
  // An index entry that should be there for `who`.
  void Expect(Db db, const std::string& key, const std::string& who) {
    if (!tx_.Has(db, key)) Problem(db, "no entry for " + who);
  }
  // An index entry whose record is missing or disagrees (`wrong` says how).
  void Entry(Db db, const std::string& entry, const std::string& wrong) {
    if (!wrong.empty()) Problem(db, "entry " + entry + " points at " + wrong);
  }

  // Calls fn(key, value) on every entry of `db`; one that does not decode
  // is a problem, and the check goes on.
  template <typename Fn>
  void Each(Db db, Fn&& fn) {
    tx_.Scan(db, "", [&](std::string_view key, std::string_view value) {
      try {
        fn(key, value);
      } catch (const CorruptRecord& e) {
        Problem(db, "entry " + Shown(key) + " does not decode: " + e.what());
      }
      return true;
    });
  }

  // "" when the record `id` exists and fits; else what it is instead.
  template <typename Fits>
  std::string ConversationMismatch(const std::string& id, Fits&& fits) {
    const std::optional<ConversationRecord> r = LoadConversation(tx_, id);
    if (!r) return "no conversation";
    return fits(r->conversation) ? "" : Describe(r->conversation);
  }
  template <typename Fits>
  std::string MessageMismatch(const std::string& id, Fits&& fits) {
    const std::optional<MessageRecord> r = LoadMessage(tx_, id);
    if (!r) return "no message";
    return fits(r->message) ? "" : Describe(r->message);
  }

  // The event a record names by its sequence is there, of it and of `kind`.
  void CheckEventOf(Db db, const std::string& id, std::int64_t seq, EventKind kind) {
    const std::string named = "record " + Shown(id) + " names " + KindName(kind) + " event ";
    if (seq == 0) {
      Problem(db, "record " + Shown(id) + " names no " + KindName(kind) + " event");
      return;
    }
    const auto stored = tx_.Get(kEvents, IntKey(seq));
    if (!stored) {
      Problem(db, named + N(seq) + ", which is not in events");
      return;
    }
    const Event e = EventAt(seq, *stored);
    if (e.id != id || e.kind != kind) {
      Problem(db, named + N(seq) + ", which is a " + KindName(e.kind) + " event of " + Shown(e.id));
    }
  }

  // Each entry of a name bucket table is in its name's bucket and names a
  // record of that name (`mismatch` says how it does not).
  template <typename Mismatch>
  void CheckNames(Db db, Mismatch&& mismatch) {
    Each(db, [&](std::string_view key, std::string_view bucket) {
      for (Decoder d(bucket); !d.AtEnd();) {
        const std::string name = d.Str();
        const std::string id = d.Str();
        const std::string entry = "('" + Shown(name) + "', " + Shown(id) + ")";
        if (Tx::NameKey(name) != key)
          Problem(db, "entry " + entry + " is in another name's bucket");
        Entry(db, entry, mismatch(id, name));
      }
    });
  }

  void CheckMeta() {
    try {
      last_seq_ = tx_.Meta(kLastSeq);
    } catch (const CorruptRecord& e) {
      Problem(kMeta, e.what());
    }
    for (const char* name : {kSchemaVersionKey, kPurgedThrough}) {
      try {
        tx_.Meta(name);
      } catch (const CorruptRecord& e) {
        Problem(kMeta, e.what());
      }
    }
  }

  void CheckUsers() {
    Each(kUsers, [&](std::string_view key, std::string_view value) {
      const User u = Decode<User>(value);
      if (u.id != key) Problem(kUsers, "record " + Shown(key) + " holds user " + Shown(u.id));
      if (tx_.FindName(kUsersByName, u.canonical) != u.id) {
        Problem(kUsersByName,
                "no entry for user " + Shown(u.id) + " named '" + Shown(u.canonical) + "'");
      }
    });
    CheckNames(kUsersByName, [&](const std::string& id, const std::string& name) -> std::string {
      const auto stored = tx_.Get(kUsers, id);
      if (!stored) return "no user";
      const User u = Decode<User>(*stored);
      return u.canonical == name ? "" : "user " + Shown(id) + " named '" + Shown(u.canonical) + "'";
    });
  }

  void CheckSessions() {
    Each(kSessions, [&](std::string_view key, std::string_view value) {
      const Session s = Decode<Session>(value);
      const std::string who = "session " + Shown(s.token_hash) + " of user " + Shown(s.user_id);
      if (s.token_hash != key) Problem(kSessions, "record " + Shown(key) + " holds " + who);
      if (!tx_.Has(kUsers, s.user_id)) Problem(kSessions, who + ": no such user");
      Expect(kSessionsByUser, SessionOfUserKey(s.user_id, s.token_hash), who);
    });
    Each(kSessionsByUser, [&](std::string_view key, std::string_view) {
      Decoder d(key);
      const std::string user = d.Str();
      const std::string token(d.Rest());
      const auto stored = tx_.Get(kSessions, token);
      std::string wrong = stored ? "" : "no session";
      if (stored) {
        const Session s = Decode<Session>(*stored);
        if (s.user_id != user) wrong = "a session of user " + Shown(s.user_id);
      }
      Entry(kSessionsByUser, "(" + Shown(user) + ", " + Shown(token) + ")", wrong);
    });
  }

  void CheckConversations() {
    Each(kConversations, [&](std::string_view key, std::string_view value) {
      const auto r = Decode<ConversationRecord>(value);
      const Conversation& c = r.conversation;
      const std::string who = Describe(c);
      if (c.id != key) Problem(kConversations, "record " + Shown(key) + " holds " + who);
      if (c.deleted_at) {
        Expect(kDeletedByTime, DeletedKey(*c.deleted_at, 'C', c.id), who);
      } else {
        if (tx_.FindName(kConversationsLiveByName, c.canonical) != c.id) {
          Problem(kConversationsLiveByName,
                  "no entry for " + who + " named '" + Shown(c.canonical) + "'");
        }
        Expect(kConversationsLiveByActivity, ActivityKey(c), who);
      }
      CheckEventOf(kConversations, c.id, r.created_seq, EventKind::kConversationCreated);
      if (c.deleted_at || r.deleted_seq != 0) {
        CheckEventOf(kConversations, c.id, r.deleted_seq, EventKind::kConversationDeleted);
      }
    });
    CheckNames(kConversationsLiveByName, [&](const std::string& id, const std::string& name) {
      return ConversationMismatch(
          id, [&](const Conversation& c) { return !c.deleted_at && c.canonical == name; });
    });
    Each(kConversationsLiveByActivity, [&](std::string_view key, std::string_view) {
      Decoder d(key);
      const std::int64_t at = d.Int();
      const std::string id(d.Rest());
      Entry(kConversationsLiveByActivity, "(" + N(at) + ", " + Shown(id) + ")",
            ConversationMismatch(
                id, [&](const Conversation& c) { return !c.deleted_at && c.last_activity == at; }));
    });
  }

  void CheckMessages() {
    Each(kMessages, [&](std::string_view key, std::string_view value) {
      const auto r = Decode<MessageRecord>(value);
      const Message& m = r.message;
      const std::string who = Describe(m);
      if (m.id != key) Problem(kMessages, "record " + Shown(key) + " holds " + who);
      if (!tx_.Has(kConversations, m.conversation))
        Problem(kMessages, who + ": no such conversation");
      Expect(kConversationMessages, ConversationMessageKey(m), who);
      if (m.deleted_at) {
        Expect(kDeletedByTime, DeletedKey(*m.deleted_at, 'M', m.id), who);
      } else {
        Expect(kMessagesLiveByAt, LiveByAtKey(m), who);
        Expect(kConversationMessagesLive, ConversationLiveKey(m), who);
      }
      CheckEventOf(kMessages, m.id, r.sent_seq, EventKind::kMessageSent);
      if (m.deleted_at || r.deleted_seq != 0) {
        CheckEventOf(kMessages, m.id, r.deleted_seq, EventKind::kMessageDeleted);
      }
    });
    Each(kMessagesLiveByAt, [&](std::string_view key, std::string_view) {
      Decoder d(key);
      const std::int64_t at = d.Int();
      const std::string id(d.Rest());
      Entry(kMessagesLiveByAt, "(" + N(at) + ", " + Shown(id) + ")",
            MessageMismatch(id, [&](const Message& m) { return !m.deleted_at && m.at == at; }));
    });
    Each(kConversationMessagesLive, [&](std::string_view key, std::string_view) {
      Decoder d(key);
      const std::string conversation = d.Str();
      const std::int64_t at = d.Int();
      const std::string id(d.Rest());
      Entry(kConversationMessagesLive,
            "(" + Shown(conversation) + ", " + N(at) + ", " + Shown(id) + ")",
            MessageMismatch(id, [&](const Message& m) {
              return !m.deleted_at && m.conversation == conversation && m.at == at;
            }));
    });
    Each(kConversationMessages, [&](std::string_view key, std::string_view) {
      Decoder d(key);
      const std::string conversation = d.Str();
      const std::string id(d.Rest());
      Entry(kConversationMessages, "(" + Shown(conversation) + ", " + Shown(id) + ")",
            MessageMismatch(id, [&](const Message& m) { return m.conversation == conversation; }));
    });
  }

  void CheckDeleted() {
    Each(kDeletedByTime, [&](std::string_view key, std::string_view) {
      Decoder d(key);
      const std::int64_t at = d.Int();
      const std::string_view rest = d.Rest();
      if (rest.empty()) throw CorruptRecord("the key has no kind");
      const std::string id(rest.substr(1));
      const std::string entry =
          "(" + N(at) + ", " + Shown(rest.substr(0, 1)) + ", " + Shown(id) + ")";
      const auto deleted_then = [&](const auto& record) { return record.deleted_at == at; };
      if (rest[0] == 'C') {
        Entry(kDeletedByTime, entry, ConversationMismatch(id, deleted_then));
      } else if (rest[0] == 'M') {
        Entry(kDeletedByTime, entry, MessageMismatch(id, deleted_then));
      } else {
        Problem(kDeletedByTime, "entry " + entry + " is of an unknown kind");
      }
    });
  }

  // Each event's entity is stored, and names the event back by its sequence.
  void CheckEvents() {
    Each(kEvents, [&](std::string_view key, std::string_view value) {
      Decoder d(key);
      const std::int64_t seq = d.Int();
      d.ExpectEnd();
      const Event e = EventAt(seq, value);
      const std::string what =
          "event " + N(seq) + " (" + KindName(e.kind) + " " + Shown(e.id) + ")";
      if (seq > last_seq_) Problem(kEvents, what + " is above meta.last_seq " + N(last_seq_));
      std::optional<std::int64_t> named;  // the sequence the entity's record names
      switch (e.kind) {
        case EventKind::kUserCreated:
          if (!tx_.Has(kUsers, e.id)) Problem(kEvents, what + ": no such user");
          return;
        case EventKind::kConversationCreated:
        case EventKind::kConversationDeleted:
          if (const auto r = LoadConversation(tx_, e.id)) {
            named = e.kind == EventKind::kConversationCreated ? r->created_seq : r->deleted_seq;
          }
          break;
        case EventKind::kMessageSent:
        case EventKind::kMessageDeleted:
          if (const auto r = LoadMessage(tx_, e.id)) {
            named = e.kind == EventKind::kMessageSent ? r->sent_seq : r->deleted_seq;
          }
          break;
      }
      if (!named) {
        Problem(kEvents, what + ": no such record");
      } else if (*named != seq) {
        Problem(kEvents, what + ": its record names event " + N(*named));
      }
    });
  }

  const Tx& tx_;
  std::vector<std::string>* const problems_;
  std::size_t found_ = 0;
  std::int64_t last_seq_ = INT64_MAX;  // until meta says
};

}  // namespace

void CheckIndexes(const Tx& tx, std::vector<std::string>* problems) {
  Checker(tx, problems).Run();
}

}  // namespace quire::storage::lmdb_tables
