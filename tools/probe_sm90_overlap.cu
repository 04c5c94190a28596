// Probe of one SM90 hardware question behind the hybrid GEMM's speed (docs/PERF.md, tenth
// session): does a warpgroup's integer rescale (IMUL + IMAD on registers) run while its own or
// another warpgroup's int8 wgmmas execute, or do the two serialize?
//
// One CTA per SM, 1 or 2 warpgroups, each looping `iters` times over one of the modes below on
// operands already in shared memory (no global traffic inside the loop). Prints clock cycles
// per iteration (median over CTAs of each warpgroup's mean). Mode names:
//   mma       4 x wgmma m64n128k32 s8 (one 64 x 128 x 128 block), commit, wait 0
//   mma2      the same, two batches in flight (wait 1, two accumulators): tensor throughput
//   int       the hybrid's rescale of one block: 64 IMUL + 64 IMAD, scales read from smem
//   fp        the same shape of work on the FP32 pipe: 64 FMUL + 64 FFMA
//   mma+int   issue a block's wgmmas, rescale the previous block's sum meanwhile, wait 0
//   mma+fp    as mma+int with the FP32 work
//   split int warpgroup 0 runs `mma` while warpgroup 1 runs `int` (2 warpgroups only): whether
//             one warpgroup's integer work slows another's wgmmas
//   split fp  the same with `fp`
//   turns1    (2 warpgroups) the warpgroups take turns on the tensor core: wait for the turn,
//             one block's wgmmas, wait 0, hand the turn over, rescale the block meanwhile
//   turns2    the same with two blocks per turn (two accumulators, both batches in flight),
//             then both rescales: the tensor core always has two batches
//   both2     no turns: each warpgroup issues two blocks (both in flight), waits, rescales both
//   both1     no turns, one block: issue, wait, rescale (the hybrid kernel's per-block sequence)
//   both1 sync, both2 sync   both1 / both2 with the two warpgroups synchronized at every
//             iteration (2 warpgroups only): no drift between them, the tightest stage coupling
//   mma n64x2 the block as two 64 x 64 halves (8 x wgmma m64n64k32, the halves interleaved: two
//             independent accumulator chains from one warpgroup, same 64 registers), wait 0
//   iturns    (2 warpgroups) turns handed over right after the issue, not after the wait: the
//             other warpgroup's wgmmas queue behind this one's while this one drains and rescales
//   iturns n64x2   the same with the block issued as two interleaved 64 x 64 halves
//   int pre   `int` with the block's scales loaded from shared memory into registers first (all
//             LDS before any multiply)
//   mma+int pre    `mma+int` with the scales loaded before the wgmmas are issued: no LDS after
//             the warpgroup's own wgmmas in its program order (twenty-third session: the
//             rescale's products waited on their LDS, short scoreboard, in the staggered kernel)
//   mma+int hoist  `mma+int` with the scales in registers from before the loop: no LDS at all
//   int hoist `int` without LDS (the rescale's arithmetic alone)
//   halves+int the block as two 64 x 64 batches kept one in flight (groups of 4 blocks as
//             straight-line code, the twenty-third session's kernel experiment): wait for half
//             0, rescale it (as `int`, scales from shared memory), issue the next block's half
//             0, wait for half 1, rescale it, issue the next half 1
//   halves    the same schedule with one XOR per value instead of the rescale
//   int+f64 N the rescale of `int` with its last N of 64 values per thread on the FP64 pipe
//             instead (exact: the int32 block sum converted by the 2^52 magic number, DADD, then
//             DMUL by QA and DFMA by QB into a double accumulator, which is exact to 2^53 and
//             needs no flush); FP64 and IMAD are separate pipes, so if the rescale is bound by
//             the FMA-heavy pipe, a share on FP64 should shorten it (fourteenth session)
// The multi-block modes report cycles per block (an iteration's cycles / its blocks).
// If the integer work overlaps the tensor core, mma+int takes about max(mma, int) cycles; if it
// serializes, about mma + int. (Two batches in flight with the rescale between them is the
// hybrid kernel with two block accumulators, measured in the kernel itself: PERF.md, tenth
// session; written here, ptxas interleaves the rescale with the next batch and serializes all.)
//
//   probe_sm90_overlap [--iters 4000]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cute/tensor.hpp>
#include <cute/arch/mma_sm90_gmma.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cutlass/arch/barrier.h>

