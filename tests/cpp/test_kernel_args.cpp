// Argument validation of every memory-bound kernel launcher (kernels.h). Each call below has
// exactly one bad argument; validation happens before any CUDA call, so these run without a GPU
// (the fake device pointers are never dereferenced).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "int8_hybrid_moe/kernels.h"
#include "cpp/cpu_test_util.h"

namespace {

using namespace int8_hybrid_moe;
using i8h_cpu_test::fake;
using i8h_cpu_test::misaligned;

const DType kBad = static_cast<DType>(7);
const DType kBf = DType::kBFloat16;

HybridFormat fmt_with(int B, int S, int q) {
  HybridFormat f;
  f.block_size = B;
  f.super_group = S;
  f.q_max = q;
  return f;
}

HybridQuantOutput hyb_out() {
  return {fake<int8_t>(1), fake<int32_t>(2), fake<float>(3)};
}
PerTokenQuantOutput pt_out() {
  return {fake<int8_t>(1), fake<float>(3)};
}

// Bad formats shared by every hybrid entry point.
template <typename Call>
void expect_bad_formats(Call call, const char* fn) {
  EXPECT_BAD_ARG(call(fmt_with(0, 1, 16)), fn, "block_size (B)");
  EXPECT_BAD_ARG(call(fmt_with(24, 1, 16)), fn, "block_size (B)");
  EXPECT_BAD_ARG(call(fmt_with(128, 0, 16)), fn, "super_group (S)");
  EXPECT_BAD_ARG(call(fmt_with(128, 1, 0)), fn, "q_max");
  EXPECT_BAD_ARG(call(fmt_with(128, 1, 128)), fn, "q_max");
}

TEST(KernelArgs, QuantizeRowsHybrid) {
  const char* fn = "quantize_rows_hybrid";
  const HybridFormat f;
  auto run = [&](const void* x, DType t, int64_t R, int64_t K, const HybridFormat& fm,
                 const HybridQuantOutput& o) {
    quantize_rows_hybrid(x, t, R, K, fm, o, nullptr, 0);
  };
  EXPECT_BAD_ARG(run(fake(0), kBad, 4, 128, f, hyb_out()), fn, "dtype");
  expect_bad_formats([&](const HybridFormat& fm) { run(fake(0), kBf, 4, 128, fm, hyb_out()); }, fn);
  EXPECT_BAD_ARG(run(fake(0), kBf, -1, 128, f, hyb_out()), fn, "R");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 0, f, hyb_out()), fn, "K");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 24, f, hyb_out()), fn, "K");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 32768 + 16, f, hyb_out()), fn, "K");
  EXPECT_BAD_ARG(run(nullptr, kBf, 4, 128, f, hyb_out()), fn, "x");
  EXPECT_BAD_ARG(run(misaligned(0), kBf, 4, 128, f, hyb_out()), fn, "x");
  HybridQuantOutput o = hyb_out();
  o.q = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, f, o), fn, "out.q");
  o = hyb_out();
  o.q = misaligned<int8_t>(1);
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, f, o), fn, "out.q");
  o = hyb_out();
  o.Q = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, f, o), fn, "out.Q");
  o = hyb_out();
  o.F = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, f, o), fn, "out.F");
  // R = 0 is a no-op: no pointer is needed and nothing is launched.
  EXPECT_NO_THROW(run(nullptr, kBf, 0, 128, f, HybridQuantOutput{}));
}

TEST(KernelArgs, QuantizeRowsPerToken) {
  const char* fn = "quantize_rows_per_token";
  auto run = [&](const void* x, DType t, int64_t R, int64_t K, const PerTokenQuantOutput& o) {
    quantize_rows_per_token(x, t, R, K, o, nullptr, 0);
  };
  EXPECT_BAD_ARG(run(fake(0), kBad, 4, 128, pt_out()), fn, "dtype");
  EXPECT_BAD_ARG(run(fake(0), kBf, -2, 128, pt_out()), fn, "R");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, -16, pt_out()), fn, "K");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 100, pt_out()), fn, "K");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 65536, pt_out()), fn, "K");
  EXPECT_BAD_ARG(run(nullptr, kBf, 4, 128, pt_out()), fn, "x");
  EXPECT_BAD_ARG(run(misaligned(0), kBf, 4, 128, pt_out()), fn, "x");
  PerTokenQuantOutput o = pt_out();
  o.q = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, o), fn, "out.q");
  o = pt_out();
  o.q = misaligned<int8_t>(1);
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, o), fn, "out.q");
  o = pt_out();
  o.scale = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, o), fn, "out.scale");
  EXPECT_NO_THROW(run(nullptr, kBf, 0, 128, PerTokenQuantOutput{}));
}

