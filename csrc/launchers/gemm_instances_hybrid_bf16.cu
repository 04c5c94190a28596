// Instantiations of the hybrid blockwise grouped GEMM with bf16 output (one file per output dtype
// so the heavy template instantiations compile in parallel).
#include "launchers/gemm_configs.h"
#include "launchers/gemm_launch.cuh"

namespace int8_hybrid_moe::gemm {

void launch_hybrid_gemm_bf16(GemmTile tile, int bk, GroupedGemmParams& p, int64_t max_m_tiles,
                             cudaStream_t s) {
  using Out = __nv_bfloat16;
  if (tile == GemmTile::k64x64 && bk == 128)
    return launch_grouped_gemm_kernel<Tile64x64x128, Scheme::kHybrid, Out>(p, max_m_tiles, s);
  if (tile == GemmTile::k128x64 && bk == 128)
    return launch_grouped_gemm_kernel<Tile128x64x128, Scheme::kHybrid, Out>(p, max_m_tiles, s);
  if (tile == GemmTile::k64x64 && bk == 64)
    return launch_grouped_gemm_kernel<Tile64x64x64, Scheme::kHybrid, Out>(p, max_m_tiles, s);
  if (tile == GemmTile::k128x64 && bk == 64)
    return launch_grouped_gemm_kernel<Tile128x64x64, Scheme::kHybrid, Out>(p, max_m_tiles, s);
  throw InvalidArgument(::int8_hybrid_moe::detail::concat(
      "int8_hybrid_grouped_gemm: argument 'tile' must be 64x64 or 128x64 (the hybrid kernel keeps ",
      "three accumulator sets in registers; 128x128 is per-token only), got ",
      gemm_tile_name(tile)));
}

}  // namespace int8_hybrid_moe::gemm
