// Launchers of the SM90 (wgmma + TMA) grouped GEMMs: tensor maps, the persistent grid, the
// instantiations. This file is compiled for sm_90a only (CMake: int8_hybrid_moe_sm90); gemm.cu
// calls it on compute capability 9.0 devices when the build includes 90.
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstring>
#ifdef I8H_EXP_TRACE
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>
#endif

#include "kernels/gemm/grouped_gemm_sm90.cuh"
#include "launchers/cuda_check.h"
#include "launchers/gemm_configs.h"

namespace int8_hybrid_moe::gemm {

namespace {

// Per-token 128 x 128: pingpong (each consumer warpgroup owns whole tiles, so one runs its
// epilogue under the other's wgmmas: -9% GEMM2 on the H100, docs/PERF.md v16), 6 stages of
// 32 KiB (193 KiB); 7 measured slower. Per-token 128 x 256: 4 stages of 48 KiB (193 KiB); a
// quarter fewer L2 -> SM bytes per output than 128 x 128 (docs/PERF.md v8). Hybrid: 5 stages of
// 32 KiB plus two 16.5 KiB block-scale slots (194 KiB); 6 stages measured slower for it (v7).
using Sm90PerTokenTile = Sm90TileConfig<6, false, 128, 128, 1, /*pingpong=*/true>;
using Sm90PerTokenWideTile = Sm90TileConfig<4, false, 256>;
using Sm90HybridTile = Sm90TileConfig<5, true>;

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    I8H_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                    cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || f == nullptr)
      throw CudaError("int8_grouped_gemm (SM90): the driver has no cuTensorMapEncodeTiled");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// Row-major int8 matrix [rows, K] (K contiguous, K % 16 == 0), loaded in boxes of box_rows x 128
// bytes with the 128-byte swizzle; out-of-bounds rows and columns read as zero.
CUtensorMap make_int8_tensor_map(const int8_t* base, int64_t rows, int64_t K, int box_rows) {
  CUtensorMap m;
  std::memset(&m, 0, sizeof(m));
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(K), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(K)};
  const cuuint32_t box[2] = {128, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(
      &m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<int8_t*>(base), dims, strides, box,
      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw CudaError(::int8_hybrid_moe::detail::concat(
        "int8_grouped_gemm (SM90): cuTensorMapEncodeTiled failed (CUresult ", static_cast<int>(r),
        ") for a [", rows, ", ", K, "] int8 operand"));
  return m;
}

#ifdef I8H_EXP_TRACE
// WIP experiment: after the 8th launch of each (kernel, shape), copies the clock stamps back and
// prints the median / mean of each phase (clock cycles) over the traced CTAs' records.
void trace_report(const char* name, int bn, const GroupedGemmParams& p, bool hybrid) {
  if (!std::getenv("I8H_TRACE")) return;
  static std::map<std::string, int> launches;
  const std::string key = std::string(name) + "/" + std::to_string(bn) + "/" +
                          std::to_string(p.N) + "/" + std::to_string(p.K);
  if (++launches[key] != 8) return;
  I8H_CUDA_CHECK(cudaDeviceSynchronize());
  using namespace trace;
  std::vector<uint32_t> buf(size_t(kCtas) * kRoles * kRecs * kFields);
  uint32_t cnt[kCtas][kRoles];
  I8H_CUDA_CHECK(cudaMemcpyFromSymbol(buf.data(), g_buf, buf.size() * 4));
  I8H_CUDA_CHECK(cudaMemcpyFromSymbol(cnt, g_count, sizeof(cnt)));
  auto rec = [&](int c, int r, int i) { return &buf[((size_t(c) * kRoles + r) * kRecs + i) * kFields]; };
  std::map<std::string, std::vector<double>> st;
  auto add = [&](const std::string& k, uint32_t a, uint32_t b) { st[k].push_back(double(int32_t(b - a))); };
  for (int c = 0; c < kCtas; ++c) {
    const uint32_t np = std::min<uint32_t>(cnt[c][0], kRecs);
    for (uint32_t i = 0; i < np; ++i) {
      const uint32_t* x = rec(c, 0, i);
      if (x[7] == 0xFFFFFFFDu) {
        add("P tile decode", x[0], x[5]);
        continue;
      }
      if (x[5]) {
        add("P scale_empty wait", x[0], x[1]);
        add("P scale chunk issue", x[1], x[2]);
      }
      add("P empty wait", x[3], x[4]);
      add("P tma issue", x[4], x[6]);
      if (i + 1 < np && rec(c, 0, i + 1)[7] != 0xFFFFFFFDu)
        add("P period per K tile", x[0], rec(c, 0, i + 1)[0]);
    }
    for (int r = 1; r < kRoles; ++r) {
      const uint32_t n = std::min<uint32_t>(cnt[c][r], kRecs);
      for (uint32_t i = 0; i < n; ++i) {
        const uint32_t* x = rec(c, r, i);
        const uint32_t* y = i + 1 < n ? rec(c, r, i + 1) : nullptr;
        if (x[6] == 0xFFFFFFFFu) {
          add("C epilogue", x[0], x[5]);
          continue;
        }
        if (x[6] == 0xFFFFFFFEu) {
          add("C turn wait", x[0], x[5]);
          add("C tile start (first full wait / decode)", x[5], x[2]);
          if (i > 0 && rec(c, r, i - 1)[6] == 0xFFFFFFFFu)
            add("C gap: last epilogue end -> turn", rec(c, r, i - 1)[5], x[0]);
          continue;
        }
        if (hybrid) {
          const bool flush = x[6] >> 16 & 1, active = x[6] >> 17 & 1;
          if (!active) {
            add("H inactive block", x[0], x[5]);
            continue;
          }
          const std::string f = flush ? " (flush)" : " (no flush)";
          add("H scale_full wait", x[0], x[1]);
          add("H full wait", x[1], x[2]);
          add("H wgmma issue", x[2], x[3]);
          add("H wgmma wait<0>", x[3], x[4]);
          add("H rescale" + f, x[4], x[5]);
          if (y && y[6] < 0xFFFFFFF0u) add("H block period", x[0], y[0]);
          if (r == 1 && i < std::min<uint32_t>(cnt[c][2], kRecs)) {
            const uint32_t* z = rec(c, 2, i);
            if (z[6] == x[6] && z[7] == x[7]) {
              add("X WG2-WG1 issue skew", x[3], z[3]);
              add("X WG2-WG1 done skew", x[4], z[4]);
            }
          }
        } else {
          add("T full wait", x[0], x[1]);
          add("T wgmma issue", x[1], x[2]);
          add("T wgmma wait<1>", x[2], x[3]);
          if (y && y[6] != 0xFFFFFFFFu && y[6] != 0xFFFFFFFEu) add("T K-tile period", x[0], y[0]);
        }
      }
    }
  }
  if (const char* dir = std::getenv("I8H_TRACE_DIR")) {
    const std::string path = std::string(dir) + "/" + name + "_" + std::to_string(bn) + "_" +
                             std::to_string(p.N) + "x" + std::to_string(p.K) + ".bin";
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
      std::fwrite(cnt, sizeof(cnt), 1, f);
      std::fwrite(buf.data(), 4, buf.size(), f);
      std::fclose(f);
    }
  }
  std::printf("trace %s BN=%d N=%lld K=%lld (%d CTAs; clock cycles):\n", name, bn,
              (long long)p.N, (long long)p.K, kCtas);
  for (auto& [k, v] : st) {
    std::sort(v.begin(), v.end());
    double sum = 0;
    for (double d : v) sum += d;
    std::printf("  %-26s n=%6zu  med %8.0f  mean %8.1f  p10 %8.0f  p90 %8.0f  total %12.0f\n",
                k.c_str(), v.size(), v[v.size() / 2], sum / v.size(), v[v.size() / 10],
                v[v.size() * 9 / 10], sum);
  }
  std::fflush(stdout);
}
#endif

template <class Cfg, Scheme kScheme, typename Out>
void launch_sm90(GroupedGemmParams& p, int64_t max_m_tiles, cudaStream_t stream) {
  static_assert(Cfg::kHybrid == (kScheme == Scheme::kHybrid), "tile config of the other scheme");
  auto kernel = grouped_gemm_sm90_kernel<Cfg, kScheme, Out>;
  ::int8_hybrid_moe::detail::set_max_dynamic_smem_once(reinterpret_cast<const void*>(kernel),
                                                       Cfg::kSmemBytes);
  const int64_t tiles = count_output_tiles(p, Cfg::BN, max_m_tiles);
  I8H_CHECK_ARG(int64_t(p.num_experts) * p.N <= 0x7fffffff, "int8_grouped_gemm", "E * N",
                "below 2^31 (TMA row coordinate of B)", int64_t(p.num_experts) * p.N);
  if (tiles == 0) return;
  Sm90GemmParams params;
  params.p = p;
  params.tma_a = make_int8_tensor_map(p.A, p.R, p.K, Cfg::BM);
  params.tma_b = make_int8_tensor_map(p.B, int64_t(p.num_experts) * p.N, p.K, Cfg::BN);
  const int64_t grid =
      std::min<int64_t>(tiles, ::int8_hybrid_moe::detail::current_device_sm_count());
  kernel<<<static_cast<unsigned>(grid), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(params);
  I8H_CHECK_LAUNCH("grouped_gemm_sm90_kernel");
#ifdef I8H_EXP_TRACE
  trace_report(Cfg::kHybrid ? "hybrid" : (Cfg::kPingpong ? "pt-pingpong" : "pt-coop"), Cfg::BN, p,
               Cfg::kHybrid);
#endif
}

template <class Cfg, Scheme kScheme>
void launch_sm90_for(DType out, GroupedGemmParams& p, int64_t max_m_tiles, cudaStream_t stream) {
  if (out == DType::kBFloat16)
    launch_sm90<Cfg, kScheme, __nv_bfloat16>(p, max_m_tiles, stream);
  else
    launch_sm90<Cfg, kScheme, __half>(p, max_m_tiles, stream);
}

}  // namespace

void launch_per_token_gemm_sm90(GemmTile tile, DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                                cudaStream_t stream) {
  if (tile == GemmTile::kSm90_128x256)
    launch_sm90_for<Sm90PerTokenWideTile, Scheme::kPerToken>(out, p, max_m_tiles, stream);
  else
    launch_sm90_for<Sm90PerTokenTile, Scheme::kPerToken>(out, p, max_m_tiles, stream);
}

void launch_hybrid_gemm_sm90(DType out, GroupedGemmParams& p, int64_t max_m_tiles,
                             cudaStream_t stream) {
  launch_sm90_for<Sm90HybridTile, Scheme::kHybrid>(out, p, max_m_tiles, stream);
}

}  // namespace int8_hybrid_moe::gemm
