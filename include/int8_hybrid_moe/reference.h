// CPU reference of the formats and of the whole MoE pipeline (docs/FORMAT.md). Plain C++, no
// CUDA: the independent oracle of every GPU test, written from the spec and never sharing code
// with the kernels. bf16 / fp16 values are raw 16-bit words converted here bit-exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "int8_hybrid_moe/common.h"
#include "int8_hybrid_moe/format.h"

namespace int8_hybrid_moe::ref {

// ---- 16-bit float conversions (round to nearest even; NaN stays NaN; Inf stays Inf) ----------
float bf16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);
float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float to_float(uint16_t h, DType t);
uint16_t from_float(float f, DType t);
// Rounds through the dtype: from_float then to_float.
float round_to(float f, DType t);
std::vector<float> to_float(const std::vector<uint16_t>& h, DType t);

// ---- formats ----------------------------------------------------------------------------------
struct HybridTensor {
  int64_t rows = 0, K = 0, nb = 0, ng = 0;
  std::vector<int8_t> q;   // [rows, K]
  std::vector<int32_t> Q;  // [rows, nb]
  std::vector<float> F;    // [rows, ng]
};
// x: fp32 values (already converted from bf16/fp16), [rows, K]. K may leave a short last block.
HybridTensor quantize_hybrid(const float* x, int64_t rows, int64_t K, const HybridFormat& fmt);
std::vector<float> dequantize_hybrid(const HybridTensor& t, const HybridFormat& fmt);
// E experts' matrices stacked as the library stores weights (q [E, rows, K], Q [E, rows, nb],
// F [E, rows, ng], nb / ng of K under fmt), split into one HybridTensor per expert.
std::vector<HybridTensor> split_experts(const std::vector<int8_t>& q, const std::vector<int32_t>& Q,
                                        const std::vector<float>& F, int64_t E, int64_t rows,
                                        int64_t K, const HybridFormat& fmt);

struct PerTokenTensor {
  int64_t rows = 0, K = 0;
  std::vector<int8_t> q;     // [rows, K]
  std::vector<float> scale;  // [rows]
};
PerTokenTensor quantize_per_token(const float* x, int64_t rows, int64_t K);
std::vector<float> dequantize_per_token(const PerTokenTensor& t);

// ---- GEMMs (one expert). Exact integer inner sums (int64), per-group terms summed in double.
// out [R, N] before the final rounding to the output dtype.
std::vector<double> hybrid_gemm(const HybridTensor& a, const HybridTensor& w,
                                const HybridFormat& fmt);
// Per-token x per-channel: sa [R] (or [1] broadcast), sw [N] (or [1] broadcast).
std::vector<double> per_token_gemm(const int8_t* qa, const float* sa, bool sa_per_row,
                                   const int8_t* qw, const float* sw, bool sw_per_channel,
                                   int64_t R, int64_t N, int64_t K);

// ---- routing ------------------------------------------------------------------------------
struct Routing {
  std::vector<int64_t> expert_offsets;          // [E_local + 1]
  std::vector<int32_t> permuted_to_token_slot;  // [M*top_k] (kept rows first, then dropped)
  std::vector<int32_t> token_slot_to_permuted;  // [M*top_k], -1 if dropped
  int64_t invalid_ids = 0;                      // ids outside [0, E)
};
// Stable by token order within each expert; expert_map may be null.
Routing permute(const int32_t* topk_ids, const int32_t* expert_map, int64_t M, int top_k,
                int num_experts, int num_local_experts);

// silu(g) * u in fp32 (g / (1 + exp(-g)) * u), not rounded.
float silu_mul(float g, float u);

// ---- whole MoE layer -----------------------------------------------------------------------
struct MoeRefProblem {
  int64_t M = 0, K = 0, N = 0;
  int E = 0, top_k = 0;
  DType dtype = DType::kBFloat16;
  HybridFormat fmt;
};
// Float weights (values already representable in dtype): w13 [E, 2N, K], w2 [E, K, N].
// hidden [M, K] fp32 values of dtype numbers; ids / weights [M, top_k].
// Unquantized layer: fp32 inputs, double accumulation, result not rounded.
std::vector<double> moe_forward_float(const MoeRefProblem& p, const std::vector<float>& hidden,
                                      const std::vector<int32_t>& topk_ids,
                                      const std::vector<float>& topk_weights,
                                      const std::vector<float>& w13, const std::vector<float>& w2,
                                      const std::vector<int64_t>* token_subset = nullptr);

// Quantized pipeline exactly as the GPU runs it: quantize hidden rows, GEMM1 (rounded to dtype),
// silu_mul rounded to dtype, quantize, GEMM2 (rounded to dtype), weighted sum over top_k in fp32
// (rounded to dtype). Weights are given quantized. Hybrid scheme.
// token_subset (optional) restricts the computation to those tokens; the result then has
// token_subset->size() rows in that order.
std::vector<float> moe_forward_hybrid(const MoeRefProblem& p, const std::vector<float>& hidden,
                                      const std::vector<int32_t>& topk_ids,
                                      const std::vector<float>& topk_weights,
                                      const std::vector<HybridTensor>& w13_q,  // [E] of [2N, K]
                                      const std::vector<HybridTensor>& w2_q,   // [E] of [K, N]
                                      const std::vector<int64_t>* token_subset = nullptr);
// Same pipeline in the per-token scheme (per-channel weights).
std::vector<float> moe_forward_per_token(const MoeRefProblem& p, const std::vector<float>& hidden,
                                         const std::vector<int32_t>& topk_ids,
                                         const std::vector<float>& topk_weights,
                                         const std::vector<PerTokenTensor>& w13_q,
                                         const std::vector<PerTokenTensor>& w2_q,
                                         const std::vector<int64_t>* token_subset = nullptr);

}  // namespace int8_hybrid_moe::ref
