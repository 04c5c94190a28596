// GPU tests of moe_permute (CUB sort, maps, gather, invalid-id counting) and moe_unpermute
// against the CPU reference; permute + quantize vs the fused permute_quantize_hybrid.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "int8_hybrid_moe/kernels.h"
#include "int8_hybrid_moe/reference.h"

namespace {

using namespace int8_hybrid_moe;
using i8h_test::DeviceBuffer;

enum class Routing { kUniform, kOneExpert, kZipf, kEvenOnly, kOutOfRange };
const char* routing_name(Routing r) {
  switch (r) {
    case Routing::kUniform:
      return "uniform";
    case Routing::kOneExpert:
      return "one-expert";
    case Routing::kZipf:
      return "zipf";
    case Routing::kEvenOnly:
      return "even-experts-only";
    default:
      return "out-of-range";
  }
}

// topk ids [M, top_k]: distinct experts per token except kOneExpert (every slot -> expert E-1)
// and kOutOfRange (some ids -1, E, E + 100).
std::vector<int32_t> make_ids(int64_t M, int top_k, int E, Routing kind, std::mt19937_64& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(M * top_k));
  std::vector<double> w(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) w[size_t(e)] = kind == Routing::kZipf ? 1.0 / (e + 1.0) : 1.0;
  if (kind == Routing::kEvenOnly)
    for (int e = 1; e < E; e += 2) w[size_t(e)] = 0.0;
  std::bernoulli_distribution bad(0.1);
  std::uniform_int_distribution<int> which(0, 2);
  for (int64_t t = 0; t < M; ++t) {
    std::vector<double> wt = w;
    for (int j = 0; j < top_k; ++j) {
      int32_t id;
      if (kind == Routing::kOneExpert) {
        id = E - 1;
      } else {
        // Without replacement while weight remains; then any expert.
        double sum = 0;
        for (double v : wt) sum += v;
        if (sum > 0) {
          std::discrete_distribution<int> d(wt.begin(), wt.end());
          id = d(rng);
          wt[size_t(id)] = 0.0;
        } else {
          id = std::uniform_int_distribution<int>(0, E - 1)(rng);
        }
      }
      if (kind == Routing::kOutOfRange && bad(rng)) {
        const int32_t bads[] = {-1, E, E + 100};
        id = bads[which(rng)];
      }
      ids[size_t(t * top_k + j)] = id;
    }
  }
  return ids;
}

struct Case {
  int64_t M;
  int E, top_k;
  Routing kind;
  bool with_map;
  int64_t K;  // gather when > 0
};

