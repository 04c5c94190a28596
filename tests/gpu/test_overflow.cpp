// Overflow of the grouped GEMMs. (1) Worst-case inputs (all q = +-127, all Q = q_max) at the
// largest K the runner supports (32768: the quantizers hold a row on chip and reject longer
// rows) for q_max 16 and 127, one and many super groups: the result is the closed form
// Fa*Fw*q_max^2*127^2*K rounded to bf16, exactly (the int32 flush safeguard of FORMAT.md
// section 5). The per-token GEMM likewise at K = 32768 and at its own limit, the largest multiple
// of 16 <= kPerTokenMaxK. (2) R*K beyond 2^31 elements: R = 2^31/K + 1000 rows of K = 4096
// (2.15 GB of int8 A) through the hybrid GEMM, rows sampled around the 2^31 boundary checked
// against the reference.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "int8_hybrid_moe/gemm.h"
#include "int8_hybrid_moe/reference.h"

namespace {

namespace moe = int8_hybrid_moe;
namespace ref = int8_hybrid_moe::ref;
using i8h_test::DeviceBuffer;
using moe::DType;

constexpr int64_t kRunnerMaxK = 32768;

void hybrid_worst_case(int64_t K, int q_max, int S) {
  moe::HybridFormat fmt;
  fmt.block_size = 128;
  fmt.super_group = S;
  fmt.q_max = q_max;
  SCOPED_TRACE("K=" + std::to_string(K) + " q_max=" + std::to_string(q_max) +
               " S=" + std::to_string(S));
  const int64_t R = 3, N = 8, nb = moe::num_blocks(K, fmt), ng = moe::num_groups(K, fmt);
  // Rows: +127, -127, +127; weights: +127 everywhere. F = powers of two.
  std::vector<int8_t> hA(size_t(R * K), 127);
  for (int64_t k = 0; k < K; ++k) hA[size_t(K + k)] = -127;
  const float fa = std::ldexp(1.0f, -10), fw = std::ldexp(1.0f, -12);
  DeviceBuffer<int8_t> A(hA), B(std::vector<int8_t>(size_t(N * K), 127));
  DeviceBuffer<int32_t> QA(std::vector<int32_t>(size_t(R * nb), q_max));
  DeviceBuffer<int32_t> QB(std::vector<int32_t>(size_t(N * nb), q_max));
  DeviceBuffer<float> FA(std::vector<float>(size_t(R * ng), fa));
  DeviceBuffer<float> FB(std::vector<float>(size_t(N * ng), fw));
  DeviceBuffer<int64_t> offs(std::vector<int64_t>{0, R});
  DeviceBuffer<uint16_t> C(size_t(R * N));
  DeviceBuffer<uint8_t> ws(moe::grouped_gemm_workspace_size(1));
  moe::GroupedGemmShape s{R, N, K, 1};
  moe::HybridGemmArgs a{A.get(),  QA.get(),   FA.get(), B.get(),         QB.get(),
                        FB.get(), offs.get(), C.get(),  DType::kBFloat16};
  moe::int8_hybrid_grouped_gemm(s, fmt, a, ws.get(), ws.size(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const double exact = double(fa) * fw * q_max * q_max * 127.0 * 127.0 * double(K);
  const uint16_t pos = ref::from_float(static_cast<float>(exact), DType::kBFloat16);
  const uint16_t neg = ref::from_float(static_cast<float>(-exact), DType::kBFloat16);
  const std::vector<uint16_t> got = C.download();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t n = 0; n < N; ++n)
      ASSERT_EQ(got[size_t(r * N + n)], r == 1 ? neg : pos)
          << "row " << r << " col " << n << ": gpu "
          << ref::to_float(got[size_t(r * N + n)], DType::kBFloat16) << ", exact " << exact;
}

TEST(Overflow, HybridGemmWorstCaseAtLargestRunnerK) {
  I8H_REQUIRE_GPU();
  for (int q : {16, 127})
    for (int S : {256, 1}) hybrid_worst_case(kRunnerMaxK, q, S);
}

void per_token_worst_case(int64_t K) {
  SCOPED_TRACE("per-token K=" + std::to_string(K));
  const int64_t R = 2, N = 8;
  std::vector<int8_t> hA(size_t(R * K), 127);
  for (int64_t k = 0; k < K; ++k) hA[size_t(K + k)] = -127;
  const float sa = std::ldexp(1.0f, -20), sw = std::ldexp(1.0f, -21);
  DeviceBuffer<int8_t> A(hA), B(std::vector<int8_t>(size_t(N * K), 127));
  DeviceBuffer<float> SA(std::vector<float>(size_t(R), sa)), SW(std::vector<float>(size_t(N), sw));
  DeviceBuffer<int64_t> offs(std::vector<int64_t>{0, R});
  DeviceBuffer<uint16_t> C(size_t(R * N));
  DeviceBuffer<uint8_t> ws(moe::grouped_gemm_workspace_size(1));
  moe::PerTokenGemmArgs a;
  a.A = A.get();
  a.scale_a = SA.get();
  a.B = B.get();
  a.scale_b = SW.get();
  a.expert_offsets = offs.get();
  a.C = C.get();
  moe::int8_grouped_gemm({R, N, K, 1}, a, ws.get(), ws.size(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const double exact = double(sa) * sw * 127.0 * 127.0 * double(K);
  const std::vector<uint16_t> got = C.download();
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_EQ(got[size_t(n)], ref::from_float(static_cast<float>(exact), DType::kBFloat16));
    EXPECT_EQ(got[size_t(N + n)], ref::from_float(static_cast<float>(-exact), DType::kBFloat16));
  }
}

TEST(Overflow, PerTokenGemmWorstCaseAtItsLimit) {
  I8H_REQUIRE_GPU();
  per_token_worst_case(kRunnerMaxK);
  per_token_worst_case(moe::kPerTokenMaxK / 16 * 16);
}

// R * K > 2^31: 64-bit addressing of A and C rows.
TEST(Overflow, HybridGemmBeyond2To31Elements) {
  I8H_REQUIRE_GPU();
  const int64_t K = 4096, N = 64, R = (int64_t(1) << 31) / K + 1000;
  size_t free_bytes = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
  if (free_bytes < size_t(R * K) + (size_t(1) << 30)) GTEST_SKIP() << "needs ~3.3 GB free";
  moe::HybridFormat fmt;  // B 128, S 256, q_max 16
  const int64_t nb = moe::num_blocks(K, fmt), ng = moe::num_groups(K, fmt);
  const uint64_t seed = i8h_test::fresh_seed();
  SCOPED_TRACE("R=" + std::to_string(R) + " K=" + std::to_string(K) +
               " seed=" + std::to_string(seed));
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int> qd(-127, 127), Qd(1, fmt.q_max);
  // A: every row 1 (memset), sampled rows random; QA / FA random for every row.
  DeviceBuffer<int8_t> A(size_t(R * K));
  ASSERT_EQ(cudaMemset(A.get(), 1, size_t(R * K)), cudaSuccess);
  std::vector<int32_t> hQA(size_t(R * nb));
  for (auto& v : hQA) v = Qd(g);
  std::vector<float> hFA(size_t(R * ng));
  for (auto& v : hFA) v = std::ldexp(1.0f + float(qd(g) + 127) / 256.0f, -12);
  const int64_t boundary = (int64_t(1) << 31) / K;  // first row whose start is at 2^31
  const std::vector<int64_t> rows = {
      0, 1, R / 2 - 1, R / 2, boundary - 1, boundary, boundary + 1, R - 2, R - 1};
  std::vector<std::vector<int8_t>> row_q;
  for (int64_t r : rows) {
    std::vector<int8_t> q(static_cast<size_t>(K));
    for (auto& v : q) v = static_cast<int8_t>(qd(g));
    ASSERT_EQ(cudaMemcpy(A.get() + r * K, q.data(), size_t(K), cudaMemcpyHostToDevice),
              cudaSuccess);
    row_q.push_back(q);
  }
  DeviceBuffer<int32_t> QA(hQA);
  DeviceBuffer<float> FA(hFA);
  // Two experts: rows [0, R/2) and [R/2, R).
  std::vector<ref::HybridTensor> w(2);
  std::vector<int8_t> hB;
  std::vector<int32_t> hQB;
  std::vector<float> hFB;
  for (auto& t : w) {
    t.rows = N;
    t.K = K;
    t.nb = nb;
    t.ng = ng;
    for (int64_t i = 0; i < N * K; ++i) t.q.push_back(static_cast<int8_t>(qd(g)));
    for (int64_t i = 0; i < N * nb; ++i) t.Q.push_back(Qd(g));
    for (int64_t i = 0; i < N * ng; ++i) t.F.push_back(std::ldexp(1.0f, -9));
    hB.insert(hB.end(), t.q.begin(), t.q.end());
    hQB.insert(hQB.end(), t.Q.begin(), t.Q.end());
    hFB.insert(hFB.end(), t.F.begin(), t.F.end());
  }
  DeviceBuffer<int8_t> B(hB);
  DeviceBuffer<int32_t> QB(hQB);
  DeviceBuffer<float> FB(hFB);
  DeviceBuffer<int64_t> offs(std::vector<int64_t>{0, R / 2, R});
  DeviceBuffer<uint16_t> C(size_t(R * N));
  DeviceBuffer<uint8_t> ws(moe::grouped_gemm_workspace_size(2));
  moe::HybridGemmArgs a{A.get(),  QA.get(),   FA.get(), B.get(),         QB.get(),
                        FB.get(), offs.get(), C.get(),  DType::kBFloat16};
  moe::int8_hybrid_grouped_gemm({R, N, K, 2}, fmt, a, ws.get(), ws.size(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t r = rows[i];
    ref::HybridTensor t;
    t.rows = 1;
    t.K = K;
    t.nb = nb;
    t.ng = ng;
    t.q = row_q[i];
    t.Q.assign(hQA.begin() + r * nb, hQA.begin() + (r + 1) * nb);
    t.F.assign(hFA.begin() + r * ng, hFA.begin() + (r + 1) * ng);
    const std::vector<double> want = ref::hybrid_gemm(t, w[r < R / 2 ? 0 : 1], fmt);
    std::vector<uint16_t> got(static_cast<size_t>(N));
    ASSERT_EQ(cudaMemcpy(got.data(), C.get() + r * N, size_t(N) * 2, cudaMemcpyDeviceToHost),
              cudaSuccess);
    const ref::HybridTensor& we = w[r < R / 2 ? 0 : 1];
    for (int64_t n = 0; n < N; ++n) {
      const double wv = want[size_t(n)];
      const float gv = ref::to_float(got[size_t(n)], DType::kBFloat16);
      ASSERT_LE(std::fabs(double(gv) - wv),
                i8h_test::hybrid_tolerance(wv, DType::kBFloat16,
                                           i8h_test::hybrid_magnitude(t, 0, we, n, fmt)))
          << "row " << r << " (element offset " << r * K << ") col " << n << ": gpu " << gv
          << " ref " << wv;
    }
  }
}

}  // namespace
