// CPU tests of the benchmark CLI (tools/bench_cli.h) and of the runner's workspace arithmetic.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "int8_hybrid_moe/moe.h"
#include "../../csrc/runner/workspace_layout.h"
#include "bench_cli.h"

namespace {

using namespace i8h_bench;
using int8_hybrid_moe::DType;

BenchArgs parse(std::vector<std::string> v) {
  return parse_bench_args(v);
}

// The CliError message of parsing `v` ("" when it parses).
std::string error_of(std::vector<std::string> v) {
  try {
    parse(v);
  } catch (const CliError& e) {
    return e.what();
  }
  return "";
}

TEST(BenchCli, Defaults) {
  const BenchArgs a = parse({});
  EXPECT_EQ(a.num_tokens, 8192);
  EXPECT_EQ(a.hidden, 2048);
  EXPECT_EQ(a.intermediate, 512);
  EXPECT_EQ(a.num_experts, 256);
  EXPECT_EQ(a.top_k, 8);
  EXPECT_EQ(a.dtype, DType::kBFloat16);
  EXPECT_EQ(a.quant_block_size, 128);
  EXPECT_EQ(a.super_group_size, 256);
  EXPECT_EQ(a.q_max, 16);
  EXPECT_EQ(a.warmup, 10);
  EXPECT_EQ(a.iters, 50);
  EXPECT_FALSE(a.profile);
  EXPECT_EQ(a.seed, 0u);
  EXPECT_EQ(a.routing, RoutingKind::kUniform);
  EXPECT_TRUE(a.check);
  EXPECT_TRUE(a.json_path.empty());
  EXPECT_EQ(a.scheme, SchemeChoice::kBoth);
  EXPECT_FALSE(a.help);
}

TEST(BenchCli, ParsesEveryFlag) {
  const BenchArgs a = parse({"--num-tokens",
                             "33",
                             "--hidden",
                             "256",
                             "--intermediate=128",
                             "--num-experts",
                             "8",
                             "--top-k",
                             "2",
                             "--dtype",
                             "float16",
                             "--quant-block-size",
                             "64",
                             "--super-group-size",
                             "2",
                             "--q-max",
                             "127",
                             "--warmup",
                             "0",
                             "--iters",
                             "3",
                             "--profile",
                             "--seed",
                             "18446744073709551615",
                             "--routing",
                             "zipf",
                             "--no-check",
                             "--json",
                             "/tmp/x.json",
                             "--scheme",
                             "per-token",
                             "--check-tokens",
                             "5"});
  EXPECT_EQ(a.num_tokens, 33);
  EXPECT_EQ(a.hidden, 256);
  EXPECT_EQ(a.intermediate, 128);
  EXPECT_EQ(a.num_experts, 8);
  EXPECT_EQ(a.top_k, 2);
  EXPECT_EQ(a.dtype, DType::kFloat16);
  EXPECT_EQ(a.quant_block_size, 64);
  EXPECT_EQ(a.super_group_size, 2);
  EXPECT_EQ(a.q_max, 127);
  EXPECT_EQ(a.warmup, 0);
  EXPECT_EQ(a.iters, 3);
  EXPECT_TRUE(a.profile);
  EXPECT_EQ(a.seed, 18446744073709551615ull);
  EXPECT_EQ(a.routing, RoutingKind::kZipf);
  EXPECT_FALSE(a.check);
  EXPECT_EQ(a.json_path, "/tmp/x.json");
  EXPECT_EQ(a.scheme, SchemeChoice::kPerToken);
  EXPECT_EQ(a.check_tokens, 5);
  EXPECT_EQ(parse({"--scheme", "hybrid"}).scheme, SchemeChoice::kHybrid);
  EXPECT_EQ(parse({"--scheme", "both"}).scheme, SchemeChoice::kBoth);
  EXPECT_EQ(parse({"--dtype", "bfloat16"}).dtype, DType::kBFloat16);
}

TEST(BenchCli, ValidationErrorsNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string must_contain;
  };
  const std::vector<Case> cases = {
      {{"--bogus"}, "unknown argument '--bogus'"},
      {{"extra"}, "unknown argument 'extra'"},
      {{"--num-tokens", "0"}, "--num-tokens"},
      {{"--num-tokens", "-5"}, "--num-tokens"},
      {{"--hidden", "0"}, "--hidden"},
      {{"--hidden", "100"}, "--hidden: must be a positive multiple of 16"},
      {{"--intermediate", "0"}, "--intermediate"},
      {{"--intermediate", "24"}, "--intermediate: must be a positive multiple of 16"},
      {{"--num-experts", "0"}, "--num-experts"},
      {{"--top-k", "0"}, "--top-k"},
      {{"--top-k", "9", "--num-experts", "8"}, "--top-k: must be <= --num-experts (8)"},
      {{"--q-max", "0"}, "--q-max: must be in [1, 127]"},
      {{"--q-max", "128"}, "--q-max: must be in [1, 127]"},
      {{"--quant-block-size", "100"}, "--quant-block-size: must be a positive multiple of 64"},
      {{"--quant-block-size", "32"}, "--quant-block-size: must be a positive multiple of 64"},
      {{"--quant-block-size", "0"}, "--quant-block-size"},
      {{"--super-group-size", "0"}, "--super-group-size"},
      {{"--warmup", "-1"}, "--warmup"},
      {{"--iters", "0"}, "--iters"},
      {{"--check-tokens", "0"}, "--check-tokens"},
      {{"--dtype", "fp32"}, "--dtype: must be bfloat16 or float16"},
      {{"--routing", "normal"}, "--routing: must be uniform or zipf"},
      {{"--scheme", "fp8"}, "--scheme: must be hybrid, per-token or both"},
      {{"--num-tokens"}, "--num-tokens: missing value"},
      {{"--json"}, "--json: missing value"},
      {{"--seed"}, "--seed: missing value"},
      {{"--hidden", "12x"}, "--hidden: expected an integer, got '12x'"},
      {{"--seed", "-1"}, "--seed"},
      {{"--num-experts", "99999999999"}, "--num-experts"},
      {{"--profile=1"}, "--profile: takes no value"},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of(c.args);
    EXPECT_NE(msg.find(c.must_contain), std::string::npos)
        << "args[0]=" << c.args[0] << " message: '" << msg << "'";
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one-line message expected: " << msg;
  }
}

