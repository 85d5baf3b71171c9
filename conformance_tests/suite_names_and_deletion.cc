// Properties 6 and 7 (docs/backend-authors.md): one winner for a name,
// and deletion that leaves tombstones and frees the name.
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

// ---- Property 6 ----

// Property 6 (docs/backend-authors.md): two writers racing for one canonical
// name — exactly one wins, the other gets Conflict (setup, conversations, users
// by invitation).
TEST_P(StoreConformance, P06_ConcurrentUniqueName) {
  // Setup: exactly once.
  std::string user;
  {
    std::latch start(2);
    std::vector<Write> a(1), b(1);
    a[0].op = op::Setup{MakeUser(500, "setup a", 1), MakeSession(500, Id('U', 500), 1)};
    b[0].op = op::Setup{MakeUser(501, "setup b", 1), MakeSession(501, Id('U', 501), 1)};
    Status sa, sb;
    std::thread ta([&] {
      start.arrive_and_wait();
      sa = store_->Apply(a);
    });
    std::thread tb([&] {
      start.arrive_and_wait();
      sb = store_->Apply(b);
    });
    ta.join();
    tb.join();
    QUIRE_ASSERT_OK(sa);
    QUIRE_ASSERT_OK(sb);
    ASSERT_EQ(a[0].status.ok() + b[0].status.ok(), 1)
        << a[0].status.ToString() << " / " << b[0].status.ToString();
    EXPECT_TRUE(a[0].status.IsConflict() || b[0].status.IsConflict());
    user = a[0].status.ok() ? Id('U', 500) : Id('U', 501);
  }

  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = "race " + std::to_string(round);
    std::vector<Write> a(1), b(1);
    a[0].op = op::CreateConversation{MakeConversation(2 * round, name, 2000)};
    b[0].op = op::CreateConversation{MakeConversation(2 * round + 1, name, 2000)};
    // Invitations for the user race below.
    const std::string inv_a = Id('I', 2 * round), inv_b = Id('I', 2 * round + 1);
    ASSERT_TRUE(Apply(op::CreateInvitation{{inv_a, user, 2000, false}}).status.ok());
    ASSERT_TRUE(Apply(op::CreateInvitation{{inv_b, user, 2000, false}}).status.ok());
    std::vector<Write> c(1), d(1);
    c[0].op = op::AcceptInvitation{inv_a, 0, MakeUser(10 + 2 * round, name, 2000),
                                   MakeSession(10 + 2 * round, Id('U', 10 + 2 * round), 2000)};
    d[0].op = op::AcceptInvitation{inv_b, 0, MakeUser(11 + 2 * round, name, 2000),
                                   MakeSession(11 + 2 * round, Id('U', 11 + 2 * round), 2000)};

    std::latch start(4);
    Status sa, sb, sc, sd;
    auto run = [&](std::vector<Write>& w, Status& s) {
      start.arrive_and_wait();
      s = store_->Apply(w);
    };
    std::thread ta(run, std::ref(a), std::ref(sa)), tb(run, std::ref(b), std::ref(sb));
    std::thread tc(run, std::ref(c), std::ref(sc)), td(run, std::ref(d), std::ref(sd));
    ta.join();
    tb.join();
    tc.join();
    td.join();
    QUIRE_ASSERT_OK(sa);
    QUIRE_ASSERT_OK(sb);
    QUIRE_ASSERT_OK(sc);
    QUIRE_ASSERT_OK(sd);
    EXPECT_EQ(a[0].status.ok() + b[0].status.ok(), 1)
        << a[0].status.ToString() << " / " << b[0].status.ToString();
    EXPECT_TRUE(a[0].status.IsConflict() || b[0].status.IsConflict());
    EXPECT_EQ(c[0].status.ok() + d[0].status.ok(), 1)
        << c[0].status.ToString() << " / " << d[0].status.ToString();
    EXPECT_TRUE(c[0].status.IsConflict() || d[0].status.IsConflict());
    // The losing invitation stays usable.
    storage::Invitation loser;
    QUIRE_EXPECT_OK(store_->GetInvitation(c[0].status.ok() ? inv_b : inv_a, &loser));
    EXPECT_FALSE(loser.used);
  }

  // A send racing the deletion of its empty conversation: the delete wins
  // and the send finds no live conversation, or the send wins and the delete
  // finds a live message; never both ("still live" is checked inside the
  // transaction).
  for (int round = 0; round < kRounds; ++round) {
    const Conversation doomed =
        MakeConversation(100 + round, "doomed " + std::to_string(round), 3000);
    ASSERT_TRUE(Apply(op::CreateConversation{doomed}).status.ok());
    std::vector<Write> del(1), send(1);
    del[0].op = op::DeleteConversation{doomed.id, 3100};
    send[0].op = op::SendMessage{MakeMessage(100 + round, doomed.id, user, "last words", 3050), "",
                                 0, false};
    std::latch start(2);
    Status s_del, s_send;
    std::thread t_del([&] {
      start.arrive_and_wait();
      s_del = store_->Apply(del);
    });
    std::thread t_send([&] {
      start.arrive_and_wait();
      s_send = store_->Apply(send);
    });
    t_del.join();
    t_send.join();
    QUIRE_ASSERT_OK(s_del);
    QUIRE_ASSERT_OK(s_send);
    EXPECT_EQ(del[0].status.ok() + send[0].status.ok(), 1)
        << "a conversation was deleted while a message was sent to it: " << del[0].status.ToString()
        << " / " << send[0].status.ToString();
    if (!del[0].status.ok()) {
      EXPECT_TRUE(del[0].status.IsConflict()) << del[0].status.ToString();
    }
    if (!send[0].status.ok()) {
      EXPECT_TRUE(send[0].status.IsNotFound()) << send[0].status.ToString();
    }
  }
}

