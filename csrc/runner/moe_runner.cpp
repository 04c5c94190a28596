// End-to-end INT8 MoE forward: validation, options, workspace carving and the stage sequence.
// Only host code: every stage is a call into the kernel / GEMM APIs on the caller's stream.
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "int8_hybrid_moe/moe.h"
#include "launchers/cuda_check.h"
#include "runner/workspace_layout.h"

namespace int8_hybrid_moe {

namespace {

constexpr const char* kEnvFusedSilu = "VLLM_INT8_HYBRID_FUSED_SILU_QUANT";
constexpr const char* kEnvFusedPermute = "VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT";

// The hybrid GEMM's K tile (gemm.h): quantization blocks must not straddle it.
constexpr int kHybridGemmBlockMultiple = 64;

bool env_switch(const char* name, bool default_value) {
  const char* v = std::getenv(name);
  if (v == nullptr) return default_value;
  if (std::strcmp(v, "0") == 0) return false;
  if (std::strcmp(v, "1") == 0) return true;
  throw InvalidArgument(
      detail::concat("environment variable ", name, " must be \"0\" or \"1\", got \"", v, "\""));
}

bool option_switch(int value, const char* field, const char* env, bool default_value) {
  if (value == -1) return env_switch(env, default_value);
  I8H_CHECK_ARG(value == 0 || value == 1, "resolve_moe_options", field, "-1 (environment), 0 or 1",
                value);
  return value == 1;
}

// The GEMM's tile rules (gemm.h), and for a forced SM90 tile that this device runs it: checked
// here so a bad tile fails before the forward's first launch.
void validate_tile(GemmTile t, const MoeProblem& p, const char* fn, const char* arg) {
  validate_gemm_tile(t, p.scheme == QuantScheme::kHybrid, p.format.block_size, fn, arg);
  require_gemm_tile_runnable(t, fn, arg);
}

// Shape and format rules shared by moe_workspace_size and moe_forward.
void validate_problem(const MoeProblem& p, const char* fn) {
  I8H_CHECK_ARG(p.num_tokens > 0, fn, "num_tokens (M)", "> 0", p.num_tokens);
  validate_reduction_dim(p.hidden, fn, "hidden (K)");
  I8H_CHECK_ARG(p.intermediate > 0 && p.intermediate % 16 == 0, fn, "intermediate (N)",
                "a positive multiple of 16", p.intermediate);
  I8H_CHECK_ARG(p.num_experts > 0, fn, "num_experts (E)", "> 0", p.num_experts);
  I8H_CHECK_ARG(p.top_k >= 1 && p.top_k <= p.num_experts, fn, "top_k",
                detail::concat("in [1, num_experts = ", p.num_experts, "]"), p.top_k);
  I8H_CHECK_ARG(p.num_local_experts >= 1 && p.num_local_experts <= p.num_experts, fn,
                "num_local_experts", detail::concat("in [1, num_experts = ", p.num_experts, "]"),
                p.num_local_experts);
  // The routing maps hold permuted-row indices in int32.
  const int64_t max_rows = std::numeric_limits<int32_t>::max();
  I8H_CHECK_ARG(p.num_tokens <= max_rows / p.top_k, fn, "num_tokens (M)",
                detail::concat("<= ", max_rows / p.top_k, " so that M * top_k fits int32"),
                p.num_tokens);
  validate_dtype(p.dtype, fn, "dtype");
  if (p.scheme == QuantScheme::kHybrid) {
    validate_format(p.format, fn);
    I8H_CHECK_ARG(p.format.block_size % kHybridGemmBlockMultiple == 0, fn, "format.block_size (B)",
                  "a multiple of 64 (the K tile of the hybrid GEMM)", p.format.block_size);
  } else if (p.scheme == QuantScheme::kPerToken) {
    I8H_CHECK_ARG(p.hidden <= kPerTokenMaxK, fn, "hidden (K)",
                  detail::concat("<= ", kPerTokenMaxK, " for the per-token GEMM"), p.hidden);
    I8H_CHECK_ARG(p.intermediate <= kPerTokenMaxK, fn, "intermediate (N)",
                  detail::concat("<= ", kPerTokenMaxK, " for the per-token GEMM"), p.intermediate);
  } else {
    I8H_CHECK_ARG(false, fn, "scheme", "kHybrid (0) or kPerToken (1)", static_cast<int>(p.scheme));
  }
}

size_t align_up(size_t x) {
  return (x + detail::kWorkspaceAlign - 1) / detail::kWorkspaceAlign * detail::kWorkspaceAlign;
}

// Places pieces region by region; a new phase restarts at its region's base.
class Planner {
 public:
  explicit Planner(detail::WorkspaceLayout& l) : l_(l) {}
  void region() { base_ = cursor_ = top_; }
  void phase() { cursor_ = base_; }
  void put(detail::WsPiece id, size_t bytes) {
    if (bytes == 0) return;
    l_.offset[id] = cursor_;
    l_.bytes[id] = bytes;
    cursor_ = align_up(cursor_ + bytes);
    top_ = std::max(top_, cursor_);
  }
  size_t top() const { return top_; }

