// Properties 9 and 10 (docs/backend-authors.md): sessions, invitations
// and users; idempotent sends.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <set>
#include <thread>
#include <utility>

#include "conformance_tests/suite.h"
#include "conformance_tests/suite_internal.h"

namespace quire::conformance {

// ---- Property 9 ----

// Property 9 (docs/backend-authors.md): sessions are issued, found, renewed and
// revoked (one, or all of a user by a password change); an invitation is
// consumed at most once, also under a race.
TEST_P(StoreConformance, P09_TokensAndInvitations) {
  bool has_users = true;
  QUIRE_EXPECT_OK(store_->HasUsers(&has_users));
  EXPECT_FALSE(has_users) << "HasUsers on an empty store";
  const std::string user = SetUpFirstUser(100);
  // Sessions, password changes and invitations emit no event: their writes
  // report no sequence (write_ops.h, Write::last_seq) and leave the head.
  const std::int64_t setup_seq = Head().last_seq;
  auto apply_silent = [&](op::Operation operation) {
    Write w = Apply(std::move(operation));
    EXPECT_EQ(w.last_seq, 0) << "a write that emits nothing reported a sequence";
    return w;
  };
  const Session a = MakeSession(2, user, 1000), b = MakeSession(3, user, 1000);
  ASSERT_TRUE(apply_silent(op::CreateSession{a}).status.ok());
  ASSERT_TRUE(apply_silent(op::CreateSession{b}).status.ok());
  Session found;
  QUIRE_ASSERT_OK(store_->FindSession(a.token_hash, &found));
  EXPECT_EQ(found.user_id, user);
  EXPECT_EQ(found.last_used, 1000);
  // A token hash already stored: Conflict, and the stored session stays.
  Write taken = Apply(op::CreateSession{Session{a.token_hash, user, 1500, 1500}});
  EXPECT_TRUE(taken.status.IsConflict()) << taken.status.ToString();
  QUIRE_ASSERT_OK(store_->FindSession(a.token_hash, &found));
  EXPECT_EQ(found.created_at, 1000) << "a session with a stored token hash replaced the stored one";

  ASSERT_TRUE(apply_silent(op::TouchSession{a.token_hash, 2000}).status.ok());
  QUIRE_ASSERT_OK(store_->FindSession(a.token_hash, &found));
  EXPECT_EQ(found.last_used, 2000);
  EXPECT_EQ(found.created_at, 1000);
  EXPECT_TRUE(Apply(op::TouchSession{"no such token", 2000}).status.IsNotFound());

  ASSERT_TRUE(apply_silent(op::DeleteSession{a.token_hash}).status.ok());
  EXPECT_TRUE(store_->FindSession(a.token_hash, &found).IsNotFound());
  EXPECT_TRUE(Apply(op::DeleteSession{a.token_hash}).status.IsNotFound());

  // A password change replaces every session of the user.
  const Session c = MakeSession(4, user, 3000);
  ASSERT_TRUE(apply_silent(op::ChangePassword{user, "new hash", c}).status.ok());
  EXPECT_TRUE(store_->FindSession(b.token_hash, &found).IsNotFound());
  EXPECT_TRUE(store_->FindSession(MakeSession(1, user, 0).token_hash, &found).IsNotFound());
  QUIRE_EXPECT_OK(store_->FindSession(c.token_hash, &found));
  User u;
  QUIRE_ASSERT_OK(store_->GetUser(user, &u));
  EXPECT_EQ(u.password_hash, "new hash");
  EXPECT_TRUE(Apply(op::ChangePassword{Id('U', 404), "x", MakeSession(5, Id('U', 404), 3000)})
                  .status.IsNotFound());

  // Invitations.
  const std::string inv = Id('I', 1);
  ASSERT_TRUE(apply_silent(op::CreateInvitation{{inv, user, 5000, false}}).status.ok());
  EXPECT_EQ(Head().last_seq, setup_seq) << "a write that emits nothing moved the head";
  EXPECT_EQ(History().size(), 1u) << "a write that emits nothing left an event";
  storage::Invitation invitation;
  QUIRE_ASSERT_OK(store_->GetInvitation(inv, &invitation));
  EXPECT_EQ(invitation.issuer_id, user);
  EXPECT_EQ(invitation.issued_at, 5000);
  EXPECT_FALSE(invitation.used);
  auto accept = [&](std::int64_t n, const std::string& name, Micros issued_after) {
    return op::AcceptInvitation{inv, issued_after, MakeUser(n, name, 6000),
                                MakeSession(n, Id('U', n), 6000)};
  };
  EXPECT_TRUE(Apply(accept(10, "second", 5001)).status.IsNotFound()) << "expired";
  EXPECT_TRUE(Apply(accept(10, "first", 0)).status.IsConflict()) << "name taken";
  QUIRE_ASSERT_OK(store_->GetInvitation(inv, &invitation));
  EXPECT_FALSE(invitation.used);
  // A user id or session token already stored: Conflict of the whole accept,
  // which leaves nothing (no user, no event) and the invitation usable.
  op::AcceptInvitation id_taken = accept(10, "second", 0);
  id_taken.user.id = user;
  EXPECT_TRUE(Apply(id_taken).status.IsConflict()) << "user id taken";
  op::AcceptInvitation token_taken = accept(10, "second", 0);
  token_taken.session.token_hash = c.token_hash;
  Write refused = Apply(token_taken);
  EXPECT_TRUE(refused.status.IsConflict()) << "session token taken: " << refused.status.ToString();
  EXPECT_EQ(refused.last_seq, 0);
  EXPECT_EQ(Head().last_seq, setup_seq) << "a refused accept emitted an event";
  EXPECT_TRUE(store_->GetUser(Id('U', 10), &u).IsNotFound()) << "a refused accept left its user";
  QUIRE_ASSERT_OK(store_->GetInvitation(inv, &invitation));
  EXPECT_FALSE(invitation.used) << "a refused accept used the invitation";
  Write accepted = Apply(accept(10, "second", 5000));
  ASSERT_TRUE(accepted.status.ok()) << accepted.status.ToString();
  EXPECT_GT(accepted.last_seq, 0);
  QUIRE_ASSERT_OK(store_->GetInvitation(inv, &invitation));
  EXPECT_TRUE(invitation.used);
  EXPECT_TRUE(Apply(accept(11, "third", 0)).status.IsNotFound()) << "used";
  EXPECT_TRUE(Apply(op::AcceptInvitation{Id('I', 404), 0, MakeUser(12, "fourth", 6000),
                                         MakeSession(12, Id('U', 12), 6000)})
                  .status.IsNotFound());
  QUIRE_ASSERT_OK(store_->FindUserByCanonicalName("canon:second", &u));
  EXPECT_EQ(u.id, Id('U', 10));
  QUIRE_EXPECT_OK(store_->FindSession(MakeSession(10, u.id, 0).token_hash, &found));
  // A password change leaves the sessions of other users alone.
  ASSERT_TRUE(
      apply_silent(op::ChangePassword{user, "newer hash", MakeSession(6, user, 6500)}).status.ok());
  EXPECT_TRUE(store_->FindSession(MakeSession(10, u.id, 0).token_hash, &found).ok())
      << "a password change revoked another user's session";
  // An operator's reset: a password change that adds no session.
  ASSERT_TRUE(apply_silent(op::ChangePassword{user, "reset hash", Session{}}).status.ok());
  EXPECT_TRUE(store_->FindSession(MakeSession(6, user, 0).token_hash, &found).IsNotFound())
      << "a reset left a session of the user";
  QUIRE_ASSERT_OK(store_->GetUser(user, &u));
  EXPECT_EQ(u.password_hash, "reset hash");
  EXPECT_TRUE(store_->FindSession("", &found).IsNotFound()) << "a reset stored an empty session";
  // Ending every session of a user keeps the password and other users' sessions.
  ASSERT_TRUE(apply_silent(op::CreateSession{MakeSession(7, user, 6600)}).status.ok());
  ASSERT_TRUE(apply_silent(op::DeleteUserSessions{user}).status.ok());
  EXPECT_TRUE(store_->FindSession(MakeSession(7, user, 0).token_hash, &found).IsNotFound())
      << "DeleteUserSessions left a session of the user";
  EXPECT_TRUE(store_->FindSession(MakeSession(10, Id('U', 10), 0).token_hash, &found).ok())
      << "DeleteUserSessions ended another user's session";
  QUIRE_ASSERT_OK(store_->GetUser(user, &u));
  EXPECT_EQ(u.password_hash, "reset hash") << "DeleteUserSessions changed the password";
  EXPECT_TRUE(Apply(op::DeleteUserSessions{Id('U', 404)}).status.IsNotFound());
  QUIRE_EXPECT_OK(store_->HasUsers(&has_users));
  EXPECT_TRUE(has_users);

  // Racing for one invitation with different names: one wins.
  for (int round = 0; round < 20; ++round) {
    const std::string id = Id('I', 100 + round);
    ASSERT_TRUE(Apply(op::CreateInvitation{{id, user, 7000, false}}).status.ok());
    std::vector<Write> x(1), y(1);
    const std::int64_t n = 1000 + 2 * round;
    x[0].op = op::AcceptInvitation{id, 0, MakeUser(n, "x" + std::to_string(round), 7000),
                                   MakeSession(n, Id('U', n), 7000)};
    y[0].op = op::AcceptInvitation{id, 0, MakeUser(n + 1, "y" + std::to_string(round), 7000),
                                   MakeSession(n + 1, Id('U', n + 1), 7000)};
    std::latch start(2);
    std::thread tx([&] {
      start.arrive_and_wait();
      store_->Apply(x);
    });
    std::thread ty([&] {
      start.arrive_and_wait();
      store_->Apply(y);
    });
    tx.join();
    ty.join();
    EXPECT_EQ(x[0].status.ok() + y[0].status.ok(), 1);
    EXPECT_TRUE(x[0].status.IsNotFound() || y[0].status.IsNotFound());
  }
}

// ---- Property 10 ----

// Property 10 (docs/backend-authors.md): the same idempotency key twice gives
// one message.
TEST_P(StoreConformance, P10_IdempotentSend) {
  const std::string user = SetUpFirstUser(100);
  const Conversation room = CreateRoom();

  const Message original = MakeMessage(1, room.id, user, "hello", 2000);
  Write first = Apply(op::SendMessage{original, "key-1", 0, false});
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();
  EXPECT_FALSE(std::get<op::SendMessage>(first.op).replayed);
  EXPECT_EQ(std::get<op::SendMessage>(first.op).message, original);
  const std::int64_t head = Head().last_seq;

  // A retry, with another body and id: the first message, nothing emitted.
  Write retry = Apply(
      op::SendMessage{MakeMessage(2, room.id, user, "different", 2500), "key-1", 1500, false});
  ASSERT_TRUE(retry.status.ok()) << retry.status.ToString();
  const auto& replay = std::get<op::SendMessage>(retry.op);
  EXPECT_TRUE(replay.replayed);
  EXPECT_EQ(replay.message, original);
  EXPECT_EQ(retry.last_seq, 0);
  EXPECT_EQ(Head().last_seq, head);
  Message m;
  EXPECT_TRUE(store_->GetMessage(Id('M', 2), &m).IsNotFound());
  // A replay writes nothing: the conversation's last activity stays.
  Conversation c;
  QUIRE_ASSERT_OK(store_->GetConversation(room.id, &c));
  EXPECT_EQ(c.last_activity, 2000) << "a replayed send moved the conversation's last activity";
  // A key recorded exactly at key_after counts ("at or after").
  Write at_key_after = Apply(
      op::SendMessage{MakeMessage(11, room.id, user, "boundary", 2550), "key-1", 2000, false});
  EXPECT_TRUE(std::get<op::SendMessage>(at_key_after.op).replayed)
      << "a key recorded at key_after was not found";
  EXPECT_EQ(at_key_after.last_seq, 0);

  // The key check comes before the conversation's.
  Write bogus =
      Apply(op::SendMessage{MakeMessage(3, Id('C', 404), user, "x", 2600), "key-1", 1500, false});
  ASSERT_TRUE(bogus.status.ok()) << bogus.status.ToString();
  EXPECT_EQ(std::get<op::SendMessage>(bogus.op).message.id, original.id);

  // Another sender's key is another key.
  ASSERT_TRUE(Apply(op::CreateInvitation{{Id('I', 1), user, 2600, false}}).status.ok());
  ASSERT_TRUE(Apply(op::AcceptInvitation{Id('I', 1), 0, MakeUser(2, "second", 2650),
                                         MakeSession(2, Id('U', 2), 2650)})
                  .status.ok());
  Write other = Apply(
      op::SendMessage{MakeMessage(4, room.id, Id('U', 2), "other", 2700), "key-1", 1500, false});
  ASSERT_TRUE(other.status.ok());
  EXPECT_FALSE(std::get<op::SendMessage>(other.op).replayed);
  EXPECT_GT(other.last_seq, head);

  // Twice in one batch: one message.
  std::vector<Write> twice = ApplyBatch(
      {op::SendMessage{MakeMessage(5, room.id, user, "batched", 2800), "key-2", 0, false},
       op::SendMessage{MakeMessage(6, room.id, user, "batched", 2800), "key-2", 0, false}});
  EXPECT_FALSE(std::get<op::SendMessage>(twice[0].op).replayed);
  EXPECT_TRUE(std::get<op::SendMessage>(twice[1].op).replayed);
  EXPECT_EQ(std::get<op::SendMessage>(twice[1].op).message.id, Id('M', 5));

  // Deleted since: the first message, blank.
  ASSERT_TRUE(Apply(op::DeleteMessage{original.id, 3000}).status.ok());
  retry =
      Apply(op::SendMessage{MakeMessage(7, room.id, user, "hello", 3100), "key-1", 1500, false});
  const auto& deleted_replay = std::get<op::SendMessage>(retry.op);
  EXPECT_TRUE(deleted_replay.replayed);
  EXPECT_EQ(deleted_replay.message.id, original.id);
  EXPECT_EQ(deleted_replay.message.body, "");
  EXPECT_EQ(deleted_replay.message.deleted_at, std::optional<Micros>(3000));

  // A key older than key_after is forgotten: a new message.
  Write fresh =
      Apply(op::SendMessage{MakeMessage(8, room.id, user, "again", 9000), "key-1", 2001, false});
  ASSERT_TRUE(fresh.status.ok());
  EXPECT_FALSE(std::get<op::SendMessage>(fresh.op).replayed);
  EXPECT_GT(fresh.last_seq, 0);
  retry = Apply(op::SendMessage{MakeMessage(9, room.id, user, "x", 9100), "key-1", 2001, false});
  EXPECT_EQ(std::get<op::SendMessage>(retry.op).message.id, Id('M', 8));

  // Purged idempotency records are forgotten too.
  ASSERT_TRUE(Apply(op::Purge{0, 0, 0, 10000}).status.ok());
  retry = Apply(op::SendMessage{MakeMessage(10, room.id, user, "x", 10100), "key-1", 0, false});
  EXPECT_FALSE(std::get<op::SendMessage>(retry.op).replayed);
  EXPECT_EQ(std::get<op::SendMessage>(retry.op).message.id, Id('M', 10));
}

}  // namespace quire::conformance
