// Unit tests of the CPU reference, part 1: bf16/fp16 conversions, the hybrid and per-token
// formats, and the reference GEMMs. Random inputs use a fresh seed per run (printed with every
// failure); set I8H_TEST_SEED to replay one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "int8_hybrid_moe/format.h"
#include "int8_hybrid_moe/reference.h"
#include "cpp/cpu_test_util.h"

namespace i8h = int8_hybrid_moe;
namespace ref = int8_hybrid_moe::ref;
using i8h::DType;
using i8h::HybridFormat;

namespace {

using i8h_cpu_test::base_seed;

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Independent decoders written from the IEEE definitions (value = significand * 2^exponent).
double bf16_value(uint16_t h) {
  const int e = (h >> 7) & 0xff, m = h & 0x7f;
  const double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0xff) return m ? std::nan("") : s * HUGE_VAL;
  if (e == 0) return s * std::ldexp(double(m), -133);
  return s * std::ldexp(double(128 + m), e - 134);
}
double fp16_value(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0x1f) return m ? std::nan("") : s * HUGE_VAL;
  if (e == 0) return s * std::ldexp(double(m), -24);
  return s * std::ldexp(double(1024 + m), e - 25);
}

struct Fmt16 {
  DType t;
  int man_bits;     // explicit mantissa bits
  uint16_t inf;     // magnitude code of +Inf
  double overflow;  // the value one step past the largest finite one (2^(emax+1))
  double (*value)(uint16_t);
};
const Fmt16 kBf16{DType::kBFloat16, 7, 0x7f80, std::ldexp(1.0, 128), bf16_value};
const Fmt16 kFp16{DType::kFloat16, 10, 0x7c00, 65536.0, fp16_value};

// Magnitude of code c as a rounding candidate: Inf stands for 2^(emax+1), which is what
// round-to-nearest-even compares against at the top of the range.
double candidate(const Fmt16& f, uint16_t mag) {
  return mag == f.inf ? f.overflow : f.value(mag);
}

// Checks that code h is the round-to-nearest-even encoding of finite x.
void expect_rne(const Fmt16& f, float x) {
  const uint16_t h = ref::from_float(x, f.t);
  const double ax = std::fabs(double(x));
  const uint16_t mag = h & 0x7fff;
  ASSERT_LE(mag, f.inf) << "x=" << x;
  if (ax != 0.0) {
    ASSERT_EQ(bool(h & 0x8000), std::signbit(x)) << "x=" << x;
  }
  const double d = std::fabs(candidate(f, mag) - ax);
  for (int step : {-1, 1}) {
    const int other = int(mag) + step;
    if (other < 0 || other > int(f.inf)) continue;
    const double d2 = std::fabs(candidate(f, uint16_t(other)) - ax);
    ASSERT_LE(d, d2) << "x=" << x << " code=" << h;
    if (d == d2) {
      ASSERT_EQ(mag & 1, 0) << "tie not to even, x=" << x;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

TEST(RefConversions, EveryBf16PatternRoundTripsAndDecodesExactly) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = ref::bf16_to_float(uint16_t(h));
    const double v = bf16_value(uint16_t(h));
    if (std::isnan(v)) {
      ASSERT_TRUE(std::isnan(f)) << h;
      const uint16_t back = ref::float_to_bf16(f);
      ASSERT_TRUE(std::isnan(ref::bf16_to_float(back))) << h;
      ASSERT_EQ(back & 0x8000, h & 0x8000) << h;
      continue;
    }
    ASSERT_EQ(double(f), v) << h;
    ASSERT_EQ(ref::float_to_bf16(f), h) << h;  // also keeps the sign of -0
    ASSERT_EQ(ref::round_to(f, DType::kBFloat16), f) << h;
  }
}

TEST(RefConversions, EveryFp16PatternRoundTripsAndDecodesExactly) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = ref::fp16_to_float(uint16_t(h));
    const double v = fp16_value(uint16_t(h));
    if (std::isnan(v)) {
      ASSERT_TRUE(std::isnan(f)) << h;
      const uint16_t back = ref::float_to_fp16(f);
      ASSERT_TRUE(std::isnan(ref::fp16_to_float(back))) << h;
      ASSERT_EQ(back & 0x8000, h & 0x8000) << h;
      continue;
    }
    ASSERT_EQ(double(f), v) << h;
    ASSERT_EQ(ref::float_to_fp16(f), h) << h;
    ASSERT_EQ(ref::to_float(uint16_t(h), DType::kFloat16), f) << h;
  }
}

