// GPU tests of silu_and_mul against the CPU reference: within 1 ulp of the output dtype (GPU and
// CPU expf may differ by an ulp), rows past num_valid_rows untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "int8_hybrid_moe/kernels.h"
#include "int8_hybrid_moe/reference.h"

namespace {

using namespace int8_hybrid_moe;
using i8h_test::DeviceBuffer;

int32_t ordered(uint16_t h) {
  return (h & 0x8000) ? int32_t(0x8000) - int32_t(h & 0x7fff) : int32_t(0x8000) + h;
}

TEST(KernelActivation, SiluAndMulMatchesReference) {
  I8H_REQUIRE_GPU();
  for (DType dt : {DType::kBFloat16, DType::kFloat16})
    for (int64_t N : {int64_t(128), int64_t(256), int64_t(512), int64_t(2048), int64_t(2176),
                      int64_t(7168), int64_t(100)})
      for (bool limit : {false, true}) {
        const uint64_t seed = i8h_test::fresh_seed();
        const int64_t R = std::max<int64_t>(1, (int64_t(1) << 20) / N) + 5;
        const int64_t valid = limit ? R / 3 : R;
        SCOPED_TRACE(::testing::Message() << "seed " << seed << " dtype " << dtype_name(dt) << " R "
                                          << R << " N " << N << " valid " << valid);
        const auto x = i8h_test::random_act(static_cast<size_t>(R * 2 * N), seed, dt, 3.0f);
        DeviceBuffer<uint16_t> d_x(x), d_out(static_cast<size_t>(R * N));
        DeviceBuffer<int64_t> nv(std::vector<int64_t>{valid});
        silu_and_mul(d_x.get(), dt, R, N, d_out.get(), limit ? nv.get() : nullptr, 0);
        I8H_CUDA_OK(cudaDeviceSynchronize());
        const auto out = d_out.download();
        for (int64_t r = 0; r < R; ++r)
          for (int64_t i = 0; i < N; ++i) {
            const uint16_t got = out[static_cast<size_t>(r * N + i)];
            if (r >= valid) {
              ASSERT_EQ(got, 0xffff) << "row " << r << " past num_valid_rows was written";
              continue;
            }
            const float g = ref::to_float(x[static_cast<size_t>(r * 2 * N + i)], dt);
            const float u = ref::to_float(x[static_cast<size_t>(r * 2 * N + N + i)], dt);
            const uint16_t want = ref::from_float(ref::silu_mul(g, u), dt);
            ASSERT_LE(std::abs(ordered(want) - ordered(got)), 1)
                << "row " << r << " col " << i << " g " << g << " u " << u << ": want "
                << ref::to_float(want, dt) << " got " << ref::to_float(got, dt);
          }
      }
}

}  // namespace
