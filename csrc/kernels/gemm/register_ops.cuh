// Register-level helpers of the GEMM kernels, free of CuTe so the GPU tests can include them:
// the quad transpose behind the SM90 kernel's 16-byte epilogue stores.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace int8_hybrid_moe::gemm::detail {

// 4 x 4 transpose of 32-bit words inside each quad of lanes (lanes 4i .. 4i+3), q = lane & 3:
// a[j] of lane s ends up as word s of lane j. In the mma / wgmma accumulator layout the lanes
// of a quad hold two adjacent columns each of one row's 8-column blocks, so after the transpose
// lane q holds all 8 columns of block q: one 16-byte store instead of four 4-byte ones.
__device__ __forceinline__ uint4 quad_transpose(const uint32_t (&a)[4], int q) {
  const bool b1 = (q & 2) != 0, b0 = (q & 1) != 0;
  // With lane q ^ 2: keep the two blocks whose bit 1 is q's, trade the other two.
  const uint32_t k0 = b1 ? a[2] : a[0], k1 = b1 ? a[3] : a[1];
  const uint32_t r0 = __shfl_xor_sync(0xffffffffu, b1 ? a[0] : a[2], 2);
  const uint32_t r1 = __shfl_xor_sync(0xffffffffu, b1 ? a[1] : a[3], 2);
  // With lane q ^ 1: keep block q (own word and lane q^2's), trade block q ^ 1.
  const uint32_t m0 = b0 ? k1 : k0, m1 = b0 ? r1 : r0;
  const uint32_t u0 = __shfl_xor_sync(0xffffffffu, b0 ? k0 : k1, 1);  // from lane q ^ 1
  const uint32_t u1 = __shfl_xor_sync(0xffffffffu, b0 ? r0 : r1, 1);  // from lane q ^ 3
  // Word from lane s goes to slot s: slot q ^ x holds {m0, u0, m1, u1}[x].
  const uint32_t p0 = b0 ? u0 : m0, p1 = b0 ? m0 : u0, p2 = b0 ? u1 : m1, p3 = b0 ? m1 : u1;
  return b1 ? make_uint4(p2, p3, p0, p1) : make_uint4(p0, p1, p2, p3);
}

}  // namespace int8_hybrid_moe::gemm::detail
