// Host launcher of silu_and_mul. Arguments are validated before any CUDA call.
#include <algorithm>
#include <cstdint>

#include "int8_hybrid_moe/kernels.h"
#include "kernels/activation/silu.cuh"
#include "launchers/cuda_check.h"

namespace int8_hybrid_moe {

void silu_and_mul(const void* x, DType dtype, int64_t R, int64_t N, void* out,
                  const int64_t* num_valid_rows, cudaStream_t stream) {
  const char* fn = "silu_and_mul";
  validate_dtype(dtype, fn);
  I8H_CHECK_ARG(R >= 0, fn, "R", ">= 0", R);
  I8H_CHECK_ARG(N > 0, fn, "N", "> 0", N);
  if (R == 0) return;
  I8H_CHECK_NOT_NULL(x, fn, "x");
  I8H_CHECK_NOT_NULL(out, fn, "out");
  // 16-byte vectors when rows and bases allow it (N % 8 == 0 keeps every row start aligned);
  // otherwise a scalar path, so any N works.
  const bool vec = N % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;

  constexpr int kThreads = 256;
  const int64_t items = R * (vec ? N / 8 : N);
  const int64_t cap = int64_t(detail::current_device_sm_count()) * 8;
  const int grid =
      static_cast<int>(std::max<int64_t>(1, std::min(cap, (items + kThreads - 1) / kThreads)));
  const auto* x16 = static_cast<const uint16_t*>(x);
  auto* out16 = static_cast<uint16_t*>(out);
  I8H_DISPATCH_DTYPE(dtype, T, {
    if (vec) {
      kernels::silu_and_mul_kernel<T, 8>
          <<<grid, kThreads, 0, stream>>>(x16, R, N, num_valid_rows, out16);
    } else {
      kernels::silu_and_mul_kernel<T, 1>
          <<<grid, kThreads, 0, stream>>>(x16, R, N, num_valid_rows, out16);
    }
  });
  I8H_CHECK_LAUNCH("silu_and_mul_kernel");
}

}  // namespace int8_hybrid_moe
