// Hybrid blockwise and per-token INT8 quantization of the CPU reference (docs/FORMAT.md). Every
// fp32 step is written as its own expression, in the order of the spec, so it rounds exactly as
// the GPU kernels do (no multiply-add appears, so contraction cannot change anything).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "int8_hybrid_moe/reference.h"

namespace int8_hybrid_moe::ref {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// fmaxf / fminf semantics (a NaN operand yields the other one), as the CUDA kernels use.
float fmax_(float a, float b) {
  return std::fmax(a, b);
}
float fmin_(float a, float b) {
  return std::fmin(a, b);
}

// rintf with the default rounding mode: round half to even.
int8_t quantize_value(float x, float scale) {
  return int8_t(fmin_(127.0f, fmax_(-127.0f, std::nearbyint(x / scale))));
}

}  // namespace

HybridTensor quantize_hybrid(const float* x, int64_t rows, int64_t K, const HybridFormat& fmt) {
  constexpr const char* fn = "ref::quantize_hybrid";
  validate_format(fmt, fn);
  I8H_CHECK_ARG(rows >= 0, fn, "rows", ">= 0", rows);
  I8H_CHECK_ARG(K > 0, fn, "K", "> 0", K);
  I8H_CHECK_ARG(x != nullptr || rows == 0, fn, "x", "non-null", "nullptr");

  HybridTensor t;
  t.rows = rows;
  t.K = K;
  t.nb = num_blocks(K, fmt);
  t.ng = num_groups(K, fmt);
  t.q.assign(size_t(rows * K), 0);
  t.Q.assign(size_t(rows * t.nb), 1);
  t.F.assign(size_t(rows * t.ng), 1.0f);

  const int64_t B = fmt.block_size, S = fmt.super_group;
  const float denom = float(kInt8Max * fmt.q_max);  // exact: at most 127 * 127
  const float qmax_f = float(fmt.q_max);
  std::vector<float> amax(size_t(t.nb));
  std::vector<char> finite(size_t(t.nb));

  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * K;
    int8_t* qr = t.q.data() + r * K;
    int32_t* Qr = t.Q.data() + r * t.nb;
    float* Fr = t.F.data() + r * t.ng;

    for (int64_t b = 0; b < t.nb; ++b) {
      float m = 0.0f;
      bool ok = true;
      for (int64_t k = b * B; k < std::min((b + 1) * B, K); ++k) {
        if (!std::isfinite(xr[k])) ok = false;
        m = std::max(m, std::fabs(xr[k]));
      }
      amax[size_t(b)] = m;
      finite[size_t(b)] = ok;
    }

    for (int64_t g = 0; g < t.ng; ++g) {
      const int64_t b0 = g * S, b1 = std::min((g + 1) * S, t.nb);
      float gmax = 0.0f;
      bool ok = true;
      for (int64_t b = b0; b < b1; ++b) {
        gmax = std::max(gmax, amax[size_t(b)]);
        ok = ok && finite[size_t(b)];
      }
      if (!ok) {
        // Poison the whole group: q = 0 and F = NaN make every product with it NaN.
        Fr[g] = kNaN;
        for (int64_t b = b0; b < b1; ++b) Qr[b] = fmt.q_max;
        // q stays 0 from the initialization.
        continue;
      }
      const float F = (gmax == 0.0f) ? 1.0f : gmax / denom;
      const float t127 = 127.0f * F;
      Fr[g] = F;
      for (int64_t b = b0; b < b1; ++b) {
        const int32_t Q = int32_t(fmin_(qmax_f, fmax_(1.0f, std::ceil(amax[size_t(b)] / t127))));
        Qr[b] = Q;
        const float s = float(Q) * F;
        for (int64_t k = b * B; k < std::min((b + 1) * B, K); ++k) qr[k] = quantize_value(xr[k], s);
      }
    }
  }
  return t;
}

