// Invitations: issuing, reading, accepting, name collisions and expiry.
#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

using InvitationsTest = ApiTest;

// Issues an invitation; returns its reply.
Json Issue(Client& inviter) {
  Response r = inviter.post("/api/invite", Json::object());
  EXPECT_TRUE(HasStatus(r, 200));
  Json j = r.json();
  return j.is_object() ? j : Json::object();
}

TEST_F(InvitationsTest, IssueAndRead) {
  Client owner = Setup("alice");
  std::string owner_id = Str(Boot(owner)["login"], "id");
  Response r = owner.post("/api/invite", Json::object());
  ASSERT_TRUE(HasStatus(r, 200));
  Json inv = r.json();
  EXPECT_EQ(Keys(inv), (std::set<std::string>{"id", "issuer", "issued_at"}));
  EXPECT_TRUE(IsId(inv["id"], 'I'));
  EXPECT_EQ(inv["issuer"], owner_id);
  EXPECT_TRUE(IsTimestamp(inv["issued_at"]));

  Client anonymous = NewClient();
  Response g = anonymous.get("/api/invite/" + Str(inv, "id"));
  ASSERT_TRUE(HasStatus(g, 200));
  EXPECT_EQ(g.json(),
            (Json{{"id", inv["id"]}, {"issuer", "alice"}, {"issued_at", inv["issued_at"]}}));
  // Reading it twice changes nothing.
  EXPECT_TRUE(HasStatus(anonymous.get("/api/invite/" + Str(inv, "id")), 200));
  // Invitations emit no events.
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
  // Two invitations are two ids.
  EXPECT_NE(Str(Issue(owner), "id"), Str(inv, "id"));
}

TEST_F(InvitationsTest, IssuingNeedsACookie) {
  Setup();
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.post("/api/invite", Json::object()), 401));
  Client bogus = NewClient();
  bogus.set_token("bogus");
  EXPECT_TRUE(IsJsonError(bogus.post("/api/invite", Json::object()), 401));
}

TEST_F(InvitationsTest, UnknownInvitationsAre404) {
  Client owner = Setup();
  Client anonymous = NewClient();
  for (const std::string id : {"I0000000000000000", "Ixyz", "nothing", "U0000000000000000"}) {
    EXPECT_TRUE(IsJsonError(anonymous.get("/api/invite/" + id), 404)) << id;
    EXPECT_TRUE(IsJsonError(
        anonymous.post("/api/invite/" + id, {{"name", "bob"}, {"password", "pw"}}), 404))
        << id;
  }
  // A user id is not an invitation id.
  std::string user_id = Str(Boot(owner)["login"], "id");
  EXPECT_TRUE(IsJsonError(anonymous.get("/api/invite/" + user_id), 404));
}

TEST_F(InvitationsTest, AcceptCreatesAUserOnce) {
  Client owner = Setup("alice");
  Json inv = Issue(owner);
  std::string path = "/api/invite/" + Str(inv, "id");

  Client bob = NewClient();
  Response r = bob.post(path, {{"name", "Jose\u0301"}, {"password", "bob pw"}});
  ASSERT_TRUE(HasStatus(r, 200));
  Json j = r.json();
  EXPECT_EQ(Keys(j), (std::set<std::string>{"id", "name"}));
  EXPECT_TRUE(IsId(j["id"], 'U'));
  EXPECT_EQ(j["name"], "Jos\u00e9");
  EXPECT_TRUE(SetsIdentityCookie(r));

  Json boot = Boot(bob);
  EXPECT_EQ(boot["login"], j);
  auto created = FindEvents(boot["events"], "user", "created");
  ASSERT_EQ(created.size(), 2u);
  EXPECT_EQ(created[1]["id"], j["id"]);
  EXPECT_EQ(created[1]["name"], "Jos\u00e9");
  EXPECT_EQ(Keys(created[1]), (std::set<std::string>{"type", "event", "at", "id", "name"}));
  EXPECT_TRUE(IsTimestamp(created[1]["at"]));
  EXPECT_EQ(Boot(owner)["events"], boot["events"]);

  // Used: gone.
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.get(path), 404));
  EXPECT_TRUE(IsJsonError(anonymous.post(path, {{"name", "carol"}, {"password", "pw"}}), 404));
  EXPECT_FALSE(anonymous.token().has_value());
  // The new user logs in by name.
  Client again = NewClient();
  EXPECT_TRUE(HasStatus(
      again.post("/api/auth/login", {{"name", "jos\u00e9"}, {"password", "bob pw"}}), 200));
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "user", "created").size(), 2u);
}

