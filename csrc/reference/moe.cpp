// Reference of the whole MoE layer: the quantized pipelines exactly as the GPU runs them, and an
// unquantized double-precision layer to measure their error against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "int8_hybrid_moe/reference.h"

namespace int8_hybrid_moe::ref {
namespace {

// fp32 product rounded on its own: the volatile store keeps the compiler from contracting the
// following addition into an FMA, which the GPU contract forbids.
float mul_rn(float a, float b) {
  volatile float p = a * b;
  return p;
}

// The GEMM epilogue: the exact value rounded to fp32 (the GPU accumulates in fp32), then to dtype.
float round_result(double v, DType t) {
  // A finite double beyond the fp32 range would make the cast undefined; it is Inf in any dtype.
  if (std::fabs(v) > double(std::numeric_limits<float>::max()) && !std::isnan(v))
    return v > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  return round_to(float(v), t);
}

void validate_problem(const MoeRefProblem& p, const std::vector<float>& hidden,
                      const std::vector<int32_t>& topk_ids, const std::vector<float>& topk_weights,
                      const std::vector<int64_t>* token_subset, const char* fn) {
  validate_dtype(p.dtype, fn, "p.dtype");
  I8H_CHECK_ARG(p.M >= 0, fn, "p.M", ">= 0", p.M);
  I8H_CHECK_ARG(p.K > 0, fn, "p.K", "> 0", p.K);
  I8H_CHECK_ARG(p.N > 0, fn, "p.N", "> 0", p.N);
  I8H_CHECK_ARG(p.E >= 1, fn, "p.E", ">= 1", p.E);
  I8H_CHECK_ARG(p.top_k >= 1, fn, "p.top_k", ">= 1", p.top_k);
  I8H_CHECK_ARG(int64_t(hidden.size()) == p.M * p.K, fn, "hidden", "of size M*K", hidden.size());
  I8H_CHECK_ARG(int64_t(topk_ids.size()) == p.M * p.top_k, fn, "topk_ids", "of size M*top_k",
                topk_ids.size());
  I8H_CHECK_ARG(int64_t(topk_weights.size()) == p.M * p.top_k, fn, "topk_weights",
                "of size M*top_k", topk_weights.size());
  if (token_subset)
    for (int64_t t : *token_subset)
      I8H_CHECK_ARG(t >= 0 && t < p.M, fn, "token_subset", "token indices in [0, M)", t);
}

std::vector<int64_t> tokens_of(const MoeRefProblem& p, const std::vector<int64_t>* subset) {
  if (subset) return *subset;
  std::vector<int64_t> all(size_t(p.M));
  for (int64_t t = 0; t < p.M; ++t) all[size_t(t)] = t;
  return all;
}

// The part both quantized schemes share. gemm1(x, e) returns the exact [2N] GEMM1 row of the
// dtype-valued activation row x; gemm2(h, e) the exact [K] GEMM2 row of the dtype-valued h.
template <typename Gemm1, typename Gemm2>
std::vector<float> quantized_pipeline(const MoeRefProblem& p, const std::vector<float>& hidden,
                                      const std::vector<int32_t>& topk_ids,
                                      const std::vector<float>& topk_weights,
                                      const std::vector<int64_t>* token_subset, Gemm1 gemm1,
                                      Gemm2 gemm2) {
  const std::vector<int64_t> tokens = tokens_of(p, token_subset);
  const int64_t K = p.K, N = p.N;
  std::vector<float> out(tokens.size() * size_t(K), 0.0f);
  std::vector<float> x(static_cast<size_t>(K)), h(static_cast<size_t>(N)),
      acc(static_cast<size_t>(K));
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t t = tokens[i];
    // Identity for dtype values; keeps the reference meaningful for any fp32 input.
    for (int64_t k = 0; k < K; ++k) x[size_t(k)] = round_to(hidden[size_t(t * K + k)], p.dtype);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int j = 0; j < p.top_k; ++j) {
      const int32_t e = topk_ids[size_t(t * p.top_k + j)];
      if (e < 0 || e >= p.E) continue;  // dropped: contributes nothing
      const std::vector<double> gu = gemm1(x, e);
      for (int64_t n = 0; n < N; ++n) {
        const float g = round_result(gu[size_t(n)], p.dtype);
        const float u = round_result(gu[size_t(N + n)], p.dtype);
        h[size_t(n)] = round_to(silu_mul(g, u), p.dtype);
      }
      const std::vector<double> y = gemm2(h, e);
      const float w = topk_weights[size_t(t * p.top_k + j)];
      for (int64_t k = 0; k < K; ++k)
        acc[size_t(k)] = acc[size_t(k)] + mul_rn(w, round_result(y[size_t(k)], p.dtype));
    }
    for (int64_t k = 0; k < K; ++k)
      out[i * size_t(K) + size_t(k)] = round_to(acc[size_t(k)], p.dtype);
  }
  return out;
}

}  // namespace

