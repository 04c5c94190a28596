// GPU check of the GEMM kernels' register helpers (csrc/kernels/gemm/register_ops.cuh):
// quad_transpose must move word j of lane s to word s of lane j inside every quad.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "../../csrc/kernels/gemm/register_ops.cuh"
#include "gpu/gpu_test_util.h"

namespace {

using int8_hybrid_moe::gemm::detail::quad_transpose;

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

}  // namespace
