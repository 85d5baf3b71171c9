// Test support: a seeded workload of every write operation, valid and
// refused ones (taken names, stored ids, unknown and deleted targets,
// repeated idempotency keys, expiry, purges, unicode names), the same for
// every backend it is applied to; and a snapshot of everything a store holds
// that the workload can name, as text to compare.
#pragma once

#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "storage/store.h"

namespace quire::testing {

using storage::Conversation;
using storage::Invitation;
using storage::Message;
using storage::Micros;
using storage::Session;
using storage::Store;
using storage::User;
using storage::Write;
namespace op = storage::op;

constexpr Micros kSecond = 1'000'000;

// A workload: batches of writes with explicit times, the same for every backend.
class Workload {
 public:
  explicit Workload(unsigned seed) : random_(seed) {}

  std::vector<Write> NextBatch() {
    now_ += Pick(1, 3) * kSecond;
    std::vector<Write> batch;
    if (users_.empty()) {
      batch.push_back(WriteOf(op::Setup{NewUser(), NewSession("U0")}));
      return batch;
    }
    const int size = Pick(1, 8);
    for (int i = 0; i < size; ++i) batch.push_back(WriteOf(NextOperation()));
    return batch;
  }

  const std::vector<std::string>& users() const { return users_; }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::vector<std::string>& invitations() const { return invitations_; }
  const std::vector<std::string>& conversations() const { return conversations_; }
  const std::vector<std::string>& messages() const { return messages_; }

 private:
  static Write WriteOf(op::Operation operation) {
    Write w;
    w.op = std::move(operation);
    return w;
  }

  op::Operation NextOperation() {
    switch (Pick(0, 19)) {
      case 0:
        return op::CreateInvitation{Invitation{Id("I", &invitations_), users_[0], now_, false}};
      case 1: {
        const std::string user = "U" + std::to_string(users_.size());
        return op::AcceptInvitation{SomeOf(invitations_, "I-unknown"), now_ - 40 * kSecond,
                                    NewUser(), NewSession(user)};
      }
      case 2:
        return op::CreateSession{Session{Pick(0, 3) == 0 ? SomeOf(tokens_, "T0") : NewToken(),
                                         SomeOf(users_, "U-unknown"), now_, now_}};
      case 3:
        return op::DeleteSession{SomeOf(tokens_, "T-unknown")};
      case 4: {
        const std::string user = SomeOf(users_, "U-unknown");
        return op::ChangePassword{user, "hash-" + std::to_string(now_), NewSession(user)};
      }
      case 5:
        if (Pick(0, 3) == 0) return op::DeleteUserSessions{SomeOf(users_, "U-unknown")};
        return op::TouchSession{SomeOf(tokens_, "T-unknown"), now_};
      case 6:
      case 7: {
        const std::string name =
            Name({"general", "random", "dev", "ops", "b\u00fcro", "\u65e5\u672c"});
        const std::string id =
            Pick(0, 5) == 0 ? SomeOf(conversations_, "C0") : Id("C", &conversations_);
        return op::CreateConversation{Conversation{id, name, name, now_, now_, std::nullopt}};
      }
      case 8:
        return op::DeleteConversation{SomeOf(conversations_, "C-unknown"), now_};
      case 9:
      case 10:
        return op::DeleteMessage{SomeOf(messages_, "M-unknown"), now_};
      case 11:
        if (Pick(0, 3) == 0) {
          return op::Expire{now_ - 40 * kSecond, now_ - 60 * kSecond, now_};
        }
        [[fallthrough]];
      case 12:
        if (Pick(0, 3) == 0) {
          return op::Purge{now_ - 20 * kSecond, now_ - 100 * kSecond, now_ - 100 * kSecond,
                           now_ - 80 * kSecond};
        }
        [[fallthrough]];
      default: {
        op::SendMessage send;
        const std::string id = Pick(0, 15) == 0 ? SomeOf(messages_, "M0") : Id("M", &messages_);
        send.message = Message{id,
                               SomeOf(conversations_, "C-unknown"),
                               SomeOf(users_, "U0"),
                               "body " + std::to_string(Pick(0, 999)),
                               now_,
                               std::nullopt};
        if (Pick(0, 2) == 0) {
          send.idempotency_key = Name({"k1", "k2", "k3"});
          send.key_after = now_ - 30 * kSecond;
        }
        return send;
      }
    }
  }

  int Pick(int low, int high) { return std::uniform_int_distribution<int>(low, high)(random_); }

  std::string Name(std::initializer_list<const char*> names) {
    return *(names.begin() + Pick(0, static_cast<int>(names.size()) - 1));
  }

  // A new id with `prefix`, remembered in *ids.
  static std::string Id(const char* prefix, std::vector<std::string>* ids) {
    ids->push_back(prefix + std::to_string(ids->size()));
    return ids->back();
  }

  // Mostly one of `ids`, sometimes `otherwise` (an unknown one).
  std::string SomeOf(const std::vector<std::string>& ids, const std::string& otherwise) {
    if (ids.empty() || Pick(0, 9) == 0) return otherwise;
    return ids[static_cast<std::size_t>(Pick(0, static_cast<int>(ids.size()) - 1))];
  }

  User NewUser() {
    const std::string name = Name({"ann", "bob", "cy", "dee", "zo\u00eb", "\u00e9lodie"});
    const std::string id = "U" + std::to_string(users_.size());
    users_.push_back(id);
    return User{id, name, name, "hash-" + id, now_};
  }

  std::string NewToken() {
    tokens_.push_back("T" + std::to_string(tokens_.size()));
    return tokens_.back();
  }

  Session NewSession(const std::string& user) { return Session{NewToken(), user, now_, now_}; }

  std::mt19937 random_;
  Micros now_ = 1'700'000'000 * kSecond;
  std::vector<std::string> users_, tokens_, invitations_, conversations_, messages_;
};

// Everything `store` holds that `workload` can name: head, history and
// records, as text.
std::string Snapshot(Store& store, const Workload& workload);

}  // namespace quire::testing
