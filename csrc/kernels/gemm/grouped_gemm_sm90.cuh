// INT8 grouped GEMM over experts for SM90 (H100 / H200): TMA loads, wgmma (s8 x s8 -> s32),
// warp-specialized and persistent. Needs the sm_90a target (wgmma, setmaxnreg); the launcher
// file is compiled for 90a only and the dispatcher picks this path on compute capability 9.0.
//
// CTA = 3 warpgroups: warpgroup 0 is the producer (one warp issues the TMA loads of A and B and,
// for the hybrid scheme, cp.async loads of the block scales), warpgroups 1 and 2 are consumers
// that each own 64 rows of the 128 x BN output tile. Shared memory holds `Stages` K tiles of
// 128 int8 (128-byte swizzled rows, the layout wgmma reads); full/empty mbarriers hand stages
// between producer and consumers. The grid is one CTA per SM looping over output tiles, so the
// producer already loads the next tile while the consumers run the epilogue of this one.
//
// Hybrid scheme (docs/FORMAT.md): each K-block's int32 sum is accumulated by wgmma into its own
// registers (zeroed at the block's first K tile), then rescaled by QA*QB with an integer
// multiply-add into the int32 chunk accumulator, which is flushed into fp32 times FA*FB at chunk
// and super-group ends (or every block in fp32 when flush_period == 0): the same arithmetic as
// the SM80 kernel. Both consumer warpgroups alternate naturally, so one's rescale overlaps the
// other's tensor-core work. (Double-buffering the block accumulator within a warpgroup, with the
// fp32 accumulator moved to shared memory to make room, measured slower: docs/PERF.md v6.)
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

template <int Stages_, bool kHybrid_>
struct Sm90TileConfig {
  static constexpr int BM = 128, BN = 128, BK = 128, Stages = Stages_;
  static constexpr bool kHybrid = kHybrid_;
  static constexpr int kConsumers = 2;                           // warpgroups, 64 rows each
  static constexpr int kThreads = 128 * (1 + kConsumers);        // + the producer warpgroup
  static constexpr int kProducerRegs = 40, kConsumerRegs = 232;  // 128*40 + 256*232 <= 64K
  using TiledMma =
      decltype(cute::make_tiled_mma(cute::SM90::GMMA::MMA_64x128x32_S32S8S8_SS_TN{},
                                    cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>{}));
  // 8 rows x 128 bytes, 128-byte swizzle: what TMA with CU_TENSOR_MAP_SWIZZLE_128B writes and a
  // K-major wgmma descriptor reads.
  using SmemLayoutA = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<int8_t>{},
      cute::make_shape(cute::Int<BM>{}, cute::Int<BK>{}, cute::Int<Stages>{})));
  using SmemLayoutB = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<int8_t>{},
      cute::make_shape(cute::Int<BN>{}, cute::Int<BK>{}, cute::Int<Stages>{})));
  static constexpr uint32_t kStageTxBytes = (BM + BN) * BK;
  static constexpr int kScaleStages = kHybrid ? Stages : 1;

  struct Storage {
    alignas(1024) int8_t A[Stages][BM * BK];
    alignas(1024) int8_t B[Stages][BN * BK];
    // Hybrid: scales of the K-block whose last K tile sits in the stage.
    alignas(16) int32_t qa[kScaleStages][BM];
    alignas(16) int32_t qb[kScaleStages][BN];
    alignas(16) float fa[kScaleStages][BM];
    alignas(16) float fb[kScaleStages][BN];
    uint64_t full[Stages];
    uint64_t empty[Stages];
  };
  // +1 KiB: the dynamic shared memory base is rounded up to the 1024-byte swizzle period.
  static constexpr int kSmemBytes = static_cast<int>(sizeof(Storage)) + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "SM90 shared memory per block");
};

struct Sm90GemmParams {
  GroupedGemmParams p;
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

}  // namespace sm90

