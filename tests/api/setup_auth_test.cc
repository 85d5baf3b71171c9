// Setup, login, logout, password change, sessions, and the rules for names.
#include "tests/api/harness.h"

namespace quire::apitest {
namespace {

using SetupAuthTest = ApiTest;

// Names that are not valid (after NFC), with why.
std::vector<std::pair<std::string, std::string>> InvalidNames() {
  return {
      {"", "empty"},
      {" alice", "leading space"},
      {"alice ", "trailing space"},
      {"\u00a0alice", "leading no-break space"},
      {"alice\u3000", "trailing ideographic space"},
      {"alice\u2028", "trailing line separator"},
      {"a  b", "two spaces"},
      {"a \u00a0b", "space then no-break space"},
      {"a\u3000\u3000b", "two ideographic spaces"},
      {"a\tb", "tab (control)"},
      {"a\nb", "newline (control)"},
      {"a\x01"
       "b",
       "U+0001"},
      {"a\x7f"
       "b",
       "DEL"},
      {"a\u0085b", "NEL (control)"},
      {std::string("a\0b", 3), "NUL"},
      {Repeat("a", 64), "64 ASCII characters"},
      {Repeat("\u00e9", 64), "64 two-byte characters"},
      {Repeat("\U0001F600", 64), "64 four-byte characters"},
      {Repeat("e\u0301", 64), "64 characters after NFC"},
  };
}

// Names that are valid, with their NFC form.
std::vector<std::pair<std::string, std::string>> ValidNames() {
  return {
      {"a", "a"},
      {Repeat("a", 63), Repeat("a", 63)},
      {Repeat("\u00e9", 63), Repeat("\u00e9", 63)},
      {Repeat("\U0001F600", 63), Repeat("\U0001F600", 63)},
      {Repeat("o\u0301", 63), Repeat("\u00f3", 63)},  // 126 code points before NFC
      {"a b", "a b"},
      {"c\u00a0d", "c\u00a0d"},  // canonical names must differ: NFKC maps NBSP to a space
      {"a b c d", "a b c d"},
      {"\u540d\u524d", "\u540d\u524d"},
      {"Cafe\u0301", "Caf\u00e9"},
      {"x-y_z.1!", "x-y_z.1!"},
  };
}

TEST_F(SetupAuthTest, SetupCreatesTheFirstUserAndLogsIn) {
  Client c = NewClient();
  Response r = c.post("/api/setup", {{"name", "alice"}, {"password", "secret pw"}});
  ASSERT_TRUE(HasStatus(r, 200));
  EXPECT_EQ(r.header("content-type").rfind("application/json", 0), 0u) << r.Describe();
  Json j = r.json();
  EXPECT_EQ(Keys(j), (std::set<std::string>{"id", "name"}));
  EXPECT_TRUE(IsId(j["id"], 'U'));
  EXPECT_EQ(j["name"], "alice");
  EXPECT_TRUE(SetsIdentityCookie(r));

  Json boot = Boot(c);
  EXPECT_EQ(boot["login"], (Json{{"id", j["id"]}, {"name", "alice"}}));
  ASSERT_EQ(boot["events"].size(), 1u);
  Json e = boot["events"][0];
  EXPECT_EQ(Keys(e), (std::set<std::string>{"type", "event", "at", "id", "name"}));
  EXPECT_EQ(e["type"], "user");
  EXPECT_EQ(e["event"], "created");
  EXPECT_EQ(e["id"], j["id"]);
  EXPECT_EQ(e["name"], "alice");
  EXPECT_TRUE(IsTimestamp(e["at"]));
}

TEST_F(SetupAuthTest, SetupOnlyOnce) {
  Client owner = Setup("alice");
  for (const std::string name : {"bob", "alice"}) {
    Client c = NewClient();
    Response r = c.post("/api/setup", {{"name", name}, {"password", "pw"}});
    EXPECT_TRUE(IsJsonError(r, 409)) << name;
    EXPECT_FALSE(IdentityCookie(r).has_value()) << name;
  }
  // Also with a valid cookie.
  EXPECT_TRUE(IsJsonError(owner.post("/api/setup", {{"name", "carol"}, {"password", "pw"}}), 409));
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
  Client bob = NewClient();
  EXPECT_TRUE(IsJsonError(bob.post("/api/auth/login", {{"name", "bob"}, {"password", "pw"}}), 401));
}

TEST_F(SetupAuthTest, SetupRejectsInvalidNamesAndStaysAvailable) {
  Client c = NewClient();
  for (const auto& [name, why] : InvalidNames()) {
    Response r = c.post("/api/setup", {{"name", name}, {"password", "pw"}});
    EXPECT_TRUE(IsJsonError(r, 400)) << why;
    EXPECT_FALSE(c.token().has_value()) << why;
  }
  Client owner = Setup("alice");
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

TEST_F(SetupAuthTest, SetupStoresNamesInNfc) {
  Client c = NewClient();
  Response r = c.post("/api/setup", {{"name", "Cafe\u0301"}, {"password", "pw"}});
  ASSERT_TRUE(HasStatus(r, 200));
  EXPECT_EQ(r.json()["name"], "Caf\u00e9");
  Json boot = Boot(c);
  EXPECT_EQ(boot["login"]["name"], "Caf\u00e9");
  ASSERT_EQ(boot["events"].size(), 1u);
  EXPECT_EQ(boot["events"][0]["name"], "Caf\u00e9");
  for (const std::string login :
       {"Caf\u00e9", "Cafe\u0301", "caf\u00e9", "CAF\u00c9", "CAFE\u0301"}) {
    Client l = NewClient();
    Response lr = l.post("/api/auth/login", {{"name", login}, {"password", "pw"}});
    EXPECT_TRUE(HasStatus(lr, 200)) << login;
    EXPECT_EQ(lr.json()["name"], "Caf\u00e9") << login;
  }
}

TEST_F(SetupAuthTest, ValidNamesAreAccepted) {
  // Conversation names follow the same rules and cost no password hashing.
  Client owner = Setup();
  for (const auto& [name, nfc] : ValidNames()) {
    Response r = owner.post("/api/conversations", {{"name", name}});
    EXPECT_TRUE(HasStatus(r, 202)) << "name: " << name;
    EXPECT_EQ(r.json()["name"], nfc) << "name: " << name;
  }
  for (const auto& [name, why] : InvalidNames()) {
    EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", name}}), 400)) << why;
  }
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "conversation", "created").size(),
            ValidNames().size());
}

TEST_F(SetupAuthTest, LoginGivesANewCookieAndTheStoredName) {
  Client owner = Setup("Alice", "pw one");
  std::string setup_token = *owner.token();
  std::string id = Str(Boot(owner)["login"], "id");
  for (const std::string name : {"Alice", "alice", "ALICE", "aLiCe"}) {
    Client c = NewClient();
    Response r = c.post("/api/auth/login", {{"name", name}, {"password", "pw one"}});
    ASSERT_TRUE(HasStatus(r, 200)) << name;
    EXPECT_EQ(r.json(), (Json{{"id", id}, {"name", "Alice"}})) << name;
    EXPECT_TRUE(SetsIdentityCookie(r)) << name;
    EXPECT_NE(*c.token(), setup_token);
    EXPECT_TRUE(HasStatus(c.get("/api/boot"), 200)) << name;
  }
  // Logging in elsewhere does not end the first session.
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200));
  // Logins emit nothing.
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