// ---- Property 7 ----

// Property 7 (docs/backend-authors.md): deletion blanks the content and sets
// deleted_at on the created/sent event, the deleted event follows, and a
// deleted conversation's name can be reused at once.
TEST_P(StoreConformance, P07_DeletionTombstones) {
  const std::string user = SetUpFirstUser();
  const Conversation room = MakeConversation(1, "room", 1000);
  Write created = Apply(op::CreateConversation{room});
  ASSERT_TRUE(created.status.ok());
  const Message secret = MakeMessage(1, room.id, user, "secret text", 1100);
  Write sent = Apply(op::SendMessage{secret, "", 0, false});
  ASSERT_TRUE(sent.status.ok());

  // A conversation with live messages cannot be deleted, and the refused
  // delete changes nothing: its name stays taken.
  EXPECT_TRUE(Apply(op::DeleteConversation{room.id, 1150}).status.IsConflict());
  EXPECT_TRUE(Apply(op::CreateConversation{MakeConversation(9, "room", 1160)}).status.IsConflict())
      << "a refused delete freed the conversation's name";

  Write deleted = Apply(op::DeleteMessage{secret.id, 1200});
  ASSERT_TRUE(deleted.status.ok()) << deleted.status.ToString();
  EXPECT_GT(deleted.last_seq, sent.last_seq);
  EXPECT_TRUE(Apply(op::DeleteMessage{secret.id, 1250}).status.IsNotFound());
  EXPECT_TRUE(Apply(op::DeleteMessage{Id('M', 404), 1250}).status.IsNotFound());

  Message m;
  QUIRE_ASSERT_OK(store_->GetMessage(secret.id, &m));
  EXPECT_EQ(m.body, "");
  EXPECT_EQ(m.deleted_at, std::optional<Micros>(1200));
  EXPECT_EQ(m.sender, user);
  EXPECT_EQ(m.conversation, room.id);

  Write gone = Apply(op::DeleteConversation{room.id, 1300});
  ASSERT_TRUE(gone.status.ok()) << gone.status.ToString();
  EXPECT_TRUE(Apply(op::DeleteConversation{room.id, 1350}).status.IsNotFound());
  EXPECT_TRUE(Apply(op::DeleteConversation{Id('C', 404), 1350}).status.IsNotFound());
  EXPECT_TRUE(Apply(op::SendMessage{MakeMessage(2, room.id, user, "late", 1400), "", 0, false})
                  .status.IsNotFound());
  Conversation c;
  QUIRE_ASSERT_OK(store_->GetConversation(room.id, &c));
  EXPECT_EQ(c.name, "");
  EXPECT_EQ(c.deleted_at, std::optional<Micros>(1300));

  const std::vector<Event> history = History();
  ASSERT_EQ(history.size(), 5u);
  EXPECT_EQ(history[1], (Event{created.last_seq, EventKind::kConversationCreated, 1000, room.id, "",
                               "", "", Micros{1300}}));
  EXPECT_EQ(history[2], (Event{sent.last_seq, EventKind::kMessageSent, 1100, secret.id, room.id,
                               user, "", Micros{1200}}));
  EXPECT_EQ(history[3], (Event{deleted.last_seq, EventKind::kMessageDeleted, 1200, secret.id,
                               room.id, "", "", std::nullopt}));
  EXPECT_EQ(history[4], (Event{gone.last_seq, EventKind::kConversationDeleted, 1300, room.id, "",
                               "", "", std::nullopt}));
  for (const Event& e : history) EXPECT_EQ(e.text.find("secret"), std::string::npos);

  // The name is free again at once.
  Write again = Apply(op::CreateConversation{MakeConversation(2, "room", 1500)});
  EXPECT_TRUE(again.status.ok()) << again.status.ToString();
  EXPECT_TRUE(Apply(op::CreateConversation{MakeConversation(3, "room", 1600)}).status.IsConflict());

  // A write refused because its id is stored already leaves nothing behind:
  // no event, no new head, the stored record unchanged.
  const std::int64_t head = Head().last_seq;
  const std::size_t events = History().size();
  const Message taken = MakeMessage(5, Id('C', 2), user, "first", 1700);
  ASSERT_TRUE(Apply(op::SendMessage{taken, "", 0, false}).status.ok());
  Write twice =
      Apply(op::SendMessage{MakeMessage(5, Id('C', 2), user, "second", 1800), "", 0, false});
  EXPECT_TRUE(twice.status.IsConflict()) << twice.status.ToString();
  EXPECT_EQ(twice.last_seq, 0);
  Write same_id = Apply(op::CreateConversation{MakeConversation(2, "another name", 1900)});
  EXPECT_TRUE(same_id.status.IsConflict()) << same_id.status.ToString();
  EXPECT_EQ(Head().last_seq, head + 1) << "a refused write moved the head";
  const std::vector<Event> after = History();
  ASSERT_EQ(after.size(), events + 1) << "a refused write left an event";
  EXPECT_EQ(after.back().text, "first");
  QUIRE_ASSERT_OK(store_->GetMessage(taken.id, &m));
  EXPECT_EQ(m.body, "first");

  // Two conversations with one name in one batch: the second is refused.
  std::vector<Write> pair = ApplyBatch({op::CreateConversation{MakeConversation(6, "Twin", 2000)},
                                        op::CreateConversation{MakeConversation(7, "Twin", 2000)}});
  EXPECT_TRUE(pair[0].status.ok()) << pair[0].status.ToString();
  EXPECT_TRUE(pair[1].status.IsConflict()) << pair[1].status.ToString();
  EXPECT_EQ(pair[1].last_seq, 0);
  EXPECT_TRUE(store_->GetConversation(Id('C', 7), &c).IsNotFound());
}

}  // namespace quire::conformance
