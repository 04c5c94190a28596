// SiLU-and-mul: out[r, i] = silu(x[r, i]) * x[r, N + i], fp32 math, rounded to the dtype.
#pragma once

#include <cstdint>

#include "kernels/activation/packed16.cuh"
#include "kernels/quantization/exact_div.cuh"

namespace int8_hybrid_moe::kernels {

// The one definition of the SiLU product shared by the plain and the fused (SiLU + quant)
// kernels, so both store bit-identical values. IEEE division and expf (not __expf) as the
// format spec demands; explicit _rn intrinsics keep the compiler from contracting.
template <DType T>
__device__ __forceinline__ uint32_t silu_mul_bits(uint32_t g_bits, uint32_t u_bits) {
  const float g = bits_to_float<T>(g_bits);
  const float u = bits_to_float<T>(u_bits);
  const float silu = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
  return float_to_bits<T>(__fmul_rn(silu, u));
}

// silu_mul_bits for the 8 elements of two 16-byte vectors, packed the same way. The same values
// bit for bit: the divisions take silu_div_fast (exact where silu_div_fast_ok, checked
// exhaustively) for all 8 elements without branches, and __fdiv_rn only for the rare elements
// outside its domain (|g| < 2^-100 or zero, huge, non-finite, g < -69).
template <DType T>
__device__ __forceinline__ uint4 silu_mul_vec(const uint4& gv, const uint4& uv) {
  float g[8], d[8], q[8];
  bool ok = true;
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    g[e] = bits_to_float<T>(get16(gv, e));
    d[e] = __fadd_rn(1.0f, expf(-g[e]));
    q[e] = silu_div_fast(g[e], d[e]);
    ok = ok && silu_div_fast_ok(g[e], d[e]);
  }
  if (!ok) {
#pragma unroll
    for (int e = 0; e < 8; ++e)
      if (!silu_div_fast_ok(g[e], d[e])) q[e] = __fdiv_rn(g[e], d[e]);
  }
  uint4 out;
  uint32_t* w = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
  for (int k = 0; k < 4; ++k)
    w[k] =
        pack16(float_to_bits<T>(__fmul_rn(q[2 * k], bits_to_float<T>(get16(uv, 2 * k)))),
               float_to_bits<T>(__fmul_rn(q[2 * k + 1], bits_to_float<T>(get16(uv, 2 * k + 1)))));
  return out;
}

// One thread per VEC-element group of an output row; grid-stride over the valid rows.
template <DType T, int VEC>
__global__ void silu_and_mul_kernel(const uint16_t* __restrict__ x, int64_t R, int64_t N,
                                    const int64_t* __restrict__ num_valid_rows,
                                    uint16_t* __restrict__ out) {
  int64_t rows = R;
  if (num_valid_rows != nullptr) rows = max(int64_t(0), min(R, *num_valid_rows));
  const int64_t groups_per_row = N / VEC;
  const int64_t total = rows * groups_per_row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / groups_per_row;
    const int64_t col = (i - r * groups_per_row) * VEC;
    const uint16_t* gate = x + r * 2 * N + col;
    Packed16<VEC> g, u, o;
    g.load(gate);
    u.load(gate + N);
    if constexpr (VEC == 8) {
      o.v = silu_mul_vec<T>(g.v, u.v);
    } else {
#pragma unroll
      for (int e = 0; e < VEC; ++e) o.set(e, silu_mul_bits<T>(g.get(e), u.get(e)));
    }
    o.store(out + r * N + col);
  }
}

}  // namespace int8_hybrid_moe::kernels
