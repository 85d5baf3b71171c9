// The frames of a server-sent event stream (text/event-stream), as the
// browser's EventSource reads them. Only the transport's framing lives here;
// what an event's data says (its JSON) is the chat layer's
// (server/chat/event_json.h).
//
// Thread-safe: plain functions of their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace quire::http {

// Appends the frame of an event with an id: "id: <id>\ndata: <data>\n\n".
// EventSource sends the last id it got back as Last-Event-ID when it
// reconnects. `append_data(out)` appends the data to `out` in place (no
// temporary string per event); it must be one line, without CR or LF, as
// JSON that escapes its control characters is.
template <class AppendData>
void AppendSseEvent(std::string& out, std::int64_t id, const AppendData& append_data) {
  out += "id: ";
  out += std::to_string(id);
  out += "\ndata: ";
  append_data(out);
  out += "\n\n";
}

// The frame of an event without an id: "data: <data>\n\n". It leaves the
// client's Last-Event-ID as it was (a heartbeat). `data` is one line.
std::string SseEventWithoutId(std::string_view data);

}  // namespace quire::http
