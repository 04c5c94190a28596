// INT8 grouped GEMM over experts for SM90 (H100 / H200): TMA loads, wgmma (s8 x s8 -> s32),
// warp-specialized and persistent. Needs the sm_90a target (wgmma, setmaxnreg); the launcher
// file is compiled for 90a only and the dispatcher picks this path on compute capability 9.0.
//
// CTA = 1 + kConsumers warpgroups: warpgroup 0 is the producer (one warp per ring issues the TMA
// loads of A and B; for the hybrid scheme another warp per ring copies the block scales with
// cp.async, so those copies never hold back a TMA issue). Three consumer layouts:
// - cooperative (per-token 128 x 256): the two consumers each own a 64 x kWgTileN part of every
//   BM x BN output tile, stacked along M;
// - split (hybrid, tile name sm90_128x128): two independent halves of the CTA. Producer warps r
//   (TMA) and 2 + r (scales) and consumer warpgroup r own stage ring r (3 stages of a 64-row A and
//   a 128-row B tile, and their own scale slots); warpgroup r computes whole 64 x 128 tiles r, r +
//   2, ... of the CTA's sequence. Nothing couples the warpgroups, and an expert's rows are covered
//   by 64-row tiles: at decode (few rows per expert) both warpgroups work on their own tiles where
//   the shared 128-row tile left one idle: -8% / -32% on GEMM1 / GEMM2 at M = 64, -2% at the
//   default shape (H100, docs/PERF.md twelfth session);
// - pingpong (per-token 128 x 128): each consumer owns whole tiles, taking every other tile of
//   the CTA; two named barriers order their main loops, so one warpgroup's epilogue runs under
//   the other's wgmmas instead of leaving the tensor core idle: -9% on GEMM2's short K
//   (docs/PERF.md v16), where the epilogue is a large share of a tile's time.
// Shared memory holds `Stages` K tiles of 128 int8 (128-byte swizzled rows, the layout wgmma
// reads); full/empty mbarriers hand stages between producer and consumers. The grid is one CTA
// per SM looping over output tiles, so the producer already loads the next tile while the
// consumers run the epilogue of this one.
// Per-token: the producer, which decodes every tile for its loads anyway, publishes the tile's
// coordinates in shared memory with the tile's first stage, so the consumers never run the
// binary search over tile_offsets (~10 dependent global loads) between their wgmmas: -4% GEMM1,
// -6 to -17% GEMM2 (docs/PERF.md v15). The hybrid decodes in place: such hand-offs measured 3-5%
// slower on its GEMM2 (v13b, v15); its consumers wait for a scale chunk at every tile start.
//
// Hybrid scheme (docs/FORMAT.md): each K-block's int32 sum is accumulated by wgmma into its own
// registers (zeroed at the block's first K tile), then rescaled by QA*QB with an integer
// multiply-add into the int32 chunk accumulator, which is flushed into fp32 times FA*FB at chunk
// and super-group ends (or every block in fp32 when flush_period == 0): the same arithmetic as
// the SM80 kernel. The block scales travel apart from the K tiles: the producer copies those of
// kScaleBlocks blocks at a time (one contiguous run of QA/QB per row, coalesced) into one of two
// scale slots, transposed to block-major so the consumers read them without bank conflicts.
// The two consumer warpgroups issue their wgmmas independently: making them take turns (named
// barriers) so that one rescales under the other's wgmmas measured 2% slower (docs/PERF.md v12),
// and 4-5% slower in the split kernel, 6-9% with each block as two 64 x 64 wgmma chains
// (thirteenth session).
// (Double-buffering the block accumulator within a warpgroup, with the fp32 accumulator moved to
// shared memory to make room, measured slower: docs/PERF.md v6.)
//
// Rows of a tile past its expert's last row (TMA reads them, or zero-fills past R) and columns
// past N are computed on padding and never stored.
#pragma once

#include <cuda.h>

#include <type_traits>

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/arch/mma_sm90_gmma.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "kernels/gemm/grouped_gemm_common.cuh"

