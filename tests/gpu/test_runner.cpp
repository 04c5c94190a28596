// GPU tests of the runner (moe_forward) against the CPU reference of the quantized pipeline,
// with the agreement criterion of the benchmark CLIs (bench_cli.h, docs/FORMAT.md section 8:
// tight 2 ulp + 1e-3 rms on all but 0.1% / one token row, loose 4 ulp + 5e-2 rms everywhere,
// relative L2 <= max(1e-3, 8e-3 / sqrt(tokens))). Fused and unfused paths must agree bitwise, as
// must a graph-captured forward with the eager one and 50 graph replays with each other.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "gpu/gpu_test_util.h"
#include "int8_hybrid_moe/moe.h"
#include "int8_hybrid_moe/reference.h"

namespace {

namespace moe = int8_hybrid_moe;
namespace ref = int8_hybrid_moe::ref;
using i8h_test::DeviceBuffer;
using moe::DType;
using moe::QuantScheme;

struct Case {
  int64_t M, K, N;
  int E, top_k;
  DType dtype;
  QuantScheme scheme;
  i8h_bench::RoutingKind routing;
  moe::HybridFormat fmt = {};
  int local_experts = 0;  // > 0: an expert_map keeps this many experts (and some ids are invalid)
};

std::string describe(const Case& c) {
  return moe::detail::concat("M=", c.M, " K=", c.K, " N=", c.N, " E=", c.E, " top_k=", c.top_k, " ",
                             moe::dtype_name(c.dtype), " ", moe::quant_scheme_name(c.scheme), " ",
                             i8h_bench::routing_name(c.routing), " B=", c.fmt.block_size,
                             " S=", c.fmt.super_group, " q_max=", c.fmt.q_max,
                             " local=", c.local_experts);
}

// Inputs on host and device, quantized weights of the local experts, and the reference inputs.
struct Fixture {
  Case c;
  moe::MoeProblem p;
  int E_local = 0;
  std::vector<uint16_t> hidden;
  std::vector<int32_t> ids, map;
  std::vector<float> wts;
  DeviceBuffer<uint16_t> d_hidden, d_w13, d_w2;
  DeviceBuffer<int32_t> d_ids, d_map, d_invalid;
  DeviceBuffer<float> d_wts;
  DeviceBuffer<int8_t> w13q, w2q;
  DeviceBuffer<int32_t> w13Q, w2Q;
  DeviceBuffer<float> w13F, w2F, w13s, w2s;
  moe::MoeWeights w;
  int64_t num_invalid = 0;

