// CPU tests of the card monitor's summary and names (tools/card_monitor.h); its JSON form is in
// test_bench_cli.cpp, its sampling on a GPU in tests/gpu/test_card_monitor.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "card_monitor.h"

namespace {

using namespace i8h_tools;

std::vector<CardSample> random_samples(std::mt19937& rng, int n) {
  std::uniform_int_distribution<unsigned> mhz(900, 1980);
  std::uniform_int_distribution<int> bit(0, 8);
  std::vector<CardSample> v(n);
  for (CardSample& c : v) {
    c.sm_mhz = mhz(rng);
    c.reasons = uint64_t(1) << bit(rng);
  }
  return v;
}

TEST(CardMonitor, SummaryMatchesTheSamples) {
  std::mt19937 rng(std::random_device{}());
  for (int n : {1, 2, 3, 10, 101}) {
    const std::vector<CardSample> v = random_samples(rng, n);
    const CardState s = summarize_card_samples(v, 1980);
    std::vector<unsigned> mhz;
    uint64_t all = 0;
    for (const CardSample& c : v) {
      mhz.push_back(c.sm_mhz);
      all |= c.reasons;
    }
    std::sort(mhz.begin(), mhz.end());
    EXPECT_TRUE(s.known);
    EXPECT_EQ(s.samples, n);
    EXPECT_EQ(s.sm_mhz_min, mhz.front());
    EXPECT_EQ(s.sm_mhz_max, mhz.back());
    // The median is a sample at least half of the samples reach from each side.
    const auto below =
        std::count_if(mhz.begin(), mhz.end(), [&](unsigned m) { return m <= s.sm_mhz_median; });
    const auto above =
        std::count_if(mhz.begin(), mhz.end(), [&](unsigned m) { return m >= s.sm_mhz_median; });
    EXPECT_GE(2 * below, n);
    EXPECT_GE(2 * above, n);
    EXPECT_NE(std::find(mhz.begin(), mhz.end(), s.sm_mhz_median), mhz.end());
    EXPECT_EQ(s.limits, all & ~kClockLimitGpuIdle) << "idle is dropped, every other bit is kept";
    EXPECT_EQ(s.sm_mhz_card_max, 1980u);
  }
}

TEST(CardMonitor, NoSamplesIsKnownButEmpty) {
  const CardState s = summarize_card_samples({}, 0);
  EXPECT_TRUE(s.known);
  EXPECT_EQ(s.samples, 0);
  EXPECT_EQ(s.limits, 0u);
  EXPECT_EQ(describe_sm_clock(s), "-");
}

TEST(CardMonitor, LimitNames) {
  EXPECT_EQ(clock_limit_names(0), "none");
  EXPECT_EQ(clock_limit_names(kClockLimitSwPowerCap), "sw-power-cap");
  EXPECT_EQ(clock_limit_names(kClockLimitSwPowerCap | kClockLimitHwThermal),
            "sw-power-cap+hw-thermal");
  EXPECT_EQ(clock_limit_names(kClockLimitGpuIdle | kClockLimitAppClocks), "idle+app-clocks");
  // Bits the table does not name still show, in hex.
  EXPECT_EQ(clock_limit_names(kClockLimitSwThermal | (uint64_t(1) << 40)),
            "sw-thermal+0x10000000000");
}

TEST(CardMonitor, DescribeClock) {
  CardState s;
  EXPECT_EQ(describe_sm_clock(s), "n/a");  // unknown
  s = summarize_card_samples({{1755, 0}, {1650, 0}, {1980, 0}}, 1980);
  EXPECT_EQ(describe_sm_clock(s), "1755 (1650)");
}

TEST(CardMonitor, UnknownDeviceSaysWhy) {
  // A PCI id no machine has: without NVML (CPU machines) or with it, the monitor is unavailable,
  // samples nothing, and says why.
  CardMonitor m("ffff:ff:1f.7");
  EXPECT_FALSE(m.available());
  m.begin();
  const CardState& s = m.end();
  EXPECT_FALSE(s.known);
  EXPECT_FALSE(s.why_unknown.empty());
  EXPECT_EQ(describe_sm_clock(s), "n/a");
}

}  // namespace