namespace {

// The modes kTurns1 .. kIturns64 are the schedule modes (one loop in the kernel below).
enum Mode : int {
  kMma,
  kMma2,
  kInt,
  kFp,
  kMmaInt,
  kMmaFp,
  kSplitInt,
  kSplitFp,
  kTurns1,
  kTurns2,
  kBoth2,
  kBoth1,
  kBoth1Sync,
  kBoth2Sync,
  kIturns,
  kIturns64,
  kMma64,
  kMix16,
  kMix24,
  kMix32,
  kIntPre,
  kMmaIntPre,
  kMmaIntHoist,
  kIntHoist,
  kHalvesInt,
  kHalves,
  kModes
};
const char* const kModeNames[] = {
    "mma",        "mma2",       "int",     "fp",           "mma+int",       "mma+fp",
    "split int",  "split fp",   "turns1",  "turns2",       "both2",         "both1",
    "both1 sync", "both2 sync", "iturns",  "iturns n64x2", "mma n64x2",     "int+f64 16",
    "int+f64 24", "int+f64 32", "int pre", "mma+int pre",  "mma+int hoist", "int hoist",
    "halves+int", "halves"};
static_assert(sizeof(kModeNames) / sizeof(kModeNames[0]) == kModes, "one name per mode");
constexpr int f64_values(int m) {
  return m == kMix16 ? 16 : m == kMix24 ? 24 : m == kMix32 ? 32 : 0;
}
constexpr bool two_warpgroups_only(int m) {
  return m == kSplitInt || m == kSplitFp || m == kTurns1 || m == kTurns2 || m == kBoth1Sync ||
         m == kBoth2Sync || m == kIturns || m == kIturns64;
}
constexpr int blocks_per_iteration(int m) {
  return m == kTurns2 || m == kBoth2 || m == kBoth2Sync ? 2 : 1;
}

constexpr int kSmemA = 64 * 128, kSmemB = 128 * 128, kScaleWords = 256;
constexpr int kSmemBytes = 1024 + kSmemA + kSmemB + 4 * kScaleWords;

// x as a double, exactly, without a conversion instruction: the double with high word 0x43380000
// and low word x + 2^31 is 2^52 + 2^51 + 2^31 + x.
__device__ __forceinline__ double exact_double(int x) {
  return __hiloint2double(0x43380000, static_cast<int>(static_cast<unsigned>(x) ^ 0x80000000u)) -
         6755401588539392.0;
}

template <int kMode, int kWarpGroups>
__global__ void __launch_bounds__(128 * kWarpGroups, 1)
    overlap_probe(int iters, int* __restrict__ sink, long long* __restrict__ cycles) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace cute;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t pad = (1024u - (cute::cast_smem_ptr_to_uint(smem_raw) & 1023u)) & 1023u;
  uint8_t* base = smem_raw + pad;
  int8_t* a_ptr = reinterpret_cast<int8_t*>(base);
  int8_t* b_ptr = a_ptr + kSmemA;
  int* scales = reinterpret_cast<int*>(b_ptr + kSmemB);
  for (int i = threadIdx.x; i < kSmemA + kSmemB; i += blockDim.x)
    a_ptr[i] = static_cast<int8_t>((i * 37 + blockIdx.x) % 255 - 127);
  for (int i = threadIdx.x; i < kScaleWords; i += blockDim.x) scales[i] = 1 + (i * 7) % 16;
  __syncthreads();

