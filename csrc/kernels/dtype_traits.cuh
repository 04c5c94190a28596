// Device-side mapping of the public DType to CUDA element types (internal).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "int8_hybrid_moe/common.h"

namespace int8_hybrid_moe {

template <DType T>
struct DTypeTraits;
template <>
struct DTypeTraits<DType::kBFloat16> {
  using type = __nv_bfloat16;
  __device__ __forceinline__ static float to_float(type v) { return __bfloat162float(v); }
  __device__ __forceinline__ static type from_float(float v) { return __float2bfloat16_rn(v); }
};
template <>
struct DTypeTraits<DType::kFloat16> {
  using type = __half;
  __device__ __forceinline__ static float to_float(type v) { return __half2float(v); }
  __device__ __forceinline__ static type from_float(float v) { return __float2half_rn(v); }
};

}  // namespace int8_hybrid_moe

// I8H_DISPATCH_DTYPE(dtype, T, ...): runs the body with `T` = the DType constant.
#define I8H_DISPATCH_DTYPE(dtype_value, T, ...)                                   \
  do {                                                                            \
    if ((dtype_value) == ::int8_hybrid_moe::DType::kBFloat16) {                   \
      constexpr ::int8_hybrid_moe::DType T = ::int8_hybrid_moe::DType::kBFloat16; \
      __VA_ARGS__;                                                                \
    } else {                                                                      \
      constexpr ::int8_hybrid_moe::DType T = ::int8_hybrid_moe::DType::kFloat16;  \
      __VA_ARGS__;                                                                \
    }                                                                             \
  } while (0)
