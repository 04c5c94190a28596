// bench_int8_hybrid_moe: end-to-end INT8 MoE forward benchmark with correctness check and
// baselines (per-token INT8 through the same runner; dense bf16/fp16 MoE through cuBLAS).
// Parsing, figures and report text live in bench_cli.{h,cpp}; this file does the GPU work.
#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_cli.h"
#include "cuda_timer.h"
#include "int8_hybrid_moe/moe.h"
#include "int8_hybrid_moe/reference.h"

namespace {

using namespace int8_hybrid_moe;
using namespace i8h_bench;
namespace refns = int8_hybrid_moe::ref;

constexpr const char* kProg = "bench_int8_hybrid_moe";
constexpr int kRotations = 3;  // device copies of the input activations / routing

class OutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw CudaError(
        detail::concat(what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}
#define CK(expr) check_cuda((expr), #expr)

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw CudaError(detail::concat(what, " failed: cuBLAS status ", static_cast<int>(s)));
}

// Owning device allocation; OOM reports the bytes needed.
class DevMem {
 public:
  DevMem() = default;
  DevMem(size_t bytes, const char* what) : bytes_(bytes) {
    if (bytes == 0) return;
    const cudaError_t e = cudaMalloc(&p_, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      throw OutOfMemory(detail::concat("out of GPU memory: ", what, " needs ", bytes, " bytes (",
                                       bytes >> 20, " MiB); ", free_b >> 20, " MiB free of ",
                                       total_b >> 20, " MiB"));
    }
    check_cuda(e, "cudaMalloc");
  }
  ~DevMem() {
    if (p_) cudaFree(p_);
  }
  DevMem(DevMem&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; }
  DevMem& operator=(DevMem&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  template <typename T = void>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

template <typename T>
DevMem upload(const std::vector<T>& h, const char* what) {
  DevMem d(h.size() * sizeof(T), what);
  if (!h.empty()) CK(cudaMemcpy(d.as(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
std::vector<T> download(const void* d, size_t n) {
  std::vector<T> h(n);
  if (n) CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// Cold-L2 timing protocol shared by every path.
struct Timing {
  i8h_tools::TimerConfig cfg;  // stream, warmup, iters, the flush buffer and the card monitor
  DevMem flush;
  std::unique_ptr<i8h_tools::CardMonitor> monitor;

  // fwd(rotation copy). Returns per-iteration ms; the card's state in `card`.
  std::vector<float> total(const std::function<void(int)>& fwd, i8h_tools::CardState* card) const {
    std::vector<float> ms = i8h_tools::time_iterations_ms(
        cfg, [&](int i) { fwd(i % kRotations); }, check_cuda);
    *card = monitor->last();
    return ms;
  }

  // Per-stage medians, from a separate loop so the stage events cannot perturb `total`.
  std::vector<double> stages(const std::function<void(int, const MoeStageEvents*)>& fwd) const {
    constexpr int kE = kNumMoeStages + 1;
    const int iters = cfg.iters;
    i8h_tools::CudaEvents ev(static_cast<size_t>(iters) * kE, check_cuda);
    for (int i = 0; i < iters; ++i) {
      MoeStageEvents se;
      for (int s = 0; s < kE; ++s) se.events[s] = ev[static_cast<size_t>(i) * kE + s];
      i8h_tools::flush_l2(cfg, i, check_cuda);
      fwd(i % kRotations, &se);
    }
    CK(cudaStreamSynchronize(cfg.stream));
    std::vector<double> med(kNumMoeStages);
    for (int s = 0; s < kNumMoeStages; ++s) {
      std::vector<float> ms(iters);
      for (int i = 0; i < iters; ++i)
        ms[i] = i8h_tools::elapsed_ms(ev[static_cast<size_t>(i) * kE + s],
                                      ev[static_cast<size_t>(i) * kE + s + 1], check_cuda);
      med[s] = summarize_times(ms).median_ms;
    }
    return med;
  }
};

// Kernel nodes of a graph, child graphs included (memset / memcpy nodes are not kernels and are
// not profiled by ncu either).
int count_kernel_nodes(cudaGraph_t g) {
  size_t n = 0;
  CK(cudaGraphGetNodes(g, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n) CK(cudaGraphGetNodes(g, nodes.data(), &n));
  int count = 0;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType t;
    CK(cudaGraphNodeGetType(node, &t));
    if (t == cudaGraphNodeTypeKernel) {
      ++count;
    } else if (t == cudaGraphNodeTypeGraph) {
      cudaGraph_t child = nullptr;
      CK(cudaGraphChildGraphNodeGetGraph(node, &child));
      count += count_kernel_nodes(child);
    }
  }
  return count;
}

// Captures fwd() into a graph. Returns null (and the reason) when the work is not capturable.
cudaGraph_t capture(cudaStream_t stream, const std::function<void()>& fwd, std::string* why) {
  CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    fwd();
  } catch (const std::exception& e) {
    cudaGraph_t g = nullptr;
    (void)cudaStreamEndCapture(stream, &g);
    if (g) cudaGraphDestroy(g);
    (void)cudaGetLastError();
    *why = e.what();
    return nullptr;
  }
  cudaGraph_t g = nullptr;
  const cudaError_t e = cudaStreamEndCapture(stream, &g);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *why = cudaGetErrorString(e);
    return nullptr;
  }
  return g;
}

// ---- problem data shared by all paths -------------------------------------------------------
struct Inputs {
  std::vector<uint16_t> hidden, w13, w2;  // dtype words
  RoutingData routing;
  DevMem d_hidden[kRotations], d_ids[kRotations], d_weights[kRotations];
  DevMem d_w13, d_w2;  // dense, for quantization and the cuBLAS baseline
};

struct CheckData {
  std::vector<int64_t> tokens;
  std::vector<float> hidden_f;    // [M, K]
  std::vector<double> float_ref;  // [T, K]
};

// Runs f(chunk of tokens) on several threads and concatenates the rows in token order.
template <typename Out, typename F>
std::vector<Out> parallel_tokens(const std::vector<int64_t>& tokens, int64_t K, F f) {
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t nthreads = std::min(hw, tokens.size());
  std::vector<std::vector<Out>> parts(nthreads);
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errs(nthreads);
  const size_t chunk = (tokens.size() + nthreads - 1) / nthreads;
  for (size_t t = 0; t < nthreads; ++t) {
    pool.emplace_back([&, t] {
      try {
        const size_t b = std::min(tokens.size(), t * chunk);
        const size_t e = std::min(tokens.size(), b + chunk);
        if (b == e) return;
        const std::vector<int64_t> sub(tokens.begin() + b, tokens.begin() + e);
        parts[t] = f(sub);
      } catch (...) {
        errs[t] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errs)
    if (e) std::rethrow_exception(e);
  std::vector<Out> out;
  out.reserve(tokens.size() * K);
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::vector<float> pick_rows(const std::vector<uint16_t>& out, const std::vector<int64_t>& tokens,
                             int64_t K, DType dtype) {
  std::vector<float> r;
  r.reserve(tokens.size() * K);
  for (int64_t t : tokens)
    for (int64_t k = 0; k < K; ++k) r.push_back(refns::to_float(out[t * K + k], dtype));
  return r;
}

std::string env_value(const char* name) {
  const char* v = std::getenv(name);
  return v ? detail::concat(name, "=", v) : detail::concat(name, " unset");
}

// ---- one INT8 path through the runner --------------------------------------------------------
struct Int8Path {
  QuantScheme scheme;
  MoeProblem prob;
  DevMem w13q, w13Q, w13F, w13s, w2q, w2Q, w2F, w2s;
  MoeWeights weights;
};

void quantize_weights(Int8Path& p, const Inputs& in, cudaStream_t stream) {
  const MoeProblem& pr = p.prob;
  const int64_t E = pr.num_local_experts, K = pr.hidden, N = pr.intermediate;
  if (p.scheme == QuantScheme::kHybrid) {
    const int64_t nbK = num_blocks(K, pr.format), ngK = num_groups(K, pr.format);
    const int64_t nbN = num_blocks(N, pr.format), ngN = num_groups(N, pr.format);
    p.w13q = DevMem(E * 2 * N * K, "w13 q");
    p.w13Q = DevMem(E * 2 * N * nbK * 4, "w13 Q");
    p.w13F = DevMem(E * 2 * N * ngK * 4, "w13 F");
    p.w2q = DevMem(E * K * N, "w2 q");
    p.w2Q = DevMem(E * K * nbN * 4, "w2 Q");
    p.w2F = DevMem(E * K * ngN * 4, "w2 F");
    quantize_weights_hybrid(in.d_w13.as(), pr.dtype, E, 2 * N, K, pr.format,
                            {p.w13q.as<int8_t>(), p.w13Q.as<int32_t>(), p.w13F.as<float>()},
                            stream);
    quantize_weights_hybrid(in.d_w2.as(), pr.dtype, E, K, N, pr.format,
                            {p.w2q.as<int8_t>(), p.w2Q.as<int32_t>(), p.w2F.as<float>()}, stream);
    p.weights.w13_hybrid = {p.w13q.as<int8_t>(), p.w13Q.as<int32_t>(), p.w13F.as<float>()};
    p.weights.w2_hybrid = {p.w2q.as<int8_t>(), p.w2Q.as<int32_t>(), p.w2F.as<float>()};
  } else {
    p.w13q = DevMem(E * 2 * N * K, "w13 q");
    p.w13s = DevMem(E * 2 * N * 4, "w13 scale");
    p.w2q = DevMem(E * K * N, "w2 q");
    p.w2s = DevMem(E * K * 4, "w2 scale");
    quantize_weights_per_channel(in.d_w13.as(), pr.dtype, E, 2 * N, K,
                                 {p.w13q.as<int8_t>(), p.w13s.as<float>()}, stream);
    quantize_weights_per_channel(in.d_w2.as(), pr.dtype, E, K, N,
                                 {p.w2q.as<int8_t>(), p.w2s.as<float>()}, stream);
    p.weights.w13_channel = {p.w13q.as<int8_t>(), p.w13s.as<float>()};
    p.weights.w2_channel = {p.w2q.as<int8_t>(), p.w2s.as<float>()};
  }
  CK(cudaStreamSynchronize(stream));
}

// The CPU reference of the quantized pipeline on the sampled tokens, with the GPU's weights.
std::vector<float> reference_int8(const Int8Path& p, const Inputs& in, const CheckData& cd) {
  const MoeProblem& pr = p.prob;
  const int64_t E = pr.num_local_experts, K = pr.hidden, N = pr.intermediate;
  refns::MoeRefProblem rp;
  rp.M = pr.num_tokens;
  rp.K = K;
  rp.N = N;
  rp.E = pr.num_experts;
  rp.top_k = pr.top_k;
  rp.dtype = pr.dtype;
  rp.fmt = pr.format;
  const auto& ids = in.routing.ids;
  const auto& wts = in.routing.weights;
  if (p.scheme == QuantScheme::kHybrid) {
    auto split = [&](const DevMem& q, const DevMem& Q, const DevMem& F, int64_t rows,
                     int64_t cols) {
      const int64_t nb = num_blocks(cols, pr.format), ng = num_groups(cols, pr.format);
      return refns::split_experts(download<int8_t>(q.as(), E * rows * cols),
                                  download<int32_t>(Q.as(), E * rows * nb),
                                  download<float>(F.as(), E * rows * ng), E, rows, cols, pr.format);
    };
    const auto w13 = split(p.w13q, p.w13Q, p.w13F, 2 * N, K);
    const auto w2 = split(p.w2q, p.w2Q, p.w2F, K, N);
    return parallel_tokens<float>(cd.tokens, K, [&](const std::vector<int64_t>& sub) {
      return refns::moe_forward_hybrid(rp, cd.hidden_f, ids, wts, w13, w2, &sub);
    });
  }
  auto split = [&](const DevMem& q, const DevMem& s, int64_t rows, int64_t cols) {
    const auto hq = download<int8_t>(q.as(), E * rows * cols);
    const auto hs = download<float>(s.as(), E * rows);
    std::vector<refns::PerTokenTensor> v(E);
    for (int64_t e = 0; e < E; ++e) {
      v[e].rows = rows;
      v[e].K = cols;
      v[e].q.assign(hq.begin() + e * rows * cols, hq.begin() + (e + 1) * rows * cols);
      v[e].scale.assign(hs.begin() + e * rows, hs.begin() + (e + 1) * rows);
    }
    return v;
  };
  const auto w13 = split(p.w13q, p.w13s, 2 * N, K);
  const auto w2 = split(p.w2q, p.w2s, K, N);
  return parallel_tokens<float>(cd.tokens, K, [&](const std::vector<int64_t>& sub) {
    return refns::moe_forward_per_token(rp, cd.hidden_f, ids, wts, w13, w2, &sub);
  });
}

struct Context {
  BenchArgs args;
  BenchReport* report = nullptr;
  cudaStream_t stream = nullptr;
  Timing timing;
  Inputs in;
  CheckData cd;
  bool profile_done = false;
};

PathResult run_int8(Context& cx, QuantScheme scheme, const std::string& role) {
  const BenchArgs& a = cx.args;
  Int8Path p;
  p.scheme = scheme;
  p.prob.num_tokens = a.num_tokens;
  p.prob.hidden = a.hidden;
  p.prob.intermediate = a.intermediate;
  p.prob.num_experts = a.num_experts;
  p.prob.num_local_experts = a.num_experts;
  p.prob.top_k = a.top_k;
  p.prob.dtype = a.dtype;
  p.prob.scheme = scheme;
  p.prob.format.block_size = a.quant_block_size;
  p.prob.format.super_group = a.super_group_size;
  p.prob.format.q_max = a.q_max;
  const MoeOptions opts;  // fused switches from the environment
  const size_t ws_bytes = moe_workspace_size(p.prob, opts);
  quantize_weights(p, cx.in, cx.stream);

  DevMem ws(ws_bytes, "runner workspace");
  DevMem out(static_cast<size_t>(a.num_tokens) * a.hidden * 2, "output");
  auto fwd = [&](int c, const MoeStageEvents* se) {
    MoeInputs mi;
    mi.hidden = cx.in.d_hidden[c].as();
    mi.topk_ids = cx.in.d_ids[c].as<int32_t>();
    mi.topk_weights = cx.in.d_weights[c].as<float>();
    moe_forward(p.prob, opts, mi, p.weights, out.as(), ws.as(), ws_bytes, cx.stream, se);
  };

  PathResult r;
  r.name = std::string("int8 ") + quant_scheme_name(scheme);
  r.role = role;
  r.kind = scheme == QuantScheme::kHybrid ? PathKind::kInt8Hybrid : PathKind::kInt8PerToken;
  r.workspace_bytes = static_cast<int64_t>(ws_bytes);

  // One eager forward first (also the correctness run): kernels are loaded before any capture.
  fwd(0, nullptr);
  CK(cudaStreamSynchronize(cx.stream));
  if (a.check) {
    const auto h = download<uint16_t>(out.as(), static_cast<size_t>(a.num_tokens) * a.hidden);
    const std::vector<float> got = pick_rows(h, cx.cd.tokens, a.hidden, a.dtype);
    const std::vector<float> ref = reference_int8(p, cx.in, cx.cd);
    r.check.ran = true;
    r.check.reference =
        scheme == QuantScheme::kHybrid ? "ref::moe_forward_hybrid" : "ref::moe_forward_per_token";
    r.check.tokens = static_cast<int64_t>(cx.cd.tokens.size());
    r.check.has_agreement = true;
    r.check.agreement = check_agreement(got, ref, a.dtype, a.hidden);
    r.check.rel_l2_vs_float = rel_l2(got, cx.cd.float_ref);
  }

  // Kernel launches of one forward, from a graph capture of it.
  {
    std::string why;
    cudaGraph_t g = capture(
        cx.stream, [&] { fwd(0, nullptr); }, &why);
    if (g) {
      r.kernels_per_forward = count_kernel_nodes(g);
      CK(cudaGraphDestroy(g));
    } else {
      cx.report->notes.push_back(r.name + ": forward could not be graph-captured: " + why);
    }
  }

  const std::vector<float> ms = cx.timing.total([&](int c) { fwd(c, nullptr); }, &r.card);
  r.time = summarize_times(ms);
  const std::vector<double> st = cx.timing.stages(fwd);
  for (int s = 0; s < kNumMoeStages; ++s) r.stage_median_ms.emplace_back(moe_stage_name(s), st[s]);
  r.gemm1_ms = st[kStageGemm1];
  r.gemm2_ms = st[kStageGemm2];

  // Exactly one forward inside the profiler region, after warm-up and outside the timing loops.
  if (a.profile && !cx.profile_done) {
    CK(cudaDeviceSynchronize());
    CK(cudaProfilerStart());
    fwd(0, nullptr);
    CK(cudaDeviceSynchronize());
    CK(cudaProfilerStop());
    cx.profile_done = true;
    std::printf("profile-region: 1 forward of %s, kernels_per_forward=%d\n", r.name.c_str(),
                r.kernels_per_forward);
    std::fflush(stdout);
  }
  return r;
}

// ---- dense baseline: our permute / SiLU / unpermute, cuBLAS per-expert GEMMs ------------------
PathResult run_dense(Context& cx) {
  const BenchArgs& a = cx.args;
  const int64_t M = a.num_tokens, K = a.hidden, N = a.intermediate;
  const int E = a.num_experts;
  const int64_t R = M * a.top_k;
  const size_t el = 2;
  PermuteProblem pp;
  pp.num_tokens = M;
  pp.hidden = K;
  pp.top_k = a.top_k;
  pp.num_experts = E;
  pp.num_local_experts = E;
  DevMem offsets((E + 1) * sizeof(int64_t), "dense: expert_offsets");
  DevMem p2ts(R * 4, "dense: permuted_to_token_slot"), ts2p(R * 4, "dense: token_slot_to_permuted");
  const size_t pws_bytes = moe_permute_workspace_size(pp);
  DevMem pws(pws_bytes, "dense: permute workspace");
  DevMem xh(R * K * el, "dense: permuted_hidden"), c1(R * 2 * N * el, "dense: C1");
  DevMem act(R * N * el, "dense: act"), c2(R * K * el, "dense: C2");
  DevMem out(M * K * el, "dense: output");
  DevMem cublas_ws(32u << 20, "cuBLAS workspace");

  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), "cublasCreate");
  std::unique_ptr<cublasContext, void (*)(cublasHandle_t)> guard(
      h, [](cublasHandle_t x) { cublasDestroy(x); });
  check_cublas(cublasSetStream(h, cx.stream), "cublasSetStream");
  // A fixed workspace keeps cuBLAS from allocating during graph capture.
  check_cublas(cublasSetWorkspace(h, cublas_ws.as(), cublas_ws.bytes()), "cublasSetWorkspace");

  auto permute = [&](int c) {
    PermuteOutputs po;
    po.expert_offsets = offsets.as<int64_t>();
    po.permuted_to_token_slot = p2ts.as<int32_t>();
    po.token_slot_to_permuted = ts2p.as<int32_t>();
    po.permuted_hidden = xh.as();
    moe_permute(pp, a.dtype, cx.in.d_hidden[c].as(), cx.in.d_ids[c].as<int32_t>(), nullptr, po,
                pws.as(), pws_bytes, cx.stream);
  };
  // Expert row counts on the host, once, before timing (the GEMM launches need them).
  permute(0);
  CK(cudaStreamSynchronize(cx.stream));
  const std::vector<int64_t> off = download<int64_t>(offsets.as(), E + 1);

  const cudaDataType_t dt = a.dtype == DType::kBFloat16 ? CUDA_R_16BF : CUDA_R_16F;
  const float one = 1.0f, zero = 0.0f;
  auto fwd = [&](int c) {
    permute(c);
    const auto* w13 = cx.in.d_w13.as<uint16_t>();
    const auto* w2 = cx.in.d_w2.as<uint16_t>();
    for (int e = 0; e < E; ++e) {
      const int64_t m = off[e + 1] - off[e];
      if (m == 0) continue;
      // Row-major C1_e [m, 2N] = X_e [m, K] * W13_e^T, i.e. column-major C1^T = W13_e * X_e^T.
      check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(2 * N),
                                static_cast<int>(m), static_cast<int>(K), &one, w13 + e * 2 * N * K,
                                dt, static_cast<int>(K), xh.as<uint16_t>() + off[e] * K, dt,
                                static_cast<int>(K), &zero, c1.as<uint16_t>() + off[e] * 2 * N, dt,
                                static_cast<int>(2 * N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (w13)");
    }
    silu_and_mul(c1.as(), a.dtype, R, N, act.as(), offsets.as<int64_t>() + E, cx.stream);
    for (int e = 0; e < E; ++e) {
      const int64_t m = off[e + 1] - off[e];
      if (m == 0) continue;
      check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(K),
                                static_cast<int>(m), static_cast<int>(N), &one, w2 + e * K * N, dt,
                                static_cast<int>(N), act.as<uint16_t>() + off[e] * N, dt,
                                static_cast<int>(N), &zero, c2.as<uint16_t>() + off[e] * K, dt,
                                static_cast<int>(K), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (w2)");
    }
    moe_unpermute(c2.as(), a.dtype, cx.in.d_weights[c].as<float>(), ts2p.as<int32_t>(), M, a.top_k,
                  K, out.as(), cx.stream);
  };

  PathResult r;
  r.name = std::string("cublas ") + dtype_name(a.dtype);
  r.role = "baseline (b)";
  r.kind = PathKind::kDenseCublas;

  // One eager run first: cuBLAS picks its kernels and loads them outside any capture.
  fwd(0);
  CK(cudaStreamSynchronize(cx.stream));
  // One graph per rotation copy, so the 2E host launches do not show up as GPU idle time.
  std::vector<cudaGraphExec_t> execs(kRotations, nullptr);
  bool graphs = true;
  for (int c = 0; c < kRotations && graphs; ++c) {
    std::string why;
    cudaGraph_t g = capture(
        cx.stream, [&] { fwd(c); }, &why);
    if (!g) {
      graphs = false;
      cx.report->notes.push_back("dense baseline could not be graph-captured (" + why +
                                 "): timed eagerly, host launch gaps included");
      break;
    }
    if (c == 0) r.kernels_per_forward = count_kernel_nodes(g);
    const cudaError_t e = cudaGraphInstantiate(&execs[c], g, 0);
    cudaGraphDestroy(g);
    check_cuda(e, "cudaGraphInstantiate");
  }
  auto run = [&](int c) {
    if (graphs)
      CK(cudaGraphLaunch(execs[c], cx.stream));
    else
      fwd(c);
  };

  if (a.check) {
    run(0);
    CK(cudaStreamSynchronize(cx.stream));
    const auto hout = download<uint16_t>(out.as(), static_cast<size_t>(M) * K);
    r.check.ran = true;
    r.check.reference = "ref::moe_forward_float";
    r.check.tokens = static_cast<int64_t>(cx.cd.tokens.size());
    r.check.rel_l2_vs_float = rel_l2(pick_rows(hout, cx.cd.tokens, K, a.dtype), cx.cd.float_ref);
  }
  r.time = summarize_times(cx.timing.total(run, &r.card));
  for (auto e : execs)
    if (e) cudaGraphExecDestroy(e);
  return r;
}

double measure_copy_gbps(cudaStream_t stream, int64_t* bytes_used) {
  size_t bytes = size_t(1) << 30;
  DevMem src, dst;
  for (;;) {
    try {
      src = DevMem(bytes, "copy bandwidth source");
      dst = DevMem(bytes, "copy bandwidth destination");
      break;
    } catch (const OutOfMemory&) {
      if (bytes <= (size_t(64) << 20)) throw;
      bytes /= 4;
    }
  }
  *bytes_used = static_cast<int64_t>(bytes);
  CK(cudaMemsetAsync(src.as(), 1, bytes, stream));
  i8h_tools::TimerConfig tc;  // 2 warm-up copies, 7 timed
  tc.stream = stream;
  tc.warmup = 2;
  tc.iters = 7;
  const std::vector<float> ms = i8h_tools::time_iterations_ms(
      tc,
      [&](int) {
        CK(cudaMemcpyAsync(dst.as(), src.as(), bytes, cudaMemcpyDeviceToDevice, stream));
      },
      check_cuda);
  const double t = summarize_times(ms).median_ms * 1e-3;
  return 2.0 * static_cast<double>(bytes) / t * 1e-9;  // read + write
}

int run(const BenchArgs& a) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    (void)cudaGetLastError();
    std::fprintf(stderr, "%s: no CUDA GPU found\n", kProg);
    return 1;
  }
  const ResolvedMoeOptions ro = resolve_moe_options(MoeOptions{});

  BenchReport rep;
  rep.args = a;
  rep.fused_silu_quant = ro.fused_silu_quant;
  rep.fused_permute_quant = ro.fused_permute_quant;
  rep.fused_source = env_value("VLLM_INT8_HYBRID_FUSED_SILU_QUANT") + ", " +
                     env_value("VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT");

  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, dev));
  rep.device.name = prop.name;
  rep.device.sm_major = prop.major;
  rep.device.sm_minor = prop.minor;
  rep.device.num_sms = prop.multiProcessorCount;
  rep.device.l2_bytes = prop.l2CacheSize;
  rep.device.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  CK(cudaDriverGetVersion(&rep.device.driver_version));
  CK(cudaRuntimeGetVersion(&rep.device.runtime_version));
  const BuildInfo bi = build_info();
  rep.build.cuda_archs = bi.cuda_archs;
  rep.build.cutlass_version = bi.cutlass_version;
  rep.build.cuda_version = bi.cuda_version;
  rep.peak = int8_dense_peak(prop.major, prop.minor, prop.name);

  // Validate the problem before any heavy work (throws InvalidArgument naming the argument).
  {
    MoeProblem p;
    p.num_tokens = a.num_tokens;
    p.hidden = a.hidden;
    p.intermediate = a.intermediate;
    p.num_experts = p.num_local_experts = a.num_experts;
    p.top_k = a.top_k;
    p.dtype = a.dtype;
    p.format = {a.quant_block_size, a.super_group_size, a.q_max};
    if (a.scheme != SchemeChoice::kPerToken) (void)moe_workspace_size(p, MoeOptions{});
    p.scheme = QuantScheme::kPerToken;
    if (a.scheme != SchemeChoice::kHybrid) (void)moe_workspace_size(p, MoeOptions{});
  }

  Context cx;
  cx.args = a;
  cx.report = &rep;
  CK(cudaStreamCreateWithFlags(&cx.stream, cudaStreamNonBlocking));
  std::unique_ptr<CUstream_st, void (*)(cudaStream_t)> stream_guard(
      cx.stream, [](cudaStream_t s) { cudaStreamDestroy(s); });

  rep.copy_gbps = measure_copy_gbps(cx.stream, &rep.copy_bytes);

  const int64_t M = a.num_tokens, K = a.hidden, N = a.intermediate;
  const int E = a.num_experts;
  const size_t flush_bytes =
      std::max<size_t>(2 * static_cast<size_t>(prop.l2CacheSize), size_t(64) << 20);
  cx.timing.flush = DevMem(flush_bytes, "L2 flush buffer");
  cx.timing.cfg.stream = cx.stream;
  cx.timing.cfg.flush = cx.timing.flush.as();
  cx.timing.cfg.flush_bytes = cx.timing.flush.bytes();
  cx.timing.cfg.warmup = a.warmup;
  cx.timing.cfg.iters = a.iters;
  cx.timing.monitor = i8h_tools::card_monitor_for(dev);
  cx.timing.cfg.monitor = cx.timing.monitor.get();
  rep.timing_method = detail::concat(
      "CUDA events around each whole forward; median/p10/p90 of ", a.iters, " iterations after ",
      a.warmup, " warm-up; before every timed iteration L2 is flushed by a ", flush_bytes >> 20,
      " MiB cudaMemsetAsync (L2 is ", prop.l2CacheSize >> 20,
      " MiB), outside the events; input activations, topk ids and topk weights rotate among ",
      kRotations,
      " device copies (weights are not copied: the flush evicts them); INT8 paths are launched "
      "eagerly, the dense cuBLAS baseline is replayed as a CUDA graph (GPU work only)");

  // ---- inputs ----
  Inputs& in = cx.in;
  in.hidden.resize(static_cast<size_t>(M) * K);
  in.w13.resize(static_cast<size_t>(E) * 2 * N * K);
  in.w2.resize(static_cast<size_t>(E) * K * N);
  fill_normal(in.hidden.data(), in.hidden.size(), a.dtype, 1.0f, a.seed, kStreamHidden);
  fill_normal(in.w13.data(), in.w13.size(), a.dtype, 1.0f / std::sqrt(static_cast<float>(K)),
              a.seed, kStreamW13);
  fill_normal(in.w2.data(), in.w2.size(), a.dtype, 1.0f / std::sqrt(static_cast<float>(N)), a.seed,
              kStreamW2);
  in.routing = make_routing(M, E, a.top_k, a.routing, a.seed);
  for (int c = 0; c < kRotations; ++c) {
    in.d_hidden[c] = upload(in.hidden, "hidden");
    in.d_ids[c] = upload(in.routing.ids, "topk_ids");
    in.d_weights[c] = upload(in.routing.weights, "topk_weights");
  }
  in.d_w13 = upload(in.w13, "w13 (dense)");
  in.d_w2 = upload(in.w2, "w2 (dense)");

  std::vector<int64_t> count(E, 0);
  for (int32_t id : in.routing.ids) ++count[id];
  rep.rows_total = rep.rows_kept = M * a.top_k;
  rep.active_experts =
      static_cast<int>(std::count_if(count.begin(), count.end(), [](int64_t c) { return c > 0; }));

  // ---- float reference of the sampled tokens (shared by every path's rel-L2) ----
  if (a.check) {
    cx.cd.tokens = sample_tokens(M, a.check_tokens);
    cx.cd.hidden_f = refns::to_float(in.hidden, a.dtype);
    const std::vector<float> w13f = refns::to_float(in.w13, a.dtype);
    const std::vector<float> w2f = refns::to_float(in.w2, a.dtype);
    refns::MoeRefProblem rp;
    rp.M = M;
    rp.K = K;
    rp.N = N;
    rp.E = E;
    rp.top_k = a.top_k;
    rp.dtype = a.dtype;
    rp.fmt = {a.quant_block_size, a.super_group_size, a.q_max};
    cx.cd.float_ref = parallel_tokens<double>(cx.cd.tokens, K, [&](const std::vector<int64_t>& s) {
      return refns::moe_forward_float(rp, cx.cd.hidden_f, in.routing.ids, in.routing.weights, w13f,
                                      w2f, &s);
    });
  }

  // ---- paths ----
  if (a.scheme != SchemeChoice::kPerToken)
    rep.paths.push_back(run_int8(cx, QuantScheme::kHybrid, "measured"));
  if (a.scheme != SchemeChoice::kHybrid)
    rep.paths.push_back(run_int8(cx, QuantScheme::kPerToken,
                                 a.scheme == SchemeChoice::kBoth ? "baseline (a)" : "measured"));
  rep.paths.push_back(run_dense(cx));

  const PathResult& dense = rep.paths.back();
  for (PathResult& p : rep.paths) {
    TrafficInputs ti;
    ti.path = p.kind;
    ti.M = M;
    ti.K = K;
    ti.N = N;
    ti.top_k = a.top_k;
    ti.rows_kept = rep.rows_kept;
    ti.active_experts = rep.active_experts;
    ti.block_size = a.quant_block_size;
    ti.super_group = a.super_group_size;
    ti.fused_silu_quant = rep.fused_silu_quant;
    ti.fused_permute_quant = rep.fused_permute_quant;
    p.traffic = count_traffic(ti);
    p.gemm1_ops = gemm1_ops(rep.rows_kept, K, N);
    p.gemm2_ops = gemm2_ops(rep.rows_kept, K, N);
    derive_figures(p, rep.peak, rep.copy_gbps);
    if (p.kind != PathKind::kDenseCublas && p.time.median_ms > 0)
      p.speedup_vs_dense = dense.time.median_ms / p.time.median_ms;
    if (p.check.ran && p.check.has_agreement && !p.check.agreement.agree) rep.agreement_ok = false;
  }
  if (!a.check) rep.notes.push_back("correctness check skipped (--no-check)");

  std::fputs(format_report(rep).c_str(), stdout);
  if (!a.json_path.empty()) {
    write_text_file(a.json_path, report_json(rep));
    std::printf("wrote %s\n", a.json_path.c_str());
  }
  return rep.agreement_ok ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  BenchArgs args;
  try {
    args = parse_bench_args(argc, argv);
  } catch (const CliError& e) {
    std::fprintf(stderr, "%s: %s\n", kProg, e.what());
    return 1;
  }
  if (args.help) {
    std::fputs(bench_help().c_str(), stdout);
    return 0;
  }
  try {
    return run(args);
  } catch (const InvalidArgument& e) {
    std::fprintf(stderr, "%s: invalid argument: %s\n", kProg, e.what());
  } catch (const OutOfMemory& e) {
    std::fprintf(stderr, "%s: %s\n", kProg, e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of host memory\n", kProg);
  } catch (const CliError& e) {
    std::fprintf(stderr, "%s: %s\n", kProg, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProg, e.what());
  }
  return 1;
}
