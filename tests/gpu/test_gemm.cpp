// GPU tests of the grouped GEMMs against the CPU reference (exact integer semantics).
// The only differences allowed: fp32 rounding of flushed chunk sums / fp32 summation order, and
// the one final rounding to bf16/fp16. Tolerance: 1 ulp of the output dtype at |ref| plus
// 1e-6 of the magnitude bound sum |terms| (any indexing or scale error is O(magnitude)).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "int8_hybrid_moe/format.h"
#include "int8_hybrid_moe/gemm.h"
#include "int8_hybrid_moe/reference.h"

namespace {

using namespace int8_hybrid_moe;
using i8h_test::DeviceBuffer;

struct GroupedProblem {
  std::vector<int64_t> rows_per_expert;
  int64_t N = 0, K = 0;
  int64_t R() const {
    return std::accumulate(rows_per_expert.begin(), rows_per_expert.end(), int64_t(0));
  }
  int E() const { return static_cast<int>(rows_per_expert.size()); }
  std::vector<int64_t> offsets() const {
    std::vector<int64_t> o(rows_per_expert.size() + 1, 0);
    for (size_t e = 0; e < rows_per_expert.size(); ++e) o[e + 1] = o[e] + rows_per_expert[e];
    return o;
  }
};

// Experts of uniformly random 0..max_rows rows (the last one clamped) until R = total_rows.
std::vector<int64_t> random_rows_per_expert(std::mt19937_64& rng, int64_t max_rows,
                                            int64_t total_rows) {
  std::uniform_int_distribution<int64_t> rows(0, max_rows);
  std::vector<int64_t> out;
  for (int64_t total = 0; total < total_rows;) {
    out.push_back(std::min(rows(rng), total_rows - total));
    total += out.back();
  }
  return out;
}

// Rows to compare: all of them for small problems, else the first/last row of every expert and
// a random sample (the CPU reference is O(N*K) per row).
std::vector<int64_t> rows_to_check(const GroupedProblem& pb, std::mt19937_64& rng) {
  const int64_t R = pb.R();
  std::vector<int64_t> rows;
  if (R * pb.N * pb.K <= int64_t(1) << 28) {
    rows.resize(R);
    std::iota(rows.begin(), rows.end(), 0);
    return rows;
  }
  const auto off = pb.offsets();
  for (int e = 0; e < pb.E(); ++e)
    if (off[e + 1] > off[e]) {
      rows.push_back(off[e]);
      rows.push_back(off[e + 1] - 1);
    }
  std::uniform_int_distribution<int64_t> pick(0, R - 1);
  for (int i = 0; i < 64; ++i) rows.push_back(pick(rng));
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  // Bound the CPU work to ~2^30 MACs.
  const int64_t max_rows = std::max<int64_t>(8, (int64_t(1) << 30) / (pb.N * pb.K));
  if (static_cast<int64_t>(rows.size()) > max_rows) {
    std::shuffle(rows.begin(), rows.end(), rng);
    rows.resize(max_rows);
    std::sort(rows.begin(), rows.end());
  }
  return rows;
}

int expert_of_row(const std::vector<int64_t>& off, int64_t r) {
  return static_cast<int>(std::upper_bound(off.begin(), off.end(), r) - off.begin()) - 1;
}

ref::HybridTensor slice_rows(const ref::HybridTensor& t, int64_t r0, int64_t n) {
  ref::HybridTensor s;
  s.rows = n;
  s.K = t.K;
  s.nb = t.nb;
  s.ng = t.ng;
  s.q.assign(t.q.begin() + r0 * t.K, t.q.begin() + (r0 + n) * t.K);
  s.Q.assign(t.Q.begin() + r0 * t.nb, t.Q.begin() + (r0 + n) * t.nb);
  s.F.assign(t.F.begin() + r0 * t.ng, t.F.begin() + (r0 + n) * t.ng);
  return s;
}

std::vector<float> random_values(size_t n, uint64_t seed, DType dt, float stddev) {
  auto raw = i8h_test::random_act(n, seed, dt, stddev);
  return ref::to_float(raw, dt);
}

struct HybridCase {
  GroupedProblem pb;
  HybridFormat fmt;
  DType out = DType::kBFloat16;
  GemmTile tile = GemmTile::kAuto;
  bool worst_case = false;  // all |q| = 127, Q = q_max, same signs (int32 overflow probe)
};

// Worst case operand: q = 127, Q = q_max, F a small power of two keeping the output finite.
ref::HybridTensor worst_case_operand(int64_t rows, int64_t K, const HybridFormat& f, float F) {
  ref::HybridTensor t;
  t.rows = rows;
  t.K = K;
  t.nb = num_blocks(K, f);
  t.ng = num_groups(K, f);
  t.q.assign(rows * K, 127);
  t.Q.assign(rows * t.nb, f.q_max);
  t.F.assign(rows * t.ng, F);
  return t;
}

void run_hybrid_case_once(const HybridCase& c) {
  const uint64_t seed = i8h_test::fresh_seed();
  SCOPED_TRACE(::testing::Message()
               << "seed=" << seed << " R=" << c.pb.R() << " N=" << c.pb.N << " K=" << c.pb.K
               << " E=" << c.pb.E() << " B=" << c.fmt.block_size << " S=" << c.fmt.super_group
               << " q_max=" << c.fmt.q_max << " out=" << dtype_name(c.out)
               << " tile=" << gemm_tile_name(c.tile));
  std::mt19937_64 rng(seed);
  const int64_t R = c.pb.R(), N = c.pb.N, K = c.pb.K;
  const int E = c.pb.E();
  ref::HybridTensor a, w;
  if (c.worst_case) {
    // Output = K * (127 q_max F)^2 must stay finite in fp16: pick F accordingly.
    const double per = 127.0 * c.fmt.q_max;
    const float F = static_cast<float>(
        std::ldexp(1.0, static_cast<int>(std::floor(std::log2(std::sqrt(30000.0 / K) / per)))));
    a = worst_case_operand(R, K, c.fmt, F);
    w = worst_case_operand(int64_t(E) * N, K, c.fmt, F);
  } else {
    const auto xa = random_values(R * K, rng(), DType::kBFloat16, 1.0f);
    const auto xw = random_values(int64_t(E) * N * K, rng(), DType::kBFloat16, 0.05f);
    a = ref::quantize_hybrid(xa.data(), R, K, c.fmt);
    w = ref::quantize_hybrid(xw.data(), int64_t(E) * N, K, c.fmt);
  }
  const auto off = c.pb.offsets();

  DeviceBuffer<int8_t> dA(std::max<size_t>(1, a.q.size())), dB(w.q);
  DeviceBuffer<int32_t> dQA(std::max<size_t>(1, a.Q.size())), dQB(w.Q);
  DeviceBuffer<float> dFA(std::max<size_t>(1, a.F.size())), dFB(w.F);
  if (R > 0) {
    dA.upload(a.q);
    dQA.upload(a.Q);
    dFA.upload(a.F);
  }
  DeviceBuffer<int64_t> dOff(off);
  DeviceBuffer<uint16_t> dC(std::max<int64_t>(1, R * N));  // poisoned (0xFFFF = NaN)
  DeviceBuffer<uint8_t> ws(grouped_gemm_workspace_size(E));

  GroupedGemmShape shape{R, N, K, E};
  HybridGemmArgs args;
  args.A = dA.get();
  args.QA = dQA.get();
  args.FA = dFA.get();
  args.B = dB.get();
  args.QB = dQB.get();
  args.FB = dFB.get();
  args.expert_offsets = dOff.get();
  args.C = dC.get();
  args.out_dtype = c.out;
  int8_hybrid_moe::int8_hybrid_grouped_gemm(shape, c.fmt, args, ws.get(), ws.size(), nullptr,
                                            c.tile);
  I8H_CUDA_OK(cudaDeviceSynchronize());
  const auto C = dC.download();

  const auto rows = rows_to_check(c.pb, rng);
  int64_t bad = 0;
  for (int64_t r : rows) {
    const int e = expert_of_row(off, r);
    const auto ar = slice_rows(a, r, 1);
    const auto we = slice_rows(w, int64_t(e) * N, N);
    const auto expect = ref::hybrid_gemm(ar, we, c.fmt);
    for (int64_t n = 0; n < N; ++n) {
      const double ref_v = expect[n];
      const double got = ref::to_float(C[r * N + n], c.out);
      const double tol =
          i8h_test::hybrid_tolerance(ref_v, c.out, i8h_test::hybrid_magnitude(ar, 0, we, n, c.fmt));
      if (!(std::fabs(got - ref_v) <= tol)) {
        if (++bad <= 5)
          ADD_FAILURE() << "row " << r << " (expert " << e << ") col " << n << ": got " << got
                        << " expected " << ref_v << " tol " << tol;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

// The tiles an auto-tiled case runs on besides the heuristic's pick: the SM80 64x64 tile and the
// SM90 tiles where they run (hybrid: sm90_128x128 with B a multiple of 128), so every case covers
// both the mma.sync and the wgmma kernels on H100 / H200, whichever the heuristic picks there.
std::vector<GemmTile> other_tiles(const GroupedProblem& pb, bool hybrid, int block_size) {
  std::vector<GemmTile> tiles = {GemmTile::k64x64};
  if (gemm_sm90_available() && (!hybrid || block_size % 128 == 0)) {
    tiles.push_back(GemmTile::kSm90_128x128);
    if (!hybrid) tiles.push_back(GemmTile::kSm90_128x256);
  }
  const GemmTile picked =
      select_gemm_tile(GroupedGemmShape{pb.R(), pb.N, pb.K, pb.E()}, hybrid, block_size);
  tiles.erase(std::remove(tiles.begin(), tiles.end(), picked), tiles.end());
  return tiles;
}

// Many experts, most empty: E = 5000 keeps the SM90 kernels' copy of tile_offsets [E + 1] in shared
// memory, E = 12000 (48 KiB) does not fit next to their stages and takes the global-memory path.
std::vector<int64_t> sparse_experts(int E, std::mt19937_64& rng) {
  std::vector<int64_t> rows(E, 0);
  std::uniform_int_distribution<int> pick(0, E - 1), count(1, 300);
  for (int i = 0; i < 40; ++i) rows[pick(rng)] = count(rng);
  rows[0] = 1;
  rows[E - 1] = 129;  // the last expert's tiles sit at the end of the table
  return rows;
}

// Runs `run` (run_hybrid_case / run_per_token_case) on sparse_experts problems of both sizes.
template <class Case, class Run>
void run_many_experts(int64_t K, Run run) {
  std::mt19937_64 rng(i8h_test::fresh_seed());
  for (int E : {5000, 12000}) {
    Case c;
    c.pb.rows_per_expert = sparse_experts(E, rng);
    c.pb.N = 16;
    c.pb.K = K;
    run(c);
  }
}

void run_hybrid_case(const HybridCase& c) {
  run_hybrid_case_once(c);
  if (c.tile != GemmTile::kAuto) return;
  for (GemmTile t : other_tiles(c.pb, /*hybrid=*/true, c.fmt.block_size)) {
    HybridCase other = c;
    other.tile = t;
    run_hybrid_case_once(other);
  }
}

TEST(HybridGroupedGemm, MoeShapesBothDtypes) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  for (DType out : {DType::kBFloat16, DType::kFloat16}) {
    // GEMM1-like (N = 2 * intermediate, K = hidden) and GEMM2-like shapes, uniform-ish routing.
    for (auto nk : {std::pair<int64_t, int64_t>{1024, 2048}, {2048, 512}}) {
      HybridCase c;
      c.pb.N = nk.first;
      c.pb.K = nk.second;
      std::poisson_distribution<int64_t> rows(40);
      for (int e = 0; e < 64; ++e) c.pb.rows_per_expert.push_back(rows(rng));
      c.out = out;
      run_hybrid_case(c);
    }
  }
}

TEST(HybridGroupedGemm, EmptySingleRowAndUnevenExperts) {
  I8H_REQUIRE_GPU();
  HybridCase c;
  c.pb.rows_per_expert = {0, 1, 0, 0, 300, 1, 2, 0, 129, 64, 65, 0};
  c.pb.N = 136;  // not a multiple of the 64-column tile
  c.pb.K = 384;
  // B = 256: the SM90 tile's blocks of two K tiles (the last one short), also under the
  // sanitizers (scripts/gpu_check.sh runs this test with compute-sanitizer).
  for (int B : {128, 256})
    for (GemmTile t : {GemmTile::k64x64, GemmTile::k128x64, GemmTile::kSm90_128x128}) {
      if (t == GemmTile::kSm90_128x128 && !gemm_sm90_available()) continue;
      c.fmt.block_size = B;
      c.tile = t;
      run_hybrid_case(c);
    }
}

TEST(HybridGroupedGemm, AllRowsOnOneExpertAndEmptyProblem) {
  I8H_REQUIRE_GPU();
  HybridCase c;
  c.pb.rows_per_expert = {0, 0, 777, 0};
  c.pb.N = 256;
  c.pb.K = 256;
  run_hybrid_case(c);
  c.pb.rows_per_expert = {0, 0, 0};  // R = 0: nothing to do, nothing written
  run_hybrid_case(c);
}

TEST(HybridGroupedGemm, ManyExpertsTileTableInSharedOrGlobalMemory) {
  I8H_REQUIRE_GPU();
  run_many_experts<HybridCase>(256, run_hybrid_case);
}

TEST(HybridGroupedGemm, BlockSizesSuperGroupsAndKTails) {
  I8H_REQUIRE_GPU();
  struct P {
    int B, S, q_max;
    int64_t K;
  };
  // K not a multiple of B (short last block) and not of the K tile (zero-filled tail);
  // super groups of 1, 2, 3 blocks so flushes happen at group ends inside K; K loops of 1, 2
  // and 3 blocks (the last two with a short last block), the shortest ones of each kernel.
  // B = 256, 384, 512 run on the SM90 tile as blocks of several K tiles: last blocks of one tile
  // (2176), of a partial second tile (1200) and of three tiles, the last partial (1040, S = 1:
  // a flush after every block); K shorter than one block (208); q_max 127 (fp32 block terms).
  for (P p : {P{128, 256, 16, 2048}, P{256, 256, 16, 2048}, P{128, 1, 16, 1024},
              P{128, 3, 16, 1664}, P{64, 2, 16, 1008}, P{256, 2, 16, 2176}, P{128, 256, 1, 512},
              P{128, 256, 127, 1024}, P{64, 5, 127, 720}, P{128, 256, 16, 128}, P{128, 2, 16, 272},
              P{128, 256, 127, 144}, P{512, 256, 16, 1200}, P{384, 1, 16, 1040},
              P{256, 256, 16, 208}, P{256, 3, 127, 1792}, P{512, 2, 1, 2560}}) {
    HybridCase c;
    c.pb.rows_per_expert = {37, 0, 150, 5};
    c.pb.N = 64;
    c.pb.K = p.K;
    c.fmt = HybridFormat{p.B, p.S, p.q_max};
    c.out = p.q_max == 127 ? DType::kFloat16 : DType::kBFloat16;
    run_hybrid_case(c);
  }
}

TEST(HybridGroupedGemm, WorstCaseOverflowInputsAreExact) {
  I8H_REQUIRE_GPU();
  for (int q_max : {16, 127})
    for (int B : {128, 256})
      for (int64_t K : {int64_t(2048), int64_t(7168)}) {
        HybridCase c;
        c.pb.rows_per_expert = {70, 3};
        c.pb.N = 72;
        c.pb.K = K;
        c.fmt = HybridFormat{B, 256, q_max};
        c.worst_case = true;
        c.out = DType::kFloat16;
        run_hybrid_case(c);
      }
}

TEST(HybridGroupedGemm, LargeR70000) {
  I8H_REQUIRE_GPU();
  HybridCase c;
  std::mt19937_64 rng(i8h_test::fresh_seed());
  c.pb.rows_per_expert = random_rows_per_expert(rng, 2 * 70000 / 128, 70000);
  c.pb.N = 256;
  c.pb.K = 512;
  run_hybrid_case(c);
}

// ---- per-token x per-channel ------------------------------------------------------------------

struct PerTokenCase {
  GroupedProblem pb;
  DType out = DType::kBFloat16;
  GemmTile tile = GemmTile::kAuto;
  bool a_per_row = true, b_per_channel = true;
  bool worst_case = false;
};

void run_per_token_case_once(const PerTokenCase& c) {
  const uint64_t seed = i8h_test::fresh_seed();
  SCOPED_TRACE(::testing::Message()
               << "seed=" << seed << " R=" << c.pb.R() << " N=" << c.pb.N << " K=" << c.pb.K
               << " E=" << c.pb.E() << " out=" << dtype_name(c.out)
               << " tile=" << gemm_tile_name(c.tile) << " a_per_row=" << c.a_per_row
               << " b_per_channel=" << c.b_per_channel);
  std::mt19937_64 rng(seed);
  const int64_t R = c.pb.R(), N = c.pb.N, K = c.pb.K;
  const int E = c.pb.E();
  ref::PerTokenTensor a, w;
  if (c.worst_case) {
    a.rows = R;
    a.K = K;
    a.q.assign(R * K, -127);
    a.scale.assign(R, 1.0f / 1024);
    w.rows = int64_t(E) * N;
    w.K = K;
    w.q.assign(w.rows * K, -127);
    w.scale.assign(w.rows, 1.0f / 1024);
  } else {
    const auto xa = random_values(R * K, rng(), DType::kBFloat16, 1.0f);
    const auto xw = random_values(int64_t(E) * N * K, rng(), DType::kBFloat16, 0.05f);
    a = ref::quantize_per_token(xa.data(), R, K);
    w = ref::quantize_per_token(xw.data(), int64_t(E) * N, K);
  }
  // Broadcast variants: one scale for A, one per expert for B.
  std::vector<float> sa = c.a_per_row ? a.scale : std::vector<float>{0.0125f};
  std::vector<float> sb;
  if (c.b_per_channel) {
    sb = w.scale;
  } else {
    for (int e = 0; e < E; ++e) sb.push_back(0.002f * (e + 1));
  }
  const auto off = c.pb.offsets();
  DeviceBuffer<int8_t> dA(std::max<size_t>(1, a.q.size())), dB(w.q);
  if (R > 0) dA.upload(a.q);
  DeviceBuffer<float> dSA(std::max<size_t>(1, sa.size())), dSB(sb);
  if (!sa.empty()) dSA.upload(sa);
  DeviceBuffer<int64_t> dOff(off);
  DeviceBuffer<uint16_t> dC(std::max<int64_t>(1, R * N));
  DeviceBuffer<uint8_t> ws(grouped_gemm_workspace_size(E));
  PerTokenGemmArgs args;
  args.A = dA.get();
  args.scale_a = dSA.get();
  args.scale_a_per_row = c.a_per_row;
  args.B = dB.get();
  args.scale_b = dSB.get();
  args.scale_b_per_channel = c.b_per_channel;
  args.expert_offsets = dOff.get();
  args.C = dC.get();
  args.out_dtype = c.out;
  int8_hybrid_moe::int8_grouped_gemm(GroupedGemmShape{R, N, K, E}, args, ws.get(), ws.size(),
                                     nullptr, c.tile);
  I8H_CUDA_OK(cudaDeviceSynchronize());
  const auto C = dC.download();
  const auto rows = rows_to_check(c.pb, rng);
  int64_t bad = 0;
  for (int64_t r : rows) {
    const int e = expert_of_row(off, r);
    const float* sbe = c.b_per_channel ? sb.data() + int64_t(e) * N : sb.data() + e;
    const auto expect =
        ref::per_token_gemm(a.q.data() + r * K, sa.data() + (c.a_per_row ? r : 0), false,
                            w.q.data() + int64_t(e) * N * K, sbe, c.b_per_channel, 1, N, K);
    for (int64_t n = 0; n < N; ++n) {
      const double ref_v = expect[n];
      const double got = ref::to_float(C[r * N + n], c.out);
      // int32 dot exact; fp32 scaling adds ~2 roundings.
      const double tol = i8h_test::ulp_of(ref_v, c.out) + 4e-7 * std::fabs(ref_v);
      if (!(std::fabs(got - ref_v) <= tol)) {
        if (++bad <= 5)
          ADD_FAILURE() << "row " << r << " col " << n << ": got " << got << " expected " << ref_v;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

void run_per_token_case(const PerTokenCase& c) {
  run_per_token_case_once(c);
  if (c.tile != GemmTile::kAuto) return;
  for (GemmTile t : other_tiles(c.pb, /*hybrid=*/false, 128)) {
    PerTokenCase other = c;
    other.tile = t;
    run_per_token_case_once(other);
  }
}

TEST(PerTokenGroupedGemm, MoeShapesAllTilesBothDtypes) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  for (DType out : {DType::kBFloat16, DType::kFloat16})
    for (GemmTile t : {GemmTile::kAuto, GemmTile::k64x64, GemmTile::k128x64, GemmTile::k128x128,
                       GemmTile::kSm90_128x128, GemmTile::kSm90_128x256}) {
      if (is_sm90_tile(t) && !gemm_sm90_available()) continue;
      PerTokenCase c;
      std::poisson_distribution<int64_t> rows(50);
      for (int e = 0; e < 16; ++e) c.pb.rows_per_expert.push_back(e % 5 == 0 ? 0 : rows(rng));
      c.pb.N = 1024;
      c.pb.K = 2048;
      c.out = out;
      c.tile = t;
      run_per_token_case(c);
    }
}

TEST(PerTokenGroupedGemm, BroadcastScalesKTailsAndEdgeExperts) {
  I8H_REQUIRE_GPU();
  for (bool a_row : {true, false})
    for (bool b_ch : {true, false}) {
      PerTokenCase c;
      c.pb.rows_per_expert = {1, 0, 200, 0, 3};
      c.pb.N = 200;
      c.pb.K = 2064;  // K % 64 != 0: zero-filled K tail inside the last tile
      c.a_per_row = a_row;
      c.b_per_channel = b_ch;
      run_per_token_case(c);
    }
}

// More output tiles than twice the SMs of an H100 / H200 on the 128 x 128 tiles, so a persistent
// CTA runs several tiles: its stage ring carries over from tile to tile (and a kernel whose
// warpgroups take tiles in turn hands the turn over). Sized so the CPU reference
// compares every row (R * N * K = 2^28); the name puts it under compute-sanitizer in
// scripts/gpu_check.sh. Experts of 0 to 64 rows (short last tiles) occur at random.
TEST(PerTokenGroupedGemm, ManyTilesPerCtaSanitize) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  for (int64_t K : {int64_t(64), int64_t(192)}) {  // one K tile (partly zero-filled), two
    PerTokenCase c;
    c.pb.N = 512;
    c.pb.K = K;
    c.pb.rows_per_expert =
        random_rows_per_expert(rng, K == 64 ? 400 : 140, (int64_t(1) << 28) / (c.pb.N * K));
    c.out = K == 64 ? DType::kBFloat16 : DType::kFloat16;
    run_per_token_case(c);
  }
}

// As above with 16 K tiles per output tile, so a CTA's consecutive tiles start several stage-ring
// wraps apart: a warpgroup that skips ahead to a later tile must not take a stale barrier phase
// for it, which short K never shows (docs/RELIABILITY.md section 12). Each expert's first and
// last rows and a sample of the others are compared.
TEST(PerTokenGroupedGemm, ManyLongTilesPerCta) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  PerTokenCase c;
  c.pb.N = 256;
  c.pb.K = 2048;
  c.pb.rows_per_expert = random_rows_per_expert(rng, 400, 40000);
  run_per_token_case(c);
}

TEST(PerTokenGroupedGemm, ManyExpertsTileTableInSharedOrGlobalMemory) {
  I8H_REQUIRE_GPU();
  run_many_experts<PerTokenCase>(128, run_per_token_case);
}

TEST(PerTokenGroupedGemm, WorstCaseConstantInputs) {
  I8H_REQUIRE_GPU();
  PerTokenCase c;
  c.pb.rows_per_expert = {65, 0, 1};
  c.pb.N = 64;
  c.pb.K = 32768;  // 127 * 127 * 32768 = 5.3e8 < 2^31: exact in int32
  c.worst_case = true;
  c.out = DType::kFloat16;
  run_per_token_case(c);
}

}  // namespace
