// Instantiations of the hybrid blockwise grouped GEMM with fp16 output (one file per output dtype
// so the heavy template instantiations compile in parallel).
#include "launchers/gemm_configs.h"
#include "launchers/gemm_launch.cuh"

namespace int8_hybrid_moe::gemm {

void launch_hybrid_gemm_fp16(GemmTile tile, int bk, GroupedGemmParams& p, int64_t max_m_tiles,
                             cudaStream_t stream) {
  launch_hybrid_gemm_for<__half>(tile, bk, p, max_m_tiles, stream);
}

}  // namespace int8_hybrid_moe::gemm