namespace int8_hybrid_moe::gemm {

// CTA tile BM x BN, split over BM / 64 x WgN consumer warpgroups of 64 x (BN / WgN) each.
// 128 x 128 and 128 x 256 (per-token only: 128 accumulator registers) use two warpgroups along M.
// Pingpong (per-token only): two consumer warpgroups, each owning whole BM x BN tiles in turn.
// Split (hybrid only, BM = 64): two consumer warpgroups, each with its own producer warps (TMA,
// scales) and stage ring, owning whole 64 x BN tiles (see the file comment).
template <int Stages_, bool kHybrid_, int BN_ = 128, int BM_ = 128, int WgN_ = 1,
          bool kPingpong_ = false, bool kSplit_ = false>
struct Sm90TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = 128, Stages = Stages_;
  static constexpr bool kPingpong = kPingpong_;
  // Split (hybrid): two independent halves, each two producer warps and a consumer warpgroup
  // owning whole 64-row tiles and its own stage ring (see the file comment).
  static constexpr bool kSplit = kSplit_;
  static constexpr int kRings = kSplit ? 2 : 1;
  static_assert(!kSplit || (kHybrid_ && BM == 64 && !kPingpong), "split: hybrid 64-row tiles");
  // Consumer warpgroups along M and N sharing one tile (pingpong: one, the whole tile).
  static constexpr int kWgM = kPingpong ? 1 : BM / 64, kWgN = kPingpong ? 1 : WgN_;
  static constexpr int kWgTileN = BN / kWgN;  // columns of one warpgroup's tile
  static_assert(BM % 64 == 0 && BN % kWgN == 0, "whole 64-row warpgroup tiles");
  static_assert(kWgM == 1 || kWgN == 1, "consumer warpgroups along one axis only");
  static_assert(kWgTileN == 64 || kWgTileN == 128 || kWgTileN == 256, "a wgmma N of 64/128/256");
  static_assert(kWgTileN <= 128 || !kHybrid_,
                "a 256-column warpgroup tile leaves no registers for the hybrid's accumulators");
  static_assert(
      !kPingpong || (!kHybrid_ && BM == 128 && BN <= 128),
      "pingpong: per-token, 128 rows (two wgmma M halves), accumulators <= 128 registers");
  static constexpr bool kHybrid = kHybrid_;
  static constexpr int kConsumers = kPingpong || kSplit ? 2 : kWgM * kWgN;
  static constexpr int kThreads = 128 * (1 + kConsumers);  // + the producer warpgroup
  // Registers: setmaxnreg only moves registers inside the CTA's launch allocation (kLaunchRegs
  // per thread, from __launch_bounds__(kThreads, 1): 168 with three warpgroups), so the consumers
  // get what the producer frees, in the multiples of 8 that setmaxnreg takes: 232 each with two
  // consumer warpgroups and a 40-register producer, 152 with three. Asking for more than the
  // pool holds makes the consumers' allocation spin forever (a hang, not an error). The split
  // hybrid's producer warps get 48 (at 40 the scale copies spilled 36 bytes of stores; at 48, 8),
  // which leaves its consumers 224, enough for their accumulators: -2% / -3.5% on GEMM1 / GEMM2
  // (H100, docs/PERF.md thirteenth session).
  static constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;
  static constexpr int kProducerRegs = kSplit ? 48 : 40;
  static constexpr int kConsumerRegs =
      (kLaunchRegs * kThreads - 128 * kProducerRegs) / (128 * kConsumers) / 8 * 8;
  static_assert(128 * kProducerRegs + 128 * kConsumers * kConsumerRegs <= kLaunchRegs * kThreads,
                "setmaxnreg: the warpgroups' registers exceed the CTA's launch allocation");
  using MmaAtom = std::conditional_t<
      kWgTileN == 256, cute::SM90::GMMA::MMA_64x256x32_S32S8S8_SS_TN,
      std::conditional_t<kWgTileN == 128, cute::SM90::GMMA::MMA_64x128x32_S32S8S8_SS_TN,
                         cute::SM90::GMMA::MMA_64x64x32_S32S8S8_SS_TN>>;
  // Consumer warpgroup w takes the w-th 64 x kWgTileN tile along its axis (pingpong: one
  // warpgroup's atom repeated over the BM / 64 halves of the tile).
  using TiledMma = decltype(cute::make_tiled_mma(
      MmaAtom{}, cute::Layout<cute::Shape<cute::Int<kWgM>, cute::Int<kWgN>, cute::_1>>{}));
  // 8 rows x 128 bytes, 128-byte swizzle: what TMA with CU_TENSOR_MAP_SWIZZLE_128B writes and a
  // K-major wgmma descriptor reads.
  using SmemLayoutA = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<int8_t>{},
      cute::make_shape(cute::Int<BM>{}, cute::Int<BK>{}, cute::Int<Stages>{})));
  using SmemLayoutB = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<int8_t>{},
      cute::make_shape(cute::Int<BN>{}, cute::Int<BK>{}, cute::Int<Stages>{})));
  static constexpr uint32_t kStageTxBytes = (BM + BN) * BK;
  // Hybrid block scales: two slots of kScaleBlocks blocks, block-major; rows padded by 4 words so
  // the producer's transposing 4-byte copies (8 blocks x 4 rows per warp) hit 32 distinct banks.
  static constexpr int kScaleBlocks = 8, kScaleSlots = kHybrid ? 2 : 1;
  static constexpr int kScaleRowsA = kHybrid ? BM + 4 : 1, kScaleRowsB = kHybrid ? BN + 4 : 1;

  struct Ring {
    alignas(1024) int8_t A[Stages][BM * BK];
    alignas(1024) int8_t B[Stages][BN * BK];
    // Hybrid: qa[slot][j][row] = QA of block (chunk start + j); fa/fb by super group of the chunk.
    alignas(16) int32_t qa[kScaleSlots][kScaleBlocks][kScaleRowsA];
    alignas(16) int32_t qb[kScaleSlots][kScaleBlocks][kScaleRowsB];
    alignas(16) float fa[kScaleSlots][kScaleBlocks][kScaleRowsA];
    alignas(16) float fb[kScaleSlots][kScaleBlocks][kScaleRowsB];
    // Per-token: coord[s] = the tile whose first K tile is in stage s (published by full[s]).
    TileCoord coord[kHybrid ? 1 : Stages];
    uint64_t full[Stages];
    uint64_t empty[Stages];
    uint64_t scale_full[kScaleSlots];
    uint64_t scale_empty[kScaleSlots];
  };
  struct Storage {
    Ring ring[kRings];
  };
  // +1 KiB: the dynamic shared memory base is rounded up to the 1024-byte swizzle period.
  static constexpr int kSmemBytes = static_cast<int>(sizeof(Storage)) + 1024;
  static constexpr int kSmemLimit = 227 * 1024;
  static_assert(kSmemBytes <= kSmemLimit, "SM90 shared memory per block");
  // Launch size: the launcher adds a copy of tile_offsets [E + 1] after Storage when it fits
  // (Sm90GemmParams::tile_table_in_smem).
  // (int64: no overflow for any E the int32 kernel parameter allows.)
  static int64_t smem_bytes(int num_experts, bool table) {
    return kSmemBytes + (table ? int64_t(sizeof(int)) * (int64_t(num_experts) + 1) : 0);
  }
};

