#include "tests/support/workload.h"

#include <gtest/gtest.h>

#include <sstream>

namespace quire::testing {

using namespace quire::storage;
namespace {

template <typename Record, typename Describe>
std::string Read(Status s, const Record& record, Describe describe) {
  if (!s.ok()) return CodeName(s.code());
  return describe(record);
}

}  // namespace

std::string Snapshot(Store& store, const Workload& workload) {
  std::ostringstream out;
  Head head;
  EXPECT_TRUE(store.GetHead(&head).ok());
  out << "head " << head.last_seq << " purged " << head.purged_through << "\n";
  std::vector<Event> events;
  EXPECT_TRUE(store.ReadEvents(0, head.last_seq, 1'000'000, &events).ok());
  for (const Event& e : events) {
    out << "event " << e.seq << " " << static_cast<int>(e.kind) << " " << e.at << " " << e.id << " "
        << e.conversation << " " << e.sender << " " << e.text << " " << e.deleted_at.value_or(-1)
        << "\n";
  }
  for (const std::string& id : workload.users()) {
    User u;
    out << "user " << id << " " << Read(store.GetUser(id, &u), u, [](const User& u) {
      return u.name + "/" + u.canonical + "/" + u.password_hash + "/" +
             std::to_string(u.created_at);
    }) << "\n";
  }
  for (const std::string& token : workload.tokens()) {
    Session s;
    out << "session " << token << " "
        << Read(store.FindSession(token, &s), s,
                [](const Session& s) {
                  return s.user_id + "/" + std::to_string(s.created_at) + "/" +
                         std::to_string(s.last_used);
                })
        << "\n";
  }
  for (const std::string& id : workload.invitations()) {
    Invitation i;
    out << "invitation " << id << " "
        << Read(store.GetInvitation(id, &i), i,
                [](const Invitation& i) {
                  return i.issuer_id + "/" + std::to_string(i.issued_at) + "/" +
                         std::to_string(i.used);
                })
        << "\n";
  }
  for (const std::string& id : workload.conversations()) {
    Conversation c;
    out << "conversation " << id << " "
        << Read(store.GetConversation(id, &c), c,
                [](const Conversation& c) {
                  return c.name + "/" + c.canonical + "/" + std::to_string(c.created_at) + "/" +
                         std::to_string(c.last_activity) + "/" +
                         std::to_string(c.deleted_at.value_or(-1));
                })
        << "\n";
  }
  for (const std::string& id : workload.messages()) {
    Message m;
    out << "message " << id << " " << Read(store.GetMessage(id, &m), m, [](const Message& m) {
      return m.conversation + "/" + m.sender + "/" + m.body + "/" + std::to_string(m.at) + "/" +
             std::to_string(m.deleted_at.value_or(-1));
    }) << "\n";
  }
  return out.str();
}

}  // namespace quire::testing
