// GPU tests of the row quantization kernels (plain, permute-fused, SiLU-fused, weights) against
// the CPU reference: q, Q and F / scale bit for bit, non-finite groups included; rows past
// num_valid_rows and unreferenced permuted rows must keep their poison.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "int8_hybrid_moe/kernels.h"
#include "int8_hybrid_moe/reference.h"
#include "gpu/gpu_test_util.h"

namespace {

using namespace int8_hybrid_moe;
using i8h_test::DeviceBuffer;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b);
}

// Rows with the corner cases first (zero, constant extremes, NaN, +-Inf, subnormals, a zero
// block), then random normal rows with a per-row magnitude spread, as raw dtype words.
std::vector<uint16_t> make_rows(int64_t R, int64_t K, DType dt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-3.0f, 3.0f);
  const float big = dt == DType::kBFloat16 ? 3.3895314e38f : 65504.0f;
  const float tiny = dt == DType::kBFloat16 ? 1e-40f : 3e-7f;
  std::vector<float> x(static_cast<size_t>(R * K));
  std::uniform_int_distribution<int64_t> pos(0, K - 1);
  for (int64_t r = 0; r < R; ++r) {
    float* xr = x.data() + r * K;
    const float mag = std::pow(10.0f, ud(rng));
    for (int64_t k = 0; k < K; ++k) xr[k] = nd(rng) * mag;
    switch (R > 12 ? r % 16 : 99) {
      case 0:
        for (int64_t k = 0; k < K; ++k) xr[k] = 0.0f;
        break;
      case 1:
        for (int64_t k = 0; k < K; ++k) xr[k] = big;
        break;  // worst-case constant row
      case 2:
        for (int64_t k = 0; k < K; ++k) xr[k] = -big;
        break;
      case 3:
        for (int64_t k = 0; k < K; ++k) xr[k] = -1.0f;
        break;
      case 4:
        xr[pos(rng)] = NAN;
        break;
      case 5:
        xr[0] = INFINITY;
        break;
      case 6:
        xr[K - 1] = -INFINITY;
        break;
      case 7:
        for (int64_t k = 0; k < K; ++k) xr[k] = nd(rng) * tiny;
        break;
      case 8:
        for (int64_t k = 0; k < std::min<int64_t>(K, 64); ++k) xr[k] = 0.0f;
        break;
      case 9:
        for (int64_t k = 0; k < K; ++k) xr[k] = (k % 2 ? big : -big) * 0.5f;
        break;
      case 10:
        xr[pos(rng)] = big;
        break;  // one outlier dominates its group
      default:
        break;
    }
  }
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = ref::from_float(x[i], dt);
  return h;
}

