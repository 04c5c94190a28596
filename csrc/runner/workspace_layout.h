// Workspace layout of the runner (internal). moe_workspace_size() and moe_forward() both call
// plan_workspace(), so the size and the carving are one description and cannot disagree.
#pragma once

#include <cstddef>

#include "int8_hybrid_moe/moe.h"

namespace int8_hybrid_moe::detail {

inline constexpr size_t kWorkspaceAlign = 256;

// Pieces of the caller's workspace. A piece of 0 bytes is not used by the chosen path.
enum WsPiece : int {
  kWsExpertOffsets = 0,    // int64 [E_local + 1]
  kWsPermutedToTokenSlot,  // int32 [R]
  kWsTokenSlotToPermuted,  // int32 [R]
  kWsGemm,                 // grouped GEMM workspace, shared by GEMM1 and GEMM2 (stream-ordered)
  kWsPermute,              // moe_permute workspace (CUB sort)
  kWsPermutedHidden,       // dtype [R, K], unfused permute-quant only
  kWsA1q,                  // int8 [R, K]: quantized permuted activations
  kWsA1Q,                  // int32 [R, nbK] (hybrid)
  kWsA1F,                  // float [R, ngK] (hybrid)
  kWsA1Scale,              // float [R] (per-token)
  kWsC1,                   // dtype [R, 2N]: GEMM1 output (gate | up)
  kWsAct,                  // dtype [R, N]: silu(gate) * up, unfused SiLU-quant only
  kWsA2q,                  // int8 [R, N]
  kWsA2Q,                  // int32 [R, nbN] (hybrid)
  kWsA2F,                  // float [R, ngN] (hybrid)
  kWsA2Scale,              // float [R] (per-token)
  kWsC2,                   // dtype [R, K]: GEMM2 output
  kNumWsPieces
};

struct WorkspaceLayout {
  size_t offset[kNumWsPieces] = {};
  size_t bytes[kNumWsPieces] = {};
  size_t total = 0;
};

// Layout, every piece 256-byte aligned. R = M * top_k permuted rows.
//   Region P, live for the whole forward:
//     expert_offsets | permuted_to_token_slot | token_slot_to_permuted | GEMM workspace
//   Regions X and Y reuse their bytes over time ("phases", each restarting at the region base);
//   a phase is only written after the previous phase of the same region was last read:
//     X1 permute workspace | permuted_hidden     (permute .. quant)
//     X2 C1                                      (gemm1 .. act_quant)
//     X3 A2 (unfused SiLU) or C2 (fused SiLU)    (act_quant .. gemm2 / gemm2 .. unpermute)
//     Y1 A1 = q | Q | F  (or q | scale)          (quant .. gemm1)
//     Y2 act (unfused SiLU) or A2 (fused SiLU)   (act_quant .. gemm2)
//     Y3 C2 (unfused SiLU only)                  (gemm2 .. unpermute)
//   Rows past expert_offsets[E_local] are never read, so stale bytes of an earlier phase in
//   them are harmless.
WorkspaceLayout plan_workspace(const MoeProblem& p, const ResolvedMoeOptions& o);

}  // namespace int8_hybrid_moe::detail