TEST(RefConversions, KnownValuesAndTiesToEven) {
  const float one = 1.0f;
  // bf16 has a 2^-7 step at 1: 1 + 2^-8 is a tie (down to even 1.0), 1 + 3*2^-8 rounds up to even.
  EXPECT_EQ(ref::float_to_bf16(one), 0x3f80);
  EXPECT_EQ(ref::float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(ref::float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(ref::float_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_EQ(ref::float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(ref::float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // overflow -> Inf
  EXPECT_EQ(ref::float_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(ref::float_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(ref::float_to_bf16(float_of(0x00018000u)), 0x0002);  // subnormal tie, up to even
  EXPECT_TRUE(std::isnan(ref::bf16_to_float(ref::float_to_bf16(float_of(0x7f800001u)))));
  // fp16: step 2^-10 at 1; max finite 65504; 65520 is the tie between 65504 and "65536" -> Inf.
  EXPECT_EQ(ref::float_to_fp16(one), 0x3c00);
  EXPECT_EQ(ref::float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(ref::float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(ref::float_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(ref::float_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(ref::float_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(ref::float_to_fp16(-1e9f), 0xfc00);
  EXPECT_EQ(ref::float_to_fp16(0.1f), 0x2e66);
  // Subnormals (step 2^-24): 2^-25 ties down to 0, 1.5*2^-25 -> 1, 3*2^-25 ties up to even 2.
  EXPECT_EQ(ref::float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(ref::float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(ref::float_to_fp16(1.5f * std::ldexp(1.0f, -25)), 0x0001);
  EXPECT_EQ(ref::float_to_fp16(3.0f * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(ref::float_to_fp16(-std::ldexp(1.0f, -26)), 0x8000);
  EXPECT_EQ(ref::float_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);  // carries into the normals
  EXPECT_EQ(ref::fp16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(ref::fp16_to_float(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_TRUE(std::isnan(ref::fp16_to_float(ref::float_to_fp16(float_of(0x7f800001u)))));
  EXPECT_TRUE(std::isinf(ref::fp16_to_float(0xfc00)));
}

TEST(RefConversions, RandomFloatsRoundToNearestEven) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 1);
  std::uniform_int_distribution<uint32_t> any_bits;
  std::uniform_int_distribution<uint32_t> low16(0, 0xffff);
  for (int i = 0; i < 100000; ++i) {
    float x = float_of(any_bits(rng));
    if (!std::isfinite(x)) continue;
    ASSERT_NO_FATAL_FAILURE(expect_rne(kBf16, x));
    // Values inside (and just around) the fp16 range, including its subnormals.
    const float y =
        std::ldexp(float_of((bits_of(x) & 0x807fffffu) | 0x3f800000u), int(low16(rng) % 44) - 27);
    ASSERT_NO_FATAL_FAILURE(expect_rne(kFp16, y));
    // Exact ties: a 16-bit value plus half its step.
    const uint16_t h = uint16_t(low16(rng) % 0x7bff);  // h + 1 stays finite
    const float tie = float((fp16_value(h) + fp16_value(uint16_t(h + 1))) / 2);
    ASSERT_NO_FATAL_FAILURE(expect_rne(kFp16, tie));
  }
}

// ---------------------------------------------------------------------------------------------
// Hybrid quantization
// ---------------------------------------------------------------------------------------------

// Random dtype values whose magnitude varies per `chunk` columns (log-uniform over 2^-8..1), with
// a few exact-zero chunks: the structure blockwise scales exist for.
std::vector<float> structured_rows(std::mt19937_64& rng, int64_t rows, int64_t K, int64_t chunk,
                                   DType t, double zero_chunk_prob = 0.05) {
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> ue(-8.0f, 0.0f), u01(0.0f, 1.0f);
  std::vector<float> x(size_t(rows * K));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < K; c += chunk) {
      const bool zero = u01(rng) < zero_chunk_prob;
      const float scale = std::exp2(ue(rng));
      for (int64_t k = c; k < std::min(K, c + chunk); ++k)
        x[size_t(r * K + k)] = zero ? 0.0f : ref::round_to(scale * nd(rng), t);
    }
  return x;
}

float block_amax(const float* row, int64_t K, const HybridFormat& f, int64_t b) {
  float m = 0.0f;
  for (int64_t k = b * f.block_size; k < std::min(K, (b + 1) * f.block_size); ++k)
    m = std::max(m, std::fabs(row[k]));
  return m;
}

// Every property of a finite quantization that the contract fixes.
void check_hybrid(const std::vector<float>& x, int64_t rows, int64_t K, const HybridFormat& f) {
  const ref::HybridTensor t = ref::quantize_hybrid(x.data(), rows, K, f);
  const int64_t nb = i8h::num_blocks(K, f), ng = i8h::num_groups(K, f);
  ASSERT_EQ(t.nb, nb);
  ASSERT_EQ(t.ng, ng);
  ASSERT_EQ(t.q.size(), size_t(rows * K));
  ASSERT_EQ(t.Q.size(), size_t(rows * nb));
  ASSERT_EQ(t.F.size(), size_t(rows * ng));
  const std::vector<float> dq = ref::dequantize_hybrid(t, f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * K;
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t b0 = g * f.super_group, b1 = std::min(nb, (g + 1) * f.super_group);
      float gmax = 0.0f;
      for (int64_t b = b0; b < b1; ++b) gmax = std::max(gmax, block_amax(xr, K, f, b));
      const float F = t.F[size_t(r * ng + g)];
      if (gmax == 0.0f) {
        ASSERT_EQ(F, 1.0f);
      } else {
        ASSERT_EQ(F, gmax / float(127 * f.q_max)) << "r=" << r << " g=" << g;
      }
      bool max_block_has_qmax = gmax == 0.0f;
      for (int64_t b = b0; b < b1; ++b) {
        const int32_t Q = t.Q[size_t(r * nb + b)];
        const float amax = block_amax(xr, K, f, b);
        ASSERT_GE(Q, 1);
        ASSERT_LE(Q, f.q_max);
        const float expect_Q =
            std::fmin(float(f.q_max), std::fmax(1.0f, std::ceil(amax / (127.0f * F))));
        ASSERT_EQ(Q, int32_t(expect_Q)) << "r=" << r << " b=" << b;
        if (amax == gmax && Q == f.q_max) max_block_has_qmax = true;
        const double step = double(Q) * double(F);
        for (int64_t k = b * f.block_size; k < std::min(K, (b + 1) * f.block_size); ++k) {
          const int8_t q = t.q[size_t(r * K + k)];
          ASSERT_GE(q, -127);
          ASSERT_LE(q, 127);
          // Half a step, plus the two fp32 roundings (x / s and s = Q * F) of the quantizer.
          ASSERT_LE(std::fabs(double(xr[k]) - double(q) * step), step * (0.5 + 1.0 / 65536))
              << "r=" << r << " k=" << k << " x=" << xr[k] << " q=" << int(q) << " Q=" << Q;
          if (xr[k] == 0.0f) {
            ASSERT_EQ(q, 0);
          }
          ASSERT_EQ(dq[size_t(r * K + k)], float(q) * (float(Q) * F));
        }
      }
      ASSERT_TRUE(max_block_has_qmax) << "r=" << r << " g=" << g;
    }
  }
}

struct FormatCase {
  int B, S, q_max;
  int64_t K;
};

TEST(RefHybridQuant, ReconstructionScaleRangeAndMaxBlock) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 2);
  const FormatCase cases[] = {
      {128, 256, 16, 512},  {128, 2, 16, 1024}, {256, 2, 16, 2176}, {32, 1, 16, 48},
      {32, 3, 127, 48 * 8}, {16, 4, 1, 400},    {64, 1, 127, 256},  {128, 3, 127, 2176},
      {16, 256, 16, 16},    {128, 1, 1, 300},   {48, 2, 5, 1000},
  };
  for (const FormatCase& c : cases) {
    for (DType dt : {DType::kBFloat16, DType::kFloat16}) {
      SCOPED_TRACE(::testing::Message() << "B=" << c.B << " S=" << c.S << " q_max=" << c.q_max
                                        << " K=" << c.K << " " << i8h::dtype_name(dt));
      const HybridFormat f{c.B, c.S, c.q_max};
      const int64_t rows = 6;
      std::uniform_int_distribution<int> chunk_pick(0, 2);
      const int64_t chunk = std::vector<int64_t>{16, c.B, 7}[size_t(chunk_pick(rng))];
      std::vector<float> x = structured_rows(rng, rows, c.K, chunk, dt);
      std::fill(x.begin() + 2 * c.K, x.begin() + 3 * c.K, 0.0f);  // one all-zero row
      ASSERT_NO_FATAL_FAILURE(check_hybrid(x, rows, c.K, f));
    }
  }
}

TEST(RefHybridQuant, ZeroRowsAndZeroBlocks) {
  const HybridFormat f{32, 2, 16};
  const int64_t K = 160;  // 5 blocks, 3 groups
  std::vector<float> x(size_t(2 * K), 0.0f);
  for (int64_t k = 64; k < 96; ++k) x[size_t(K + k)] = 0.25f * float(k - 80);  // row 1, block 2
  const ref::HybridTensor t = ref::quantize_hybrid(x.data(), 2, K, f);
  for (int64_t g = 0; g < 3; ++g) EXPECT_EQ(t.F[size_t(g)], 1.0f);
  for (int64_t b = 0; b < 5; ++b) EXPECT_EQ(t.Q[size_t(b)], 1);
  for (int64_t k = 0; k < K; ++k) EXPECT_EQ(t.q[size_t(k)], 0);
  // Row 1: group 1 (blocks 2, 3) is non-zero; block 3 inside it is zero, groups 0 and 2 too.
  EXPECT_EQ(t.F[3 + 0], 1.0f);
  EXPECT_EQ(t.F[3 + 1], 4.0f / float(127 * 16));
  EXPECT_EQ(t.F[3 + 2], 1.0f);
  EXPECT_EQ(t.Q[5 + 2], 16);
  EXPECT_EQ(t.Q[5 + 3], 1);
  for (int64_t k = 96; k < 128; ++k) EXPECT_EQ(t.q[size_t(K + k)], 0);
  EXPECT_EQ(t.q[size_t(K + 64)], -127);  // -4.0 is the group max
  EXPECT_EQ(t.q[size_t(K + 80)], 0);
}

TEST(RefHybridQuant, ConstantRows) {
  for (int q_max : {1, 16, 127}) {
    const HybridFormat f{64, 2, q_max};
    const int64_t K = 320;
    std::vector<float> x(size_t(2 * K));
    for (int64_t k = 0; k < K; ++k) {
      x[size_t(k)] = 0.7109375f;  // a bf16 value
      x[size_t(K + k)] = -3.0f;
    }
    const ref::HybridTensor t = ref::quantize_hybrid(x.data(), 2, K, f);
    for (int64_t b = 0; b < 2 * t.nb; ++b) EXPECT_EQ(t.Q[size_t(b)], q_max);
    for (int64_t k = 0; k < K; ++k) {
      EXPECT_EQ(t.q[size_t(k)], 127);
      EXPECT_EQ(t.q[size_t(K + k)], -127);
    }
    for (int64_t g = 0; g < t.ng; ++g) {
      EXPECT_EQ(t.F[size_t(g)], 0.7109375f / float(127 * q_max));
      EXPECT_EQ(t.F[size_t(t.ng + g)], 3.0f / float(127 * q_max));
    }
  }
}

TEST(RefHybridQuant, RintTiesToEven) {
  // gmax = 127 * 16 * 2^-10 makes F = 2^-10 exactly, so the max block has s = 16 * F = 2^-6 and
  // x = (k + 1/2) * 2^-6 lands exactly on a tie of x / s.
  const HybridFormat f{32, 256, 16};
  const float s = std::ldexp(1.0f, -6);
  std::vector<float> x(32, 0.0f);
  const float halves[] = {0.5f, 1.5f, 2.5f, 3.5f, -0.5f, -1.5f, -2.5f, -3.5f, 126.5f, -125.5f};
  const int expected[] = {0, 2, 2, 4, 0, -2, -2, -4, 126, -126};
  x[0] = 127.0f * s;
  for (int i = 0; i < 10; ++i) x[size_t(i + 1)] = halves[i] * s;
  const ref::HybridTensor t = ref::quantize_hybrid(x.data(), 1, 32, f);
  ASSERT_EQ(t.F[0], std::ldexp(1.0f, -10));
  ASSERT_EQ(t.Q[0], 16);
  EXPECT_EQ(t.q[0], 127);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(t.q[size_t(i + 1)], expected[i]) << halves[i];
  // The per-token format rounds the same way: scale = (127 * 2^-6) / 127 = 2^-6.
  const ref::PerTokenTensor p = ref::quantize_per_token(x.data(), 1, 32);
  ASSERT_EQ(p.scale[0], s);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p.q[size_t(i + 1)], expected[i]) << halves[i];
}

TEST(RefHybridQuant, ShortLastBlock) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 3);
  for (const FormatCase& c : {FormatCase{256, 256, 16, 2176}, FormatCase{32, 256, 16, 48},
                              FormatCase{256, 4, 127, 2176}}) {
    const HybridFormat f{c.B, c.S, c.q_max};
    std::vector<float> x = structured_rows(rng, 1, c.K, 16, DType::kBFloat16, 0.0);
    // Only the short last block holds the group maximum: its Q must be q_max, and the columns
    // past K must not exist for it.
    const int64_t nb = i8h::num_blocks(c.K, f);
    for (int64_t k = (nb - 1) * c.B; k < c.K; ++k) x[size_t(k)] = 4.0f + float(k % 3);
    const ref::HybridTensor t = ref::quantize_hybrid(x.data(), 1, c.K, f);
    EXPECT_EQ(t.nb, (c.K + c.B - 1) / c.B);
    EXPECT_EQ(t.Q[size_t(nb - 1)], c.q_max);
    EXPECT_EQ(t.F[size_t(t.ng - 1)], 6.0f / float(127 * c.q_max));
    ASSERT_NO_FATAL_FAILURE(check_hybrid(x, 1, c.K, f));
  }
}

TEST(RefHybridQuant, QMaxOneIsOneScalePerGroup) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 4);
  const HybridFormat f{16, 4, 1};
  const int64_t K = 256;
  const std::vector<float> x = structured_rows(rng, 3, K, 16, DType::kFloat16);
  const ref::HybridTensor t = ref::quantize_hybrid(x.data(), 3, K, f);
  for (int32_t Q : t.Q) EXPECT_EQ(Q, 1);
  ASSERT_NO_FATAL_FAILURE(check_hybrid(x, 3, K, f));
}

TEST(RefHybridQuant, NonFiniteGroupIsPoisoned) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 5);
  const HybridFormat f{32, 2, 16};
  const int64_t K = 192;  // 6 blocks, 3 groups
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (float v : bad) {
    std::vector<float> x = structured_rows(rng, 1, K, 16, DType::kBFloat16, 0.0);
    std::vector<float> clean = x;
    x[100] = v;  // block 3, group 1
    for (int64_t k = 64; k < 128; ++k) clean[size_t(k)] = 0.0f;
    const ref::HybridTensor t = ref::quantize_hybrid(x.data(), 1, K, f);
    const ref::HybridTensor c = ref::quantize_hybrid(clean.data(), 1, K, f);
    EXPECT_TRUE(std::isnan(t.F[1])) << v;
    EXPECT_EQ(t.Q[2], 16);
    EXPECT_EQ(t.Q[3], 16);
    for (int64_t k = 64; k < 128; ++k) EXPECT_EQ(t.q[size_t(k)], 0);
    // The other groups are untouched.
    EXPECT_EQ(t.F[0], c.F[0]);
    EXPECT_EQ(t.F[2], c.F[2]);
    for (int64_t b : {0, 1, 4, 5}) EXPECT_EQ(t.Q[size_t(b)], c.Q[size_t(b)]);
    for (int64_t k = 0; k < K; ++k) {
      if (k < 64 || k >= 128) {
        EXPECT_EQ(t.q[size_t(k)], c.q[size_t(k)]);
      }
    }
    const std::vector<float> dq = ref::dequantize_hybrid(t, f);
    for (int64_t k = 64; k < 128; ++k) EXPECT_TRUE(std::isnan(dq[size_t(k)]));
  }
}

TEST(RefHybridQuant, SplitExpertsGivesEachExpertItsOwnRows) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 11);
  std::uniform_real_distribution<float> val(-3.0f, 3.0f);
  const HybridFormat f{128, 2, 16};
  const int64_t E = 3, rows = 5, K = 300;  // K leaves a short last block: nb 3, ng 2
  std::vector<ref::HybridTensor> experts;
  std::vector<int8_t> q;
  std::vector<int32_t> Q;
  std::vector<float> F;
  for (int64_t e = 0; e < E; ++e) {
    std::vector<float> x(size_t(rows * K));
    for (float& v : x) v = val(rng);
    experts.push_back(ref::quantize_hybrid(x.data(), rows, K, f));
    const ref::HybridTensor& t = experts.back();
    q.insert(q.end(), t.q.begin(), t.q.end());
    Q.insert(Q.end(), t.Q.begin(), t.Q.end());
    F.insert(F.end(), t.F.begin(), t.F.end());
  }
  const std::vector<ref::HybridTensor> split = ref::split_experts(q, Q, F, E, rows, K, f);
  ASSERT_EQ(split.size(), size_t(E));
  for (int64_t e = 0; e < E; ++e) {
    const ref::HybridTensor &a = split[size_t(e)], &b = experts[size_t(e)];
    EXPECT_EQ(a.rows, rows);
    EXPECT_EQ(a.K, K);
    EXPECT_EQ(a.nb, 3);
    EXPECT_EQ(a.ng, 2);
    EXPECT_EQ(a.q, b.q) << "expert " << e;
    EXPECT_EQ(a.Q, b.Q) << "expert " << e;
    EXPECT_EQ(a.F, b.F) << "expert " << e;
  }
  EXPECT_TRUE(ref::split_experts({}, {}, {}, 0, rows, K, f).empty());
  std::vector<int32_t> short_Q(Q.begin(), Q.end() - 1);
  try {
    ref::split_experts(q, short_Q, F, E, rows, K, f);
    FAIL() << "a Q of the wrong size was accepted";
  } catch (const i8h::InvalidArgument& ex) {
    EXPECT_NE(std::string(ex.what()).find("Q"), std::string::npos) << ex.what();
  }
  EXPECT_THROW(ref::split_experts(q, Q, F, E, rows + 1, K, f), i8h::InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Per-token quantization
// ---------------------------------------------------------------------------------------------

TEST(RefPerTokenQuant, ReconstructionZeroAndNonFiniteRows) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 6);
  const int64_t rows = 5, K = 272;
  std::vector<float> x = structured_rows(rng, rows, K, 16, DType::kBFloat16);
  std::fill(x.begin() + K, x.begin() + 2 * K, 0.0f);
  x[size_t(3 * K + 7)] = std::numeric_limits<float>::infinity();
  x[size_t(4 * K + 9)] = std::numeric_limits<float>::quiet_NaN();
  const ref::PerTokenTensor t = ref::quantize_per_token(x.data(), rows, K);
  const std::vector<float> dq = ref::dequantize_per_token(t);
  EXPECT_EQ(t.scale[1], 1.0f);
  for (int64_t r : {3, 4}) {
    EXPECT_TRUE(std::isnan(t.scale[size_t(r)]));
    for (int64_t k = 0; k < K; ++k) {
      EXPECT_EQ(t.q[size_t(r * K + k)], 0);
      EXPECT_TRUE(std::isnan(dq[size_t(r * K + k)]));
    }
  }
  for (int64_t r : {0, 1, 2}) {
    float a = 0.0f;
    for (int64_t k = 0; k < K; ++k) a = std::max(a, std::fabs(x[size_t(r * K + k)]));
    const float s = t.scale[size_t(r)];
    if (a > 0.0f) {
      EXPECT_EQ(s, a / 127.0f);
    }
    int max_q = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int q = t.q[size_t(r * K + k)];
      max_q = std::max(max_q, std::abs(q));
      ASSERT_LE(std::fabs(double(x[size_t(r * K + k)]) - double(q) * s), s * (0.5 + 1.0 / 65536));
      ASSERT_EQ(dq[size_t(r * K + k)], float(q) * s);
    }
    EXPECT_EQ(max_q, a > 0.0f ? 127 : 0);
  }
}

// ---------------------------------------------------------------------------------------------
// GEMMs
// ---------------------------------------------------------------------------------------------

TEST(RefHybridGemm, MatchesFloat64DequantizeThenMatmul) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 7);
  const FormatCase cases[] = {{128, 256, 16, 1024}, {128, 2, 16, 1024}, {32, 1, 127, 48},
                              {256, 2, 127, 2176},  {16, 3, 1, 208},    {64, 4, 16, 7168}};
  for (const FormatCase& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "B=" << c.B << " S=" << c.S << " q_max=" << c.q_max << " K=" << c.K);
    const HybridFormat f{c.B, c.S, c.q_max};
    const int64_t R = 3, N = 5;
    const std::vector<float> xa = structured_rows(rng, R, c.K, 16, DType::kBFloat16);
    const std::vector<float> xw = structured_rows(rng, N, c.K, c.B, DType::kBFloat16);
    const ref::HybridTensor a = ref::quantize_hybrid(xa.data(), R, c.K, f);
    const ref::HybridTensor w = ref::quantize_hybrid(xw.data(), N, c.K, f);
    const std::vector<double> out = ref::hybrid_gemm(a, w, f);
    ASSERT_EQ(out.size(), size_t(R * N));
    // Independent path: dequantize to float64 (q * Q * F is exact in double), then matmul.
    auto deq = [&](const ref::HybridTensor& t, int64_t r, int64_t k) {
      const int64_t b = k / c.B;
      return double(t.q[size_t(r * c.K + k)]) * double(t.Q[size_t(r * t.nb + b)]) *
             double(t.F[size_t(r * t.ng + b / c.S)]);
    };
    for (int64_t r = 0; r < R; ++r)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0.0, mag = 0.0;
        for (int64_t k = 0; k < c.K; ++k) {
          const double p = deq(a, r, k) * deq(w, n, k);
          s += p;
          mag += std::fabs(p);
        }
        EXPECT_LE(std::fabs(out[size_t(r * N + n)] - s), 1e-12 * mag + 1e-300)
            << "r=" << r << " n=" << n;
      }
  }
}

