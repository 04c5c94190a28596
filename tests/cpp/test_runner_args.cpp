// CPU tests of the runner's host side: every validation error of moe_forward is thrown before
// any CUDA call (the pointers below are fake and never dereferenced), option / environment
// resolution and the names.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <string>

#include "int8_hybrid_moe/moe.h"

namespace {

namespace moe = int8_hybrid_moe;

constexpr const char* kSilu = "VLLM_INT8_HYBRID_FUSED_SILU_QUANT";
constexpr const char* kPermute = "VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT";

// Restores both environment variables after a test.
class EnvGuard {
 public:
  EnvGuard() {
    for (int i = 0; i < 2; ++i) {
      const char* v = std::getenv(kNames[i]);
      had_[i] = v != nullptr;
      if (v) old_[i] = v;
      ::unsetenv(kNames[i]);
    }
  }
  ~EnvGuard() {
    for (int i = 0; i < 2; ++i) {
      if (had_[i])
        ::setenv(kNames[i], old_[i].c_str(), 1);
      else
        ::unsetenv(kNames[i]);
    }
  }

 private:
  static constexpr const char* kNames[2] = {kSilu, kPermute};
  bool had_[2] = {};
  std::string old_[2];
};

template <typename T = void>
T* fake(uintptr_t a) {
  return reinterpret_cast<T*>(a);
}

// A complete, valid call whose pointers are fake: each test breaks exactly one thing.
struct Call {
  moe::MoeProblem p;
  moe::MoeOptions o;
  moe::MoeInputs in;
  moe::MoeWeights w;
  void* out = fake(0x7000);
  void* ws = fake(0x100000);
  size_t ws_bytes = 0;

