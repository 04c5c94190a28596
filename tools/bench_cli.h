// Host-only (no CUDA) pieces of bench_int8_hybrid_moe: argument parsing and validation,
// deterministic inputs, the agreement criterion, figure arithmetic, the JSON writer and the
// report text. Kept free of CUDA so CPU tests cover them; the GPU tests reuse the input
// generators and the criterion.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "card_monitor.h"
#include "int8_hybrid_moe/common.h"

namespace i8h_bench {

using int8_hybrid_moe::DType;

// One-line, user-facing error of the command line (printed as "bench_int8_hybrid_moe: <what>").
class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class RoutingKind { kUniform, kZipf };
// kBoth: the hybrid scheme is measured, the per-token scheme runs as baseline (a).
enum class SchemeChoice { kHybrid, kPerToken, kBoth };
const char* routing_name(RoutingKind r);
const char* scheme_choice_name(SchemeChoice s);

struct BenchArgs {
  int64_t num_tokens = 8192;
  int64_t hidden = 2048;
  int64_t intermediate = 512;
  int num_experts = 256;
  int top_k = 8;
  DType dtype = DType::kBFloat16;
  int quant_block_size = 128;
  int super_group_size = 256;
  int q_max = 16;
  int warmup = 10;
  int iters = 50;
  bool profile = false;
  uint64_t seed = 0;
  RoutingKind routing = RoutingKind::kUniform;
  bool check = true;
  int check_tokens = 64;
  std::string json_path;  // empty: no JSON
  SchemeChoice scheme = SchemeChoice::kBoth;
  bool help = false;
};

// Arguments without the program name. Throws CliError naming the flag.
BenchArgs parse_bench_args(const std::vector<std::string>& args);
BenchArgs parse_bench_args(int argc, const char* const* argv);
std::string bench_help();

// ---- deterministic inputs ------------------------------------------------------------------
// Counter-based: value i of stream s depends only on (seed, s, i), so filling is parallel and
// independent of the thread count.
enum InputStream : uint64_t {
  kStreamHidden = 1,
  kStreamW13 = 2,
  kStreamW2 = 3,
  kStreamRouterLogits = 4,
  kStreamZipfRanks = 5,
};
uint64_t mix64(uint64_t x);
float normal_at(uint64_t seed, uint64_t stream, uint64_t index);  // N(0, 1)
// out[i] = dtype(stddev * normal_at(seed, stream, i)), as raw 16-bit words.
void fill_normal(uint16_t* out, size_t n, DType dtype, float stddev, uint64_t seed,
                 uint64_t stream);

struct RoutingData {
  std::vector<int32_t> ids;    // [M, top_k]
  std::vector<float> weights;  // [M, top_k], sum 1 per token
};
// Softmax of logits N(0,1) (+ a per-expert bias -ln(rank+1) for zipf: popularity ~ 1/rank, with a
// seeded random rank order), top_k largest (ties: lower id), renormalized over the top_k.
RoutingData make_routing(int64_t M, int num_experts, int top_k, RoutingKind kind, uint64_t seed);
// min(n, M) distinct tokens spread over [0, M), first and last included.
std::vector<int64_t> sample_tokens(int64_t M, int64_t n);

// ---- correctness ------------------------------------------------------------------------------
// Spacing of `dtype` numbers at |x| (subnormal spacing below the normal range).
double dtype_ulp(double x, DType dtype);
extern const char* const kAgreementCriterion;
// The agreement criterion of both benchmark CLIs and the GPU tests (docs/FORMAT.md section 8).
// The GPU and the reference run the same quantized pipeline; they differ only by the fp32 order
// of the GEMM sums, which may flip the dtype rounding of an intermediate and, through the next
// quantization, move that element by one quantization step. Hence three conditions:
//   tight(i) = 2 ulp_dtype(ref_i) + 1e-3 * rms(ref)
//   loose(i) = 4 ulp_dtype(ref_i) + 5e-2 * rms(ref)
//   (1) at most max(0.1% of the elements, one token row) outside tight;
//   (2) every element finite and within loose;
//   (3) ||got - ref||_2 / ||ref||_2 <= max(1e-3, 8e-3 * max_t ||ref_t||_2 / ||ref||_2) (one step
//       in the largest token row t; 8e-3 / sqrt(tokens) when the rows have equal norms).
inline constexpr double kTightUlps = 2.0, kTightRms = 1e-3;
inline constexpr double kLooseUlps = 4.0, kLooseRms = 5e-2;
inline constexpr double kMaxOutsideTightFraction = 1e-3;
inline constexpr double kRelL2Limit = 1e-3, kRelL2OneStepPerRow = 8e-3;
struct Agreement {
  int64_t count = 0;
  int64_t row_len = 0;                // elements per token row (0: unknown, no row allowances)
  int64_t num_bad = 0;                // elements outside the tight bound
  int64_t allowed_outside_tight = 0;  // condition (1)
  int64_t num_outside_loose = 0;      // condition (2): must be 0 (non-finite counts here)
  int64_t first_bad = -1;             // first element outside the tight bound
  double first_bad_got = 0, first_bad_ref = 0;
  int64_t worst_loose = -1;  // element with the largest err / loose
  double max_abs_err = 0;
  double worst_err_over_tol = 0;                  // largest |err| / tight(i)
  double worst_err_over_loose = 0;                // largest |err| / loose(i): <= 1 when agree
  double rel_l2 = 0, rel_l2_limit = kRelL2Limit;  // condition (3): rows but the worst one
  double rms_ref = 0;
  bool tight_ok = true, loose_ok = true, rel_l2_ok = true;
  bool agree = true;  // all three
};
// got / ref: the checked tokens' rows, row_len elements each (row_len = hidden K).
Agreement check_agreement(const std::vector<float>& got, const std::vector<float>& ref, DType dtype,
                          int64_t row_len = 0);
// One line: "<n>/<count> outside tight (allowed <a>), worst err/tight .., err/loose .., rel-L2 .."
std::string describe_agreement(const Agreement& a);
// ||got - ref||_2 / ||ref||_2.
double rel_l2(const std::vector<float>& got, const std::vector<double>& ref);

// ---- timing ----------------------------------------------------------------------------------
struct TimingStats {
  double median_ms = 0, p10_ms = 0, p90_ms = 0;
  int samples = 0;
};
// Percentiles by linear interpolation between order statistics.
TimingStats summarize_times(std::vector<float> ms);

// ---- figures ---------------------------------------------------------------------------------
// GEMM operations (2 per multiply-add): GEMM1 = 2*R*(2N)*K, GEMM2 = 2*R*K*N.
double gemm1_ops(int64_t rows, int64_t K, int64_t N);
double gemm2_ops(int64_t rows, int64_t K, int64_t N);

enum class PathKind { kInt8Hybrid, kInt8PerToken, kDenseCublas };
struct TrafficInputs {
  PathKind path = PathKind::kInt8Hybrid;
  int64_t M = 0, K = 0, N = 0;
  int top_k = 0;
  int64_t rows_kept = 0;   // permuted rows actually computed
  int active_experts = 0;  // experts with >= 1 row (their weights are read)
  int block_size = 128, super_group = 256;
  bool fused_silu_quant = true, fused_permute_quant = false;
};
struct TrafficItem {
  std::string what;
  double bytes = 0;
};
// The DRAM bytes the figure "effective GB/s" counts, item by item: each tensor written once and
// read once by its consumer; weights read once. Not counted: routing maps, sort scratch, and
// repeated reads of the same bytes by several GEMM tiles (assumed L2 hits).
std::vector<TrafficItem> count_traffic(const TrafficInputs& in);
double total_bytes(const std::vector<TrafficItem>& items);

struct PeakInt8 {
  bool known = false;
  double tops = 0;
  std::string card;  // which table entry was used, or why none
};
// Dense (no sparsity) INT8 tensor-core peak by SM version and card name.
PeakInt8 int8_dense_peak(int sm_major, int sm_minor, const std::string& device_name);

// ---- JSON ------------------------------------------------------------------------------------
std::string json_escape(const std::string& s);
// Minimal streaming writer; keys are only given inside objects.
class JsonWriter {
 public:
  JsonWriter& begin_object(const std::string& key = "");
  JsonWriter& end_object();
  JsonWriter& begin_array(const std::string& key = "");
  JsonWriter& end_array();
  JsonWriter& number(const std::string& key, double v);  // NaN / Inf -> null
  JsonWriter& integer(const std::string& key, int64_t v);
  JsonWriter& boolean(const std::string& key, bool v);
  JsonWriter& string(const std::string& key, const std::string& v);
  JsonWriter& null(const std::string& key);
  const std::string& str() const { return out_; }

