// Launchers of the SM90 (wgmma + TMA) grouped GEMMs: tensor maps, the persistent grid, the
// instantiations. This file is compiled for sm_90a only (CMake: int8_hybrid_moe_sm90); gemm.cu
// calls it on compute capability 9.0 devices when the build includes 90.
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstring>

#include "kernels/gemm/grouped_gemm_sm90.cuh"
#include "launchers/cuda_check.h"
#include "launchers/gemm_configs.h"

namespace int8_hybrid_moe::gemm {

namespace {

// Per-token 128 x 128: pingpong (each consumer warpgroup owns whole tiles, so one runs its
// epilogue under the other's wgmmas: -9% GEMM2 on the H100, docs/PERF.md v16), 6 stages of
// 32 KiB (193 KiB); 7 measured slower. Per-token 128 x 256: 4 stages of 48 KiB (193 KiB); a
// quarter fewer L2 -> SM bytes per output than 128 x 128 (docs/PERF.md v8). Hybrid: split, two
// independent rings of 3 stages of 24 KiB (64-row A, 128-row B) plus two block-scale slots each
// (197 KiB in all); it replaced the cooperative 128 x 128 hybrid (5 stages of 32 KiB), which it
// beats by 2% at the default shape and 8-32% at decode (docs/PERF.md twelfth session).
using Sm90PerTokenTile = Sm90TileConfig<6, false, 128, 128, 1, /*pingpong=*/true>;
using Sm90PerTokenWideTile = Sm90TileConfig<4, false, 256>;
using Sm90HybridTile = Sm90TileConfig<3, true, 128, 64, 1, false, /*split=*/true>;

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    I8H_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                    cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || f == nullptr)
      throw CudaError("int8_grouped_gemm (SM90): the driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// Row-major int8 matrix [rows, K] (K contiguous, K % 16 == 0), loaded in boxes of box_rows x 128
// bytes with the 128-byte swizzle; out-of-bounds rows and columns read as zero.
CUtensorMap make_int8_tensor_map(const int8_t* base, int64_t rows, int64_t K, int box_rows) {
  CUtensorMap m;
  std::memset(&m, 0, sizeof(m));
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(K), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(K)};
  const cuuint32_t box[2] = {128, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(
      &m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<int8_t*>(base), dims, strides, box,
      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw CudaError(::int8_hybrid_moe::detail::concat(
        "int8_grouped_gemm (SM90): cuTensorMapEncodeTiled failed (CUresult ", static_cast<int>(r),
        ") for a [", rows, ", ", K, "] int8 operand"));
  return m;
}

template <GemmTile kTile, class Cfg, Scheme kScheme, typename Out, bool kMultiTileBlock>
void launch_sm90(GroupedGemmParams& p, int64_t max_m_tiles, cudaStream_t stream) {
  static_assert(Cfg::kHybrid == (kScheme == Scheme::kHybrid), "tile config of the other scheme");
  static_assert(config_matches_tile<Cfg>(kTile, Cfg::kHybrid),
                "the scheduler counts this tile's M-tiles with other sizes (tile_block_m/n)");
  auto kernel = grouped_gemm_sm90_kernel<Cfg, kScheme, Out, kMultiTileBlock>;
  // The attribute once at the limit; each launch asks for what it uses (the tile table varies).
  ::int8_hybrid_moe::detail::set_max_dynamic_smem_once(reinterpret_cast<const void*>(kernel),
                                                       Cfg::kSmemLimit);
  const int64_t tiles = count_output_tiles(p, Cfg::BN, max_m_tiles);
  I8H_CHECK_ARG(int64_t(p.num_experts) * p.N <= 0x7fffffff, "int8_grouped_gemm", "E * N",
                "below 2^31 (TMA row coordinate of B)", int64_t(p.num_experts) * p.N);
  if (tiles == 0) return;
  Sm90GemmParams params;
  params.p = p;
  params.tile_table_in_smem = Cfg::smem_bytes(p.num_experts, true) <= Cfg::kSmemLimit;
  const int smem = static_cast<int>(Cfg::smem_bytes(p.num_experts, params.tile_table_in_smem));
  params.tma_a = make_int8_tensor_map(p.A, p.R, p.K, Cfg::BM);
  params.tma_b = make_int8_tensor_map(p.B, int64_t(p.num_experts) * p.N, p.K, Cfg::BN);
  const int64_t grid =
      std::min<int64_t>(tiles, ::int8_hybrid_moe::detail::current_device_sm_count());
  kernel<<<static_cast<unsigned>(grid), Cfg::kThreads, smem, stream>>>(params);
  I8H_CHECK_LAUNCH("grouped_gemm_sm90_kernel");
}

template <GemmTile kTile, class Cfg, Scheme kScheme, bool kMultiTileBlock = false>
void launch_sm90_for(DType out, GroupedGemmParams& p, int64_t max_m_tiles, cudaStream_t stream) {
  if (out == DType::kBFloat16)
    launch_sm90<kTile, Cfg, kScheme, __nv_bfloat16, kMultiTileBlock>(p, max_m_tiles, stream);
  else
    launch_sm90<kTile, Cfg, kScheme, __half, kMultiTileBlock>(p, max_m_tiles, stream);
}

}  // namespace

void launch_per_token_gemm_sm90(GemmTile tile, DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                                cudaStream_t stream) {
  if (tile == GemmTile::kSm90_128x256)
    launch_sm90_for<GemmTile::kSm90_128x256, Sm90PerTokenWideTile, Scheme::kPerToken>(
        out, p, max_m_tiles, stream);
  else
    launch_sm90_for<GemmTile::kSm90_128x128, Sm90PerTokenTile, Scheme::kPerToken>(
        out, p, max_m_tiles, stream);
}

void launch_hybrid_gemm_sm90(DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                             cudaStream_t stream) {
  // B = 128: one K tile per block; B = 256, 384, ...: several (p.k_tiles_per_block).
  if (p.k_tiles_per_block > 1)
    launch_sm90_for<GemmTile::kSm90_128x128, Sm90HybridTile, Scheme::kHybrid,
                    /*multi_tile_block=*/true>(out, p, max_m_tiles, stream);
  else
    launch_sm90_for<GemmTile::kSm90_128x128, Sm90HybridTile, Scheme::kHybrid>(out, p, max_m_tiles,
                                                                              stream);
}

}  // namespace int8_hybrid_moe::gemm
