// Reference GEMMs of one expert: exact integer inner sums (int64), scale terms in double. These
// are the exact values the GPU's fp32-flushed accumulation approximates (docs/FORMAT.md).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "int8_hybrid_moe/reference.h"

namespace int8_hybrid_moe::ref {
namespace {

// Exact: |sum| <= 127 * 127 * n, which fits int32 for any n below 133,000 (callers pass at most
// one block or, in the per-token GEMM, chunks of that size).
int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += int32_t(a[i]) * int32_t(b[i]);
  return s;
}

int64_t dot_i8_long(const int8_t* a, const int8_t* b, int64_t n) {
  constexpr int64_t kChunk = 65536;
  int64_t s = 0;
  for (int64_t i = 0; i < n; i += kChunk) s += dot_i8(a + i, b + i, std::min(kChunk, n - i));
  return s;
}

}  // namespace

std::vector<double> hybrid_gemm(const HybridTensor& a, const HybridTensor& w,
                                const HybridFormat& fmt) {
  constexpr const char* fn = "ref::hybrid_gemm";
  validate_format(fmt, fn);
  I8H_CHECK_ARG(a.K == w.K, fn, "w.K", detail::concat("equal to a.K = ", a.K), w.K);
  const int64_t K = a.K, nb = num_blocks(K, fmt), ng = num_groups(K, fmt);
  I8H_CHECK_ARG(a.nb == nb && a.ng == ng, fn, "a", "a tensor quantized with this format",
                "nb/ng mismatch");
  I8H_CHECK_ARG(w.nb == nb && w.ng == ng, fn, "w", "a tensor quantized with this format",
                "nb/ng mismatch");
  const int64_t R = a.rows, N = w.rows, B = fmt.block_size, S = fmt.super_group;
  std::vector<double> out(size_t(R * N));
  for (int64_t r = 0; r < R; ++r) {
    const int8_t* qa = a.q.data() + r * K;
    const int32_t* Qa = a.Q.data() + r * nb;
    const float* Fa = a.F.data() + r * ng;
    for (int64_t n = 0; n < N; ++n) {
      const int8_t* qw = w.q.data() + n * K;
      const int32_t* Qw = w.Q.data() + n * nb;
      const float* Fw = w.F.data() + n * ng;
      double acc = 0.0;
      for (int64_t g = 0; g < ng; ++g) {
        // Up to 256 blocks of 127^4 * B each: far inside int64 and exactly representable in
        // double (< 2^53) for every valid format.
        int64_t gsum = 0;
        for (int64_t b = g * S; b < std::min((g + 1) * S, nb); ++b) {
          const int64_t k0 = b * B, len = std::min(B, K - k0);
          gsum += int64_t(Qa[b]) * Qw[b] * dot_i8(qa + k0, qw + k0, len);
        }
        // Fa * Fw is exact in double; one rounding for the product with the integer sum.
        acc += (double(Fa[g]) * double(Fw[g])) * double(gsum);
      }
      out[size_t(r * N + n)] = acc;
    }
  }
  return out;
}

std::vector<double> per_token_gemm(const int8_t* qa, const float* sa, bool sa_per_row,
                                   const int8_t* qw, const float* sw, bool sw_per_channel,
                                   int64_t R, int64_t N, int64_t K) {
  constexpr const char* fn = "ref::per_token_gemm";
  I8H_CHECK_ARG(R >= 0, fn, "R", ">= 0", R);
  I8H_CHECK_ARG(N >= 0, fn, "N", ">= 0", N);
  I8H_CHECK_ARG(K > 0, fn, "K", "> 0", K);
  I8H_CHECK_ARG(qa && sa && qw && sw, fn, "qa/sa/qw/sw", "non-null", "nullptr");
  std::vector<double> out(size_t(R * N));
  for (int64_t r = 0; r < R; ++r) {
    const double a_scale = sa[sa_per_row ? r : 0];
    for (int64_t n = 0; n < N; ++n) {
      const double w_scale = sw[sw_per_channel ? n : 0];
      // Exact integer dot product (int64: no K limit here, unlike the GPU's int32).
      const int64_t dot = dot_i8_long(qa + r * K, qw + n * K, K);
      out[size_t(r * N + n)] = (a_scale * w_scale) * double(dot);
    }
  }
  return out;
}

}  // namespace int8_hybrid_moe::ref
