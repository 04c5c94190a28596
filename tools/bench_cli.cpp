// Host-only parts of bench_int8_hybrid_moe (see bench_cli.h).
#include "bench_cli.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <thread>

#include "int8_hybrid_moe/reference.h"

namespace i8h_bench {

namespace ref = int8_hybrid_moe::ref;

const char* routing_name(RoutingKind r) {
  return r == RoutingKind::kZipf ? "zipf" : "uniform";
}

const char* scheme_choice_name(SchemeChoice s) {
  switch (s) {
    case SchemeChoice::kHybrid:
      return "hybrid";
    case SchemeChoice::kPerToken:
      return "per-token";
    case SchemeChoice::kBoth:
      return "both";
  }
  return "unknown";
}

const char* const kAgreementCriterion =
    "(1) at least 99.9% of the checked elements (all but one token row when fewer than 1000 "
    "tokens are checked) within the tight bound |gpu - ref| <= 2 ulp_dtype(ref) + 1e-3 * "
    "rms(ref); (2) every element finite and within the loose bound 4 ulp_dtype(ref) + 5e-2 * "
    "rms(ref) (one re-quantization step of one intermediate); (3) relative L2 of gpu - ref over "
    "all token rows but the one with the largest error <= max(1e-3, 8e-3 * max row norm / "
    "norm(ref)), i.e. 8e-3 / sqrt(tokens) for rows of equal norm (docs/FORMAT.md section 8)";

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------
namespace {

int64_t parse_integer(const std::string& flag, const std::string& text) {
  if (text.empty()) throw CliError(flag + ": expected an integer, got ''");
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0')
    throw CliError(flag + ": expected an integer, got '" + text + "'");
  if (errno == ERANGE) throw CliError(flag + ": integer out of range: '" + text + "'");
  return static_cast<int64_t>(v);
}

int to_int(const std::string& flag, int64_t v) {
  if (v > std::numeric_limits<int>::max() || v < std::numeric_limits<int>::min())
    throw CliError(flag + ": integer out of range, got " + std::to_string(v));
  return static_cast<int>(v);
}

void require(bool ok, const std::string& flag, const std::string& expected,
             const std::string& got) {
  if (!ok) throw CliError(flag + ": must be " + expected + ", got " + got);
}

void validate_args(const BenchArgs& a) {
  require(a.num_tokens > 0, "--num-tokens", "> 0", std::to_string(a.num_tokens));
  require(a.hidden > 0 && a.hidden % 16 == 0, "--hidden", "a positive multiple of 16",
          std::to_string(a.hidden));
  require(a.intermediate > 0 && a.intermediate % 16 == 0, "--intermediate",
          "a positive multiple of 16", std::to_string(a.intermediate));
  require(a.num_experts > 0, "--num-experts", "> 0", std::to_string(a.num_experts));
  require(a.top_k > 0, "--top-k", "> 0", std::to_string(a.top_k));
  require(a.top_k <= a.num_experts, "--top-k",
          "<= --num-experts (" + std::to_string(a.num_experts) + ")", std::to_string(a.top_k));
  // The format allows any multiple of 16; the hybrid GEMM's K tile (64 or 128) must divide B.
  require(a.quant_block_size > 0 && a.quant_block_size % 64 == 0, "--quant-block-size",
          "a positive multiple of 64 (the hybrid GEMM's K tile divides it)",
          std::to_string(a.quant_block_size));
  require(a.super_group_size > 0, "--super-group-size", "> 0", std::to_string(a.super_group_size));
  require(a.q_max >= 1 && a.q_max <= 127, "--q-max", "in [1, 127]", std::to_string(a.q_max));
  require(a.warmup >= 0, "--warmup", ">= 0", std::to_string(a.warmup));
  require(a.iters > 0, "--iters", "> 0", std::to_string(a.iters));
  require(a.check_tokens > 0, "--check-tokens", "> 0", std::to_string(a.check_tokens));
  const int64_t max_rows = std::numeric_limits<int32_t>::max();
  require(a.num_tokens <= max_rows / a.top_k, "--num-tokens",
          "<= " + std::to_string(max_rows / a.top_k) + " (num_tokens * top_k must fit int32)",
          std::to_string(a.num_tokens));
}

}  // namespace

BenchArgs parse_bench_args(const std::vector<std::string>& args) {
  BenchArgs a;
  for (const std::string& s : args)
    if (s == "--help" || s == "-h") {
      a.help = true;
      return a;
    }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_inline_value = false;
    const size_t eq = flag.find('=');
    if (flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline_value = true;
    }
    auto take = [&]() -> std::string {
      if (has_inline_value) return value;
      if (i + 1 >= args.size()) throw CliError(flag + ": missing value");
      return args[++i];
    };
    auto no_value = [&]() {
      if (has_inline_value) throw CliError(flag + ": takes no value, got '" + value + "'");
    };
    if (flag == "--num-tokens") {
      a.num_tokens = parse_integer(flag, take());
    } else if (flag == "--hidden") {
      a.hidden = parse_integer(flag, take());
    } else if (flag == "--intermediate") {
      a.intermediate = parse_integer(flag, take());
    } else if (flag == "--num-experts") {
      a.num_experts = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--top-k") {
      a.top_k = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--dtype") {
      const std::string v = take();
      if (v == "bfloat16" || v == "bf16")
        a.dtype = DType::kBFloat16;
      else if (v == "float16" || v == "fp16")
        a.dtype = DType::kFloat16;
      else
        throw CliError("--dtype: must be bfloat16 or float16, got '" + v + "'");
    } else if (flag == "--quant-block-size") {
      a.quant_block_size = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--super-group-size") {
      a.super_group_size = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--q-max") {
      a.q_max = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--warmup") {
      a.warmup = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--iters") {
      a.iters = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--profile") {
      no_value();
      a.profile = true;
    } else if (flag == "--seed") {
      const std::string v = take();
      errno = 0;
      char* end = nullptr;
      const unsigned long long s = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || v[0] == '-' || end == v.c_str() || *end != '\0' || errno == ERANGE)
        throw CliError("--seed: expected a non-negative integer, got '" + v + "'");
      a.seed = static_cast<uint64_t>(s);
    } else if (flag == "--routing") {
      const std::string v = take();
      if (v == "uniform")
        a.routing = RoutingKind::kUniform;
      else if (v == "zipf")
        a.routing = RoutingKind::kZipf;
      else
        throw CliError("--routing: must be uniform or zipf, got '" + v + "'");
    } else if (flag == "--no-check") {
      no_value();
      a.check = false;
    } else if (flag == "--check-tokens") {
      a.check_tokens = to_int(flag, parse_integer(flag, take()));
    } else if (flag == "--json") {
      a.json_path = take();
      if (a.json_path.empty()) throw CliError("--json: missing value");
    } else if (flag == "--scheme") {
      const std::string v = take();
      if (v == "hybrid")
        a.scheme = SchemeChoice::kHybrid;
      else if (v == "per-token")
        a.scheme = SchemeChoice::kPerToken;
      else if (v == "both")
        a.scheme = SchemeChoice::kBoth;
      else
        throw CliError("--scheme: must be hybrid, per-token or both, got '" + v + "'");
    } else {
      throw CliError("unknown argument '" + args[i] + "' (see --help)");
    }
  }
  validate_args(a);
  return a;
}