TEST_F(SetupAuthTest, LoginUsesTheCanonicalForm) {
  Client owner = Setup("\ufb01ne Stra\u00dfe", "pw");  // "ﬁne Straße"
  for (const std::string name :
       {"fine strasse", "FINE STRASSE", "\ufb01ne stra\u00dfe", "Fine Strasse"}) {
    Client c = NewClient();
    Response r = c.post("/api/auth/login", {{"name", name}, {"password", "pw"}});
    EXPECT_TRUE(HasStatus(r, 200)) << name;
    EXPECT_EQ(r.json()["name"], "\ufb01ne Stra\u00dfe") << name;
  }
}

TEST_F(SetupAuthTest, LoginFailuresAreIndistinguishable) {
  Setup("alice", "right password");
  Client a = NewClient();
  Response unknown =
      a.post("/api/auth/login", {{"name", "nobody"}, {"password", "right password"}});
  Client b = NewClient();
  Response wrong = b.post("/api/auth/login", {{"name", "alice"}, {"password", "wrong password"}});
  Client c = NewClient();
  Response wrong_case =
      c.post("/api/auth/login", {{"name", "ALICE"}, {"password", "Right password"}});
  EXPECT_TRUE(IsJsonError(unknown, 401));
  EXPECT_TRUE(IsJsonError(wrong, 401));
  EXPECT_TRUE(IsJsonError(wrong_case, 401));
  EXPECT_EQ(unknown.body, wrong.body);
  EXPECT_EQ(wrong.body, wrong_case.body);
  for (const Response* r : {&unknown, &wrong, &wrong_case}) {
    auto cookie = IdentityCookie(*r);
    EXPECT_TRUE(!cookie || cookie->Clears()) << "a failed login sets no identity";
  }
  EXPECT_FALSE(a.token() || b.token() || c.token());
}

