// Routing, activation and quantization operators (kernels.h).
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "int8_hybrid_moe/format.h"
#include "int8_hybrid_moe/kernels.h"
#include "ops.h"
#include "torch_utils.h"

namespace int8_hybrid_moe::torch_ext {

namespace {

HybridQuantOutput hybrid_out(Tensor& q, Tensor& Q, Tensor& F) {
  HybridQuantOutput o;
  o.q = q.data_ptr<int8_t>();
  o.Q = Q.data_ptr<int32_t>();
  o.F = F.data_ptr<float>();
  return o;
}

PerTokenQuantOutput per_token_out(Tensor& q, Tensor& scale) {
  PerTokenQuantOutput o;
  o.q = q.data_ptr<int8_t>();
  o.scale = scale.data_ptr<float>();
  return o;
}

// Hybrid outputs of `rows` rows of K columns: q [rows, K], Q [rows, nb], F [rows, ng].
Tensor3 alloc_hybrid(const Tensor& ref, int64_t rows, int64_t K, const HybridFormat& f) {
  return {empty_like_dev(ref, {rows, K}, at::kChar),
          empty_like_dev(ref, {rows, num_blocks(K, f)}, at::kInt),
          empty_like_dev(ref, {rows, num_groups(K, f)}, at::kFloat)};
}

// Checks the map token_slot_to_permuted [M*top_k] int32 of the fused permute+quant ops.
void check_slot_map(const Tensor& map, const Tensor& hidden, int64_t top_k, const char* fn) {
  check_input(map, hidden, 1, at::kInt, fn, "token_slot_to_permuted");
  I8H_TORCH_CHECK(top_k >= 1, fn, "top_k", ">= 1, got ", top_k);
  I8H_TORCH_CHECK(map.size(0) == hidden.size(0) * top_k, fn, "token_slot_to_permuted",
                  "of length num_tokens * top_k = ", hidden.size(0) * top_k, ", got ", map.size(0));
}

}  // namespace

Tensor5 moe_permute(const Tensor& hidden, const Tensor& topk_ids, int64_t num_experts,
                    const OptTensor& expert_map, int64_t num_local_experts, bool gather) {
  constexpr const char* fn = "moe_permute";
  const DType dtype = check_act_input(hidden, hidden, 2, fn, "hidden");
  check_input(topk_ids, hidden, 2, at::kInt, fn, "topk_ids");
  const int64_t M = hidden.size(0), K = hidden.size(1);
  I8H_TORCH_CHECK(topk_ids.size(0) == M, fn, "topk_ids", "of shape [num_tokens = ", M,
                  ", top_k], got ", dims(topk_ids.sizes()));
  const int top_k = to_int(topk_ids.size(1), fn, "topk_ids.size(1) (top_k)");
  const int E = to_int(num_experts, fn, "num_experts");
  const int32_t* map_ptr = nullptr;
  int E_local = E;
  if (expert_map.has_value() && expert_map->defined()) {
    check_input(*expert_map, hidden, 1, at::kInt, fn, "expert_map");
    I8H_TORCH_CHECK(expert_map->size(0) == num_experts, fn, "expert_map",
                    "of length num_experts = ", num_experts, ", got ", expert_map->size(0));
    I8H_TORCH_CHECK(num_local_experts >= 0, fn, "num_local_experts",
                    "given (the number of local experts) when expert_map is given, got ",
                    num_local_experts);
    E_local = to_int(num_local_experts, fn, "num_local_experts");
    map_ptr = expert_map->data_ptr<int32_t>();
  } else {
    I8H_TORCH_CHECK(num_local_experts == -1 || num_local_experts == num_experts, fn,
                    "num_local_experts", "-1 or num_experts (", num_experts,
                    ") without expert_map, got ", num_local_experts);
  }

  const c10::cuda::CUDAGuard guard(hidden.device());
  const int64_t rows = M * top_k;
  Tensor offsets = at::zeros({int64_t(E_local) + 1}, hidden.options().dtype(at::kLong));
  Tensor p2t = empty_like_dev(hidden, {rows}, at::kInt);
  Tensor t2p = empty_like_dev(hidden, {rows}, at::kInt);
  Tensor permuted = at::empty({gather ? rows : 0, K}, hidden.options());
  Tensor invalid = at::zeros({1}, hidden.options().dtype(at::kInt));

  PermuteProblem p;
  p.num_tokens = M;
  p.hidden = K;
  p.top_k = top_k;
  p.num_experts = E;
  p.num_local_experts = E_local;
  if (rows == 0) {
    // Nothing is routed: the offsets stay 0. Still validate the problem through the API.
    call_api([&] { (void)moe_permute_workspace_size(p); });
    return {offsets, p2t, t2p, permuted, invalid};
  }
  size_t ws_bytes = 0;
  call_api([&] { ws_bytes = moe_permute_workspace_size(p); });
  Tensor ws = workspace(hidden, ws_bytes);
  PermuteOutputs out;
  out.expert_offsets = offsets.data_ptr<int64_t>();
  out.permuted_to_token_slot = p2t.data_ptr<int32_t>();
  out.token_slot_to_permuted = t2p.data_ptr<int32_t>();
  out.permuted_hidden = gather ? permuted.data_ptr() : nullptr;
  out.invalid_ids = invalid.data_ptr<int32_t>();
  call_api([&] {
    int8_hybrid_moe::moe_permute(p, dtype, hidden.data_ptr(), topk_ids.data_ptr<int32_t>(), map_ptr,
                                 out, ws.data_ptr(), ws_bytes, current_stream(hidden));
  });
  return {offsets, p2t, t2p, permuted, invalid};
}

Tensor moe_unpermute(const Tensor& y, const Tensor& topk_weights,
                     const Tensor& token_slot_to_permuted) {
  constexpr const char* fn = "moe_unpermute";
  const DType dtype = check_act_input(y, y, 2, fn, "y");
  check_input(topk_weights, y, 2, at::kFloat, fn, "topk_weights");
  check_input(token_slot_to_permuted, y, 1, at::kInt, fn, "token_slot_to_permuted");
  const int64_t M = topk_weights.size(0), K = y.size(1);
  const int top_k = to_int(topk_weights.size(1), fn, "topk_weights.size(1) (top_k)");
  I8H_TORCH_CHECK(token_slot_to_permuted.size(0) == M * top_k, fn, "token_slot_to_permuted",
                  "of length num_tokens * top_k = ", M * top_k, ", got ",
                  token_slot_to_permuted.size(0));
  const c10::cuda::CUDAGuard guard(y.device());
  Tensor out = at::empty({M, K}, y.options());
  if (M == 0) return out;
  call_api([&] {
    int8_hybrid_moe::moe_unpermute(y.data_ptr(), dtype, topk_weights.data_ptr<float>(),
                                   token_slot_to_permuted.data_ptr<int32_t>(), M, top_k, K,
                                   out.data_ptr(), current_stream(y));
  });
  return out;
}

namespace {
// x [R, 2N] of the gated activation: returns N.
int64_t gated_half(const Tensor& x, const char* fn) {
  I8H_TORCH_CHECK(x.size(1) % 2 == 0, fn, "x", "of shape [rows, 2*N] (an even last dim), got ",
                  dims(x.sizes()));
  return x.size(1) / 2;
}
}  // namespace

Tensor silu_and_mul(const Tensor& x, const OptTensor& num_valid_rows) {
  constexpr const char* fn = "silu_and_mul";
  const DType dtype = check_act_input(x, x, 2, fn, "x");
  const int64_t R = x.size(0), N = gated_half(x, fn);
  const int64_t* nvr = num_valid_rows_ptr(num_valid_rows, x, fn);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor out = at::empty({R, N}, x.options());
  if (R == 0) return out;
  call_api([&] {
    int8_hybrid_moe::silu_and_mul(x.data_ptr(), dtype, R, N, out.data_ptr(), nvr,
                                  current_stream(x));
  });
  return out;
}

Tensor3 quantize_hybrid(const Tensor& x, int64_t block_size, int64_t super_group, int64_t q_max,
                        const OptTensor& num_valid_rows) {
  constexpr const char* fn = "quantize_hybrid";
  const DType dtype = check_act_input(x, x, 2, fn, "x");
  const HybridFormat f = make_format(block_size, super_group, q_max, fn);
  const int64_t R = x.size(0), K = x.size(1);
  call_api([&] { validate_reduction_dim(K, fn, "x.size(1) (K)"); });
  const int64_t* nvr = num_valid_rows_ptr(num_valid_rows, x, fn);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor q, Q, F;
  std::tie(q, Q, F) = alloc_hybrid(x, R, K, f);
  if (R == 0) return {q, Q, F};
  call_api([&] {
    quantize_rows_hybrid(x.data_ptr(), dtype, R, K, f, hybrid_out(q, Q, F), nvr, current_stream(x));
  });
  return {q, Q, F};
}

Tensor2 quantize_per_token(const Tensor& x, const OptTensor& num_valid_rows) {
  constexpr const char* fn = "quantize_per_token";
  const DType dtype = check_act_input(x, x, 2, fn, "x");
  const int64_t R = x.size(0), K = x.size(1);
  call_api([&] { validate_reduction_dim(K, fn, "x.size(1) (K)"); });
  const int64_t* nvr = num_valid_rows_ptr(num_valid_rows, x, fn);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor q = empty_like_dev(x, {R, K}, at::kChar);
  Tensor s = empty_like_dev(x, {R}, at::kFloat);
  if (R == 0) return {q, s};
  call_api([&] {
    quantize_rows_per_token(x.data_ptr(), dtype, R, K, per_token_out(q, s), nvr, current_stream(x));
  });
  return {q, s};
}

Tensor3 permute_quantize_hybrid(const Tensor& hidden, const Tensor& token_slot_to_permuted,
                                int64_t top_k, int64_t block_size, int64_t super_group,
                                int64_t q_max) {
  constexpr const char* fn = "permute_quantize_hybrid";
  const DType dtype = check_act_input(hidden, hidden, 2, fn, "hidden");
  check_slot_map(token_slot_to_permuted, hidden, top_k, fn);
  const HybridFormat f = make_format(block_size, super_group, q_max, fn);
  const int64_t M = hidden.size(0), K = hidden.size(1);
  call_api([&] { validate_reduction_dim(K, fn, "hidden.size(1) (K)"); });
  const int k = to_int(top_k, fn, "top_k");
  const c10::cuda::CUDAGuard guard(hidden.device());
  Tensor q, Q, F;
  std::tie(q, Q, F) = alloc_hybrid(hidden, M * top_k, K, f);
  if (M == 0) return {q, Q, F};
  call_api([&] {
    int8_hybrid_moe::permute_quantize_hybrid(hidden.data_ptr(), dtype,
                                             token_slot_to_permuted.data_ptr<int32_t>(), M, k, K, f,
                                             hybrid_out(q, Q, F), current_stream(hidden));
  });
  return {q, Q, F};
}

Tensor2 permute_quantize_per_token(const Tensor& hidden, const Tensor& token_slot_to_permuted,
                                   int64_t top_k) {
  constexpr const char* fn = "permute_quantize_per_token";
  const DType dtype = check_act_input(hidden, hidden, 2, fn, "hidden");
  check_slot_map(token_slot_to_permuted, hidden, top_k, fn);
  const int64_t M = hidden.size(0), K = hidden.size(1);
  call_api([&] { validate_reduction_dim(K, fn, "hidden.size(1) (K)"); });
  const int k = to_int(top_k, fn, "top_k");
  const c10::cuda::CUDAGuard guard(hidden.device());
  Tensor q = empty_like_dev(hidden, {M * top_k, K}, at::kChar);
  Tensor s = empty_like_dev(hidden, {M * top_k}, at::kFloat);
  if (M == 0) return {q, s};
  call_api([&] {
    int8_hybrid_moe::permute_quantize_per_token(hidden.data_ptr(), dtype,
                                                token_slot_to_permuted.data_ptr<int32_t>(), M, k, K,
                                                per_token_out(q, s), current_stream(hidden));
  });
  return {q, s};
}

Tensor3 silu_and_mul_quantize_hybrid(const Tensor& x, int64_t block_size, int64_t super_group,
                                     int64_t q_max, const OptTensor& num_valid_rows) {
  constexpr const char* fn = "silu_and_mul_quantize_hybrid";
  const DType dtype = check_act_input(x, x, 2, fn, "x");
  const int64_t R = x.size(0), N = gated_half(x, fn);
  const HybridFormat f = make_format(block_size, super_group, q_max, fn);
  call_api([&] { validate_reduction_dim(N, fn, "x.size(1) / 2 (N)"); });
  const int64_t* nvr = num_valid_rows_ptr(num_valid_rows, x, fn);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor q, Q, F;
  std::tie(q, Q, F) = alloc_hybrid(x, R, N, f);
  if (R == 0) return {q, Q, F};
  call_api([&] {
    int8_hybrid_moe::silu_and_mul_quantize_hybrid(x.data_ptr(), dtype, R, N, f, hybrid_out(q, Q, F),
                                                  nvr, current_stream(x));
  });
  return {q, Q, F};
}

Tensor2 silu_and_mul_quantize_per_token(const Tensor& x, const OptTensor& num_valid_rows) {
  constexpr const char* fn = "silu_and_mul_quantize_per_token";
  const DType dtype = check_act_input(x, x, 2, fn, "x");
  const int64_t R = x.size(0), N = gated_half(x, fn);
  call_api([&] { validate_reduction_dim(N, fn, "x.size(1) / 2 (N)"); });
  const int64_t* nvr = num_valid_rows_ptr(num_valid_rows, x, fn);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor q = empty_like_dev(x, {R, N}, at::kChar);
  Tensor s = empty_like_dev(x, {R}, at::kFloat);
  if (R == 0) return {q, s};
  call_api([&] {
    int8_hybrid_moe::silu_and_mul_quantize_per_token(x.data_ptr(), dtype, R, N, per_token_out(q, s),
                                                     nvr, current_stream(x));
  });
  return {q, s};
}

Tensor3 quantize_weights_hybrid(const Tensor& w, int64_t block_size, int64_t super_group,
                                int64_t q_max) {
  constexpr const char* fn = "quantize_weights_hybrid";
  const DType dtype = check_act_input(w, w, 3, fn, "w");
  const HybridFormat f = make_format(block_size, super_group, q_max, fn);
  const int64_t E = w.size(0), N = w.size(1), K = w.size(2);
  call_api([&] { validate_reduction_dim(K, fn, "w.size(2) (K)"); });
  const c10::cuda::CUDAGuard guard(w.device());
  Tensor q = empty_like_dev(w, {E, N, K}, at::kChar);
  Tensor Q = empty_like_dev(w, {E, N, num_blocks(K, f)}, at::kInt);
  Tensor F = empty_like_dev(w, {E, N, num_groups(K, f)}, at::kFloat);
  if (E * N == 0) return {q, Q, F};
  call_api([&] {
    int8_hybrid_moe::quantize_weights_hybrid(w.data_ptr(), dtype, E, N, K, f, hybrid_out(q, Q, F),
                                             current_stream(w));
  });
  return {q, Q, F};
}

Tensor2 quantize_weights_per_channel(const Tensor& w) {
  constexpr const char* fn = "quantize_weights_per_channel";
  const DType dtype = check_act_input(w, w, 3, fn, "w");
  const int64_t E = w.size(0), N = w.size(1), K = w.size(2);
  call_api([&] { validate_reduction_dim(K, fn, "w.size(2) (K)"); });
  const c10::cuda::CUDAGuard guard(w.device());
  Tensor q = empty_like_dev(w, {E, N, K}, at::kChar);
  Tensor s = empty_like_dev(w, {E, N}, at::kFloat);
  if (E * N == 0) return {q, s};
  call_api([&] {
    int8_hybrid_moe::quantize_weights_per_channel(w.data_ptr(), dtype, E, N, K, per_token_out(q, s),
                                                  current_stream(w));
  });
  return {q, s};
}

}  // namespace int8_hybrid_moe::torch_ext
