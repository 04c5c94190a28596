#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "launchers/cuda_check.h"

namespace int8_hybrid_moe::detail {

namespace {

// One integer per device, computed once by `query(dev)` for the current device.
template <typename Query>
int cached_per_device(std::mutex& mu, std::vector<int>& cache, Query query) {
  int dev = 0;
  I8H_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  if (dev >= static_cast<int>(cache.size())) cache.resize(dev + 1, 0);
  if (cache[dev] == 0) cache[dev] = query(dev);
  return cache[dev];
}

int device_attribute(cudaDeviceAttr attr, int dev) {
  int v = 0;
  I8H_CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
  return v;
}

}  // namespace

int current_device_sm_count() {
  static std::mutex mu;
  static std::vector<int> cache;
  return cached_per_device(
      mu, cache, [](int dev) { return device_attribute(cudaDevAttrMultiProcessorCount, dev); });
}

int current_device_cc() {
  static std::mutex mu;
  static std::vector<int> cache;
  return cached_per_device(mu, cache, [](int dev) {
    return 10 * device_attribute(cudaDevAttrComputeCapabilityMajor, dev) +
           device_attribute(cudaDevAttrComputeCapabilityMinor, dev);
  });
}

void set_max_dynamic_smem_once(const void* kernel, int bytes) {
  static std::mutex mu;
  static std::set<std::pair<int, const void*>> done;
  int dev = 0;
  I8H_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  if (done.count({dev, kernel})) return;
  I8H_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.insert({dev, kernel});
}

}  // namespace int8_hybrid_moe::detail
