// Argument validation of the grouped GEMMs (gemm.h). Each call has exactly one bad argument;
// validation happens before any CUDA call, so these run without a GPU (the fake device pointers
// are never dereferenced).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "int8_hybrid_moe/gemm.h"
#include "cpp/cpu_test_util.h"

namespace {

using namespace int8_hybrid_moe;
using i8h_cpu_test::fake;
using i8h_cpu_test::off_by;

constexpr const char* kPT = "int8_grouped_gemm";
constexpr const char* kHY = "int8_hybrid_grouped_gemm";

GroupedGemmShape good_shape() {
  return {256, 128, 512, 4};
}
size_t ws_bytes() {
  return grouped_gemm_workspace_size(4);
}

PerTokenGemmArgs pt_args() {
  PerTokenGemmArgs a;
  a.A = fake<int8_t>(1);
  a.scale_a = fake<float>(2);
  a.B = fake<int8_t>(3);
  a.scale_b = fake<float>(4);
  a.expert_offsets = fake<int64_t>(5);
  a.C = fake(6);
  return a;
}
HybridGemmArgs hy_args() {
  return {fake<int8_t>(1), fake<int32_t>(2), fake<float>(3), fake<int8_t>(4), fake<int32_t>(5),
          fake<float>(6),  fake<int64_t>(7), fake(8),        DType::kBFloat16};
}

void pt(const GroupedGemmShape& s, const PerTokenGemmArgs& a, void* ws = fake(9),
        size_t bytes = ws_bytes(), GemmTile t = GemmTile::kAuto) {
  int8_grouped_gemm(s, a, ws, bytes, nullptr, t);
}
void hy(const GroupedGemmShape& s, const HybridFormat& f, const HybridGemmArgs& a,
        void* ws = fake(9), size_t bytes = ws_bytes(), GemmTile t = GemmTile::kAuto) {
  int8_hybrid_grouped_gemm(s, f, a, ws, bytes, nullptr, t);
}

HybridFormat fmt(int B, int S, int q) {
  HybridFormat f;
  f.block_size = B;
  f.super_group = S;
  f.q_max = q;
  return f;
}

TEST(GemmArgs, ShapeOfBoth) {
  for (int which = 0; which < 2; ++which) {
    const char* fn = which ? kHY : kPT;
    auto call = [&](const GroupedGemmShape& s) {
      if (which)
        hy(s, HybridFormat{}, hy_args());
      else
        pt(s, pt_args());
    };
    GroupedGemmShape s = good_shape();
    s.R = -1;
    EXPECT_BAD_ARG(call(s), fn, "shape.R", ">= 0");
    s = good_shape();
    s.num_experts = 0;  // E = 0
    EXPECT_BAD_ARG(call(s), fn, "shape.num_experts", ">= 1");
    s.num_experts = -3;
    EXPECT_BAD_ARG(call(s), fn, "shape.num_experts", ">= 1");
    s = good_shape();
    s.N = 12;  // N % 8
    EXPECT_BAD_ARG(call(s), fn, "shape.N", "multiple of 8");
    s.N = 0;
    EXPECT_BAD_ARG(call(s), fn, "shape.N", "multiple of 8");
    s = good_shape();
    s.K = 520;  // K % 16
    EXPECT_BAD_ARG(call(s), fn, "shape.K", "multiple of 16");
    s.K = 0;
    EXPECT_BAD_ARG(call(s), fn, "shape.K", "multiple of 16");
    s.K = -16;
    EXPECT_BAD_ARG(call(s), fn, "shape.K", "multiple of 16");
    s.K = kMaxReductionDim + 16;  // the SM80 loader's and the SM90 TMA's K offsets are 32-bit
    EXPECT_BAD_ARG(call(s), fn, "shape.K", "at most 2^30");
  }
}

TEST(GemmArgs, PerTokenPointersAlignmentAndWorkspace) {
  const GroupedGemmShape s = good_shape();
  PerTokenGemmArgs a = pt_args();
  a.A = nullptr;
  EXPECT_BAD_ARG(pt(s, a), kPT, "A", "non-null");
  a = pt_args();
  a.A = off_by<int8_t>(1, 8);
  EXPECT_BAD_ARG(pt(s, a), kPT, "A", "16-byte aligned");
  a = pt_args();
  a.B = nullptr;
  EXPECT_BAD_ARG(pt(s, a), kPT, "B", "non-null");
  a = pt_args();
  a.B = off_by<int8_t>(3, 1);
  EXPECT_BAD_ARG(pt(s, a), kPT, "B", "16-byte aligned");
  a = pt_args();
  a.C = nullptr;
  EXPECT_BAD_ARG(pt(s, a), kPT, "C", "non-null");
  a = pt_args();
  a.C = off_by(6, 2);
  EXPECT_BAD_ARG(pt(s, a), kPT, "C", "16-byte aligned");
  a.C = off_by(6, 8);  // 4- and 8-byte aligned are not enough for the 16-byte stores
  EXPECT_BAD_ARG(pt(s, a), kPT, "C", "16-byte aligned");
  a = pt_args();
  a.scale_a = nullptr;
  EXPECT_BAD_ARG(pt(s, a), kPT, "scale_a", "non-null");
  a = pt_args();
  a.scale_b = nullptr;
  EXPECT_BAD_ARG(pt(s, a), kPT, "scale_b", "non-null");
  a = pt_args();
  a.expert_offsets = nullptr;
  EXPECT_BAD_ARG(pt(s, a), kPT, "expert_offsets", "non-null");
  a = pt_args();
  a.out_dtype = static_cast<DType>(5);
  EXPECT_BAD_ARG(pt(s, a), kPT, "out_dtype", "bfloat16 (0) or float16 (1)");
  EXPECT_BAD_ARG(pt(s, pt_args(), nullptr), kPT, "workspace", "non-null");
  EXPECT_BAD_ARG(pt(s, pt_args(), fake(9), ws_bytes() - 1), kPT, "workspace_bytes",
                 std::to_string(ws_bytes()));
  EXPECT_BAD_ARG(pt(s, pt_args(), fake(9), ws_bytes(), static_cast<GemmTile>(9)), kPT, "tile",
                 "a GemmTile value");
  // K beyond the exact int32 accumulation of the per-token GEMM.
  GroupedGemmShape big = s;
  big.K = (kPerTokenMaxK / 16 + 1) * 16;
  EXPECT_BAD_ARG(pt(big, pt_args()), kPT, "shape.K", std::to_string(kPerTokenMaxK));
}

TEST(GemmArgs, HybridPointersAlignmentFormatTileAndWorkspace) {
  const GroupedGemmShape s = good_shape();
  const HybridFormat f;
  struct PtrCase {
    const char* name;
    void (*clear)(HybridGemmArgs&);
  };
  const PtrCase nulls[] = {
      {"A", [](HybridGemmArgs& a) { a.A = nullptr; }},
      {"QA", [](HybridGemmArgs& a) { a.QA = nullptr; }},
      {"FA", [](HybridGemmArgs& a) { a.FA = nullptr; }},
      {"B", [](HybridGemmArgs& a) { a.B = nullptr; }},
      {"QB", [](HybridGemmArgs& a) { a.QB = nullptr; }},
      {"FB", [](HybridGemmArgs& a) { a.FB = nullptr; }},
      {"expert_offsets", [](HybridGemmArgs& a) { a.expert_offsets = nullptr; }},
      {"C", [](HybridGemmArgs& a) { a.C = nullptr; }},
  };
  for (const PtrCase& c : nulls) {
    HybridGemmArgs a = hy_args();
    c.clear(a);
    EXPECT_BAD_ARG(hy(s, f, a), kHY, c.name, "non-null");
  }
  HybridGemmArgs a = hy_args();
  a.A = off_by<int8_t>(1, 4);
  EXPECT_BAD_ARG(hy(s, f, a), kHY, "A", "16-byte aligned");
  a = hy_args();
  a.B = off_by<int8_t>(4, 12);
  EXPECT_BAD_ARG(hy(s, f, a), kHY, "B", "16-byte aligned");
  a = hy_args();
  a.C = off_by(8, 4);
  EXPECT_BAD_ARG(hy(s, f, a), kHY, "C", "16-byte aligned");
  a = hy_args();
  a.out_dtype = static_cast<DType>(-1);
  EXPECT_BAD_ARG(hy(s, f, a), kHY, "out_dtype", "bfloat16 (0) or float16 (1)");
  // Format: the shared rules, then the kernel's own B % 64.
  EXPECT_BAD_ARG(hy(s, fmt(120, 256, 16), hy_args()), kHY, "block_size (B)", "multiple of 16");
  EXPECT_BAD_ARG(hy(s, fmt(0, 256, 16), hy_args()), kHY, "block_size (B)", "multiple of 16");
  EXPECT_BAD_ARG(hy(s, fmt(96, 256, 16), hy_args()), kHY, "block_size (B)", "multiple of 64");
  EXPECT_BAD_ARG(hy(s, fmt(32, 256, 16), hy_args()), kHY, "block_size (B)", "multiple of 64");
  EXPECT_BAD_ARG(hy(s, fmt(128, 0, 16), hy_args()), kHY, "super_group (S)", ">= 1");
  EXPECT_BAD_ARG(hy(s, fmt(128, 256, 0), hy_args()), kHY, "q_max", "in [1, 127]");
  EXPECT_BAD_ARG(hy(s, fmt(128, 256, 128), hy_args()), kHY, "q_max", "in [1, 127]");
  EXPECT_BAD_ARG(hy(s, fmt(128, 256, -5), hy_args()), kHY, "q_max", "in [1, 127]");
  // Tiles: 128x128 and sm90_128x256 are per-token-only configs; an out-of-range enum is rejected.
  EXPECT_BAD_ARG(hy(s, f, hy_args(), fake(9), ws_bytes(), GemmTile::k128x128), kHY, "tile",
                 "64x64, 128x64 or sm90_128x128");
  EXPECT_BAD_ARG(hy(s, f, hy_args(), fake(9), ws_bytes(), GemmTile::kSm90_128x256), kHY, "tile",
                 "64x64, 128x64 or sm90_128x128");
  // The SM90 tile's K tile is 128: B = 64 and 192 are rejected before any device query.
  for (int B : {64, 192})
    EXPECT_BAD_ARG(hy(s, fmt(B, 256, 16), hy_args(), fake(9), ws_bytes(), GemmTile::kSm90_128x128),
                   kHY, "block_size (B)", "a multiple of 128 for the sm90_128x128 tile");
  EXPECT_BAD_ARG(hy(s, f, hy_args(), fake(9), ws_bytes(), static_cast<GemmTile>(6)), kHY, "tile",
                 "a GemmTile value");
  EXPECT_BAD_ARG(hy(s, f, hy_args(), fake(9), ws_bytes(), static_cast<GemmTile>(-2)), kHY, "tile",
                 "a GemmTile value");
  EXPECT_BAD_ARG(hy(s, f, hy_args(), nullptr), kHY, "workspace", "non-null");
  EXPECT_BAD_ARG(hy(s, f, hy_args(), fake(9), 0), kHY, "workspace_bytes",
                 std::to_string(ws_bytes()));
}

// Valid calls with R = 0 return before any launch (nothing to compute), on both GEMMs and
// every accepted tile, without a GPU.
TEST(GemmArgs, EmptyProblemIsANoOp) {
  GroupedGemmShape s = good_shape();
  s.R = 0;
  for (GemmTile t : {GemmTile::kAuto, GemmTile::k64x64, GemmTile::k128x64, GemmTile::k128x128,
                     GemmTile::kSm90_128x128, GemmTile::kSm90_128x256}) {
    EXPECT_NO_THROW(pt(s, pt_args(), fake(9), ws_bytes(), t));
    if (t != GemmTile::k128x128 && t != GemmTile::kSm90_128x256) {
      EXPECT_NO_THROW(hy(s, HybridFormat{}, hy_args(), fake(9), ws_bytes(), t));
    }
  }
  EXPECT_GT(grouped_gemm_workspace_size(1), 0u);
  EXPECT_LE(grouped_gemm_workspace_size(4), grouped_gemm_workspace_size(400));
}

}  // namespace
