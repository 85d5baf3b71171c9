// ChatService against a real SQLite file, with an injected clock: the policy
// (who may do what, when things expire) is tested without sleeping.
#include "server/chat/chat_service.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "server/chat/secrets.h"
#include "storage/sqlite/sqlite_store.h"

namespace quire::chat {
namespace {

using storage::EventKind;
using storage::Micros;

constexpr Micros kSecond = 1000000;
constexpr Micros kStart = 1750000000LL * kSecond;

class ChatServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitSecrets());
    char dir_template[] = "/tmp/quire-service-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    ASSERT_TRUE(storage::OpenSqliteStore(dir_ + "/quire.db", &store_).ok());
    policy_.message_ttl = 100 * kSecond;
    policy_.conversation_ttl = 300 * kSecond;
    policy_.purge_after = 50 * kSecond;
    policy_.invite_ttl = 60 * kSecond;
    policy_.session_ttl = 1000 * kSecond;
    committer_ = std::make_unique<Committer>(*store_);
    service_ = std::make_unique<ChatService>(*store_, *committer_, clock_, policy_);
  }
  void TearDown() override {
    service_.reset();
    committer_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  Identity SignedIn(const Login& login) {
    auto who = service_->Authenticate(login.token);
    EXPECT_TRUE(who.ok());
    return who.value();
  }

  std::vector<storage::Event> History() {
    storage::Head head;
    EXPECT_TRUE(store_->GetHead(&head).ok());
    std::vector<storage::Event> events;
    EXPECT_TRUE(store_->ReadEvents(0, head.last_seq, 100000, &events).ok());
    return events;
  }

  std::string dir_;
  std::unique_ptr<storage::Store> store_;
  ManualClock clock_{kStart};
  Policy policy_;
  std::unique_ptr<Committer> committer_;
  std::unique_ptr<ChatService> service_;
};

TEST_F(ChatServiceTest, SetupHappensOnceAndNamesAreNormalized) {
  EXPECT_FALSE(service_->IsSetUp().value());
  auto first = service_->Setup("Cafe\u0301", "pw");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.value().name, "Caf\u00e9");
  EXPECT_TRUE(service_->IsSetUp().value());
  auto second = service_->Setup("bob", "pw");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().kind, Error::Kind::kConflict);
  auto invalid = service_->Setup(" padded", "pw");
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.error().kind, Error::Kind::kBadRequest);
}

TEST_F(ChatServiceTest, LoginFailuresAreIndistinguishable) {
  ASSERT_TRUE(service_->Setup("Alice", "secret").ok());
  auto ok = service_->LogIn("ALICE", "secret", "127.0.0.1");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value().name, "Alice");
  auto wrong = service_->LogIn("alice", "nope", "127.0.0.1");
  auto unknown = service_->LogIn("mallory", "secret", "127.0.0.1");
  ASSERT_FALSE(wrong.ok());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(wrong.error().kind, Error::Kind::kUnauthorized);
  EXPECT_EQ(unknown.error().kind, Error::Kind::kUnauthorized);
  EXPECT_EQ(wrong.error().message, unknown.error().message);
}

TEST_F(ChatServiceTest, SessionsExpireWhenIdleAndUseRenewsThem) {
  auto login = service_->Setup("alice", "pw");
  ASSERT_TRUE(login.ok());
  clock_.Advance(900 * kSecond);
  ASSERT_TRUE(service_->Authenticate(login.value().token).ok());  // renews
  clock_.Advance(900 * kSecond);
  ASSERT_TRUE(service_->Authenticate(login.value().token).ok());
  clock_.Advance(1001 * kSecond);
  auto expired = service_->Authenticate(login.value().token);
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.error().kind, Error::Kind::kUnauthorized);
}

TEST_F(ChatServiceTest, PasswordChangeKillsOlderTokens) {
  auto first = service_->Setup("alice", "one");
  ASSERT_TRUE(first.ok());
  auto second = service_->LogIn("alice", "one", "127.0.0.1");
  ASSERT_TRUE(second.ok());
  Identity who = SignedIn(first.value());
  auto wrong = service_->ChangePassword(who, "bad", "two");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().kind, Error::Kind::kBadRequest);
  auto changed = service_->ChangePassword(who, "one", "two");
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(service_->Authenticate(first.value().token).ok());
  EXPECT_FALSE(service_->Authenticate(second.value().token).ok());
  EXPECT_TRUE(service_->Authenticate(changed.value().token).ok());
  EXPECT_TRUE(service_->LogIn("alice", "two", "127.0.0.1").ok());
  EXPECT_FALSE(service_->LogIn("alice", "one", "127.0.0.1").ok());
}

