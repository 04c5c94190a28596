// Unpermute: out[t, :] = sum_j w[t, j] * y[row(t, j), :] in fp32, j ascending (internal).
#pragma once

#include <cstdint>

#include "kernels/activation/packed16.cuh"

namespace int8_hybrid_moe::kernels {

// One thread per VEC-element group of an output row; the top_k rows of a token are read with
// independent loads (the loop is unrolled a little to keep several in flight).
template <DType T, int VEC>
__global__ void unpermute_kernel(const uint16_t* __restrict__ y, const float* __restrict__ weights,
                                 const int32_t* __restrict__ token_slot_to_permuted, int64_t M,
                                 int top_k, int64_t K, uint16_t* __restrict__ out) {
  const int64_t groups_per_row = K / VEC;
  const int64_t total = M * groups_per_row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / groups_per_row;
    const int64_t col = (i - t * groups_per_row) * VEC;
    float acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = 0.0f;
    const int32_t* rows = token_slot_to_permuted + t * top_k;
    const float* w = weights + t * top_k;
#pragma unroll 4
    for (int j = 0; j < top_k; ++j) {
      const int32_t r = rows[j];
      if (r < 0) continue;
      const float wj = w[j];
      Packed16<VEC> x;
      x.load(y + int64_t(r) * K + col);
#pragma unroll
      for (int e = 0; e < VEC; ++e)
        acc[e] = __fadd_rn(acc[e], __fmul_rn(wj, bits_to_float<T>(x.get(e))));
    }
    Packed16<VEC> o;
#pragma unroll
    for (int e = 0; e < VEC; ++e) o.set(e, float_to_bits<T>(acc[e]));
    o.store(out + t * K + col);
  }
}

}  // namespace int8_hybrid_moe::kernels