 private:
  detail::WorkspaceLayout& l_;
  size_t base_ = 0, cursor_ = 0, top_ = 0;
};

// Pointers into the caller's workspace.
template <typename T>
T* piece(void* ws, const detail::WorkspaceLayout& l, detail::WsPiece id) {
  if (l.bytes[id] == 0) return nullptr;
  return reinterpret_cast<T*>(static_cast<char*>(ws) + l.offset[id]);
}

// NVTX range + optional stage event; the range is popped even when a launch throws.
class StageScope {
 public:
  StageScope(int stage, const MoeStageEvents* ev, cudaStream_t stream) {
    if (ev != nullptr && ev->events[stage] != nullptr)
      I8H_CUDA_CHECK(cudaEventRecord(ev->events[stage], stream));
    nvtxRangePushA(moe_stage_name(stage));
  }
  ~StageScope() { nvtxRangePop(); }
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;
};

}  // namespace

const char* quant_scheme_name(QuantScheme s) {
  switch (s) {
    case QuantScheme::kHybrid:
      return "hybrid";
    case QuantScheme::kPerToken:
      return "per-token";
  }
  return "unknown";
}

const char* moe_stage_name(int stage) {
  static const char* const kNames[kNumMoeStages] = {"permute",   "quant", "gemm1",
                                                    "act_quant", "gemm2", "unpermute"};
  return stage >= 0 && stage < kNumMoeStages ? kNames[stage] : "unknown";
}

ResolvedMoeOptions resolve_moe_options(const MoeOptions& o) {
  ResolvedMoeOptions r{};
  r.fused_silu_quant =
      option_switch(o.fused_silu_quant, "fused_silu_quant", kEnvFusedSilu, /*default=*/true);
  r.fused_permute_quant = option_switch(o.fused_permute_quant, "fused_permute_quant",
                                        kEnvFusedPermute, /*default=*/false);
  return r;
}

namespace detail {

WorkspaceLayout plan_workspace(const MoeProblem& p, const ResolvedMoeOptions& o) {
  WorkspaceLayout l;
  Planner pl(l);
  const size_t R = static_cast<size_t>(p.num_tokens) * static_cast<size_t>(p.top_k);
  const size_t K = static_cast<size_t>(p.hidden), N = static_cast<size_t>(p.intermediate);
  const size_t el = dtype_bytes(p.dtype);
  const bool hybrid = p.scheme == QuantScheme::kHybrid;
  const size_t nbK = hybrid ? static_cast<size_t>(num_blocks(p.hidden, p.format)) : 0;
  const size_t ngK = hybrid ? static_cast<size_t>(num_groups(p.hidden, p.format)) : 0;
  const size_t nbN = hybrid ? static_cast<size_t>(num_blocks(p.intermediate, p.format)) : 0;
  const size_t ngN = hybrid ? static_cast<size_t>(num_groups(p.intermediate, p.format)) : 0;

  PermuteProblem pp;
  pp.num_tokens = p.num_tokens;
  pp.hidden = p.hidden;
  pp.top_k = p.top_k;
  pp.num_experts = p.num_experts;
  pp.num_local_experts = p.num_local_experts;

  // Quantized operand [R, cols]: q | Q | F (hybrid) or q | scale (per-token).
  auto put_quant = [&](WsPiece q, WsPiece Q, WsPiece F, WsPiece scale, size_t cols, size_t nb,
                       size_t ng) {
    pl.put(q, R * cols);
    if (hybrid) {
      pl.put(Q, R * nb * sizeof(int32_t));
      pl.put(F, R * ng * sizeof(float));
    } else {
      pl.put(scale, R * sizeof(float));
    }
  };

  // Region P.
  pl.put(kWsExpertOffsets, (static_cast<size_t>(p.num_local_experts) + 1) * sizeof(int64_t));
  pl.put(kWsPermutedToTokenSlot, R * sizeof(int32_t));
  pl.put(kWsTokenSlotToPermuted, R * sizeof(int32_t));
  pl.put(kWsGemm, grouped_gemm_workspace_size(p.num_local_experts));

  // Region X.
  pl.region();
  pl.put(kWsPermute, moe_permute_workspace_size(pp));
  if (!o.fused_permute_quant) pl.put(kWsPermutedHidden, R * K * el);
  pl.phase();
  pl.put(kWsC1, R * 2 * N * el);
  pl.phase();
  if (o.fused_silu_quant)
    pl.put(kWsC2, R * K * el);
  else
    put_quant(kWsA2q, kWsA2Q, kWsA2F, kWsA2Scale, N, nbN, ngN);

  // Region Y.
  pl.region();
  put_quant(kWsA1q, kWsA1Q, kWsA1F, kWsA1Scale, K, nbK, ngK);
  pl.phase();
  if (o.fused_silu_quant) {
    put_quant(kWsA2q, kWsA2Q, kWsA2F, kWsA2Scale, N, nbN, ngN);
  } else {
    pl.put(kWsAct, R * N * el);
    pl.phase();
    pl.put(kWsC2, R * K * el);
  }
  l.total = pl.top();
  return l;
}

}  // namespace detail

size_t moe_workspace_size(const MoeProblem& p, const MoeOptions& o) {
  validate_problem(p, "moe_workspace_size");
  return detail::plan_workspace(p, resolve_moe_options(o)).total;
}

void moe_forward(const MoeProblem& p, const MoeOptions& o, const MoeInputs& in, const MoeWeights& w,
                 void* out, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                 const MoeStageEvents* events, int32_t* invalid_ids) {
  constexpr const char* fn = "moe_forward";
  // ---- Validate everything before the first launch (no partial forward on bad input). ----
  validate_problem(p, fn);
  const ResolvedMoeOptions ro = resolve_moe_options(o);
  validate_tile(o.gemm1_tile, p, fn, "options.gemm1_tile");
  validate_tile(o.gemm2_tile, p, fn, "options.gemm2_tile");
  I8H_CHECK_NOT_NULL(in.hidden, fn, "in.hidden");
  I8H_CHECK_NOT_NULL(in.topk_ids, fn, "in.topk_ids");
  I8H_CHECK_NOT_NULL(in.topk_weights, fn, "in.topk_weights");
  I8H_CHECK_ARG(in.expert_map != nullptr || p.num_local_experts == p.num_experts, fn,
                "num_local_experts",
                detail::concat("equal to num_experts (", p.num_experts, ") without an expert_map"),
                p.num_local_experts);
  const bool hybrid = p.scheme == QuantScheme::kHybrid;
  if (hybrid) {
    I8H_CHECK_NOT_NULL(w.w13_hybrid.q, fn, "w.w13_hybrid.q");
    I8H_CHECK_NOT_NULL(w.w13_hybrid.Q, fn, "w.w13_hybrid.Q");
    I8H_CHECK_NOT_NULL(w.w13_hybrid.F, fn, "w.w13_hybrid.F");
    I8H_CHECK_NOT_NULL(w.w2_hybrid.q, fn, "w.w2_hybrid.q");
    I8H_CHECK_NOT_NULL(w.w2_hybrid.Q, fn, "w.w2_hybrid.Q");
    I8H_CHECK_NOT_NULL(w.w2_hybrid.F, fn, "w.w2_hybrid.F");
  } else {
    I8H_CHECK_NOT_NULL(w.w13_channel.q, fn, "w.w13_channel.q");
    I8H_CHECK_NOT_NULL(w.w13_channel.scale, fn, "w.w13_channel.scale");
    I8H_CHECK_NOT_NULL(w.w2_channel.q, fn, "w.w2_channel.q");
    I8H_CHECK_NOT_NULL(w.w2_channel.scale, fn, "w.w2_channel.scale");
  }
  I8H_CHECK_NOT_NULL(out, fn, "out");
  I8H_CHECK_NOT_NULL(workspace, fn, "workspace");
  I8H_CHECK_ARG(reinterpret_cast<uintptr_t>(workspace) % detail::kWorkspaceAlign == 0, fn,
                "workspace", "256-byte aligned", workspace);
  const detail::WorkspaceLayout l = detail::plan_workspace(p, ro);
  I8H_CHECK_ARG(workspace_bytes >= l.total, fn, "workspace_bytes",
                detail::concat(">= moe_workspace_size() = ", l.total), workspace_bytes);

  // ---- Carve the workspace. ----
  int64_t* expert_offsets = piece<int64_t>(workspace, l, detail::kWsExpertOffsets);
  int32_t* p2ts = piece<int32_t>(workspace, l, detail::kWsPermutedToTokenSlot);
  int32_t* ts2p = piece<int32_t>(workspace, l, detail::kWsTokenSlotToPermuted);
  void* gemm_ws = piece<void>(workspace, l, detail::kWsGemm);
  void* permute_ws = piece<void>(workspace, l, detail::kWsPermute);
  void* permuted_hidden = piece<void>(workspace, l, detail::kWsPermutedHidden);
  void* c1 = piece<void>(workspace, l, detail::kWsC1);
  void* act = piece<void>(workspace, l, detail::kWsAct);
  void* c2 = piece<void>(workspace, l, detail::kWsC2);
  HybridQuantOutput a1h{piece<int8_t>(workspace, l, detail::kWsA1q),
                        piece<int32_t>(workspace, l, detail::kWsA1Q),
                        piece<float>(workspace, l, detail::kWsA1F)};
  HybridQuantOutput a2h{piece<int8_t>(workspace, l, detail::kWsA2q),
                        piece<int32_t>(workspace, l, detail::kWsA2Q),
                        piece<float>(workspace, l, detail::kWsA2F)};
  PerTokenQuantOutput a1t{a1h.q, piece<float>(workspace, l, detail::kWsA1Scale)};
  PerTokenQuantOutput a2t{a2h.q, piece<float>(workspace, l, detail::kWsA2Scale)};

  const int64_t M = p.num_tokens, K = p.hidden, N = p.intermediate;
  const int64_t R = M * p.top_k;
  const int E = p.num_local_experts;
  // Rows past the kept ones (dropped by expert_map / invalid ids) are skipped on the device.
  const int64_t* num_valid_rows = expert_offsets + E;

  // ---- permute ----
  {
    StageScope s(kStagePermute, events, stream);
    PermuteProblem pp;
    pp.num_tokens = M;
    pp.hidden = K;
    pp.top_k = p.top_k;
    pp.num_experts = p.num_experts;
    pp.num_local_experts = E;
    PermuteOutputs po;
    po.expert_offsets = expert_offsets;
    po.permuted_to_token_slot = p2ts;
    po.token_slot_to_permuted = ts2p;
    po.permuted_hidden = ro.fused_permute_quant ? nullptr : permuted_hidden;
    po.invalid_ids = invalid_ids;
    moe_permute(pp, p.dtype, in.hidden, in.topk_ids, in.expert_map, po, permute_ws,
                l.bytes[detail::kWsPermute], stream);
  }
  // ---- quant: permuted rows -> A1 ----
  {
    StageScope s(kStageQuant, events, stream);
    if (ro.fused_permute_quant) {
      if (hybrid)
        permute_quantize_hybrid(in.hidden, p.dtype, ts2p, M, p.top_k, K, p.format, a1h, stream);
      else
        permute_quantize_per_token(in.hidden, p.dtype, ts2p, M, p.top_k, K, a1t, stream);
    } else {
      if (hybrid)
        quantize_rows_hybrid(permuted_hidden, p.dtype, R, K, p.format, a1h, num_valid_rows, stream);
      else
        quantize_rows_per_token(permuted_hidden, p.dtype, R, K, a1t, num_valid_rows, stream);
    }
  }
  // One grouped GEMM of either scheme: C [R, n] = A [R, k] x W^T, W [E, n, k].
  auto grouped_gemm = [&](int64_t n, int64_t k, const HybridQuantOutput& ah,
                          const PerTokenQuantOutput& at, const HybridWeight& wh,
                          const PerChannelWeight& wc, void* c, GemmTile tile) {
    const GroupedGemmShape shape{R, n, k, E};
    if (hybrid) {
      HybridGemmArgs a;
      a.A = ah.q;
      a.QA = ah.Q;
      a.FA = ah.F;
      a.B = wh.q;
      a.QB = wh.Q;
      a.FB = wh.F;
      a.expert_offsets = expert_offsets;
      a.C = c;
      a.out_dtype = p.dtype;
      int8_hybrid_grouped_gemm(shape, p.format, a, gemm_ws, l.bytes[detail::kWsGemm], stream, tile);
    } else {
      PerTokenGemmArgs a;
      a.A = at.q;
      a.scale_a = at.scale;
      a.B = wc.q;
      a.scale_b = wc.scale;
      a.expert_offsets = expert_offsets;
      a.C = c;
      a.out_dtype = p.dtype;
      int8_grouped_gemm(shape, a, gemm_ws, l.bytes[detail::kWsGemm], stream, tile);
    }
  };
  // ---- gemm1: C1 [R, 2N] = A1 x w13^T ----
  {
    StageScope s(kStageGemm1, events, stream);
    grouped_gemm(2 * N, K, a1h, a1t, w.w13_hybrid, w.w13_channel, c1, o.gemm1_tile);
  }
  // ---- act_quant: A2 = quant(silu(gate) * up) ----
  {
    StageScope s(kStageActQuant, events, stream);
    if (ro.fused_silu_quant) {
      if (hybrid)
        silu_and_mul_quantize_hybrid(c1, p.dtype, R, N, p.format, a2h, num_valid_rows, stream);
      else
        silu_and_mul_quantize_per_token(c1, p.dtype, R, N, a2t, num_valid_rows, stream);
    } else {
      silu_and_mul(c1, p.dtype, R, N, act, num_valid_rows, stream);
      if (hybrid)
        quantize_rows_hybrid(act, p.dtype, R, N, p.format, a2h, num_valid_rows, stream);
      else
        quantize_rows_per_token(act, p.dtype, R, N, a2t, num_valid_rows, stream);
    }
  }
  // ---- gemm2: C2 [R, K] = A2 x w2^T ----
  {
    StageScope s(kStageGemm2, events, stream);
    grouped_gemm(K, N, a2h, a2t, w.w2_hybrid, w.w2_channel, c2, o.gemm2_tile);
  }
  // ---- unpermute: out[t] = sum_j weight[t, j] * C2[row(t, j)] ----
  {
    StageScope s(kStageUnpermute, events, stream);
    moe_unpermute(c2, p.dtype, in.topk_weights, ts2p, M, p.top_k, K, out, stream);
  }
  if (events != nullptr && events->events[kNumMoeStages] != nullptr)
    I8H_CUDA_CHECK(cudaEventRecord(events->events[kNumMoeStages], stream));
}

}  // namespace int8_hybrid_moe
