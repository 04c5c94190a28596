// WIP experiment (I8H_EXP_TRACE): per-phase clock stamps of the SM90 grouped GEMM, written by
// lane 0 of each warpgroup of the first kCtas CTAs, read back and summarized by the launcher.
#pragma once
#include <cstdint>
namespace int8_hybrid_moe::gemm::trace {
constexpr int kCtas = 8, kRoles = 3, kRecs = 4096, kFields = 8;
__device__ uint32_t g_buf[kCtas][kRoles][kRecs][kFields];
__device__ uint32_t g_count[kCtas][kRoles];
__device__ __forceinline__ uint32_t now() {
  uint32_t c;
  asm volatile("mov.u32 %0, %%clock;" : "=r"(c)::"memory");
  return c;
}
struct Rec {
  uint32_t* r = nullptr;
  __device__ __forceinline__ void open(bool on, int role, int& n) {
    r = on && n < kRecs ? g_buf[blockIdx.x][role][n++] : nullptr;
  }
  __device__ __forceinline__ void stamp(int f) {
    if (r) r[f] = now();
  }
  __device__ __forceinline__ void put(int f, uint32_t v) {
    if (r) r[f] = v;
  }
};
}  // namespace int8_hybrid_moe::gemm::trace