TEST(RefHybridGemm, WorstCaseOverflowInputIsExact) {
  // The GPU's int32 safeguard, from format.h: for q_max = 16, B = 128 one block term reaches
  // 16^2 * 127^2 * 128 = 528,482,304 so 4 fit in int32; for q_max = 127 not even one does.
  EXPECT_EQ(i8h::int32_blocks_per_flush(HybridFormat{128, 256, 16}), 4);
  EXPECT_EQ(i8h::int32_blocks_per_flush(HybridFormat{128, 256, 127}), 0);
  for (int q_max : {16, 127}) {
    for (int S : {1, 3, 256}) {
      for (int64_t K : {128, 2048, 7168}) {
        SCOPED_TRACE(::testing::Message() << "q_max=" << q_max << " S=" << S << " K=" << K);
        const HybridFormat f{128, S, q_max};
        // c = 127 * q_max * 2^-12 makes F = 2^-12 exactly; every q = +-127, every Q = q_max.
        const float c = float(127 * q_max) * std::ldexp(1.0f, -12);
        std::vector<float> xa(size_t(K), c), xw(size_t(2 * K), c);
        std::fill(xw.begin() + K, xw.end(), -c);
        const ref::HybridTensor a = ref::quantize_hybrid(xa.data(), 1, K, f);
        const ref::HybridTensor w = ref::quantize_hybrid(xw.data(), 2, K, f);
        for (int32_t Q : a.Q) ASSERT_EQ(Q, q_max);
        for (int8_t q : a.q) ASSERT_EQ(q, 127);
        for (float F : w.F) ASSERT_EQ(F, std::ldexp(1.0f, -12));
        const std::vector<double> out = ref::hybrid_gemm(a, w, f);
        // Closed form: Fa * Fw * Qa * Qw * qa * qw * K = 2^-24 * q_max^2 * 127^2 * K, an integer
        // times a power of two (exact).
        const double exact = std::ldexp(double(q_max) * q_max * 127.0 * 127.0 * double(K), -24);
        EXPECT_EQ(out[0], exact);
        EXPECT_EQ(out[1], -exact);
        if (q_max == 127) {
          // The integer part far exceeds int32: a naive int32 accumulator would be wrong.
          EXPECT_GT(exact * std::ldexp(1.0, 24), double(std::numeric_limits<int32_t>::max()));
        }
      }
    }
  }
}