  Call() {
    p.num_tokens = 33;
    p.hidden = 256;
    p.intermediate = 128;
    p.num_experts = p.num_local_experts = 8;
    p.top_k = 2;
    o.fused_silu_quant = 1;
    o.fused_permute_quant = 0;
    in.hidden = fake(0x1000);
    in.topk_ids = fake<const int32_t>(0x2000);
    in.topk_weights = fake<const float>(0x3000);
    w.w13_hybrid = {fake<const int8_t>(0x4000), fake<const int32_t>(0x4100),
                    fake<const float>(0x4200)};
    w.w2_hybrid = {fake<const int8_t>(0x5000), fake<const int32_t>(0x5100),
                   fake<const float>(0x5200)};
    w.w13_channel = {fake<const int8_t>(0x6000), fake<const float>(0x6100)};
    w.w2_channel = {fake<const int8_t>(0x6200), fake<const float>(0x6300)};
  }
  // The message of the InvalidArgument thrown, or "" (fails the test) when none is.
  std::string error() {
    if (ws_bytes == 0) {
      try {
        ws_bytes = moe::moe_workspace_size(p, o);
      } catch (const moe::InvalidArgument&) {
        ws_bytes = size_t(1) << 40;  // the forward itself must report the problem
      }
    }
    try {
      moe::moe_forward(p, o, in, w, out, ws, ws_bytes, nullptr);
    } catch (const moe::InvalidArgument& e) {
      return e.what();
    } catch (const std::exception& e) {
      return std::string("UNEXPECTED (not InvalidArgument): ") + e.what();
    }
    return "";
  }
};

void expect_error(const std::function<void(Call&)>& breaker, const std::string& arg_name) {
  Call c;
  breaker(c);
  const std::string msg = c.error();
  // moe_forward's own checks, or resolve_moe_options' for the fused switches.
  EXPECT_NE(msg.find("argument '" + arg_name + "'"), std::string::npos)
      << "expected an error naming '" << arg_name << "', got: '" << msg << "'";
}

TEST(RunnerArgs, ProblemValidation) {
  EnvGuard env;
  expect_error([](Call& c) { c.p.num_tokens = 0; }, "num_tokens (M)");
  expect_error([](Call& c) { c.p.num_tokens = -3; }, "num_tokens (M)");
  expect_error([](Call& c) { c.p.num_tokens = int64_t(1) << 31; }, "num_tokens (M)");
  expect_error([](Call& c) { c.p.hidden = 0; }, "hidden (K)");
  expect_error([](Call& c) { c.p.hidden = 264 + 4; }, "hidden (K)");
  expect_error([](Call& c) { c.p.intermediate = 0; }, "intermediate (N)");
  expect_error([](Call& c) { c.p.intermediate = 120; }, "intermediate (N)");
  expect_error([](Call& c) { c.p.num_experts = 0; }, "num_experts (E)");
  expect_error([](Call& c) { c.p.top_k = 0; }, "top_k");
  expect_error([](Call& c) { c.p.top_k = 9; }, "top_k");
  expect_error([](Call& c) { c.p.num_local_experts = 0; }, "num_local_experts");
  expect_error([](Call& c) { c.p.num_local_experts = 9; }, "num_local_experts");
  // Fewer local experts need an expert_map.
  expect_error([](Call& c) { c.p.num_local_experts = 4; }, "num_local_experts");
  expect_error([](Call& c) { c.p.dtype = static_cast<moe::DType>(7); }, "dtype");
  expect_error([](Call& c) { c.p.scheme = static_cast<moe::QuantScheme>(5); }, "scheme");
  expect_error([](Call& c) { c.p.format.block_size = 100; }, "block_size (B)");
  expect_error([](Call& c) { c.p.format.block_size = 48; }, "format.block_size (B)");
  expect_error([](Call& c) { c.p.format.super_group = 0; }, "super_group (S)");
  expect_error([](Call& c) { c.p.format.q_max = 0; }, "q_max");
  expect_error([](Call& c) { c.p.format.q_max = 128; }, "q_max");
  expect_error(
      [](Call& c) {
        c.p.scheme = moe::QuantScheme::kPerToken;
        c.p.hidden = (moe::kPerTokenMaxK / 16 + 1) * 16;
      },
      "hidden (K)");
}

TEST(RunnerArgs, PointerAndWorkspaceValidation) {
  EnvGuard env;
  expect_error([](Call& c) { c.in.hidden = nullptr; }, "in.hidden");
  expect_error([](Call& c) { c.in.topk_ids = nullptr; }, "in.topk_ids");
  expect_error([](Call& c) { c.in.topk_weights = nullptr; }, "in.topk_weights");
  expect_error([](Call& c) { c.w.w13_hybrid.q = nullptr; }, "w.w13_hybrid.q");
  expect_error([](Call& c) { c.w.w13_hybrid.Q = nullptr; }, "w.w13_hybrid.Q");
  expect_error([](Call& c) { c.w.w13_hybrid.F = nullptr; }, "w.w13_hybrid.F");
  expect_error([](Call& c) { c.w.w2_hybrid.q = nullptr; }, "w.w2_hybrid.q");
  expect_error([](Call& c) { c.w.w2_hybrid.Q = nullptr; }, "w.w2_hybrid.Q");
  expect_error([](Call& c) { c.w.w2_hybrid.F = nullptr; }, "w.w2_hybrid.F");
  expect_error(
      [](Call& c) {
        c.p.scheme = moe::QuantScheme::kPerToken;
        c.w.w13_channel.scale = nullptr;
      },
      "w.w13_channel.scale");
  expect_error(
      [](Call& c) {
        c.p.scheme = moe::QuantScheme::kPerToken;
        c.w.w2_channel.q = nullptr;
      },
      "w.w2_channel.q");
  expect_error([](Call& c) { c.out = nullptr; }, "out");
  expect_error([](Call& c) { c.ws = nullptr; }, "workspace");
  expect_error([](Call& c) { c.ws = fake(0x100080); }, "workspace");  // 128-byte aligned only
  expect_error([](Call& c) { c.ws_bytes = moe::moe_workspace_size(c.p, c.o) - 1; },
               "workspace_bytes");
  expect_error([](Call& c) { c.o.fused_silu_quant = 2; }, "fused_silu_quant");
  expect_error([](Call& c) { c.o.gemm1_tile = static_cast<moe::GemmTile>(42); },
               "options.gemm1_tile");
  expect_error([](Call& c) { c.o.gemm2_tile = static_cast<moe::GemmTile>(-1); },
               "options.gemm2_tile");
}

TEST(RunnerArgs, PerTokenSchemeIgnoresHybridWeights) {
  EnvGuard env;
  // Hybrid weight pointers are not needed by the per-token scheme: the first error must be a
  // different one (here the workspace), proving the null hybrid pointers passed validation.
  Call c;
  c.p.scheme = moe::QuantScheme::kPerToken;
  c.w.w13_hybrid = {};
  c.w.w2_hybrid = {};
  c.ws = nullptr;
  EXPECT_NE(c.error().find("argument 'workspace'"), std::string::npos);
}

TEST(RunnerOptions, EnvironmentResolution) {
  EnvGuard env;
  moe::ResolvedMoeOptions r = moe::resolve_moe_options({});
  EXPECT_TRUE(r.fused_silu_quant);      // default 1
  EXPECT_FALSE(r.fused_permute_quant);  // default 0

  ::setenv(kSilu, "0", 1);
  ::setenv(kPermute, "1", 1);
  r = moe::resolve_moe_options({});
  EXPECT_FALSE(r.fused_silu_quant);
  EXPECT_TRUE(r.fused_permute_quant);

  // Explicit options override the environment.
  moe::MoeOptions o;
  o.fused_silu_quant = 1;
  o.fused_permute_quant = 0;
  r = moe::resolve_moe_options(o);
  EXPECT_TRUE(r.fused_silu_quant);
  EXPECT_FALSE(r.fused_permute_quant);

  for (const char* bad : {"2", "", "true", "yes", " 1", "01", "-1"}) {
    ::setenv(kSilu, bad, 1);
    try {
      moe::resolve_moe_options({});
      ADD_FAILURE() << "accepted " << kSilu << "='" << bad << "'";
    } catch (const moe::InvalidArgument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(kSilu), std::string::npos) << m;
      EXPECT_NE(m.find("\"0\" or \"1\""), std::string::npos) << m;
    }
    // An explicit option does not read the (bad) variable.
    EXPECT_NO_THROW(moe::resolve_moe_options(o));
  }
  ::unsetenv(kSilu);
  ::setenv(kPermute, "on", 1);
  EXPECT_THROW(moe::resolve_moe_options({}), moe::InvalidArgument);
  o.fused_permute_quant = 3;
  EXPECT_THROW(moe::resolve_moe_options(o), moe::InvalidArgument);
}