TEST(KernelArgs, PermuteQuantizeHybrid) {
  const char* fn = "permute_quantize_hybrid";
  const HybridFormat f;
  auto run = [&](const void* h, DType t, const int32_t* tsp, int64_t M, int k, int64_t K,
                 const HybridFormat& fm, const HybridQuantOutput& o) {
    permute_quantize_hybrid(h, t, tsp, M, k, K, fm, o, 0);
  };
  const int32_t* tsp = fake<int32_t>(5);
  EXPECT_BAD_ARG(run(fake(0), kBad, tsp, 4, 2, 128, f, hyb_out()), fn, "dtype");
  expect_bad_formats(
      [&](const HybridFormat& fm) { run(fake(0), kBf, tsp, 4, 2, 128, fm, hyb_out()); }, fn);
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, -1, 2, 128, f, hyb_out()), fn, "num_tokens");
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 0, 128, f, hyb_out()), fn, "top_k");
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, int64_t(1) << 30, 8, 128, f, hyb_out()), fn,
                 "num_tokens * top_k");
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 2, 8, f, hyb_out()), fn, "K");
  EXPECT_BAD_ARG(run(nullptr, kBf, tsp, 4, 2, 128, f, hyb_out()), fn, "hidden");
  EXPECT_BAD_ARG(run(misaligned(0), kBf, tsp, 4, 2, 128, f, hyb_out()), fn, "hidden");
  EXPECT_BAD_ARG(run(fake(0), kBf, nullptr, 4, 2, 128, f, hyb_out()), fn, "token_slot_to_permuted");
  HybridQuantOutput o = hyb_out();
  o.q = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 2, 128, f, o), fn, "out.q");
  o = hyb_out();
  o.Q = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 2, 128, f, o), fn, "out.Q");
  o = hyb_out();
  o.F = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 2, 128, f, o), fn, "out.F");
  EXPECT_NO_THROW(run(nullptr, kBf, nullptr, 0, 2, 128, f, HybridQuantOutput{}));
}

TEST(KernelArgs, PermuteQuantizePerToken) {
  const char* fn = "permute_quantize_per_token";
  auto run = [&](const void* h, DType t, const int32_t* tsp, int64_t M, int k, int64_t K,
                 const PerTokenQuantOutput& o) {
    permute_quantize_per_token(h, t, tsp, M, k, K, o, 0);
  };
  const int32_t* tsp = fake<int32_t>(5);
  EXPECT_BAD_ARG(run(fake(0), kBad, tsp, 4, 2, 128, pt_out()), fn, "dtype");
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, -1, 2, 128, pt_out()), fn, "num_tokens");
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, -1, 128, pt_out()), fn, "top_k");
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, int64_t(1) << 29, 16, 128, pt_out()), fn,
                 "num_tokens * top_k");
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 2, 130, pt_out()), fn, "K");
  EXPECT_BAD_ARG(run(nullptr, kBf, tsp, 4, 2, 128, pt_out()), fn, "hidden");
  EXPECT_BAD_ARG(run(misaligned(0), kBf, tsp, 4, 2, 128, pt_out()), fn, "hidden");
  EXPECT_BAD_ARG(run(fake(0), kBf, nullptr, 4, 2, 128, pt_out()), fn, "token_slot_to_permuted");
  PerTokenQuantOutput o = pt_out();
  o.scale = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 2, 128, o), fn, "out.scale");
  o = pt_out();
  o.q = misaligned<int8_t>(1);
  EXPECT_BAD_ARG(run(fake(0), kBf, tsp, 4, 2, 128, o), fn, "out.q");
}

TEST(KernelArgs, SiluAndMulQuantizeHybrid) {
  const char* fn = "silu_and_mul_quantize_hybrid";
  const HybridFormat f;
  auto run = [&](const void* x, DType t, int64_t R, int64_t N, const HybridFormat& fm,
                 const HybridQuantOutput& o) {
    silu_and_mul_quantize_hybrid(x, t, R, N, fm, o, nullptr, 0);
  };
  EXPECT_BAD_ARG(run(fake(0), kBad, 4, 128, f, hyb_out()), fn, "dtype");
  expect_bad_formats([&](const HybridFormat& fm) { run(fake(0), kBf, 4, 128, fm, hyb_out()); }, fn);
  EXPECT_BAD_ARG(run(fake(0), kBf, -1, 128, f, hyb_out()), fn, "R");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 0, f, hyb_out()), fn, "N");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 72, f, hyb_out()), fn, "N");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 40000, f, hyb_out()), fn, "N");
  EXPECT_BAD_ARG(run(nullptr, kBf, 4, 128, f, hyb_out()), fn, "x");
  EXPECT_BAD_ARG(run(misaligned(0), kBf, 4, 128, f, hyb_out()), fn, "x");
  HybridQuantOutput o = hyb_out();
  o.Q = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, f, o), fn, "out.Q");
  o = hyb_out();
  o.q = misaligned<int8_t>(1);
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, f, o), fn, "out.q");
}

