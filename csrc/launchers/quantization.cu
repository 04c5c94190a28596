// Host launchers of the row quantization kernels (hybrid and per-token; plain, fused with the
// permute scatter, fused with SiLU-and-mul; weights). Arguments are validated before any CUDA
// call; the launch configuration (team size, chunks per thread, grid) is chosen here.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "int8_hybrid_moe/kernels.h"
#include "kernels/quantization/quantize_rows.cuh"
#include "launchers/cuda_check.h"

namespace int8_hybrid_moe {
namespace {

using kernels::kQuantThreads;
using kernels::RowQuantParams;

// A row is held on chip: at most 256 threads x 8 chunks x 16 elements.
constexpr int64_t kMaxRowK = int64_t(kQuantThreads) * 8 * 16;

void check_k(int64_t K, const char* fn, const char* arg) {
  validate_reduction_dim(K, fn, arg);
  I8H_CHECK_ARG(K <= kMaxRowK, fn, arg, detail::concat("at most ", kMaxRowK, " (row held on chip)"),
                K);
}

void check_aligned(const void* p, const char* fn, const char* arg) {
  I8H_CHECK_ARG(reinterpret_cast<uintptr_t>(p) % 16 == 0, fn, arg,
                "16-byte aligned (vectorized rows)", p);
}

void check_hybrid_out(const HybridQuantOutput& out, const char* fn) {
  I8H_CHECK_NOT_NULL(out.q, fn, "out.q");
  I8H_CHECK_NOT_NULL(out.Q, fn, "out.Q");
  I8H_CHECK_NOT_NULL(out.F, fn, "out.F");
  check_aligned(out.q, fn, "out.q");
}

void check_per_token_out(const PerTokenQuantOutput& out, const char* fn) {
  I8H_CHECK_NOT_NULL(out.q, fn, "out.q");
  I8H_CHECK_NOT_NULL(out.scale, fn, "out.scale");
  check_aligned(out.q, fn, "out.q");
}

// Team size (threads per row) and chunks per thread for a row of K elements: a warp per row
// for short rows (many rows in flight), larger teams so no thread holds more than 8 chunks.
struct RowConfig {
  int team;
  int cpt;
};
RowConfig row_config(int64_t K) {
  const int64_t chunks = K / 16;
  int team = 32;
  while (chunks > int64_t(team) * 2 && team < kQuantThreads) team *= 2;
  const int64_t need = (chunks + team - 1) / team;
  const int cpt = need <= 1 ? 1 : need <= 2 ? 2 : need <= 4 ? 4 : 8;
  return {team, cpt};
}

template <DType T, bool kSilu, bool kHybrid, int CPT>
void launch_cpt(const RowQuantParams& p, cudaStream_t stream) {
  auto kernel = kernels::quantize_rows_kernel<T, kSilu, kHybrid, CPT>;
  const int teams = kQuantThreads / p.team;
  const size_t smem = size_t(teams) * size_t(p.nb + p.ng) * sizeof(uint32_t);
  int per_sm = 0;
  I8H_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kQuantThreads, smem));
  const int64_t cap = int64_t(std::max(per_sm, 1)) * detail::current_device_sm_count();
  const int64_t want = (p.num_rows + teams - 1) / teams;
  const int grid = static_cast<int>(std::max<int64_t>(1, std::min(cap, want)));
  kernel<<<grid, kQuantThreads, smem, stream>>>(p);
  I8H_CHECK_LAUNCH("quantize_rows_kernel");
}

// --- Warp-per-row kernel -------------------------------------------------------------------
// Rows of at most kWarpMaxVpt vectors (8 elements) per lane: K <= 4096.
constexpr int kWarpMaxVpt = 16;

int log2_exact(int64_t v) {  // log2 of a power of two, -1 otherwise
  if (v <= 0 || (v & (v - 1)) != 0) return -1;
  int l = 0;
  while ((int64_t(1) << l) < v) ++l;
  return l;
}

