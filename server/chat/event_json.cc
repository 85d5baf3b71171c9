#include "server/chat/event_json.h"

#include <cstdint>
#include <cstring>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/chat/names.h"
#include "server/chat/time_format.h"

namespace quire::chat {
namespace {

using storage::EventKind;

// Eight bytes at a time ("SWAR"): stored text is mostly ASCII without
// anything to escape, and boot renders hundreds of megabytes of it.
constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;

std::uint64_t Load8(const char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Nonzero when some byte of `w` is zero (exact as to whether one is).
constexpr std::uint64_t HasZeroByte(std::uint64_t w) {
  return (w - kOnes) & ~w & kHighBits;
}

// Nonzero when some byte of `w` is below 0x20, '"' or '\\'.
constexpr std::uint64_t NeedsEscape(std::uint64_t w) {
  return ((w - kOnes * 0x20) & ~w & kHighBits) | HasZeroByte(w ^ (kOnes * '"')) |
         HasZeroByte(w ^ (kOnes * '\\'));
}

// Appends `value` as a JSON string, byte for byte what nlohmann::json's
// dump(ensure_ascii = false) writes: UTF-8 kept as it is; '"', '\\' and
// control characters escaped. Boot renders millions of these, and going
// through a json value (a copy, then the generic serializer) was a quarter
// of its time. Stored text is valid UTF-8 (input is checked); anything else
// goes through nlohmann's replacement of bad bytes by U+FFFD.
void AppendJsonString(std::string& out, std::string_view value) {
  if (!IsValidUtf8(value)) {
    out += nlohmann::json(std::string(value))
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < value.size(); ++i) {
    while (value.size() - i >= 8 && NeedsEscape(Load8(value.data() + i)) == 0) i += 8;
    if (i == value.size()) break;
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(value.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(esc, sizeof esc);
      }
    }
  }
  out.append(value.data() + run, value.size() - run);
  out += '"';
}

void AppendField(std::string& out, const char* name, std::string_view value) {
  out += ",\"";
  out += name;
  out += "\":";
  AppendJsonString(out, value);
}

void AppendTimeField(std::string& out, const char* name, storage::Micros t) {
  out += ",\"";
  out += name;
  out += "\":\"";
  AppendTimestamp(out, t);
  out += '"';
}

}  // namespace

void AppendEventJson(std::string& out, const storage::Event& e) {
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
  out += "{\"type\":\"";
  out += type;
  out += "\",\"event\":\"";
  out += verb;
  out += "\"";
  AppendTimeField(out, "at", e.at);
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
  if (e.deleted_at) AppendTimeField(out, "deleted_at", *e.deleted_at);
  out += "}";
}

std::string MessageJson(const storage::Message& m) {
  std::string out = "{\"id\":";
  AppendJsonString(out, m.id);
  AppendField(out, "conversation", m.conversation);
  AppendField(out, "sender", m.sender);
  AppendField(out, "body", m.body);
  AppendTimeField(out, "at", m.at);
  out += "}";
  return out;
}

std::string EventJson(const storage::Event& event) {
  std::string out;
  AppendEventJson(out, event);
  return out;
}

}  // namespace quire::chat
