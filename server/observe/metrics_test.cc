#include "server/observe/metrics.h"

#include <gtest/gtest.h>

#include "server/observe/address_range.h"

namespace quire::observe {
namespace {

TEST(MetricSet, RendersCountersHistogramsAndReadValuesInThePrometheusTextFormat) {
  MetricSet m;
  m.AddCounterFamily("q_requests_total", "Requests", {"route", "status"});
  m.AddCounterFamily("q_failures_total", "Failures", {});
  m.AddHistogramFamily("q_seconds", "Latency", {0.1, 1}, "route");
  m.AddCallback("q_open", "Open things", "gauge", [] { return 3.0; });
  m.Add("q_requests_total", {"/a", "200"});
  m.Add("q_requests_total", {"/a", "200"}, 2);
  m.Add("q_requests_total", {"/b \"x\"", "404"});
  m.Observe("q_seconds", "/a", 0.05);
  m.Observe("q_seconds", "/a", 0.5);
  m.Observe("q_seconds", "/a", 5);
  EXPECT_EQ(m.Render(),
            "# HELP q_requests_total Requests\n"
            "# TYPE q_requests_total counter\n"
            "q_requests_total{route=\"/a\",status=\"200\"} 3\n"
            "q_requests_total{route=\"/b \\\"x\\\"\",status=\"404\"} 1\n"
            "# HELP q_failures_total Failures\n"
            "# TYPE q_failures_total counter\n"
            "q_failures_total 0\n"
            "# HELP q_seconds Latency\n"
            "# TYPE q_seconds histogram\n"
            "q_seconds_bucket{route=\"/a\",le=\"0.10000000000000001\"} 1\n"
            "q_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"
            "q_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"
            "q_seconds_sum{route=\"/a\"} 5.5499999999999998\n"
            "q_seconds_count{route=\"/a\"} 3\n"
            "# HELP q_open Open things\n"
            "# TYPE q_open gauge\n"
            "q_open 3\n");
}

TEST(AddressRange, MatchesByPrefixInBothFamilies) {
  const auto net = AddressRange::Parse("10.1.0.0/16");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->Contains("10.1.200.3"));
  EXPECT_TRUE(net->Contains("::ffff:10.1.0.9")) << "IPv4-mapped, as a dual-stack listener sees it";
  EXPECT_FALSE(net->Contains("10.2.0.1"));
  EXPECT_FALSE(net->Contains("not an address"));
  const auto v6 = AddressRange::Parse("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->Contains("2001:db8:1::5"));
  EXPECT_FALSE(v6->Contains("2001:db9::5"));
  EXPECT_TRUE(AddressRange::Parse("192.0.2.7")->Contains("192.0.2.7"));
  EXPECT_FALSE(AddressRange::Parse("192.0.2.7")->Contains("192.0.2.8"));
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "x/8", "10.0.0.0/-1"}) {
    EXPECT_FALSE(AddressRange::Parse(bad)) << bad;
  }
  EXPECT_TRUE(IsLoopback("127.0.0.1"));
  EXPECT_TRUE(IsLoopback("127.9.9.9"));
  EXPECT_TRUE(IsLoopback("::1"));
  EXPECT_TRUE(IsLoopback("::ffff:127.0.0.1"));
  EXPECT_FALSE(IsLoopback("10.0.0.1"));
}

}  // namespace
}  // namespace quire::observe