// Records what ChatService tells the hub.
class RecordingObserver : public SessionObserver {
 public:
  void SessionEnded(const std::string& token_hash) override { ended.push_back(token_hash); }
  void UserSessionsEnded(const std::string& user_id, const std::string& kept) override {
    users_ended.push_back(user_id + "/" + kept);
  }
  std::vector<std::string> OpenSessions() override { return {}; }
  std::vector<std::string> ended;
  std::vector<std::string> users_ended;
};

TEST_F(ChatServiceTest, AnOperatorResetsPasswordsAndEndsSessionsByName) {
  RecordingObserver observer;
  service_->set_session_observer(&observer);
  EXPECT_EQ(service_->Owner().error().kind, Error::Kind::kNotSetUp);
  auto alice = service_->Setup("alice", "one");
  ASSERT_TRUE(alice.ok());
  Identity who = SignedIn(alice.value());
  auto invitation = service_->Invite(who);
  ASSERT_TRUE(invitation.ok());
  auto bob = service_->AcceptInvitation(invitation.value().id, "bob", "pw");
  ASSERT_TRUE(bob.ok());
  ASSERT_TRUE(service_->Owner().ok());
  EXPECT_EQ(service_->Owner().value().name, "alice");
  EXPECT_EQ(service_->FindUser("BOB").value().id, bob.value().user_id);
  EXPECT_EQ(service_->FindUser("carol").error().message, "no user carol");

  ASSERT_TRUE(service_->ResetPassword("alice", "two").ok());
  EXPECT_FALSE(service_->Authenticate(alice.value().token).ok());
  EXPECT_TRUE(service_->LogIn("alice", "two", "127.0.0.1").ok());
  EXPECT_FALSE(service_->LogIn("alice", "one", "127.0.0.1").ok());
  EXPECT_EQ(observer.users_ended, std::vector<std::string>{alice.value().user_id + "/"});
  EXPECT_EQ(service_->ResetPassword("alice", "").error().kind, Error::Kind::kBadRequest);
  EXPECT_EQ(service_->ResetPassword("carol", "x").error().kind, Error::Kind::kNotFound);

  ASSERT_TRUE(service_->EndSessions("bob").ok());
  EXPECT_FALSE(service_->Authenticate(bob.value().token).ok());
  EXPECT_TRUE(service_->LogIn("bob", "pw", "127.0.0.1").ok()) << "the password stays";
  EXPECT_EQ(observer.users_ended.back(), bob.value().user_id + "/");
  EXPECT_EQ(service_->EndSessions("carol").error().kind, Error::Kind::kNotFound);
  service_->set_session_observer(nullptr);
}

TEST_F(ChatServiceTest, InvitationsExpireAndAreUsedOnce) {
  Identity alice = SignedIn(service_->Setup("alice", "pw").value());
  auto invitation = service_->Invite(alice);
  ASSERT_TRUE(invitation.ok());
  auto seen = service_->GetInvitation(invitation.value().id);
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen.value().issuer, "alice");
  auto taken = service_->AcceptInvitation(invitation.value().id, "ALICE", "pw");
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().kind, Error::Kind::kConflict);
  ASSERT_TRUE(service_->AcceptInvitation(invitation.value().id, "bob", "pw").ok());
  auto again = service_->AcceptInvitation(invitation.value().id, "carol", "pw");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, Error::Kind::kNotFound);

  auto late = service_->Invite(alice);
  ASSERT_TRUE(late.ok());
  clock_.Advance(61 * kSecond);
  EXPECT_EQ(service_->GetInvitation(late.value().id).error().kind, Error::Kind::kNotFound);
  EXPECT_EQ(service_->AcceptInvitation(late.value().id, "dave", "pw").error().kind,
            Error::Kind::kNotFound);
}

