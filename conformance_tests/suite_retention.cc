// Property 8 (docs/backend-authors.md): expiry and purge.
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

// ---- Property 8 ----

// Property 8 (docs/backend-authors.md): with injected times, expiry deletes
// exactly what is due (messages first, then idle conversations after their
// messages), purge removes every event of entities deleted long enough ago and
// reports the horizon, and sessions, invitations and idempotency records are
// dropped.
TEST_P(StoreConformance, P08_ExpiryAndPurge) {
  const std::string user = SetUpFirstUser(100);
  const Conversation quiet = MakeConversation(1, "quiet", 1000);
  const Conversation busy = MakeConversation(2, "busy", 1000);
  const Conversation fresh = MakeConversation(3, "fresh", 9000);
  for (const Conversation& c : {quiet, busy, fresh}) {
    ASSERT_TRUE(Apply(op::CreateConversation{c}).status.ok());
  }
  const Message old_message = MakeMessage(1, busy.id, user, "old", 2000);
  const Message newer_message = MakeMessage(2, busy.id, user, "newer", 5000);
  ASSERT_TRUE(Apply(op::SendMessage{old_message, "", 0, false}).status.ok());
  ASSERT_TRUE(Apply(op::SendMessage{newer_message, "", 0, false}).status.ok());
  Conversation c;
  QUIRE_ASSERT_OK(store_->GetConversation(busy.id, &c));
  EXPECT_EQ(c.last_activity, 5000);

  // Messages sent before 3000, conversations idle since before 4000.
  const std::int64_t before_first = Head().last_seq;
  Write first = Apply(op::Expire{3000, 4000, 10000});
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();
  EXPECT_EQ(std::get<op::Expire>(first.op).deleted_messages, 1);
  EXPECT_EQ(std::get<op::Expire>(first.op).deleted_conversations, 1);
  std::vector<Event> emitted = History(before_first);
  ASSERT_EQ(emitted.size(), 2u);
  EXPECT_EQ(emitted[0].kind, EventKind::kMessageDeleted);
  EXPECT_EQ(emitted[0].id, old_message.id);
  EXPECT_EQ(emitted[0].at, 10000);
  EXPECT_EQ(emitted[1].kind, EventKind::kConversationDeleted);
  EXPECT_EQ(emitted[1].id, quiet.id);
  EXPECT_EQ(emitted[1].at, 10000) << "an expiry's conversation-deleted event has another time";
  EXPECT_EQ(first.last_seq, emitted[1].seq);
  Conversation expired_conversation;
  QUIRE_ASSERT_OK(store_->GetConversation(quiet.id, &expired_conversation));
  EXPECT_EQ(expired_conversation.deleted_at, std::optional<Micros>(10000));
  // Expiry deletes as DeleteMessage does: the sent event is tombstoned.
  for (const Event& e : History()) {
    if (e.id == old_message.id && e.kind == EventKind::kMessageSent) {
      EXPECT_EQ(e.text, "") << "an expired message's text stayed in its event";
      EXPECT_EQ(e.deleted_at, std::optional<Micros>(10000));
    }
  }
  Message expired;
  QUIRE_ASSERT_OK(store_->GetMessage(old_message.id, &expired));
  EXPECT_EQ(expired.body, "");

  // Nothing more is due at the same cutoffs.
  Write again = Apply(op::Expire{3000, 4000, 10500});
  EXPECT_EQ(std::get<op::Expire>(again.op).deleted_messages, 0);
  EXPECT_EQ(std::get<op::Expire>(again.op).deleted_conversations, 0);
  EXPECT_EQ(again.last_seq, 0);

  // A conversation idle before 6000 that still has a live message: the
  // message goes first, then the conversation.
  const std::int64_t before_second = Head().last_seq;
  Write second = Apply(op::Expire{3000, 6000, 11000});
  EXPECT_EQ(std::get<op::Expire>(second.op).deleted_messages, 1);
  EXPECT_EQ(std::get<op::Expire>(second.op).deleted_conversations, 1);
  emitted = History(before_second);
  ASSERT_EQ(emitted.size(), 2u);
  EXPECT_EQ(emitted[0].kind, EventKind::kMessageDeleted);
  EXPECT_EQ(emitted[0].id, newer_message.id);
  EXPECT_EQ(emitted[0].conversation, busy.id);
  EXPECT_EQ(emitted[1].kind, EventKind::kConversationDeleted);
  EXPECT_EQ(emitted[1].id, busy.id);
  EXPECT_EQ(emitted[0].at, 11000);
  EXPECT_EQ(emitted[1].at, 11000) << "an expiry's conversation-deleted event has another time";
  QUIRE_ASSERT_OK(store_->GetConversation(fresh.id, &c));
  EXPECT_FALSE(c.deleted_at.has_value());

  // Sessions, invitations: one old, one recent each.
  ASSERT_TRUE(Apply(op::CreateSession{MakeSession(2, user, 1000)}).status.ok());
  ASSERT_TRUE(Apply(op::CreateSession{MakeSession(3, user, 1000)}).status.ok());
  ASSERT_TRUE(Apply(op::TouchSession{MakeSession(3, user, 0).token_hash, 8000}).status.ok());
  ASSERT_TRUE(Apply(op::CreateInvitation{{Id('I', 1), user, 1000, false}}).status.ok());
  ASSERT_TRUE(Apply(op::CreateInvitation{{Id('I', 2), user, 8000, false}}).status.ok());

  // Purge what was deleted before 10500: the old message and the quiet
  // conversation, all their events.
  const std::int64_t last_seq = Head().last_seq;
  Write purge = Apply(op::Purge{10500, 5000, 5000, 0});
  ASSERT_TRUE(purge.status.ok()) << purge.status.ToString();
  EXPECT_EQ(purge.last_seq, 0);
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 4);
  storage::Head head = Head();
  EXPECT_EQ(head.last_seq, last_seq);
  EXPECT_EQ(head.purged_through, first.last_seq);
  Message m;
  EXPECT_TRUE(store_->GetMessage(old_message.id, &m).IsNotFound());
  EXPECT_TRUE(store_->GetConversation(quiet.id, &c).IsNotFound());
  QUIRE_EXPECT_OK(store_->GetMessage(newer_message.id, &m));
  for (const Event& e : History()) {
    EXPECT_NE(e.id, old_message.id);
    EXPECT_NE(e.id, quiet.id);
  }
  Session s;
  EXPECT_TRUE(store_->FindSession(MakeSession(2, user, 0).token_hash, &s).IsNotFound());
  QUIRE_EXPECT_OK(store_->FindSession(MakeSession(3, user, 0).token_hash, &s));
  storage::Invitation inv;
  EXPECT_TRUE(store_->GetInvitation(Id('I', 1), &inv).IsNotFound());
  QUIRE_EXPECT_OK(store_->GetInvitation(Id('I', 2), &inv));

  // Purge the rest; the horizon rises to the busy conversation's deletion.
  purge = Apply(op::Purge{20000, 0, 0, 0});
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 4);
  head = Head();
  EXPECT_EQ(head.purged_through, second.last_seq);
  EXPECT_EQ(head.last_seq, last_seq);
  const std::vector<Event> left = History();
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].kind, EventKind::kUserCreated);
  EXPECT_EQ(left[1].id, fresh.id);

  // Purging again removes nothing and never lowers the horizon.
  purge = Apply(op::Purge{20000, 0, 0, 0});
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 0);
  EXPECT_EQ(Head().purged_through, second.last_seq);

  // The newest events were purged: the next write still takes a sequence
  // above every one ever committed (not above the highest retained one),
  // without a reopen.
  Write next = Apply(op::CreateConversation{MakeConversation(4, "next", 21000)});
  ASSERT_TRUE(next.status.ok()) << next.status.ToString();
  EXPECT_GT(next.last_seq, last_seq) << "a purged sequence was handed out again";

  // Purging one deleted message of a live conversation raises the horizon
  // to its deletion event.
  ASSERT_TRUE(Apply(op::SendMessage{MakeMessage(3, Id('C', 4), user, "one", 21100), "", 0, false})
                  .status.ok());
  Write one_deleted = Apply(op::DeleteMessage{Id('M', 3), 21200});
  ASSERT_TRUE(one_deleted.status.ok()) << one_deleted.status.ToString();
  purge = Apply(op::Purge{30000, 0, 0, 0});
  EXPECT_EQ(std::get<op::Purge>(purge.op).purged_events, 2);
  EXPECT_EQ(Head().purged_through, one_deleted.last_seq);
  QUIRE_EXPECT_OK(store_->GetConversation(Id('C', 4), &c));

  // Every cutoff is "before": what is exactly at one stays.
  const Conversation edge = MakeConversation(10, "edge", 50000);
  ASSERT_TRUE(Apply(op::CreateConversation{edge}).status.ok());
  const Message at_cutoff = MakeMessage(10, edge.id, user, "at the cutoff", 50000);
  ASSERT_TRUE(Apply(op::SendMessage{at_cutoff, "edge key", 0, false}).status.ok());
  ASSERT_TRUE(Apply(op::Expire{50000, 50000, 60000}).status.ok());
  QUIRE_ASSERT_OK(store_->GetMessage(at_cutoff.id, &m));
  EXPECT_FALSE(m.deleted_at.has_value()) << "expiry deleted a message sent at its cutoff";
  QUIRE_ASSERT_OK(store_->GetConversation(edge.id, &c));
  EXPECT_FALSE(c.deleted_at.has_value()) << "expiry deleted a conversation idle since its cutoff";
  // A message deleted at the purge's cutoff, in a conversation of its own
  // (expiry took the others).
  const Conversation late = MakeConversation(11, "late", 61000);
  ASSERT_TRUE(Apply(op::CreateConversation{late}).status.ok());
  const Message deleted_at_cutoff = MakeMessage(12, late.id, user, "deleted at the cutoff", 61000);
  ASSERT_TRUE(Apply(op::SendMessage{deleted_at_cutoff, "", 0, false}).status.ok());
  ASSERT_TRUE(Apply(op::DeleteMessage{deleted_at_cutoff.id, 70000}).status.ok());
  ASSERT_TRUE(Apply(op::CreateSession{Session{"at the cutoff", user, 70000, 70000}}).status.ok());
  ASSERT_TRUE(Apply(op::CreateInvitation{{Id('I', 3), user, 70000, false}}).status.ok());
  // The idempotency record counts as made at its message's time, 50000.
  ASSERT_TRUE(Apply(op::Purge{70000, 70000, 70000, 50000}).status.ok());
  EXPECT_TRUE(store_->GetMessage(deleted_at_cutoff.id, &m).ok())
      << "purge removed a message deleted at its cutoff";
  EXPECT_TRUE(store_->FindSession("at the cutoff", &s).ok())
      << "purge dropped a session last used at its cutoff";
  EXPECT_TRUE(store_->GetInvitation(Id('I', 3), &inv).ok())
      << "purge dropped an invitation issued at its cutoff";
  Write replay =
      Apply(op::SendMessage{MakeMessage(11, edge.id, user, "again", 70100), "edge key", 0, false});
  EXPECT_TRUE(std::get<op::SendMessage>(replay.op).replayed)
      << "purge dropped an idempotency record made at its cutoff";
}

}  // namespace quire::conformance
