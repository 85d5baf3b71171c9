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

bool Engine::PrepareRetry(const Status&) {
  return false;
}

}  // namespace quire::storage