TEST_F(ChatServiceTest, OnlyTheSenderDeletesAMessage) {
  Identity alice = SignedIn(service_->Setup("alice", "pw").value());
  auto invitation = service_->Invite(alice).value();
  Identity bob = SignedIn(service_->AcceptInvitation(invitation.id, "bob", "pw").value());
  auto room = service_->CreateConversation(alice, "room").value();
  auto message = service_->SendMessage(alice, room.id, "hi", "").value();
  EXPECT_EQ(service_->DeleteMessage(bob, message.id).error().kind, Error::Kind::kForbidden);
  EXPECT_EQ(service_->DeleteConversation(alice, room.id).error().kind, Error::Kind::kConflict);
  EXPECT_TRUE(service_->DeleteMessage(alice, message.id).ok());
  EXPECT_EQ(service_->DeleteMessage(alice, message.id).error().kind, Error::Kind::kNotFound);
  EXPECT_TRUE(service_->DeleteConversation(bob, room.id).ok());
  EXPECT_TRUE(service_->CreateConversation(bob, "ROOM").ok());  // the name is free again
}

TEST_F(ChatServiceTest, IdempotencyKeyReplaysWithinTheWindowOnly) {
  Identity alice = SignedIn(service_->Setup("alice", "pw").value());
  auto room = service_->CreateConversation(alice, "room").value();
  auto first = service_->SendMessage(alice, room.id, "one", "k1").value();
  auto retry = service_->SendMessage(alice, room.id, "different", "k1").value();
  EXPECT_EQ(retry.id, first.id);
  EXPECT_EQ(retry.body, "one");
  const auto events_before = History().size();
  ASSERT_TRUE(service_->DeleteMessage(alice, first.id).ok());
  auto after_delete = service_->SendMessage(alice, room.id, "one", "k1").value();
  EXPECT_EQ(after_delete.id, first.id);
  EXPECT_EQ(History().size(), events_before + 1);  // only the deletion
  clock_.Advance(policy_.idempotency_window + kSecond);
  auto fresh = service_->SendMessage(alice, room.id, "one", "k1").value();
  EXPECT_NE(fresh.id, first.id);
}

TEST_F(ChatServiceTest, RetentionExpiresThenPurges) {
  Identity alice = SignedIn(service_->Setup("alice", "pw").value());
  auto room = service_->CreateConversation(alice, "room").value();
  auto old_message = service_->SendMessage(alice, room.id, "old", "").value();
  clock_.Advance(60 * kSecond);
  auto young_message = service_->SendMessage(alice, room.id, "young", "").value();
  clock_.Advance(50 * kSecond);  // old is 110 s old, young 50 s
  ASSERT_TRUE(service_->RunRetention().ok());

  storage::Message m;
  ASSERT_TRUE(store_->GetMessage(old_message.id, &m).ok());
  EXPECT_TRUE(m.deleted_at.has_value());
  EXPECT_EQ(m.body, "");
  ASSERT_TRUE(store_->GetMessage(young_message.id, &m).ok());
  EXPECT_FALSE(m.deleted_at.has_value());
  auto history = History();
  ASSERT_FALSE(history.empty());
  ASSERT_EQ(history.back().kind, EventKind::kMessageDeleted);
  EXPECT_EQ(history.back().id, old_message.id);

  // 51 s after the deletion, the old message's events leave history.
  clock_.Advance(51 * kSecond);
  ASSERT_TRUE(service_->RunRetention().ok());
  for (const auto& e : History()) EXPECT_NE(e.id, old_message.id);
  storage::Head head;
  ASSERT_TRUE(store_->GetHead(&head).ok());
  EXPECT_GT(head.purged_through, 0);
}

TEST_F(ChatServiceTest, IdleConversationExpiresAfterItsMessages) {
  policy_.message_ttl = 1000 * kSecond;  // longer than the conversation's
  service_ = std::make_unique<ChatService>(*store_, *committer_, clock_, policy_);
  Identity alice = SignedIn(service_->Setup("alice", "pw").value());
  auto room = service_->CreateConversation(alice, "room").value();
  auto message = service_->SendMessage(alice, room.id, "hi", "").value();
  clock_.Advance(301 * kSecond);
  ASSERT_TRUE(service_->RunRetention().ok());
  auto history = History();
  ASSERT_GE(history.size(), 2u);
  const auto& last = history[history.size() - 1];
  const auto& before = history[history.size() - 2];
  EXPECT_EQ(before.kind, EventKind::kMessageDeleted);
  EXPECT_EQ(before.id, message.id);
  EXPECT_EQ(last.kind, EventKind::kConversationDeleted);
  EXPECT_EQ(last.id, room.id);
}

}  // namespace
}  // namespace quire::chat
