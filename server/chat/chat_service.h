// ChatService: the chat domain, written once above the storage seam.
//
// It validates and normalizes input, makes ids, hashes passwords and tokens,
// decides who may do what and when things expire, and turns each request into
// storage operations handed to the Committer. It knows nothing of HTTP: errors
// come back as an Error kind that the API layer maps to a status code.
//
// Thread-safety: every method may be called concurrently.
// Ownership: the Store, Committer and Clock must outlive the service.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "server/chat/clock.h"
#include "server/chat/committer.h"
#include "server/chat/hashing_pool.h"
#include "server/chat/login_throttle.h"
#include "server/chat/session_cache.h"
#include "storage/store.h"

namespace quire::chat {

struct Policy {
  storage::Micros message_ttl = 90LL * 86400 * 1000000;
  storage::Micros conversation_ttl = 90LL * 86400 * 1000000;
  storage::Micros purge_after = 7LL * 86400 * 1000000;
  storage::Micros invite_ttl = 24LL * 3600 * 1000000;
  storage::Micros session_ttl = 7LL * 86400 * 1000000;
  storage::Micros idempotency_window = 24LL * 3600 * 1000000;
  // Failed logins: 5 in a row per name, then one every 30 s; 50 per client
  // address (any names), then one every 2 s: addresses are shared behind NAT
  // and by every client of a reverse proxy not named with --trusted-proxy.
  ThrottleLimits login_per_name{5, 30LL * 1000000};
  ThrottleLimits login_per_address{50, 2LL * 1000000};
};

struct Error {
  enum class Kind {
    kBadRequest,       // 400
    kUnauthorized,     // 401
    kForbidden,        // 403
    kNotFound,         // 404
    kConflict,         // 409
    kGone,             // 410
    kTooManyRequests,  // 429: retry after `retry_after`
    kNotSetUp,         // 503: no user exists yet
    kUnavailable,      // 503: the database cannot be reached
  };
  Kind kind;
  std::string message;
  storage::Micros retry_after = 0;  // kTooManyRequests: how long to wait
};

// A value or an Error.
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : error_(std::move(error)) {}  // NOLINT
  bool ok() const { return !error_.has_value(); }
  const Error& error() const { return *error_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }

 private:
  std::optional<T> value_;
  std::optional<Error> error_;
};

struct Done {};

// Receives the outcome of an operation that completes later.
template <class T>
using Reply = std::function<void(Result<T>)>;

// A logged-in client, as resolved from its token.
struct Identity {
  std::string user_id;
  std::string name;
  std::string token_hash;
};

// A new login: the user and the token for the cookie.
struct Login {
  std::string user_id;
  std::string name;
  std::string token;
};

struct InvitationView {
  std::string id;
  std::string issuer;  // issuer's user id (when issued) or name (when looked up)
  storage::Micros issued_at = 0;
};

// Told when sessions end, so their open streams can be ended.
class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void SessionEnded(const std::string& token_hash) = 0;
  // Every session of the user except `kept_token_hash` (none when empty) ended.
  virtual void UserSessionsEnded(const std::string& user_id,
                                 const std::string& kept_token_hash) = 0;
  // The sessions that something (a stream) is open for, so that those that
  // expired can be ended (ChatService::RunRetention).
  virtual std::vector<std::string> OpenSessions() = 0;
};

class ChatService {
 public:
  ChatService(storage::Store& store, Committer& committer, Clock& clock, Policy policy);

  const Policy& policy() const { return policy_; }
  storage::Store& store() { return store_; }
  void set_session_observer(SessionObserver* observer) { observer_ = observer; }

  // True once the first user exists (then forever: users are never deleted).
  Result<bool> IsSetUp();

  Result<Login> Setup(const std::string& name, const std::string& password);
  // Throttled per name and per client `address` (LoginThrottle):
  // kTooManyRequests before any password is hashed. The password is checked
  // on the hashing pool and the session committed; `reply` runs then, no
  // thread waiting meanwhile (kUnavailable when the pool's queue is full).
  void LogIn(const std::string& name, const std::string& password, const std::string& address,
             Reply<Login> reply);
  Result<Login> LogIn(const std::string& name, const std::string& password,
                      const std::string& address);
  // Resolves a cookie token; renews the session. kUnauthorized when unknown,
  // logged out or idle for longer than the session TTL.
  Result<Identity> Authenticate(const std::string& token);
  // Ends the session and its streams; `reply` runs after the commit.
  void LogOut(const Identity& who, Reply<Done> reply);
  Result<Done> LogOut(const Identity& who);  // the same, waiting
  Result<Login> ChangePassword(const Identity& who, const std::string& current,
                               const std::string& to);

