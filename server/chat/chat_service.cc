#include "server/chat/chat_service.h"

#include <atomic>

#include "server/log/log.h"

#include <algorithm>
#include <cstdio>
#include <future>
#include <vector>

#include "server/chat/ids.h"
#include "server/chat/names.h"
#include "server/chat/secrets.h"

namespace quire::chat {
namespace {

using storage::Micros;
using storage::Status;
using storage::Write;

constexpr Micros kSecond = 1000000;
constexpr std::size_t kMaxPasswordBytes = 4096;
constexpr std::size_t kMaxIdempotencyKeyBytes = 255;

Error BadRequest(std::string message) {
  return Error{Error::Kind::kBadRequest, std::move(message)};
}
Error NotFound(std::string message) {
  return Error{Error::Kind::kNotFound, std::move(message)};
}
Error Conflict(std::string message) {
  return Error{Error::Kind::kConflict, std::move(message)};
}
Error Unauthorized() {
  return Error{Error::Kind::kUnauthorized, "not logged in"};
}

// A valid NFC name, or the reason it is not one.
Result<std::string> NormalizeName(const std::string& raw) {
  std::optional<std::string> nfc = ToNfc(raw);
  if (!nfc) return BadRequest("name is not valid UTF-8");
  if (auto problem = NameProblem(*nfc)) return BadRequest(*problem);
  return *nfc;
}

// Checks a new password and returns the argon2id hash of its NFC form.
Result<std::string> NewPasswordHash(const std::string& raw) {
  if (auto problem = NewPasswordProblem(raw)) return BadRequest(*problem);
  std::string hash = HashPassword(*ToNfc(raw));
  // Hashing fails only when its 64 MiB cannot be had.
  if (hash.empty()) return Error{Error::Kind::kUnavailable, "the server is overloaded, try again"};
  return hash;
}

// After a write, before it is answered: the sessions it may have changed
// leave the cache (whatever its outcome: forgetting is never wrong).
void ForgetChangedSessions(SessionCache& sessions, const storage::op::Operation& op) {
  std::string token_hash;
  if (ChangesSessions(op, &token_hash)) sessions.Forget(token_hash);
}

// Applies one operation through the committer and waits for its outcome (for
// requests that hold their thread anyway: password hashing, sessions).
Write Commit(Committer& committer, SessionCache& sessions, storage::op::Operation op) {
  Write w = committer.SubmitAndWait(Write{std::move(op), Status::Ok(), 0});
  ForgetChangedSessions(sessions, w.op);
  return w;
}

// Applies one operation through the committer and returns at once;
// `finish` turns the committed write into the reply, on the committer thread.
template <class T>
void CommitThen(Committer& committer, SessionCache& sessions, storage::op::Operation op,
                Reply<T> reply, std::function<Result<T>(Write&)> finish) {
  committer.Submit(Write{std::move(op), Status::Ok(), 0},
                   [&sessions, reply = std::move(reply), finish = std::move(finish)](Write w) {
                     ForgetChangedSessions(sessions, w.op);
                     reply(finish(w));
                   });
}

}  // namespace

namespace {
std::atomic<std::uint64_t> storage_errors{0};
}  // namespace

std::uint64_t StorageErrorCount() {
  return storage_errors.load();
}

std::optional<std::string> NewPasswordProblem(const std::string& password) {
  if (password.empty()) return "password must not be empty";
  if (password.size() > kMaxPasswordBytes) return "password is too long";
  if (!ToNfc(password)) return "password is not valid UTF-8";
  return std::nullopt;
}

Error StorageError(const Status& status) {
  storage_errors.fetch_add(1);
  log::Error("storage", status.ToString());
  return Error{Error::Kind::kUnavailable, "the database is unavailable, try again"};
}

ChatService::ChatService(storage::Store& store, Committer& committer, Clock& clock, Policy policy)
    : store_(store),
      committer_(committer),
      clock_(clock),
      policy_(policy),
      login_throttle_(policy.login_per_name, policy.login_per_address),
      sessions_(!store.capabilities().multi_process_writers) {}

Result<bool> ChatService::IsSetUp() {
  if (set_up_.load(std::memory_order_acquire)) return true;
  bool has_users = false;
  Status s = store_.HasUsers(&has_users);
  if (!s.ok()) return StorageError(s);
  if (has_users) set_up_.store(true, std::memory_order_release);
  return has_users;
}

storage::Session ChatService::NewSession(const std::string& user_id, std::string* token) {
  *token = NewToken();
  const Micros now = clock_.Now();
  return storage::Session{HashToken(*token), user_id, now, now};
}

Result<Login> ChatService::Setup(const std::string& raw_name, const std::string& raw_password) {
  Result<std::string> name = NormalizeName(raw_name);
  if (!name.ok()) return name.error();
  Result<std::string> password_hash =
      Hashing<std::string>([&] { return NewPasswordHash(raw_password); });
  if (!password_hash.ok()) return password_hash.error();

  storage::op::Setup op;
  op.user = storage::User{NewId(IdKind::kUser), name.value(), CanonicalName(name.value()),
                          password_hash.value(), clock_.Now()};
  Login login{op.user.id, op.user.name, ""};
  op.session = NewSession(op.user.id, &login.token);
  Write w = Commit(committer_, sessions_, std::move(op));
  if (w.status.IsConflict()) return Conflict("setup has already been done");
  if (!w.status.ok()) return StorageError(w.status);
  set_up_.store(true, std::memory_order_release);
  return login;
}

void ChatService::LogIn(const std::string& raw_name, const std::string& raw_password,
                        const std::string& address, Reply<Login> reply) {
  std::optional<std::string> nfc_name = ToNfc(raw_name);
  std::optional<std::string> password = ToNfc(raw_password);
  // The throttle's key for the name: its canonical form, so that variants of
  // one name share a bucket, known or not.
  const std::string name_key = nfc_name ? CanonicalName(*nfc_name) : raw_name;
  const Micros now = clock_.Now();
  if (const Micros wait = login_throttle_.RetryAfter(name_key, address, now); wait > 0) {
    return reply(
        Error{Error::Kind::kTooManyRequests, "too many failed logins; try again later", wait});
  }
  storage::User user;
  Status s = Status::NotFound("");
  if (nfc_name && !nfc_name->empty()) s = store_.FindUserByCanonicalName(name_key, &user);
  if (!s.ok() && !s.IsNotFound()) return reply(StorageError(s));
  // Counted as failed until the hash says otherwise, so that attempts queued
  // at once cannot pass the throttle together.
  login_throttle_.Attempted(name_key, address, now);
  const bool known = s.ok();
  auto check = [this, user = std::move(user), known, password = std::move(password), name_key,
                address, reply]() {
    // Verify against a dummy hash for unknown names so both failures take as long.
    const bool match =
        VerifyPassword(password.value_or(""), known ? user.password_hash : DummyPasswordHash());
    if (!known || !match || !password) {
      return reply(Error{Error::Kind::kUnauthorized, "unknown name or wrong password"});
    }
    login_throttle_.Succeeded(name_key, address);
    NewLogin(user, reply);
  };
  if (!hashing_.Submit(std::move(check))) reply(Busy());
}

void ChatService::NewLogin(const storage::User& user, Reply<Login> reply) {
  Login login{user.id, user.name, ""};
  storage::op::CreateSession op{NewSession(user.id, &login.token)};
  CommitThen<Login>(committer_, sessions_, std::move(op), std::move(reply),
                    [login](Write& w) -> Result<Login> {
                      if (!w.status.ok()) return StorageError(w.status);
                      return login;
                    });
}

Error ChatService::Busy() {
  return Error{Error::Kind::kUnavailable, "too many logins at once, try again"};
}

template <class T>
Result<T> ChatService::Hashing(std::function<Result<T>()> work) {
  std::promise<Result<T>> outcome;
  std::future<Result<T>> result = outcome.get_future();
  if (!hashing_.Submit([&] { outcome.set_value(work()); })) return Busy();
  return result.get();
}

Result<Identity> ChatService::Authenticate(const std::string& token) {
  if (token.empty() || token.size() > 256) return Unauthorized();
  const std::string hash = HashToken(token);
  storage::Session session;
  if (std::optional<storage::Session> cached = sessions_.Find(hash)) {
    session = std::move(*cached);
  } else {
    const std::uint64_t generation = sessions_.Generation();
    Status s = store_.FindSession(hash, &session);
    if (s.IsNotFound()) return Unauthorized();
    if (!s.ok()) return StorageError(s);
    sessions_.Remember(session, generation);
  }
  const Micros now = clock_.Now();
  if (now - session.last_used > policy_.session_ttl) return Unauthorized();
  std::string name;
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    if (auto it = user_names_.find(session.user_id); it != user_names_.end()) name = it->second;
  }
  if (name.empty()) {
    storage::User user;
    Status s = store_.GetUser(session.user_id, &user);
    if (s.IsNotFound()) return Unauthorized();
    if (!s.ok()) return StorageError(s);
    name = user.name;
    std::lock_guard<std::mutex> lock(names_mu_);
    if (user_names_.size() >= kMaxCachedNames) user_names_.clear();
    user_names_.emplace(user.id, user.name);
  }
  // Renew, but write at most once per 1/20 of the TTL (and per minute at most)
  // rather than on every request.
  const Micros granularity = std::min<Micros>(policy_.session_ttl / 20, 60 * kSecond);
  if (now - session.last_used >= granularity) {
    Write w = Commit(committer_, sessions_, storage::op::TouchSession{hash, now});
    if (w.status.IsNotFound()) return Unauthorized();  // logged out meanwhile
    if (!w.status.ok()) return StorageError(w.status);
  }
  return Identity{session.user_id, std::move(name), hash};
}