// Shuffle pattern of a reduction span of `span` vectors in a row of nvec vectors held as
// `vpt` vectors per lane: the whole row; a power of two <= 32 of lanes; or all 32 lanes times
// a power of two of each lane's vectors. false: not expressible (the team kernel runs instead).
bool span_bits(int64_t span, int64_t nvec, int vpt, int& lane_bits, int& vec_bits) {
  if (span >= nvec) {
    lane_bits = 5;
    vec_bits = log2_exact(vpt);
    return true;
  }
  const int l = log2_exact(span);
  if (l < 0) return false;
  lane_bits = std::min(l, 5);
  vec_bits = std::max(l - 5, 0);
  return true;
}

template <DType T, bool kSilu, bool kHybrid, int VPT>
void launch_warp(const RowQuantParams& p, cudaStream_t stream) {
  auto kernel = kernels::quantize_rows_warp_kernel<T, kSilu, kHybrid, VPT>;
  int per_sm = 0;
  I8H_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kQuantThreads, 0));
  const int64_t cap = int64_t(std::max(per_sm, 1)) * detail::current_device_sm_count();
  constexpr int kWarps = kQuantThreads / 32;
  const int64_t want = (p.num_rows + kWarps - 1) / kWarps;
  const int grid = static_cast<int>(std::max<int64_t>(1, std::min(cap, want)));
  kernel<<<grid, kQuantThreads, 0, stream>>>(p);
  I8H_CHECK_LAUNCH("quantize_rows_warp_kernel");
}

// Sets the warp kernel's fields of p and returns its vectors per lane, or 0 when the row or the
// spans do not fit it. block_elems: B (hybrid) or K (per-token); group_blocks: S or 1.
int warp_config(RowQuantParams& p, int64_t block_elems, int64_t group_blocks) {
  const int64_t nvec = p.K / 8;
  int vpt = 1;
  while (int64_t(vpt) * 32 < nvec) vpt *= 2;
  if (vpt > kWarpMaxVpt) return 0;
  const int64_t vblk = block_elems / 8;
  const int64_t vgrp = std::min(vblk * group_blocks, nvec);
  if (!span_bits(vblk, nvec, vpt, p.blk_lane_bits, p.blk_vec_bits)) return 0;
  if (!span_bits(vgrp, nvec, vpt, p.grp_lane_bits, p.grp_vec_bits)) return 0;
  p.blk_shift = vblk >= nvec ? 30 : log2_exact(vblk);
  p.grp_shift = vgrp >= nvec ? 30 : log2_exact(vgrp);
  return vpt;
}

// Fills the launch configuration of p (K, format fields already set) and launches.
template <bool kSilu, bool kHybrid>
void launch_rows(DType dtype, RowQuantParams p, cudaStream_t stream) {
  if (p.num_rows == 0) return;
  const int64_t block_elems = kHybrid ? int64_t(p.chunks_per_block) * 16 : int64_t(p.K);
  const int vpt = warp_config(p, block_elems, kHybrid ? p.S : 1);
  if (vpt > 0) {
    I8H_DISPATCH_DTYPE(dtype, T, {
      switch (vpt) {
        case 1:
          launch_warp<T, kSilu, kHybrid, 1>(p, stream);
          break;
        case 2:
          launch_warp<T, kSilu, kHybrid, 2>(p, stream);
          break;
        case 4:
          launch_warp<T, kSilu, kHybrid, 4>(p, stream);
          break;
        case 8:
          launch_warp<T, kSilu, kHybrid, 8>(p, stream);
          break;
        default:
          launch_warp<T, kSilu, kHybrid, 16>(p, stream);
          break;
      }
    });
    return;
  }
  const RowConfig cfg = row_config(p.K);
  p.team = cfg.team;
  I8H_DISPATCH_DTYPE(dtype, T, {
    switch (cfg.cpt) {
      case 1:
        launch_cpt<T, kSilu, kHybrid, 1>(p, stream);
        break;
      case 2:
        launch_cpt<T, kSilu, kHybrid, 2>(p, stream);
        break;
      case 4:
        launch_cpt<T, kSilu, kHybrid, 4>(p, stream);
        break;
      default:
        launch_cpt<T, kSilu, kHybrid, 8>(p, stream);
        break;
    }
  });
}

void set_hybrid(RowQuantParams& p, int64_t K, const HybridFormat& fmt, const HybridQuantOutput& o) {
  p.K = static_cast<int>(K);
  p.chunks_per_block = fmt.block_size / 16;
  p.nb = static_cast<int>(num_blocks(K, fmt));
  p.ng = static_cast<int>(num_groups(K, fmt));
  p.S = fmt.super_group;
  p.q_max = fmt.q_max;
  p.q = o.q;
  p.Q = o.Q;
  p.F = o.F;
}