  explicit Fixture(const Case& cs, uint64_t seed) : c(cs) {
    E_local = c.local_experts > 0 ? c.local_experts : c.E;
    p.num_tokens = c.M;
    p.hidden = c.K;
    p.intermediate = c.N;
    p.num_experts = c.E;
    p.num_local_experts = E_local;
    p.top_k = c.top_k;
    p.dtype = c.dtype;
    p.scheme = c.scheme;
    p.format = c.fmt;
    hidden = i8h_test::random_act(c.M * c.K, seed, c.dtype);
    const auto w13 = i8h_test::random_act(E_local * 2 * c.N * c.K, seed + 1, c.dtype,
                                          1.0f / std::sqrt(static_cast<float>(c.K)));
    const auto w2 = i8h_test::random_act(E_local * c.K * c.N, seed + 2, c.dtype,
                                         1.0f / std::sqrt(static_cast<float>(c.N)));
    const i8h_bench::RoutingData r = i8h_bench::make_routing(c.M, c.E, c.top_k, c.routing, seed);
    ids = r.ids;
    wts = r.weights;
    if (c.local_experts > 0) {
      // Every other global expert is local, in reversed order; the rest are dropped.
      map.assign(c.E, -1);
      int next = E_local - 1;
      for (int g = 1; g < c.E && next >= 0; g += 2) map[g] = next--;
      for (int g = 0; g < c.E && next >= 0; g += 2) map[g] = next--;
      for (int g = 0; g < c.E; g += 4) map[g] = -1;  // ensure some drops even when dense
      // A few invalid ids (clamp-and-flag: dropped and counted).
      for (size_t i = 3; i < ids.size(); i += 17) {
        ids[i] = (i % 2) ? c.E + 5 : -1;
        ++num_invalid;
      }
      d_map.resize(map.size());
      d_map.upload(map);
    }
    // DeviceBuffer is not assignable: size, then upload.
    d_hidden.resize(hidden.size());
    d_hidden.upload(hidden);
    d_ids.resize(ids.size());
    d_ids.upload(ids);
    d_wts.resize(wts.size());
    d_wts.upload(wts);
    d_invalid.resize(1);
    d_w13.resize(w13.size());
    d_w13.upload(w13);
    d_w2.resize(w2.size());
    d_w2.upload(w2);
    const int64_t K = c.K, N = c.N;
    if (c.scheme == QuantScheme::kHybrid) {
      const int64_t nbK = moe::num_blocks(K, c.fmt), ngK = moe::num_groups(K, c.fmt);
      const int64_t nbN = moe::num_blocks(N, c.fmt), ngN = moe::num_groups(N, c.fmt);
      w13q.resize(E_local * 2 * N * K);
      w13Q.resize(E_local * 2 * N * nbK);
      w13F.resize(E_local * 2 * N * ngK);
      w2q.resize(E_local * K * N);
      w2Q.resize(E_local * K * nbN);
      w2F.resize(E_local * K * ngN);
      moe::quantize_weights_hybrid(d_w13.get(), c.dtype, E_local, 2 * N, K, c.fmt,
                                   {w13q.get(), w13Q.get(), w13F.get()}, nullptr);
      moe::quantize_weights_hybrid(d_w2.get(), c.dtype, E_local, K, N, c.fmt,
                                   {w2q.get(), w2Q.get(), w2F.get()}, nullptr);
      w.w13_hybrid = {w13q.get(), w13Q.get(), w13F.get()};
      w.w2_hybrid = {w2q.get(), w2Q.get(), w2F.get()};
    } else {
      w13q.resize(E_local * 2 * N * K);
      w13s.resize(E_local * 2 * N);
      w2q.resize(E_local * K * N);
      w2s.resize(E_local * K);
      moe::quantize_weights_per_channel(d_w13.get(), c.dtype, E_local, 2 * N, K,
                                        {w13q.get(), w13s.get()}, nullptr);
      moe::quantize_weights_per_channel(d_w2.get(), c.dtype, E_local, K, N, {w2q.get(), w2s.get()},
                                        nullptr);
      w.w13_channel = {w13q.get(), w13s.get()};
      w.w2_channel = {w2q.get(), w2s.get()};
    }
    if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("weight quantization");
  }

  moe::MoeInputs inputs() const {
    moe::MoeInputs in;
    in.hidden = d_hidden.get();
    in.topk_ids = d_ids.get();
    in.topk_weights = d_wts.get();
    in.expert_map = map.empty() ? nullptr : d_map.get();
    return in;
  }