TEST_F(SetupAuthTest, PasswordsAreNfcNormalized) {
  Setup("alice", "Cafe\u0301 au lait");
  auto login = [&](const std::string& password) {
    Client c = NewClient();
    return c.post("/api/auth/login", {{"name", "alice"}, {"password", password}});
  };
  EXPECT_TRUE(HasStatus(login("Caf\u00e9 au lait"), 200));
  EXPECT_TRUE(HasStatus(login("Cafe\u0301 au lait"), 200));

  Client c = NewClient();
  ASSERT_TRUE(HasStatus(
      c.post("/api/auth/login", {{"name", "alice"}, {"password", "Caf\u00e9 au lait"}}), 200));
  ASSERT_TRUE(HasStatus(
      c.post("/api/password", {{"password", "Cafe\u0301 au lait"}, {"to", "A\u030angstro\u0308m"}}),
      200));
  EXPECT_TRUE(HasStatus(login("\u00c5ngstr\u00f6m"), 200));
  EXPECT_TRUE(HasStatus(login("\u212bngstr\u00f6m"), 200));  // ANGSTROM SIGN: canonical singleton

  // NFC only: a compatibility form is another password.
  ASSERT_TRUE(HasStatus(
      c.post("/api/password", {{"password", "\u00c5ngstr\u00f6m"}, {"to", "\ufb01ne"}}), 200));
  EXPECT_TRUE(IsJsonError(login("fine"), 401));
  EXPECT_TRUE(HasStatus(login("\ufb01ne"), 200));
}

TEST_F(SetupAuthTest, LogoutEndsThatSessionOnly) {
  Client owner = Setup("alice", "pw");
  Client other = NewClient();
  ASSERT_TRUE(
      HasStatus(other.post("/api/auth/login", {{"name", "alice"}, {"password", "pw"}}), 200));
  std::string token = *owner.token();

  Response r = owner.post("/api/auth/logout", Json::object());
  ASSERT_TRUE(HasStatus(r, 204));
  EXPECT_TRUE(r.body.empty());
  auto cookie = IdentityCookie(r);
  ASSERT_TRUE(cookie.has_value()) << "logout must clear the identity cookie";
  EXPECT_TRUE(cookie->Clears()) << "Set-Cookie: identity=" << cookie->value;
  EXPECT_EQ(cookie->Get("path"), "/");

  Client old = NewClient();
  old.set_token(token);
  EXPECT_TRUE(IsJsonError(old.get("/api/boot"), 401));
  EXPECT_TRUE(IsJsonError(old.post("/api/auth/logout", Json::object()), 401));
  EXPECT_TRUE(IsJsonError(old.post("/api/conversations", {{"name", "x"}}), 401));
  EXPECT_TRUE(IsJsonError(old.post("/api/invite", Json::object()), 401));
  // The other session of the same user lives on.
  Json boot = Boot(other);
  EXPECT_EQ(boot["login"]["name"], "alice");
  EXPECT_TRUE(FindEvents(boot["events"], "conversation", "created").empty());
}

