#include <mutex>
#include <vector>

#include "launchers/cuda_check.h"

namespace int8_hybrid_moe::detail {

int current_device_sm_count() {
  static std::mutex mu;
  static std::vector<int> cache;
  int dev = 0;
  I8H_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  if (dev >= static_cast<int>(cache.size())) cache.resize(dev + 1, 0);
  if (cache[dev] == 0)
    I8H_CUDA_CHECK(cudaDeviceGetAttribute(&cache[dev], cudaDevAttrMultiProcessorCount, dev));
  return cache[dev];
}

}  // namespace int8_hybrid_moe::detail