// Compares GPU row `gr` of (q, Q, F) with reference row `rr`.
::testing::AssertionResult hybrid_row_equal(const ref::HybridTensor& want, int64_t rr,
                                            const std::vector<int8_t>& q,
                                            const std::vector<int32_t>& Q,
                                            const std::vector<float>& F, int64_t gr) {
  const int64_t K = want.K, nb = want.nb, ng = want.ng;
  for (int64_t g = 0; g < ng; ++g)
    if (!same_float(want.F[size_t(rr * ng + g)], F[size_t(gr * ng + g)]))
      return ::testing::AssertionFailure()
             << "F row " << rr << " group " << g << ": want " << want.F[size_t(rr * ng + g)]
             << " got " << F[size_t(gr * ng + g)];
  for (int64_t b = 0; b < nb; ++b)
    if (want.Q[size_t(rr * nb + b)] != Q[size_t(gr * nb + b)])
      return ::testing::AssertionFailure()
             << "Q row " << rr << " block " << b << ": want " << want.Q[size_t(rr * nb + b)]
             << " got " << Q[size_t(gr * nb + b)];
  for (int64_t k = 0; k < K; ++k)
    if (want.q[size_t(rr * K + k)] != q[size_t(gr * K + k)])
      return ::testing::AssertionFailure()
             << "q row " << rr << " col " << k << ": want " << int(want.q[size_t(rr * K + k)])
             << " got " << int(q[size_t(gr * K + k)]);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult hybrid_row_poisoned(int64_t K, int64_t nb, int64_t ng,
                                               const std::vector<int8_t>& q,
                                               const std::vector<int32_t>& Q,
                                               const std::vector<float>& F, int64_t gr) {
  for (int64_t k = 0; k < K; ++k)
    if (q[size_t(gr * K + k)] != int8_t(-1))
      return ::testing::AssertionFailure() << "q row " << gr << " col " << k << " was written";
  for (int64_t b = 0; b < nb; ++b)
    if (Q[size_t(gr * nb + b)] != -1)
      return ::testing::AssertionFailure() << "Q row " << gr << " was written";
  for (int64_t g = 0; g < ng; ++g)
    if (bits(F[size_t(gr * ng + g)]) != 0xffffffffu)
      return ::testing::AssertionFailure() << "F row " << gr << " was written";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult per_token_row_equal(const ref::PerTokenTensor& want, int64_t rr,
                                               const std::vector<int8_t>& q,
                                               const std::vector<float>& s, int64_t gr) {
  const int64_t K = want.K;
  if (!same_float(want.scale[size_t(rr)], s[size_t(gr)]))
    return ::testing::AssertionFailure()
           << "scale row " << rr << ": want " << want.scale[size_t(rr)] << " got " << s[size_t(gr)];
  for (int64_t k = 0; k < K; ++k)
    if (want.q[size_t(rr * K + k)] != q[size_t(gr * K + k)])
      return ::testing::AssertionFailure()
             << "q row " << rr << " col " << k << ": want " << int(want.q[size_t(rr * K + k)])
             << " got " << int(q[size_t(gr * K + k)]);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult per_token_row_poisoned(int64_t K, const std::vector<int8_t>& q,
                                                  const std::vector<float>& s, int64_t gr) {
  for (int64_t k = 0; k < K; ++k)
    if (q[size_t(gr * K + k)] != int8_t(-1))
      return ::testing::AssertionFailure() << "q row " << gr << " col " << k << " was written";
  if (bits(s[size_t(gr)]) != 0xffffffffu)
    return ::testing::AssertionFailure() << "scale row " << gr << " was written";
  return ::testing::AssertionSuccess();
}

const int64_t kKs[] = {128, 256, 512, 2048, 2176, 7168};
const int kBs[] = {64, 128, 256};
const int kQmax[] = {1, 16, 127};
const int kSs[] = {1, 2, 256};
const DType kDtypes[] = {DType::kBFloat16, DType::kFloat16};

// Rows per case: enough to cover every special row and several CTAs / grid-stride passes,
// bounded so the CPU reference stays fast.
int64_t rows_for(int64_t K, std::mt19937_64& rng) {
  const int64_t cap = std::max<int64_t>(16, (1 << 19) / K);
  return std::uniform_int_distribution<int64_t>(1, cap)(rng);
}

// quantize_rows_hybrid on the device against ref::quantize_hybrid of the same rows: rows below
// `valid` bit for bit, the rest still poisoned (valid < R passes the count by device pointer).
void expect_quantize_rows_hybrid_matches(const std::vector<uint16_t>& h, DType dt, int64_t R,
                                         int64_t K, const HybridFormat& fmt, int64_t valid) {
  const auto xf = ref::to_float(h, dt);
  const auto want = ref::quantize_hybrid(xf.data(), R, K, fmt);
  DeviceBuffer<uint16_t> x(h);
  DeviceBuffer<int8_t> q(static_cast<size_t>(R * K));
  DeviceBuffer<int32_t> Q(static_cast<size_t>(R * want.nb));
  DeviceBuffer<float> F(static_cast<size_t>(R * want.ng));
  DeviceBuffer<int64_t> nv(std::vector<int64_t>{valid});
  quantize_rows_hybrid(x.get(), dt, R, K, fmt, {q.get(), Q.get(), F.get()},
                       valid < R ? nv.get() : nullptr, 0);
  I8H_CUDA_OK(cudaDeviceSynchronize());
  const auto gq = q.download();
  const auto gQ = Q.download();
  const auto gF = F.download();
  for (int64_t r = 0; r < R; ++r) {
    if (r < valid) {
      ASSERT_TRUE(hybrid_row_equal(want, r, gq, gQ, gF, r));
    } else {
      ASSERT_TRUE(hybrid_row_poisoned(K, want.nb, want.ng, gq, gQ, gF, r));
    }
  }
}

TEST(KernelQuant, HybridRowsMatchReference) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  int case_id = 0;
  for (DType dt : kDtypes)
    for (int64_t K : kKs)
      for (int B : kBs)
        for (int qm : kQmax) {
          const uint64_t seed = i8h_test::fresh_seed();
          HybridFormat fmt;
          fmt.block_size = B;
          fmt.super_group = kSs[case_id++ % 3];
          fmt.q_max = qm;
          const int64_t R = rows_for(K, rng) + 16;
          // Every third case limits the valid rows through the device pointer.
          const int64_t valid = case_id % 3 == 0 ? std::max<int64_t>(0, R - 5) : R;
          SCOPED_TRACE(::testing::Message()
                       << "seed " << seed << " dtype " << dtype_name(dt) << " R " << R << " K " << K
                       << " B " << B << " S " << fmt.super_group << " q_max " << qm << " valid "
                       << valid);
          ASSERT_NO_FATAL_FAILURE(
              expect_quantize_rows_hybrid_matches(make_rows(R, K, dt, seed), dt, R, K, fmt, valid));
        }
}

// Block and group spans the warp-per-row kernel handles through its shuffle patterns (blocks of
// whole lanes times several vectors, groups of a few blocks, one lane per block) and spans it
// does not (not a power of two of 8-element vectors: the team kernel runs), plus K 4096 (the
// longest warp row) and short rows.
TEST(KernelQuant, HybridRowsSpanPatterns) {
  I8H_REQUIRE_GPU();
  struct Case {
    int64_t K;
    int B, S, q_max;
  };
  const Case cases[] = {{2048, 512, 1, 16},   {2048, 512, 2, 16}, {4096, 1024, 1, 127},
                        {4096, 128, 4, 16},   {4096, 64, 256, 1}, {2048, 16, 8, 16},
                        {2048, 16, 1, 127},   {2064, 48, 3, 16},  {2048, 32, 3, 16},
                        {1536, 128, 256, 16}, {96, 32, 1, 16},    {16, 16, 1, 16},
                        {4112, 128, 256, 16}};
  std::mt19937_64 rng(i8h_test::fresh_seed());
  for (DType dt : kDtypes)
    for (const Case& c : cases) {
      const uint64_t seed = i8h_test::fresh_seed();
      HybridFormat fmt;
      fmt.block_size = c.B;
      fmt.super_group = c.S;
      fmt.q_max = c.q_max;
      const int64_t K = c.K;
      const int64_t R = rows_for(K, rng) + 16;
      SCOPED_TRACE(::testing::Message()
                   << "seed " << seed << " dtype " << dtype_name(dt) << " R " << R << " K " << K
                   << " B " << c.B << " S " << c.S << " q_max " << c.q_max);
      ASSERT_NO_FATAL_FAILURE(
          expect_quantize_rows_hybrid_matches(make_rows(R, K, dt, seed), dt, R, K, fmt, R));
    }
}

TEST(KernelQuant, PerTokenRowsMatchReference) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  int case_id = 0;
  for (DType dt : kDtypes)
    for (int64_t K : {int64_t(128), int64_t(256), int64_t(512), int64_t(2048), int64_t(2176),
                      int64_t(7168), int64_t(16384)}) {
      const uint64_t seed = i8h_test::fresh_seed();
      const int64_t R = rows_for(K, rng) + 16;
      const int64_t valid = ++case_id % 2 == 0 ? R / 2 : R;
      SCOPED_TRACE(::testing::Message() << "seed " << seed << " dtype " << dtype_name(dt) << " R "
                                        << R << " K " << K << " valid " << valid);
      const auto h = make_rows(R, K, dt, seed);
      const auto xf = ref::to_float(h, dt);
      const auto want = ref::quantize_per_token(xf.data(), R, K);
      DeviceBuffer<uint16_t> x(h);
      DeviceBuffer<int8_t> q(static_cast<size_t>(R * K));
      DeviceBuffer<float> s(static_cast<size_t>(R));
      DeviceBuffer<int64_t> nv(std::vector<int64_t>{valid});
      quantize_rows_per_token(x.get(), dt, R, K, {q.get(), s.get()}, valid < R ? nv.get() : nullptr,
                              0);
      I8H_CUDA_OK(cudaDeviceSynchronize());
      const auto gq = q.download();
      const auto gs = s.download();
      for (int64_t r = 0; r < R; ++r) {
        if (r < valid) {
          ASSERT_TRUE(per_token_row_equal(want, r, gq, gs, r));
        } else {
          ASSERT_TRUE(per_token_row_poisoned(K, gq, gs, r));
        }
      }
    }
}

TEST(KernelQuant, LargeRowsAndManyRows) {
  I8H_REQUIRE_GPU();
  // K = 16384 (a 256-thread team holding 4 chunks per thread) and M = 9000 short rows
  // (many grid-stride passes).
  for (auto [R, K] : {std::pair<int64_t, int64_t>{40, 16384}, {9000, 128}}) {
    for (DType dt : kDtypes) {
      const uint64_t seed = i8h_test::fresh_seed();
      SCOPED_TRACE(::testing::Message()
                   << "seed " << seed << " dtype " << dtype_name(dt) << " R " << R << " K " << K);
      HybridFormat fmt;
      fmt.block_size = 128;
      fmt.super_group = 4;
      fmt.q_max = 16;
      ASSERT_NO_FATAL_FAILURE(
          expect_quantize_rows_hybrid_matches(make_rows(R, K, dt, seed), dt, R, K, fmt, R));
    }
  }
}

// token_slot_to_permuted of a random routing: a random permutation of the flat slots with
// about a quarter dropped (-1); permuted rows that nobody maps to stay poisoned.
std::vector<int32_t> random_slot_map(int64_t M, int top_k, std::mt19937_64& rng) {
  const int64_t n = M * top_k;
  std::vector<int32_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = int32_t(i);
  std::shuffle(rows.begin(), rows.end(), rng);
  std::bernoulli_distribution drop(0.25);
  for (auto& r : rows)
    if (drop(rng)) r = -1;
  return rows;
}

TEST(KernelQuant, PermuteQuantizeMatchesReference) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  int case_id = 0;
  for (DType dt : kDtypes)
    for (int64_t K : kKs)
      for (int top_k : {1, 2, 8}) {
        const uint64_t seed = i8h_test::fresh_seed();
        const int64_t M = std::max<int64_t>(1, rows_for(K, rng) / top_k);
        HybridFormat fmt;
        fmt.block_size = kBs[case_id % 3];
        fmt.super_group = kSs[(case_id / 3) % 3];
        fmt.q_max = kQmax[case_id % 3];
        ++case_id;
        SCOPED_TRACE(::testing::Message()
                     << "seed " << seed << " dtype " << dtype_name(dt) << " M " << M << " K " << K
                     << " top_k " << top_k << " B " << fmt.block_size << " S " << fmt.super_group
                     << " q_max " << fmt.q_max);
        const auto h = make_rows(M, K, dt, seed);
        const auto xf = ref::to_float(h, dt);
        const auto tsp = random_slot_map(M, top_k, rng);
        std::vector<int64_t> src_of(static_cast<size_t>(M * top_k), -1);  // permuted row -> token
        for (int64_t i = 0; i < M * top_k; ++i)
          if (tsp[size_t(i)] >= 0) src_of[size_t(tsp[size_t(i)])] = i / top_k;
        DeviceBuffer<uint16_t> x(h);
        DeviceBuffer<int32_t> d_tsp(tsp);
        const int64_t rows = M * top_k;
        {
          const auto want = ref::quantize_hybrid(xf.data(), M, K, fmt);
          DeviceBuffer<int8_t> q(static_cast<size_t>(rows * K));
          DeviceBuffer<int32_t> Q(static_cast<size_t>(rows * want.nb));
          DeviceBuffer<float> F(static_cast<size_t>(rows * want.ng));
          permute_quantize_hybrid(x.get(), dt, d_tsp.get(), M, top_k, K, fmt,
                                  {q.get(), Q.get(), F.get()}, 0);
          I8H_CUDA_OK(cudaDeviceSynchronize());
          const auto gq = q.download();
          const auto gQ = Q.download();
          const auto gF = F.download();
          for (int64_t r = 0; r < rows; ++r) {
            if (src_of[size_t(r)] >= 0) {
              ASSERT_TRUE(hybrid_row_equal(want, src_of[size_t(r)], gq, gQ, gF, r)) << "row " << r;
            } else {
              ASSERT_TRUE(hybrid_row_poisoned(K, want.nb, want.ng, gq, gQ, gF, r));
            }
          }
        }
        {
          const auto want = ref::quantize_per_token(xf.data(), M, K);
          DeviceBuffer<int8_t> q(static_cast<size_t>(rows * K));
          DeviceBuffer<float> s(static_cast<size_t>(rows));
          permute_quantize_per_token(x.get(), dt, d_tsp.get(), M, top_k, K, {q.get(), s.get()}, 0);
          I8H_CUDA_OK(cudaDeviceSynchronize());
          const auto gq = q.download();
          const auto gs = s.download();
          for (int64_t r = 0; r < rows; ++r) {
            if (src_of[size_t(r)] >= 0) {
              ASSERT_TRUE(per_token_row_equal(want, src_of[size_t(r)], gq, gs, r)) << "row " << r;
            } else {
              ASSERT_TRUE(per_token_row_poisoned(K, gq, gs, r));
            }
          }
        }
      }
}

