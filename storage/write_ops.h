// The state changes a Store applies: one struct per domain operation.
//
// Each operation is atomic on its own: all of its effects and events commit,
// or none do and its status says why. A record whose id (or token hash) is
// already stored is a Conflict of that operation alone, like a taken name. Inputs are already
// validated and normalized above the seam; a backend checks only what needs the stored state
// (uniqueness, existence, "still live"), inside its transaction, so that two
// racing writers cannot both pass.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "storage/status.h"
#include "storage/types.h"

namespace quire::storage::op {

// Creates the first user and its session. Conflict once any user exists.
// Emits user created.
struct Setup {
  User user;
  Session session;
};

// Consumes an unused invitation issued at or after `issued_after`, creates the
// user and its session. NotFound when the invitation is unknown, used or
// older; Conflict when the canonical name is taken (the invitation then stays
// usable). Emits user created.
struct AcceptInvitation {
  std::string invitation_id;
  Micros issued_after = 0;
  User user;
  Session session;
};

// Adds a session (login).
struct CreateSession {
  Session session;
};

// Removes one session (logout). NotFound when it does not exist.
struct DeleteSession {
  std::string token_hash;
};

// Sets the user's password hash and replaces every session of the user with
// `session`; with an empty session.token_hash no session is added (an
// operator's reset: every session ends). NotFound when the user does not
// exist.
struct ChangePassword {
  std::string user_id;
  std::string password_hash;
  Session session;
};

// Removes every session of the user (an operator's logout-all); the password
// stays. NotFound when the user does not exist.
struct DeleteUserSessions {
  std::string user_id;
};

// Renews a session's last use. NotFound when it does not exist.
struct TouchSession {
  std::string token_hash;
  Micros at = 0;
};

struct CreateInvitation {
  Invitation invitation;
};

// Conflict when a live conversation has the same canonical name.
// Emits conversation created.
struct CreateConversation {
  Conversation conversation;
};

// Adds a message to a live conversation and sets the conversation's
// last_activity to the message's time. NotFound when the conversation is
// unknown or deleted. Emits message sent.
//
// With a non-empty idempotency_key: when the sender recorded the same key at
// or after `key_after`, nothing is written or emitted, `replayed` is set and
// `message` becomes the first message (body empty if it was deleted since) —
// this check comes before the conversation's.
struct SendMessage {
  Message message;  // in: the new message; out: the stored one
  std::string idempotency_key;
  Micros key_after = 0;
  bool replayed = false;  // out
};

// Deletes a live conversation that has no live messages. NotFound when unknown
// or deleted; Conflict when it has live messages. Blanks its name, tombstones
// its created event, frees its name. Emits conversation deleted.
struct DeleteConversation {
  std::string id;
  Micros at = 0;
};

// Deletes a live message. NotFound when unknown or deleted. Blanks its body,
// tombstones its sent event. Emits message deleted.
struct DeleteMessage {
  std::string id;
  Micros at = 0;
};

// Retention: deletes, as DeleteMessage does, every live message sent before
// `messages_sent_before`; then every live conversation whose last_activity is
// before `conversations_idle_before`, each after deleting its live messages.
// Events are emitted in that order, all with time `at`.
struct Expire {
  Micros messages_sent_before = 0;
  Micros conversations_idle_before = 0;
  Micros at = 0;
  std::int64_t deleted_messages = 0;       // out
  std::int64_t deleted_conversations = 0;  // out
};

// Retention: removes from history every event of conversations and messages
// deleted before `deleted_before`, raising Head::purged_through to the highest
// sequence removed; drops sessions last used before `sessions_used_before`,
// invitations issued before `invitations_issued_before` and idempotency
// records made before `idempotency_before`. Emits nothing.
struct Purge {
  Micros deleted_before = 0;
  Micros sessions_used_before = 0;
  Micros invitations_issued_before = 0;
  Micros idempotency_before = 0;
  std::int64_t purged_events = 0;  // out
};

using Operation =
    std::variant<Setup, AcceptInvitation, CreateSession, DeleteSession, ChangePassword,
                 TouchSession, CreateInvitation, CreateConversation, SendMessage,
                 DeleteConversation, DeleteMessage, Expire, Purge, DeleteUserSessions>;

}  // namespace quire::storage::op

namespace quire::storage {

// One operation of a batch and, after Store::Apply, its outcome.
struct Write {
  op::Operation op;
  Status status;              // out: this operation's own result
  std::int64_t last_seq = 0;  // out: highest sequence it emitted, 0 if none
};

// Gives every write of `batch` the outcome `status` and no sequence: how a
// backend starts a batch, and how it reports a batch that failed as a whole.
inline void SetOutcomes(std::span<Write> batch, const Status& status) {
  for (Write& w : batch) {
    w.status = status;
    w.last_seq = 0;
  }
}

}  // namespace quire::storage