TEST(RunnerOptions, BadEnvironmentFailsTheForwardBeforeAnyLaunch) {
  EnvGuard env;
  ::setenv(kPermute, "maybe", 1);
  Call c;
  c.o = moe::MoeOptions{};
  c.ws_bytes = size_t(1) << 40;
  try {
    moe::moe_forward(c.p, c.o, c.in, c.w, c.out, c.ws, c.ws_bytes, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const moe::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(kPermute), std::string::npos);
  }
}

TEST(RunnerNames, StagesAndSchemes) {
  const char* expected[] = {"permute", "quant", "gemm1", "act_quant", "gemm2", "unpermute"};
  for (int s = 0; s < moe::kNumMoeStages; ++s) EXPECT_STREQ(moe::moe_stage_name(s), expected[s]);
  EXPECT_STREQ(moe::moe_stage_name(moe::kNumMoeStages), "unknown");
  EXPECT_STREQ(moe::moe_stage_name(-1), "unknown");
  EXPECT_STREQ(moe::quant_scheme_name(moe::QuantScheme::kHybrid), "hybrid");
  EXPECT_STREQ(moe::quant_scheme_name(moe::QuantScheme::kPerToken), "per-token");
}

TEST(RunnerBuildInfo, Filled) {
  const moe::BuildInfo b = moe::build_info();
  ASSERT_NE(b.cuda_archs, nullptr);
  ASSERT_NE(b.cutlass_version, nullptr);
  EXPECT_STRNE(b.cuda_archs, "");
  EXPECT_GT(b.cuda_version, 0);
}

}  // namespace