BenchArgs parse_bench_args(int argc, const char* const* argv) {
  std::vector<std::string> v;
  for (int i = 1; i < argc; ++i) v.emplace_back(argv[i]);
  return parse_bench_args(v);
}

std::string bench_help() {
  std::ostringstream o;
  o << "usage: bench_int8_hybrid_moe [options]\n"
       "End-to-end INT8 MoE forward (permute -> quant -> GEMM1 -> SiLU*up+quant -> GEMM2 ->\n"
       "unpermute) with correctness check and timing, plus baselines on the same inputs.\n"
       "\n"
       "Problem:\n"
       "  --num-tokens M          tokens (default 8192)\n"
       "  --hidden K              hidden size, a multiple of 16 (default 2048)\n"
       "  --intermediate N        expert intermediate size, a multiple of 16 (default 512)\n"
       "  --num-experts E         experts (default 256)\n"
       "  --top-k k               experts per token, 1..E (default 8)\n"
       "  --dtype T               bfloat16|float16 activations/weights/output (default bfloat16)\n"
       "  --routing R             uniform|zipf (default uniform): softmax of N(0,1) logits, "
       "top-k,\n"
       "                          renormalized; zipf adds -ln(rank+1) per expert (popularity "
       "~1/rank)\n"
       "  --seed S                seed of every input (default 0)\n"
       "Hybrid format:\n"
       "  --quant-block-size B    K-block, a multiple of 64 (default 128)\n"
       "  --super-group-size S    K-blocks per float group (default 256)\n"
       "  --q-max Q               largest integer block scale, 1..127 (default 16)\n"
       "Run:\n"
       "  --scheme X              hybrid|per-token|both (default both: hybrid is measured, the\n"
       "                          per-token INT8 path runs as baseline (a))\n"
       "  --warmup W              untimed forwards first (default 10)\n"
       "  --iters I               timed forwards (default 50); median, p10, p90 reported\n"
       "  --no-check              skip the correctness check (default: check every run)\n"
       "  --check-tokens T        tokens checked, spread over M (default 64)\n"
       "  --json PATH             write every figure, the card, build config and arguments\n"
       "  --profile               wrap exactly one forward (after warm-up, outside the timing\n"
       "                          loop) in cudaProfilerStart/Stop, for `nsys profile -c\n"
       "                          cudaProfilerApi` or `ncu --profile-from-start off`\n"
       "  --help                  this text\n"
       "\n"
       "Environment: VLLM_INT8_HYBRID_FUSED_SILU_QUANT (0|1, default 1),\n"
       "             VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT (0|1, default 0).\n"
       "\n"
       "Check: GPU output vs the CPU reference (ref::moe_forward_hybrid / _per_token, fed the\n"
       "quantized weights downloaded from the GPU) on the sampled tokens. Agreement: "
    << kAgreementCriterion
    << ". Also printed: the relative L2 error vs the unquantized float reference\n"
       "(the quantization error). Exit code 2 when agreement fails, 1 on errors.\n"
       "\n"
       "Timing: CUDA events around each whole forward; L2 flushed by a memset larger than L2\n"
       "before every timed iteration and the inputs (hidden, ids, weights) rotated among copies.\n"
       "Baseline (b): bf16/fp16 MoE with per-expert cuBLAS GEMMs, replayed as a CUDA graph so "
       "only\n"
       "GPU work is timed (expert row counts are copied to the host once, before timing).\n";
  return o.str();
}