TEST(KernelArgs, SiluAndMulQuantizePerToken) {
  const char* fn = "silu_and_mul_quantize_per_token";
  auto run = [&](const void* x, DType t, int64_t R, int64_t N, const PerTokenQuantOutput& o) {
    silu_and_mul_quantize_per_token(x, t, R, N, o, nullptr, 0);
  };
  EXPECT_BAD_ARG(run(fake(0), kBad, 4, 128, pt_out()), fn, "dtype");
  EXPECT_BAD_ARG(run(fake(0), kBf, -1, 128, pt_out()), fn, "R");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 8, pt_out()), fn, "N");
  EXPECT_BAD_ARG(run(nullptr, kBf, 4, 128, pt_out()), fn, "x");
  EXPECT_BAD_ARG(run(misaligned(0), kBf, 4, 128, pt_out()), fn, "x");
  PerTokenQuantOutput o = pt_out();
  o.q = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, o), fn, "out.q");
  o = pt_out();
  o.scale = nullptr;
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 128, o), fn, "out.scale");
}

TEST(KernelArgs, QuantizeWeights) {
  {
    const char* fn = "quantize_weights_hybrid";
    const HybridFormat f;
    auto run = [&](const void* w, DType t, int64_t E, int64_t N, int64_t K, const HybridFormat& fm,
                   const HybridQuantOutput& o) {
      quantize_weights_hybrid(w, t, E, N, K, fm, o, 0);
    };
    EXPECT_BAD_ARG(run(fake(0), kBad, 2, 64, 128, f, hyb_out()), fn, "dtype");
    expect_bad_formats(
        [&](const HybridFormat& fm) { run(fake(0), kBf, 2, 64, 128, fm, hyb_out()); }, fn);
    EXPECT_BAD_ARG(run(fake(0), kBf, 0, 64, 128, f, hyb_out()), fn, "E");
    EXPECT_BAD_ARG(run(fake(0), kBf, 2, 0, 128, f, hyb_out()), fn, "N");
    EXPECT_BAD_ARG(run(fake(0), kBf, 2, 64, 17, f, hyb_out()), fn, "K");
    EXPECT_BAD_ARG(run(nullptr, kBf, 2, 64, 128, f, hyb_out()), fn, "w");
    EXPECT_BAD_ARG(run(misaligned(0), kBf, 2, 64, 128, f, hyb_out()), fn, "w");
    HybridQuantOutput o = hyb_out();
    o.F = nullptr;
    EXPECT_BAD_ARG(run(fake(0), kBf, 2, 64, 128, f, o), fn, "out.F");
  }
  {
    const char* fn = "quantize_weights_per_channel";
    auto run = [&](const void* w, DType t, int64_t E, int64_t N, int64_t K,
                   const PerTokenQuantOutput& o) {
      quantize_weights_per_channel(w, t, E, N, K, o, 0);
    };
    EXPECT_BAD_ARG(run(fake(0), kBad, 2, 64, 128, pt_out()), fn, "dtype");
    EXPECT_BAD_ARG(run(fake(0), kBf, -1, 64, 128, pt_out()), fn, "E");
    EXPECT_BAD_ARG(run(fake(0), kBf, 2, -1, 128, pt_out()), fn, "N");
    EXPECT_BAD_ARG(run(fake(0), kBf, 2, 64, 0, pt_out()), fn, "K");
    EXPECT_BAD_ARG(run(nullptr, kBf, 2, 64, 128, pt_out()), fn, "w");
    EXPECT_BAD_ARG(run(misaligned(0), kBf, 2, 64, 128, pt_out()), fn, "w");
    PerTokenQuantOutput o = pt_out();
    o.scale = nullptr;
    EXPECT_BAD_ARG(run(fake(0), kBf, 2, 64, 128, o), fn, "out.scale");
  }
}