struct Sm90GemmParams {
  GroupedGemmParams p;
  // tile_offsets copied into shared memory after Storage at kernel start, so tile decodes (a
  // binary search, ~9 dependent loads) read shared memory instead of L2: the producer decodes
  // every tile before its loads, and in the pingpong kernel it was the bottleneck (PERF.md v17).
  bool tile_table_in_smem;
  CUtensorMap tma_a;  // A [R, K] int8, box 128 x 128
  CUtensorMap tma_b;  // B [E * N, K] int8, box BN x 128
};

namespace sm90 {

// Stage ring position shared by producer and consumers: the phase bit flips at each wrap.
template <int Stages>
struct PipeState {
  int stage = 0;
  uint32_t phase = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == Stages) {
      stage = 0;
      phase ^= 1u;
    }
  }
};

// Hybrid scale warp (one producer warp per ring): copies the scales of blocks [b0, b0 +
// kScaleBlocks) of tile `tc` into scale slot `slot`: QA/QB of the tile's rows/columns, block-major,
// and FA/FB of the super groups those blocks touch. Lane i copies block i % 8 of row i / 8 (+ 4
// rows per step): each row's run of blocks is contiguous in QA [R, nb], so a warp reads 4 runs of
// 32 bytes. Rows past the expert or R, blocks past nb and groups past the chunk read as zero (never
// used).
template <class Cfg>
__device__ __forceinline__ void load_scale_chunk(typename Cfg::Ring& S, const GroupedGemmParams& p,
                                                 const TileCoord& tc, int slot, int b0, int lane) {
  constexpr int CB = Cfg::kScaleBlocks;
  static_assert(CB == 8, "lane -> (row, block) mapping below assumes 8 blocks per chunk");
  const int nblk = min(CB, p.nb - b0);
  const int g0 = b0 / p.blocks_per_group;
  const int ngrp = (b0 + nblk - 1) / p.blocks_per_group - g0 + 1;  // <= nblk
  const int j = lane % CB;
  const int64_t b_col0 = int64_t(tc.expert) * p.N + tc.n0;
  // Loops kept rolled with running pointers: the producer warps have 40 (48 in the split)
  // registers.
  {
    const int32_t* src = p.QA + (tc.row0 + lane / CB) * p.nb + b0 + j;
#pragma unroll 1
    for (int r = lane / CB; r < Cfg::BM; r += 32 / CB, src += (32 / CB) * p.nb) {
      const bool ok = r < tc.rows_valid && j < nblk;
      detail::cp_async_4_zfill(&S.qa[slot][j][r], ok ? src : p.QA, ok);
    }
  }
  {
    const int32_t* src = p.QB + (b_col0 + lane / CB) * p.nb + b0 + j;
#pragma unroll 1
    for (int c = lane / CB; c < Cfg::BN; c += 32 / CB, src += (32 / CB) * p.nb) {
      const bool ok = c < tc.cols_valid && j < nblk;
      detail::cp_async_4_zfill(&S.qb[slot][j][c], ok ? src : p.QB, ok);
    }
  }
  // Super-group scales: usually one group per chunk (S = 256 by default), so row-major lanes.
#pragma unroll 1
  for (int g = 0; g < ngrp; ++g) {
#pragma unroll 1
    for (int r = lane; r < Cfg::BM; r += 32) {
      const bool ok = r < tc.rows_valid;
      detail::cp_async_4_zfill(&S.fa[slot][g][r], ok ? p.FA + (tc.row0 + r) * p.ng + g0 + g : p.FA,
                               ok);
    }
#pragma unroll 1
    for (int c = lane; c < Cfg::BN; c += 32) {
      const bool ok = c < tc.cols_valid;
      detail::cp_async_4_zfill(&S.fb[slot][g][c], ok ? p.FB + (b_col0 + c) * p.ng + g0 + g : p.FB,
                               ok);
    }
  }
}

}  // namespace sm90

