// GPU check of the GEMM kernels' register helpers (csrc/kernels/gemm/register_ops.cuh):
// quad_transpose must move word j of lane s to word s of lane j inside every quad, and
// small_int_product must equal the integer product wherever a * b < 2^23.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "../../csrc/kernels/gemm/register_ops.cuh"
#include "gpu/gpu_test_util.h"

namespace {

using int8_hybrid_moe::gemm::detail::quad_transpose;
using int8_hybrid_moe::gemm::detail::small_int_product;

// in[warp][lane][j] -> out[warp][lane][s] = word s of lane `lane` after the transpose.
__global__ void quad_transpose_kernel(const uint32_t* in, uint32_t* out) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  const uint32_t a[4] = {in[4 * t], in[4 * t + 1], in[4 * t + 2], in[4 * t + 3]};
  const uint4 r = quad_transpose(a, threadIdx.x % 4);
  out[4 * t] = r.x;
  out[4 * t + 1] = r.y;
  out[4 * t + 2] = r.z;
  out[4 * t + 3] = r.w;
}

TEST(KernelRegisterOps, QuadTransposeMovesWordJOfLaneSToWordSOfLaneJ) {
  I8H_REQUIRE_GPU();
  constexpr int kThreads = 4 * 32;  // four warps
  std::vector<uint32_t> in(4 * kThreads), out(4 * kThreads, 0xDEADBEEFu);
  std::mt19937 rng(std::random_device{}());
  for (auto& w : in) w = rng();
  uint32_t *d_in = nullptr, *d_out = nullptr;
  I8H_CUDA_OK(cudaMalloc(&d_in, in.size() * 4));
  I8H_CUDA_OK(cudaMalloc(&d_out, out.size() * 4));
  I8H_CUDA_OK(cudaMemcpy(d_in, in.data(), in.size() * 4, cudaMemcpyHostToDevice));
  I8H_CUDA_OK(cudaMemcpy(d_out, out.data(), out.size() * 4, cudaMemcpyHostToDevice));
  quad_transpose_kernel<<<2, kThreads / 2>>>(d_in, d_out);
  I8H_CUDA_OK(cudaGetLastError());
  I8H_CUDA_OK(cudaMemcpy(out.data(), d_out, out.size() * 4, cudaMemcpyDeviceToHost));
  int wrong = 0;
  for (int t = 0; t < kThreads; ++t) {
    const int quad0 = t - t % 4, j = t % 4;
    for (int s = 0; s < 4; ++s) wrong += out[4 * t + s] != in[4 * (quad0 + s) + j];
  }
  EXPECT_EQ(wrong, 0);
  cudaFree(d_in);
  cudaFree(d_out);
}

__global__ void small_int_product_kernel(const int* a, const int* b, int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = small_int_product(static_cast<float>(a[i]), b[i]);
}

// Every pair of block scales the hybrid GEMM can meet (Q in [1, 127], and 0), plus random pairs
// up to the documented limit a * b < 2^23 (the largest subnormal bit pattern).
TEST(KernelRegisterOps, SmallIntProductIsExactBelowTwoPow23) {
  I8H_REQUIRE_GPU();
  std::vector<int> a, b;
  for (int x = 0; x <= 127; ++x)
    for (int y = 0; y <= 127; ++y) a.push_back(x), b.push_back(y);
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 1 << 16; ++i) {
    const int x = 1 + static_cast<int>(rng() % ((1u << 23) - 1));  // [1, 2^23 - 1]
    const int y = static_cast<int>(rng() % static_cast<unsigned>((((1 << 23) - 1) / x) + 1));
    if (rng() & 1) a.push_back(x), b.push_back(y);
    else a.push_back(y), b.push_back(x);
  }
  a.push_back((1 << 23) - 1), b.push_back(1);  // the largest product, both ways round
  a.push_back(1), b.push_back((1 << 23) - 1);
  const int n = static_cast<int>(a.size());
  std::vector<int> out(n, -7);
  int *d_a = nullptr, *d_b = nullptr, *d_out = nullptr;
  I8H_CUDA_OK(cudaMalloc(&d_a, n * 4));
  I8H_CUDA_OK(cudaMalloc(&d_b, n * 4));
  I8H_CUDA_OK(cudaMalloc(&d_out, n * 4));
  I8H_CUDA_OK(cudaMemcpy(d_a, a.data(), n * 4, cudaMemcpyHostToDevice));
  I8H_CUDA_OK(cudaMemcpy(d_b, b.data(), n * 4, cudaMemcpyHostToDevice));
  I8H_CUDA_OK(cudaMemcpy(d_out, out.data(), n * 4, cudaMemcpyHostToDevice));
  small_int_product_kernel<<<(n + 255) / 256, 256>>>(d_a, d_b, d_out, n);
  I8H_CUDA_OK(cudaGetLastError());
  I8H_CUDA_OK(cudaMemcpy(out.data(), d_out, n * 4, cudaMemcpyDeviceToHost));
  int wrong = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t want = int64_t(a[i]) * b[i];
    if (out[i] != want && ++wrong <= 5)
      ADD_FAILURE() << a[i] << " * " << b[i] << ": got " << out[i] << ", want " << want;
  }
  EXPECT_EQ(wrong, 0);
  cudaFree(d_a);
  cudaFree(d_b);
  cudaFree(d_out);
}

}  // namespace