TEST_F(SetupAuthTest, LogoutNeedsAValidCookie) {
  Client owner = Setup();
  Client anonymous = NewClient();
  EXPECT_TRUE(IsJsonError(anonymous.post("/api/auth/logout", Json::object()), 401));
  Client bogus = NewClient();
  bogus.set_token("0123456789abcdef0123456789abcdef");
  EXPECT_TRUE(IsJsonError(bogus.post("/api/auth/logout", Json::object()), 401));
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200));
}

TEST_F(SetupAuthTest, PasswordChangeReplacesEverySession) {
  Client owner = Setup("alice", "old pw");
  std::string id = Str(Boot(owner)["login"], "id");
  Client second = NewClient();
  ASSERT_TRUE(
      HasStatus(second.post("/api/auth/login", {{"name", "alice"}, {"password", "old pw"}}), 200));
  std::string old_token = *owner.token();
  std::string second_token = *second.token();
  // Used once before the change, so the server has met the session.
  ASSERT_TRUE(HasStatus(second.get("/api/boot"), 200));

  Response r = owner.post("/api/password", {{"password", "old pw"}, {"to", "new pw"}});
  ASSERT_TRUE(HasStatus(r, 200));
  EXPECT_EQ(r.json(), (Json{{"id", id}, {"name", "alice"}}));
  EXPECT_TRUE(SetsIdentityCookie(r));
  ASSERT_TRUE(owner.token().has_value());
  EXPECT_NE(*owner.token(), old_token);
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200));

  for (const std::string& dead : {old_token, second_token}) {
    Client c = NewClient();
    c.set_token(dead);
    EXPECT_TRUE(IsJsonError(c.get("/api/boot"), 401));
  }
  Client a = NewClient();
  EXPECT_TRUE(
      IsJsonError(a.post("/api/auth/login", {{"name", "alice"}, {"password", "old pw"}}), 401));
  EXPECT_TRUE(
      HasStatus(a.post("/api/auth/login", {{"name", "alice"}, {"password", "new pw"}}), 200));
  // A password change emits nothing.
  EXPECT_EQ(Boot(owner)["events"].size(), 1u);
}

TEST_F(SetupAuthTest, PasswordChangeFailures) {
  Client owner = Setup("alice", "old pw");
  std::string token = *owner.token();
  Response wrong = owner.post("/api/password", {{"password", "not it"}, {"to", "new pw"}});
  EXPECT_TRUE(IsJsonError(wrong, 400));
  EXPECT_EQ(*owner.token(), token);
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200));
  Client anonymous = NewClient();
  EXPECT_TRUE(
      IsJsonError(anonymous.post("/api/password", {{"password", "old pw"}, {"to", "x"}}), 401));
  // Nothing changed.
  Client c = NewClient();
  EXPECT_TRUE(
      HasStatus(c.post("/api/auth/login", {{"name", "alice"}, {"password", "old pw"}}), 200));
}

// docs/decisions.md: login with an invalid name (empty, too long, ...) is a
// 401 like any unknown name, with the same body: login does not reveal name
// rules.
TEST_F(SetupAuthTest, LoginWithAnInvalidNameIs401) {
  Setup("alice", "owner pass");
  Client probe = NewClient();
  Response unknown = probe.post("/api/auth/login", {{"name", "nobody"}, {"password", "pw"}});
  ASSERT_TRUE(IsJsonError(unknown, 401));
  for (const auto& [name, why] : InvalidNames()) {
    Client c = NewClient();
    Response r = c.post("/api/auth/login", {{"name", name}, {"password", "owner pass"}});
    EXPECT_TRUE(IsJsonError(r, 401)) << why;
    EXPECT_EQ(r.body, unknown.body) << why;
    EXPECT_FALSE(c.token().has_value()) << why;
  }
  // Also with the owner's name made invalid by white space around it.
  Client c = NewClient();
  EXPECT_TRUE(IsJsonError(
      c.post("/api/auth/login", {{"name", " alice "}, {"password", "owner pass"}}), 401));
}