// ---------------------------------------------------------------------------------------------
// Deterministic inputs
// ---------------------------------------------------------------------------------------------
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

float normal_at(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint64_t key = mix64(mix64(seed) ^ (stream * 0xD1B54A32D192ED03ull));
  const uint64_t h = mix64(key + index);
  // Box-Muller on two 32-bit uniforms in (0, 1).
  const double u1 = (static_cast<double>(h >> 32) + 0.5) * 0x1p-32;
  const double u2 = (static_cast<double>(h & 0xFFFFFFFFull) + 0.5) * 0x1p-32;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

void fill_normal(uint16_t* out, size_t n, DType dtype, float stddev, uint64_t seed,
                 uint64_t stream) {
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t threads = std::min<size_t>(std::min<size_t>(hw, 64), n / (1 << 20) + 1);
  auto work = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i)
      out[i] = ref::from_float(stddev * normal_at(seed, stream, i), dtype);
  };
  if (threads <= 1) {
    work(0, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t chunk = (n + threads - 1) / threads;
  for (size_t t = 0; t < threads; ++t) {
    const size_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    pool.emplace_back(work, b, e);
  }
  for (auto& th : pool) th.join();
}

RoutingData make_routing(int64_t M, int E, int top_k, RoutingKind kind, uint64_t seed) {
  std::vector<double> bias(E, 0.0);
  if (kind == RoutingKind::kZipf) {
    // Seeded Fisher-Yates order of experts: rank[e] is e's popularity rank.
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    for (int i = E - 1; i > 0; --i) {
      const int j = static_cast<int>(mix64(mix64(seed) ^ (kStreamZipfRanks << 32) ^ i) % (i + 1));
      std::swap(order[i], order[j]);
    }
    for (int r = 0; r < E; ++r) bias[order[r]] = -std::log(static_cast<double>(r) + 1.0);
  }
  RoutingData d;
  d.ids.resize(static_cast<size_t>(M) * top_k);
  d.weights.resize(static_cast<size_t>(M) * top_k);
  std::vector<double> logit(E);
  std::vector<int> idx(E);
  for (int64_t t = 0; t < M; ++t) {
    for (int e = 0; e < E; ++e)
      logit[e] = normal_at(seed, kStreamRouterLogits, static_cast<uint64_t>(t) * E + e) + bias[e];
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + top_k, idx.end(), [&](int x, int y) {
      return logit[x] > logit[y] || (logit[x] == logit[y] && x < y);
    });
    // Softmax then renormalization over the top_k: the full denominator cancels.
    const double mx = logit[idx[0]];
    double sum = 0;
    for (int j = 0; j < top_k; ++j) sum += std::exp(logit[idx[j]] - mx);
    for (int j = 0; j < top_k; ++j) {
      d.ids[t * top_k + j] = idx[j];
      d.weights[t * top_k + j] = static_cast<float>(std::exp(logit[idx[j]] - mx) / sum);
    }
  }
  return d;
}

std::vector<int64_t> sample_tokens(int64_t M, int64_t n) {
  n = std::min(n, M);
  std::vector<int64_t> t;
  if (n <= 0) return t;
  if (n == 1) return {0};
  for (int64_t i = 0; i < n; ++i) t.push_back(i * (M - 1) / (n - 1));
  return t;
}

// ---------------------------------------------------------------------------------------------
// Correctness
// ---------------------------------------------------------------------------------------------
double dtype_ulp(double x, DType dtype) {
  const int mant = dtype == DType::kBFloat16 ? 7 : 10;         // explicit mantissa bits
  const int min_exp = dtype == DType::kBFloat16 ? -126 : -14;  // smallest normal exponent
  const int max_exp = dtype == DType::kBFloat16 ? 127 : 15;
  const double ax = std::fabs(x);
  int e = min_exp;
  if (ax > 0 && std::isfinite(ax)) {
    int ex = 0;
    std::frexp(ax, &ex);  // ax = m * 2^ex, m in [0.5, 1)
    e = std::min(std::max(ex - 1, min_exp), max_exp);
  } else if (!std::isfinite(ax)) {
    e = max_exp;
  }
  return std::ldexp(1.0, e - mant);
}