void ChatService::LogOut(const Identity& who, Reply<Done> reply) {
  CommitThen<Done>(committer_, sessions_, storage::op::DeleteSession{who.token_hash},
                   std::move(reply), [this, hash = who.token_hash](Write& w) -> Result<Done> {
                     if (w.status.IsNotFound()) return Unauthorized();
                     if (!w.status.ok()) return StorageError(w.status);
                     // Its streams end before the logout is answered.
                     if (observer_) observer_->SessionEnded(hash);
                     return Done{};
                   });
}

Result<Login> ChatService::ChangePassword(const Identity& who, const std::string& raw_current,
                                          const std::string& raw_to) {
  storage::User user;
  Status s = store_.GetUser(who.user_id, &user);
  if (!s.ok()) return s.IsNotFound() ? Result<Login>(Unauthorized()) : StorageError(s);
  std::optional<std::string> current = ToNfc(raw_current);
  // Hash the new password (64 MiB, ~70 ms) only once the current one matched.
  Result<std::string> to_hash = Hashing<std::string>([&]() -> Result<std::string> {
    if (!current || !VerifyPassword(*current, user.password_hash)) {
      return BadRequest("the current password is wrong");
    }
    return NewPasswordHash(raw_to);
  });
  if (!to_hash.ok()) return to_hash.error();
  Login login{user.id, user.name, ""};
  s = ReplacePassword(user.id, std::move(to_hash.value()), NewSession(user.id, &login.token));
  if (s.IsNotFound()) return Unauthorized();
  if (!s.ok()) return StorageError(s);
  return login;
}

