// GPU check of the GEMM kernels' register helpers (csrc/kernels/gemm/register_ops.cuh):
// quad_transpose must move word j of lane s to word s of lane j inside every quad, and
// small_product_fp32 must equal the integer product for every pair of block scales.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "../../csrc/kernels/gemm/register_ops.cuh"
#include "gpu/gpu_test_util.h"

namespace {

using int8_hybrid_moe::gemm::detail::quad_transpose;
using int8_hybrid_moe::gemm::detail::small_product_fp32;

__global__ void small_product_kernel(const int* a, const int* b, int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = small_product_fp32(static_cast<float>(a[i]), b[i]);
}

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

// Every pair of block scales QA, QB in [0, 127] (the SM90 hybrid's rescale forms QA * QB this
// way), then random pairs over the helper's whole contract, a * b < 2^23, including its top.
TEST(KernelRegisterOps, SmallProductFp32IsTheExactIntegerProduct) {
  I8H_REQUIRE_GPU();
  std::vector<int> a, b;
  for (int x = 0; x <= 127; ++x)
    for (int y = 0; y <= 127; ++y) a.push_back(x), b.push_back(y);
  std::mt19937 rng(std::random_device{}());
  constexpr int kLimit = 1 << 23;
  a.push_back(1), b.push_back(kLimit - 1);
  a.push_back(kLimit - 1), b.push_back(1);
  a.push_back(2896), b.push_back(2896);  // 8386816, the largest square below 2^23
  for (int i = 0; i < 100000; ++i) {
    const int x = std::uniform_int_distribution<int>(1, kLimit - 1)(rng);
    a.push_back(x);
    b.push_back(std::uniform_int_distribution<int>(0, (kLimit - 1) / x)(rng));
  }
  const int n = static_cast<int>(a.size());
  std::vector<int> out(n, -1);
  int *d_a = nullptr, *d_b = nullptr, *d_out = nullptr;
  I8H_CUDA_OK(cudaMalloc(&d_a, n * sizeof(int)));
  I8H_CUDA_OK(cudaMalloc(&d_b, n * sizeof(int)));
  I8H_CUDA_OK(cudaMalloc(&d_out, n * sizeof(int)));
  I8H_CUDA_OK(cudaMemcpy(d_a, a.data(), n * sizeof(int), cudaMemcpyHostToDevice));
  I8H_CUDA_OK(cudaMemcpy(d_b, b.data(), n * sizeof(int), cudaMemcpyHostToDevice));
  I8H_CUDA_OK(cudaMemcpy(d_out, out.data(), n * sizeof(int), cudaMemcpyHostToDevice));
  small_product_kernel<<<(n + 255) / 256, 256>>>(d_a, d_b, d_out, n);
  I8H_CUDA_OK(cudaGetLastError());
  I8H_CUDA_OK(cudaMemcpy(out.data(), d_out, n * sizeof(int), cudaMemcpyDeviceToHost));
  int wrong = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t expect = static_cast<int64_t>(a[i]) * b[i];
    if (out[i] != expect && ++wrong <= 5)
      ADD_FAILURE() << a[i] << " * " << b[i] << ": got " << out[i] << ", expected " << expect;
  }
  EXPECT_EQ(wrong, 0);
  cudaFree(d_a);
  cudaFree(d_b);
  cudaFree(d_out);
}

}  // namespace