// Fused SiLU + quantization == silu_and_mul then quantize_rows_* on the GPU (exactly), and ==
// the CPU quantization of the GPU's SiLU output (bit for bit).
TEST(KernelQuant, SiluQuantizeMatchesUnfused) {
  I8H_REQUIRE_GPU();
  std::mt19937_64 rng(i8h_test::fresh_seed());
  int case_id = 0;
  for (DType dt : kDtypes)
    for (int64_t N : kKs) {
      const uint64_t seed = i8h_test::fresh_seed();
      const int64_t R = rows_for(N, rng) + 16;
      const int64_t valid = case_id % 2 == 0 ? R : R - 7;
      HybridFormat fmt;
      fmt.block_size = kBs[case_id % 3];
      fmt.super_group = kSs[(case_id + 1) % 3];
      fmt.q_max = kQmax[(case_id + 2) % 3];
      ++case_id;
      SCOPED_TRACE(::testing::Message()
                   << "seed " << seed << " dtype " << dtype_name(dt) << " R " << R << " N " << N
                   << " valid " << valid << " B " << fmt.block_size << " S " << fmt.super_group
                   << " q_max " << fmt.q_max);
      // Gate and up halves with the special rows (NaN / Inf / zero rows reach the quantizer).
      const auto h = make_rows(R * 2, N, dt, seed);
      DeviceBuffer<uint16_t> x(h);
      DeviceBuffer<int64_t> nv(std::vector<int64_t>{valid});
      const int64_t* nvp = valid < R ? nv.get() : nullptr;
      DeviceBuffer<uint16_t> act(static_cast<size_t>(R * N));
      silu_and_mul(x.get(), dt, R, N, act.get(), nvp, 0);
      const int64_t nb = num_blocks(N, fmt), ng = num_groups(N, fmt);
      DeviceBuffer<int8_t> q1(static_cast<size_t>(R * N)), q2(static_cast<size_t>(R * N));
      DeviceBuffer<int32_t> Q1(static_cast<size_t>(R * nb)), Q2(static_cast<size_t>(R * nb));
      DeviceBuffer<float> F1(static_cast<size_t>(R * ng)), F2(static_cast<size_t>(R * ng));
      quantize_rows_hybrid(act.get(), dt, R, N, fmt, {q1.get(), Q1.get(), F1.get()}, nvp, 0);
      silu_and_mul_quantize_hybrid(x.get(), dt, R, N, fmt, {q2.get(), Q2.get(), F2.get()}, nvp, 0);
      DeviceBuffer<int8_t> p1(static_cast<size_t>(R * N)), p2(static_cast<size_t>(R * N));
      DeviceBuffer<float> s1(static_cast<size_t>(R)), s2(static_cast<size_t>(R));
      quantize_rows_per_token(act.get(), dt, R, N, {p1.get(), s1.get()}, nvp, 0);
      silu_and_mul_quantize_per_token(x.get(), dt, R, N, {p2.get(), s2.get()}, nvp, 0);
      I8H_CUDA_OK(cudaDeviceSynchronize());
      // Byte equality (poison of skipped rows included).
      EXPECT_TRUE(q1.download() == q2.download());
      EXPECT_TRUE(Q1.download() == Q2.download());
      auto f1 = F1.download(), f2 = F2.download();
      ASSERT_EQ(0, std::memcmp(f1.data(), f2.data(), f1.size() * 4));
      EXPECT_TRUE(p1.download() == p2.download());
      auto t1 = s1.download(), t2 = s2.download();
      ASSERT_EQ(0, std::memcmp(t1.data(), t2.data(), t1.size() * 4));
      // Against the CPU quantizer applied to the GPU SiLU output (valid rows).
      const auto a = act.download();
      const auto af = ref::to_float(std::vector<uint16_t>(a.begin(), a.begin() + valid * N), dt);
      const auto want = ref::quantize_hybrid(af.data(), valid, N, fmt);
      const auto gq = q2.download();
      const auto gQ = Q2.download();
      for (int64_t r = 0; r < valid; ++r) ASSERT_TRUE(hybrid_row_equal(want, r, gq, gQ, f2, r));
      for (int64_t r = valid; r < R; ++r)
        ASSERT_TRUE(hybrid_row_poisoned(N, nb, ng, gq, gQ, f2, r));
      const auto want_pt = ref::quantize_per_token(af.data(), valid, N);
      const auto gp = p2.download();
      for (int64_t r = 0; r < valid; ++r) ASSERT_TRUE(per_token_row_equal(want_pt, r, gp, t2, r));
    }
}