TEST(BenchCli, HelpListsEverythingWithDefaults) {
  EXPECT_TRUE(parse({"--help"}).help);
  EXPECT_TRUE(parse({"--bogus", "--help"}).help);
  const std::string h = bench_help();
  for (const char* s : {"--num-tokens",
                        "8192",
                        "--hidden",
                        "2048",
                        "--intermediate",
                        "512",
                        "--num-experts",
                        "256",
                        "--top-k",
                        "--dtype",
                        "bfloat16|float16",
                        "--quant-block-size",
                        "128",
                        "--super-group-size",
                        "--q-max",
                        "16",
                        "--warmup",
                        "10",
                        "--iters",
                        "50",
                        "--profile",
                        "--seed",
                        "--routing",
                        "uniform|zipf",
                        "--no-check",
                        "--json",
                        "--scheme",
                        "hybrid|per-token|both",
                        "--help",
                        "VLLM_INT8_HYBRID_FUSED_SILU_QUANT",
                        "VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT",
                        "2 ulp",
                        "1e-3 * rms(ref)",
                        "99.9%",
                        "one token row",
                        "5e-2 * rms(ref)",
                        "relative L2",
                        "8e-3 * max row norm / norm(ref)",
                        "Exit code 2"})
    EXPECT_NE(h.find(s), std::string::npos) << "help lacks " << s;
}

