// The records that cross the storage seam.
//
// These are plain values. Everything that depends on policy (names are
// normalized, ids generated, passwords hashed, event JSON rendered) happens
// above the seam, before a record reaches a backend or after it leaves one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace quire::storage {

// Microseconds since the Unix epoch, UTC. Every time crossing the seam is one.
using Micros = std::int64_t;

enum class EventKind : int {
  kUserCreated = 1,
  kConversationCreated = 2,
  kConversationDeleted = 3,
  kMessageSent = 4,
  kMessageDeleted = 5,
};

// One entry of the history. `seq` is assigned by the backend at commit.
struct Event {
  std::int64_t seq = 0;
  EventKind kind = EventKind::kUserCreated;
  Micros at = 0;
  std::string id;            // the entity the event is about: U…, C… or M…
  std::string conversation;  // message events: the message's conversation
  std::string sender;        // message sent: the sender's user id
  std::string text;          // user/conversation created: name; message sent: body
  // Set on the created/sent event of an entity once it is deleted; its text is
  // then empty. Deleted text is never stored again, so never served again.
  std::optional<Micros> deleted_at;

  friend bool operator==(const Event&, const Event&) = default;
};

struct User {
  std::string id;
  std::string name;       // NFC display form
  std::string canonical;  // NFKC_Casefold of name; unique among users
  std::string password_hash;
  Micros created_at = 0;
};

// A login. Only the hash of the token is stored.
struct Session {
  std::string token_hash;
  std::string user_id;
  Micros created_at = 0;
  Micros last_used = 0;
};

struct Invitation {
  std::string id;
  std::string issuer_id;
  Micros issued_at = 0;
  bool used = false;
};

struct Conversation {
  std::string id;
  std::string name;       // NFC display form; empty once deleted
  std::string canonical;  // unique among live conversations
  Micros created_at = 0;
  Micros last_activity = 0;  // creation, or the last message sent to it
  std::optional<Micros> deleted_at;
};

struct Message {
  std::string id;
  std::string conversation;
  std::string sender;
  std::string body;  // NFC; empty once deleted
  Micros at = 0;
  std::optional<Micros> deleted_at;

  friend bool operator==(const Message&, const Message&) = default;
};

// The store's high-water marks.
struct Head {
  // Highest sequence ever committed (0 for an empty store); remembered even
  // when that event has been purged.
  std::int64_t last_seq = 0;
  // Highest sequence ever purged (0 if none). A resume point below it has lost
  // events and must be refused.
  std::int64_t purged_through = 0;
  // A break in history, marked by `quire restore`: the sequences after
  // `lost_after` and below `lost_through` may have been used by a timeline
  // that was lost (the events after a backup). None of them is stored; a
  // resume point among them is refused, like one behind the purge horizon.
  // `lost_through` is where the history went on (the head right after the
  // restore), far above anything the lost timeline can have reached. 0 and 0
  // when the history never broke. Several breaks merge into one interval
  // (from the earliest `lost_after`), which refuses a few resume points
  // more than needed and never one too few.
  std::int64_t lost_after = 0;
  std::int64_t lost_through = 0;

  friend bool operator==(const Head&, const Head&) = default;
};

}  // namespace quire::storage