void run_permute_case(const Case& c, DType dt) {
  std::mt19937_64 rng(i8h_test::fresh_seed());
  const uint64_t seed = i8h_test::fresh_seed();
  rng.seed(seed);
  SCOPED_TRACE(::testing::Message() << "seed " << seed << " M " << c.M << " E " << c.E << " top_k "
                                    << c.top_k << " routing " << routing_name(c.kind) << " map "
                                    << c.with_map << " K " << c.K << " dtype " << dtype_name(dt));
  const auto ids = make_ids(c.M, c.top_k, c.E, c.kind, rng);
  // expert_map dropping half the experts (the odd ones), the rest renumbered.
  std::vector<int32_t> map(static_cast<size_t>(c.E), -1);
  int E_local = c.E;
  if (c.with_map) {
    E_local = 0;
    for (int e = 0; e < c.E; e += 2) map[size_t(e)] = E_local++;
  }
  const auto want =
      ref::permute(ids.data(), c.with_map ? map.data() : nullptr, c.M, c.top_k, c.E, E_local);
  PermuteProblem p;
  p.num_tokens = c.M;
  p.hidden = c.K;
  p.top_k = c.top_k;
  p.num_experts = c.E;
  p.num_local_experts = E_local;
  const int64_t n = c.M * c.top_k;
  DeviceBuffer<int32_t> d_ids(ids), d_map(map);
  DeviceBuffer<int64_t> offsets(static_cast<size_t>(E_local) + 1);
  DeviceBuffer<int32_t> p2ts(static_cast<size_t>(std::max<int64_t>(n, 1)));
  DeviceBuffer<int32_t> ts2p(static_cast<size_t>(std::max<int64_t>(n, 1)));
  DeviceBuffer<int32_t> invalid(std::vector<int32_t>{3});  // accumulates onto 3
  std::vector<uint16_t> hidden_h;
  DeviceBuffer<uint16_t> hidden, gathered;
  if (c.K > 0) {
    hidden_h = i8h_test::random_act(static_cast<size_t>(c.M * c.K), seed, dt);
    hidden.resize(hidden_h.size());
    hidden.upload(hidden_h);
    gathered.resize(static_cast<size_t>(n * c.K));
  }
  PermuteOutputs out;
  out.expert_offsets = offsets.get();
  out.permuted_to_token_slot = p2ts.get();
  out.token_slot_to_permuted = ts2p.get();
  out.permuted_hidden = c.K > 0 ? gathered.get() : nullptr;
  out.invalid_ids = invalid.get();
  const size_t ws_bytes = moe_permute_workspace_size(p);
  DeviceBuffer<uint8_t> ws(std::max<size_t>(ws_bytes, 1));
  moe_permute(p, dt, c.K > 0 ? hidden.get() : nullptr, d_ids.get(),
              c.with_map ? d_map.get() : nullptr, out, ws.get(), ws_bytes, 0);
  I8H_CUDA_OK(cudaDeviceSynchronize());

  EXPECT_EQ(offsets.download(), want.expert_offsets);
  EXPECT_EQ(invalid.download()[0], 3 + want.invalid_ids);
  if (n > 0) {
    const auto g_p2ts = p2ts.download();
    const auto g_ts2p = ts2p.download();
    EXPECT_EQ(std::vector<int32_t>(g_p2ts.begin(), g_p2ts.begin() + n),
              want.permuted_to_token_slot);
    EXPECT_EQ(std::vector<int32_t>(g_ts2p.begin(), g_ts2p.begin() + n),
              want.token_slot_to_permuted);
  }
  if (c.K > 0 && n > 0) {
    const auto g = gathered.download();
    const int64_t kept = want.expert_offsets.back();
    for (int64_t r = 0; r < n; ++r) {
      const uint16_t* row = g.data() + r * c.K;
      if (r < kept) {
        const int64_t t = want.permuted_to_token_slot[size_t(r)] / c.top_k;
        ASSERT_EQ(0, std::memcmp(row, hidden_h.data() + t * c.K, size_t(c.K) * 2)) << "row " << r;
      } else {
        for (int64_t k = 0; k < c.K; ++k) ASSERT_EQ(row[k], 0xffff) << "dropped row " << r;
      }
    }
  }
}

TEST(KernelRouting, PermuteMatchesReference) {
  I8H_REQUIRE_GPU();
  const Routing kinds[] = {Routing::kUniform, Routing::kOneExpert, Routing::kZipf,
                           Routing::kEvenOnly, Routing::kOutOfRange};
  for (int E : {1, 8, 64, 256})
    for (int top_k : {1, 2, 8}) {
      if (top_k > E) continue;
      for (Routing kind : kinds)
        for (bool with_map : {false, true}) {
          if (with_map && E < 2) continue;
          for (int64_t M : {int64_t(1), int64_t(37), int64_t(9000)})
            run_permute_case({M, E, top_k, kind, with_map, 0}, DType::kBFloat16);
        }
    }
}

TEST(KernelRouting, PermuteGathersRows) {
  I8H_REQUIRE_GPU();
  for (DType dt : {DType::kBFloat16, DType::kFloat16}) {
    run_permute_case({300, 8, 2, Routing::kUniform, true, 2176}, dt);
    run_permute_case({1000, 64, 8, Routing::kZipf, false, 512}, dt);
    run_permute_case({50, 256, 8, Routing::kOutOfRange, true, 7168}, dt);
    run_permute_case({17, 1, 1, Routing::kOneExpert, false, 128}, dt);
    run_permute_case({5, 8, 2, Routing::kUniform, false, 100}, dt);  // scalar gather path
  }
}