  using Atom = SM90::GMMA::MMA_64x128x32_S32S8S8_SS_TN;
  using LayoutA = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<int8_t>{},
                                         make_shape(Int<64>{}, Int<128>{})));
  using LayoutB = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<int8_t>{},
                                         make_shape(Int<128>{}, Int<128>{})));
  auto mma = make_tiled_mma(Atom{});
  const int t = static_cast<int>(threadIdx.x) % 128;
  auto thr = mma.get_thread_slice(t);
  Tensor sA = make_tensor(make_smem_ptr(a_ptr), LayoutA{});
  Tensor sB = make_tensor(make_smem_ptr(b_ptr), LayoutB{});
  Tensor tA = thr.make_fragment_A(thr.partition_A(sA));
  Tensor tB = thr.make_fragment_B(thr.partition_B(sB));
  Tensor acc = partition_fragment_C(mma, Shape<Int<64>, Int<128>>{});
  Tensor acc2 = make_tensor_like(acc);
  Tensor acc_i = make_tensor_like(acc);
  Tensor acc_f = make_tensor_like<float>(acc);
  constexpr int kV = decltype(size(acc))::value;
  // The same block as two 64 x 64 halves: accumulator (32 values, 1, 2), value v at the column
  // the 64 x 128 layout gives it (the second half's values start at 32 = column 64).
  auto mma64 = make_tiled_mma(SM90::GMMA::MMA_64x64x32_S32S8S8_SS_TN{});
  auto thr64 = mma64.get_thread_slice(t);
  Tensor tA64 = thr64.make_fragment_A(thr64.partition_A(sA));  // (MMA, 1, 4)
  Tensor tB64 = thr64.make_fragment_B(thr64.partition_B(sB));  // (MMA, 2, 4)
  Tensor acc64 = partition_fragment_C(mma64, Shape<Int<64>, Int<128>>{});
  static_assert(decltype(size(acc64))::value == kV, "same registers as one 64 x 128 block");
  constexpr bool kSchedule = kMode >= kTurns1 && kMode <= kIturns64;
  // Two-batch modes write both accumulators by wgmma only (no other writes: ptxas would
  // otherwise serialize the wgmmas, C7514); the others start from thread-dependent values.
  constexpr bool kTwoBatches = kMode == kMma2 || kSchedule;
  constexpr bool kHalves64 = kMode == kMma64 || kMode == kIturns64;  // acc64 written by wgmma
  for (int v = 0; v < kV; ++v) {
    if constexpr (!kTwoBatches) {
      acc(v) = v + t;
      acc2(v) = v - t;
    }
    acc_i(v) = 0;
    acc_f(v) = 0.f;
  }
  const int lane = t % 32, c_base = 2 * (lane % 4), r_lo = t / 4 % 8 + 16 * (t / 32);

  volatile int* const ready = scales + kScaleWords - 1;  // never 0: stands in for a full barrier
  auto issue = [&](auto& d) __attribute__((always_inline)) {
    // As the GEMM kernels wait on a stage's full barrier before its wgmmas (a loop ptxas does not
    // move the rescale across; without it ptxas interleaves them and serializes all, C7514).
    while (*ready == 0) {
    }
    warpgroup_fence_operand(d);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < 4; ++k) {
      mma.accumulate_ = k == 0 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
      cute::gemm(mma, tA(_, _, k), tB(_, _, k), d);
    }
    warpgroup_commit_batch();
  };
  auto issue64 = [&]() __attribute__((always_inline)) {
    while (*ready == 0) {
    }
    warpgroup_fence_operand(acc64);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int k = 0; k < 4; ++k) {
      CUTE_UNROLL
      for (int n = 0; n < 2; ++n) {
        mma64.accumulate_ = k == 0 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
        cute::gemm(mma64, tA64(_, 0, k), tB64(_, n, k), acc64(_, 0, n));
      }
    }
    warpgroup_commit_batch();
  };
  // The hybrid kernel's per-block rescale (grouped_gemm_sm90.cuh), scales from shared memory;
  // in the int+f64 modes the values from kIntV on go to the FP64 pipe (exact, see the file
  // comment).
  constexpr int kF64V = f64_values(kMode), kIntV = kV - kF64V;
  static_assert(kF64V % 4 == 0, "whole quads of values on each pipe");
  double acc_d[kF64V > 0 ? kF64V : 1] = {};
  // Over values [v0, v1) of x (all of them but halves+int's, which rescales one half at a time).
  auto int_work = [&](auto const& x, int it, auto v0, auto v1) __attribute__((always_inline)) {
    constexpr int kV0 = decltype(v0)::value, kV1 = decltype(v1)::value;
    const int* q = scales + (it & 7) * 16;
    const int qa_lo = q[r_lo % 16], qa_hi = q[(r_lo + 8) % 16];
    CUTE_UNROLL
    for (int v = kV0; v < (kV1 < kIntV ? kV1 : kIntV); v += 4) {
      const int2 qb = *reinterpret_cast<const int2*>(&scales[128 + c_base + 8 * (v >> 2) % 128]);
      const int p[4] = {qa_lo * qb.x, qa_lo * qb.y, qa_hi * qb.x, qa_hi * qb.y};
      CUTE_UNROLL
      for (int i = 0; i < 4; ++i) acc_i(v + i) += x(v + i) * p[i];
    }
    if constexpr (kF64V > 0) {
      const double da_lo = exact_double(qa_lo), da_hi = exact_double(qa_hi);
      CUTE_UNROLL
      for (int v = (kV0 > kIntV ? kV0 : kIntV); v < kV1; v += 4) {
        const int2 qb = *reinterpret_cast<const int2*>(&scales[128 + c_base + 8 * (v >> 2) % 128]);
        const double db[2] = {exact_double(qb.x), exact_double(qb.y)};
        CUTE_UNROLL
        for (int i = 0; i < 4; ++i) {
          const int d = v - kIntV + i;
          acc_d[d] = fma(exact_double(x(v + i)) * (i < 2 ? da_lo : da_hi), db[i % 2], acc_d[d]);
        }
      }
    }
  };
  // The same rescale from scales already in registers (the *pre and *hoist modes).
  struct RegScales {
    int qa_lo, qa_hi;
    int2 qb[kV / 4];
  };
  auto load_scales = [&](int it, RegScales& rs) __attribute__((always_inline)) {
    const int* q = scales + (it & 7) * 16;
    rs.qa_lo = q[r_lo % 16];
    rs.qa_hi = q[(r_lo + 8) % 16];
    CUTE_UNROLL
    for (int v = 0; v < kV; v += 4)
      rs.qb[v / 4] = *reinterpret_cast<const int2*>(&scales[128 + c_base + 8 * (v >> 2) % 128]);
  };
  // (hoist: 8 distinct column pairs, so the scales stay in registers beside three accumulators)
  constexpr int kQbRegs = kMode == kMmaIntHoist || kMode == kIntHoist ? 8 : kV / 4;
  auto int_work_regs = [&](auto const& x, const RegScales& rs) __attribute__((always_inline)) {
    CUTE_UNROLL
    for (int v = 0; v < kV; v += 4) {
      const int2 qb = rs.qb[v / 4 % kQbRegs];
      const int p[4] = {rs.qa_lo * qb.x, rs.qa_lo * qb.y, rs.qa_hi * qb.x, rs.qa_hi * qb.y};
      CUTE_UNROLL
      for (int i = 0; i < 4; ++i) acc_i(v + i) += x(v + i) * p[i];
    }
  };
  auto fp_work = [&](auto const& x, int it) __attribute__((always_inline)) {
    const float* q = reinterpret_cast<const float*>(scales) + (it & 7) * 16;
    const float fa_lo = q[r_lo % 16], fa_hi = q[(r_lo + 8) % 16];
    CUTE_UNROLL
    for (int v = 0; v < kV; v += 4) {
      const float2 fb =
          *reinterpret_cast<const float2*>(&scales[128 + c_base + 8 * (v >> 2) % 128]);
      const float p[4] = {fa_lo * fb.x, fa_lo * fb.y, fa_hi * fb.x, fa_hi * fb.y};
      CUTE_UNROLL
      for (int i = 0; i < 4; ++i) acc_f(v + i) = fmaf(__int_as_float(x(v + i)), p[i], acc_f(v + i));
    }
  };

  __syncwarp();
  const long long t0 = clock64();
  if constexpr (kMode == kMma2) {
    issue(acc);
    for (int it = 0; it < iters; it += 2) {
      issue(acc2);
      warpgroup_wait<1>();
      issue(acc);
      warpgroup_wait<1>();
    }
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc);
  } else if constexpr (kMode == kMma64) {
    for (int it = 0; it < iters; ++it) {
      issue64();
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc64);
    }
  } else if constexpr (kMode == kIturns || kMode == kIturns64) {
    // Warpgroup w waits on named barrier 1 + w for its turn and hands the turn over as soon as
    // its wgmmas are issued. Every wait pairs with one signal (none left over at exit).
    const int wg = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
    for (int it = 0; it < iters; ++it) {
      if (it > 0 || wg == 1) cutlass::arch::NamedBarrier::sync(256, 1 + wg);
      if constexpr (kMode == kIturns64)
        issue64();
      else
        issue(acc);
      if (wg == 0 || it + 1 < iters) cutlass::arch::NamedBarrier::arrive(256, 2 - wg);
      warpgroup_wait<0>();
      if constexpr (kMode == kIturns64) {
        warpgroup_fence_operand(acc64);
        int_work(acc64, it, Int<0>{}, Int<kV>{});
      } else {
        warpgroup_fence_operand(acc);
        int_work(acc, it, Int<0>{}, Int<kV>{});
      }
    }
  } else if constexpr (kSchedule) {
    constexpr bool kTurns = kMode == kTurns1 || kMode == kTurns2;
    constexpr bool kTwo = blocks_per_iteration(kMode) == 2;
    // Warpgroup w waits on named barrier 1 + w for its turn; the other signals it after its
    // wgmmas completed. Every wait pairs with one signal (none left over at exit).
    const int wg = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
    for (int it = 0; it < iters; ++it) {
      if (kTurns && (it > 0 || wg == 1)) cutlass::arch::NamedBarrier::sync(256, 1 + wg);
      // Both warpgroups start each iteration together, as when they share a kernel's stages
      // with no slack: neither can drift ahead of the other.
      if (kMode == kBoth1Sync || kMode == kBoth2Sync) cutlass::arch::NamedBarrier::sync(256, 3);
      issue(acc);
      if constexpr (kTwo) issue(acc2);
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc);
      warpgroup_fence_operand(acc2);
      if (kTurns && (wg == 0 || it + 1 < iters)) cutlass::arch::NamedBarrier::arrive(256, 2 - wg);
      int_work(acc, it, Int<0>{}, Int<kV>{});
      if constexpr (kTwo) int_work(acc2, it + 1, Int<0>{}, Int<kV>{});
    }
  } else if constexpr (kMode == kHalvesInt || kMode == kHalves) {
    constexpr bool kWork = kMode == kHalvesInt;
    // The half's 32 accumulator values, ordered against its wgmmas.
    auto fence_half = [&](auto n) __attribute__((always_inline)) {
      constexpr int kN = decltype(n)::value;
      CUTE_UNROLL
      for (int v = 32 * kN; v < 32 * kN + 32; ++v)
        warpgroup_fence_operand(reinterpret_cast<uint32_t&>(acc64(v)));
    };
    auto issue_half = [&](auto n) __attribute__((always_inline)) {
      constexpr int kN = decltype(n)::value;
      while (*ready == 0) {
      }
      fence_half(n);
      warpgroup_arrive();
      CUTE_UNROLL
      for (int k = 0; k < 4; ++k) {
        mma64.accumulate_ = k == 0 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
        cute::gemm(mma64, tA64(_, 0, k), tB64(_, kN, k), acc64(_, 0, kN));
      }
      warpgroup_commit_batch();
    };
    // halves+int: the hybrid's rescale of the half (`int`, scales read from shared memory, as the
    // kernel does); halves: one XOR per value, so ptxas keeps the wgmmas (it drops wgmmas whose
    // results nothing reads).
    auto rescale_half = [&](auto n, int it) __attribute__((always_inline)) {
      constexpr int kN = decltype(n)::value;
      fence_half(n);
      if constexpr (kWork) {
        int_work(acc64, it, Int<32 * kN>{}, Int<32 * kN + 32>{});
      } else {
        CUTE_UNROLL
        for (int v = 32 * kN; v < 32 * kN + 32; ++v) acc_i(v) ^= acc64(v);
      }
    };
    for (int it = 0; it < iters; it += 4) {
      issue_half(Int<0>{});
      issue_half(Int<1>{});
      CUTE_UNROLL
      for (int i = 0; i < 4; ++i) {
        warpgroup_wait<1>();
        rescale_half(Int<0>{}, it + i);
        if (i < 3) {
          issue_half(Int<0>{});
          warpgroup_wait<1>();
        } else {
          warpgroup_wait<0>();
        }
        rescale_half(Int<1>{}, it + i);
        if (i < 3) issue_half(Int<1>{});
      }
    }
  } else if constexpr (kMode == kSplitInt || kMode == kSplitFp) {
    // Warpgroup 0 runs the mma loop, warpgroup 1 the integer (or FP32) loop, at the same time.
    // (Warp-uniform from lane 0, so ptxas sees no divergent branch around the wgmmas.)
    const int wg = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
    if (wg == 0) {
      for (int it = 0; it < iters; ++it) {
        issue(acc);
        warpgroup_wait<0>();
        warpgroup_fence_operand(acc);
        CUTE_UNROLL
        for (int v = 0; v < kV; ++v) acc2(v) = acc(v);
      }
    } else {
      for (int it = 0; it < iters; ++it) {
        if constexpr (kMode == kSplitInt)
          int_work(acc2, it, Int<0>{}, Int<kV>{});
        else
          fp_work(acc2, it);
        CUTE_UNROLL
        for (int v = 0; v < kV; ++v) acc2(v) ^= it;
      }
    }
  } else {
    constexpr bool kMmaToo = kMode == kMma || kMode == kMmaInt || kMode == kMmaFp ||
                             kMode == kMmaIntPre || kMode == kMmaIntHoist;
    // The register-scale modes: loaded before each issue (pre) or once before the loop (hoist).
    constexpr bool kRegs = kMode >= kIntPre && kMode <= kIntHoist;
    constexpr bool kHoist = kMode == kMmaIntHoist || kMode == kIntHoist;
    RegScales rs{};
    if constexpr (kHoist) load_scales(0, rs);
    for (int it = 0; it < iters; ++it) {
      if constexpr (kRegs && !kHoist) load_scales(it, rs);  // before the issue
      if constexpr (kMmaToo) issue(acc);
      if constexpr (kRegs) int_work_regs(acc2, rs);
      if constexpr (kMode == kInt || kMode == kMmaInt || kF64V > 0)
        int_work(acc2, it, Int<0>{}, Int<kV>{});
      if constexpr (kMode == kFp || kMode == kMmaFp) fp_work(acc2, it);
      if constexpr (kHoist) rs.qa_lo ^= it & 1;  // a value the compiler cannot hoist the work on
      if constexpr (kMmaToo) {
        warpgroup_wait<0>();
        warpgroup_fence_operand(acc);
        // The next iteration's rescale reads this block's sum (as the hybrid's would).
        CUTE_UNROLL
        for (int v = 0; v < kV; ++v) acc2(v) = acc(v);
      } else {
        CUTE_UNROLL
        for (int v = 0; v < kV; ++v) acc2(v) ^= it;
      }
    }
  }
  const long long t1 = clock64();
  int s = 0;
  for (int v = 0; v < kV; ++v) {
    s += acc_i(v) + __float_as_int(acc_f(v));
    s += acc(v) + acc2(v);
    if constexpr (kHalves64 || kMode == kHalvesInt || kMode == kHalves) s += acc64(v);
  }
  for (int d = 0; d < kF64V; ++d) s += __double2loint(acc_d[d]);
  sink[blockIdx.x * blockDim.x + threadIdx.x] = s;
  if (t == 0)
    cycles[blockIdx.x * kWarpGroups + threadIdx.x / 128] =
        (t1 - t0) / (iters * blocks_per_iteration(kMode));
