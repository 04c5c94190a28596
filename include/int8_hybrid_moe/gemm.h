// Public C++ API of the INT8 grouped GEMMs over experts: CuTe SM80 tensor-core kernels (run on
// SM80, SM89 and SM90) and, on H100 / H200, an SM90 wgmma + TMA kernel.
//
// A int8 [R, K] with rows grouped by expert: rows of expert e are
// [expert_offsets[e], expert_offsets[e+1]) (device int64 [E+1], monotone; experts may be empty;
// rows at or past expert_offsets[E] are never written, and their values never reach an output;
// the SM90 kernel may read them while loading whole tiles). B int8 [E, N, K] (K
// contiguous). C [R, N] in bf16 or fp16 (N % 8 == 0; A, B and C 16-byte aligned). Problem
// sizes are read on the device, so calls are CUDA-graph capturable and need no host round-trip.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "int8_hybrid_moe/common.h"
#include "int8_hybrid_moe/format.h"

namespace int8_hybrid_moe {

struct GroupedGemmShape {
  int64_t R = 0;        // rows of A and C (upper bound; valid rows end at expert_offsets[E])
  int64_t N = 0;        // output channels per expert
  int64_t K = 0;        // reduction dimension
  int num_experts = 0;  // E
};

// Tile configuration of the grouped GEMMs (threadblock M x N x K). kAuto applies the heuristic of
// select_gemm_tile() (docs/PERF.md); the others force a config (tests, tuning).
//  - k64x64, k128x64, k128x128: SM80 kernels (mma.sync, cp.async), any GPU of SM80 or newer;
//    k128x128 is per-token only.
//  - kSm90_128x128, kSm90_128x256: SM90 kernel (wgmma, TMA, warp-specialized, persistent),
//    H100 / H200 only, in builds whose INT8HYBRID_CUDA_ARCHS include 90; the hybrid scheme needs
//    block_size a multiple of 128 (one or more whole K tiles per block) and takes 128x128 only
//    (128x256 is per-token only). Per-token 128x128 is a pingpong kernel (each consumer
//    warpgroup owns whole 128x128 tiles in turn), per-token 128x256 cooperative (both share each
//    tile); the hybrid 128x128 is split: each consumer warpgroup computes its own 64x128 tiles
//    from its own stage ring.
enum class GemmTile : int { kAuto = 0, k64x64, k128x64, k128x128, kSm90_128x128, kSm90_128x256 };
inline constexpr GemmTile kLastGemmTile = GemmTile::kSm90_128x256;  // enum range for checks
// True for the tiles of the SM90 kernel.
constexpr bool is_sm90_tile(GemmTile t) {
  return t == GemmTile::kSm90_128x128 || t == GemmTile::kSm90_128x256;
}
const char* gemm_tile_name(GemmTile t);
// The rules of a requested tile (enum value; hybrid: not 128x128 / sm90_128x256, and block_size
// a multiple of 128 for the SM90 tile), shared by the GEMM entry points and the runner, which
// checks them before its first launch. Needs no GPU: whether an SM90 tile runs on the current
// device is checked at launch.
void validate_gemm_tile(GemmTile t, bool hybrid, int block_size, const char* fn, const char* arg);
// True when this build has the SM90 kernels and the current device has compute capability 9.0.
bool gemm_sm90_available();
// Throws InvalidArgument naming `arg` when `t` is an SM90 tile and gemm_sm90_available() is false
// (queries the current device only then).
void require_gemm_tile_runnable(GemmTile t, const char* fn, const char* arg);
// The heuristic (docs/PERF.md) for the per-token (hybrid = false) or hybrid GEMM on the current
// device, from N, K and the mean rows per expert R / E (the only load figure the host has without
// reading expert_offsets): the SM90 kernel where it is available and (hybrid) block_size is a
// multiple of 128 (per-token: its pingpong 128x128 tile unless K >= 2048 and N * K >= 2^22), else
// an SM80 tile chosen by the mean. Queries the current device.
GemmTile select_gemm_tile(const GroupedGemmShape& s, bool hybrid, int block_size = 128);

// Bytes of workspace both grouped GEMMs need (per-expert tile offsets).
size_t grouped_gemm_workspace_size(int num_experts);

// Per-token x per-channel: C[r, n] = scale_a[r] * scale_b[e, n] * sum_k A[r, k] * B[e, n, k].
// Broadcast (per-tensor) cases: scale_a_per_row = false reads scale_a[0] for every row;
// scale_b_per_channel = false reads scale_b[e] (one scale per expert). K <= kPerTokenMaxK.
struct PerTokenGemmArgs {
  const int8_t* A = nullptr;
  const float* scale_a = nullptr;  // [R] or [1]
  bool scale_a_per_row = true;
  const int8_t* B = nullptr;
  const float* scale_b = nullptr;  // [E, N] or [E]
  bool scale_b_per_channel = true;
  const int64_t* expert_offsets = nullptr;
  void* C = nullptr;
  DType out_dtype = DType::kBFloat16;
};
void int8_grouped_gemm(const GroupedGemmShape& shape, const PerTokenGemmArgs& args, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream,
                       GemmTile tile = GemmTile::kAuto);

// Hybrid blockwise (docs/FORMAT.md): for row r of expert e and channel n,
//   C[r,n] = sum_g FA[r,g]*FB[e,n,g] * (sum_{b in g} QA[r,b]*QB[e,n,b] * sum_{k in b} A*B)
// Integer block rescale inside the main loop; exact for every valid input (overflow safeguard of
// int32_blocks_per_flush). The kernel needs block_size to be a multiple of 64 (its K tile).
struct HybridGemmArgs {
  const int8_t* A = nullptr;
  const int32_t* QA = nullptr;  // [R, nb]
  const float* FA = nullptr;    // [R, ng]
  const int8_t* B = nullptr;
  const int32_t* QB = nullptr;  // [E, N, nb]
  const float* FB = nullptr;    // [E, N, ng]
  const int64_t* expert_offsets = nullptr;
  void* C = nullptr;
  DType out_dtype = DType::kBFloat16;
};
void int8_hybrid_grouped_gemm(const GroupedGemmShape& shape, const HybridFormat& fmt,
                              const HybridGemmArgs& args, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream, GemmTile tile = GemmTile::kAuto);

}  // namespace int8_hybrid_moe
