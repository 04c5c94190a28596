// Small end-to-end forwards of every path (hybrid / per-token x fused / unfused SiLU-quant x
// fused / unfused permute-quant, with an expert_map, invalid ids and empty experts), sized for
// compute-sanitizer (memcheck, racecheck, initcheck, synccheck: scripts/gpu_check.sh runs every
// test whose name contains "Sanitize"). Each output is checked against the CPU reference.
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

void run_small(moe::QuantScheme scheme, bool with_map, uint64_t seed) {
  i8h_test::MoeCase c;
  c.M = 5;
  c.K = 128;
  c.N = 64;
  c.E = 4;
  c.top_k = 2;
  c.scheme = scheme;
  c.fmt.block_size = 64;
  c.fmt.super_group = 1;
  SCOPED_TRACE(i8h_test::describe_case(c) + " map=" + std::to_string(with_map) +
               " seed=" + std::to_string(seed));
  i8h_test::MoeRawInputs raw = i8h_test::random_layer(c, with_map ? 2 : c.E, seed);
  // Token 0 -> experts 0, 1; the others -> 1, 3 (expert 2 empty); one invalid id.
  raw.ids = {0, 1, 1, 3, 3, 1, 1, 3, 9, 3};
  raw.wts = {0.6f, 0.4f, 0.5f, 0.5f, 0.3f, 0.7f, 0.9f, 0.1f, 0.2f, 0.8f};
  if (with_map) raw.map = {-1, 1, -1, 0};
  i8h_test::MoeFixture f(c, raw);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const std::vector<int64_t> tokens = {0, 1, 2, 3, 4};
  const std::vector<float> want = f.reference(tokens);
  for (int silu : {1, 0})
    for (int perm : {0, 1}) {
      const std::vector<uint16_t> out =
          i8h_test::run_forward(f, i8h_test::moe_options(silu, perm), stream);
      std::vector<float> got;
      for (uint16_t w : out) got.push_back(ref::to_float(w, c.dtype));
      const i8h_bench::Agreement a = i8h_bench::check_agreement(got, want, c.dtype, c.K);
      EXPECT_TRUE(a.agree) << "silu=" << silu << " perm=" << perm << ": "
                           << i8h_bench::describe_agreement(a);
    }
  cudaStreamDestroy(stream);
}

TEST(RunnerSanitize, SmallForwardEachPath) {
  I8H_REQUIRE_GPU();
  uint64_t seed = i8h_test::fresh_seed();
  for (moe::QuantScheme s : {moe::QuantScheme::kHybrid, moe::QuantScheme::kPerToken})
    for (bool map : {false, true}) run_small(s, map, seed++);
}

}  // namespace
