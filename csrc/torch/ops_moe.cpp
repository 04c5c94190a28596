// The whole MoE forward as one operator (moe.h): allocates the output and the workspace.
#include <ATen/ATen.h>

#include <cstdint>

#include "int8_hybrid_moe/format.h"
#include "int8_hybrid_moe/moe.h"
#include "ops.h"
#include "torch_utils.h"

namespace int8_hybrid_moe::torch_ext {

namespace {

QuantScheme to_scheme(int64_t scheme, const char* fn) {
  I8H_TORCH_CHECK(scheme == 0 || scheme == 1, fn, "scheme", "0 (hybrid) or 1 (per_token), got ",
                  scheme);
  return static_cast<QuantScheme>(scheme);
}

MoeOptions to_options(int64_t fused_silu_quant, int64_t fused_permute_quant, const char* fn) {
  I8H_TORCH_CHECK(fused_silu_quant >= -1 && fused_silu_quant <= 1, fn, "fused_silu_quant",
                  "-1 (environment), 0 or 1, got ", fused_silu_quant);
  I8H_TORCH_CHECK(fused_permute_quant >= -1 && fused_permute_quant <= 1, fn, "fused_permute_quant",
                  "-1 (environment), 0 or 1, got ", fused_permute_quant);
  MoeOptions o;
  o.fused_silu_quant = static_cast<int>(fused_silu_quant);
  o.fused_permute_quant = static_cast<int>(fused_permute_quant);
  return o;
}

MoeProblem make_problem(int64_t M, int64_t K, int64_t N, int64_t E, int64_t E_local, int64_t top_k,
                        at::ScalarType dtype, int64_t scheme, int64_t block_size,
                        int64_t super_group, int64_t q_max, const char* fn) {
  MoeProblem p;
  p.num_tokens = M;
  p.hidden = K;
  p.intermediate = N;
  p.num_experts = to_int(E, fn, "num_experts");
  p.num_local_experts = to_int(E_local, fn, "num_local_experts");
  p.top_k = to_int(top_k, fn, "top_k");
  p.dtype = to_act_dtype(dtype, fn, "dtype");
  p.scheme = to_scheme(scheme, fn);
  if (p.scheme == QuantScheme::kHybrid) p.format = make_format(block_size, super_group, q_max, fn);
  return p;
}

}  // namespace

int64_t moe_workspace_bytes(int64_t num_tokens, int64_t hidden, int64_t intermediate,
                            int64_t num_experts, int64_t num_local_experts, int64_t top_k,
                            at::ScalarType dtype, int64_t scheme, int64_t block_size,
                            int64_t super_group, int64_t q_max, int64_t fused_silu_quant,
                            int64_t fused_permute_quant) {
  constexpr const char* fn = "moe_workspace_size";
  const MoeProblem p =
      make_problem(num_tokens, hidden, intermediate, num_experts, num_local_experts, top_k, dtype,
                   scheme, block_size, super_group, q_max, fn);
  const MoeOptions o = to_options(fused_silu_quant, fused_permute_quant, fn);
  size_t bytes = 0;
  call_api([&] { bytes = moe_workspace_size(p, o); });
  return static_cast<int64_t>(bytes);
}

Tensor moe_forward(const Tensor& hidden, const Tensor& topk_ids, const Tensor& topk_weights,
                   const Tensor& w13_q, const OptTensor& w13_Q, const Tensor& w13_scale,
                   const Tensor& w2_q, const OptTensor& w2_Q, const Tensor& w2_scale,
                   int64_t scheme, int64_t block_size, int64_t super_group, int64_t q_max,
                   const OptTensor& expert_map, int64_t fused_silu_quant,
                   int64_t fused_permute_quant) {
  constexpr const char* fn = "moe_forward";
  check_act_input(hidden, hidden, 2, fn, "hidden");
  check_input(topk_ids, hidden, 2, at::kInt, fn, "topk_ids");
  check_input(topk_weights, hidden, 2, at::kFloat, fn, "topk_weights");
  const int64_t M = hidden.size(0), K = hidden.size(1);
  I8H_TORCH_CHECK(topk_ids.size(0) == M, fn, "topk_ids", "of shape [num_tokens = ", M,
                  ", top_k], got ", dims(topk_ids.sizes()));
  I8H_TORCH_CHECK(topk_weights.sizes() == topk_ids.sizes(), fn, "topk_weights",
                  "of the shape of topk_ids ", dims(topk_ids.sizes()), ", got ",
                  dims(topk_weights.sizes()));
  const int64_t top_k = topk_ids.size(1);

  check_input(w13_q, hidden, 3, at::kChar, fn, "w13_q");
  const int64_t E_local = w13_q.size(0);
  I8H_TORCH_CHECK(w13_q.size(1) % 2 == 0 && w13_q.size(2) == K, fn, "w13_q",
                  "of shape [E_local, 2*N, K = ", K, "], got ", dims(w13_q.sizes()));
  const int64_t N = w13_q.size(1) / 2;
  check_input(w2_q, hidden, 3, at::kChar, fn, "w2_q");
  check_shape(w2_q, {E_local, K, N}, fn, "w2_q");

  int64_t E = E_local;
  const int32_t* map_ptr = nullptr;
  if (expert_map.has_value() && expert_map->defined()) {
    check_input(*expert_map, hidden, 1, at::kInt, fn, "expert_map");
    E = expert_map->size(0);
    map_ptr = expert_map->data_ptr<int32_t>();
  }
  const MoeProblem p = make_problem(M, K, N, E, E_local, top_k, hidden.scalar_type(), scheme,
                                    block_size, super_group, q_max, fn);
  const MoeOptions o = to_options(fused_silu_quant, fused_permute_quant, fn);

  MoeWeights w;
  if (p.scheme == QuantScheme::kHybrid) {
    call_api([&] {
      validate_reduction_dim(K, fn, "hidden.size(1) (K)");
      validate_reduction_dim(N, fn, "w13_q.size(1) / 2 (N)");
    });
    I8H_TORCH_CHECK(w13_Q.has_value() && w13_Q->defined(), fn, "w13_Q",
                    "given for the hybrid scheme, got None");
    I8H_TORCH_CHECK(w2_Q.has_value() && w2_Q->defined(), fn, "w2_Q",
                    "given for the hybrid scheme, got None");
    const int64_t nbK = num_blocks(K, p.format), ngK = num_groups(K, p.format);
    const int64_t nbN = num_blocks(N, p.format), ngN = num_groups(N, p.format);
    check_input(*w13_Q, hidden, 3, at::kInt, fn, "w13_Q");
    check_shape(*w13_Q, {E_local, 2 * N, nbK}, fn, "w13_Q");
    check_input(w13_scale, hidden, 3, at::kFloat, fn, "w13_scale");
    check_shape(w13_scale, {E_local, 2 * N, ngK}, fn, "w13_scale");
    check_input(*w2_Q, hidden, 3, at::kInt, fn, "w2_Q");
    check_shape(*w2_Q, {E_local, K, nbN}, fn, "w2_Q");
    check_input(w2_scale, hidden, 3, at::kFloat, fn, "w2_scale");
    check_shape(w2_scale, {E_local, K, ngN}, fn, "w2_scale");
    w.w13_hybrid = {w13_q.data_ptr<int8_t>(), w13_Q->data_ptr<int32_t>(),
                    w13_scale.data_ptr<float>()};
    w.w2_hybrid = {w2_q.data_ptr<int8_t>(), w2_Q->data_ptr<int32_t>(), w2_scale.data_ptr<float>()};
  } else {
    I8H_TORCH_CHECK(!(w13_Q.has_value() && w13_Q->defined()), fn, "w13_Q",
                    "None for the per_token scheme (per-channel scales only), got a tensor");
    I8H_TORCH_CHECK(!(w2_Q.has_value() && w2_Q->defined()), fn, "w2_Q",
                    "None for the per_token scheme (per-channel scales only), got a tensor");
    check_input(w13_scale, hidden, 2, at::kFloat, fn, "w13_scale");
    check_shape(w13_scale, {E_local, 2 * N}, fn, "w13_scale");
    check_input(w2_scale, hidden, 2, at::kFloat, fn, "w2_scale");
    check_shape(w2_scale, {E_local, K}, fn, "w2_scale");
    w.w13_channel = {w13_q.data_ptr<int8_t>(), w13_scale.data_ptr<float>()};
    w.w2_channel = {w2_q.data_ptr<int8_t>(), w2_scale.data_ptr<float>()};
  }

  MoeInputs in;
  in.hidden = hidden.data_ptr();
  in.topk_ids = topk_ids.data_ptr<int32_t>();
  in.topk_weights = topk_weights.data_ptr<float>();
  in.expert_map = map_ptr;

  const c10::cuda::CUDAGuard guard(hidden.device());
  Tensor out = at::empty({M, K}, hidden.options());
  if (M == 0) return out;  // no token: nothing to run (the C++ API wants M > 0)
  size_t ws_bytes = 0;
  call_api([&] { ws_bytes = moe_workspace_size(p, o); });
  Tensor ws = workspace(hidden, ws_bytes);
  call_api([&] {
    int8_hybrid_moe::moe_forward(p, o, in, w, out.data_ptr(), ws.data_ptr(), ws_bytes,
                                 current_stream(hidden));
  });
  return out;
}

}  // namespace int8_hybrid_moe::torch_ext
