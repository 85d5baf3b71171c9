#include "server/chat/time_format.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace quire::chat {
namespace {

using storage::Micros;

TEST(FormatTimestampTest, Examples) {
  EXPECT_EQ(FormatTimestamp(1750346080431627), "2025-06-19T15:14:40.431627Z");
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatTimestamp(1), "1970-01-01T00:00:00.000001Z");
  EXPECT_EQ(FormatTimestamp(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(FormatTimestamp(-1000000), "1969-12-31T23:59:59.000000Z");
  EXPECT_EQ(FormatTimestamp(951782400000000), "2000-02-29T00:00:00.000000Z");  // leap day
  EXPECT_EQ(FormatTimestamp(4107542399999999), "2100-02-28T23:59:59.999999Z");
  EXPECT_EQ(FormatTimestamp(4107542400000000), "2100-03-01T00:00:00.000000Z");  // not leap
  EXPECT_EQ(FormatTimestamp(-2208988800000000), "1900-01-01T00:00:00.000000Z");
}

TEST(FormatTimestampTest, ClampsToFourDigitYears) {
  EXPECT_EQ(FormatTimestamp(std::numeric_limits<Micros>::max()), "9999-12-31T23:59:59.999999Z");
  EXPECT_EQ(FormatTimestamp(std::numeric_limits<Micros>::min()), "0000-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatTimestamp(-62167219200000000), "0000-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatTimestamp(253402300799999999), "9999-12-31T23:59:59.999999Z");
}

TEST(FormatTimestampTest, AppendKeepsWhatIsThere) {
  std::string out = "at ";
  AppendTimestamp(out, 1750346080431627);
  EXPECT_EQ(out, "at 2025-06-19T15:14:40.431627Z");
}

TEST(ParseDurationTest, Units) {
  EXPECT_EQ(ParseDuration("500ms"), Micros{500000});
  EXPECT_EQ(ParseDuration("1ms"), Micros{1000});
  EXPECT_EQ(ParseDuration("30s"), Micros{30000000});
  EXPECT_EQ(ParseDuration("15m"), Micros{900000000});
  EXPECT_EQ(ParseDuration("24h"), Micros{86400000000});
  EXPECT_EQ(ParseDuration("7d"), Micros{604800000000});
  EXPECT_EQ(ParseDuration("90d"), Micros{90LL * 86400 * 1000000});
  EXPECT_EQ(ParseDuration("007s"), Micros{7000000});
}

TEST(ParseDurationTest, Rejects) {
  for (const char* bad :
       {"",    "0s",  "0ms", "00d", "-1s", "+1s",  "1.5h", "10",  "10x",  "s",   "ms",
        " 1s", "1s ", "1 s", "1S",  "1H",  "1sec", "1us",  "1hm", "1d1h", "1e3s"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(ParseDurationTest, Overflow) {
  // 9223372036854775807 us is the most a Micros holds.
  EXPECT_EQ(ParseDuration("9223372036854ms"), Micros{9223372036854000});
  EXPECT_EQ(ParseDuration("9223372036854775s"), std::nullopt);
  EXPECT_EQ(ParseDuration("106751991d"), Micros{106751991LL * 86400 * 1000000});
  EXPECT_EQ(ParseDuration("106751992d"), std::nullopt);
  EXPECT_EQ(ParseDuration("9223372036854775807ms"), std::nullopt);
  EXPECT_EQ(ParseDuration("99999999999999999999999s"), std::nullopt);
}

}  // namespace
}  // namespace quire::chat