// kMultiTileBlock (hybrid, B = 256, 384, ...): each K-block spans p.k_tiles_per_block K tiles,
// summed in the wgmma accumulator before the block's one rescale. B = 128 keeps its own
// instantiation, so the one-tile loop is not burdened by the runtime count.
template <class Cfg, Scheme kScheme, typename Out, bool kMultiTileBlock = false>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    grouped_gemm_sm90_kernel(const __grid_constant__ Sm90GemmParams P) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace cute;
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, Stages = Cfg::Stages;
  constexpr bool kHybrid = kScheme == Scheme::kHybrid;
  static_assert(kHybrid || !kMultiTileBlock, "multi-tile blocks are a hybrid layout");
  constexpr int kConsumerWarps = 4 * Cfg::kConsumers;
  const GroupedGemmParams& p = P.p;

  // Rounded up to the 1024-byte swizzle period by pointer arithmetic on the shared array (not
  // through an integer), so the compiler still knows it is shared memory and emits LDS, not LD.
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t smem_pad = (1024u - (cute::cast_smem_ptr_to_uint(smem_raw) & 1023u)) & 1023u;
  auto& St = *reinterpret_cast<typename Cfg::Storage*>(smem_raw + smem_pad);
  const int* tile_offsets = p.tile_offsets;
  if (P.tile_table_in_smem) {
    int* table = reinterpret_cast<int*>(smem_raw + smem_pad + sizeof(typename Cfg::Storage));
    for (int e = static_cast<int>(threadIdx.x); e <= p.num_experts; e += Cfg::kThreads)
      table[e] = p.tile_offsets[e];
    tile_offsets = table;  // published by the __syncthreads below
  }

  // Warp-uniform by construction (shuffled from lane 0): ptxas then treats branches on it as
  // non-divergent and does not serialize the wgmmas behind them (C7518).
  const int warp_group = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
  const int warp = static_cast<int>(threadIdx.x) / 32 % 4;  // inside the warpgroup
  const int lane = static_cast<int>(threadIdx.x) % 32;
  if (threadIdx.x == 0) {
    // Split: each ring has one consumer warpgroup.
    constexpr int kRingConsumerWarps = Cfg::kSplit ? 4 : kConsumerWarps;
    for (int r = 0; r < Cfg::kRings; ++r) {
      auto& S = St.ring[r];
      for (int s = 0; s < Stages; ++s) {
        TxBarrier::init(&S.full[s], 1);  // the TMA thread's arrive with the byte count
        // Pingpong: one warpgroup consumes each stage.
        Barrier::init(&S.empty[s], Cfg::kPingpong ? 4 : kRingConsumerWarps);
      }
      for (int s = 0; s < Cfg::kScaleSlots; ++s) {
        Barrier::init(&S.scale_full[s], 32);  // one cp.async arrive per producer lane
        Barrier::init(&S.scale_empty[s], kRingConsumerWarps);
      }
    }
    cutlass::arch::fence_barrier_init();
    // The descriptors live in kernel parameter space; fetch them before the first TMA needs them.
    cute::prefetch_tma_descriptor(&P.tma_a);
    cute::prefetch_tma_descriptor(&P.tma_b);
  }
  __syncthreads();

  const int total_tiles = tile_offsets[p.num_experts] * p.n_tiles;
  // Hybrid: block b covers K tiles [b * T, min((b + 1) * T, k_tiles)), T = p.k_tiles_per_block
  // (1 unless kMultiTileBlock).
  const int k_tiles = static_cast<int>((p.K + BK - 1) / BK);
  auto tile_at = [&](int t) {
    return decode_tile(p, tile_offsets, t / p.n_tiles, t % p.n_tiles, BM, BN);
  };

  if (warp_group == 0) {
    // ---------------------------------------------------------------- producer warpgroup
    cutlass::arch::warpgroup_reg_dealloc<Cfg::kProducerRegs>();
    // Warp r < kRings issues ring r's TMA loads (split: the tiles of consumer warpgroup r); the
    // hybrid's warp kRings + r copies ring r's block scales. The scale copies (about 50 cp.async
    // per lane and chunk, with their address arithmetic) once ran in the TMA warp, between its
    // loads: the consumers then waited on full barriers while L2 and DRAM were far from their
    // limits (PERF.md, nineteenth session).
    constexpr int kScaleWarps = kHybrid ? Cfg::kRings : 0;
    if (warp >= Cfg::kRings + kScaleWarps) return;
    const bool scale_warp = warp >= Cfg::kRings;
    const int ring = scale_warp ? warp - Cfg::kRings : warp;
    auto& S = St.ring[ring];
    sm90::PipeState<Stages> ps;
    sm90::PipeState<Cfg::kScaleSlots> ss;
    constexpr uint64_t kEvictNormal = static_cast<uint64_t>(TMA::CacheHintSm90::EVICT_NORMAL);
    for (int t = blockIdx.x + ring * gridDim.x; t < total_tiles; t += Cfg::kRings * gridDim.x) {
      const TileCoord tc = tile_at(t);
      if (kHybrid && scale_warp) {
        // The tile's scale chunks of kScaleBlocks blocks, in the consumers' order.
#pragma unroll 1
        for (int b0 = 0; b0 < p.nb; b0 += Cfg::kScaleBlocks) {
          Barrier::wait(&S.scale_empty[ss.stage], ss.phase ^ 1u);
          sm90::load_scale_chunk<Cfg>(S, p, tc, ss.stage, b0, lane);
          // Counts as this lane's arrival once its copies so far have landed.
          cutlass::arch::cpasync_barrier_arrive_noinc(&S.scale_full[ss.stage]);
          ss.advance();
        }
        continue;
      }
      const int b_row0 = static_cast<int>(int64_t(tc.expert) * p.N + tc.n0);
      for (int kt = 0; kt < k_tiles; ++kt) {
        Barrier::wait(&S.empty[ps.stage], ps.phase ^ 1u);
        if (lane == 0) {
          if (!kHybrid && kt == 0) {
            S.coord[ps.stage] = tc;
            // Kept before the arrive, whose release.cta semantics publish it to the consumers'
            // acquiring wait (the CUTLASS asm has no memory clobber to order it for the compiler).
            asm volatile("" ::: "memory");
          }
          TxBarrier::arrive_and_expect_tx(&S.full[ps.stage], Cfg::kStageTxBytes);
          SM90_TMA_LOAD_2D::copy(&P.tma_a, &S.full[ps.stage], kEvictNormal, S.A[ps.stage], kt * BK,
                                 static_cast<int>(tc.row0));
          SM90_TMA_LOAD_2D::copy(&P.tma_b, &S.full[ps.stage], kEvictNormal, S.B[ps.stage], kt * BK,
                                 b_row0);
        }
        ps.advance();
      }
    }
    return;
  }

  // ------------------------------------------------------------------ consumer warpgroups
  cutlass::arch::warpgroup_reg_alloc<Cfg::kConsumerRegs>();
  const int ct = static_cast<int>(threadIdx.x) - 128;  // 0..255
  const int ring = Cfg::kRings == 1 ? 0 : warp_group - 1;
  auto& S = St.ring[ring];
  typename Cfg::TiledMma mma;
  auto thr = mma.get_thread_slice(Cfg::kPingpong || Cfg::kSplit ? ct % 128 : ct);
  Tensor sA = make_tensor(make_smem_ptr(&S.A[0][0]), typename Cfg::SmemLayoutA{});
  Tensor sB = make_tensor(make_smem_ptr(&S.B[0][0]), typename Cfg::SmemLayoutB{});
  Tensor tCrA = thr.make_fragment_A(thr.partition_A(sA));  // (MMA, 1, BK/32, Stages) descriptors
  Tensor tCrB = thr.make_fragment_B(thr.partition_B(sB));
  Tensor acc = partition_fragment_C(mma, Shape<Int<BM>, Int<BN>>{});  // int32, kWgTileN/2 values
  constexpr int kV = decltype(size(acc))::value;
  constexpr int kKSteps = BK / 32;
  constexpr int kHalves = Cfg::kPingpong ? BM / 64 : 1;  // wgmma M halves of one warpgroup
  static_assert(kV == Cfg::kWgTileN / 2 * kHalves, "64 x kWgTileN wgmma accumulators");
  // The wgmma D fragment: value v of thread t sits at row 16*warp + t%32/4 + 8*(v/2%2) of its
  // warpgroup's 64 rows and column 2*(t%4) + v%2 + 8*(v/4) of its kWgTileN columns.
  // Warpgroups lie along one axis; the other offset is the constant 0 (the compiler cannot bound
  // warp_group, so a `% kWgM` there would cost instructions and registers).
  constexpr bool kShared = !Cfg::kPingpong && !Cfg::kSplit;  // warpgroups share each tile
  const int wg_row0 = kShared && Cfg::kWgN == 1 ? (warp_group - 1) * 64 : 0;
  const int wg_col0 = kShared && Cfg::kWgM == 1 ? (warp_group - 1) * Cfg::kWgTileN : 0;
  const int r_lo = wg_row0 + warp * 16 + lane / 4, r_hi = r_lo + 8;
  const int c_base = wg_col0 + 2 * (lane % 4);

  sm90::PipeState<Stages> ps;
  auto release = [&](int stage) {
    if (lane == 0) Barrier::arrive(&S.empty[stage]);
  };
  auto release_scales = [&](int slot) {
    if (lane == 0) Barrier::arrive(&S.scale_empty[slot]);
  };
  // Issues the wgmmas of the K tile in `stage` into acc (zeroing it first when `zero`), for the
  // first `halves` 64-row M halves of the warpgroup's tile (cooperative: its one half; pingpong:
  // both, or the first alone when the tile's other rows are all padding).
  auto mma_tile = [&](auto halves, int stage, bool zero) {
    warpgroup_fence_operand(acc);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < kKSteps; ++k) {
      CUTE_UNROLL
      for (int m = 0; m < decltype(halves)::value; ++m) {
        mma.accumulate_ = zero && k == 0 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
        cute::gemm(mma, tCrA(_, m, k, stage), tCrB(_, 0, k, stage), acc(_, m, 0));
      }
    }
    warpgroup_commit_batch();
  };
  // One int32 accumulation over the next `n` K tiles (per-token: all of K; hybrid with
  // kMultiTileBlock: one block's tiles); a stage is released once the wgmmas of the next K tile
  // are issued and the previous batch has completed. Returns the last stage, released by the
  // caller after its wait for the last batch.
  auto mma_k_tiles = [&](auto halves, int n) {
    int prev = -1;
    for (int kt = 0; kt < n; ++kt) {
      TxBarrier::wait(&S.full[ps.stage], ps.phase);
      mma_tile(halves, ps.stage, kt == 0);
      warpgroup_wait<1>();
      if (prev >= 0) release(prev);
      prev = ps.stage;
      ps.advance();
    }
    return prev;
  };
  // Stores values [v0, v1) (v0, v1 multiples of 16) of the accumulator layout, value_of(v, hi)
  // giving the fp32 result of value v (hi: row r_hi). Per row half and group of four 8-column
  // blocks, the quad's 4-byte pairs are transposed so each lane writes one block's 8 columns as
  // one 16-byte store: full 32-byte sectors, a quarter of the store instructions (PERF.md v11).
  // (Pingpong: the second 64-row half's values start at v_off, stored at rows + row_off.)
  auto store = [&](const TileCoord& tc, auto&& value_of, int v0, int v1, int row_off = 0,
                   int v_off = 0) {
    Out* gC = reinterpret_cast<Out*>(p.C) + tc.row0 * p.N + tc.n0;
    const int q = lane % 4;
    CUTE_UNROLL
    for (int vb = v0; vb < v1; vb += 16) {
      CUTE_UNROLL
      for (int h = 0; h < 2; ++h) {
        uint32_t w[4];  // columns c_base + 8 * (vb / 4 + jj) + {0, 1}
        CUTE_UNROLL
        for (int jj = 0; jj < 4; ++jj) {
          const int v = vb + 4 * jj + 2 * h;
          w[jj] = detail::pack_out2<Out>(value_of(v, h != 0), value_of(v + 1, h != 0));
        }
        const uint4 block = detail::quad_transpose(w, q);
        const int r = row_off + (h ? r_hi : r_lo), c = wg_col0 + 8 * ((vb - v_off) / 4 + q);
        if (r < tc.rows_valid && c < tc.cols_valid)  // N % 8 == 0: all 8 columns are valid
          *reinterpret_cast<uint4*>(gC + int64_t(r) * p.N + c) = block;
      }
    }
  };

  // Per-token epilogue scales (both consumer layouts). col_scales: the tile's first column scale.
  // load_col_scales: this lane's column scales from 8-column block v0 / 4 on, as many as sbv
  // holds pairs: sbv[2 j + {0, 1}] for columns c_base + 8 (v0 / 4 + j) + {0, 1} (0 past N).
  auto col_scales = [&](const TileCoord& tc) {
    return p.scale_b +
           (p.scale_b_per_channel ? int64_t(tc.expert) * p.N + tc.n0 : int64_t(tc.expert));
  };
  auto load_col_scales = [&](const float* sb, const TileCoord& tc, int v0, auto& sbv) {
    constexpr int kPairs = std::extent_v<std::remove_reference_t<decltype(sbv)>> / 2;
    CUTE_UNROLL
    for (int j = 0; j < kPairs; ++j) {
      const int c = c_base + 8 * (v0 / 4 + j);
      const bool ok = c < tc.cols_valid;
      sbv[2 * j] = ok ? sb[p.scale_b_per_channel ? c : 0] : 0.f;
      sbv[2 * j + 1] = ok ? sb[p.scale_b_per_channel ? c + 1 : 0] : 0.f;
    }
  };
  // Scale of tile row r (rows past the expert's end read its last row's; they are never stored).
  auto row_scale = [&](const TileCoord& tc, int r) {
    return p.scale_a[p.scale_a_per_row ? tc.row0 + min(r, tc.rows_valid - 1) : 0];
  };

  if constexpr (Cfg::kPingpong) {
    // Consumer warpgroup w takes tiles j = w, w + 2, ... of the CTA's sequence
    // blockIdx.x + j * gridDim.x; tile j's K tiles hold ring positions j * k_tiles on. Its main
    // loop waits (named barrier 1 + w) until the other warpgroup has issued all wgmmas of tile
    // j - 1 and then signals the other's barrier, so the two main loops alternate on the tensor
    // core and each epilogue runs under the other warpgroup's wgmmas. Every wait pairs with one
    // signal: a warpgroup signals only when the tile after its own exists.
    const int w = warp_group - 1;
    for (int j = w, t = blockIdx.x + w * gridDim.x; t < total_tiles; j += 2, t += 2 * gridDim.x) {
      // The turn comes first: a full barrier's parity wait is only valid while its stage is at
      // most one fill ahead of the wait, which holds once the other warpgroup has waited for
      // every stage of tile j - 1 (a warpgroup's next tile lies k_tiles, often several ring
      // wraps, past its last one).
      if (j > 0) cutlass::arch::NamedBarrier::sync(256, 1 + w);
      const int64_t pos = int64_t(j) * k_tiles;
      ps.stage = static_cast<int>(pos % Stages);
      ps.phase = static_cast<uint32_t>(pos / Stages) & 1u;
      TxBarrier::wait(&S.full[ps.stage], ps.phase);
      asm volatile("" ::: "memory");  // the read stays after the acquiring wait
      const TileCoord tc = S.coord[ps.stage];
      // Rows past 64 all padding: the second M half's wgmmas are skipped (warp-uniform branch
      // around whole main loops, so ptxas does not serialize the wgmmas, C7518).
      const bool both = __shfl_sync(0xffffffffu, tc.rows_valid > 64, 0);
      const int prev = both ? mma_k_tiles(Int<kHalves>{}, k_tiles) : mma_k_tiles(Int<1>{}, k_tiles);
      if (t + gridDim.x < total_tiles) cutlass::arch::NamedBarrier::arrive(256, 2 - w);
      // The epilogue of the cooperative path below, per 64-row half.
      float sbv[kV / kHalves / 2];  // the columns of both halves
      load_col_scales(col_scales(tc), tc, 0, sbv);
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc);
      release(prev);
      CUTE_UNROLL
      for (int m = 0; m < kHalves; ++m) {
        if (m > 0 && !both) break;
        const int r0 = 64 * m;
        const float sa_lo = row_scale(tc, r0 + r_lo), sa_hi = row_scale(tc, r0 + r_hi);
        constexpr int kHalfV = kV / kHalves;
        store(
            tc,
            [&](int v, bool hi) {
              return static_cast<float>(acc(v)) * (hi ? sa_hi : sa_lo) *
                     sbv[2 * ((v - m * kHalfV) >> 2) + (v & 1)];
            },
            m * kHalfV, (m + 1) * kHalfV, r0, m * kHalfV);
      }
    }
  } else {
    sm90::PipeState<Cfg::kScaleSlots> ss;
    for (int t = blockIdx.x + ring * gridDim.x; t < total_tiles; t += Cfg::kRings * gridDim.x) {
      TileCoord tc;
      if constexpr (kHybrid) {
        tc = tile_at(t);
      } else {  // published by the producer with the tile's first stage (see the file comment)
        TxBarrier::wait(&S.full[ps.stage], ps.phase);
        asm volatile("" ::: "memory");  // the read stays after the acquiring wait
        tc = S.coord[ps.stage];
      }
      // A warpgroup whose 64 rows all lie past the expert's end (the last M-tile of an expert is
      // often short), or whose columns all lie past N, skips its wgmmas and rescales; it still
      // takes part in the stage hand-off. (Broadcast from lane 0 so the compiler sees a
      // warp-uniform branch around the wgmmas; a possibly divergent one makes ptxas serialize
      // them, C7518.)
      const bool active = __shfl_sync(
          0xffffffffu, wg_row0 < tc.rows_valid && (Cfg::kWgN == 1 || wg_col0 < tc.cols_valid), 0);
      if constexpr (!kHybrid) {
        if (!active) {
          for (int kt = 0; kt < k_tiles; ++kt) {
            TxBarrier::wait(&S.full[ps.stage], ps.phase);
            release(ps.stage);
            ps.advance();
          }
          continue;
        }
        const int prev = mma_k_tiles(Int<1>{}, k_tiles);
        // Scales first (registers), stores after: no load waits behind a store it might alias.
        // 128 columns at a time: 32 scale registers next to the accumulator (all 256 columns'
        // scales at once spill with the 128 x 256 tile). The first chunk's and the row scales are
        // loaded before the last wgmmas complete, so their latency hides under them.
        constexpr int kChunkV = kV < 64 ? kV : 64;
        const float* sb = col_scales(tc);
        float sbv[kChunkV / 2];  // the columns of chunk v0
        const float sa_lo = row_scale(tc, r_lo), sa_hi = row_scale(tc, r_hi);
        load_col_scales(sb, tc, 0, sbv);
        warpgroup_wait<0>();
        warpgroup_fence_operand(acc);
        release(prev);
        CUTE_UNROLL
        for (int v0 = 0; v0 < kV; v0 += kChunkV) {
          if (v0 > 0) load_col_scales(sb, tc, v0, sbv);
          store(
              tc,
              [&](int v, bool hi) {
                return static_cast<float>(acc(v)) * (hi ? sa_hi : sa_lo) *
                       sbv[2 * ((v - v0) >> 2) + (v & 1)];
              },
              v0, v0 + kChunkV);
        }
      } else {
        Tensor acc_i = make_tensor_like(acc);  // int32 chunk of rescaled block sums
        Tensor acc_f = make_tensor_like<float>(acc);
        clear(acc_i);
        clear(acc_f);
        // FA * FB of accumulator values v .. v + 3 (rows r_lo / r_hi times columns c, c + 1), super
        // group `gi` of scale slot `sl`.
        auto f_quad = [&](int sl, int gi, int v, float(&f)[4]) {
          const float fa_lo = S.fa[sl][gi][r_lo], fa_hi = S.fa[sl][gi][r_hi];
          const float2 fb = *reinterpret_cast<const float2*>(&S.fb[sl][gi][c_base + 8 * (v >> 2)]);
          f[0] = fa_lo * fb.x;
          f[1] = fa_lo * fb.y;
          f[2] = fa_hi * fb.x;
          f[3] = fa_hi * fb.y;
        };
        // acc_f += acc_i * FA * FB (super group `gi` of scale slot `sl`), acc_i = 0.
        auto flush_chunk = [&](int sl, int gi) {
          CUTE_UNROLL
          for (int v = 0; v < kV; v += 4) {
            float f[4];
            f_quad(sl, gi, v, f);
            CUTE_UNROLL
            for (int i = 0; i < 4; ++i) {
              acc_f(v + i) = fmaf(static_cast<float>(acc_i(v + i)), f[i], acc_f(v + i));
              acc_i(v + i) = 0;
            }
          }
        };
        auto main_loop = [&](auto fp32_terms) {
          constexpr bool kFp32 = decltype(fp32_terms)::value;
          int j = 0, g0 = 0;  // block index inside the scale chunk, first super group of the chunk
          // The block sum is complete after the wgmmas of the block's K tiles (one unless
          // kMultiTileBlock).
          for (BlockCursor block; block.b < p.nb; block.next(p)) {
            const bool flush = block.flush(p);
            const bool last_block = block.b + 1 == p.nb;
            if (j == 0) {
              Barrier::wait(&S.scale_full[ss.stage], ss.phase);
              g0 = block.g;
            }
            // K tiles of this block (the last block may be short).
            const int block_tiles =
                kMultiTileBlock ? min(p.k_tiles_per_block, k_tiles - block.b * p.k_tiles_per_block)
                                : 1;
            if constexpr (!kMultiTileBlock) TxBarrier::wait(&S.full[ps.stage], ps.phase);
            // One branch holds the wgmmas, their wait and the reads of their accumulator: split
            // over several, ptxas cannot pair them and inserts waits (C7517).
            if (!active) {
              for (int s = 0; s < block_tiles; ++s) {
                if constexpr (kMultiTileBlock) TxBarrier::wait(&S.full[ps.stage], ps.phase);
                release(ps.stage);
                ps.advance();
              }
            } else {
              if constexpr (kMultiTileBlock) {
                const int prev = mma_k_tiles(Int<1>{}, block_tiles);
                warpgroup_wait<0>();
                warpgroup_fence_operand(acc);
                release(prev);
              } else {
                mma_tile(Int<1>{}, ps.stage, /*zero=*/true);
                warpgroup_wait<0>();
                warpgroup_fence_operand(acc);
                release(ps.stage);  // the stage holds A and B only: free once the wgmmas are done
                ps.advance();
              }
              const int sl = ss.stage;
              const int qa_lo = S.qa[sl][j][r_lo], qa_hi = S.qa[sl][j][r_hi];
              CUTE_UNROLL
              for (int v = 0; v < kV; v += 4) {
                const int c = c_base + 8 * (v >> 2);
                const int2 qb = *reinterpret_cast<const int2*>(&S.qb[sl][j][c]);
                const int q[4] = {qa_lo * qb.x, qa_lo * qb.y, qa_hi * qb.x, qa_hi * qb.y};
                if constexpr (kFp32) {
                  // One block term may exceed int32: form it in fp32 (FORMAT.md section 5).
                  float f[4];
                  f_quad(sl, block.g - g0, v, f);
                  CUTE_UNROLL
                  for (int i = 0; i < 4; ++i) {
                    const float term = static_cast<float>(acc(v + i)) * static_cast<float>(q[i]);
                    acc_f(v + i) = fmaf(term, f[i], acc_f(v + i));
                  }
                } else {
                  CUTE_UNROLL
                  for (int i = 0; i < 4; ++i) acc_i(v + i) += acc(v + i) * q[i];
                }
              }
              if constexpr (!kFp32) {
                if (flush) {  // every flush_period blocks and at super-group ends
                  flush_chunk(sl, block.g - g0);
                }
              }
            }
            if (++j == Cfg::kScaleBlocks || last_block) {  // the chunk's scales are no longer read
              release_scales(ss.stage);
              ss.advance();
              j = 0;
            }
          }
        };
        if (p.flush_period > 0)
          main_loop(std::false_type{});
        else
          main_loop(std::true_type{});
        if (active)
          store(
              tc, [&](int v, bool) { return acc_f(v); }, 0, kV);
      }
    }
  }  // cooperative
#else
  // Built for another target: the dispatcher never launches this path there.
  __trap();
#endif
}

}  // namespace int8_hybrid_moe::gemm