TEST(KernelRouting, PermuteZeroTokensWritesZeroOffsets) {
  I8H_REQUIRE_GPU();
  run_permute_case({0, 64, 8, Routing::kUniform, true, 0}, DType::kBFloat16);
  run_permute_case({0, 8, 2, Routing::kUniform, false, 256}, DType::kBFloat16);
}

TEST(KernelRouting, PermuteWorkspaceTooSmallIsRejected) {
  I8H_REQUIRE_GPU();
  PermuteProblem p;
  p.num_tokens = 100;
  p.top_k = 2;
  p.num_experts = p.num_local_experts = 8;
  const size_t ws = moe_permute_workspace_size(p);
  DeviceBuffer<int32_t> ids(200), buf(200);
  DeviceBuffer<int64_t> off(9);
  DeviceBuffer<uint8_t> w(ws);
  PermuteOutputs out;
  out.expert_offsets = off.get();
  out.permuted_to_token_slot = buf.get();
  out.token_slot_to_permuted = buf.get();
  EXPECT_THROW(
      moe_permute(p, DType::kBFloat16, nullptr, ids.get(), nullptr, out, w.get(), ws - 1, 0),
      InvalidArgument);
}

// Permute (gather) then quantize with num_valid_rows = &expert_offsets[E_local], vs the fused
// permute_quantize_hybrid: kept rows identical.
TEST(KernelRouting, PermuteThenQuantizeEqualsFused) {
  I8H_REQUIRE_GPU();
  for (DType dt : {DType::kBFloat16, DType::kFloat16}) {
    const uint64_t seed = i8h_test::fresh_seed();
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " dtype " << dtype_name(dt));
    std::mt19937_64 rng(seed);
    const int64_t M = 700, K = 2176;
    const int E = 64, top_k = 8;
    std::vector<int32_t> map(static_cast<size_t>(E), -1);
    int E_local = 0;
    for (int e = 0; e < E; e += 2) map[size_t(e)] = E_local++;
    const auto ids = make_ids(M, top_k, E, Routing::kZipf, rng);
    const auto h = i8h_test::random_act(static_cast<size_t>(M * K), seed, dt);
    PermuteProblem p;
    p.num_tokens = M;
    p.hidden = K;
    p.top_k = top_k;
    p.num_experts = E;
    p.num_local_experts = E_local;
    const int64_t n = M * top_k;
    DeviceBuffer<int32_t> d_ids(ids), d_map(map), p2ts(static_cast<size_t>(n)),
        ts2p(static_cast<size_t>(n));
    DeviceBuffer<int64_t> offsets(static_cast<size_t>(E_local) + 1);
    DeviceBuffer<uint16_t> hidden(h), gathered(static_cast<size_t>(n * K));
    PermuteOutputs out;
    out.expert_offsets = offsets.get();
    out.permuted_to_token_slot = p2ts.get();
    out.token_slot_to_permuted = ts2p.get();
    out.permuted_hidden = gathered.get();
    const size_t ws_bytes = moe_permute_workspace_size(p);
    DeviceBuffer<uint8_t> ws(ws_bytes);
    moe_permute(p, dt, hidden.get(), d_ids.get(), d_map.get(), out, ws.get(), ws_bytes, 0);
    HybridFormat fmt;  // defaults: B 128, S 256, q_max 16
    const int64_t nb = num_blocks(K, fmt), ng = num_groups(K, fmt);
    DeviceBuffer<int8_t> q1(static_cast<size_t>(n * K)), q2(static_cast<size_t>(n * K));
    DeviceBuffer<int32_t> Q1(static_cast<size_t>(n * nb)), Q2(static_cast<size_t>(n * nb));
    DeviceBuffer<float> F1(static_cast<size_t>(n * ng)), F2(static_cast<size_t>(n * ng));
    quantize_rows_hybrid(gathered.get(), dt, n, K, fmt, {q1.get(), Q1.get(), F1.get()},
                         offsets.get() + E_local, 0);
    permute_quantize_hybrid(hidden.get(), dt, ts2p.get(), M, top_k, K, fmt,
                            {q2.get(), Q2.get(), F2.get()}, 0);
    I8H_CUDA_OK(cudaDeviceSynchronize());
    // Unwritten rows are poisoned identically in both, so whole buffers compare equal.
    EXPECT_TRUE(q1.download() == q2.download());
    EXPECT_TRUE(Q1.download() == Q2.download());
    const auto f1 = F1.download(), f2 = F2.download();
    EXPECT_EQ(0, std::memcmp(f1.data(), f2.data(), f1.size() * 4));
  }
}

