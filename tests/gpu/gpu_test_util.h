// Shared helpers of the GPU tests: skip when no GPU, RAII device buffers, poisoning, random data,
// the GEMM outputs' tolerance.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "int8_hybrid_moe/common.h"
#include "int8_hybrid_moe/reference.h"

namespace i8h_test {

inline bool gpu_available() {
  static const bool ok = [] {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  }();
  return ok;
}

// First statement of every GPU test: reported as SKIPPED (never passed) without a GPU.
#define I8H_REQUIRE_GPU()                                                      \
  do {                                                                         \
    if (!::i8h_test::gpu_available()) GTEST_SKIP() << "no CUDA GPU available"; \
  } while (0)

#define I8H_CUDA_OK(expr)                                                  \
  do {                                                                     \
    cudaError_t e_ = (expr);                                               \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_); \
  } while (0)

// Device buffer of T; poisoned with 0xFF bytes on creation so unwritten outputs show.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  explicit DeviceBuffer(const std::vector<T>& h) {
    resize(h.size());
    upload(h);
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }

  void resize(size_t n) {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = n;
    if (n == 0) return;
    if (cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)) != cudaSuccess)
      throw std::bad_alloc();
    poison();
  }
  void poison(uint8_t byte = 0xFF) {
    if (n_) cudaMemset(p_, byte, n_ * sizeof(T));
  }
  void upload(const std::vector<T>& h) {
    if (h.size() != n_) throw std::runtime_error("DeviceBuffer::upload size mismatch");
    if (n_) cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// A fresh, non-deterministic seed per check (printed by the caller on failure).
inline uint64_t fresh_seed() {
  static std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

// Random activations / weights as raw 16-bit words of `dtype`, normal(0, stddev), never all-zero.
inline std::vector<uint16_t> random_act(size_t n, int_fast64_t seed, int8_hybrid_moe::DType dtype,
                                        float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<uint16_t> h(n);
  for (auto& v : h) v = int8_hybrid_moe::ref::from_float(dist(rng), dtype);
  return h;
}

// One ulp of the output dtype at |v| (fp16: at least the smallest normal's).
inline double ulp_of(double v, int8_hybrid_moe::DType t) {
  const bool bf16 = t == int8_hybrid_moe::DType::kBFloat16;
  const double a = std::max(std::fabs(v), bf16 ? 1e-30 : 6.1e-5);
  return std::ldexp(1.0, static_cast<int>(std::floor(std::log2(a))) - (bf16 ? 7 : 10));
}

// Magnitude bound of the hybrid contract for output (row r of a, channel n of w): sum |terms|.
inline double hybrid_magnitude(const int8_hybrid_moe::ref::HybridTensor& a, int64_t r,
                               const int8_hybrid_moe::ref::HybridTensor& w, int64_t n,
                               const int8_hybrid_moe::HybridFormat& f) {
  double total = 0;
  for (int64_t b = 0; b < a.nb; ++b) {
    int64_t s = 0;
    const int64_t k1 = std::min<int64_t>((b + 1) * f.block_size, a.K);
    for (int64_t k = b * f.block_size; k < k1; ++k)
      s += int64_t(a.q[r * a.K + k]) * w.q[n * w.K + k];
    const int64_t g = b / f.super_group;
    total += std::fabs(double(a.F[r * a.ng + g]) * w.F[n * w.ng + g]) * double(a.Q[r * a.nb + b]) *
             w.Q[n * w.nb + b] * std::fabs(double(s));
  }
  return total;
}

// Allowed |gpu - ref| of a hybrid GEMM output against the float64 reference: the one final
// rounding (1 ulp of the output dtype at |ref|) plus 1e-6 of the magnitude bound, for the fp32
// sums of the per-group terms in the kernel's order. The second part is relative to the terms,
// not the result: an output that cancels to 2e-7 of its terms (seen on the device: 76 of terms,
// result -1.4e-5) is off by several of its own ulps and still right; any indexing or scale error
// is O(magnitude).
inline double hybrid_tolerance(double ref, int8_hybrid_moe::DType out, double magnitude) {
  return ulp_of(ref, out) + 1e-6 * magnitude;
}

}  // namespace i8h_test
