// End-to-end INT8 MoE forward (the runner). One call runs
//   permute -> quantize (or fused permute+quant) -> GEMM1 (w13) -> SiLU-and-mul + quantize (fused
//   or not) -> GEMM2 (w2) -> unpermute (weighted sum over top_k)
// on one stream, with no allocation and no host synchronization: capturable in a CUDA graph.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "int8_hybrid_moe/common.h"
#include "int8_hybrid_moe/format.h"
#include "int8_hybrid_moe/gemm.h"
#include "int8_hybrid_moe/kernels.h"

namespace int8_hybrid_moe {

enum class QuantScheme : int {
  kHybrid = 0,    // hybrid blockwise Q/F (docs/FORMAT.md)
  kPerToken = 1,  // per-token activations x per-channel weights
};
const char* quant_scheme_name(QuantScheme s);

struct MoeProblem {
  int64_t num_tokens = 0;     // M
  int64_t hidden = 0;         // K
  int64_t intermediate = 0;   // N (per expert; w13 has 2N rows: gate [0, N), up [N, 2N))
  int num_experts = 0;        // global E
  int num_local_experts = 0;  // experts of this rank (== num_experts without an expert_map)
  int top_k = 0;
  DType dtype = DType::kBFloat16;
  QuantScheme scheme = QuantScheme::kHybrid;
  HybridFormat format;  // used by kHybrid
};

// Fused-path switches. -1 = take the environment variable (VLLM_INT8_HYBRID_FUSED_SILU_QUANT,
// default 1; VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT, default 0); 0 / 1 override it.
struct MoeOptions {
  int fused_silu_quant = -1;
  int fused_permute_quant = -1;
  GemmTile gemm1_tile = GemmTile::kAuto;
  GemmTile gemm2_tile = GemmTile::kAuto;
};
struct ResolvedMoeOptions {
  bool fused_silu_quant;
  bool fused_permute_quant;
};
ResolvedMoeOptions resolve_moe_options(const MoeOptions& o);

// Quantized weights (local experts only). Hybrid: w13 [E_local, 2N, K] -> q, Q [.., nbK],
// F [.., ngK]; w2 [E_local, K, N] -> q, Q [.., nbN], F [.., ngN]. Per-token scheme: per-channel
// scales [E_local, 2N] and [E_local, K].
struct HybridWeight {
  const int8_t* q = nullptr;
  const int32_t* Q = nullptr;
  const float* F = nullptr;
};
struct PerChannelWeight {
  const int8_t* q = nullptr;
  const float* scale = nullptr;
};
struct MoeWeights {
  HybridWeight w13_hybrid, w2_hybrid;        // scheme kHybrid
  PerChannelWeight w13_channel, w2_channel;  // scheme kPerToken
};

struct MoeInputs {
  const void* hidden = nullptr;         // [M, K] dtype
  const int32_t* topk_ids = nullptr;    // [M, top_k], global expert ids
  const float* topk_weights = nullptr;  // [M, top_k]
  const int32_t* expert_map = nullptr;  // optional [E]: global -> local id or -1
};

// Stages of the forward, in order; events recorded at their boundaries give the breakdown.
enum MoeStage : int {
  kStagePermute = 0,
  kStageQuant,
  kStageGemm1,
  kStageActQuant,
  kStageGemm2,
  kStageUnpermute,
  kNumMoeStages
};
const char* moe_stage_name(int stage);

// Optional: kNumMoeStages + 1 events; events[i] is recorded before stage i and
// events[kNumMoeStages] after the last one. Null events are skipped.
struct MoeStageEvents {
  cudaEvent_t events[kNumMoeStages + 1] = {};
};

size_t moe_workspace_size(const MoeProblem& p, const MoeOptions& o);

// out [M, K] in p.dtype. workspace: at least moe_workspace_size(p, o) bytes, 256-byte aligned.
// invalid_ids (optional device int32) counts topk ids outside [0, E) (dropped, see kernels.h).
void moe_forward(const MoeProblem& p, const MoeOptions& o, const MoeInputs& in, const MoeWeights& w,
                 void* out, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                 const MoeStageEvents* events = nullptr, int32_t* invalid_ids = nullptr);

// Build configuration of the library, for benchmark reports.
struct BuildInfo {
  const char* cuda_archs;       // nvcc's __CUDA_ARCH_LIST__, e.g. "800,890,900"
  const char* cutlass_version;  // e.g. "4.2.0"
  int cuda_version;             // CUDART_VERSION the library was compiled against
};
BuildInfo build_info();

}  // namespace int8_hybrid_moe
