#include "server/chat/event_json.h"

#include <nlohmann/json.hpp>

#include "server/chat/time_format.h"

namespace quire::chat {
namespace {

using storage::EventKind;

void AppendField(std::string& out, const char* name, const std::string& value) {
  out += ",\"";
  out += name;
  out += "\":";
  out += nlohmann::json(value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string EventJson(const storage::Event& e) {
  const char* type = "user";
  const char* verb = "created";
  switch (e.kind) {
    case EventKind::kUserCreated:
      break;
    case EventKind::kConversationCreated:
      type = "conversation";
      break;
    case EventKind::kConversationDeleted:
      type = "conversation";
      verb = "deleted";
      break;
    case EventKind::kMessageSent:
      type = "message";
      verb = "sent";
      break;
    case EventKind::kMessageDeleted:
      type = "message";
      verb = "deleted";
      break;
  }
  std::string out;
  out.reserve(160 + e.text.size());
  out += "{\"type\":\"";
  out += type;
  out += "\",\"event\":\"";
  out += verb;
  out += "\"";
  AppendField(out, "at", FormatTimestamp(e.at));
  switch (e.kind) {
    case EventKind::kUserCreated:
    case EventKind::kConversationCreated:
      AppendField(out, "id", e.id);
      AppendField(out, "name", e.text);
      break;
    case EventKind::kConversationDeleted:
      AppendField(out, "id", e.id);
      break;
    case EventKind::kMessageSent:
      AppendField(out, "conversation", e.conversation);
      AppendField(out, "sender", e.sender);
      AppendField(out, "id", e.id);
      AppendField(out, "body", e.text);
      break;
    case EventKind::kMessageDeleted:
      AppendField(out, "id", e.id);
      AppendField(out, "conversation", e.conversation);
      break;
  }
  if (e.deleted_at) AppendField(out, "deleted_at", FormatTimestamp(*e.deleted_at));
  out += "}";
  return out;
}

std::string EventFrame(const storage::Event& event) {
  std::string frame = "id: " + std::to_string(event.seq) + "\ndata: ";
  frame += EventJson(event);
  frame += "\n\n";
  return frame;
}

const std::string& HeartbeatFrame() {
  static const std::string frame = "data: {\"type\":\"heartbeat\"}\n\n";
  return frame;
}

}  // namespace quire::chat