TEST(KernelArgs, SiluAndMul) {
  const char* fn = "silu_and_mul";
  auto run = [&](const void* x, DType t, int64_t R, int64_t N, void* out) {
    silu_and_mul(x, t, R, N, out, nullptr, 0);
  };
  EXPECT_BAD_ARG(run(fake(0), kBad, 4, 64, fake(1)), fn, "dtype");
  EXPECT_BAD_ARG(run(fake(0), kBf, -1, 64, fake(1)), fn, "R");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 0, fake(1)), fn, "N");
  EXPECT_BAD_ARG(run(nullptr, kBf, 4, 64, fake(1)), fn, "x");
  EXPECT_BAD_ARG(run(fake(0), kBf, 4, 64, nullptr), fn, "out");
  EXPECT_NO_THROW(run(nullptr, kBf, 0, 64, nullptr));
}

TEST(KernelArgs, Unpermute) {
  const char* fn = "moe_unpermute";
  auto run = [&](const void* y, DType t, const float* w, const int32_t* tsp, int64_t M, int k,
                 int64_t K, void* out) { moe_unpermute(y, t, w, tsp, M, k, K, out, 0); };
  const float* w = fake<float>(2);
  const int32_t* tsp = fake<int32_t>(3);
  EXPECT_BAD_ARG(run(fake(0), kBad, w, tsp, 4, 2, 64, fake(1)), fn, "dtype");
  EXPECT_BAD_ARG(run(fake(0), kBf, w, tsp, -1, 2, 64, fake(1)), fn, "num_tokens");
  EXPECT_BAD_ARG(run(fake(0), kBf, w, tsp, 4, 0, 64, fake(1)), fn, "top_k");
  EXPECT_BAD_ARG(run(fake(0), kBf, w, tsp, 4, 2, 0, fake(1)), fn, "K");
  EXPECT_BAD_ARG(run(fake(0), kBf, w, tsp, int64_t(1) << 31, 2, 64, fake(1)), fn,
                 "num_tokens * top_k");
  EXPECT_BAD_ARG(run(nullptr, kBf, w, tsp, 4, 2, 64, fake(1)), fn, "y");
  EXPECT_BAD_ARG(run(fake(0), kBf, nullptr, tsp, 4, 2, 64, fake(1)), fn, "topk_weights");
  EXPECT_BAD_ARG(run(fake(0), kBf, w, nullptr, 4, 2, 64, fake(1)), fn, "token_slot_to_permuted");
  EXPECT_BAD_ARG(run(fake(0), kBf, w, tsp, 4, 2, 64, nullptr), fn, "out");
  EXPECT_NO_THROW(run(nullptr, kBf, nullptr, nullptr, 0, 2, 64, nullptr));
}

PermuteProblem problem(int64_t M, int64_t K, int k, int E, int El) {
  PermuteProblem p;
  p.num_tokens = M;
  p.hidden = K;
  p.top_k = k;
  p.num_experts = E;
  p.num_local_experts = El;
  return p;
}

PermuteOutputs permute_out() {
  PermuteOutputs o;
  o.expert_offsets = fake<int64_t>(10);
  o.permuted_to_token_slot = fake<int32_t>(11);
  o.token_slot_to_permuted = fake<int32_t>(12);
  o.permuted_hidden = fake(13);
  return o;
}