TEST(RefPerTokenGemm, MatchesDequantAndPerTensorIsBroadcast) {
  I8H_SEED_TRACE();
  std::mt19937_64 rng(base_seed() + 8);
  const int64_t R = 4, N = 6, K = 304;
  const std::vector<float> xa = structured_rows(rng, R, K, 16, DType::kBFloat16);
  const std::vector<float> xw = structured_rows(rng, N, K, 64, DType::kBFloat16);
  const ref::PerTokenTensor a = ref::quantize_per_token(xa.data(), R, K);
  const ref::PerTokenTensor w = ref::quantize_per_token(xw.data(), N, K);
  const std::vector<double> out = ref::per_token_gemm(a.q.data(), a.scale.data(), true, w.q.data(),
                                                      w.scale.data(), true, R, N, K);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t n = 0; n < N; ++n) {
      int64_t dot = 0;
      for (int64_t k = 0; k < K; ++k)
        dot += int64_t(a.q[size_t(r * K + k)]) * w.q[size_t(n * K + k)];
      const double expect = double(a.scale[size_t(r)]) * double(w.scale[size_t(n)]) * double(dot);
      EXPECT_LE(std::fabs(out[size_t(r * N + n)] - expect), 1e-15 * std::fabs(expect));
    }
  // Per-tensor: one scale for the whole activation tensor (its absmax over all rows), i.e. the
  // per-token format of the tensor seen as a single row, broadcast to every row.
  const ref::PerTokenTensor at = ref::quantize_per_token(xa.data(), 1, R * K);
  const ref::PerTokenTensor wt = ref::quantize_per_token(xw.data(), 1, N * K);
  const std::vector<double> broadcast = ref::per_token_gemm(
      at.q.data(), at.scale.data(), false, wt.q.data(), wt.scale.data(), false, R, N, K);
  const std::vector<float> sa(size_t(R), at.scale[0]), sw(size_t(N), wt.scale[0]);
  const std::vector<double> explicit_rows =
      ref::per_token_gemm(at.q.data(), sa.data(), true, wt.q.data(), sw.data(), true, R, N, K);
  ASSERT_EQ(broadcast, explicit_rows);
  // Worst case of the int32 dot product: K = kPerTokenMaxK, all +-127, still exact.
  const int64_t Kmax = i8h::kPerTokenMaxK;
  const std::vector<int8_t> ones(size_t(Kmax), 127);
  const std::vector<int8_t> neg(size_t(Kmax), -127);
  const float one = 1.0f;
  const std::vector<double> big =
      ref::per_token_gemm(ones.data(), &one, false, neg.data(), &one, false, 1, 1, Kmax);
  EXPECT_EQ(big[0], -127.0 * 127.0 * double(Kmax));
  EXPECT_GE(-big[0], double(std::numeric_limits<int32_t>::max()) - 127 * 127);
}