  // Reference on `tokens`. With an expert_map the reference sees local ids, and dropped / invalid
  // slots get weight 0 (an exact no-op in the weighted sum).
  std::vector<float> reference(const std::vector<int64_t>& tokens) const {
    ref::MoeRefProblem rp;
    rp.M = c.M;
    rp.K = c.K;
    rp.N = c.N;
    rp.E = E_local;
    rp.top_k = c.top_k;
    rp.dtype = c.dtype;
    rp.fmt = c.fmt;
    std::vector<int32_t> rids = ids;
    std::vector<float> rw = wts;
    if (!map.empty()) {
      for (size_t i = 0; i < rids.size(); ++i) {
        const int32_t g = rids[i];
        const int32_t l = (g >= 0 && g < c.E) ? map[g] : -1;
        rids[i] = l >= 0 ? l : 0;
        if (l < 0) rw[i] = 0.0f;
      }
    }
    const std::vector<float> hf = ref::to_float(hidden, c.dtype);
    const int64_t K = c.K, N = c.N;
    if (c.scheme == QuantScheme::kHybrid) {
      auto split = [&](const DeviceBuffer<int8_t>& q, const DeviceBuffer<int32_t>& Q,
                       const DeviceBuffer<float>& F, int64_t rows, int64_t cols) {
        const auto hq = q.download();
        const auto hQ = Q.download();
        const auto hF = F.download();
        const int64_t nb = moe::num_blocks(cols, c.fmt), ng = moe::num_groups(cols, c.fmt);
        std::vector<ref::HybridTensor> v(E_local);
        for (int e = 0; e < E_local; ++e) {
          v[e].rows = rows;
          v[e].K = cols;
          v[e].nb = nb;
          v[e].ng = ng;
          v[e].q.assign(hq.begin() + e * rows * cols, hq.begin() + (e + 1) * rows * cols);
          v[e].Q.assign(hQ.begin() + e * rows * nb, hQ.begin() + (e + 1) * rows * nb);
          v[e].F.assign(hF.begin() + e * rows * ng, hF.begin() + (e + 1) * rows * ng);
        }
        return v;
      };
      return ref::moe_forward_hybrid(rp, hf, rids, rw, split(w13q, w13Q, w13F, 2 * N, K),
                                     split(w2q, w2Q, w2F, K, N), &tokens);
    }
    auto split = [&](const DeviceBuffer<int8_t>& q, const DeviceBuffer<float>& s, int64_t rows,
                     int64_t cols) {
      const auto hq = q.download();
      const auto hs = s.download();
      std::vector<ref::PerTokenTensor> v(E_local);
      for (int e = 0; e < E_local; ++e) {
        v[e].rows = rows;
        v[e].K = cols;
        v[e].q.assign(hq.begin() + e * rows * cols, hq.begin() + (e + 1) * rows * cols);
        v[e].scale.assign(hs.begin() + e * rows, hs.begin() + (e + 1) * rows);
      }
      return v;
    };
    return ref::moe_forward_per_token(rp, hf, rids, rw, split(w13q, w13s, 2 * N, K),
                                      split(w2q, w2s, K, N), &tokens);
  }
};

moe::MoeOptions options(int silu, int permute) {
  moe::MoeOptions o;
  o.fused_silu_quant = silu;
  o.fused_permute_quant = permute;
  return o;
}

// One eager forward; returns the raw output words.
std::vector<uint16_t> forward(Fixture& f, const moe::MoeOptions& o, cudaStream_t stream) {
  DeviceBuffer<uint8_t> ws(moe::moe_workspace_size(f.p, o));
  DeviceBuffer<uint16_t> out(f.c.M * f.c.K);
  f.d_invalid.poison(0);
  // poison() runs on the legacy stream, which does not order with a non-blocking one.
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  moe::moe_forward(f.p, o, f.inputs(), f.w, out.get(), ws.get(), ws.size(), stream, nullptr,
                   f.d_invalid.get());
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  return out.download();
}

void expect_matches_reference(const Fixture& f, const std::vector<uint16_t>& out) {
  const std::vector<int64_t> tokens = i8h_bench::sample_tokens(f.c.M, 48);
  const std::vector<float> want = f.reference(tokens);
  std::vector<float> got;
  for (int64_t t : tokens)
    for (int64_t k = 0; k < f.c.K; ++k) got.push_back(ref::to_float(out[t * f.c.K + k], f.c.dtype));
  const i8h_bench::Agreement a = i8h_bench::check_agreement(got, want, f.c.dtype, f.c.K);
  EXPECT_TRUE(a.agree) << describe(f.c) << ": " << i8h_bench::describe_agreement(a)
                       << "; first outside tight in token "
                       << (a.first_bad >= 0 ? tokens[a.first_bad / f.c.K] : -1) << ", max|err| "
                       << a.max_abs_err;
}

void run_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(describe(c) + " seed=" + std::to_string(seed));
  Fixture f(c, seed);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::vector<uint16_t> first;
  for (int silu : {1, 0})
    for (int perm : {0, 1}) {
      const std::vector<uint16_t> out = forward(f, options(silu, perm), stream);
      if (first.empty()) {
        first = out;
        expect_matches_reference(f, out);
        if (!f.map.empty()) {
          EXPECT_EQ(f.d_invalid.download()[0], f.num_invalid);
        }
      } else {
        EXPECT_TRUE(out == first) << "fused_silu_quant=" << silu << " fused_permute_quant=" << perm
                                  << " differs bitwise from the default path";
      }
    }
  cudaStreamDestroy(stream);
}

using i8h_bench::RoutingKind;
constexpr DType kBF = DType::kBFloat16, kFP = DType::kFloat16;
constexpr QuantScheme kHy = QuantScheme::kHybrid, kPT = QuantScheme::kPerToken;

TEST(Runner, SmallShapesAllFusedCombinations) {
  I8H_REQUIRE_GPU();
  const std::vector<Case> cases = {
      {1, 256, 128, 8, 2, kBF, kHy, RoutingKind::kUniform},
      {1, 256, 128, 8, 2, kFP, kPT, RoutingKind::kUniform},
      {33, 256, 128, 1, 1, kFP, kHy, RoutingKind::kUniform},
      {33, 256, 128, 1, 1, kBF, kPT, RoutingKind::kUniform},
      {33, 256, 512, 8, 8, kBF, kHy, RoutingKind::kZipf},
      {33, 256, 512, 8, 8, kFP, kPT, RoutingKind::kZipf},
  };
  for (size_t i = 0; i < cases.size(); ++i) run_case(cases[i], 1000 + i);
}

