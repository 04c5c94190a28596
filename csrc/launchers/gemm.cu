// Host launchers of the grouped GEMMs: argument checks, tile-config heuristic, device-side
// scheduling of the per-expert tiles, then the kernel. The kernels live in kernels/gemm/.
#include <cstring>

#ifndef I8H_WITH_SM90
#define I8H_WITH_SM90 0
#endif

#include "int8_hybrid_moe/gemm.h"
#include "kernels/gemm/grouped_gemm_sm80.cuh"
#include "kernels/gemm/group_tiles.cuh"
#include "launchers/cuda_check.h"
#include "launchers/gemm_configs.h"

namespace int8_hybrid_moe {

const char* gemm_tile_name(GemmTile t) {
  switch (t) {
    case GemmTile::kAuto:
      return "auto";
    case GemmTile::k64x64:
      return "64x64";
    case GemmTile::k128x64:
      return "128x64";
    case GemmTile::k128x128:
      return "128x128";
    case GemmTile::kSm90_128x128:
      return "sm90_128x128";
    case GemmTile::kSm90_128x256:
      return "sm90_128x256";
  }
  return "invalid";
}

namespace {
// The hybrid GEMM's K tile, the one owner of the rule: 128 where every K-block is whole K tiles
// of 128, else 64 (SM80 only). The SM90 kernel has only the 128 K tile, so it takes B a multiple
// of 128 (B / 128 K tiles per block).
int hybrid_k_tile(int block_size) {
  return block_size % 128 == 0 ? 128 : 64;
}
}  // namespace

bool gemm_sm90_available() {
#if I8H_WITH_SM90
  return detail::current_device_cc() == 90;
#else
  return false;
#endif
}

void require_gemm_tile_runnable(GemmTile t, const char* fn, const char* arg) {
  if (!is_sm90_tile(t)) return;
  I8H_CHECK_ARG(
      gemm_sm90_available(), fn, arg,
      detail::concat(gemm_tile_name(t),
                     " only on a compute capability 9.0 GPU with a build for arch 90"),
      detail::concat(gemm_tile_name(t), " on compute capability ", detail::current_device_cc(),
                     I8H_WITH_SM90 ? "" : " (this build has no arch 90)"));
}

// Heuristic (docs/PERF.md):
// - the SM90 kernel (wgmma, TMA) wherever it runs (and, hybrid, B = 128): on the H200 it beats
//   every SM80 tile both at 256 rows per expert (the default shape) and at 2 rows per expert
//   (decode, M = 64), since a consumer warpgroup whose 64 rows are all padding skips its wgmmas
//   (docs/PERF.md v8-v9). The hybrid takes 128 x 128 (its only SM90 tile). Per-token takes the
//   pingpong 128 x 128 tile unless K >= 2048 and N * K >= 2^22, where 128 x 256 is faster.
//   Measured on the H100 at 256 rows per expert after v17 (docs/PERF.md: the producer's tile
//   decodes read a shared-memory copy of tile_offsets, which lifted the pingpong tile 12% at
//   K = 2048), fourteen N x K:
//   - the pingpong tile, which hides each epilogue under the other warpgroup's wgmmas, is 3-15%
//     faster at every K <= 1024 (N = 1024 to 4096) and at K = 2048 with N <= 1024 (2.5% at the
//     MoE GEMM1, 1024 x 2048; 9% at 512 x 2048);
//   - 128 x 256, which moves a quarter fewer L2 -> SM bytes per output, is 10-24% faster at
//     2048 x 2048, 1024 x 4096 and 2048 x 4096;
//   - decode (M = 64, 2 rows per expert): 128 x 128 is 1% faster on GEMM1 and 18% faster on
//     GEMM2 than 128 x 256 (v16).
// SM80 tiles (measured on H100 at the default MoE shape, mean 256 rows/expert; v22):
// - hybrid: 64x64 tiles (4 warps, two CTAs per SM) beat 128x64 on both MoE GEMMs (1.05 vs 1.26 ms
//   and 0.71 vs 0.90 ms); 128x64 is kept for very large experts, where a 64-row tile re-reads
//   the weights twice as often.
// - per-token: 128x128 (64x64 warp tiles) for large experts (0.46 vs 0.58 ms for 64x64 at GEMM1,
//   v23), 64x64 when experts are small (decode: 0.160 vs 0.170 ms; a 128-row tile is mostly
//   padding there).
GemmTile select_gemm_tile(const GroupedGemmShape& s, bool hybrid, int block_size) {
  const int64_t mean_rows = s.num_experts > 0 ? s.R / s.num_experts : s.R;
  if (gemm_sm90_available() && (!hybrid || hybrid_k_tile(block_size) == 128))
    return hybrid || mean_rows < 64 || s.K < 2048 || s.N * s.K < (int64_t(1) << 22)
               ? GemmTile::kSm90_128x128
               : GemmTile::kSm90_128x256;
  if (hybrid) return mean_rows < 1024 ? GemmTile::k64x64 : GemmTile::k128x64;
  return mean_rows < 96 ? GemmTile::k64x64 : GemmTile::k128x128;
}

void validate_gemm_tile(GemmTile t, bool hybrid, int block_size, const char* fn, const char* arg) {
  I8H_CHECK_ARG(static_cast<int>(t) >= 0 && t <= kLastGemmTile, fn, arg, "a GemmTile value",
                static_cast<int>(t));
  if (!hybrid) return;
  I8H_CHECK_ARG(t != GemmTile::k128x128 && t != GemmTile::kSm90_128x256, fn, arg,
                "64x64, 128x64 or sm90_128x128 for the hybrid GEMM", gemm_tile_name(t));
  I8H_CHECK_ARG(
      t != GemmTile::kSm90_128x128 || hybrid_k_tile(block_size) == 128, fn, "block_size (B)",
      "a multiple of 128 for the sm90_128x128 tile (whole K tiles of 128 per block)", block_size);
}

size_t grouped_gemm_workspace_size(int num_experts) {
  return static_cast<size_t>(num_experts + 1) * sizeof(int);
}

namespace {

constexpr int kScanThreads = 256;

void validate_shape(const GroupedGemmShape& s, const void* workspace, size_t workspace_bytes,
                    const int64_t* expert_offsets, const void* C, const char* fn) {
  I8H_CHECK_ARG(s.R >= 0, fn, "shape.R", ">= 0", s.R);
  I8H_CHECK_ARG(s.num_experts >= 1, fn, "shape.num_experts", ">= 1", s.num_experts);
  I8H_CHECK_ARG(s.N > 0 && s.N % 8 == 0, fn, "shape.N", "a positive multiple of 8", s.N);
  validate_reduction_dim(s.K, fn, "shape.K");
  I8H_CHECK_NOT_NULL(expert_offsets, fn, "expert_offsets");
  I8H_CHECK_NOT_NULL(C, fn, "C");
  I8H_CHECK_ARG(reinterpret_cast<uintptr_t>(C) % 16 == 0, fn, "C",
                "16-byte aligned (the epilogue stores 16 bytes)", "a misaligned pointer");
  I8H_CHECK_NOT_NULL(workspace, fn, "workspace");
  I8H_CHECK_ARG(workspace_bytes >= grouped_gemm_workspace_size(s.num_experts), fn,
                "workspace_bytes",
                detail::concat(">= ", grouped_gemm_workspace_size(s.num_experts)), workspace_bytes);
}

void check_int8_operand(const int8_t* p, const char* fn, const char* name) {
  I8H_CHECK_NOT_NULL(p, fn, name);
  I8H_CHECK_ARG(reinterpret_cast<uintptr_t>(p) % 16 == 0, fn, name,
                "16-byte aligned (cp.async loads 16 bytes)", "a misaligned pointer");
}

// The concrete tile (kAuto resolved on the current device); a forced SM90 tile must be runnable.
GemmTile resolve_tile(GemmTile tile, const GroupedGemmShape& s, bool hybrid, int block_size,
                      const char* fn) {
  if (tile == GemmTile::kAuto) return select_gemm_tile(s, hybrid, block_size);
  require_gemm_tile_runnable(tile, fn, "tile");
  return tile;
}

// Per-expert M-tile offsets on the device; returns the grid's upper bound of M-tiles, which
// needs no device data: sum_e ceil(rows_e / BM) <= R / BM + E.
int64_t schedule_tiles(const GroupedGemmShape& s, const int64_t* expert_offsets, int block_m,
                       void* workspace, cudaStream_t stream) {
  int* tile_offsets = static_cast<int*>(workspace);
  gemm::compute_group_tile_offsets<kScanThreads>
      <<<1, kScanThreads, 0, stream>>>(expert_offsets, s.num_experts, s.R, block_m, tile_offsets);
  I8H_CHECK_LAUNCH("compute_group_tile_offsets");
  return s.R / block_m + s.num_experts;
}

void launch_sm90(GemmTile t, bool hybrid, DType out, gemm::GroupedGemmParams& p,
                 int64_t max_m_tiles, cudaStream_t stream) {
#if I8H_WITH_SM90
  if (hybrid)
    gemm::launch_hybrid_gemm_sm90(out, p, max_m_tiles, stream);
  else
    gemm::launch_per_token_gemm_sm90(t, out, p, max_m_tiles, stream);
#else
  (void)t, (void)hybrid, (void)out, (void)p, (void)max_m_tiles, (void)stream;
  throw CudaError(
      "grouped GEMM: the SM90 kernels are not in this build");  // resolve_tile prevents it
#endif
}

gemm::GroupedGemmParams base_params(const GroupedGemmShape& s, const int8_t* A, const int8_t* B,
                                    void* C, const int64_t* offsets, void* workspace) {
  gemm::GroupedGemmParams p;
  std::memset(&p, 0, sizeof(p));
  p.A = A;
  p.B = B;
  p.C = C;
  p.expert_offsets = offsets;
  p.tile_offsets = static_cast<const int*>(workspace);
  p.R = s.R;
  p.N = s.N;
  p.K = s.K;
  p.num_experts = s.num_experts;
  return p;
}

}  // namespace

void int8_grouped_gemm(const GroupedGemmShape& shape, const PerTokenGemmArgs& a, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream, GemmTile tile) {
  constexpr const char* fn = "int8_grouped_gemm";
  validate_shape(shape, workspace, workspace_bytes, a.expert_offsets, a.C, fn);
  I8H_CHECK_ARG(shape.K <= kPerTokenMaxK, fn, "shape.K",
                detail::concat("<= ", kPerTokenMaxK, " (int32 accumulation stays exact)"), shape.K);
  check_int8_operand(a.A, fn, "A");
  check_int8_operand(a.B, fn, "B");
  I8H_CHECK_NOT_NULL(a.scale_a, fn, "scale_a");
  I8H_CHECK_NOT_NULL(a.scale_b, fn, "scale_b");
  validate_dtype(a.out_dtype, fn, "out_dtype");
  validate_gemm_tile(tile, /*hybrid=*/false, 0, fn, "tile");
  if (shape.R == 0) return;
  const GemmTile t = resolve_tile(tile, shape, /*hybrid=*/false, 0, fn);

  gemm::GroupedGemmParams p = base_params(shape, a.A, a.B, a.C, a.expert_offsets, workspace);
  p.scale_a = a.scale_a;
  p.scale_b = a.scale_b;
  p.scale_a_per_row = a.scale_a_per_row;
  p.scale_b_per_channel = a.scale_b_per_channel;
  const int64_t max_m_tiles = schedule_tiles(
      shape, a.expert_offsets, gemm::tile_block_m(t, /*hybrid=*/false), workspace, stream);
  if (is_sm90_tile(t))
    launch_sm90(t, /*hybrid=*/false, a.out_dtype, p, max_m_tiles, stream);
  else
    gemm::launch_per_token_gemm(t, a.out_dtype, p, max_m_tiles, stream);
}

void int8_hybrid_grouped_gemm(const GroupedGemmShape& shape, const HybridFormat& fmt,
                              const HybridGemmArgs& a, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream, GemmTile tile) {
  constexpr const char* fn = "int8_hybrid_grouped_gemm";
  validate_shape(shape, workspace, workspace_bytes, a.expert_offsets, a.C, fn);
  validate_format(fmt, fn);
  // The K tile (64 or 128) must divide the block so each block's sum completes in registers.
  I8H_CHECK_ARG(fmt.block_size % 64 == 0, fn, "block_size (B)",
                "a multiple of 64 for the GEMM kernel (its K tile is 64 or 128)", fmt.block_size);
  check_int8_operand(a.A, fn, "A");
  check_int8_operand(a.B, fn, "B");
  I8H_CHECK_NOT_NULL(a.QA, fn, "QA");
  I8H_CHECK_NOT_NULL(a.FA, fn, "FA");
  I8H_CHECK_NOT_NULL(a.QB, fn, "QB");
  I8H_CHECK_NOT_NULL(a.FB, fn, "FB");
  validate_dtype(a.out_dtype, fn, "out_dtype");
  validate_gemm_tile(tile, /*hybrid=*/true, fmt.block_size, fn, "tile");
  if (shape.R == 0) return;
  const GemmTile t = resolve_tile(tile, shape, /*hybrid=*/true, fmt.block_size, fn);

  gemm::GroupedGemmParams p = base_params(shape, a.A, a.B, a.C, a.expert_offsets, workspace);
  p.QA = a.QA;
  p.QB = a.QB;
  p.FA = a.FA;
  p.FB = a.FB;
  p.nb = static_cast<int>(num_blocks(shape.K, fmt));
  p.ng = static_cast<int>(num_groups(shape.K, fmt));
  const int bk = hybrid_k_tile(fmt.block_size);
  p.k_tiles_per_block = fmt.block_size / bk;
  p.blocks_per_group = fmt.super_group;
  p.flush_period = static_cast<int>(int32_blocks_per_flush(fmt));
  const int64_t max_m_tiles = schedule_tiles(
      shape, a.expert_offsets, gemm::tile_block_m(t, /*hybrid=*/true), workspace, stream);
  if (is_sm90_tile(t))
    launch_sm90(t, /*hybrid=*/true, a.out_dtype, p, max_m_tiles, stream);
  else if (a.out_dtype == DType::kBFloat16)
    gemm::launch_hybrid_gemm_bf16(t, bk, p, max_m_tiles, stream);
  else
    gemm::launch_hybrid_gemm_fp16(t, bk, p, max_m_tiles, stream);
}

}  // namespace int8_hybrid_moe
