// INT8 grouped GEMM over experts for SM80+ tensor cores (mma.sync m16n8k32 s8, cp.async
// multistage pipeline), built from CuTe's SM80 atoms. One kernel template serves both schemes:
//
//   kPerToken: C = float(sum_k a*b) * scale_a[r] * scale_b[e, n]
//   kHybrid:   per K-block b the int32 block sum is rescaled by QA[r,b]*QB[n,b] with an integer
//              multiply-add into an int32 accumulator, which is flushed into fp32 (times
//              FA[r,g]*FB[n,g]) every `flush_period` blocks and at each super-group end
//              (docs/FORMAT.md, "Exactness"). flush_period == 0 means one block term may exceed
//              int32 (large q_max): the term is then formed in fp32 for every block.
//
// The K tile equals or divides the quantization block, so each block's partial sum is complete
// in registers when its scales are applied. Rows of one expert are contiguous in A and C;
// M-tiles never straddle experts (see group_tiles.cuh).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/atom/copy_atom.hpp>

#include <cstdint>
#include <type_traits>

#include "kernels/gemm/grouped_gemm_common.cuh"
#include "kernels/gemm/register_ops.cuh"

namespace int8_hybrid_moe::gemm {

// Threadblock tile BM x BN x BK, WM x WN warps (each warp owns a 32 x 32 or 32 x 64 sub-tile),
// `Stages` shared-memory buffers in flight.
template <int BM_, int BN_, int BK_, int WM_, int WN_, int Stages_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_, Stages = Stages_;
  static constexpr int kThreads = WM * WN * 32;
  static_assert(BK == 64 || BK == 128, "K tile is 64 or 128 int8 (one swizzled 16-byte row set)");
  static_assert(BM % (16 * WM) == 0 && BN % (16 * WN) == 0, "warp layout must tile the CTA");

  // Warps arranged WM x WN; per MMA "tile" each warp does 16 rows x 16 columns (two 16x8 atoms
  // along N, so B fragments come from one ldmatrix.x4).
  using TiledMma = decltype(cute::make_tiled_mma(
      cute::SM80_16x8x32_S32S8S8S32_TN{},
      cute::Layout<cute::Shape<cute::Int<WM>, cute::Int<WN>, cute::_1>>{},
      cute::Tile<cute::Int<16 * WM>, cute::Int<16 * WN>, cute::_32>{}));

  // K-major rows of BK bytes; the XOR swizzle spreads the 8 rows an ldmatrix phase reads over
  // all 32 banks (16-byte granularity, so each cp.async destination stays contiguous).
  using SwizzleAtom = std::conditional_t<
      BK == 128,
      decltype(cute::composition(cute::Swizzle<3, 4, 3>{},
                                 cute::Layout<cute::Shape<cute::_8, cute::Int<BK>>,
                                              cute::Stride<cute::Int<BK>, cute::_1>>{})),
      decltype(cute::composition(cute::Swizzle<2, 4, 3>{},
                                 cute::Layout<cute::Shape<cute::_8, cute::Int<BK>>,
                                              cute::Stride<cute::Int<BK>, cute::_1>>{}))>;
  using SmemLayoutA = decltype(cute::tile_to_shape(
      SwizzleAtom{}, cute::make_shape(cute::Int<BM>{}, cute::Int<BK>{}, cute::Int<Stages>{})));
  using SmemLayoutB = decltype(cute::tile_to_shape(
      SwizzleAtom{}, cute::make_shape(cute::Int<BN>{}, cute::Int<BK>{}, cute::Int<Stages>{})));
  using SmemCopyAtom = cute::Copy_Atom<cute::SM75_U32x4_LDSM_N, int8_t>;

  // Per stage: A and B tiles, plus the block scales (QA, QB) and super-group scales (FA, FB) of
  // the K-block that ends in this stage's K tile (hybrid only, 4 bytes each).
  static constexpr int kTileBytes = (BM + BN) * BK;
  static constexpr int kScaleBytes = 2 * (BM + BN) * 4;
  static constexpr int kSmemBytes = Stages * (kTileBytes + kScaleBytes);
};