  // `reply` runs after the commit.
  void Invite(const Identity& who, Reply<InvitationView> reply);
  Result<InvitationView> Invite(const Identity& who);  // the same, waiting
  Result<InvitationView> GetInvitation(const std::string& id);
  Result<Login> AcceptInvitation(const std::string& id, const std::string& name,
                                 const std::string& password);

  // The chat's writes do not wait with a thread: each answers through `reply`,
  // at once when the request is refused before any write, else on the
  // committer thread once the write committed (so a reply means durable).
  // `reply` must not block.
  void CreateConversation(const Identity& who, const std::string& name,
                          Reply<storage::Conversation> reply);
  // `idempotency_key` empty means none.
  void SendMessage(const Identity& who, const std::string& conversation_id, const std::string& body,
                   const std::string& idempotency_key, Reply<storage::Message> reply);
  void DeleteConversation(const Identity& who, const std::string& id, Reply<Done> reply);
  void DeleteMessage(const Identity& who, const std::string& id, Reply<Done> reply);

  // The same, waiting for the reply (for callers that may block: tests, tools).
  Result<storage::Conversation> CreateConversation(const Identity& who, const std::string& name);
  Result<storage::Message> SendMessage(const Identity& who, const std::string& conversation_id,
                                       const std::string& body, const std::string& idempotency_key);
  Result<Done> DeleteConversation(const Identity& who, const std::string& id);
  Result<Done> DeleteMessage(const Identity& who, const std::string& id);

  // ---- An operator's actions (quire admin), by user name, with no session ----
  // Each answers kNotFound "no user NAME" for a name nobody has.

  // The first user, whom setup created; kNotSetUp when nobody exists yet.
  Result<storage::User> Owner();
  Result<storage::User> FindUser(const std::string& name);
  // Sets `password` (checked as a new password of ChangePassword) and ends
  // every session of the user with its streams, through ChangePassword's
  // write; no session is made.
  Result<Done> ResetPassword(const std::string& name, const std::string& password);
  // Ends every session of the user with its streams; the password stays.
  Result<Done> EndSessions(const std::string& name);

  // Expires and purges what is due now. Called periodically.
  // Also ends the streams of sessions that expired (SessionObserver).
  Result<Done> RunRetention();

  // How often RunRetention should run for this policy.
  storage::Micros RetentionInterval() const;

 private:
  void NewLogin(const storage::User& user, Reply<Login> reply);
  // Runs password work on the hashing pool and waits for it (setup,
  // invitations and password changes: rare, and behind a session or an
  // invitation); kUnavailable when the pool's queue is full.
  template <class T>
  Result<T> Hashing(std::function<Result<T>()> work);
  static Error Busy();
  storage::Session NewSession(const std::string& user_id, std::string* token);
  // Commits a new password hash, replacing every session of the user with
  // `session` (none when its token_hash is empty), then ends the streams of
  // the sessions replaced. The write's status: NotFound when the user is gone.
  storage::Status ReplacePassword(const std::string& user_id, std::string password_hash,
                                  storage::Session session);
  void EndExpiredSessions(storage::Micros now);

  storage::Store& store_;
  Committer& committer_;
  Clock& clock_;
  const Policy policy_;
  SessionObserver* observer_ = nullptr;
  LoginThrottle login_throttle_;
  // The sessions requests found, on stores that only this process writes: a
  // request then reads nothing to learn who sent it.
  SessionCache sessions_;
  // User id -> name, for Authenticate: users are never renamed or deleted, so
  // an entry never goes stale, and a request costs at most one read (its
  // session), not two. Emptied when it reaches kMaxCachedNames.
  static constexpr std::size_t kMaxCachedNames = 65536;
  std::mutex names_mu_;
  std::unordered_map<std::string, std::string> user_names_;  // guarded by names_mu_
  // Two argon2id hashes at a time (128 MiB), 256 logins waiting at most.
  // Last: its threads use the members above until it is gone.
  HashingPool hashing_{2, 256};
  std::atomic<bool> set_up_{false};
};

// Why `password` cannot be a new password (the API's rule: not empty, at
// most 4096 bytes, valid UTF-8), or nothing when it can.
std::optional<std::string> NewPasswordProblem(const std::string& password);

// Maps a storage failure to the service's error (unavailable, or an internal
// failure reported as unavailable so no engine text reaches a client).
Error StorageError(const storage::Status& status);
// How many StorageError calls this process made: database errors, for metrics.
std::uint64_t StorageErrorCount();

}  // namespace quire::chat