// docs/decisions.md: passwords must be non-empty and at most 4096 bytes (400
// otherwise), for setup, invitation acceptance and password change alike;
// a refused password changes nothing.
TEST_F(SetupAuthTest, PasswordsEmptyOrOver4096BytesAre400) {
  const std::string longest = Repeat("\u00e9", 2048);  // 4096 bytes
  ASSERT_EQ(longest.size(), 4096u);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "empty"},
      {Repeat("p", 4097), "4097 ASCII bytes"},
      {longest + "p", "4097 bytes of two-byte characters and one more"},
      {Repeat("p", 60000), "60,000 bytes (a body under 64 KiB)"},
  };
  // Setup.
  Client c = NewClient();
  for (const auto& [password, why] : bad) {
    EXPECT_TRUE(IsJsonError(c.post("/api/setup", {{"name", "alice"}, {"password", password}}), 400))
        << "setup, " << why;
    EXPECT_FALSE(c.token().has_value()) << why;
  }
  Client owner = Setup("alice", longest);
  Client again = NewClient();
  EXPECT_TRUE(
      HasStatus(again.post("/api/auth/login", {{"name", "alice"}, {"password", longest}}), 200))
      << "a password of 4096 bytes works";

  // Invitation acceptance: refused, and the invitation stays usable.
  Response inv = owner.post("/api/invite", Json::object());
  ASSERT_TRUE(HasStatus(inv, 200));
  const std::string path = "/api/invite/" + Str(inv.json(), "id");
  Client invited = NewClient();
  for (const auto& [password, why] : bad) {
    EXPECT_TRUE(IsJsonError(invited.post(path, {{"name", "bob"}, {"password", password}}), 400))
        << "invitation, " << why;
    EXPECT_FALSE(invited.token().has_value()) << why;
  }
  EXPECT_TRUE(HasStatus(NewClient().get(path), 200)) << "the invitation stays usable";
  EXPECT_TRUE(
      HasStatus(invited.post(path, {{"name", "bob"}, {"password", Repeat("b", 4096)}}), 200));

  // Password change: refused, the cookie and the old password stay.
  const std::string token = *owner.token();
  for (const auto& [password, why] : bad) {
    EXPECT_TRUE(
        IsJsonError(owner.post("/api/password", {{"password", longest}, {"to", password}}), 400))
        << "password change, " << why;
    EXPECT_EQ(owner.token(), token) << why;
  }
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200));
  Client old_password = NewClient();
  EXPECT_TRUE(HasStatus(
      old_password.post("/api/auth/login", {{"name", "alice"}, {"password", longest}}), 200));
  EXPECT_EQ(FindEvents(Boot(owner)["events"], "user", "created").size(), 2u);
}

// Failed logins are throttled per name (5 in a row, then one every 30 s):
// the sixth attempt is 429 with Retry-After, for a name that exists as for
// one that does not, with the right password too, and it hashes nothing
// (it is answered at once). Other names still log in.
TEST_F(SetupAuthTest, FailedLoginsAreThrottledPerNameWith429) {
  Client owner = Setup("alice", "owner pass");
  Client bob = Invite(owner, "bob", "bob pass");
  for (const std::string name : {"alice", "nobody"}) {
    for (int i = 0; i < 5; ++i) {
      EXPECT_TRUE(IsJsonError(
          NewClient().post("/api/auth/login", {{"name", name}, {"password", "wrong"}}), 401))
          << name << ", attempt " << i;
    }
    for (const std::string password : {"wrong", "owner pass"}) {
      const auto sent = std::chrono::steady_clock::now();
      Response r = NewClient().post("/api/auth/login", {{"name", name}, {"password", password}});
      EXPECT_TRUE(IsJsonError(r, 429)) << name;
      const std::string retry = r.header("retry-after");
      ASSERT_FALSE(retry.empty()) << "no Retry-After";
      EXPECT_GE(std::stoi(retry), 1);
      EXPECT_LE(std::stoi(retry), 30);
      EXPECT_FALSE(IdentityCookie(r));
      (void)sent;
    }
  }
  // Variants of the name share its bucket.
  EXPECT_TRUE(IsJsonError(
      NewClient().post("/api/auth/login", {{"name", "ALICE"}, {"password", "owner pass"}}), 429));
  // Another name is not held back, and alice's session is untouched.
  EXPECT_TRUE(HasStatus(
      NewClient().post("/api/auth/login", {{"name", "bob"}, {"password", "bob pass"}}), 200));
  EXPECT_TRUE(HasStatus(owner.get("/api/boot"), 200));
}