TEST(BenchCli, DeterministicInputs) {
  std::vector<uint16_t> a(3000), b(3000), c(3000);
  fill_normal(a.data(), a.size(), DType::kBFloat16, 1.0f, 7, kStreamHidden);
  fill_normal(b.data(), b.size(), DType::kBFloat16, 1.0f, 7, kStreamHidden);
  fill_normal(c.data(), c.size(), DType::kBFloat16, 1.0f, 8, kStreamHidden);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Roughly N(0, 1).
  double s = 0, ss = 0;
  for (int i = 0; i < 100000; ++i) {
    const double v = normal_at(1, 2, i);
    s += v;
    ss += v * v;
  }
  EXPECT_NEAR(s / 1e5, 0.0, 0.02);
  EXPECT_NEAR(ss / 1e5, 1.0, 0.03);

  for (RoutingKind k : {RoutingKind::kUniform, RoutingKind::kZipf}) {
    const RoutingData r1 = make_routing(50, 16, 4, k, 3), r2 = make_routing(50, 16, 4, k, 3);
    EXPECT_EQ(r1.ids, r2.ids);
    EXPECT_EQ(r1.weights, r2.weights);
    for (int t = 0; t < 50; ++t) {
      std::set<int> ids;
      float sum = 0;
      for (int j = 0; j < 4; ++j) {
        const int id = r1.ids[t * 4 + j];
        EXPECT_GE(id, 0);
        EXPECT_LT(id, 16);
        ids.insert(id);
        sum += r1.weights[t * 4 + j];
        if (j > 0) {
          EXPECT_LE(r1.weights[t * 4 + j], r1.weights[t * 4 + j - 1]);
        }
      }
      EXPECT_EQ(ids.size(), 4u);
      EXPECT_NEAR(sum, 1.0f, 1e-5f);
    }
  }
  // Zipf: the most popular expert gets clearly more than the uniform share.
  const RoutingData z = make_routing(4000, 64, 1, RoutingKind::kZipf, 0);
  std::vector<int> count(64, 0);
  for (int id : z.ids) ++count[id];
  int mx = 0;
  for (int c2 : count) mx = std::max(mx, c2);
  EXPECT_GT(mx, 4 * 4000 / 64);

  const auto t = sample_tokens(8192, 64);
  ASSERT_EQ(t.size(), 64u);
  EXPECT_EQ(t.front(), 0);
  EXPECT_EQ(t.back(), 8191);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_LT(t[i - 1], t[i]);
  EXPECT_EQ(sample_tokens(3, 64), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(sample_tokens(1, 64), (std::vector<int64_t>{0}));
}

TEST(BenchCli, AgreementCriterion) {
  EXPECT_EQ(dtype_ulp(1.0, DType::kBFloat16), std::ldexp(1.0, -7));
  EXPECT_EQ(dtype_ulp(1.5, DType::kFloat16), std::ldexp(1.0, -10));
  EXPECT_EQ(dtype_ulp(-3.0, DType::kBFloat16), std::ldexp(1.0, -6));
  EXPECT_EQ(dtype_ulp(0.0, DType::kFloat16), std::ldexp(1.0, -24));
  EXPECT_EQ(dtype_ulp(1e-30, DType::kFloat16), std::ldexp(1.0, -24));

  // Without a row length (no row allowance), a single element outside the tight bound fails (1).
  std::vector<float> ref = {1.0f, -2.0f, 0.5f, 0.0f};
  std::vector<float> got = ref;
  EXPECT_TRUE(check_agreement(got, ref, DType::kBFloat16).agree);
  got[0] = 1.0f + 2 * 0.0078125f;  // exactly 2 ulp: inside the tight bound
  EXPECT_EQ(check_agreement(got, ref, DType::kBFloat16).num_bad, 0);
  // ... though 2 ulp on one of 4 elements is a relative L2 of 6.8e-3: condition (3) fails.
  EXPECT_FALSE(check_agreement(got, ref, DType::kBFloat16).rel_l2_ok);
  got[0] = 1.0f + 4 * 0.0078125f;  // 4 ulp (> 2 ulp + 1e-3 rms): outside tight
  const Agreement g = check_agreement(got, ref, DType::kBFloat16);
  EXPECT_FALSE(g.agree);
  EXPECT_FALSE(g.tight_ok);
  EXPECT_EQ(g.num_bad, 1);
  EXPECT_EQ(g.allowed_outside_tight, 0);
  EXPECT_EQ(g.first_bad, 0);
  EXPECT_GT(g.worst_err_over_tol, 1.0);
  got = ref;
  got[3] = std::nanf("");
  const Agreement n = check_agreement(got, ref, DType::kBFloat16);
  EXPECT_FALSE(n.agree);
  EXPECT_FALSE(n.loose_ok);
  EXPECT_EQ(n.num_outside_loose, 1);
  EXPECT_FALSE(check_agreement({1.0f}, ref, DType::kBFloat16).agree);  // size mismatch
}

// Condition (3) on 8 token rows of 16 elements, row 0 ten times the others (norm 40 against 4).
// Its limit scales with the largest row: 8e-3 * 40 / ||ref|| (the equal-rows form 8e-3 / sqrt(8)
// would be 2.5x tighter). The row with the largest error is left out of the sum, so a whole row
// moved by many steps (a re-quantized block or super group of one token's intermediate) passes
// while (1) and (2) hold; the error of every other row counts.
TEST(BenchCli, AgreementRelL2FollowsTheLargestRowAndLeavesOutTheWorst) {
  constexpr int64_t kRow = 16, kTokens = 8;
  std::vector<float> ref(kRow * kTokens, 1.0f);
  for (int64_t k = 0; k < kRow; ++k) ref[size_t(k)] = 10.0f;
  const double norm = std::sqrt(16 * 100.0 + 7 * 16.0);
  auto shift_row = [&](std::vector<float>& v, int64_t row, float by) {
    for (int64_t k = 0; k < kRow; ++k) v[size_t(row * kRow + k)] += by;
  };
  // Row 0 moved by 0.14 per element (outside tight, inside loose): left out, relative L2 0.
  std::vector<float> got = ref;
  shift_row(got, 0, 0.14f);
  Agreement a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_NEAR(a.rel_l2_limit, 8e-3 * 40.0 / norm, 1e-12);
  EXPECT_EQ(a.rel_l2, 0.0);
  EXPECT_TRUE(a.agree) << describe_agreement(a);
  // A second row's error counts: row 2 by 0.07 (0.28 / ||ref||, inside the limit 0.32 /
  // ||ref||), then by 0.1 (0.4 / ||ref||: outside). Row 2 also fails (1) then: two rows outside
  // tight.
  shift_row(got, 2, 0.07f);
  a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_NEAR(a.rel_l2, 0.07 * 4.0 / norm, 1e-6);
  EXPECT_TRUE(a.rel_l2_ok) << describe_agreement(a);
  EXPECT_FALSE(a.tight_ok);
  shift_row(got, 2, 0.03f);
  a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_NEAR(a.rel_l2, 0.1 * 4.0 / norm, 1e-6);
  EXPECT_FALSE(a.rel_l2_ok) << describe_agreement(a);
  EXPECT_FALSE(a.agree);
  // The left-out row is the one with the largest error, not the largest norm: row 0 by 0.05
  // (error 0.2), row 2 by 0.1 (error 0.4): row 0's error counts.
  got = ref;
  shift_row(got, 0, 0.05f);
  shift_row(got, 2, 0.1f);
  a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_NEAR(a.rel_l2, 0.05 * 4.0 / norm, 1e-6);
  // Without a row length nothing is left out.
  a = check_agreement(got, ref, DType::kBFloat16);
  EXPECT_NEAR(a.rel_l2, std::sqrt(16 * (0.05 * 0.05 + 0.1 * 0.1)) / norm, 1e-6);
  // A non-finite element fails (3) as well as (2), also in the row that would be left out.
  got = ref;
  got[3] = std::numeric_limits<float>::infinity();
  a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_FALSE(a.rel_l2_ok);
  EXPECT_FALSE(a.loose_ok);
}

TEST(BenchCli, AgreementCriterionConditions) {
  constexpr int64_t kRow = 16, kTokens = 8;
  std::vector<float> ref(kRow * kTokens, 1.0f);
  for (int64_t k = 0; k < kRow; ++k) ref[3 * kRow + k] = 0.01f;
  const double rms = std::sqrt((7 * 16 * 1.0 + 16 * 1e-4) / 128.0);
  // One re-quantized row: every element of row 3 off by 0.004 (4x the tight bound of a small
  // element, well inside the loose one); the row moves by 0.4 of its own norm but the whole
  // sample by 1.5e-3 < 8e-3 * (largest row norm 4) / ||ref||.
  std::vector<float> got = ref;
  for (int64_t k = 0; k < kRow; ++k) got[3 * kRow + k] += 0.004f;
  Agreement a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_TRUE(a.agree) << describe_agreement(a);
  EXPECT_EQ(a.num_bad, kRow);
  EXPECT_EQ(a.allowed_outside_tight, kRow);  // max(floor(0.001 * 128), one row)
  EXPECT_NEAR(a.rms_ref, rms, 1e-6);
  EXPECT_NEAR(a.rel_l2_limit, 8e-3 * 4.0 / std::sqrt(7 * 16 + 16 * 1e-4), 1e-12);
  EXPECT_LT(a.worst_err_over_loose, 1.0);
  EXPECT_NE(describe_agreement(a).find("16/128 outside tight"), std::string::npos)
      << describe_agreement(a);
  // The same without the row allowance: condition (1) fails.
  a = check_agreement(got, ref, DType::kBFloat16);
  EXPECT_FALSE(a.agree);
  EXPECT_FALSE(a.tight_ok);
  EXPECT_TRUE(a.loose_ok);
  // (1): one element more than a row outside the tight bound.
  got[0] += 0.03f;
  a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_FALSE(a.agree);
  EXPECT_FALSE(a.tight_ok);
  EXPECT_EQ(a.num_bad, kRow + 1);
  // (2): one element beyond 4 ulp + 5e-2 rms fails even though it is alone.
  got = ref;
  got[5] = 1.0f + static_cast<float>(4 * 0.0078125 + 5e-2 * rms) + 0.01f;
  a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_FALSE(a.agree);
  EXPECT_TRUE(a.tight_ok);
  EXPECT_FALSE(a.loose_ok);
  EXPECT_EQ(a.worst_loose, 5);
  EXPECT_GT(a.worst_err_over_loose, 1.0);
  // (3): every element 0.009 off (inside the tight bound 2 ulp = 0.0156): a systematic bias.
  got = ref;
  for (int64_t i = 0; i < kRow * kTokens; ++i)
    if (ref[size_t(i)] == 1.0f) got[size_t(i)] = 1.0f + 0.0078125f;
  a = check_agreement(got, ref, DType::kBFloat16, kRow);
  EXPECT_EQ(a.num_bad, 0);
  EXPECT_TRUE(a.loose_ok);
  EXPECT_FALSE(a.rel_l2_ok);
  EXPECT_FALSE(a.agree);
  // (the rows of 1.0 all err alike: one of the 7 is left out, the other 6 count)
  EXPECT_NEAR(a.rel_l2, 0.0078125 * std::sqrt(96.0 / (112.0 + 16 * 1e-4)), 1e-6);
  // 0.1% of the elements when that is more than one row: 2000 rows of 1 element.
  std::vector<float> big(2000, 1.0f), big_got = big;
  big_got[7] = big_got[8] = 1.0f + 3 * 0.0078125f;
  a = check_agreement(big_got, big, DType::kBFloat16, 1);
  EXPECT_EQ(a.allowed_outside_tight, 2);
  EXPECT_TRUE(a.tight_ok);
  EXPECT_TRUE(a.agree) << describe_agreement(a);
  big_got[9] = big_got[7];
  EXPECT_FALSE(check_agreement(big_got, big, DType::kBFloat16, 1).tight_ok);

  EXPECT_DOUBLE_EQ(rel_l2({1.0f, 0.0f}, {1.0, 0.0}), 0.0);
  EXPECT_NEAR(rel_l2({1.1f, 0.0f}, {1.0, 0.0}), 0.1, 1e-6);
}

TEST(BenchCli, TimingStatsAndFigures) {
  const TimingStats s = summarize_times({5, 1, 4, 2, 3});
  EXPECT_DOUBLE_EQ(s.median_ms, 3);
  EXPECT_NEAR(s.p10_ms, 1.4, 1e-6);
  EXPECT_NEAR(s.p90_ms, 4.6, 1e-6);
  EXPECT_EQ(s.samples, 5);
  EXPECT_DOUBLE_EQ(summarize_times({1, 2}).median_ms, 1.5);

  EXPECT_DOUBLE_EQ(gemm1_ops(10, 64, 32), 2.0 * 10 * 64 * 64);
  EXPECT_DOUBLE_EQ(gemm2_ops(10, 64, 32), 2.0 * 10 * 64 * 32);

  EXPECT_EQ(int8_dense_peak(9, 0, "NVIDIA H100 80GB HBM3").tops, 1979);
  EXPECT_EQ(int8_dense_peak(9, 0, "NVIDIA H200").tops, 1979);
  EXPECT_EQ(int8_dense_peak(8, 0, "NVIDIA A100-SXM4-80GB").tops, 624);
  EXPECT_EQ(int8_dense_peak(8, 9, "NVIDIA L40").tops, 362);
  EXPECT_EQ(int8_dense_peak(8, 9, "NVIDIA GeForce RTX 4090").tops, 660);
  const PeakInt8 unknown = int8_dense_peak(8, 6, "NVIDIA A10");
  EXPECT_FALSE(unknown.known);
  EXPECT_NE(unknown.card.find("n/a"), std::string::npos);

  TrafficInputs ti;
  ti.path = PathKind::kInt8Hybrid;
  ti.M = 4;
  ti.K = 256;
  ti.N = 128;
  ti.top_k = 2;
  ti.rows_kept = 8;
  ti.active_experts = 2;
  ti.block_size = 128;
  ti.super_group = 256;
  ti.fused_silu_quant = true;
  ti.fused_permute_quant = true;
  const double fused = total_bytes(count_traffic(ti));
  // hidden + out + routing + weights (q + Q + F) + A1 + C1 + A2 + C2.
  const double expect = 4 * 256 * 2 * 2 + 4 * 2 * 8 +
                        (2 * 3.0 * 128 * 256 + 2 * (256 * (2 + 1) + 256 * (1 + 1)) * 4.0) +
                        2 * 8 * (256 + 8 + 4) + 2 * 8 * 256 * 2 + 2 * 8 * (128 + 4 + 4) +
                        2 * 8 * 256 * 2;
  EXPECT_DOUBLE_EQ(fused, expect);
  ti.fused_silu_quant = false;
  ti.fused_permute_quant = true;
  EXPECT_DOUBLE_EQ(total_bytes(count_traffic(ti)), expect + 2 * 8 * 128 * 2);
  ti.fused_permute_quant = false;
  EXPECT_DOUBLE_EQ(total_bytes(count_traffic(ti)), expect + 2 * 8 * 128 * 2 + 2 * 8 * 256 * 2);

  PathResult r;
  r.kind = PathKind::kInt8Hybrid;
  r.time.median_ms = 2.0;
  r.gemm1_ops = 2e12;
  r.gemm2_ops = 1e12;
  r.gemm1_ms = 1.0;
  r.gemm2_ms = 0.5;
  r.traffic = {{"x", 4e9}};
  PeakInt8 peak;
  peak.known = true;
  peak.tops = 1500;
  derive_figures(r, peak, 2000);
  EXPECT_DOUBLE_EQ(r.tops, 1500);
  EXPECT_DOUBLE_EQ(r.pct_peak_int8, 100);
  EXPECT_DOUBLE_EQ(r.gemm1_tops, 2000);
  EXPECT_DOUBLE_EQ(r.gemm2_tops, 2000);
  EXPECT_DOUBLE_EQ(r.gbps, 2000);
  EXPECT_DOUBLE_EQ(r.pct_copy_bw, 100);
}

// ---- a tiny JSON reader: flattens to "a.b[0].c" -> raw scalar text; throws on bad syntax -----
class JsonFlat {
 public:
  explicit JsonFlat(const std::string& s) : s_(s) {
    value("");
    ws();
    if (i_ != s_.size()) throw std::runtime_error("trailing characters");
  }
  std::map<std::string, std::string> items;

 private:
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  char peek() {
    ws();
    if (i_ >= s_.size()) throw std::runtime_error("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c)
      throw std::runtime_error(std::string("expected ") + c + " at " + std::to_string(i_));
    ++i_;
  }
  std::string str() {
    expect('"');
    std::string o;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\') {
        ++i_;
        if (i_ >= s_.size()) throw std::runtime_error("bad escape");
        const char e = s_[i_];
        if (e == 'u') {
          o += '?';
          i_ += 4;
        } else {
          o += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        }
        ++i_;
      } else {
        o += s_[i_++];
      }
    }
    expect('"');
    return o;
  }
  void value(const std::string& path) {
    const char c = peek();
    if (c == '{') {
      ++i_;
      if (peek() == '}') {
        ++i_;
        return;
      }
      for (;;) {
        const std::string k = str();
        expect(':');
        value(path.empty() ? k : path + "." + k);
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return;
      }
    }
    if (c == '[') {
      ++i_;
      if (peek() == ']') {
        ++i_;
        return;
      }
      for (int n = 0;; ++n) {
        value(path + "[" + std::to_string(n) + "]");
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return;
      }
    }
    if (c == '"') {
      items[path] = str();
      return;
    }
    const size_t b = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' ||
                              s_[i_] == '-' || s_[i_] == '+'))
      ++i_;
    const std::string tok = s_.substr(b, i_ - b);
    if (tok.empty()) throw std::runtime_error("bad value at " + std::to_string(b));
    if (tok != "true" && tok != "false" && tok != "null") {
      size_t used = 0;
      std::stod(tok, &used);
      if (used != tok.size()) throw std::runtime_error("bad number " + tok);
    }
    items[path] = tok;
  }
  const std::string& s_;
  size_t i_ = 0;
};