Status ChatService::ReplacePassword(const std::string& user_id, std::string password_hash,
                                    storage::Session session) {
  const std::string kept = session.token_hash;
  Write w =
      Commit(committer_, sessions_,
             storage::op::ChangePassword{user_id, std::move(password_hash), std::move(session)});
  // The replaced sessions' streams end before the change is answered.
  if (w.status.ok() && observer_) observer_->UserSessionsEnded(user_id, kept);
  return w.status;
}

Result<storage::User> ChatService::Owner() {
  storage::Head head;
  Status s = store_.GetHead(&head);
  if (!s.ok()) return StorageError(s);
  // Setup's "user created" is the first user event of the history (it comes
  // before any other write, normally as event 1), and user events are never
  // purged.
  std::int64_t after = 0;
  while (after < head.last_seq) {
    std::vector<storage::Event> events;
    s = store_.ReadEvents(after, head.last_seq, 256, &events);
    if (!s.ok()) return StorageError(s);
    if (events.empty()) break;
    for (const storage::Event& event : events) {
      if (event.kind != storage::EventKind::kUserCreated) continue;
      storage::User owner;
      s = store_.GetUser(event.id, &owner);
      if (!s.ok()) return StorageError(s);
      return owner;
    }
    after = events.back().seq;
  }
  return Error{Error::Kind::kNotSetUp, "no user exists yet"};
}

