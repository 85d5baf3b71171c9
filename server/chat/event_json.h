// The JSON form of an event, as boot lists it and the stream sends it.
// One renderer, so boot and stream can never disagree. Thread-safe.
#pragma once

#include <string>

#include "storage/types.h"

namespace quire::chat {

// {"type":"message","event":"sent","at":"…","conversation":"C…","sender":"U…","id":"M…","body":"…"}
// A tombstoned created/sent event also carries "deleted_at".
std::string EventJson(const storage::Event& event);
// The same, appended to `out` (no temporary string per event).
void AppendEventJson(std::string& out, const storage::Event& event);

// The stream's frame of an event: "id: <seq>\ndata: <json>\n\n".
std::string EventFrame(const storage::Event& event);
void AppendEventFrame(std::string& out, const storage::Event& event);

// The heartbeat frame: "data: {\"type\":\"heartbeat\"}\n\n".
const std::string& HeartbeatFrame();

}  // namespace quire::chat
