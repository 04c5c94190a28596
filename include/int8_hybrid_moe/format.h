// The hybrid INT8 blockwise format (docs/FORMAT.md) and the per-token INT8 format.
// This header is the single owner of the format's parameter and shape rules.
#pragma once

#include <cstdint>
#include <limits>

#include "int8_hybrid_moe/common.h"

namespace int8_hybrid_moe {

// Parameters of the hybrid format. An operand X [rows, K] is stored as
//   q int8 [rows, K], Q int32 [rows, nb] (1..q_max), F float [rows, ng],
//   nb = ceil(K / block_size), ng = ceil(nb / super_group).
struct HybridFormat {
  int block_size = 128;   // B: quantization block along K, a positive multiple of 16
  int super_group = 256;  // S: K-blocks per super group sharing one float F, >= 1
  int q_max = 16;         // largest integer block scale, 1..127
};

inline constexpr int kInt8Max = 127;

inline int64_t num_blocks(int64_t K, const HybridFormat& f) {
  return (K + f.block_size - 1) / f.block_size;
}
inline int64_t num_groups(int64_t K, const HybridFormat& f) {
  const int64_t nb = num_blocks(K, f);
  return (nb + f.super_group - 1) / f.super_group;
}

// Validates B, S, q_max (the one place these rules live). `fn` names the calling entry point.
inline void validate_format(const HybridFormat& f, const char* fn) {
  I8H_CHECK_ARG(f.block_size > 0 && f.block_size % 16 == 0, fn, "block_size (B)",
                "a positive multiple of 16", f.block_size);
  I8H_CHECK_ARG(f.super_group >= 1, fn, "super_group (S)", ">= 1", f.super_group);
  I8H_CHECK_ARG(f.q_max >= 1 && f.q_max <= 127, fn, "q_max", "in [1, 127]", f.q_max);
}

// Largest K (reduction dimension) the kernels take: their offsets along K are 32-bit.
inline constexpr int64_t kMaxReductionDim = int64_t(1) << 30;

// K (the reduction dimension) of any quantized operand: a positive multiple of 16, at most
// kMaxReductionDim.
inline void validate_reduction_dim(int64_t K, const char* fn, const char* arg = "K") {
  I8H_CHECK_ARG(K > 0 && K % 16 == 0, fn, arg, "a positive multiple of 16", K);
  I8H_CHECK_ARG(K <= kMaxReductionDim, fn, arg,
                "at most 2^30 = 1073741824 (the kernels' offsets along K are 32-bit)", K);
}

// Overflow safeguard of the hybrid GEMM (docs/FORMAT.md, "Exactness"): the number of consecutive
// K-blocks whose integer terms Qa*Qw*sum(qa*qw) can be added in int32 without overflow, for
// worst-case inputs. 0 means a single block term may already exceed int32 (e.g. q_max = 127 with
// B = 128): then each block term is formed and accumulated in fp32 instead.
inline int64_t int32_blocks_per_flush(const HybridFormat& f) {
  const int64_t worst_block_term =
      int64_t(f.q_max) * f.q_max * kInt8Max * kInt8Max * int64_t(f.block_size);
  return int64_t(std::numeric_limits<int32_t>::max()) / worst_block_term;
}

// Per-token format: q int8 [rows, K], one float scale per row: scale = absmax / 127 (1 where
// absmax = 0), q = clamp(rint(x / scale), -127, 127). Weights: one scale per (expert, channel).
// Largest K for which the int32 dot product of the per-token GEMM cannot overflow.
inline constexpr int64_t kPerTokenMaxK =
    std::numeric_limits<int32_t>::max() / (kInt8Max * kInt8Max);

}  // namespace int8_hybrid_moe