float silu_mul(float g, float u) {
  const float d = 1.0f + std::exp(-g);
  const float s = g / d;
  return s * u;
}

std::vector<double> moe_forward_float(const MoeRefProblem& p, const std::vector<float>& hidden,
                                      const std::vector<int32_t>& topk_ids,
                                      const std::vector<float>& topk_weights,
                                      const std::vector<float>& w13, const std::vector<float>& w2,
                                      const std::vector<int64_t>* token_subset) {
  constexpr const char* fn = "ref::moe_forward_float";
  validate_problem(p, hidden, topk_ids, topk_weights, token_subset, fn);
  const int64_t K = p.K, N = p.N;
  I8H_CHECK_ARG(int64_t(w13.size()) == p.E * 2 * N * K, fn, "w13", "of size E*2N*K", w13.size());
  I8H_CHECK_ARG(int64_t(w2.size()) == p.E * K * N, fn, "w2", "of size E*K*N", w2.size());
  const std::vector<int64_t> tokens = tokens_of(p, token_subset);
  std::vector<double> out(tokens.size() * size_t(K), 0.0);
  std::vector<double> gu(static_cast<size_t>(2 * N)), h(static_cast<size_t>(N));
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int64_t t = tokens[i];
    const float* x = hidden.data() + t * K;
    double* o = out.data() + i * size_t(K);
    for (int j = 0; j < p.top_k; ++j) {
      const int32_t e = topk_ids[size_t(t * p.top_k + j)];
      if (e < 0 || e >= p.E) continue;
      const float* w13e = w13.data() + int64_t(e) * 2 * N * K;
      const float* w2e = w2.data() + int64_t(e) * K * N;
      for (int64_t n = 0; n < 2 * N; ++n) {
        double s = 0.0;
        for (int64_t k = 0; k < K; ++k) s += double(w13e[n * K + k]) * double(x[k]);
        gu[size_t(n)] = s;
      }
      for (int64_t n = 0; n < N; ++n) {
        const double g = gu[size_t(n)];
        h[size_t(n)] = g / (1.0 + std::exp(-g)) * gu[size_t(N + n)];
      }
      const double w = topk_weights[size_t(t * p.top_k + j)];
      for (int64_t k = 0; k < K; ++k) {
        double s = 0.0;
        for (int64_t n = 0; n < N; ++n) s += double(w2e[k * N + n]) * h[size_t(n)];
        o[k] += w * s;
      }
    }
  }
  return out;
}

