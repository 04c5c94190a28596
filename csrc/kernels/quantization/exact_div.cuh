// Correctly rounded division by a per-block scale with the reciprocal hoisted out of the element
// loop, and the fast rint-to-int8 used by the row quantizers (internal, header-only, no project
// includes so a GPU test can check it on its own).
//
// x / s for many x and one s: with y = RN(1 / s) (rcp.rn, once per block), per element
//   q0 = RN(x * y);  r = x - s * q0 (one fma, exact);  q = RN(q0 + r * y) (one fma)
// is Markstein's correction step; it gives RN(x / s), i.e. exactly __fdiv_rn(x, s), as long as
// nothing underflows or overflows. scale_is_fast() restricts s to [2^-100, 2^100] and the row
// quantizers only divide values with |x / s| <= 128, so every intermediate is a normal number
// whenever |x / s| >= 2^-3 (smaller quotients round to 0 whichever way they are computed).
// Multiplying x by a power of two scales q0, r and q exactly in that range, so checking every
// significand of x (bf16: 8 bits, fp16: 11 bits) against every significand of s covers all
// inputs: tests/gpu/test_kernels_exact_div.cu does that, exhaustively, against __fdiv_rn.
#pragma once

#include <cstdint>

namespace int8_hybrid_moe::kernels {

// Whether div_by_scale() may be used for scale s (false for NaN, Inf, 0 and extreme values).
__device__ __forceinline__ bool scale_is_fast(float s) {
  return s >= 0x1p-100f && s <= 0x1p100f;
}

// y must be __frcp_rn(s); equals __fdiv_rn(x, s) under the conditions above. _rn intrinsics:
// nothing is contracted or reassociated.
__device__ __forceinline__ float div_by_scale(float x, float s, float y) {
  const float q0 = __fmul_rn(x, y);
  const float r = __fmaf_rn(-s, q0, x);
  return __fmaf_rn(r, y, q0);
}

// rintf(q) (round half to even) in the low byte of the result's bits, for |q| < 2^22: adding
// 1.5 * 2^23 rounds q to an integer in the last place of the sum (ties to even), whose low bits
// are then rint(q) in two's complement. No clamp: the callers guarantee |q| < 127.5.
__device__ __forceinline__ uint32_t rint_bits(float q) {
  return __float_as_uint(__fadd_rn(q, 12582912.0f));
}

// Bytes 0 of a, b, c, d packed into one word (a in the lowest byte).
__device__ __forceinline__ uint32_t pack_low_bytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

// SiLU's g / d with d = 1 + expf(-g): the sequence CUDA's own IEEE division runs on its fast
// path (rcp.approx refined by one Newton step, quotient, one correction), without the
// per-element check-and-branch to its slow path, so the 8 divisions of a vector can be
// interleaved. Callers use it only where silu_div_fast_ok() holds and __fdiv_rn elsewhere; on
// that domain it equals __fdiv_rn(g, d) for every bf16 and every fp16 g, which
// tests/gpu/test_kernels_exact_div.cu checks exhaustively (g has only 2^16 values per dtype).
__device__ __forceinline__ float silu_div_fast(float g, float d) {
  float y0;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y0) : "f"(d));
  const float y = __fmaf_rn(y0, __fmaf_rn(-d, y0, 1.0f), y0);
  const float q0 = __fmul_rn(g, y);
  return __fmaf_rn(y, __fmaf_rn(-d, q0, g), q0);
}
__device__ __forceinline__ bool silu_div_fast_ok(float g, float d) {
  const float a = fabsf(g);  // false for NaN; d >= 1 unless NaN
  return a >= 0x1p-100f && a <= 0x1p100f && d <= 0x1p100f;
}

}  // namespace int8_hybrid_moe::kernels
