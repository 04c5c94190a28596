// Instantiations of the per-token x per-channel grouped GEMM.
#include "launchers/gemm_configs.h"
#include "launchers/gemm_launch.cuh"

namespace int8_hybrid_moe::gemm {

namespace {
template <typename Out>
void dispatch_tile(GemmTile tile, GroupedGemmParams& p, int64_t max_m_tiles, cudaStream_t s) {
  switch (tile) {
    case GemmTile::k64x64:
      return launch_grouped_gemm_kernel<GemmTile::k64x64, Tile64x64x128, Scheme::kPerToken, Out>(
          p, max_m_tiles, s);
    case GemmTile::k128x64:
      return launch_grouped_gemm_kernel<GemmTile::k128x64, Tile128x64x128, Scheme::kPerToken, Out>(
          p, max_m_tiles, s);
    case GemmTile::k128x128:
      return launch_grouped_gemm_kernel<GemmTile::k128x128, Tile128x128x64, Scheme::kPerToken, Out>(
          p, max_m_tiles, s);
    default:
      throw InvalidArgument(::int8_hybrid_moe::detail::concat(
          "int8_grouped_gemm: argument 'tile' must be a concrete ", "tile config, got ",
          static_cast<int>(tile)));
  }
}
}  // namespace

void launch_per_token_gemm(GemmTile tile, DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                           cudaStream_t stream) {
  if (out == DType::kBFloat16)
    dispatch_tile<__nv_bfloat16>(tile, p, max_m_tiles, stream);
  else
    dispatch_tile<__half>(tile, p, max_m_tiles, stream);
}

}  // namespace int8_hybrid_moe::gemm
