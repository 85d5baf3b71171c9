#include "server/http/sse_frame.h"

namespace quire::http {

std::string SseEventWithoutId(std::string_view data) {
  std::string out = "data: ";
  out += data;
  out += "\n\n";
  return out;
}

}  // namespace quire::http
