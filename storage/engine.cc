#include "storage/engine.h"

namespace quire::storage {

Status WriteTxn::GetConversations(std::span<const std::string> ids,
                                  std::vector<std::optional<Conversation>>* out) {
  out->clear();
  for (const std::string& id : ids) {
    Conversation c;
    Status s = records().GetConversation(id, &c);
    if (s.IsNotFound()) {
      out->emplace_back();
    } else if (s.ok()) {
      out->emplace_back(std::move(c));
    } else {
      return s;
    }
  }
  return Status::Ok();
}

Status WriteTxn::WriteSends(std::span<const Message> messages, std::span<const Event> events,
                            std::span<const Change<Conversation>> conversations) {
  if (messages.size() != events.size()) {
    return Status::Invalid("WriteSends: one sent event per message");
  }
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (Status s = InsertMessage(messages[i]); !s.ok()) return s;
    if (Status s = AppendEvent(events[i]); !s.ok()) return s;
  }
  for (const Change<Conversation>& change : conversations) {
    if (Status s = UpdateConversation(change); !s.ok()) return s;
  }
  return Status::Ok();
}

Status WriteTxn::RemoveMessagesWithEvents(std::span<const std::string> ids, std::int64_t* count,
                                          std::int64_t* highest) {
  for (const std::string& id : ids) {
    if (Status s = RemoveEventsOf(id, count, highest); !s.ok()) return s;
    if (Status s = RemoveMessage(id); !s.ok()) return s;
  }
  return Status::Ok();
}

Status WriteTxn::InsertRecords(const RecordBatch& batch) {
  auto each = [](const auto& records, auto insert) {
    for (const auto& record : records) {
      if (Status s = insert(record); !s.ok()) return s;
    }
    return Status::Ok();
  };
  Status s = each(batch.users, [this](const User& r) { return InsertUser(r); });
  if (s.ok())
    s = each(batch.conversations, [this](const Conversation& r) { return InsertConversation(r); });
  if (s.ok()) s = each(batch.messages, [this](const Message& r) { return InsertMessage(r); });
  if (s.ok()) s = each(batch.events, [this](const Event& r) { return AppendEvent(r); });
  if (s.ok())
    s = each(batch.idempotency, [this](const IdempotencyRecord& r) { return PutIdempotency(r); });
  if (s.ok()) s = each(batch.sessions, [this](const Session& r) { return InsertSession(r); });
  if (s.ok())
    s = each(batch.invitations, [this](const Invitation& r) { return InsertInvitation(r); });
  return s;
}

Status WriteTxn::RemoveEverything() {
  return Status::Invalid("this storage engine cannot be emptied (engine interface version 1)");
}

namespace {

Status CannotList() {
  return Status::Invalid(
      "this storage engine cannot list its records (engine interface version 1), so it cannot "
      "be migrated, restored or checked");
}

}  // namespace

Status RecordReader::ListUsers(const std::string&, std::size_t, std::vector<User>*) {
  return CannotList();
}
Status RecordReader::ListSessions(const std::string&, std::size_t, std::vector<Session>*) {
  return CannotList();
}
Status RecordReader::ListInvitations(const std::string&, std::size_t, std::vector<Invitation>*) {
  return CannotList();
}
Status RecordReader::ListConversations(const std::string&, std::size_t,
                                       std::vector<Conversation>*) {
  return CannotList();
}
Status RecordReader::ListMessages(const std::string&, std::size_t, std::vector<Message>*) {
  return CannotList();
}
Status RecordReader::ListIdempotency(const IdempotencyKey&, std::size_t,
                                     std::vector<IdempotencyRecord>*) {
  return CannotList();
}

bool Engine::PrepareRetry(const Status&) {
  return false;
}

Status Engine::Hold(EngineUse) {
  return Status::Ok();
}

Status Engine::Backup(const std::string&) {
  return Status::Invalid("this storage engine has no backup of its own; use the database's tools");
}

Status Engine::CheckIntegrity(std::vector<std::string>*) {
  return Status::Ok();
}

}  // namespace quire::storage