BenchReport sample_report() {
  BenchReport r;
  r.args = parse({"--num-tokens", "64", "--json", "out \"q\".json"});
  r.device.name = "NVIDIA H100 80GB HBM3";
  r.device.sm_major = 9;
  r.device.num_sms = 132;
  r.build.cuda_archs = "900";
  r.build.cutlass_version = "4.2.0";
  r.peak = int8_dense_peak(9, 0, r.device.name);
  r.copy_gbps = 2900;
  r.copy_bytes = 1 << 30;
  r.timing_method = "events\twith a tab";
  r.rows_total = r.rows_kept = 512;
  r.active_experts = 200;
  PathResult p;
  p.name = "int8 hybrid";
  p.role = "measured";
  p.time = summarize_times({1.0f, 1.1f, 1.2f});
  p.stage_median_ms = {{"permute", 0.1}, {"gemm1", 0.5}};
  p.gemm1_ops = 1e9;
  p.gemm2_ops = 5e8;
  p.traffic = {{"hidden in [M,K]", 1e6}};
  p.check.ran = true;
  p.check.has_agreement = true;
  p.check.reference = "ref::moe_forward_hybrid";
  p.check.tokens = 64;
  p.check.rel_l2_vs_float = 0.01;
  derive_figures(p, r.peak, r.copy_gbps);
  p.card = i8h_tools::summarize_card_samples({{1755, i8h_tools::kClockLimitSwPowerCap}, {1650, 0}},
                                             1980);
  PathResult d;
  d.name = "cublas bfloat16";
  d.role = "baseline (b)";
  d.kind = PathKind::kDenseCublas;
  d.time = summarize_times({2.0f});
  d.gemm1_ops = 1e9;
  derive_figures(d, r.peak, r.copy_gbps);
  d.card.why_unknown = "libnvidia-ml.so.1 not found";
  r.paths = {p, d};
  r.notes = {"a note"};
  return r;
}