TEST(Runner, MediumShapesAllFusedCombinations) {
  I8H_REQUIRE_GPU();
  moe::HybridFormat wide;  // many groups, the int32 overflow safeguard's fp32 path (q_max 127)
  wide.block_size = 64;
  wide.super_group = 4;
  wide.q_max = 127;
  const std::vector<Case> cases = {
      {33, 2048, 512, 64, 8, kBF, kHy, RoutingKind::kZipf},
      {300, 256, 128, 64, 8, kFP, kHy, RoutingKind::kUniform},
      {300, 256, 128, 64, 8, kBF, kPT, RoutingKind::kUniform},
      {300, 2048, 512, 8, 2, kBF, kPT, RoutingKind::kZipf},
      {300, 2048, 512, 8, 2, kFP, kHy, RoutingKind::kZipf},
      {300, 2048, 128, 64, 1, kFP, kHy, RoutingKind::kUniform, wide},
  };
  for (size_t i = 0; i < cases.size(); ++i) run_case(cases[i], 2000 + i);
}

TEST(Runner, ExpertMapDropsExpertsAndInvalidIds) {
  I8H_REQUIRE_GPU();
  const std::vector<Case> cases = {
      {300, 256, 128, 8, 2, kBF, kHy, RoutingKind::kUniform, {}, 3},
      {300, 256, 128, 64, 8, kFP, kPT, RoutingKind::kZipf, {}, 20},
      {33, 2048, 512, 64, 8, kBF, kHy, RoutingKind::kUniform, {}, 1},
  };
  for (size_t i = 0; i < cases.size(); ++i) run_case(cases[i], 3000 + i);
}

// Graph-captured forward == eager forward bitwise; 50 replays identical; stage events usable.
TEST(Runner, GraphCaptureMatchesEagerAndIsStable) {
  I8H_REQUIRE_GPU();
  for (QuantScheme s : {kHy, kPT}) {
    const Case c{300, 2048, 512, 64, 8, kBF, s, RoutingKind::kZipf, {}, 40};
    SCOPED_TRACE(describe(c));
    Fixture f(c, 4000 + static_cast<int>(s));
    cudaStream_t stream = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    const moe::MoeOptions o = options(1, 0);
    const std::vector<uint16_t> eager = forward(f, o, stream);

    DeviceBuffer<uint8_t> ws(moe::moe_workspace_size(f.p, o));
    DeviceBuffer<uint16_t> out(c.M * c.K);
    cudaGraph_t graph = nullptr;
    I8H_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    moe::moe_forward(f.p, o, f.inputs(), f.w, out.get(), ws.get(), ws.size(), stream);
    I8H_CUDA_OK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    I8H_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int rep = 0; rep < 50; ++rep) {
      out.poison();
      ws.poison(static_cast<uint8_t>(rep * 37));  // stale workspace must not matter
      I8H_CUDA_OK(cudaDeviceSynchronize());
      I8H_CUDA_OK(cudaGraphLaunch(exec, stream));
      I8H_CUDA_OK(cudaStreamSynchronize(stream));
      ASSERT_TRUE(out.download() == eager) << "graph replay " << rep << " differs from eager";
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);

    // Stage events: all recorded, in order.
    moe::MoeStageEvents ev;
    for (auto& e : ev.events) I8H_CUDA_OK(cudaEventCreate(&e));
    moe::moe_forward(f.p, o, f.inputs(), f.w, out.get(), ws.get(), ws.size(), stream, &ev);
    I8H_CUDA_OK(cudaStreamSynchronize(stream));
    for (int i = 0; i < moe::kNumMoeStages; ++i) {
      float ms = -1;
      I8H_CUDA_OK(cudaEventElapsedTime(&ms, ev.events[i], ev.events[i + 1]));
      EXPECT_GE(ms, 0.0f) << moe::moe_stage_name(i);
    }
    EXPECT_TRUE(out.download() == eager);
    for (auto e : ev.events) cudaEventDestroy(e);
    cudaStreamDestroy(stream);
  }
}

}  // namespace
