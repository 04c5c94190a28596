// Build configuration for reports. A .cu file so nvcc's __CUDA_ARCH_LIST__ (the architectures of
// this very build) and the CUTLASS headers of the build are visible without extra definitions.
#include <cuda_runtime_api.h>
#include <cutlass/version.h>

#include "int8_hybrid_moe/moe.h"

// Variadic: __CUDA_ARCH_LIST__ is a comma-separated list when several archs are built.
#define I8H_STRINGIFY_IMPL(...) #__VA_ARGS__
#define I8H_STRINGIFY(...) I8H_STRINGIFY_IMPL(__VA_ARGS__)

namespace int8_hybrid_moe {

BuildInfo build_info() {
  BuildInfo b{};
#ifdef __CUDA_ARCH_LIST__
  b.cuda_archs = I8H_STRINGIFY(__CUDA_ARCH_LIST__);
#else
  b.cuda_archs = "unknown";
#endif
  b.cutlass_version = I8H_STRINGIFY(CUTLASS_MAJOR) "." I8H_STRINGIFY(
      CUTLASS_MINOR) "." I8H_STRINGIFY(CUTLASS_PATCH);
  b.cuda_version = CUDART_VERSION;
  return b;
}

}  // namespace int8_hybrid_moe