TEST(BenchCli, JsonParsesBackWithEveryFigure) {
  const BenchReport r = sample_report();
  const std::string js = report_json(r);
  JsonFlat f(js);
  for (const char* k : {"args.num_tokens",
                        "args.hidden",
                        "args.intermediate",
                        "args.num_experts",
                        "args.top_k",
                        "args.dtype",
                        "args.quant_block_size",
                        "args.super_group_size",
                        "args.q_max",
                        "args.warmup",
                        "args.iters",
                        "args.profile",
                        "args.seed",
                        "args.routing",
                        "args.scheme",
                        "args.json",
                        "options.fused_silu_quant",
                        "options.fused_permute_quant",
                        "device.name",
                        "device.sm",
                        "build.cuda_archs",
                        "build.cutlass_version",
                        "peak.int8_dense_tops",
                        "peak.card",
                        "peak.copy_gbps",
                        "timing_method",
                        "rows_kept",
                        "agreement_criterion",
                        "paths[0].median_ms",
                        "paths[0].p10_ms",
                        "paths[0].p90_ms",
                        "paths[0].tops",
                        "paths[0].gemm1_tops",
                        "paths[0].gbps",
                        "paths[0].pct_peak_int8",
                        "paths[0].pct_copy_bw",
                        "paths[0].stage_median_ms.gemm1",
                        "paths[0].check.agree",
                        "paths[0].check.max_abs_err",
                        "paths[0].check.rel_l2_vs_float",
                        "paths[1].name",
                        "paths[1].pct_peak_int8",
                        "notes[0]",
                        "agreement_ok"})
    EXPECT_TRUE(f.items.count(k)) << "JSON lacks " << k << "\n" << js;
  EXPECT_EQ(f.items["args.num_tokens"], "64");
  // The card's state: every figure for a sampled path, the reason for an unsampled one.
  EXPECT_EQ(f.items["paths[0].card.known"], "true");
  EXPECT_EQ(f.items["paths[0].card.samples"], "2");
  EXPECT_EQ(f.items["paths[0].card.sm_mhz_min"], "1650");
  EXPECT_EQ(f.items["paths[0].card.sm_mhz_max"], "1755");
  EXPECT_EQ(f.items["paths[0].card.sm_mhz_card_max"], "1980");
  EXPECT_EQ(f.items["paths[0].card.clock_limits"], "sw-power-cap");
  EXPECT_EQ(f.items["paths[1].card.known"], "false");
  EXPECT_EQ(f.items["paths[1].card.why_unknown"], "libnvidia-ml.so.1 not found");
  EXPECT_FALSE(f.items.count("paths[1].card.sm_mhz_median"));
  EXPECT_EQ(f.items["args.json"], "out \"q\".json");
  EXPECT_EQ(f.items["device.name"], "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(f.items["timing_method"], "events\twith a tab");
  EXPECT_EQ(f.items["paths[1].pct_peak_int8"], "null");  // dense path: no INT8 peak
  EXPECT_EQ(f.items["peak.int8_dense_tops"], "1979");
  EXPECT_NEAR(std::stod(f.items["paths[0].median_ms"]), 1.1, 1e-6);

  // Through a file too.
  const std::string path = ::testing::TempDir() + "bench_cli_test.json";
  write_text_file(path, js);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), js);
  std::remove(path.c_str());
  EXPECT_THROW(write_text_file("/nonexistent-dir/x.json", js), CliError);
}