#else
  __trap();
#endif
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "probe_sm90_overlap: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

template <int kMode, int kWarpGroups>
double run(int sms, int iters, int* sink, long long* cycles) {
  auto k = overlap_probe<kMode, kWarpGroups>;
  check(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes),
        "cudaFuncSetAttribute");
  k<<<sms, 128 * kWarpGroups, kSmemBytes>>>(iters, sink, cycles);  // warm-up
  k<<<sms, 128 * kWarpGroups, kSmemBytes>>>(iters, sink, cycles);
  check(cudaDeviceSynchronize(), "probe kernel");
  std::vector<long long> c(static_cast<size_t>(sms) * kWarpGroups);
  check(cudaMemcpy(c.data(), cycles, c.size() * sizeof(long long), cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  if (two_warpgroups_only(kMode)) {  // each warpgroup's own median
    std::vector<long long> w[2];
    for (size_t i = 0; i < c.size(); ++i) w[i % 2].push_back(c[i]);
    for (auto& x : w) std::sort(x.begin(), x.end());
    std::printf("  [%s: warpgroup 0 %lld, warpgroup 1 %lld]", kModeNames[kMode],
                w[0][w[0].size() / 2], w[1][w[1].size() / 2]);
  }
  std::sort(c.begin(), c.end());
  return static_cast<double>(c[c.size() / 2]);
}

template <int kWarpGroups, int... kM>
void run_all(int sms, int iters, int* sink, long long* cycles, std::integer_sequence<int, kM...>) {
  std::printf("%d warpgroup(s) per SM:", kWarpGroups);
  const double r[] = {(kWarpGroups == 2 || !two_warpgroups_only(kM)
                           ? run<kM, kWarpGroups>(sms, iters, sink, cycles)
                           : 0.0)...};
  std::printf("\n ");
  for (int m = 0; m < kModes; ++m)
    if (r[m] > 0) std::printf("  %s %.0f", kModeNames[m], r[m]);
  std::printf("   (clock cycles per block)\n");
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 4000;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) {
      iters = std::max(2, std::atoi(argv[++i]) / 2 * 2);
    } else {
      std::fprintf(stderr, "usage: probe_sm90_overlap [--iters N]\n");
      return 2;
    }
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  if (prop.major != 9) {
    std::printf("probe_sm90_overlap: needs an SM90 GPU (found %s, SM%d%d); nothing to do\n",
                prop.name, prop.major, prop.minor);
    return 0;
  }
  int* sink = nullptr;
  long long* cycles = nullptr;
  check(cudaMalloc(&sink, sizeof(int) * prop.multiProcessorCount * 256), "cudaMalloc");
  check(cudaMalloc(&cycles, sizeof(long long) * prop.multiProcessorCount * 2), "cudaMalloc");
  std::printf("probe_sm90_overlap on %s (%d SMs), %d iterations, one 64 x 128 x 128 block each\n",
              prop.name, prop.multiProcessorCount, iters);
  run_all<1>(prop.multiProcessorCount, iters, sink, cycles,
             std::make_integer_sequence<int, kModes>{});
  run_all<2>(prop.multiProcessorCount, iters, sink, cycles,
             std::make_integer_sequence<int, kModes>{});
  check(cudaFree(sink), "cudaFree");
  check(cudaFree(cycles), "cudaFree");
  return 0;
}
