#include "server/http/sse_frame.h"

#include <gtest/gtest.h>

#include <string>

namespace quire::http {
namespace {

void AppendHello(std::string& out) {
  out += "{\"hello\":1}";
}

TEST(SseFrame, AnEventWithAnIdIsItsIdLineThenItsDataLineThenABlankLine) {
  std::string out;
  AppendSseEvent(out, 42, AppendHello);
  EXPECT_EQ(out, "id: 42\ndata: {\"hello\":1}\n\n");
}

TEST(SseFrame, EventsAppendBackToBackAfterWhatIsThere) {
  std::string out = "x";
  AppendSseEvent(out, 0, AppendHello);
  AppendSseEvent(out, 9007199254740993, AppendHello);
  EXPECT_EQ(out, "xid: 0\ndata: {\"hello\":1}\n\nid: 9007199254740993\ndata: {\"hello\":1}\n\n");
}

TEST(SseFrame, AnEventWithoutAnIdHasOnlyItsDataLine) {
  EXPECT_EQ(SseEventWithoutId("{\"type\":\"heartbeat\"}"), "data: {\"type\":\"heartbeat\"}\n\n");
}

}  // namespace
}  // namespace quire::http