TEST(BenchCli, ReportText) {
  const std::string t = format_report(sample_report());
  for (const char* s : {"NVIDIA H100 80GB HBM3",
                        "H100 SXM",
                        "int8 hybrid",
                        "cublas bfloat16",
                        "median ms",
                        "p10",
                        "p90",
                        "TOPS",
                        "%peak",
                        "GB/s",
                        "%copy",
                        "gemm1",
                        "criterion",
                        "rel-L2",
                        "bytes counted",
                        "a note",
                        "CUTLASS 4.2.0",
                        "SM MHz",
                        "1755 (1650)",
                        "sw-power-cap",
                        "card maximum 1980 MHz",
                        "card not sampled: libnvidia-ml.so.1 not found"})
    EXPECT_NE(t.find(s), std::string::npos) << "report lacks " << s << "\n" << t;
  BenchReport bad = sample_report();
  bad.peak = int8_dense_peak(8, 6, "NVIDIA A10");
  EXPECT_NE(format_report(bad).find("n/a"), std::string::npos);
}

// ---- workspace arithmetic of the runner (host only) ----------------------------------------
namespace moe = int8_hybrid_moe;

moe::MoeProblem problem(int64_t M, moe::QuantScheme s = moe::QuantScheme::kHybrid) {
  moe::MoeProblem p;
  p.num_tokens = M;
  p.hidden = 2048;
  p.intermediate = 512;
  p.num_experts = p.num_local_experts = 64;
  p.top_k = 8;
  p.scheme = s;
  return p;
}
moe::MoeOptions opts(int silu, int permute) {
  moe::MoeOptions o;
  o.fused_silu_quant = silu;
  o.fused_permute_quant = permute;
  return o;
}