std::vector<float> moe_forward_hybrid(const MoeRefProblem& p, const std::vector<float>& hidden,
                                      const std::vector<int32_t>& topk_ids,
                                      const std::vector<float>& topk_weights,
                                      const std::vector<HybridTensor>& w13_q,
                                      const std::vector<HybridTensor>& w2_q,
                                      const std::vector<int64_t>* token_subset) {
  constexpr const char* fn = "ref::moe_forward_hybrid";
  validate_problem(p, hidden, topk_ids, topk_weights, token_subset, fn);
  validate_format(p.fmt, fn);
  const int64_t K = p.K, N = p.N;
  I8H_CHECK_ARG(int64_t(w13_q.size()) == p.E, fn, "w13_q", "E tensors", w13_q.size());
  I8H_CHECK_ARG(int64_t(w2_q.size()) == p.E, fn, "w2_q", "E tensors", w2_q.size());
  for (int e = 0; e < p.E; ++e) {
    const HybridTensor& a = w13_q[size_t(e)];
    const HybridTensor& b = w2_q[size_t(e)];
    I8H_CHECK_ARG(a.rows == 2 * N && a.K == K && int64_t(a.q.size()) == 2 * N * K &&
                      a.nb == num_blocks(K, p.fmt) && a.ng == num_groups(K, p.fmt),
                  fn, "w13_q[e]", "a [2N, K] tensor in p.fmt", e);
    I8H_CHECK_ARG(b.rows == K && b.K == N && int64_t(b.q.size()) == K * N &&
                      b.nb == num_blocks(N, p.fmt) && b.ng == num_groups(N, p.fmt),
                  fn, "w2_q[e]", "a [K, N] tensor in p.fmt", e);
  }
  const HybridFormat fmt = p.fmt;
  auto gemm1 = [&](const std::vector<float>& x, int e) {
    return hybrid_gemm(quantize_hybrid(x.data(), 1, K, fmt), w13_q[size_t(e)], fmt);
  };
  auto gemm2 = [&](const std::vector<float>& h, int e) {
    return hybrid_gemm(quantize_hybrid(h.data(), 1, N, fmt), w2_q[size_t(e)], fmt);
  };
  return quantized_pipeline(p, hidden, topk_ids, topk_weights, token_subset, gemm1, gemm2);
}

std::vector<float> moe_forward_per_token(const MoeRefProblem& p, const std::vector<float>& hidden,
                                         const std::vector<int32_t>& topk_ids,
                                         const std::vector<float>& topk_weights,
                                         const std::vector<PerTokenTensor>& w13_q,
                                         const std::vector<PerTokenTensor>& w2_q,
                                         const std::vector<int64_t>* token_subset) {
  constexpr const char* fn = "ref::moe_forward_per_token";
  validate_problem(p, hidden, topk_ids, topk_weights, token_subset, fn);
  const int64_t K = p.K, N = p.N;
  I8H_CHECK_ARG(int64_t(w13_q.size()) == p.E, fn, "w13_q", "E tensors", w13_q.size());
  I8H_CHECK_ARG(int64_t(w2_q.size()) == p.E, fn, "w2_q", "E tensors", w2_q.size());
  for (int e = 0; e < p.E; ++e) {
    const PerTokenTensor& a = w13_q[size_t(e)];
    const PerTokenTensor& b = w2_q[size_t(e)];
    I8H_CHECK_ARG(a.rows == 2 * N && a.K == K && int64_t(a.q.size()) == 2 * N * K &&
                      int64_t(a.scale.size()) == 2 * N,
                  fn, "w13_q[e]", "a [2N, K] per-channel tensor", e);
    I8H_CHECK_ARG(
        b.rows == K && b.K == N && int64_t(b.q.size()) == K * N && int64_t(b.scale.size()) == K, fn,
        "w2_q[e]", "a [K, N] per-channel tensor", e);
  }
  auto gemm = [](const std::vector<float>& x, const PerTokenTensor& w) {
    const PerTokenTensor a = quantize_per_token(x.data(), 1, w.K);
    return per_token_gemm(a.q.data(), a.scale.data(), true, w.q.data(), w.scale.data(), true, 1,
                          w.rows, w.K);
  };
  auto gemm1 = [&](const std::vector<float>& x, int e) { return gemm(x, w13_q[size_t(e)]); };
  auto gemm2 = [&](const std::vector<float>& h, int e) { return gemm(h, w2_q[size_t(e)]); };
  return quantized_pipeline(p, hidden, topk_ids, topk_weights, token_subset, gemm1, gemm2);
}

}  // namespace int8_hybrid_moe::ref
