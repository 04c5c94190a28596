// Bit-exact bf16 / fp16 <-> fp32 conversions of the CPU reference (round to nearest, ties to
// even). Done on the bit patterns so that no compiler or library conversion is involved.
#include <cstdint>
#include <cstring>
#include <vector>

#include "int8_hybrid_moe/reference.h"

namespace int8_hybrid_moe::ref {
namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Drops the low `shift` bits of `v` (1 <= shift <= 31), rounding to nearest, ties to even.
uint32_t shift_right_rne(uint32_t v, int shift) {
  const uint32_t kept = v >> shift;
  const uint32_t rest = v & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  return (rest > half || (rest == half && (kept & 1u))) ? kept + 1u : kept;
}

}  // namespace

float bf16_to_float(uint16_t h) {
  return float_of(uint32_t(h) << 16);
}

uint16_t float_to_bf16(float f) {
  const uint32_t u = bits_of(f);
  // NaN: truncating could clear every payload bit and turn it into Inf, so force the quiet bit.
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  // Rounding carries into the exponent on their own, which also produces Inf on overflow.
  return uint16_t(shift_right_rne(u, 16));
}

float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return float_of(sign | 0x7f800000u | (man << 13));  // Inf / NaN (payload kept)
  if (exp != 0) return float_of(sign | ((exp + 127 - 15) << 23) | (man << 13));
  if (man == 0) return float_of(sign);  // signed zero
  // Subnormal: man * 2^-24 is a normal float; normalize the mantissa.
  int e = -14;
  uint32_t m = man;
  while ((m & 0x400u) == 0) {
    m <<= 1;
    --e;
  }
  return float_of(sign | (uint32_t(e + 127) << 23) | ((m & 0x3ffu) << 13));
}

uint16_t float_to_fp16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // quiet NaN
  if (abs == 0x7f800000u) return uint16_t(sign | 0x7c00u);
  const int e = int(abs >> 23) - 127;  // unbiased exponent (-127 for float zero/subnormals)
  if (e > 15) return uint16_t(sign | 0x7c00u);
  if (e >= -14) {
    // Normal fp16 range: re-bias the exponent, round the mantissa; a carry may reach Inf.
    const uint32_t v = (uint32_t(e + 15) << 23) | (abs & 0x7fffffu);
    return uint16_t(sign | shift_right_rne(v, 13));
  }
  // fp16 subnormal (units of 2^-24): the full 24-bit significand shifted right by 13 + (-14 - e).
  // Below 2^-25 everything rounds to zero (float subnormals included).
  if (e < -25) return sign;
  const uint32_t sig = (abs & 0x7fffffu) | 0x800000u;
  return uint16_t(sign | shift_right_rne(sig, -1 - e));
}

float to_float(uint16_t h, DType t) {
  return t == DType::kBFloat16 ? bf16_to_float(h) : fp16_to_float(h);
}

uint16_t from_float(float f, DType t) {
  return t == DType::kBFloat16 ? float_to_bf16(f) : float_to_fp16(f);
}

float round_to(float f, DType t) {
  return to_float(from_float(f, t), t);
}

std::vector<float> to_float(const std::vector<uint16_t>& h, DType t) {
  std::vector<float> out(h.size());
  for (size_t i = 0; i < h.size(); ++i) out[i] = to_float(h[i], t);
  return out;
}

}  // namespace int8_hybrid_moe::ref