uint16_t ulp_distance(uint16_t a, uint16_t b) {
  // Sign-magnitude -> monotonic integer line.
  auto key = [](uint16_t h) {
    return (h & 0x8000) ? int32_t(0x8000) - int32_t(h & 0x7fff) : int32_t(0x8000) + h;
  };
  const int32_t d = key(a) - key(b);
  return uint16_t(std::min(65535, std::abs(d)));
}

TEST(KernelRouting, UnpermuteMatchesReference) {
  I8H_REQUIRE_GPU();
  for (DType dt : {DType::kBFloat16, DType::kFloat16})
    for (int64_t K : {int64_t(128), int64_t(2048), int64_t(2176), int64_t(7168), int64_t(100)})
      for (int top_k : {1, 2, 8}) {
        const uint64_t seed = i8h_test::fresh_seed();
        std::mt19937_64 rng(seed);
        const int64_t M = std::max<int64_t>(1, (int64_t(1) << 20) / (K * top_k)) + 3;
        SCOPED_TRACE(::testing::Message() << "seed " << seed << " dtype " << dtype_name(dt) << " M "
                                          << M << " K " << K << " top_k " << top_k);
        const int64_t n = M * top_k;
        const auto y = i8h_test::random_act(static_cast<size_t>(n * K), seed, dt);
        std::vector<int32_t> rows(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = int32_t(i);
        std::shuffle(rows.begin(), rows.end(), rng);
        std::bernoulli_distribution drop(0.2);
        for (auto& r : rows)
          if (drop(rng)) r = -1;
        std::uniform_real_distribution<float> wd(0.0f, 1.0f);
        std::vector<float> w(static_cast<size_t>(n));
        for (auto& v : w) v = wd(rng);
        DeviceBuffer<uint16_t> d_y(y), d_out(static_cast<size_t>(M * K));
        DeviceBuffer<int32_t> d_rows(rows);
        DeviceBuffer<float> d_w(w);
        moe_unpermute(d_y.get(), dt, d_w.get(), d_rows.get(), M, top_k, K, d_out.get(), 0);
        I8H_CUDA_OK(cudaDeviceSynchronize());
        const auto out = d_out.download();
        for (int64_t t = 0; t < M; ++t)
          for (int64_t k = 0; k < K; ++k) {
            float acc = 0.0f;
            for (int j = 0; j < top_k; ++j) {
              const int32_t r = rows[size_t(t * top_k + j)];
              if (r < 0) continue;
              const float prod = w[size_t(t * top_k + j)] * ref::to_float(y[size_t(r * K + k)], dt);
              acc = acc + prod;
            }
            const uint16_t want = ref::from_float(acc, dt);
            ASSERT_LE(ulp_distance(want, out[size_t(t * K + k)]), 1)
                << "token " << t << " col " << k << ": want " << ref::to_float(want, dt) << " got "
                << ref::to_float(out[size_t(t * K + k)], dt);
          }
      }
}

}  // namespace
