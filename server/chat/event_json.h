// The JSON form of an event, as boot lists it and the stream sends it (the
// stream's SSE framing around it is server/http/sse_frame.h), and of a sent
// message. One renderer, so boot and stream can never disagree. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "storage/types.h"

namespace quire::chat {

// {"type":"message","event":"sent","at":"…","conversation":"C…","sender":"U…","id":"M…","body":"…"}
// A tombstoned created/sent event also carries "deleted_at".
std::string EventJson(const storage::Event& event);
// The same, appended to `out` (no temporary string per event).
void AppendEventJson(std::string& out, const storage::Event& event);

// {"id":"M…","conversation":"C…","sender":"U…","body":"…","at":"…"}: a
// message as the 202 of a send answers it, written by the same code as the
// events so that both spell a message's fields alike.
std::string MessageJson(const storage::Message& message);

// The stream's heartbeat, sent on a stream that had nothing to send for the
// heartbeat interval.
inline constexpr std::string_view kHeartbeatJson = "{\"type\":\"heartbeat\"}";

}  // namespace quire::chat
