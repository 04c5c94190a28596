// Launch helper shared by the GEMM instantiation files (internal).
#pragma once

#include "kernels/gemm/grouped_gemm_sm80.cuh"
#include "launchers/cuda_check.h"
#include "launchers/gemm_configs.h"

namespace int8_hybrid_moe::gemm {

template <GemmTile kTile, class Cfg, Scheme kScheme, typename Out>
void launch_grouped_gemm_kernel(GroupedGemmParams& p, int64_t max_m_tiles, cudaStream_t stream) {
  static_assert(config_matches_tile<Cfg>(kTile, kScheme == Scheme::kHybrid),
                "the scheduler counts this tile's M-tiles with other sizes (tile_block_m/n)");
  auto kernel = grouped_gemm_sm80_kernel<Cfg, kScheme, Out>;
  constexpr int kSmem = Cfg::kSmemBytes;
  // Above 48 KiB a kernel must opt in to dynamic shared memory.
  ::int8_hybrid_moe::detail::set_max_dynamic_smem_once(reinterpret_cast<const void*>(kernel),
                                                       kSmem);
  const int64_t grid = count_output_tiles(p, Cfg::BN, max_m_tiles);  // one CTA per tile
  if (grid == 0) return;
  kernel<<<static_cast<unsigned>(grid), Cfg::kThreads, kSmem, stream>>>(p);
  I8H_CHECK_LAUNCH("grouped_gemm_sm80_kernel");
}

// The tile configs (BM, BN, BK, warps M x N, stages). Shared memory per CTA stays under the
// 99 KiB opt-in limit of SM89 so every config runs on SM80, SM89 and SM90.
using Tile64x64x128 = TileConfig<64, 64, 128, 2, 2, 4>;    // 69.6 KiB
using Tile128x64x128 = TileConfig<128, 64, 128, 4, 2, 3>;  // 78 KiB
using Tile64x64x64 = TileConfig<64, 64, 64, 2, 2, 4>;      // 36.9 KiB
using Tile128x64x64 = TileConfig<128, 64, 64, 4, 2, 4>;    // 55 KiB
using Tile128x128x64 =
    TileConfig<128, 128, 64, 2, 2, 4>;  // 72 KiB, 64x64 warp tiles (per-token only)

// Hybrid GEMM dispatch over (tile, K tile) for one output type; each gemm_instances_hybrid_*.cu
// instantiates it for its dtype so the heavy instantiations compile in parallel.
template <typename Out>
void launch_hybrid_gemm_for(GemmTile tile, int bk, GroupedGemmParams& p, int64_t max_m_tiles,
                            cudaStream_t s) {
  if (tile == GemmTile::k64x64 && bk == 128)
    return launch_grouped_gemm_kernel<GemmTile::k64x64, Tile64x64x128, Scheme::kHybrid, Out>(
        p, max_m_tiles, s);
  if (tile == GemmTile::k128x64 && bk == 128)
    return launch_grouped_gemm_kernel<GemmTile::k128x64, Tile128x64x128, Scheme::kHybrid, Out>(
        p, max_m_tiles, s);
  if (tile == GemmTile::k64x64 && bk == 64)
    return launch_grouped_gemm_kernel<GemmTile::k64x64, Tile64x64x64, Scheme::kHybrid, Out>(
        p, max_m_tiles, s);
  if (tile == GemmTile::k128x64 && bk == 64)
    return launch_grouped_gemm_kernel<GemmTile::k128x64, Tile128x64x64, Scheme::kHybrid, Out>(
        p, max_m_tiles, s);
  throw InvalidArgument(::int8_hybrid_moe::detail::concat(
      "int8_hybrid_grouped_gemm: argument 'tile' must be 64x64 or 128x64 (the hybrid kernel keeps ",
      "three accumulator sets in registers; 128x128 is per-token only), got ",
      gemm_tile_name(tile)));
}

}  // namespace int8_hybrid_moe::gemm