void set_per_token(RowQuantParams& p, int64_t K, const PerTokenQuantOutput& o) {
  p.K = static_cast<int>(K);
  p.chunks_per_block = static_cast<int>(K / 16);  // one block = the whole row
  p.nb = p.ng = p.S = p.q_max = 1;
  p.q = o.q;
  p.F = o.scale;
}

void check_rows(int64_t R, const char* fn, const char* arg) {
  I8H_CHECK_ARG(R >= 0, fn, arg, ">= 0", R);
}

// The bf16/fp16 source of a row kernel: non-null and aligned for its 16-byte loads.
void check_source(const void* x, const char* fn, const char* arg) {
  I8H_CHECK_NOT_NULL(x, fn, arg);
  check_aligned(x, fn, arg);
}

// `rows` source rows of `cols` quantized elements each: plain rows of `cols` values, or (SiLU)
// rows holding the gate half then the up half, `cols` values each.
RowQuantParams row_source(const void* x, int64_t rows, int64_t cols, bool silu,
                          const int64_t* num_valid_rows) {
  RowQuantParams p;
  p.x = static_cast<const uint16_t*>(x);
  p.x_row_stride = silu ? 2 * cols : cols;
  p.up_offset = silu ? cols : 0;
  p.num_rows = rows;
  p.num_valid_rows = num_valid_rows;
  return p;
}

}  // namespace

void quantize_rows_hybrid(const void* x, DType dtype, int64_t R, int64_t K, const HybridFormat& fmt,
                          const HybridQuantOutput& out, const int64_t* num_valid_rows,
                          cudaStream_t stream) {
  const char* fn = "quantize_rows_hybrid";
  validate_dtype(dtype, fn);
  validate_format(fmt, fn);
  check_rows(R, fn, "R");
  check_k(K, fn, "K");
  if (R == 0) return;
  check_source(x, fn, "x");
  check_hybrid_out(out, fn);
  RowQuantParams p = row_source(x, R, K, /*silu=*/false, num_valid_rows);
  set_hybrid(p, K, fmt, out);
  launch_rows<false, true>(dtype, p, stream);
}

void quantize_rows_per_token(const void* x, DType dtype, int64_t R, int64_t K,
                             const PerTokenQuantOutput& out, const int64_t* num_valid_rows,
                             cudaStream_t stream) {
  const char* fn = "quantize_rows_per_token";
  validate_dtype(dtype, fn);
  check_rows(R, fn, "R");
  check_k(K, fn, "K");
  if (R == 0) return;
  check_source(x, fn, "x");
  check_per_token_out(out, fn);
  RowQuantParams p = row_source(x, R, K, /*silu=*/false, num_valid_rows);
  set_per_token(p, K, out);
  launch_rows<false, false>(dtype, p, stream);
}

namespace {
void check_permute_args(const void* hidden, const int32_t* tsp, int64_t M, int top_k, int64_t K,
                        const char* fn) {
  check_rows(M, fn, "num_tokens");
  I8H_CHECK_ARG(top_k >= 1, fn, "top_k", ">= 1", top_k);
  I8H_CHECK_ARG(M <= std::numeric_limits<int32_t>::max() / top_k, fn, "num_tokens * top_k",
                "at most 2^31 - 1 (int32 row indices)", M * top_k);
  check_k(K, fn, "K");
  if (M == 0) return;
  check_source(hidden, fn, "hidden");
  I8H_CHECK_NOT_NULL(tsp, fn, "token_slot_to_permuted");
}
}  // namespace

void permute_quantize_hybrid(const void* hidden, DType dtype, const int32_t* token_slot_to_permuted,
                             int64_t num_tokens, int top_k, int64_t K, const HybridFormat& fmt,
                             const HybridQuantOutput& out, cudaStream_t stream) {
  const char* fn = "permute_quantize_hybrid";
  validate_dtype(dtype, fn);
  validate_format(fmt, fn);
  check_permute_args(hidden, token_slot_to_permuted, num_tokens, top_k, K, fn);
  if (num_tokens == 0) return;
  check_hybrid_out(out, fn);
  RowQuantParams p = row_source(hidden, num_tokens, K, /*silu=*/false, nullptr);
  p.dest_map = token_slot_to_permuted;
  p.fanout = top_k;
  set_hybrid(p, K, fmt, out);
  launch_rows<false, true>(dtype, p, stream);
}