TEST(RunnerWorkspace, MonotoneInTokensAndAligned) {
  for (auto s : {moe::QuantScheme::kHybrid, moe::QuantScheme::kPerToken})
    for (int silu : {0, 1})
      for (int perm : {0, 1}) {
        size_t prev = 0;
        for (int64_t M : {1, 2, 3, 17, 64, 100, 1000, 8192}) {
          const size_t w = moe::moe_workspace_size(problem(M, s), opts(silu, perm));
          EXPECT_GE(w, prev) << "M=" << M;
          EXPECT_EQ(w % 256, 0u);
          prev = w;
        }
      }
}

TEST(RunnerWorkspace, CoversTheLiveBuffers) {
  // Lower bound: at any time the maps, and at gemm2 the quantized A2 plus C2, must coexist; the
  // biggest single phase is C2 / permuted_hidden [R, K] in dtype.
  const int64_t M = 1000, R = M * 8, K = 2048, N = 512;
  for (int silu : {0, 1})
    for (int perm : {0, 1}) {
      const size_t w = moe::moe_workspace_size(problem(M), opts(silu, perm));
      EXPECT_GE(w, static_cast<size_t>(R * 8 + R * N + R * K * 2)) << silu << perm;
    }
}

TEST(RunnerWorkspace, FusedPermuteNeedsNoPermutedHidden) {
  namespace d = moe::detail;
  for (int silu : {0, 1}) {
    const d::WorkspaceLayout fused = d::plan_workspace(problem(1000), {silu == 1, true});
    const d::WorkspaceLayout unfused = d::plan_workspace(problem(1000), {silu == 1, false});
    EXPECT_EQ(fused.bytes[d::kWsPermutedHidden], 0u);
    EXPECT_EQ(unfused.bytes[d::kWsPermutedHidden], 1000u * 8 * 2048 * 2);
    EXPECT_LE(fused.total, unfused.total);
    EXPECT_EQ(fused.bytes[d::kWsAct], 0u + (silu ? 0 : 1000u * 8 * 512 * 2));
  }
}