Agreement check_agreement(const std::vector<float>& got, const std::vector<float>& ref, DType dtype,
                          int64_t row_len) {
  Agreement a;
  a.count = static_cast<int64_t>(ref.size());
  a.row_len = row_len > 0 ? row_len : 0;
  if (got.size() != ref.size()) {
    a.num_bad = a.num_outside_loose = a.count;
    a.tight_ok = a.loose_ok = a.rel_l2_ok = a.agree = false;
    a.rel_l2 = std::numeric_limits<double>::infinity();
    return a;
  }
  double ss = 0;
  for (float r : ref) ss += static_cast<double>(r) * r;
  a.rms_ref = ref.empty() ? 0.0 : std::sqrt(ss / static_cast<double>(ref.size()));
  const double inf = std::numeric_limits<double>::infinity();
  double diff_ss = 0;
  // Per token row (for (3) below): the largest row norm and the largest row error.
  double max_row_ss = 0, left_out_ss = 0, row_ss = 0, row_diff_ss = 0;
  int64_t in_row = 0;  // elements of the current row seen so far
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double ulp = dtype_ulp(ref[i], dtype);
    const double tight = kTightUlps * ulp + kTightRms * a.rms_ref;
    const double loose = kLooseUlps * ulp + kLooseRms * a.rms_ref;
    const bool finite = std::isfinite(d);
    const double over_tight = finite ? d / tight : inf;
    const double over_loose = finite ? d / loose : inf;
    const double d_sq = finite ? d * d : inf;
    diff_ss += d_sq;
    row_ss += static_cast<double>(ref[i]) * ref[i];
    row_diff_ss += d_sq;
    if (a.row_len > 0 && (++in_row == a.row_len || i + 1 == ref.size())) {  // row ends
      max_row_ss = std::max(max_row_ss, row_ss);
      left_out_ss = std::max(left_out_ss, row_diff_ss);
      row_ss = row_diff_ss = 0;
      in_row = 0;
    }
    a.max_abs_err = std::max(a.max_abs_err, finite ? d : inf);
    a.worst_err_over_tol = std::max(a.worst_err_over_tol, over_tight);
    if (a.worst_loose < 0 || over_loose > a.worst_err_over_loose) {
      a.worst_err_over_loose = over_loose;
      a.worst_loose = static_cast<int64_t>(i);
    }
    if (!(over_loose <= 1.0)) ++a.num_outside_loose;
    if (!(over_tight <= 1.0)) {
      if (a.first_bad < 0) {
        a.first_bad = static_cast<int64_t>(i);
        a.first_bad_got = got[i];
        a.first_bad_ref = ref[i];
      }
      ++a.num_bad;
    }
  }
  // (1): 0.1% of the elements, but never less than one token row: a single flipped rounding of
  // one intermediate element moves the whole output row of its token (all K elements) by up to
  // one quantization step of that element, which can exceed the tight bound on many of them.
  a.allowed_outside_tight =
      static_cast<int64_t>(std::floor(kMaxOutsideTightFraction * static_cast<double>(a.count)));
  a.allowed_outside_tight = std::max(a.allowed_outside_tight, a.row_len);
  // (3): one such step moves a row by at most ~1/127 of that row's norm, i.e. the whole sample
  // by at most 8e-3 * (largest row norm) / ||ref|| (8e-3 / sqrt(tokens) when all rows have the
  // same norm; rows of uneven norm must not make one step in the largest row fail); never
  // tighter than 1e-3. The row with the largest error is left out of the sum, as (1) allows it:
  // a flip that changes a block maximum changes Q or F and re-quantizes the whole block or super
  // group of that token's intermediate, many steps in one row (fuzz seed 678276353145272849
  // problem 89: q_max 1, rel-L2 2.25e-3 against 1.93e-3 with the row; (2) still bounds it).
  if (a.row_len > 0 && a.count > 0 && ss > 0)
    a.rel_l2_limit = std::max(kRelL2Limit, kRelL2OneStepPerRow * std::sqrt(max_row_ss / ss));
  else
    left_out_ss = 0;  // no rows, or a zero reference (any error fails (3)): nothing left out
  // Non-finite errors fail (3) as well as (2).
  const double rest_ss = std::isfinite(diff_ss) ? std::max(0.0, diff_ss - left_out_ss) : inf;
  a.rel_l2 = ss > 0 ? std::sqrt(rest_ss / ss) : (rest_ss == 0 ? 0.0 : inf);
  a.tight_ok = a.num_bad <= a.allowed_outside_tight;
  a.loose_ok = a.num_outside_loose == 0;
  a.rel_l2_ok = a.rel_l2 <= a.rel_l2_limit;
  a.agree = a.tight_ok && a.loose_ok && a.rel_l2_ok;
  return a;
}

std::string describe_agreement(const Agreement& a) {
  std::ostringstream o;
  o << a.num_bad << "/" << a.count << " outside tight (allowed " << a.allowed_outside_tight
    << (a.tight_ok ? "" : ", FAILED") << "), worst err/tight " << std::setprecision(3)
    << a.worst_err_over_tol << ", " << a.num_outside_loose << " outside loose (worst err/loose "
    << a.worst_err_over_loose << (a.loose_ok ? "" : ", FAILED") << "), "
    << (a.row_len > 0 ? "rel-L2 (all rows but the worst) " : "rel-L2 ") << a.rel_l2 << " (limit "
    << a.rel_l2_limit << (a.rel_l2_ok ? "" : ", FAILED") << ")";
  if (a.first_bad >= 0)
    o << "; first outside tight at " << a.first_bad << ": gpu " << a.first_bad_got << " ref "
      << a.first_bad_ref;
  return o.str();
}