TEST(KernelArgs, Permute) {
  const char* fn = "moe_permute";
  auto run = [&](const PermuteProblem& p, DType t, const void* h, const int32_t* ids,
                 const int32_t* map, const PermuteOutputs& o, void* ws,
                 size_t ws_bytes) { moe_permute(p, t, h, ids, map, o, ws, ws_bytes, 0); };
  const int32_t* ids = fake<int32_t>(20);
  const int32_t* map = fake<int32_t>(21);
  const PermuteProblem ok = problem(16, 128, 2, 8, 8);
  const size_t big = size_t(1) << 30;
  void* ws = fake(30);
  EXPECT_BAD_ARG(run(problem(-1, 128, 2, 8, 8), kBf, fake(0), ids, nullptr, permute_out(), ws, big),
                 fn, "num_tokens");
  EXPECT_BAD_ARG(run(problem(16, 128, 1, 0, 0), kBf, fake(0), ids, nullptr, permute_out(), ws, big),
                 fn, "num_experts");
  EXPECT_BAD_ARG(run(problem(16, 128, 0, 8, 8), kBf, fake(0), ids, nullptr, permute_out(), ws, big),
                 fn, "top_k");
  EXPECT_BAD_ARG(run(problem(16, 128, 9, 8, 8), kBf, fake(0), ids, nullptr, permute_out(), ws, big),
                 fn, "top_k");
  EXPECT_BAD_ARG(run(problem(16, 128, 2, 8, 0), kBf, fake(0), ids, map, permute_out(), ws, big), fn,
                 "num_local_experts");
  EXPECT_BAD_ARG(run(problem(16, 128, 2, 8, 9), kBf, fake(0), ids, map, permute_out(), ws, big), fn,
                 "num_local_experts");
  EXPECT_BAD_ARG(run(problem(16, 128, 2, 8, 4), kBf, fake(0), ids, nullptr, permute_out(), ws, big),
                 fn, "num_local_experts");
  EXPECT_BAD_ARG(run(problem(int64_t(1) << 30, 128, 4, 8, 8), kBf, fake(0), ids, nullptr,
                     permute_out(), ws, big),
                 fn, "num_tokens * top_k");
  EXPECT_BAD_ARG(run(ok, kBad, fake(0), ids, nullptr, permute_out(), ws, big), fn, "dtype");
  PermuteOutputs o = permute_out();
  o.expert_offsets = nullptr;
  EXPECT_BAD_ARG(run(ok, kBf, fake(0), ids, nullptr, o, ws, big), fn, "out.expert_offsets");
  o = permute_out();
  o.permuted_to_token_slot = nullptr;
  EXPECT_BAD_ARG(run(ok, kBf, fake(0), ids, nullptr, o, ws, big), fn, "out.permuted_to_token_slot");
  o = permute_out();
  o.token_slot_to_permuted = nullptr;
  EXPECT_BAD_ARG(run(ok, kBf, fake(0), ids, nullptr, o, ws, big), fn, "out.token_slot_to_permuted");
  EXPECT_BAD_ARG(run(ok, kBf, fake(0), nullptr, nullptr, permute_out(), ws, big), fn, "topk_ids");
  EXPECT_BAD_ARG(run(ok, kBf, nullptr, ids, nullptr, permute_out(), ws, big), fn, "hidden");
  EXPECT_BAD_ARG(run(problem(16, 0, 2, 8, 8), kBf, fake(0), ids, nullptr, permute_out(), ws, big),
                 fn, "hidden (K)");
  EXPECT_BAD_ARG(run(ok, kBf, fake(0), ids, nullptr, permute_out(), ws, 0), fn, "workspace_bytes");
  EXPECT_BAD_ARG(run(ok, kBf, fake(0), ids, nullptr, permute_out(), nullptr, big), fn, "workspace");
  EXPECT_BAD_ARG(run(ok, kBf, fake(0), ids, nullptr, permute_out(), misaligned(30), big), fn,
                 "workspace");
}

TEST(KernelArgs, PermuteWorkspaceSize) {
  const char* fn = "moe_permute_workspace_size";
  EXPECT_BAD_ARG(moe_permute_workspace_size(problem(-1, 128, 2, 8, 8)), fn, "num_tokens");
  EXPECT_BAD_ARG(moe_permute_workspace_size(problem(4, 128, 0, 8, 8)), fn, "top_k");
  EXPECT_BAD_ARG(moe_permute_workspace_size(problem(4, 128, 2, 0, 0)), fn, "num_experts");
  EXPECT_BAD_ARG(moe_permute_workspace_size(problem(4, 128, 2, 8, 0)), fn, "num_local_experts");
}

// Runs with or without a GPU: without one (CPU-only CI) the size is the device-free estimate,
// which must still be positive, grow with M and cover the key arrays and CUB's alternate
// key/value buffers; with one it is CUB's own query.
TEST(KernelArgs, PermuteWorkspaceSizeWithoutDeviceQuery) {
  int count = 0;
  const bool device = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  (void)cudaGetLastError();
  for (const int E : {8, 64, 256}) {
    size_t prev = 0;
    for (const int64_t M : {0, 1, 7, 64, 1000, 8192, 65536}) {
      const int top_k = 8;
      size_t bytes = 0;
      ASSERT_NO_THROW(bytes = moe_permute_workspace_size(problem(M, 2048, top_k, E, E)))
          << "E " << E << " M " << M;
      if (M > 0) {
        EXPECT_GT(bytes, size_t(0)) << "E " << E << " M " << M;
      }
      EXPECT_GE(bytes, prev) << "E " << E << " M " << M << ": not monotone in M";
      const size_t n = size_t(M) * top_k;
      const size_t keys = (n * 4 + 255) / 256 * 256;
      EXPECT_GE(bytes, 3 * keys) << "E " << E << " M " << M;
      if (!device && M > 0) {
        EXPECT_GE(bytes, 3 * keys + 2 * n * 4 + (size_t(4) << 20)) << "E " << E << " M " << M;
      }
      prev = bytes;
    }
  }
}

}  // namespace