TEST(KernelQuant, WeightsMatchReference) {
  I8H_REQUIRE_GPU();
  int case_id = 0;
  for (DType dt : kDtypes)
    for (auto [E, N, K] : {std::tuple<int64_t, int64_t, int64_t>{8, 48, 2048},
                           {3, 16, 7168},
                           {64, 4, 128},
                           {1, 7, 2176}}) {
      const uint64_t seed = i8h_test::fresh_seed();
      HybridFormat fmt;
      fmt.block_size = kBs[case_id % 3];
      fmt.super_group = kSs[case_id % 3];
      fmt.q_max = kQmax[case_id % 3];
      ++case_id;
      SCOPED_TRACE(::testing::Message() << "seed " << seed << " dtype " << dtype_name(dt) << " E "
                                        << E << " N " << N << " K " << K);
      const int64_t R = E * N;
      const auto h = make_rows(R, K, dt, seed);
      const auto xf = ref::to_float(h, dt);
      DeviceBuffer<uint16_t> w(h);
      const auto want = ref::quantize_hybrid(xf.data(), R, K, fmt);
      DeviceBuffer<int8_t> q(static_cast<size_t>(R * K));
      DeviceBuffer<int32_t> Q(static_cast<size_t>(R * want.nb));
      DeviceBuffer<float> F(static_cast<size_t>(R * want.ng));
      quantize_weights_hybrid(w.get(), dt, E, N, K, fmt, {q.get(), Q.get(), F.get()}, 0);
      const auto want_pc = ref::quantize_per_token(xf.data(), R, K);
      DeviceBuffer<int8_t> qc(static_cast<size_t>(R * K));
      DeviceBuffer<float> sc(static_cast<size_t>(R));
      quantize_weights_per_channel(w.get(), dt, E, N, K, {qc.get(), sc.get()}, 0);
      I8H_CUDA_OK(cudaDeviceSynchronize());
      const auto gq = q.download();
      const auto gQ = Q.download();
      const auto gF = F.download();
      const auto gqc = qc.download();
      const auto gsc = sc.download();
      for (int64_t r = 0; r < R; ++r) {
        ASSERT_TRUE(hybrid_row_equal(want, r, gq, gQ, gF, r));
        ASSERT_TRUE(per_token_row_equal(want_pc, r, gqc, gsc, r));
      }
    }
}

}  // namespace
