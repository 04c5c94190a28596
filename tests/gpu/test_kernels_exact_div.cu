// Exhaustive GPU check of the row quantizers' division by a hoisted reciprocal
// (csrc/kernels/quantization/exact_div.cuh): div_by_scale(x, s, RN(1 / s)) must equal
// __fdiv_rn(x, s) bit for bit for every x of a bf16 or fp16 significand and every fp32 scale
// significand, at the scale exponents of both ends of the fast range and in the middle, for
// quotients from 2^-3 to 2^8 (the quantizers divide |x| <= 128 s; smaller quotients round to 0
// either way). And the 1.5 * 2^23 rounding must give rintf's low byte over [-127.5, 127.5].
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../../csrc/kernels/quantization/exact_div.cuh"
#include "gpu/gpu_test_util.h"

namespace {

using int8_hybrid_moe::kernels::div_by_scale;
using int8_hybrid_moe::kernels::rint_bits;
using int8_hybrid_moe::kernels::scale_is_fast;
using int8_hybrid_moe::kernels::silu_div_fast;
using int8_hybrid_moe::kernels::silu_div_fast_ok;

struct Mismatch {
  unsigned long long count;
  float x, s;
};

// Every 16-bit pattern g of bf16 (fp16 == false) or fp16: silu_div_fast(g, 1 + expf(-g)) vs
// __fdiv_rn where silu_div_fast_ok holds; counts the g where it holds too.
__global__ void silu_div_check_kernel(bool fp16, unsigned long long* bad,
                                      unsigned long long* fast) {
  const uint32_t h = blockIdx.x * blockDim.x + threadIdx.x;
  if (h >= 65536u) return;
  const float g = fp16 ? __half2float(__ushort_as_half(static_cast<unsigned short>(h)))
                       : __uint_as_float(h << 16);
  const float d = __fadd_rn(1.0f, expf(-g));
  if (!silu_div_fast_ok(g, d)) return;
  atomicAdd(fast, 1ull);
  if (__float_as_uint(silu_div_fast(g, d)) != __float_as_uint(__fdiv_rn(g, d)))
    atomicAdd(bad, 1ull);
}

// One thread per scale significand; x runs over `x_sig_bits` significand bits, both signs and
// four binades relative to s.
__global__ void div_check_kernel(int scale_exp, int x_sig_bits, Mismatch* out) {
  const uint32_t m = blockIdx.x * blockDim.x + threadIdx.x;
  if (m >= (1u << 23)) return;
  const float s = ldexpf(__uint_as_float(0x3f800000u | m), scale_exp);
  if (!scale_is_fast(s)) return;
  const float y = __frcp_rn(s);
  const uint32_t nx = 1u << x_sig_bits;
  for (uint32_t k = 0; k < nx; ++k) {
    const float x1 = __uint_as_float(0x3f800000u | (k << (23 - x_sig_bits)));  // [1, 2)
    for (int e : {-2, 0, 3, 6}) {
      for (float sign : {1.0f, -1.0f}) {
        const float x = sign * ldexpf(x1, scale_exp + e);
        const float want = __fdiv_rn(x, s);
        const float got = div_by_scale(x, s, y);
        if (__float_as_uint(want) != __float_as_uint(got)) {
          if (atomicAdd(&out->count, 1ull) == 0) {
            out->x = x;
            out->s = s;
          }
        }
      }
    }
  }
}

// q = i / 1024 over [-127.5, 127.5]: low byte of rint_bits vs int(rintf(q)).
__global__ void rint_check_kernel(unsigned long long* bad) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x) - 130560;  // 127.5 * 1024
  if (i > 130560) return;
  const float q = float(i) / 1024.0f;
  const uint32_t want = static_cast<uint32_t>(int(rintf(q))) & 0xffu;
  if ((rint_bits(q) & 0xffu) != want) atomicAdd(bad, 1ull);
}

TEST(KernelExactDiv, HoistedReciprocalDivisionIsExact) {
  I8H_REQUIRE_GPU();
  Mismatch* d = nullptr;
  I8H_CUDA_OK(cudaMalloc(&d, sizeof(Mismatch)));
  for (int sig_bits : {7, 10}) {                    // bf16, fp16 significands
    for (int scale_exp : {-100, -40, 0, 40, 99}) {  // s in [2^e, 2^(e+1))
      I8H_CUDA_OK(cudaMemset(d, 0, sizeof(Mismatch)));
      div_check_kernel<<<(1 << 23) / 256, 256>>>(scale_exp, sig_bits, d);
      I8H_CUDA_OK(cudaGetLastError());
      Mismatch h;
      I8H_CUDA_OK(cudaMemcpy(&h, d, sizeof(h), cudaMemcpyDeviceToHost));
      EXPECT_EQ(h.count, 0ull) << "significand bits " << sig_bits << ", scale exponent "
                               << scale_exp << ": first x " << h.x << " s " << h.s;
    }
  }
  cudaFree(d);
}

TEST(KernelExactDiv, MagicRoundingMatchesRintf) {
  I8H_REQUIRE_GPU();
  unsigned long long* d = nullptr;
  I8H_CUDA_OK(cudaMalloc(&d, sizeof(unsigned long long)));
  I8H_CUDA_OK(cudaMemset(d, 0, sizeof(unsigned long long)));
  rint_check_kernel<<<(2 * 130560 + 1 + 255) / 256, 256>>>(d);
  I8H_CUDA_OK(cudaGetLastError());
  unsigned long long h = 0;
  I8H_CUDA_OK(cudaMemcpy(&h, d, sizeof(h), cudaMemcpyDeviceToHost));
  EXPECT_EQ(h, 0ull);
  cudaFree(d);
}

TEST(KernelExactDiv, SiluDivisionIsExactForEveryInput) {
  I8H_REQUIRE_GPU();
  unsigned long long* d = nullptr;
  I8H_CUDA_OK(cudaMalloc(&d, 2 * sizeof(unsigned long long)));
  for (bool fp16 : {false, true}) {
    I8H_CUDA_OK(cudaMemset(d, 0, 2 * sizeof(unsigned long long)));
    silu_div_check_kernel<<<65536 / 256, 256>>>(fp16, d, d + 1);
    I8H_CUDA_OK(cudaGetLastError());
    unsigned long long h[2] = {0, 0};
    I8H_CUDA_OK(cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost));
    EXPECT_EQ(h[0], 0ull) << (fp16 ? "fp16" : "bf16");
    EXPECT_GT(h[1], 30000ull) << (fp16 ? "fp16" : "bf16") << ": fast domain too small";
  }
  cudaFree(d);
}

}  // namespace