double rel_l2(const std::vector<float>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (den == 0) return num == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

// ---------------------------------------------------------------------------------------------
// Timing and figures
// ---------------------------------------------------------------------------------------------
TimingStats summarize_times(std::vector<float> ms) {
  TimingStats s;
  s.samples = static_cast<int>(ms.size());
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    const double pos = q * (ms.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, ms.size() - 1);
    return ms[lo] + (pos - lo) * (static_cast<double>(ms[hi]) - ms[lo]);
  };
  s.median_ms = at(0.5);
  s.p10_ms = at(0.1);
  s.p90_ms = at(0.9);
  return s;
}

double gemm1_ops(int64_t rows, int64_t K, int64_t N) {
  return 2.0 * rows * (2.0 * N) * K;
}
double gemm2_ops(int64_t rows, int64_t K, int64_t N) {
  return 2.0 * rows * K * N;
}

std::vector<TrafficItem> count_traffic(const TrafficInputs& in) {
  const double el = 2;  // bf16 / fp16 bytes
  const double Rk = static_cast<double>(in.rows_kept);
  const double M = in.M, K = in.K, N = in.N, Ea = in.active_experts;
  auto ceil_div = [](int64_t a, int64_t b) { return static_cast<double>((a + b - 1) / b); };
  const double nbK = ceil_div(in.K, in.block_size), nbN = ceil_div(in.N, in.block_size);
  const double ngK = std::ceil(nbK / in.super_group), ngN = std::ceil(nbN / in.super_group);
  // Bytes per row of a quantized operand with `cols` columns.
  auto qrow = [&](double cols, double nb, double ng) {
    return in.path == PathKind::kInt8Hybrid ? cols + 4 * nb + 4 * ng : cols + 4;
  };
  std::vector<TrafficItem> t;
  t.push_back({"hidden in [M,K]", M * K * el});
  t.push_back({"out [M,K]", M * K * el});
  t.push_back({"topk ids+weights [M,k]", M * in.top_k * 8.0});
  if (in.path == PathKind::kDenseCublas) {
    t.push_back({"weights w13+w2 (dense) of active experts", Ea * 3.0 * N * K * el});
    t.push_back({"permuted_hidden [R,K] write+read", 2 * Rk * K * el});
    t.push_back({"C1 [R,2N] write+read", 2 * Rk * 2 * N * el});
    t.push_back({"act [R,N] write+read", 2 * Rk * N * el});
    t.push_back({"C2 [R,K] write+read", 2 * Rk * K * el});
    return t;
  }
  const bool hyb = in.path == PathKind::kInt8Hybrid;
  const double wq = Ea * 3.0 * N * K;
  const double ws =
      hyb ? Ea * (2 * N * (nbK + ngK) + K * (nbN + ngN)) * 4.0 : Ea * (2 * N + K) * 4.0;
  t.push_back(
      {hyb ? "weights w13+w2 q+Q+F of active experts" : "weights w13+w2 q+scale of active experts",
       wq + ws});
  if (!in.fused_permute_quant) t.push_back({"permuted_hidden [R,K] write+read", 2 * Rk * K * el});
  t.push_back({"A1 quantized [R,K] write+read", 2 * Rk * qrow(K, nbK, ngK)});
  t.push_back({"C1 [R,2N] write+read", 2 * Rk * 2 * N * el});
  if (!in.fused_silu_quant) t.push_back({"act [R,N] write+read", 2 * Rk * N * el});
  t.push_back({"A2 quantized [R,N] write+read", 2 * Rk * qrow(N, nbN, ngN)});
  t.push_back({"C2 [R,K] write+read", 2 * Rk * K * el});
  return t;
}

double total_bytes(const std::vector<TrafficItem>& items) {
  double s = 0;
  for (const auto& i : items) s += i.bytes;
  return s;
}

PeakInt8 int8_dense_peak(int sm_major, int sm_minor, const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  PeakInt8 p;
  auto set = [&](double tops, const char* card) {
    p.known = true;
    p.tops = tops;
    p.card = card;
  };
  const int sm = sm_major * 10 + sm_minor;
  // Datasheet dense INT8 tensor TOPS (the sparsity figures halved).
  if (sm == 80 && has("A100")) {
    set(624, "A100 (624 TOPS)");
  } else if (sm == 89 && has("4090")) {
    set(660, "RTX 4090 (660 TOPS)");
  } else if (sm == 89 && has("L40S")) {
    set(733, "L40S (733 TOPS)");
  } else if (sm == 89 && has("L40")) {
    set(362, "L40 (362 TOPS)");
  } else if (sm == 90 && has("H200")) {
    set(1979, "H200 (1979 TOPS)");
  } else if (sm == 90 && has("H100") && has("PCIe")) {
    set(1513, "H100 PCIe (1513 TOPS)");
  } else if (sm == 90 && has("H100") && !has("NVL")) {
    set(1979, "H100 SXM (1979 TOPS)");
  } else {
    p.card = "n/a (card not in the peak table)";
  }
  return p;
}