// Per client address: 50 failures in a row (any names), then one every 2 s.
// Behind a reverse proxy named with --trusted-proxy the address is the last
// X-Forwarded-For entry; from anyone else that header is ignored.
class TrustedProxyTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--trusted-proxy", "127.0.0.1,::1"};
  }
};

TEST_F(TrustedProxyTest, FailedLoginsAreThrottledPerClientAddress) {
  Client owner = Setup("alice", "owner pass");
  const Headers from_a = {{"X-Forwarded-For", "203.0.113.9, 198.51.100.1"}};
  const Headers from_b = {{"X-Forwarded-For", "198.51.100.2"}};
  // Each failure takes a hash (~0.1 s), during which the bucket drains a
  // little: the first 429 comes after 50 failures and a few more.
  int failures = 0;
  Response held;
  for (; failures < 80; ++failures) {
    held = NewClient().post("/api/auth/login",
                            {{"name", "guess" + std::to_string(failures)}, {"password", "wrong"}},
                            from_a);
    if (held.status != 401) break;
  }
  EXPECT_GE(failures, 50) << "held back before 50 failures";
  EXPECT_TRUE(IsJsonError(held, 429)) << "after " << failures << " failures from one address";
  EXPECT_FALSE(held.header("retry-after").empty());
  EXPECT_TRUE(IsJsonError(
      NewClient().post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}, from_a),
      429))
      << "the right password of another name, from the held address";
  // Another client behind the same proxy is not held back.
  EXPECT_TRUE(HasStatus(
      NewClient().post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}, from_b),
      200));
}

// Cookies are Secure only when the client reached the server over TLS: from
// a trusted proxy saying X-Forwarded-Proto: https (below), or always with an
// https --public-url (PublicHttpsUrlTest). Anyone else's X-Forwarded-Proto
// is ignored.
TEST_F(TrustedProxyTest, CookiesAreSecureWhenTheTrustedProxySaysHttps) {
  Client owner = Setup("alice", "owner pass");
  auto login = [&](const Headers& h) {
    return IdentityCookie(
        NewClient().post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}, h));
  };
  auto over_tls = login({{"X-Forwarded-Proto", "https"}});
  ASSERT_TRUE(over_tls);
  EXPECT_TRUE(over_tls->Has("secure"));
  auto plain = login({{"X-Forwarded-Proto", "http"}});
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->Has("secure"));
}

TEST_F(SetupAuthTest, AnUntrustedXForwardedProtoIsIgnored) {
  auto setup =
      IdentityCookie(NewClient().post("/api/setup", {{"name", "alice"}, {"password", "owner pass"}},
                                      {{"X-Forwarded-Proto", "https"}}));
  ASSERT_TRUE(setup);
  EXPECT_FALSE(setup->Has("secure"));
}

class PublicHttpsUrlTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override {
    return {"--public-url", "https://chat.example.org"};
  }
};

TEST_F(PublicHttpsUrlTest, EveryCookieIsSecure) {
  Response setup = NewClient().post("/api/setup", {{"name", "alice"}, {"password", "owner pass"}});
  auto cookie = IdentityCookie(setup);
  ASSERT_TRUE(cookie);
  EXPECT_TRUE(cookie->Has("secure"));
  EXPECT_TRUE(cookie->Has("httponly"));
  Client c = NewClient();
  auto login =
      IdentityCookie(c.post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}));
  ASSERT_TRUE(login);
  EXPECT_TRUE(login->Has("secure"));
  Response out = c.post("/api/auth/logout", Json::object());
  auto cleared = IdentityCookie(out);
  ASSERT_TRUE(cleared);
  EXPECT_TRUE(cleared->Clears());
  EXPECT_TRUE(cleared->Has("secure"));
}