Result<storage::User> ChatService::FindUser(const std::string& raw_name) {
  const Error unknown = NotFound("no user " + raw_name);
  std::optional<std::string> name = ToNfc(raw_name);
  if (!name || name->empty()) return unknown;
  storage::User user;
  Status s = store_.FindUserByCanonicalName(CanonicalName(*name), &user);
  if (s.IsNotFound()) return unknown;
  if (!s.ok()) return StorageError(s);
  return user;
}

Result<Done> ChatService::ResetPassword(const std::string& name, const std::string& password) {
  Result<storage::User> user = FindUser(name);
  if (!user.ok()) return user.error();
  Result<std::string> hash = Hashing<std::string>([&] { return NewPasswordHash(password); });
  if (!hash.ok()) return hash.error();
  Status s = ReplacePassword(user.value().id, std::move(hash.value()), storage::Session{});
  if (s.IsNotFound()) return NotFound("no user " + name);
  if (!s.ok()) return StorageError(s);
  return Done{};
}

Result<Done> ChatService::EndSessions(const std::string& name) {
  Result<storage::User> user = FindUser(name);
  if (!user.ok()) return user.error();
  const std::string& user_id = user.value().id;
  Write w = Commit(committer_, sessions_, storage::op::DeleteUserSessions{user_id});
  if (w.status.IsNotFound()) return NotFound("no user " + name);
  if (!w.status.ok()) return StorageError(w.status);
  if (observer_) observer_->UserSessionsEnded(user_id, "");
  return Done{};
}

void ChatService::Invite(const Identity& who, Reply<InvitationView> reply) {
  storage::Invitation invitation{NewId(IdKind::kInvitation), who.user_id, clock_.Now(), false};
  const InvitationView view{invitation.id, invitation.issuer_id, invitation.issued_at};
  CommitThen<InvitationView>(committer_, sessions_,
                             storage::op::CreateInvitation{std::move(invitation)}, std::move(reply),
                             [view](Write& w) -> Result<InvitationView> {
                               if (!w.status.ok()) return StorageError(w.status);
                               return view;
                             });
}

Result<InvitationView> ChatService::GetInvitation(const std::string& id) {
  const Error unknown = NotFound("no such invitation, or it was used or has expired");
  if (!LooksLikeId(id, IdKind::kInvitation)) return unknown;
  storage::Invitation invitation;
  Status s = store_.GetInvitation(id, &invitation);
  if (s.IsNotFound()) return unknown;
  if (!s.ok()) return StorageError(s);
  if (invitation.used || clock_.Now() - invitation.issued_at > policy_.invite_ttl) return unknown;
  storage::User issuer;
  s = store_.GetUser(invitation.issuer_id, &issuer);
  if (!s.ok()) return s.IsNotFound() ? Result<InvitationView>(unknown) : StorageError(s);
  return InvitationView{invitation.id, issuer.name, invitation.issued_at};
}

Result<Login> ChatService::AcceptInvitation(const std::string& id, const std::string& raw_name,
                                            const std::string& raw_password) {
  Result<std::string> name = NormalizeName(raw_name);
  if (!name.ok()) return name.error();
  Result<std::string> password_hash =
      Hashing<std::string>([&] { return NewPasswordHash(raw_password); });
  if (!password_hash.ok()) return password_hash.error();
  const Error unknown = NotFound("no such invitation, or it was used or has expired");
  if (!LooksLikeId(id, IdKind::kInvitation)) return unknown;

  storage::op::AcceptInvitation op;
  const Micros now = clock_.Now();
  op.invitation_id = id;
  op.issued_after = now - policy_.invite_ttl;
  op.user = storage::User{NewId(IdKind::kUser), name.value(), CanonicalName(name.value()),
                          password_hash.value(), now};
  Login login{op.user.id, op.user.name, ""};
  op.session = NewSession(op.user.id, &login.token);
  Write w = Commit(committer_, sessions_, std::move(op));
  if (w.status.IsNotFound()) return unknown;
  if (w.status.IsConflict()) return Conflict("that name is taken");
  if (!w.status.ok()) return StorageError(w.status);
  return login;
}