// The hybrid kernel keeps three accumulator sets (block sum, int32 chunk, fp32 total) plus the
// scales and needs ~240 registers (capping it at 168 for 3 CTAs/SM spilled 1 KB: PERF.md); the
// per-token kernel fits two CTAs per SM.
template <class Cfg, Scheme kScheme, typename Out>
__global__ void __launch_bounds__(Cfg::kThreads, kScheme == Scheme::kHybrid ? 1 : 2)
    grouped_gemm_sm80_kernel(const __grid_constant__ GroupedGemmParams p) {
  using namespace cute;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, Stages = Cfg::Stages;
  constexpr int kThreads = Cfg::kThreads;
  constexpr bool kHybrid = kScheme == Scheme::kHybrid;

  // ---- which tile -----------------------------------------------------------------------------
  const TileCoord tc = decode_tile(p, p.tile_offsets, static_cast<int>(blockIdx.x / p.n_tiles),
                                   static_cast<int>(blockIdx.x % p.n_tiles), BM, BN);
  if (tc.expert < 0) return;
  const int expert = tc.expert, rows_valid = tc.rows_valid, cols_valid = tc.cols_valid;
  const int64_t row0 = tc.row0, n0 = tc.n0;

  const int8_t* gA = p.A + row0 * p.K;
  const int8_t* gB = p.B + (int64_t(expert) * p.N + n0) * p.K;

  // ---- shared memory --------------------------------------------------------------------------
  extern __shared__ __align__(128) uint8_t smem[];
  int8_t* smem_a = reinterpret_cast<int8_t*>(smem);
  int8_t* smem_b = smem_a + cosize(typename Cfg::SmemLayoutA{});
  // Scales per stage: the block scales QA of the tile's BM rows then QB of its BN columns, and
  // likewise FA then FB (element e of stage s at s * (BM + BN) + e).
  int32_t* smem_q = reinterpret_cast<int32_t*>(smem_b + cosize(typename Cfg::SmemLayoutB{}));
  float* smem_f = reinterpret_cast<float*>(smem_q + Stages * (BM + BN));
  Tensor sA = make_tensor(make_smem_ptr(smem_a), typename Cfg::SmemLayoutA{});  // (BM,BK,S)
  Tensor sB = make_tensor(make_smem_ptr(smem_b), typename Cfg::SmemLayoutB{});  // (BN,BK,S)

  const int tid = static_cast<int>(threadIdx.x);
  const int k_tiles = static_cast<int>((p.K + BK - 1) / BK);

  // ---- global -> shared: one K tile of A and B (+ the scales of a block ending in it) --------
  // The loader runs Stages-1 tiles ahead of the MMAs with its own block cursor. Thread tid copies
  // the 16-byte chunk ld_kc of rows ld_row + i * kLdRowStep; the row predicates and base
  // addresses are fixed for the tile, so a K tile costs one add per copy (the per-copy row, bound
  // and 64-bit address arithmetic used to outnumber the MMA loop's instructions: PERF.md).
  constexpr int kChunksPerRow = BK / 16;
  constexpr int kLdRowStep = kThreads / kChunksPerRow;
  static_assert(kThreads % kChunksPerRow == 0 && BM % kLdRowStep == 0 && BN % kLdRowStep == 0,
                "every thread issues the same number of 16-byte copies");
  constexpr int kLdA = BM / kLdRowStep, kLdB = BN / kLdRowStep;
  const int ld_row = tid / kChunksPerRow, ld_kc = (tid % kChunksPerRow) * 16;
  // Source of copy i at K offset 0: its row's chunk, or the tile's first row's (a tile always has
  // one) for a row past the tile's data. A chunk past K (K < BK) starts at K - 16 instead, so
  // every address lies inside A or B, also for the copies that read nothing (src-size 0). Fixed
  // for the tile: a K tile adds its offset, no per-copy select of a safe address (PERF.md v26).
  // Rows holding data are a prefix of the thread's copies: copy i reads iff i < ld_a_n (ld_b_n).
  const int64_t ld_kc_in = min(int64_t(ld_kc), p.K - 16);
  const int8_t* ld_src_a[kLdA];
  const int8_t* ld_src_b[kLdB];
  int ld_a_n = 0, ld_b_n = 0;
  CUTE_UNROLL
  for (int i = 0; i < kLdA; ++i) {
    const int r = ld_row + i * kLdRowStep;
    ld_src_a[i] = gA + int64_t(r < rows_valid ? r : 0) * p.K + ld_kc_in;
    ld_a_n += r < rows_valid;
  }
  CUTE_UNROLL
  for (int i = 0; i < kLdB; ++i) {
    const int r = ld_row + i * kLdRowStep;
    ld_src_b[i] = gB + int64_t(r < cols_valid ? r : 0) * p.K + ld_kc_in;
    ld_b_n += r < cols_valid;
  }
  // Shared-memory destinations: copy i of stage s lands i * kLdRowStep rows and s stages past copy
  // 0 of stage 0. Both are multiples of the swizzle's span (8 rows), so they are plain offsets.
  static_assert(kLdRowStep % 8 == 0, "row steps keep the swizzle pattern");
  const uint32_t ld_sa = cute::cast_smem_ptr_to_uint(&sA(ld_row, ld_kc, 0));
  const uint32_t ld_sb = cute::cast_smem_ptr_to_uint(&sB(ld_row, ld_kc, 0));
  const int ld_k_end = static_cast<int>(min(p.K - ld_kc, int64_t(INT32_MAX)));
  // Scale element e < BM + BN of a tile belongs to row e of A (e < BM) or to row e - BM of the
  // expert's B; `i` is that row inside the tile. A row past the tile's data is read as the tile's
  // first one (always present) and zero-filled (`ok` false), so every address stays in bounds.
  struct ScaleRow {
    bool is_a, ok;
    int i;
  };
  auto scale_row = [&](int e) {
    const bool is_a = e < BM;
    const int i = is_a ? e : e - BM;
    const bool ok = i < (is_a ? rows_valid : cols_valid);
    return ScaleRow{is_a, ok, ok ? i : 0};
  };
  // Hybrid: thread tid < BM + BN copies the block (and super-group) scales of scale row tid.
  static_assert(!kHybrid || BM + BN <= kThreads, "one thread per scale row");
  const int32_t* sc_q = nullptr;
  const float* sc_f = nullptr;
  bool sc_ok = false;
  if constexpr (kHybrid) {
    const ScaleRow sr = scale_row(tid);
    const int64_t row = (sr.is_a ? row0 : int64_t(expert) * p.N + n0) + sr.i;
    sc_ok = sr.ok;
    sc_q = (sr.is_a ? p.QA : p.QB) + row * p.nb;
    sc_f = (sr.is_a ? p.FA : p.FB) + row * p.ng;
  }
  // Ring stage of K tile kt (kt >= 0: the unsigned remainder is one AND for 4 stages).
  auto stage_of = [](int kt) { return static_cast<int>(static_cast<unsigned>(kt) % Stages); };
  int load_kt = 0, load_j = 0;  // next K tile to load, its index inside its block
  BlockCursor load_block;
  auto load_next_tile = [&]() {
    const int kt = load_kt, stage = stage_of(load_kt);
    const int k0 = kt * BK;
    // K % 16 == 0: this thread's chunk of the K tile is all inside K or all past it (only in the
    // last K tile, when K % BK != 0); past it, no copy reads and the sources stay at K offset 0.
    const bool k_ok = k0 < ld_k_end;
    const uint32_t k_off = k_ok ? uint32_t(k0) : 0u;
    const int n_a = k_ok ? ld_a_n : 0, n_b = k_ok ? ld_b_n : 0;
    CUTE_UNROLL
    for (int i = 0; i < kLdA; ++i)
      detail::cp_async_16_zfill(ld_sa + uint32_t((stage * BM + i * kLdRowStep) * BK),
                                ld_src_a[i] + k_off, i < n_a);
    CUTE_UNROLL
    for (int i = 0; i < kLdB; ++i)
      detail::cp_async_16_zfill(ld_sb + uint32_t((stage * BN + i * kLdRowStep) * BK),
                                ld_src_b[i] + k_off, i < n_b);
    ++load_kt;
    if constexpr (kHybrid) {
      if (load_j + 1 == p.k_tiles_per_block || load_kt == k_tiles) {
        const int at = stage * (BM + BN) + tid;
        if (tid < BM + BN) {
          detail::cp_async_4_zfill(&smem_q[at], sc_q + load_block.b, sc_ok);
          if (load_block.flush(p))
            detail::cp_async_4_zfill(&smem_f[at], sc_f + load_block.g, sc_ok);
        }
        load_block.next(p);
        load_j = 0;
      } else {
        ++load_j;
      }
    }
  };

  // ---- MMA partitions -------------------------------------------------------------------------
  typename Cfg::TiledMma mma;
  auto thr_mma = mma.get_slice(tid);
  Tensor tCrA = thr_mma.partition_fragment_A(sA(_, _, 0));             // (MMA, MMA_M, MMA_K)
  Tensor tCrB = thr_mma.partition_fragment_B(sB(_, _, 0));             // (MMA, MMA_N, MMA_K)
  Tensor blk0 = partition_fragment_C(mma, Shape<Int<BM>, Int<BN>>{});  // int32 (MMA,MMA_M,MMA_N)
  auto s2r_a = make_tiled_copy_A(typename Cfg::SmemCopyAtom{}, mma);
  auto s2r_thr_a = s2r_a.get_slice(tid);
  Tensor tXsA = s2r_thr_a.partition_S(sA);
  Tensor tXrA = s2r_thr_a.retile_D(tCrA);
  auto s2r_b = make_tiled_copy_B(typename Cfg::SmemCopyAtom{}, mma);
  auto s2r_thr_b = s2r_b.get_slice(tid);
  Tensor tXsB = s2r_thr_b.partition_S(sB);
  Tensor tXrB = s2r_thr_b.retile_D(tCrB);
  // (m, n) inside the CTA tile of every accumulator element of this thread. In the SM80 16x8 C
  // layout the value mode is (2 columns, 2 rows): the row depends only on (v1, MMA_M index), the
  // column only on (v0, MMA_N index), so a thread touches 2*MMA_M rows and 2*MMA_N columns.
  Tensor tCcC = thr_mma.partition_C(make_identity_tensor(Shape<Int<BM>, Int<BN>>{}));
  constexpr int kMmaM = decltype(size<1>(blk0))::value, kMmaN = decltype(size<2>(blk0))::value;
  using PairMode = decltype(size<0, 0>(blk0));
  static_assert(PairMode::value == 2, "accumulator mode 0 must pair adjacent columns");
  int rows[2 * kMmaM], cols[2 * kMmaN];
  CUTE_UNROLL
  for (int mi = 0; mi < kMmaM; ++mi) CUTE_UNROLL
  for (int v = 0; v < 2; ++v) rows[v + 2 * mi] = get<0>(tCcC(make_coord(make_coord(0, v), mi, 0)));
  CUTE_UNROLL
  for (int ni = 0; ni < kMmaN; ++ni) CUTE_UNROLL
  for (int v = 0; v < 2; ++v) cols[v + 2 * ni] = get<1>(tCcC(make_coord(make_coord(v, 0), 0, ni)));
  auto elem = [](auto& t, int v0, int v1, int mi, int ni) -> auto& {
    return t(make_coord(make_coord(v0, v1), mi, ni));
  };

  // Software pipeline over K tiles (fragments double-buffered across k-steps): the fragments of
  // k-step ks+1 are read from shared memory while the MMAs of ks run, and the barrier that
  // publishes the next K tile sits before the last k-step, so its wait overlaps tensor work.
  //   before_barrier(): last chance to read this tile's stage (the hybrid's block scales).
  constexpr int kMmaK = size<2>(tCrA);
  // Only two fragment slots are live (ks & 1): the k-step in flight and the next one.
  auto load_fragments = [&](int ks, int stage) {
    copy(s2r_a, tXsA(_, _, ks, stage), tXrA(_, _, ks & 1));
    copy(s2r_b, tXsB(_, _, ks, stage), tXrB(_, _, ks & 1));
  };
  //   loads: LoadsTile / LoadsNothing when the caller knows whether this K tile issues a load
  //   (no test in the loop), LoadIfPending to test load_kt.
  using LoadsTile = std::true_type;
  using LoadsNothing = std::false_type;
  struct LoadIfPending {};
  auto mma_tile = [&](auto& acc, int kt, auto&& before_barrier, auto loads) {
    const int stage = stage_of(kt);
    CUTE_UNROLL
    for (int ks = 0; ks < kMmaK; ++ks) {
      if (ks == kMmaK - 1) {
        before_barrier(stage);
        detail::cp_async_wait<Stages - 2>();  // this thread's copies of tile kt+1 landed
        __syncthreads();  // ... everyone's; and nobody reads stage kt%Stages any more
      }
      if (ks + 1 < kMmaK)
        load_fragments(ks + 1, stage);
      else if (kt + 1 < k_tiles)
        load_fragments(0, stage_of(kt + 1));
      if (ks == 0) {
        if constexpr (std::is_same_v<decltype(loads), LoadsTile>)
          load_next_tile();  // refills the stage of tile kt-1
        else if constexpr (std::is_same_v<decltype(loads), LoadIfPending>)
          if (load_kt < k_tiles) load_next_tile();
        detail::cp_async_commit();
      }
      cute::gemm(mma, tCrA(_, _, ks & 1), tCrB(_, _, ks & 1), acc);
    }
  };
  auto nothing = [](auto...) {};

  // ---- pipeline prologue ------------------------------------------------------------------------
  clear(blk0);
  // Per-token: the tile's row scales then column scales go to shared memory with the first K tile
  // (smem_f[0, BM + BN): the hybrid's scale slots, unused here), so the epilogue's scale loads
  // do not wait on global memory after the main loop (12-15% of the stall samples; PERF.md v23).
  if constexpr (!kHybrid) {
    CUTE_UNROLL
    for (int it = 0; it < (BM + BN + kThreads - 1) / kThreads; ++it) {
      const int e = tid + it * kThreads;
      if (e >= BM + BN) break;
      const ScaleRow sr = scale_row(e);
      const float* src =
          sr.is_a ? p.scale_a + (p.scale_a_per_row ? row0 + sr.i : 0)
                  : p.scale_b + (p.scale_b_per_channel ? int64_t(expert) * p.N + n0 + sr.i
                                                       : int64_t(expert));
      detail::cp_async_4_zfill(&smem_f[e], src, sr.ok);
    }
  }
  CUTE_UNROLL
  for (int s = 0; s < Stages - 1; ++s) {
    if (load_kt < k_tiles) load_next_tile();
    detail::cp_async_commit();
  }
  detail::cp_async_wait<Stages - 2>();
  __syncthreads();
  load_fragments(0, 0);

  Tensor acc_f = make_tensor_like<float>(blk0);
  if constexpr (!kHybrid) {
    // K tile kt loads tile kt + Stages - 1, so the last Stages - 1 tiles load nothing. Two loops
    // instead of a test in one: ptxas if-converts the per-token loader, and its ~45 predicated-off
    // instructions would issue in every drain tile (2 or 3 of GEMM2's 4 with a 128-deep K tile:
    // the per-token BK = 128 tiles' GEMM2 +5-7% of v26, recovered in v27: docs/PERF.md).
    const int kt_loads = max(0, k_tiles - (Stages - 1));
    int kt = 0;
    for (; kt < kt_loads; ++kt) mma_tile(blk0, kt, nothing, LoadsTile{});
    for (; kt < k_tiles; ++kt) mma_tile(blk0, kt, nothing, LoadsNothing{});
  } else {
    // Hybrid main loop: at the end of each K-block the block sum is rescaled into the int32
    // chunk accumulator (IMUL + IMAD per element, registers only) and, at chunk ends, flushed into
    // fp32. (A variant that double-buffered the block sum to overlap this with the next block's
    // MMAs needed 4 accumulator sets and spilled: docs/PERF.md v3.)
    Tensor acc_i = make_tensor_like(blk0);
    clear(acc_i);
    clear(acc_f);
    int qa[2 * kMmaM] = {}, qb[2 * kMmaN] = {};    // block scales of the current block
    float fa[2 * kMmaM] = {}, fb[2 * kMmaN] = {};  // super-group scales (flushing blocks)
    BlockCursor block;

    // Visits every accumulator element with its row slot (v1 + 2*mi) and column slot (v0 + 2*ni).
    auto for_each_elem = [&](auto&& f) {
      CUTE_UNROLL
      for (int mi = 0; mi < kMmaM; ++mi) CUTE_UNROLL
      for (int ni = 0; ni < kMmaN; ++ni) CUTE_UNROLL
      for (int v1 = 0; v1 < 2; ++v1) CUTE_UNROLL
      for (int v0 = 0; v0 < 2; ++v0) f(v0, v1, mi, ni, v1 + 2 * mi, v0 + 2 * ni);
    };
    // Integer path: acc_i += blk * (QA * QB), exact while the chunk bound holds.
    auto rescale_int = [&](auto& blk) {
      for_each_elem([&](int v0, int v1, int mi, int ni, int r, int c) {
        int& b = elem(blk, v0, v1, mi, ni);
        elem(acc_i, v0, v1, mi, ni) += b * (qa[r] * qb[c]);
        b = 0;
      });
    };
    auto flush_int = [&]() {
      for_each_elem([&](int v0, int v1, int mi, int ni, int r, int c) {
        int& a = elem(acc_i, v0, v1, mi, ni);
        float& f = elem(acc_f, v0, v1, mi, ni);
        f = fmaf(static_cast<float>(a), fa[r] * fb[c], f);
        a = 0;
      });
    };
    // fp32 path (flush_period == 0): one block term can exceed int32, form it in fp32.
    auto rescale_fp32 = [&](auto& blk) {
      for_each_elem([&](int v0, int v1, int mi, int ni, int r, int c) {
        int& b = elem(blk, v0, v1, mi, ni);
        const float term = static_cast<float>(b) * static_cast<float>(qa[r] * qb[c]);
        float& f = elem(acc_f, v0, v1, mi, ni);
        f = fmaf(term, fa[r] * fb[c], f);
        b = 0;
      });
    };
    // Scales of the block whose last K tile sits in `stage`, copied to registers before the
    // next tile's barrier lets the loader overwrite that stage.
    auto take_scales = [&](int stage, bool with_f) {
      CUTE_UNROLL
      for (int r = 0; r < 2 * kMmaM; ++r) qa[r] = smem_q[stage * (BM + BN) + rows[r]];
      CUTE_UNROLL
      for (int c = 0; c < 2 * kMmaN; ++c) qb[c] = smem_q[stage * (BM + BN) + BM + cols[c]];
      if (with_f) {
        CUTE_UNROLL
        for (int r = 0; r < 2 * kMmaM; ++r) fa[r] = smem_f[stage * (BM + BN) + rows[r]];
        CUTE_UNROLL
        for (int c = 0; c < 2 * kMmaN; ++c) fb[c] = smem_f[stage * (BM + BN) + BM + cols[c]];
      }
    };

    auto main_loop = [&](auto fp32_terms) {
      constexpr bool kFp32 = decltype(fp32_terms)::value;
      while (block.b < p.nb) {
        const int kt0 = block.b * p.k_tiles_per_block;
        const int kt_last = min(kt0 + p.k_tiles_per_block, k_tiles) - 1;
        const bool flush_this = block.flush(p);
        auto scales_if_last = [&](int kt) {
          return [&, kt](int stage) {
            if (kt == kt_last) take_scales(stage, flush_this);
          };
        };
        // Every block has a K tile (b < nb, so kt0 < k_tiles): a do-while leaves ptxas no
        // zero-trip path, whose own clear of the block sum doubled the clears per block (a for
        // loop here: the SM80 hybrid 128 x 64 3-5% slower; docs/PERF.md v28).
        int kt = kt0;
        do {
          mma_tile(blk0, kt, scales_if_last(kt), LoadIfPending{});
        } while (++kt <= kt_last);
        if constexpr (kFp32) {
          rescale_fp32(blk0);
        } else {
          rescale_int(blk0);
          if (flush_this) flush_int();
        }
        block.next(p);
      }
    };
    if (p.flush_period > 0)
      main_loop(std::false_type{});
    else
      main_loop(std::true_type{});
  }
  detail::cp_async_wait<0>();

  // ---- epilogue: scale, round once, store ---------------------------------------------------
  Out* gC = reinterpret_cast<Out*>(p.C) + row0 * p.N + n0;
  auto value = [&](int v0, int v1, int mi, int ni, float sa) {
    if constexpr (kHybrid)
      return elem(acc_f, v0, v1, mi, ni);
    else
      return static_cast<float>(elem(blk0, v0, v1, mi, ni)) * sa * smem_f[BM + cols[v0 + 2 * ni]];
  };
  // The four lanes of a quad hold two adjacent columns each of one row's 8-column blocks (the
  // 16x8 C layout): a quad transpose gives each lane one block's 8 columns, one 16-byte store
  // (full 32-byte sectors, a quarter of the store instructions; PERF.md v24).
  static_assert(kMmaN % 4 == 0, "16-byte stores take the 8-column blocks of a row four at a time");
  const int q = tid & 3;
  CUTE_UNROLL
  for (int mi = 0; mi < kMmaM; ++mi) CUTE_UNROLL
  for (int v1 = 0; v1 < 2; ++v1) {
    const int m = rows[v1 + 2 * mi];
    // A row slot none of whose 8 rows (across the warp) is valid is skipped whole: warp-uniform,
    // so the shuffles below stay converged. Padding rows are most rows at decode (PERF.md v25).
    if (!__any_sync(0xffffffffu, m < rows_valid)) continue;
    float sa = 1.f;
    if constexpr (!kHybrid) sa = smem_f[m];  // zero-filled past the tile's rows
    CUTE_UNROLL
    for (int g = 0; g < kMmaN; g += 4) {
      uint32_t w[4];
      int n = 0;  // first column of the block this lane stores: block g + q
      CUTE_UNROLL
      for (int j = 0; j < 4; ++j) {
        w[j] = detail::pack_out2<Out>(value(0, v1, mi, g + j, sa), value(1, v1, mi, g + j, sa));
        if (j == q) n = cols[2 * (g + j)] - 2 * q;
      }
      const uint4 block = detail::quad_transpose(w, q);
      if (m < rows_valid && n < cols_valid)  // N % 8 == 0: all 8 columns are valid
        *reinterpret_cast<uint4*>(gC + int64_t(m) * p.N + n) = block;
    }
  }
}

}  // namespace int8_hybrid_moe::gemm