void permute_quantize_per_token(const void* hidden, DType dtype,
                                const int32_t* token_slot_to_permuted, int64_t num_tokens,
                                int top_k, int64_t K, const PerTokenQuantOutput& out,
                                cudaStream_t stream) {
  const char* fn = "permute_quantize_per_token";
  validate_dtype(dtype, fn);
  check_permute_args(hidden, token_slot_to_permuted, num_tokens, top_k, K, fn);
  if (num_tokens == 0) return;
  check_per_token_out(out, fn);
  RowQuantParams p = row_source(hidden, num_tokens, K, /*silu=*/false, nullptr);
  p.dest_map = token_slot_to_permuted;
  p.fanout = top_k;
  set_per_token(p, K, out);
  launch_rows<false, false>(dtype, p, stream);
}

void silu_and_mul_quantize_hybrid(const void* x, DType dtype, int64_t R, int64_t N,
                                  const HybridFormat& fmt, const HybridQuantOutput& out,
                                  const int64_t* num_valid_rows, cudaStream_t stream) {
  const char* fn = "silu_and_mul_quantize_hybrid";
  validate_dtype(dtype, fn);
  validate_format(fmt, fn);
  check_rows(R, fn, "R");
  check_k(N, fn, "N");
  if (R == 0) return;
  check_source(x, fn, "x");
  check_hybrid_out(out, fn);
  RowQuantParams p = row_source(x, R, N, /*silu=*/true, num_valid_rows);
  set_hybrid(p, N, fmt, out);
  launch_rows<true, true>(dtype, p, stream);
}

void silu_and_mul_quantize_per_token(const void* x, DType dtype, int64_t R, int64_t N,
                                     const PerTokenQuantOutput& out, const int64_t* num_valid_rows,
                                     cudaStream_t stream) {
  const char* fn = "silu_and_mul_quantize_per_token";
  validate_dtype(dtype, fn);
  check_rows(R, fn, "R");
  check_k(N, fn, "N");
  if (R == 0) return;
  check_source(x, fn, "x");
  check_per_token_out(out, fn);
  RowQuantParams p = row_source(x, R, N, /*silu=*/true, num_valid_rows);
  set_per_token(p, N, out);
  launch_rows<true, false>(dtype, p, stream);
}

void quantize_weights_hybrid(const void* w, DType dtype, int64_t E, int64_t N, int64_t K,
                             const HybridFormat& fmt, const HybridQuantOutput& out,
                             cudaStream_t stream) {
  const char* fn = "quantize_weights_hybrid";
  validate_dtype(dtype, fn);
  validate_format(fmt, fn);
  I8H_CHECK_ARG(E >= 1, fn, "E", ">= 1", E);
  I8H_CHECK_ARG(N >= 1, fn, "N", ">= 1", N);
  check_k(K, fn, "K");
  check_source(w, fn, "w");
  check_hybrid_out(out, fn);
  RowQuantParams p = row_source(w, E * N, K, /*silu=*/false, nullptr);
  set_hybrid(p, K, fmt, out);
  launch_rows<false, true>(dtype, p, stream);
}

void quantize_weights_per_channel(const void* w, DType dtype, int64_t E, int64_t N, int64_t K,
                                  const PerTokenQuantOutput& out, cudaStream_t stream) {
  const char* fn = "quantize_weights_per_channel";
  validate_dtype(dtype, fn);
  I8H_CHECK_ARG(E >= 1, fn, "E", ">= 1", E);
  I8H_CHECK_ARG(N >= 1, fn, "N", ">= 1", N);
  check_k(K, fn, "K");
  check_source(w, fn, "w");
  check_per_token_out(out, fn);
  RowQuantParams p = row_source(w, E * N, K, /*silu=*/false, nullptr);
  set_per_token(p, K, out);
  launch_rows<false, false>(dtype, p, stream);
}

}  // namespace int8_hybrid_moe