void ChatService::CreateConversation(const Identity& /*who*/, const std::string& raw_name,
                                     Reply<storage::Conversation> reply) {
  Result<std::string> name = NormalizeName(raw_name);
  if (!name.ok()) return reply(name.error());
  const Micros now = clock_.Now();
  storage::Conversation conversation{NewId(IdKind::kConversation),
                                     name.value(),
                                     CanonicalName(name.value()),
                                     now,
                                     now,
                                     std::nullopt};
  CommitThen<storage::Conversation>(committer_, sessions_,
                                    storage::op::CreateConversation{conversation}, std::move(reply),
                                    [conversation](Write& w) -> Result<storage::Conversation> {
                                      if (w.status.IsConflict())
                                        return Conflict("a conversation with that name exists");
                                      if (!w.status.ok()) return StorageError(w.status);
                                      return conversation;
                                    });
}

void ChatService::SendMessage(const Identity& who, const std::string& conversation_id,
                              const std::string& raw_body, const std::string& idempotency_key,
                              Reply<storage::Message> reply) {
  std::optional<std::string> body = ToNfc(raw_body);
  if (!body) return reply(BadRequest("body is not valid UTF-8"));
  if (auto problem = BodyProblem(*body)) return reply(BadRequest(*problem));
  if (idempotency_key.size() > kMaxIdempotencyKeyBytes) {
    return reply(BadRequest("Idempotency-Key is longer than 255 bytes"));
  }
  // Printable ASCII only, the same on every backend: PostgreSQL cannot store
  // a NUL or a byte that is not UTF-8 in text, and would cut a key at a NUL.
  for (char c : idempotency_key) {
    if (c < 0x20 || c > 0x7e) {
      return reply(BadRequest("Idempotency-Key must be printable ASCII"));
    }
  }
  const Error unknown = NotFound("no such conversation");
  const Micros now = clock_.Now();
  storage::op::SendMessage op;
  op.message = storage::Message{
      NewId(IdKind::kMessage), conversation_id, who.user_id, std::move(*body), now, std::nullopt};
  op.idempotency_key = idempotency_key;
  op.key_after = now - policy_.idempotency_window;
  // An id of the wrong shape cannot exist, but a replayed key still answers.
  if (!LooksLikeId(conversation_id, IdKind::kConversation) && idempotency_key.empty()) {
    return reply(unknown);
  }
  CommitThen<storage::Message>(committer_, sessions_, std::move(op), std::move(reply),
                               [unknown](Write& w) -> Result<storage::Message> {
                                 if (w.status.IsNotFound()) return unknown;
                                 if (!w.status.ok()) return StorageError(w.status);
                                 return std::get<storage::op::SendMessage>(w.op).message;
                               });
}

void ChatService::DeleteConversation(const Identity& /*who*/, const std::string& id,
                                     Reply<Done> reply) {
  const Error unknown = NotFound("no such conversation");
  if (!LooksLikeId(id, IdKind::kConversation)) return reply(unknown);
  CommitThen<Done>(committer_, sessions_, storage::op::DeleteConversation{id, clock_.Now()},
                   std::move(reply), [unknown](Write& w) -> Result<Done> {
                     if (w.status.IsNotFound()) return unknown;
                     if (w.status.IsConflict())
                       return Conflict("the conversation still has messages");
                     if (!w.status.ok()) return StorageError(w.status);
                     return Done{};
                   });
}

