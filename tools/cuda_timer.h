// CUDA-event timing shared by the benchmark tools: warm-up, then one event pair around each timed
// iteration; optionally a cold-L2 flush before each iteration (outside the events) or a host sync
// after each one; optionally the card's clock sampled during the timed iterations (CardMonitor).
// The tools keep their own error reporting (throw or exit) through a CudaCheck.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "card_monitor.h"

namespace i8h_tools {

// Called with every CUDA status; `what` names the call. Each tool passes its own (throw / exit).
using CudaCheck = void (*)(cudaError_t e, const char* what);

// Owning set of CUDA events.
class CudaEvents {
 public:
  CudaEvents(size_t n, CudaCheck check) : ev_(n, nullptr) {
    for (auto& e : ev_) check(cudaEventCreate(&e), "cudaEventCreate");
  }
  ~CudaEvents() {
    for (auto e : ev_)
      if (e) cudaEventDestroy(e);
  }
  CudaEvents(const CudaEvents&) = delete;
  CudaEvents& operator=(const CudaEvents&) = delete;
  cudaEvent_t operator[](size_t i) const { return ev_[i]; }

 private:
  std::vector<cudaEvent_t> ev_;
};

inline float elapsed_ms(cudaEvent_t a, cudaEvent_t b, CudaCheck check) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  return ms;
}

struct TimerConfig {
  cudaStream_t stream = nullptr;  // where the events are recorded (null: the legacy stream)
  int warmup = 0, iters = 1;
  // Host sync after the warm-up and after each timed iteration: iterations never overlap.
  bool sync_each_iteration = false;
  // Cold L2: before timed iteration i, memset `flush` to (i & 0xFF), outside the events.
  void* flush = nullptr;
  size_t flush_bytes = 0;
  // Samples the card from the first timed iteration's enqueue to the end of the last one; read
  // the summary from monitor->last() afterwards.
  CardMonitor* monitor = nullptr;
};

// A monitor of CUDA device `dev` (unavailable, with the reason, when NVML cannot see it).
inline std::unique_ptr<CardMonitor> card_monitor_for(int dev) {
  char bus[32] = {};
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    bus[0] = 0;
  }
  return std::make_unique<CardMonitor>(bus);
}

inline void flush_l2(const TimerConfig& c, int i, CudaCheck check) {
  if (c.flush_bytes)
    check(cudaMemsetAsync(c.flush, i & 0xFF, c.flush_bytes, c.stream),
          "cudaMemsetAsync (L2 flush)");
}

// fn(i) runs for warm-up i = 0..warmup-1, then timed i = 0..iters-1. Returns per-iteration ms.
inline std::vector<float> time_iterations_ms(const TimerConfig& c,
                                             const std::function<void(int)>& fn, CudaCheck check) {
  for (int i = 0; i < c.warmup; ++i) fn(i);
  if (c.sync_each_iteration) check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  CudaEvents ev(2 * static_cast<size_t>(c.iters), check);
  if (c.monitor) c.monitor->begin();
  for (int i = 0; i < c.iters; ++i) {
    flush_l2(c, i, check);
    check(cudaEventRecord(ev[2 * i], c.stream), "cudaEventRecord");
    fn(i);
    check(cudaEventRecord(ev[2 * i + 1], c.stream), "cudaEventRecord");
    if (c.sync_each_iteration) check(cudaEventSynchronize(ev[2 * i + 1]), "cudaEventSynchronize");
  }
  check(cudaStreamSynchronize(c.stream), "cudaStreamSynchronize");
  if (c.monitor) c.monitor->end();
  std::vector<float> ms(static_cast<size_t>(c.iters));
  for (int i = 0; i < c.iters; ++i) ms[i] = elapsed_ms(ev[2 * i], ev[2 * i + 1], check);
  return ms;
}

// Sorted element n/2 (the upper of the two middle ones for even n). bench_int8_hybrid_moe reports
// the interpolated median of summarize_times instead (bench_cli.h).
inline float upper_median(std::vector<float> ms) {
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace i8h_tools
