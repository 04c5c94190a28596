// Grouped INT8 GEMM operators (gemm.h).
#include <ATen/ATen.h>

#include <cstdint>

#include "int8_hybrid_moe/format.h"
#include "int8_hybrid_moe/gemm.h"
#include "ops.h"
#include "torch_utils.h"

namespace int8_hybrid_moe::torch_ext {

namespace {

GemmTile to_tile(int64_t tile, const char* fn) {
  I8H_TORCH_CHECK(
      tile >= 0 && tile <= static_cast<int64_t>(kLastGemmTile), fn, "tile",
      "0 (auto), 1 (64x64), 2 (128x64), 3 (128x128), 4 (sm90_128x128) or 5 (sm90_128x256), got ",
      tile);
  return static_cast<GemmTile>(tile);
}

// Checks a [R, K] int8, b [E, N, K] int8, expert_offsets int64 [E + 1]; returns the shape.
GroupedGemmShape check_operands(const Tensor& a, const Tensor& b, const Tensor& offsets,
                                const char* fn) {
  check_input(a, a, 2, at::kChar, fn, "a");
  check_input(b, a, 3, at::kChar, fn, "b");
  check_input(offsets, a, 1, at::kLong, fn, "expert_offsets");
  I8H_TORCH_CHECK(b.size(2) == a.size(1), fn, "b", "of shape [E, N, K = a.size(1) = ", a.size(1),
                  "], got ", dims(b.sizes()));
  I8H_TORCH_CHECK(offsets.size(0) == b.size(0) + 1, fn, "expert_offsets",
                  "of length E + 1 = ", b.size(0) + 1, " (E = b.size(0)), got ", offsets.size(0));
  GroupedGemmShape s;
  s.R = a.size(0);
  s.N = b.size(1);
  s.K = a.size(1);
  s.num_experts = to_int(b.size(0), fn, "b.size(0) (E)");
  return s;
}

}  // namespace

Tensor cutlass_int8_grouped(const Tensor& a, const Tensor& scale_a, const Tensor& b,
                            const Tensor& scale_b, const Tensor& expert_offsets,
                            at::ScalarType out_dtype, int64_t tile) {
  constexpr const char* fn = "cutlass_int8_grouped";
  const GroupedGemmShape s = check_operands(a, b, expert_offsets, fn);
  const DType dt = to_act_dtype(out_dtype, fn, "out_dtype");
  const GemmTile t = to_tile(tile, fn);
  check_cuda(scale_a, fn, "scale_a");
  check_same_device(scale_a, a, fn, "scale_a");
  check_dtype(scale_a, at::kFloat, fn, "scale_a");
  check_contiguous(scale_a, fn, "scale_a");
  I8H_TORCH_CHECK(scale_a.numel() == s.R || scale_a.numel() == 1, fn, "scale_a",
                  "a per-row scale with R = ", s.R, " elements or one per-tensor scale, got shape ",
                  dims(scale_a.sizes()));
  check_cuda(scale_b, fn, "scale_b");
  check_same_device(scale_b, a, fn, "scale_b");
  check_dtype(scale_b, at::kFloat, fn, "scale_b");
  check_contiguous(scale_b, fn, "scale_b");
  const int64_t E = s.num_experts;
  I8H_TORCH_CHECK(scale_b.numel() == E * s.N || scale_b.numel() == E, fn, "scale_b",
                  "per-channel scales [E, N] = [", E, ", ", s.N, "] or one per expert [", E,
                  "], got shape ", dims(scale_b.sizes()));

  const c10::cuda::CUDAGuard guard(a.device());
  Tensor out = at::empty({s.R, s.N}, a.options().dtype(out_dtype));
  if (s.R == 0 || s.N == 0) return out;
  PerTokenGemmArgs args;
  args.A = a.data_ptr<int8_t>();
  args.scale_a = scale_a.data_ptr<float>();
  args.scale_a_per_row = scale_a.numel() == s.R;
  args.B = b.data_ptr<int8_t>();
  args.scale_b = scale_b.data_ptr<float>();
  args.scale_b_per_channel = scale_b.numel() == E * s.N;
  args.expert_offsets = expert_offsets.data_ptr<int64_t>();
  args.C = out.data_ptr();
  args.out_dtype = dt;
  size_t ws_bytes = 0;
  call_api([&] { ws_bytes = grouped_gemm_workspace_size(s.num_experts); });
  Tensor ws = workspace(a, ws_bytes);
  call_api([&] { int8_grouped_gemm(s, args, ws.data_ptr(), ws_bytes, current_stream(a), t); });
  return out;
}

Tensor cutlass_int8_blockwise_hybrid_grouped(const Tensor& a, const Tensor& Qa, const Tensor& Fa,
                                             const Tensor& b, const Tensor& Qb, const Tensor& Fb,
                                             const Tensor& expert_offsets, int64_t block_size,
                                             int64_t super_group, int64_t q_max,
                                             at::ScalarType out_dtype, int64_t tile) {
  constexpr const char* fn = "cutlass_int8_blockwise_hybrid_grouped";
  const GroupedGemmShape s = check_operands(a, b, expert_offsets, fn);
  const DType dt = to_act_dtype(out_dtype, fn, "out_dtype");
  const GemmTile t = to_tile(tile, fn);
  const HybridFormat f = make_format(block_size, super_group, q_max, fn);
  call_api([&] { validate_reduction_dim(s.K, fn, "a.size(1) (K)"); });
  const int64_t nb = num_blocks(s.K, f), ng = num_groups(s.K, f), E = s.num_experts;
  check_input(Qa, a, 2, at::kInt, fn, "Qa");
  check_shape(Qa, {s.R, nb}, fn, "Qa");
  check_input(Fa, a, 2, at::kFloat, fn, "Fa");
  check_shape(Fa, {s.R, ng}, fn, "Fa");
  check_input(Qb, a, 3, at::kInt, fn, "Qb");
  check_shape(Qb, {E, s.N, nb}, fn, "Qb");
  check_input(Fb, a, 3, at::kFloat, fn, "Fb");
  check_shape(Fb, {E, s.N, ng}, fn, "Fb");

  const c10::cuda::CUDAGuard guard(a.device());
  Tensor out = at::empty({s.R, s.N}, a.options().dtype(out_dtype));
  if (s.R == 0 || s.N == 0) return out;
  HybridGemmArgs args;
  args.A = a.data_ptr<int8_t>();
  args.QA = Qa.data_ptr<int32_t>();
  args.FA = Fa.data_ptr<float>();
  args.B = b.data_ptr<int8_t>();
  args.QB = Qb.data_ptr<int32_t>();
  args.FB = Fb.data_ptr<float>();
  args.expert_offsets = expert_offsets.data_ptr<int64_t>();
  args.C = out.data_ptr();
  args.out_dtype = dt;
  size_t ws_bytes = 0;
  call_api([&] { ws_bytes = grouped_gemm_workspace_size(s.num_experts); });
  Tensor ws = workspace(a, ws_bytes);
  call_api(
      [&] { int8_hybrid_grouped_gemm(s, f, args, ws.data_ptr(), ws_bytes, current_stream(a), t); });
  return out;
}

}  // namespace int8_hybrid_moe::torch_ext
