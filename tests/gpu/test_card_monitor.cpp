// GPU test of the benchmarks' card monitor (tools/card_monitor.h): on a machine with a GPU, NVML
// must see the card, and a timed loop must come back with samples of a running clock.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda_timer.h"
#include "gpu/gpu_test_util.h"

namespace {

void check_cuda(cudaError_t e, const char* what) {
  ASSERT_EQ(e, cudaSuccess) << what << ": " << cudaGetErrorString(e);
}

TEST(CardMonitor, SamplesTheCardDuringATimedLoop) {
  I8H_REQUIRE_GPU();
  int dev = 0;
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  const auto monitor = i8h_tools::card_monitor_for(dev);
  // The driver ships NVML wherever it runs a GPU: a missing one is a failure here, not a skip.
  ASSERT_TRUE(monitor->available()) << monitor->end().why_unknown;

  const size_t bytes = size_t(512) << 20;
  void* buf = nullptr;
  ASSERT_EQ(cudaMalloc(&buf, bytes), cudaSuccess);
  i8h_tools::TimerConfig tc;
  tc.warmup = 5;
  // About 0.2 s of memsets on an H100: many 1 ms samples even if the sampler's first NVML calls
  // are slow (100 launches, about 20 ms, once gave a single sample).
  tc.iters = 1000;
  tc.monitor = monitor.get();
  const std::vector<float> ms = i8h_tools::time_iterations_ms(
      tc, [&](int i) { check_cuda(cudaMemsetAsync(buf, i & 0xFF, bytes), "cudaMemsetAsync"); },
      check_cuda);
  ASSERT_EQ(cudaFree(buf), cudaSuccess);
  ASSERT_EQ(ms.size(), 1000u);

  const i8h_tools::CardState& s = monitor->last();
  ASSERT_TRUE(s.known) << s.why_unknown;
  EXPECT_GE(s.samples, 10);
  EXPECT_GT(s.sm_mhz_min, 0u);
  EXPECT_LE(s.sm_mhz_min, s.sm_mhz_median);
  EXPECT_LE(s.sm_mhz_median, s.sm_mhz_max);
  if (s.sm_mhz_card_max > 0) {
    EXPECT_LE(s.sm_mhz_max, s.sm_mhz_card_max);
  }
  EXPECT_EQ(s.limits & i8h_tools::kClockLimitGpuIdle, 0u);
  // A second loop starts from no samples: its count is its own.
  monitor->begin();
  const i8h_tools::CardState& idle = monitor->end();
  EXPECT_TRUE(idle.known);
  EXPECT_LE(idle.samples, 1);
}

}  // namespace
