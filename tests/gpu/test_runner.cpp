// GPU tests of the runner (moe_forward) against the CPU reference of the quantized pipeline,
// with the agreement criterion of the benchmark CLIs (bench_cli.h, docs/FORMAT.md section 8:
// tight 2 ulp + 1e-3 rms on all but 0.1% / one token row, loose 4 ulp + 5e-2 rms everywhere,
// relative L2 <= max(1e-3, 8e-3 * max row norm / norm(ref))). Fused and unfused paths must agree
// bitwise, as must a graph-captured forward with the eager one and 50 graph replays with each
// other.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "gpu/gpu_test_util.h"
#include "gpu/moe_fixture.h"
#include "int8_hybrid_moe/moe.h"
#include "int8_hybrid_moe/reference.h"

namespace {

namespace moe = int8_hybrid_moe;
namespace ref = int8_hybrid_moe::ref;
using i8h_test::DeviceBuffer;
using i8h_test::MoeFixture;
using moe::DType;
using moe::QuantScheme;

// A layer of moe_fixture.h plus the routing drawn for it and an optional expert_map.
struct Case {
  i8h_test::MoeCase moe;
  i8h_bench::RoutingKind routing;
  int local_experts = 0;  // > 0: an expert_map keeps this many experts (and some ids are invalid)
};

std::string describe(const Case& c) {
  return i8h_test::describe_case(c.moe) + " routing=" + i8h_bench::routing_name(c.routing) +
         " local=" + std::to_string(c.local_experts);
}

// The inputs of `c`: random layer, routing, and for an expert_map case the map and a few invalid
// ids (their count in *num_invalid).
i8h_test::MoeRawInputs make_inputs(const Case& c, uint64_t seed, int64_t* num_invalid) {
  const i8h_test::MoeCase& m = c.moe;
  i8h_test::MoeRawInputs raw =
      i8h_test::random_layer(m, c.local_experts > 0 ? c.local_experts : m.E, seed);
  const i8h_bench::RoutingData r = i8h_bench::make_routing(m.M, m.E, m.top_k, c.routing, seed);
  raw.ids = r.ids;
  raw.wts = r.weights;
  *num_invalid = 0;
  if (c.local_experts > 0) {
    // Every other global expert is local, in reversed order; the rest are dropped.
    raw.map.assign(size_t(m.E), -1);
    int next = raw.E_local - 1;
    for (int g = 1; g < m.E && next >= 0; g += 2) raw.map[size_t(g)] = next--;
    for (int g = 0; g < m.E && next >= 0; g += 2) raw.map[size_t(g)] = next--;
    for (int g = 0; g < m.E; g += 4) raw.map[size_t(g)] = -1;  // ensure some drops even when dense
    // A few invalid ids (clamp-and-flag: dropped and counted).
    for (size_t i = 3; i < raw.ids.size(); i += 17) {
      raw.ids[i] = (i % 2) ? m.E + 5 : -1;
      ++*num_invalid;
    }
  }
  return raw;
}

void expect_matches_reference(const Case& c, const MoeFixture& f,
                              const std::vector<uint16_t>& out) {
  const int64_t K = c.moe.K;
  const std::vector<int64_t> tokens = i8h_bench::sample_tokens(c.moe.M, 48);
  const std::vector<float> want = f.reference(tokens);
  std::vector<float> got;
  for (int64_t t : tokens)
    for (int64_t k = 0; k < K; ++k) got.push_back(ref::to_float(out[t * K + k], c.moe.dtype));
  const i8h_bench::Agreement a = i8h_bench::check_agreement(got, want, c.moe.dtype, K);
  EXPECT_TRUE(a.agree) << describe(c) << ": " << i8h_bench::describe_agreement(a)
                       << "; first outside tight in token "
                       << (a.first_bad >= 0 ? tokens[a.first_bad / K] : -1) << ", max|err| "
                       << a.max_abs_err;
}

void run_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(describe(c) + " seed=" + std::to_string(seed));
  int64_t num_invalid = 0;
  const MoeFixture f(c.moe, make_inputs(c, seed, &num_invalid));
  DeviceBuffer<int32_t> d_invalid(1);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::vector<uint16_t> first;
  for (int silu : {1, 0})
    for (int perm : {0, 1}) {
      d_invalid.poison(0);  // run_forward's device sync orders it before the forward
      const std::vector<uint16_t> out =
          i8h_test::run_forward(f, i8h_test::moe_options(silu, perm), stream, d_invalid.get());
      if (first.empty()) {
        first = out;
        expect_matches_reference(c, f, out);
        if (!f.raw.map.empty()) {
          EXPECT_EQ(d_invalid.download()[0], num_invalid);
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
      {{1, 256, 128, 8, 2, kBF, kHy}, RoutingKind::kUniform},
      {{1, 256, 128, 8, 2, kFP, kPT}, RoutingKind::kUniform},
      {{33, 256, 128, 1, 1, kFP, kHy}, RoutingKind::kUniform},
      {{33, 256, 128, 1, 1, kBF, kPT}, RoutingKind::kUniform},
      {{33, 256, 512, 8, 8, kBF, kHy}, RoutingKind::kZipf},
      {{33, 256, 512, 8, 8, kFP, kPT}, RoutingKind::kZipf},
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
      {{33, 2048, 512, 64, 8, kBF, kHy}, RoutingKind::kZipf},
      {{300, 256, 128, 64, 8, kFP, kHy}, RoutingKind::kUniform},
      {{300, 256, 128, 64, 8, kBF, kPT}, RoutingKind::kUniform},
      {{300, 2048, 512, 8, 2, kBF, kPT}, RoutingKind::kZipf},
      {{300, 2048, 512, 8, 2, kFP, kHy}, RoutingKind::kZipf},
      {{300, 2048, 128, 64, 1, kFP, kHy, wide}, RoutingKind::kUniform},
  };
  for (size_t i = 0; i < cases.size(); ++i) run_case(cases[i], 2000 + i);
}

TEST(Runner, ExpertMapDropsExpertsAndInvalidIds) {
  I8H_REQUIRE_GPU();
  const std::vector<Case> cases = {
      {{300, 256, 128, 8, 2, kBF, kHy}, RoutingKind::kUniform, 3},
      {{300, 256, 128, 64, 8, kFP, kPT}, RoutingKind::kZipf, 20},
      {{33, 2048, 512, 64, 8, kBF, kHy}, RoutingKind::kUniform, 1},
  };
  for (size_t i = 0; i < cases.size(); ++i) run_case(cases[i], 3000 + i);
}

// Graph-captured forward == eager forward bitwise; 50 replays identical; stage events usable.
TEST(Runner, GraphCaptureMatchesEagerAndIsStable) {
  I8H_REQUIRE_GPU();
  for (QuantScheme s : {kHy, kPT}) {
    const Case c{{300, 2048, 512, 64, 8, kBF, s}, RoutingKind::kZipf, 40};
    SCOPED_TRACE(describe(c));
    int64_t num_invalid = 0;
    const MoeFixture f(c.moe, make_inputs(c, 4000 + static_cast<int>(s), &num_invalid));
    DeviceBuffer<int32_t> d_invalid(1);
    cudaStream_t stream = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    const moe::MoeOptions o = i8h_test::moe_options(1, 0);
    d_invalid.poison(0);
    const std::vector<uint16_t> eager = i8h_test::run_forward(f, o, stream, d_invalid.get());

    DeviceBuffer<uint8_t> ws(moe::moe_workspace_size(f.p, o));
    DeviceBuffer<uint16_t> out(size_t(c.moe.M * c.moe.K));
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
