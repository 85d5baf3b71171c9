#include "server/chat/session_cache.h"

#include <type_traits>
#include <variant>

namespace quire::chat {

SessionCache::SessionCache(bool enabled, std::size_t max_entries)
    : enabled_(enabled), max_entries_(max_entries) {}

std::uint64_t SessionCache::Generation() {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

std::optional<storage::Session> SessionCache::Find(const std::string& token_hash) {
  if (!enabled_) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(token_hash);
  if (it == sessions_.end()) return std::nullopt;
  return it->second;
}

void SessionCache::Remember(const storage::Session& session, std::uint64_t generation) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (generation != generation_) return;  // something was forgotten since the read began
  if (sessions_.size() >= max_entries_) sessions_.clear();
  sessions_.insert_or_assign(session.token_hash, session);
}

void SessionCache::Forget(const std::string& token_hash) {
  std::lock_guard<std::mutex> lock(mu_);
  ++generation_;
  if (token_hash.empty()) {
    sessions_.clear();
  } else {
    sessions_.erase(token_hash);
  }
}

namespace {
template <class>
constexpr bool kUnclassified = false;
}  // namespace

bool ChangesSessions(const storage::op::Operation& op, std::string* token_hash) {
  namespace o = storage::op;
  token_hash->clear();
  return std::visit(
      [token_hash](const auto& write) {
        using T = std::decay_t<decltype(write)>;
        if constexpr (std::is_same_v<T, o::DeleteSession> || std::is_same_v<T, o::TouchSession>) {
          *token_hash = write.token_hash;
          return true;
        } else if constexpr (std::is_same_v<T, o::ChangePassword> ||
                             std::is_same_v<T, o::DeleteUserSessions> ||
                             std::is_same_v<T, o::Purge>) {
          return true;  // any number of sessions
        } else if constexpr (std::is_same_v<T, o::Setup> ||
                             std::is_same_v<T, o::AcceptInvitation> ||
                             std::is_same_v<T, o::CreateSession>) {
          return false;  // a new session: the cache keeps no misses
        } else if constexpr (std::is_same_v<T, o::CreateInvitation> ||
                             std::is_same_v<T, o::CreateConversation> ||
                             std::is_same_v<T, o::SendMessage> ||
                             std::is_same_v<T, o::DeleteConversation> ||
                             std::is_same_v<T, o::DeleteMessage> || std::is_same_v<T, o::Expire>) {
          return false;
        } else {
          // A new operation must say here whether it changes sessions.
          static_assert(kUnclassified<T>, "classify the operation in ChangesSessions");
          return false;
        }
      },
      op);
}

}  // namespace quire::chat
