// Host-side CUDA error handling shared by the launchers (internal).
#pragma once

#include <cuda_runtime_api.h>

#include "int8_hybrid_moe/common.h"

namespace int8_hybrid_moe::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* what, const char* file,
                                          int line) {
  throw CudaError(concat(what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                         ") at ", file, ":", line));
}

// Multiprocessor count of the current device (cached per device): sizes persistent grids.
int current_device_sm_count();
// Compute capability of the current device as 10 * major + minor (cached per device).
int current_device_cc();
// cudaFuncSetAttribute(MaxDynamicSharedMemorySize) once per kernel and device (it is a per-device
// attribute of the function; calling it on every launch would put it on the hot path).
void set_max_dynamic_smem_once(const void* kernel, int bytes);

}  // namespace int8_hybrid_moe::detail

#define I8H_CUDA_CHECK(expr)                                                          \
  do {                                                                                \
    cudaError_t i8h_e_ = (expr);                                                      \
    if (i8h_e_ != cudaSuccess)                                                        \
      ::int8_hybrid_moe::detail::throw_cuda_error(i8h_e_, #expr, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: surfaces launch-configuration errors immediately.
#define I8H_CHECK_LAUNCH(kernel_name)                                                         \
  do {                                                                                        \
    cudaError_t i8h_e_ = cudaGetLastError();                                                  \
    if (i8h_e_ != cudaSuccess)                                                                \
      ::int8_hybrid_moe::detail::throw_cuda_error(i8h_e_, "launch of " kernel_name, __FILE__, \
                                                  __LINE__);                                  \
  } while (0)