class SessionTtlTest : public ApiTest {
 protected:
  std::vector<std::string> ServerArgs() const override { return {"--session-ttl", "1s"}; }
};

// Real time with a 1 s TTL, so every check is one a slow machine cannot
// turn red: a session is required to be alive only when it was used less
// than 0.9 s before (the TTL less the renewal granularity of 1/20), and to be
// dead only when more than the TTL has passed since its last use.
TEST_F(SessionTtlTest, IdleSessionsExpireAndUseRenews) {
  using Clock = std::chrono::steady_clock;
  constexpr std::chrono::milliseconds kTtl = 1s;
  Client owner = Setup();
  // Used for 1.5 TTLs: each use renews, so it outlives its TTL. A use that
  // comes too late for that (a stalled machine) voids the attempt; login again.
  bool outlived = false;
  for (int attempt = 0; attempt < 5 && !outlived; ++attempt) {
    Client c = NewClient();
    const auto login_sent = Clock::now();
    ASSERT_TRUE(
        HasStatus(c.post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}), 200));
    auto previous_sent = login_sent;
    bool void_attempt = false;
    WaitUntil(
        [&] {
          const auto sent = Clock::now();
          Response r = c.get("/api/boot");
          const auto answered = Clock::now();
          if (answered - previous_sent >= kTtl * 9 / 10) {
            void_attempt = true;  // too long since the last use to require anything
            return true;
          }
          EXPECT_TRUE(HasStatus(r, 200))
              << "used " << (answered - previous_sent) / 1ms << " ms after the previous use";
          previous_sent = sent;
          return answered - login_sent > kTtl * 3 / 2;
        },
        30s);
    outlived = !void_attempt && Clock::now() - login_sent > kTtl * 3 / 2;
    if (outlived) owner = std::move(c);
  }
  ASSERT_TRUE(outlived) << "five attempts stalled: no use came within 0.9 s of the previous one";
  ASSERT_FALSE(HasFailure());

  // Unused for longer than the TTL: it has expired.
  const auto last_use = Clock::now();
  std::this_thread::sleep_until(last_use + kTtl + 100ms);
  EXPECT_TRUE(IsJsonError(owner.get("/api/boot"), 401));
  EXPECT_TRUE(IsJsonError(owner.post("/api/conversations", {{"name", "x"}}), 401));
  // Logging in again works.
  Client again = NewClient();
  EXPECT_TRUE(HasStatus(
      again.post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}), 200));
  EXPECT_TRUE(FindEvents(Boot(again)["events"], "conversation", "created").empty());
}

// An open stream does not renew its session, and it ends once its session
// expires (it used to go on delivering); the reconnect is 401. A stream whose
// session another client keeps using goes on.
TEST_F(SessionTtlTest, AStreamEndsWhenItsSessionExpires) {
  Client owner = Setup();
  Client idle = NewClient();
  ASSERT_TRUE(HasStatus(
      idle.post("/api/auth/login", {{"name", "alice"}, {"password", "owner pass"}}), 200));
  const std::int64_t start = Boot(idle)["resume_point"].get<std::int64_t>();
  auto idle_stream = OpenStream(idle, start);
  auto used_stream = OpenStream(owner, start);
  ASSERT_TRUE(idle_stream->WaitForHeaders());
  ASSERT_TRUE(used_stream->WaitForHeaders());

  // The owner's session stays in use (a boot every 200 ms, well inside the
  // 1 s TTL); the other one is left alone.
  const auto until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE(HasStatus(owner.get("/api/boot"), 200));
    if (idle_stream->ended()) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(idle_stream->WaitForEnd(5s)) << "the stream of an expired session goes on";
  EXPECT_TRUE(IsJsonError(idle.get("/api/boot"), 401));
  EXPECT_FALSE(used_stream->ended()) << "a stream of a session in use was ended";
  const std::string conv = CreateConversation(owner, "still here");
  EXPECT_TRUE(used_stream->WaitForEvents(1, 10s));
}

}  // namespace
}  // namespace quire::apitest
