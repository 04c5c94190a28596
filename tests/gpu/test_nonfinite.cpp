// Non-finite input (docs/FORMAT.md section 3): a NaN or +-Inf in the activations or in the
// weights poisons its super group, so the outputs it reaches are non-finite and every other
// output stays finite; never a crash, never a silently finite value. Checked through the whole
// runner for both schemes: hidden row t0 poisoned -> out row t0 non-finite; w13[e0] row poisoned
// -> the rows of every token routed to e0 non-finite (h is re-quantized per row); w2[e0] row k0
// poisoned -> column k0 of the tokens routed to e0 non-finite.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
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

enum class Where { kHidden, kW13, kW2 };
const char* where_name(Where w) {
  return w == Where::kHidden ? "hidden" : w == Where::kW13 ? "w13" : "w2";
}

void check_case(moe::QuantScheme scheme, moe::DType dtype, Where where, float bad, uint64_t seed) {
  i8h_test::MoeCase c;
  c.M = 40;
  c.K = 256;
  c.N = 128;
  c.E = 6;
  c.top_k = 2;
  c.dtype = dtype;
  c.scheme = scheme;
  c.fmt.super_group = 1;  // several groups per row: the poison must still reach whole rows
  SCOPED_TRACE(i8h_test::describe_case(c) + " poison in " + where_name(where) + " = " +
               std::to_string(bad) + " seed=" + std::to_string(seed));
  i8h_test::MoeRawInputs raw = i8h_test::random_layer(c, c.E, seed);
  const i8h_bench::RoutingData r =
      i8h_bench::make_routing(c.M, c.E, c.top_k, i8h_bench::RoutingKind::kUniform, seed);
  raw.ids = r.ids;
  raw.wts = r.weights;
  const int64_t t0 = 7, e0 = raw.ids[size_t(t0 * c.top_k)], k0 = 77, n0 = 5;
  const uint16_t word = ref::from_float(bad, dtype);
  if (where == Where::kHidden) raw.hidden[size_t(t0 * c.K + 100)] = word;
  if (where == Where::kW13) raw.w13[size_t((e0 * 2 * c.N + n0) * c.K + 3)] = word;
  if (where == Where::kW2) raw.w2[size_t((e0 * c.K + k0) * c.N + 9)] = word;
  i8h_test::MoeFixture f(c, raw);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  for (int silu : {1, 0})
    for (int perm : {0, 1}) {
      const std::vector<uint16_t> out =
          i8h_test::run_forward(f, i8h_test::moe_options(silu, perm), stream);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      int64_t wrong = 0, poisoned = 0;
      for (int64_t t = 0; t < c.M; ++t) {
        bool routed = false;
        for (int j = 0; j < c.top_k; ++j) routed |= raw.ids[size_t(t * c.top_k + j)] == e0;
        for (int64_t k = 0; k < c.K; ++k) {
          bool expect_bad = false;
          if (where == Where::kHidden) expect_bad = t == t0;
          if (where == Where::kW13) expect_bad = routed;
          if (where == Where::kW2) expect_bad = routed && k == k0;
          const bool is_bad = !std::isfinite(ref::to_float(out[size_t(t * c.K + k)], dtype));
          poisoned += is_bad ? 1 : 0;
          if (is_bad != expect_bad) {
            if (wrong < 5)
              ADD_FAILURE() << "silu=" << silu << " perm=" << perm << " out[" << t << "," << k
                            << "] is " << (is_bad ? "non-finite" : "finite") << ", expected "
                            << (expect_bad ? "non-finite" : "finite");
            ++wrong;
          }
        }
      }
      EXPECT_EQ(wrong, 0);
      EXPECT_GT(poisoned, 0);
    }
  cudaStreamDestroy(stream);
}

TEST(NonFinite, PropagatesThroughTheRunner) {
  I8H_REQUIRE_GPU();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  uint64_t seed = i8h_test::fresh_seed();
  for (moe::QuantScheme s : {moe::QuantScheme::kHybrid, moe::QuantScheme::kPerToken})
    for (Where w : {Where::kHidden, Where::kW13, Where::kW2})
      for (float bad : {nan, inf, -inf})
        check_case(s, bad == inf ? moe::DType::kFloat16 : moe::DType::kBFloat16, w, bad, seed++);
}

}  // namespace