 private:
  void prefix(const std::string& key);
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
};

// The card's state during a timed loop as an object under `key`: known, samples, SM MHz (median,
// min, max, card max), clock limits (null where unknown or not sampled).
void write_card_state(JsonWriter& j, const std::string& key, const i8h_tools::CardState& s);

// ---- report ----------------------------------------------------------------------------------
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct DeviceReport {
  std::string name = "unknown";
  int sm_major = 0, sm_minor = 0, num_sms = 0;
  int64_t l2_bytes = 0, memory_bytes = 0;
  int driver_version = 0, runtime_version = 0;
};
struct BuildReport {
  std::string cuda_archs = "unknown", cutlass_version = "unknown";
  int cuda_version = 0;
};
struct CheckReport {
  bool ran = false;
  std::string reference;  // e.g. "ref::moe_forward_hybrid"
  int64_t tokens = 0;
  bool has_agreement = false;  // false for the dense baseline (no exact oracle)
  Agreement agreement;
  double rel_l2_vs_float = kNaN;
};
struct PathResult {
  std::string name;  // "int8 hybrid", "int8 per-token", "cublas bfloat16"
  std::string role;  // "measured", "baseline (a)", "baseline (b)"
  PathKind kind = PathKind::kInt8Hybrid;
  TimingStats time;
  i8h_tools::CardState card;  // the card during the timed loop of `time`
  std::vector<std::pair<std::string, double>> stage_median_ms;  // empty: no breakdown
  double gemm1_ms = kNaN, gemm2_ms = kNaN;                      // stage medians of the GEMMs
  double ops = 0, gemm1_ops = 0, gemm2_ops = 0;
  double tops = kNaN, gemm1_tops = kNaN, gemm2_tops = kNaN;
  std::vector<TrafficItem> traffic;
  double bytes = 0, gbps = kNaN;
  double pct_peak_int8 = kNaN, pct_copy_bw = kNaN;
  double speedup_vs_dense = kNaN;  // dense baseline time / this time
  int64_t workspace_bytes = 0;
  int kernels_per_forward = -1;  // -1: not counted
  CheckReport check;
};
// Fills tops / gbps / percentages from time, ops, traffic (after those are set).
void derive_figures(PathResult& r, const PeakInt8& peak, double copy_gbps);

struct BenchReport {
  BenchArgs args;
  DeviceReport device;
  BuildReport build;
  PeakInt8 peak;
  bool fused_silu_quant = true, fused_permute_quant = false;
  std::string fused_source;  // where the switches came from (env / default)
  double copy_gbps = kNaN;
  int64_t copy_bytes = 0;
  std::string timing_method;
  int64_t rows_total = 0, rows_kept = 0;
  int active_experts = 0;
  std::vector<PathResult> paths;
  std::vector<std::string> notes;
  bool agreement_ok = true;
};
std::string format_report(const BenchReport& r);
std::string report_json(const BenchReport& r);
// Throws CliError when the file cannot be written.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace i8h_bench