TEST(RefHybridGemm, NonFiniteInputPropagatesNaN) {
  const HybridFormat f{32, 1, 16};
  const int64_t K = 96;
  std::vector<float> xa(size_t(K), 0.5f), xw(size_t(K), 0.25f);
  xa[40] = std::numeric_limits<float>::infinity();
  const ref::HybridTensor a = ref::quantize_hybrid(xa.data(), 1, K, f);
  const ref::HybridTensor w = ref::quantize_hybrid(xw.data(), 1, K, f);
  EXPECT_TRUE(std::isnan(ref::hybrid_gemm(a, w, f)[0]));
  const ref::PerTokenTensor pa = ref::quantize_per_token(xa.data(), 1, K);
  const ref::PerTokenTensor pw = ref::quantize_per_token(xw.data(), 1, K);
  EXPECT_TRUE(std::isnan(ref::per_token_gemm(pa.q.data(), pa.scale.data(), true, pw.q.data(),
                                             pw.scale.data(), true, 1, 1, K)[0]));
}

TEST(RefHybridGemm, RejectsMismatchedOperands) {
  const HybridFormat f{32, 1, 16};
  std::vector<float> x(64, 1.0f);
  const ref::HybridTensor a = ref::quantize_hybrid(x.data(), 1, 64, f);
  const ref::HybridTensor w = ref::quantize_hybrid(x.data(), 2, 32, f);
  EXPECT_THROW(ref::hybrid_gemm(a, w, f), i8h::InvalidArgument);
  EXPECT_THROW(ref::hybrid_gemm(a, a, HybridFormat{16, 1, 16}), i8h::InvalidArgument);
  EXPECT_THROW(ref::quantize_hybrid(x.data(), 1, 64, HybridFormat{24, 1, 16}),
               i8h::InvalidArgument);
  EXPECT_THROW(ref::quantize_hybrid(x.data(), 1, 64, HybridFormat{32, 1, 128}),
               i8h::InvalidArgument);
}

}  // namespace