void derive_figures(PathResult& r, const PeakInt8& peak, double copy_gbps) {
  const double t = r.time.median_ms * 1e-3;
  r.ops = r.gemm1_ops + r.gemm2_ops;
  r.bytes = total_bytes(r.traffic);
  if (t > 0) {
    r.tops = r.ops / t * 1e-12;
    r.gbps = r.bytes / t * 1e-9;
  }
  if (r.gemm1_ms > 0) r.gemm1_tops = r.gemm1_ops / (r.gemm1_ms * 1e-3) * 1e-12;
  if (r.gemm2_ms > 0) r.gemm2_tops = r.gemm2_ops / (r.gemm2_ms * 1e-3) * 1e-12;
  if (peak.known && r.kind != PathKind::kDenseCublas && std::isfinite(r.tops))
    r.pct_peak_int8 = 100.0 * r.tops / peak.tops;
  if (copy_gbps > 0 && std::isfinite(r.gbps)) r.pct_copy_bw = 100.0 * r.gbps / copy_gbps;
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------
std::string json_escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\t':
        o += "\\t";
        break;
      case '\r':
        o += "\\r";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o;
}

void JsonWriter::prefix(const std::string& key) {
  if (!first_.empty()) {
    if (!first_.back()) out_ += ",";
    first_.back() = false;
    out_ += "\n" + std::string(2 * first_.size(), ' ');
  }
  if (!key.empty()) out_ += "\"" + json_escape(key) + "\": ";
}
JsonWriter& JsonWriter::begin_object(const std::string& key) {
  prefix(key);
  out_ += "{";
  first_.push_back(true);
  return *this;
}
JsonWriter& JsonWriter::end_object() {
  const bool empty = first_.back();
  first_.pop_back();
  if (!empty) out_ += "\n" + std::string(2 * first_.size(), ' ');
  out_ += "}";
  if (first_.empty()) out_ += "\n";
  return *this;
}
JsonWriter& JsonWriter::begin_array(const std::string& key) {
  prefix(key);
  out_ += "[";
  first_.push_back(true);
  return *this;
}
JsonWriter& JsonWriter::end_array() {
  const bool empty = first_.back();
  first_.pop_back();
  if (!empty) out_ += "\n" + std::string(2 * first_.size(), ' ');
  out_ += "]";
  return *this;
}
JsonWriter& JsonWriter::number(const std::string& key, double v) {
  if (!std::isfinite(v)) return null(key);
  prefix(key);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  out_ += buf;
  return *this;
}
JsonWriter& JsonWriter::integer(const std::string& key, int64_t v) {
  prefix(key);
  out_ += std::to_string(v);
  return *this;
}
JsonWriter& JsonWriter::boolean(const std::string& key, bool v) {
  prefix(key);
  out_ += v ? "true" : "false";
  return *this;
}
JsonWriter& JsonWriter::string(const std::string& key, const std::string& v) {
  prefix(key);
  out_ += "\"" + json_escape(v) + "\"";
  return *this;
}
JsonWriter& JsonWriter::null(const std::string& key) {
  prefix(key);
  out_ += "null";
  return *this;
}

