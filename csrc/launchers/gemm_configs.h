// Tile configurations of the grouped GEMMs and the launch entry each instantiation file provides
// (internal to the launchers).
#pragma once

#include <cuda_runtime_api.h>

#include "int8_hybrid_moe/common.h"
#include "int8_hybrid_moe/gemm.h"

namespace int8_hybrid_moe::gemm {

struct GroupedGemmParams;
enum class Scheme : int;

// Launches one grouped GEMM kernel. `tile` picks the CTA tile, `bk` the K tile (64 or 128),
// `out` the output dtype. Throws InvalidArgument for a combination that is not instantiated.
// Defined per scheme in gemm_instances_*.cu; grid = (upper bound of M-tiles) * n_tiles.
void launch_per_token_gemm(GemmTile tile, DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                           cudaStream_t stream);
void launch_hybrid_gemm_bf16(GemmTile tile, int bk, GroupedGemmParams& p, int64_t max_m_tiles,
                             cudaStream_t stream);
void launch_hybrid_gemm_fp16(GemmTile tile, int bk, GroupedGemmParams& p, int64_t max_m_tiles,
                             cudaStream_t stream);

// The SM90 kernels (gemm_sm90.cu, compiled for sm_90a only; present when I8H_WITH_SM90).
void launch_per_token_gemm_sm90(GemmTile tile, DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                                cudaStream_t stream);
void launch_hybrid_gemm_sm90(DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                             cudaStream_t stream);

// Rows of one output tile of each tile config, which the scheduler counts M-tiles with (the SM90
// hybrid, sm90_128x128 split, computes 64-row tiles, one per consumer warpgroup), and the columns
// its name promises (the launchers count N-tiles with the config's own BN). Every launcher
// static_asserts that the kernel config it launches for a tile has these sizes: a kernel decoding
// other tiles than the scheduler counted would compute rows twice over or not at all (PERF.md,
// seventeenth session).
constexpr int tile_block_m(GemmTile t, bool hybrid) {
  if (hybrid && t == GemmTile::kSm90_128x128) return 64;
  return t == GemmTile::k64x64 ? 64 : 128;
}
constexpr int tile_block_n(GemmTile t) {
  if (t == GemmTile::kSm90_128x256) return 256;
  return t == GemmTile::k128x128 || t == GemmTile::kSm90_128x128 ? 128 : 64;
}
// The config launched for `t` tiles the output as the scheduler counts it.
template <class Cfg>
constexpr bool config_matches_tile(GemmTile t, bool hybrid) {
  return Cfg::BM == tile_block_m(t, hybrid) && Cfg::BN == tile_block_n(t);
}

}  // namespace int8_hybrid_moe::gemm