template <class Cfg, Scheme kScheme, typename Out>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    grouped_gemm_sm90_kernel(const __grid_constant__ Sm90GemmParams P) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace cute;
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, Stages = Cfg::Stages;
  constexpr bool kHybrid = kScheme == Scheme::kHybrid;
  constexpr int kConsumerWarps = 4 * Cfg::kConsumers;
  const GroupedGemmParams& p = P.p;

  extern __shared__ uint8_t smem_raw[];
  auto& S = *reinterpret_cast<typename Cfg::Storage*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));

  const int warp_group = static_cast<int>(threadIdx.x) / 128;
  const int warp = static_cast<int>(threadIdx.x) / 32 % 4;  // inside the warpgroup
  const int lane = static_cast<int>(threadIdx.x) % 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < Stages; ++s) {
      // Hybrid: the TMA thread's arrive (with the byte count) + one cp.async arrive per lane.
      TxBarrier::init(&S.full[s], kHybrid ? 1 + 32 : 1);
      Barrier::init(&S.empty[s], kConsumerWarps);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  const int total_tiles = p.tile_offsets[p.num_experts] * p.n_tiles;
  const int k_tiles = static_cast<int>((p.K + BK - 1) / BK);  // hybrid: B = BK, one block a tile
  auto tile_at = [&](int t) { return decode_tile(p, t / p.n_tiles, t % p.n_tiles, BM, BN); };

  if (warp_group == 0) {
    // ---------------------------------------------------------------- producer warpgroup
    cutlass::arch::warpgroup_reg_dealloc<Cfg::kProducerRegs>();
    if (warp != 0) return;
    sm90::PipeState<Stages> ps;
    constexpr uint64_t kEvictNormal = static_cast<uint64_t>(TMA::CacheHintSm90::EVICT_NORMAL);
    for (int t = blockIdx.x; t < total_tiles; t += gridDim.x) {
      const TileCoord tc = tile_at(t);
      const int b_row0 = static_cast<int>(int64_t(tc.expert) * p.N + tc.n0);
      BlockCursor block;  // hybrid: the block of K tile kt
      for (int kt = 0; kt < k_tiles; ++kt) {
        Barrier::wait(&S.empty[ps.stage], ps.phase ^ 1u);
        if (lane == 0) {
          TxBarrier::arrive_and_expect_tx(&S.full[ps.stage], Cfg::kStageTxBytes);
          SM90_TMA_LOAD_2D::copy(&P.tma_a, &S.full[ps.stage], kEvictNormal, S.A[ps.stage], kt * BK,
                                 static_cast<int>(tc.row0));
          SM90_TMA_LOAD_2D::copy(&P.tma_b, &S.full[ps.stage], kEvictNormal, S.B[ps.stage], kt * BK,
                                 b_row0);
        }
        if constexpr (kHybrid) {
          // The block of this K tile (B = BK): its scales travel with the tile.
          for (int i = lane; i < BM; i += 32) {
            const bool ok = i < tc.rows_valid;
            const int64_t row = ok ? tc.row0 + i : 0;
            detail::cp_async_4_zfill(&S.qa[ps.stage][i], p.QA + row * p.nb + block.b, ok);
            detail::cp_async_4_zfill(&S.fa[ps.stage][i], p.FA + row * p.ng + block.g, ok);
          }
          for (int i = lane; i < BN; i += 32) {
            const bool ok = i < tc.cols_valid;
            const int64_t col = int64_t(tc.expert) * p.N + tc.n0 + (ok ? i : 0);
            detail::cp_async_4_zfill(&S.qb[ps.stage][i], p.QB + col * p.nb + block.b, ok);
            detail::cp_async_4_zfill(&S.fb[ps.stage][i], p.FB + col * p.ng + block.g, ok);
          }
          block.next(p);
          // Counts as this lane's arrival once its copies so far have landed.
          cutlass::arch::cpasync_barrier_arrive_noinc(&S.full[ps.stage]);
        }
        ps.advance();
      }
    }
    return;
  }

  // ------------------------------------------------------------------ consumer warpgroups
  cutlass::arch::warpgroup_reg_alloc<Cfg::kConsumerRegs>();
  const int ct = static_cast<int>(threadIdx.x) - 128;  // 0..255
  typename Cfg::TiledMma mma;
  auto thr = mma.get_thread_slice(ct);
  Tensor sA = make_tensor(make_smem_ptr(&S.A[0][0]), typename Cfg::SmemLayoutA{});
  Tensor sB = make_tensor(make_smem_ptr(&S.B[0][0]), typename Cfg::SmemLayoutB{});
  Tensor tCrA = thr.make_fragment_A(thr.partition_A(sA));  // (MMA, 1, BK/32, Stages) descriptors
  Tensor tCrB = thr.make_fragment_B(thr.partition_B(sB));
  Tensor acc = partition_fragment_C(mma, Shape<Int<BM>, Int<BN>>{});  // int32, BN/2 values
  constexpr int kV = decltype(size(acc))::value;
  constexpr int kKSteps = BK / 32;
  static_assert(kV == BN / 2, "one 64 x BN wgmma accumulator per consumer warpgroup");
  // The wgmma D fragment: value v of thread t sits at row 16*warp + t%32/4 + 8*(v/2%2) of its
  // warpgroup's 64 rows and column 2*(t%4) + v%2 + 8*(v/4).
  const int r_lo = (warp_group - 1) * 64 + warp * 16 + lane / 4, r_hi = r_lo + 8;
  const int c_base = 2 * (lane % 4);

  sm90::PipeState<Stages> ps;
  auto release = [&](int stage) {
    if (lane == 0) Barrier::arrive(&S.empty[stage]);
  };
  // Issues the wgmmas of the K tile in `stage` into acc (zeroing it first when `zero`).
  auto mma_tile = [&](int stage, bool zero) {
    mma.accumulate_ = zero ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
    warpgroup_fence_operand(acc);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < kKSteps; ++k) {
      cute::gemm(mma, tCrA(_, _, k, stage), tCrB(_, _, k, stage), acc);
      mma.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
  };
  using Out2 = typename detail::Pair<Out>::type;
  // Stores value pairs (v, v+1) = columns (c, c+1) of row r_lo (v % 4 == 0) or r_hi (v % 4 == 2);
  // value_of(v, hi, c) gives the fp32 result of value v (hi: row r_hi, c: its column).
  auto store = [&](const TileCoord& tc, auto&& value_of) {
    Out* gC = reinterpret_cast<Out*>(p.C) + tc.row0 * p.N + tc.n0;
    CUTE_UNROLL
    for (int v = 0; v < kV; v += 2) {
      const bool hi = (v & 2) != 0;
      const int r = hi ? r_hi : r_lo, c = c_base + 8 * (v >> 2);
      if (r < tc.rows_valid && c < tc.cols_valid) {  // N % 8 == 0: c + 1 is valid too
        Out2 pair;
        pair.x = detail::to_out<Out>(value_of(v, hi, c));
        pair.y = detail::to_out<Out>(value_of(v + 1, hi, c + 1));
        *reinterpret_cast<Out2*>(gC + int64_t(r) * p.N + c) = pair;
      }
    }
  };

  for (int t = blockIdx.x; t < total_tiles; t += gridDim.x) {
    const TileCoord tc = tile_at(t);
    if constexpr (!kHybrid) {
      // One int32 accumulation over all of K; a stage is released once the wgmmas of the next
      // K tile are issued and the previous batch has completed.
      int prev = -1;
      for (int kt = 0; kt < k_tiles; ++kt) {
        TxBarrier::wait(&S.full[ps.stage], ps.phase);
        mma_tile(ps.stage, kt == 0);
        warpgroup_wait<1>();
        if (prev >= 0) release(prev);
        prev = ps.stage;
        ps.advance();
      }
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc);
      release(prev);
      // Scales first (registers), stores after: no load waits behind a store it might alias.
      const float sa_lo = p.scale_a[p.scale_a_per_row ? tc.row0 + min(r_lo, tc.rows_valid - 1) : 0];
      const float sa_hi = p.scale_a[p.scale_a_per_row ? tc.row0 + min(r_hi, tc.rows_valid - 1) : 0];
      const float* sb = p.scale_b + (p.scale_b_per_channel ? int64_t(tc.expert) * p.N + tc.n0
                                                           : int64_t(tc.expert));
      float sbv[kV / 2];  // columns c_base + 8j + {0, 1}
      CUTE_UNROLL
      for (int j = 0; j < kV / 4; ++j) {
        const int c = c_base + 8 * j;
        const bool ok = c < tc.cols_valid;
        sbv[2 * j] = ok ? sb[p.scale_b_per_channel ? c : 0] : 0.f;
        sbv[2 * j + 1] = ok ? sb[p.scale_b_per_channel ? c + 1 : 0] : 0.f;
      }
      store(tc, [&](int v, bool hi, int) {
        return static_cast<float>(acc(v)) * (hi ? sa_hi : sa_lo) * sbv[2 * (v >> 2) + (v & 1)];
      });
    } else {
      Tensor acc_i = make_tensor_like(acc);  // int32 chunk of rescaled block sums
      Tensor acc_f = make_tensor_like<float>(acc);
      clear(acc_i);
      clear(acc_f);
      auto main_loop = [&](auto fp32_terms) {
        constexpr bool kFp32 = decltype(fp32_terms)::value;
        // One K-block per K tile (B = BK): the block sum is complete after each tile's wgmmas.
        for (BlockCursor block; block.b < p.nb; block.next(p)) {
          const bool flush = block.flush(p);
          TxBarrier::wait(&S.full[ps.stage], ps.phase);
          mma_tile(ps.stage, /*zero=*/true);
          warpgroup_wait<0>();
          warpgroup_fence_operand(acc);
          const int st = ps.stage;
          const int qa_lo = S.qa[st][r_lo], qa_hi = S.qa[st][r_hi];
          const float fa_lo = S.fa[st][r_lo], fa_hi = S.fa[st][r_hi];
          CUTE_UNROLL
          for (int v = 0; v < kV; v += 4) {
            const int c = c_base + 8 * (v >> 2);
            const int2 qb = *reinterpret_cast<const int2*>(&S.qb[st][c]);
            const float2 fb = *reinterpret_cast<const float2*>(&S.fb[st][c]);
            const int q[4] = {qa_lo * qb.x, qa_lo * qb.y, qa_hi * qb.x, qa_hi * qb.y};
            const float f[4] = {fa_lo * fb.x, fa_lo * fb.y, fa_hi * fb.x, fa_hi * fb.y};
            CUTE_UNROLL
            for (int i = 0; i < 4; ++i) {
              if constexpr (kFp32) {
                // One block term may exceed int32: form it in fp32 (FORMAT.md section 5).
                const float term = static_cast<float>(acc(v + i)) * static_cast<float>(q[i]);
                acc_f(v + i) = fmaf(term, f[i], acc_f(v + i));
              } else {
                acc_i(v + i) += acc(v + i) * q[i];
                if (flush) {
                  acc_f(v + i) = fmaf(static_cast<float>(acc_i(v + i)), f[i], acc_f(v + i));
                  acc_i(v + i) = 0;
                }
              }
            }
          }
          release(st);
          ps.advance();
        }
      };
      if (p.flush_period > 0)
        main_loop(std::false_type{});
      else
        main_loop(std::true_type{});
      store(tc, [&](int v, bool, int) { return acc_f(v); });
    }
  }
#else
  // Built for another target: the dispatcher never launches this path there.
  __trap();
#endif
}

}  // namespace int8_hybrid_moe::gemm
