#include "server/fanout/resume_point.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace quire::fanout {
namespace {

using chat::Error;

// The error ParseResumePoint gives, or "" when it accepts.
std::string ParseError(const std::string* resume_point, const std::string* last_event_id) {
  chat::Result<std::int64_t> r = ParseResumePoint(resume_point, last_event_id);
  if (r.ok()) return "";
  EXPECT_EQ(r.error().kind, Error::Kind::kBadRequest);
  return r.error().message;
}

TEST(ResumePoint, TheParameterIsRequiredAndANonNegativeInteger) {
  const std::string five = "5";
  EXPECT_EQ(ParseResumePoint(&five, nullptr).value(), 5);
  EXPECT_EQ(ParseError(nullptr, nullptr), "resume_point is required");
  for (const std::string bad : {"", "-1", "+1", " 1", "1 ", "1.0", "0x1", "abc",
                                "9223372036854775808", "12345678901234567890"}) {
    EXPECT_EQ(ParseError(&bad, nullptr), "resume_point must be a non-negative integer") << bad;
  }
  const std::string largest = "9223372036854775807";
  EXPECT_EQ(ParseResumePoint(&largest, nullptr).value(), INT64_MAX);
}

TEST(ResumePoint, ANonEmptyLastEventIdWinsButTheParameterIsStillRequired) {
  const std::string five = "5", seven = "7", empty, bad = "x";
  EXPECT_EQ(ParseResumePoint(&five, &seven).value(), 7);
  EXPECT_EQ(ParseResumePoint(&five, &empty).value(), 5) << "an empty Last-Event-ID is ignored";
  EXPECT_EQ(ParseError(&five, &bad), "Last-Event-ID must be a non-negative integer");
  EXPECT_EQ(ParseError(nullptr, &seven), "resume_point is required");
  EXPECT_EQ(ParseError(&bad, &seven), "resume_point must be a non-negative integer");
}

TEST(ResumePoint, AStartBetweenThePurgeHorizonAndTheHeadIsAccepted) {
  const storage::Head head{/*last_seq=*/10, /*purged_through=*/4};
  for (std::int64_t start : {4, 5, 10}) EXPECT_FALSE(CheckResumePoint(start, head)) << start;
  EXPECT_FALSE(CheckResumePoint(0, storage::Head{})) << "an empty store resumes from 0";
}

TEST(ResumePoint, AStartAheadOfTheHeadIsABadRequest) {
  auto refused = CheckResumePoint(11, storage::Head{10, 4});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->kind, Error::Kind::kBadRequest);
  EXPECT_EQ(refused->message, "resume_point is newer than the newest event; boot again");
}

TEST(ResumePoint, AStartBelowThePurgeHorizonIsGone) {
  for (std::int64_t start : {0, 3}) {
    auto refused = CheckResumePoint(start, storage::Head{10, 4});
    ASSERT_TRUE(refused) << start;
    EXPECT_EQ(refused->kind, Error::Kind::kGone);
    EXPECT_EQ(refused->message, "events after resume_point have been purged; boot again");
  }
  EXPECT_TRUE(LostToPurge(3, 4));
  EXPECT_FALSE(LostToPurge(4, 4)) << "events up to the horizon were delivered";
}

TEST(ResumePoint, AStartInsideABreakInHistoryIsGoneAndEitherSideOfItIsAccepted) {
  storage::Head head;
  head.last_seq = 1'000'000'000'120;
  head.lost_after = 100;
  head.lost_through = 1'000'000'000'100;
  for (std::int64_t start : std::initializer_list<std::int64_t>{101, 150, 999'999'999'999}) {
    auto refused = CheckResumePoint(start, head);
    ASSERT_TRUE(refused) << start;
    EXPECT_EQ(refused->kind, Error::Kind::kGone);
  }
  for (std::int64_t start :
       std::initializer_list<std::int64_t>{0, 99, 100, 1'000'000'000'100, 1'000'000'000'120}) {
    EXPECT_FALSE(CheckResumePoint(start, head)) << start;
  }
}

TEST(ResumePoint, BootResumesFromTheHeadEvenWhenItsEventWasPurged) {
  EXPECT_EQ(BootResumePoint(storage::Head{10, 10}), 10);
  EXPECT_EQ(BootResumePoint(storage::Head{}), 0);
}

std::vector<storage::Event> Events(std::vector<std::int64_t> seqs) {
  std::vector<storage::Event> events;
  for (std::int64_t seq : seqs) {
    storage::Event e;
    e.seq = seq;
    events.push_back(e);
  }
  return events;
}

TEST(ResumePoint, AFullPageEndsAtItsLastEventAShortOneAtTheTarget) {
  EXPECT_FALSE(IsLastPage(3, 3));
  EXPECT_TRUE(IsLastPage(2, 3));
  EXPECT_EQ(CursorAfterPage(0, 100, Events({2, 5, 9}), 3), 9);
  EXPECT_EQ(CursorAfterPage(0, 100, Events({2, 5}), 3), 100) << "the rest was purged";
  EXPECT_EQ(CursorAfterPage(9, 100, Events({}), 3), 100);
}

}  // namespace
}  // namespace quire::fanout