void ChatService::DeleteMessage(const Identity& who, const std::string& id, Reply<Done> reply) {
  const Error unknown = NotFound("no such message");
  if (!LooksLikeId(id, IdKind::kMessage)) return reply(unknown);
  storage::Message message;
  Status s = store_.GetMessage(id, &message);
  if (s.IsNotFound() || (s.ok() && message.deleted_at)) return reply(unknown);
  if (!s.ok()) return reply(StorageError(s));
  // Only the sender may delete a message; the sender of a message never changes.
  if (message.sender != who.user_id) {
    return reply(Error{Error::Kind::kForbidden, "only the sender may delete a message"});
  }
  CommitThen<Done>(committer_, sessions_, storage::op::DeleteMessage{id, clock_.Now()},
                   std::move(reply), [unknown](Write& w) -> Result<Done> {
                     if (w.status.IsNotFound()) return unknown;
                     if (!w.status.ok()) return StorageError(w.status);
                     return Done{};
                   });
}

namespace {

// The waiting forms: the same operation, its reply awaited.
template <class T, class Start>
Result<T> Await(Start start) {
  std::promise<Result<T>> outcome;
  std::future<Result<T>> result = outcome.get_future();
  start([&outcome](Result<T> r) { outcome.set_value(std::move(r)); });
  return result.get();
}

}  // namespace

Result<Done> ChatService::LogOut(const Identity& who) {
  return Await<Done>([&](auto reply) { LogOut(who, reply); });
}

Result<InvitationView> ChatService::Invite(const Identity& who) {
  return Await<InvitationView>([&](auto reply) { Invite(who, reply); });
}

Result<Login> ChatService::LogIn(const std::string& name, const std::string& password,
                                 const std::string& address) {
  return Await<Login>([&](auto reply) { LogIn(name, password, address, reply); });
}

Result<storage::Conversation> ChatService::CreateConversation(const Identity& who,
                                                              const std::string& name) {
  return Await<storage::Conversation>([&](auto reply) { CreateConversation(who, name, reply); });
}

Result<storage::Message> ChatService::SendMessage(const Identity& who,
                                                  const std::string& conversation_id,
                                                  const std::string& body,
                                                  const std::string& idempotency_key) {
  return Await<storage::Message>(
      [&](auto reply) { SendMessage(who, conversation_id, body, idempotency_key, reply); });
}

Result<Done> ChatService::DeleteConversation(const Identity& who, const std::string& id) {
  return Await<Done>([&](auto reply) { DeleteConversation(who, id, reply); });
}

Result<Done> ChatService::DeleteMessage(const Identity& who, const std::string& id) {
  return Await<Done>([&](auto reply) { DeleteMessage(who, id, reply); });
}

Result<Done> ChatService::RunRetention() {
  const Micros now = clock_.Now();
  storage::op::Expire expire;
  expire.messages_sent_before = now - policy_.message_ttl;
  expire.conversations_idle_before = now - policy_.conversation_ttl;
  expire.at = now;
  storage::op::Purge purge;
  purge.deleted_before = now - policy_.purge_after;
  purge.sessions_used_before = now - policy_.session_ttl;
  purge.invitations_issued_before = now - policy_.invite_ttl;
  purge.idempotency_before = now - policy_.idempotency_window;
  Write w = Commit(committer_, sessions_, expire);
  if (!w.status.ok()) return StorageError(w.status);
  w = Commit(committer_, sessions_, purge);
  if (!w.status.ok()) return StorageError(w.status);
  EndExpiredSessions(now);
  return Done{};
}

void ChatService::EndExpiredSessions(Micros now) {
  // An open stream does not renew its session; only requests do. A session
  // that nothing used for the TTL ends here, with its streams.
  if (!observer_) return;
  for (const std::string& hash : observer_->OpenSessions()) {
    storage::Session session;
    Status s = store_.FindSession(hash, &session);
    if (s.IsNotFound() || (s.ok() && now - session.last_used > policy_.session_ttl)) {
      observer_->SessionEnded(hash);
    }
  }
}

Micros ChatService::RetentionInterval() const {
  const Micros shortest = std::min(
      {policy_.message_ttl, policy_.conversation_ttl, policy_.purge_after, policy_.session_ttl});
  return std::clamp<Micros>(shortest / 10, 100000, 60 * kSecond);
}

}  // namespace quire::chat