// Pieces whose lifetimes overlap never share bytes; every piece is aligned and inside the total.
TEST(RunnerWorkspace, LayoutHasNoLiveOverlap) {
  namespace d = moe::detail;
  for (auto s : {moe::QuantScheme::kHybrid, moe::QuantScheme::kPerToken})
    for (bool silu : {false, true})
      for (bool perm : {false, true})
        for (int64_t M : {1, 37, 1000}) {
          const moe::MoeProblem p = problem(M, s);
          const d::WorkspaceLayout l = d::plan_workspace(p, {silu, perm});
          EXPECT_EQ(l.total, moe::moe_workspace_size(p, opts(silu, perm)));
          // Steps: 0 permute, 1 quant, 2 gemm1, 3 silu / act_quant, 4 quant of act (unfused),
          // 5 gemm2, 6 unpermute.
          int first[d::kNumWsPieces], last[d::kNumWsPieces];
          auto life = [&](d::WsPiece id, int f, int la) {
            first[id] = f;
            last[id] = la;
          };
          life(d::kWsExpertOffsets, 0, 6);
          life(d::kWsPermutedToTokenSlot, 0, 6);
          life(d::kWsTokenSlotToPermuted, 0, 6);
          life(d::kWsGemm, 2, 5);
          life(d::kWsPermute, 0, 0);
          life(d::kWsPermutedHidden, 0, 1);
          for (auto id : {d::kWsA1q, d::kWsA1Q, d::kWsA1F, d::kWsA1Scale}) life(id, 1, 2);
          life(d::kWsC1, 2, 3);
          life(d::kWsAct, 3, 4);
          for (auto id : {d::kWsA2q, d::kWsA2Q, d::kWsA2F, d::kWsA2Scale})
            life(id, silu ? 3 : 4, 5);
          life(d::kWsC2, 5, 6);
          const bool hybrid = s == moe::QuantScheme::kHybrid;
          EXPECT_EQ(l.bytes[d::kWsA1Q] > 0, hybrid);
          EXPECT_EQ(l.bytes[d::kWsA2F] > 0, hybrid);
          EXPECT_EQ(l.bytes[d::kWsA1Scale] > 0, !hybrid);
          EXPECT_EQ(l.bytes[d::kWsPermutedHidden] > 0, !perm);
          EXPECT_EQ(l.bytes[d::kWsAct] > 0, !silu);
          EXPECT_GT(l.bytes[d::kWsC2], 0u);
          for (int a = 0; a < d::kNumWsPieces; ++a) {
            if (l.bytes[a] == 0) continue;
            EXPECT_EQ(l.offset[a] % 256, 0u) << a;
            EXPECT_LE(l.offset[a] + l.bytes[a], l.total) << a;
            for (int b = a + 1; b < d::kNumWsPieces; ++b) {
              if (l.bytes[b] == 0) continue;
              const bool live_together = first[a] <= last[b] && first[b] <= last[a];
              const bool share =
                  l.offset[a] < l.offset[b] + l.bytes[b] && l.offset[b] < l.offset[a] + l.bytes[a];
              EXPECT_FALSE(live_together && share)
                  << "pieces " << a << " and " << b << " overlap (silu " << silu << ", permute "
                  << perm << ", M " << M << ")";
            }
          }
        }
}

TEST(RunnerWorkspace, OptionsResolvedFromEnvironmentByDefault) {
  ::setenv("VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT", "1", 1);
  const size_t env_fused = moe::moe_workspace_size(problem(100), moe::MoeOptions{});
  ::unsetenv("VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT");
  EXPECT_EQ(env_fused, moe::moe_workspace_size(problem(100), opts(1, 1)));
  EXPECT_EQ(moe::moe_workspace_size(problem(100), moe::MoeOptions{}),
            moe::moe_workspace_size(problem(100), opts(1, 0)));
}

TEST(RunnerWorkspace, RejectsBadProblem) {
  moe::MoeProblem p = problem(0);
  EXPECT_THROW(moe::moe_workspace_size(p, {}), moe::InvalidArgument);
  p = problem(10);
  p.hidden = 100;
  EXPECT_THROW(moe::moe_workspace_size(p, {}), moe::InvalidArgument);
}

}  // namespace
