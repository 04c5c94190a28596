// Bit-level helpers for rows of 16-bit floats (bf16 / fp16 stored as raw words) moved with
// 16-byte vectors (internal).
#pragma once

#include <cstdint>

#include "kernels/dtype_traits.cuh"

namespace int8_hybrid_moe::kernels {

// Raw 16-bit word -> fp32 (exact for both dtypes; NaN / Inf preserved).
template <DType T>
__device__ __forceinline__ float bits_to_float(uint32_t h) {
  if constexpr (T == DType::kBFloat16) {
    return __uint_as_float(h << 16);  // bf16 is the top half of an fp32
  } else {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
  }
}

// fp32 -> raw 16-bit word, round to nearest even.
template <DType T>
__device__ __forceinline__ uint32_t float_to_bits(float f) {
  if constexpr (T == DType::kBFloat16) {
    return __bfloat16_as_ushort(DTypeTraits<T>::from_float(f));
  } else {
    return __half_as_ushort(DTypeTraits<T>::from_float(f));
  }
}

// Element e (0..7) of a vector of eight 16-bit words; e must be a compile-time constant after
// unrolling so the access stays in registers.
__device__ __forceinline__ uint32_t get16(const uint4& v, int e) {
  const uint32_t w = reinterpret_cast<const uint32_t*>(&v)[e >> 1];
  return (e & 1) ? (w >> 16) : (w & 0xffffu);
}

__device__ __forceinline__ uint32_t pack16(uint32_t lo, uint32_t hi) {
  return (lo & 0xffffu) | (hi << 16);
}

__device__ __forceinline__ uint4 load16B(const void* p) {
  return *reinterpret_cast<const uint4*>(p);
}
__device__ __forceinline__ void store16B(void* p, const uint4& v) {
  *reinterpret_cast<uint4*>(p) = v;
}

// A group of VEC 16-bit elements: one 16-byte vector when VEC == 8, a scalar when VEC == 1
// (fallback for rows whose length or base is not 16-byte aligned).
template <int VEC>
struct Packed16;
template <>
struct Packed16<8> {
  uint4 v;
  __device__ __forceinline__ void load(const uint16_t* p) { v = load16B(p); }
  __device__ __forceinline__ void store(uint16_t* p) const { store16B(p, v); }
  __device__ __forceinline__ uint32_t get(int e) const { return get16(v, e); }
  __device__ __forceinline__ void set(int e, uint32_t h) {
    uint32_t& w = reinterpret_cast<uint32_t*>(&v)[e >> 1];
    w = (e & 1) ? ((w & 0xffffu) | (h << 16)) : ((w & 0xffff0000u) | (h & 0xffffu));
  }
};
template <>
struct Packed16<1> {
  uint16_t v;
  __device__ __forceinline__ void load(const uint16_t* p) { v = *p; }
  __device__ __forceinline__ void store(uint16_t* p) const { *p = v; }
  __device__ __forceinline__ uint32_t get(int) const { return v; }
  __device__ __forceinline__ void set(int, uint32_t h) { v = static_cast<uint16_t>(h); }
};

}  // namespace int8_hybrid_moe::kernels