void write_card_state(JsonWriter& j, const std::string& key, const i8h_tools::CardState& s) {
  j.begin_object(key).boolean("known", s.known);
  if (!s.known) {
    j.string("why_unknown", s.why_unknown).end_object();
    return;
  }
  j.integer("samples", s.samples);
  auto value = [&](const char* k, double v, bool known) {
    if (known)
      j.number(k, v);
    else
      j.null(k);
  };
  const bool any = s.samples > 0;
  value("sm_mhz_median", s.sm_mhz_median, any);
  value("sm_mhz_min", s.sm_mhz_min, any);
  value("sm_mhz_max", s.sm_mhz_max, any);
  value("sm_mhz_card_max", s.sm_mhz_card_max, s.sm_mhz_card_max > 0);
  j.string("clock_limits", i8h_tools::clock_limit_names(s.limits)).end_object();
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------
namespace {

std::string fmt(double v, int prec = 3) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream o;
  o << std::fixed << std::setprecision(prec) << v;
  return o.str();
}
std::string sci(double v) {
  if (!std::isfinite(v)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}
std::string mib(double bytes) {
  return fmt(bytes / (1024.0 * 1024.0), 1) + " MiB";
}

std::string pad(const std::string& s, size_t w, bool left = false) {
  if (s.size() >= w) return s;
  return left ? s + std::string(w - s.size(), ' ') : std::string(w - s.size(), ' ') + s;
}

}  // namespace

std::string format_report(const BenchReport& r) {
  const BenchArgs& a = r.args;
  std::ostringstream o;
  o << "bench_int8_hybrid_moe\n";
  o << "device:  " << r.device.name << " (sm_" << r.device.sm_major << r.device.sm_minor << ", "
    << r.device.num_sms << " SMs, L2 " << mib(static_cast<double>(r.device.l2_bytes)) << ", "
    << fmt(r.device.memory_bytes / 1073741824.0, 1) << " GiB)\n";
  o << "build:   archs " << r.build.cuda_archs << ", CUTLASS " << r.build.cutlass_version
    << ", CUDA " << r.build.cuda_version << "\n";
  o << "problem: M=" << a.num_tokens << " K(hidden)=" << a.hidden
    << " N(intermediate)=" << a.intermediate << " E=" << a.num_experts << " top_k=" << a.top_k
    << " dtype=" << int8_hybrid_moe::dtype_name(a.dtype) << " routing=" << routing_name(a.routing)
    << " seed=" << a.seed << "\n";
  o << "format:  hybrid B=" << a.quant_block_size << " S=" << a.super_group_size
    << " q_max=" << a.q_max << "; fused silu_quant=" << r.fused_silu_quant
    << " permute_quant=" << r.fused_permute_quant << " (" << r.fused_source << ")\n";
  o << "rows:    " << r.rows_kept << " of " << r.rows_total << " permuted rows computed, "
    << r.active_experts << "/" << a.num_experts << " experts active\n";
  o << "timing:  " << r.timing_method << "\n";
  o << "peak:    INT8 dense " << (r.peak.known ? fmt(r.peak.tops, 0) + " TOPS" : "n/a") << " ["
    << r.peak.card << "]; copy bandwidth " << fmt(r.copy_gbps, 1) << " GB/s (cudaMemcpy D2D of "
    << mib(static_cast<double>(r.copy_bytes)) << ", read+write bytes)\n\n";

  o << pad("path", 18, true) << pad("role", 14, true) << pad("median ms", 11) << pad("p10", 9)
    << pad("p90", 9) << pad("TOPS", 8) << pad("%peak", 7) << pad("GB/s", 8) << pad("%copy", 7)
    << pad("x dense", 9) << "  " << pad("SM MHz", 12, true) << "clock limits\n";
  unsigned card_max = 0;
  std::string why_unknown;
  for (const PathResult& p : r.paths) {
    o << pad(p.name, 18, true) << pad(p.role, 14, true) << pad(fmt(p.time.median_ms, 4), 11)
      << pad(fmt(p.time.p10_ms, 4), 9) << pad(fmt(p.time.p90_ms, 4), 9) << pad(fmt(p.tops, 1), 8)
      << pad(fmt(p.pct_peak_int8, 1), 7) << pad(fmt(p.gbps, 0), 8) << pad(fmt(p.pct_copy_bw, 1), 7)
      << pad(fmt(p.speedup_vs_dense, 2), 9) << "  "
      << pad(i8h_tools::describe_sm_clock(p.card), 12, true)
      << (p.card.known ? i8h_tools::clock_limit_names(p.card.limits) : "n/a") << "\n";
    card_max = std::max(card_max, p.card.sm_mhz_card_max);
    if (!p.card.known) why_unknown = p.card.why_unknown;
  }
  o << "(TOPS = 2*R*(2N*K + K*N) / median time, R = computed rows; x dense = dense cuBLAS "
       "baseline time / this time;\n SM MHz = median (min) of NVML samples during the timed loop";
  if (card_max) o << ", card maximum " << card_max << " MHz";
  o << "; clock limits = NVML reasons seen, idle dropped";
  if (!why_unknown.empty()) o << "; card not sampled: " << why_unknown;
  o << ")\n";

  bool any_stages = false;
  for (const PathResult& p : r.paths) any_stages |= !p.stage_median_ms.empty();
  if (any_stages) {
    o << "\nstage medians (ms; separate loop with MoeStageEvents):\n";
    for (const PathResult& p : r.paths) {
      if (p.stage_median_ms.empty()) continue;
      o << "  " << pad(p.name, 16, true);
      for (const auto& s : p.stage_median_ms) o << " " << s.first << " " << fmt(s.second, 4);
      o << " | gemm1 " << fmt(p.gemm1_tops, 1) << " TOPS, gemm2 " << fmt(p.gemm2_tops, 1)
        << " TOPS\n";
    }
  }

  o << "\ncheck:\n";
  o << "  criterion: " << kAgreementCriterion << "\n";
  for (const PathResult& p : r.paths) {
    o << "  " << pad(p.name, 16, true) << " ";
    if (!p.check.ran) {
      o << "not checked\n";
      continue;
    }
    o << p.check.tokens << " tokens: ";
    if (p.check.has_agreement) {
      const Agreement& g = p.check.agreement;
      o << "vs " << p.check.reference << " " << (g.agree ? "AGREE" : "DISAGREE") << ": "
        << g.num_bad << "/" << g.count << " elements outside tight (allowed "
        << g.allowed_outside_tight << "), worst err/tight " << fmt(g.worst_err_over_tol, 3)
        << ", err/loose " << fmt(g.worst_err_over_loose, 3)
        << (g.row_len > 0 ? ", rel-L2 (all rows but the worst) " : ", rel-L2 ") << sci(g.rel_l2)
        << " (limit " << sci(g.rel_l2_limit) << "), max|err| " << sci(g.max_abs_err);
      if (g.first_bad >= 0)
        o << " (first outside tight at " << g.first_bad << ": gpu " << g.first_bad_got << " ref "
          << g.first_bad_ref << ")";
      o << "; ";
    }
    o << "rel-L2 vs float reference " << sci(p.check.rel_l2_vs_float) << "\n";
  }

  o << "\nbytes counted for GB/s (each tensor written once + read once, weights read once):\n";
  for (const PathResult& p : r.paths) {
    o << "  " << p.name << " (" << mib(p.bytes) << "):";
    bool first = true;
    for (const auto& t : p.traffic) {
      o << (first ? " " : "; ") << t.what << " " << mib(t.bytes);
      first = false;
    }
    o << "\n";
  }
  for (const std::string& n : r.notes) o << "note: " << n << "\n";
  o << "\nresult: " << (r.agreement_ok ? "PASS" : "FAIL (agreement)") << "\n";
  return o.str();
}

std::string report_json(const BenchReport& r) {
  const BenchArgs& a = r.args;
  JsonWriter j;
  j.begin_object();
  j.begin_object("args")
      .integer("num_tokens", a.num_tokens)
      .integer("hidden", a.hidden)
      .integer("intermediate", a.intermediate)
      .integer("num_experts", a.num_experts)
      .integer("top_k", a.top_k)
      .string("dtype", int8_hybrid_moe::dtype_name(a.dtype))
      .integer("quant_block_size", a.quant_block_size)
      .integer("super_group_size", a.super_group_size)
      .integer("q_max", a.q_max)
      .integer("warmup", a.warmup)
      .integer("iters", a.iters)
      .boolean("profile", a.profile)
      .string("seed", std::to_string(a.seed))
      .string("routing", routing_name(a.routing))
      .boolean("check", a.check)
      .integer("check_tokens", a.check_tokens)
      .string("scheme", scheme_choice_name(a.scheme))
      .string("json", a.json_path)
      .end_object();
  j.begin_object("options")
      .boolean("fused_silu_quant", r.fused_silu_quant)
      .boolean("fused_permute_quant", r.fused_permute_quant)
      .string("source", r.fused_source)
      .end_object();
  j.begin_object("device")
      .string("name", r.device.name)
      .integer("sm", r.device.sm_major * 10 + r.device.sm_minor)
      .integer("num_sms", r.device.num_sms)
      .integer("l2_bytes", r.device.l2_bytes)
      .integer("memory_bytes", r.device.memory_bytes)
      .integer("driver_version", r.device.driver_version)
      .integer("runtime_version", r.device.runtime_version)
      .end_object();
  j.begin_object("build")
      .string("cuda_archs", r.build.cuda_archs)
      .string("cutlass_version", r.build.cutlass_version)
      .integer("cuda_version", r.build.cuda_version)
      .end_object();
  j.begin_object("peak")
      .boolean("known", r.peak.known)
      .number("int8_dense_tops", r.peak.known ? r.peak.tops : kNaN)
      .string("card", r.peak.card)
      .number("copy_gbps", r.copy_gbps)
      .integer("copy_bytes", r.copy_bytes)
      .end_object();
  j.string("timing_method", r.timing_method);
  j.integer("rows_total", r.rows_total).integer("rows_kept", r.rows_kept);
  j.integer("active_experts", r.active_experts);
  j.string("agreement_criterion", kAgreementCriterion);
  j.begin_array("paths");
  for (const PathResult& p : r.paths) {
    j.begin_object()
        .string("name", p.name)
        .string("role", p.role)
        .number("median_ms", p.time.median_ms)
        .number("p10_ms", p.time.p10_ms)
        .number("p90_ms", p.time.p90_ms)
        .integer("samples", p.time.samples);
    write_card_state(j, "card", p.card);
    j.begin_object("stage_median_ms");
    for (const auto& s : p.stage_median_ms) j.number(s.first, s.second);
    j.end_object();
    j.number("ops", p.ops).number("gemm1_ops", p.gemm1_ops).number("gemm2_ops", p.gemm2_ops);
    j.number("tops", p.tops).number("gemm1_tops", p.gemm1_tops).number("gemm2_tops", p.gemm2_tops);
    j.number("bytes", p.bytes).number("gbps", p.gbps);
    j.begin_object("bytes_counted");
    for (const auto& t : p.traffic) j.number(t.what, t.bytes);
    j.end_object();
    j.number("pct_peak_int8", p.pct_peak_int8).number("pct_copy_bw", p.pct_copy_bw);
    j.number("speedup_vs_dense", p.speedup_vs_dense);
    j.integer("workspace_bytes", p.workspace_bytes);
    j.integer("kernels_per_forward", p.kernels_per_forward);
    j.begin_object("check").boolean("ran", p.check.ran);
    if (p.check.ran) {
      j.string("reference", p.check.reference).integer("tokens", p.check.tokens);
      if (p.check.has_agreement) {
        const Agreement& g = p.check.agreement;
        j.boolean("agree", g.agree)
            .number("max_abs_err", g.max_abs_err)
            .number("worst_err_over_tol", g.worst_err_over_tol)
            .number("worst_err_over_loose", g.worst_err_over_loose)
            .integer("num_bad", g.num_bad)
            .integer("allowed_outside_tight", g.allowed_outside_tight)
            .integer("num_outside_loose", g.num_outside_loose)
            .number("rel_l2", g.rel_l2)
            .number("rel_l2_limit", g.rel_l2_limit)
            .integer("count", g.count)
            .number("rms_ref", g.rms_ref);
      }
      j.number("rel_l2_vs_float", p.check.rel_l2_vs_float);
    }
    j.end_object();
    j.end_object();
  }
  j.end_array();
  j.begin_array("notes");
  for (const std::string& n : r.notes) j.string("", n);
  j.end_array();
  j.boolean("agreement_ok", r.agreement_ok);
  j.end_object();
  return j.str();
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw CliError("--json: cannot open '" + path + "' for writing");
  f << text;
  f.close();
  if (!f) throw CliError("--json: failed writing '" + path + "'");
}

}  // namespace i8h_bench