TEST_F(InvitationsTest, TakenNamesAre409AndTheInvitationStaysUsable) {
  Client owner = Setup("Stra\u00dfe");
  Invite(owner, "fish");
  Invite(owner, "\u00e5");  // å
  Json inv = Issue(owner);
  std::string path = "/api/invite/" + Str(inv, "id");
  Client c = NewClient();
  for (const std::string name : {
           "Stra\u00dfe", "STRASSE", "strasse", "Strasse", "stra\u00dfe",  // full case folding
           "fish", "FISH", "\ufb01sh",                                     // NFKC: ﬁ is fi
           "\u00e5", "\u00c5", "\u212b", "a\u030a", "A\u030a",             // å Å Å(sign) a+ring
       }) {
    Response r = c.post(path, {{"name", name}, {"password", "pw"}});
    EXPECT_TRUE(IsJsonError(r, 409)) << name;
    EXPECT_FALSE(c.token().has_value()) << name;
    EXPECT_TRUE(HasStatus(NewClient().get(path), 200)) << "still usable after " << name;
  }
  Response ok = c.post(path, {{"name", "carol"}, {"password", "pw"}});
  EXPECT_TRUE(HasStatus(ok, 200));
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "user", "created").size(), 4u);
}

TEST_F(InvitationsTest, InvalidNamesAre400AndTheInvitationStaysUsable) {
  Client owner = Setup();
  Json inv = Issue(owner);
  std::string path = "/api/invite/" + Str(inv, "id");
  Client c = NewClient();
  for (const std::string name : {"", " bob", "bob ", "b  b", "b\tb"}) {
    EXPECT_TRUE(IsJsonError(c.post(path, {{"name", name}, {"password", "pw"}}), 400)) << name;
  }
  EXPECT_TRUE(IsJsonError(c.post(path, {{"name", Repeat("b", 64)}, {"password", "pw"}}), 400));
  EXPECT_TRUE(IsJsonError(c.post_raw(path, "{\"name\":\"bob\"}"), 400));
  EXPECT_TRUE(HasStatus(NewClient().get(path), 200));
  EXPECT_TRUE(HasStatus(c.post(path, {{"name", "bob"}, {"password", "pw"}}), 200));
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "user", "created").size(), 2u);
}

TEST_F(InvitationsTest, InvitedUsersInviteToo) {
  Client owner = Setup("alice");
  Client bob = Invite(owner, "bob");
  std::string bob_id = Str(Boot(bob)["login"], "id");
  Json inv = Issue(bob);
  EXPECT_EQ(inv["issuer"], bob_id);
  Response g = NewClient().get("/api/invite/" + Str(inv, "id"));
  ASSERT_TRUE(HasStatus(g, 200));
  EXPECT_EQ(g.json()["issuer"], "bob");
  Client carol = NewClient();
  EXPECT_TRUE(HasStatus(
      carol.post("/api/invite/" + Str(inv, "id"), {{"name", "carol"}, {"password", "pw"}}), 200));
}

TEST_F(InvitationsTest, ManyInvitationsAreIndependent) {
  Client owner = Setup();
  Json a = Issue(owner), b = Issue(owner);
  Client c1 = NewClient(), c2 = NewClient();
  EXPECT_TRUE(HasStatus(
      c1.post("/api/invite/" + Str(b, "id"), {{"name", "bee"}, {"password", "pw"}}), 200));
  EXPECT_TRUE(HasStatus(NewClient().get("/api/invite/" + Str(a, "id")), 200));
  EXPECT_TRUE(
      HasStatus(c2.post("/api/invite/" + Str(a, "id"), {{"name", "ay"}, {"password", "pw"}}), 200));
}

class InviteTtlTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override { return {"--invite-ttl", "1s"}; }
};

TEST_F(InviteTtlTest, InvitationsExpire) {
  Client owner = Setup();
  const auto issue_sent = std::chrono::steady_clock::now();
  Json old_inv = Issue(owner);
  std::string path = "/api/invite/" + Str(old_inv, "id");
  EXPECT_TRUE(HasStatus(NewClient().get(path), 200));
  // Reading does not change it: poll until it has expired, and not before its TTL.
  Client reader = NewClient();
  Response read;
  ASSERT_TRUE(WaitUntil(
      [&] {
        read = reader.get(path);
        return read.status != 200;
      },
      30s))
      << "the invitation did not expire";
  EXPECT_GE(std::chrono::steady_clock::now() - issue_sent, 1s) << "expired before its TTL";
  EXPECT_TRUE(IsJsonError(read, 404));
  Client c = NewClient();
  EXPECT_TRUE(IsJsonError(c.get(path), 404));
  EXPECT_TRUE(IsJsonError(c.post(path, {{"name", "late"}, {"password", "pw"}}), 404));
  EXPECT_FALSE(c.token().has_value());
  // A fresh one works at once.
  Json fresh = Issue(owner);
  EXPECT_TRUE(HasStatus(
      c.post("/api/invite/" + Str(fresh, "id"), {{"name", "early"}, {"password", "pw"}}), 200));
  auto users = FindEvents(Boot(owner)["events"], "user", "created");
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[1]["name"], "early");
}

}  // namespace
}  // namespace quire::apitest