std::vector<HybridTensor> split_experts(const std::vector<int8_t>& q, const std::vector<int32_t>& Q,
                                        const std::vector<float>& F, int64_t E, int64_t rows,
                                        int64_t K, const HybridFormat& fmt) {
  constexpr const char* fn = "ref::split_experts";
  validate_format(fmt, fn);
  I8H_CHECK_ARG(E >= 0, fn, "E", ">= 0", E);
  I8H_CHECK_ARG(rows >= 0, fn, "rows", ">= 0", rows);
  I8H_CHECK_ARG(K > 0, fn, "K", "> 0", K);
  const int64_t nb = num_blocks(K, fmt), ng = num_groups(K, fmt);
  I8H_CHECK_ARG(int64_t(q.size()) == E * rows * K, fn, "q", "E * rows * K elements", q.size());
  I8H_CHECK_ARG(int64_t(Q.size()) == E * rows * nb, fn, "Q", "E * rows * nb elements", Q.size());
  I8H_CHECK_ARG(int64_t(F.size()) == E * rows * ng, fn, "F", "E * rows * ng elements", F.size());
  std::vector<HybridTensor> v(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) {
    HybridTensor& t = v[size_t(e)];
    t.rows = rows;
    t.K = K;
    t.nb = nb;
    t.ng = ng;
    t.q.assign(q.begin() + e * rows * K, q.begin() + (e + 1) * rows * K);
    t.Q.assign(Q.begin() + e * rows * nb, Q.begin() + (e + 1) * rows * nb);
    t.F.assign(F.begin() + e * rows * ng, F.begin() + (e + 1) * rows * ng);
  }
  return v;
}

std::vector<float> dequantize_hybrid(const HybridTensor& t, const HybridFormat& fmt) {
  constexpr const char* fn = "ref::dequantize_hybrid";
  validate_format(fmt, fn);
  I8H_CHECK_ARG(t.nb == num_blocks(t.K, fmt) && t.ng == num_groups(t.K, fmt), fn, "t",
                "a tensor quantized with this format", "nb/ng mismatch");
  std::vector<float> x(size_t(t.rows * t.K));
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t k = 0; k < t.K; ++k) {
      const int64_t b = k / fmt.block_size, g = b / fmt.super_group;
      // The same block scale s = Q * F the quantizer divided by.
      const float s = float(t.Q[size_t(r * t.nb + b)]) * t.F[size_t(r * t.ng + g)];
      x[size_t(r * t.K + k)] = float(t.q[size_t(r * t.K + k)]) * s;
    }
  return x;
}

PerTokenTensor quantize_per_token(const float* x, int64_t rows, int64_t K) {
  constexpr const char* fn = "ref::quantize_per_token";
  I8H_CHECK_ARG(rows >= 0, fn, "rows", ">= 0", rows);
  I8H_CHECK_ARG(K > 0, fn, "K", "> 0", K);
  I8H_CHECK_ARG(x != nullptr || rows == 0, fn, "x", "non-null", "nullptr");
  PerTokenTensor t;
  t.rows = rows;
  t.K = K;
  t.q.assign(size_t(rows * K), 0);
  t.scale.assign(size_t(rows), 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * K;
    float a = 0.0f;
    bool ok = true;
    for (int64_t k = 0; k < K; ++k) {
      if (!std::isfinite(xr[k])) ok = false;
      a = std::max(a, std::fabs(xr[k]));
    }
    if (!ok) {
      t.scale[size_t(r)] = kNaN;  // q stays 0
      continue;
    }
    const float scale = (a == 0.0f) ? 1.0f : a / 127.0f;
    t.scale[size_t(r)] = scale;
    for (int64_t k = 0; k < K; ++k) t.q[size_t(r * K + k)] = quantize_value(xr[k], scale);
  }
  return t;
}

std::vector<float> dequantize_per_token(const PerTokenTensor& t) {
  std::vector<float> x(size_t(t.rows * t.K));
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t k = 0; k < t.K; ++k)
      x[size_t(r * t.K + k)] = float(t.q[size_t(r * t.K + k)]) * t.scale[size_t(r)];
  return x;
}

}  // namespace int8_hybrid_moe::ref
