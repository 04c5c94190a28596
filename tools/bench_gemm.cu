// Benchmark of the grouped INT8 GEMMs on the MoE shapes, with cuBLAS dense INT8 at the same total
// shape (R x N x K) as the ceiling reference, measured in the same run on the same card.
//
//   bench_gemm [--num-tokens 8192] [--hidden 2048] [--intermediate 512] [--num-experts 256]
//              [--top-k 8] [--iters 50] [--warmup 10] [--rounds 5] [--seed 0] [--json PATH]
//              [--tiles NAME,NAME,...]   (forced tiles to time besides auto: 64x64, 128x64,
//                                         128x128, sm90_128x128, sm90_128x256; default all)
//              [--quant-block-size 128] [--super-group-size 256] [--q-max 16]  (hybrid format)
//
// Timing: CUDA events around each launch, warm-up, median (and p10 / p90) over iterations taken in
// interleaved rounds (every case times iters / rounds launches per round), with the card's SM
// clock and clock-limit reasons sampled during each timed loop (NVML; "n/a" without it). The
// operands of the default shape (A 128 MiB, B 512 MiB for GEMM1) are far larger than L2, so no
// rotation is needed.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "cuda_timer.h"
#include "int8_hybrid_moe/gemm.h"

using namespace int8_hybrid_moe;

namespace {

// Prints the failing call and exits; also the error hook of the shared timer.
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_gemm: %s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
#define CK(x) check((x), #x)

__device__ uint32_t hash32(uint64_t i, uint32_t seed) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + seed;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}
__global__ void fill_int8(int8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = static_cast<int8_t>(static_cast<int>(hash32(i, seed) % 255) - 127);
}
__global__ void fill_int32(int32_t* p, size_t n, uint32_t seed, int lo, int hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = lo + static_cast<int>(hash32(i, seed) % uint32_t(hi - lo + 1));
}
__global__ void fill_float(float* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    p[i] = lo + (hi - lo) * (hash32(i, seed) >> 8) * (1.0f / 16777216.0f);
}

// Device buffers freed together at the end of the run.
class DeviceArena {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <typename T>
  T* alloc(size_t n) {
    T* p = nullptr;
    CK(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)));
    ptrs_.push_back(p);
    return p;
  }

 private:
  std::vector<void*> ptrs_;
};

// One timed configuration: its launch, and its times and card samples gathered over all rounds.
struct Case {
  std::string gemm, kind, tile;
  int64_t R, N, K;
  std::function<void()> launch;
  std::vector<float> ms;
  std::vector<i8h_tools::CardSample> samples;
};

struct Row {
  std::string gemm, kind, tile;
  int64_t R, N, K;
  i8h_bench::TimingStats time;
  i8h_tools::CardState card;
  double tops = 0;  // at the median time
  double ms() const { return time.median_ms; }
};
Row make_row(const Case& c, const i8h_tools::CardMonitor& monitor) {
  Row r{c.gemm, c.kind, c.tile, c.R, c.N, c.K, i8h_bench::summarize_times(c.ms), monitor.last()};
  if (monitor.available())
    r.card = i8h_tools::summarize_card_samples(c.samples, monitor.card_max_mhz());
  r.tops = 2.0 * r.R * r.N * r.K / (r.ms() * 1e-3) / 1e12;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t M = 8192, hidden = 2048, inter = 512;
  int E = 256, top_k = 8, iters = 50, warmup = 10, rounds = 5;
  uint32_t seed = 0;
  std::string json, tiles_arg;
  HybridFormat fmt;  // defaults B=128, S=256, q_max=16
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_gemm: %s needs a value\n", a.c_str());
        std::exit(1);
      }
      return argv[++i];
    };
    if (a == "--num-tokens")
      M = std::stoll(next());
    else if (a == "--hidden")
      hidden = std::stoll(next());
    else if (a == "--intermediate")
      inter = std::stoll(next());
    else if (a == "--num-experts")
      E = std::stoi(next());
    else if (a == "--top-k")
      top_k = std::stoi(next());
    else if (a == "--iters")
      iters = std::stoi(next());
    else if (a == "--warmup")
      warmup = std::stoi(next());
    else if (a == "--rounds")
      rounds = std::stoi(next());
    else if (a == "--seed")
      seed = static_cast<uint32_t>(std::stoul(next()));
    else if (a == "--json")
      json = next();
    else if (a == "--tiles")
      tiles_arg = next();
    else if (a == "--quant-block-size")
      fmt.block_size = std::stoi(next());
    else if (a == "--super-group-size")
      fmt.super_group = std::stoi(next());
    else if (a == "--q-max")
      fmt.q_max = std::stoi(next());
    else {
      std::fprintf(stderr, "bench_gemm: unknown argument %s\n", a.c_str());
      return 1;
    }
  }
  if (iters < 1 || warmup < 0 || rounds < 1 || rounds > iters) {
    std::fprintf(stderr,
                 "bench_gemm: need --iters >= 1, --warmup >= 0 and 1 <= --rounds <= --iters; "
                 "got --iters %d --warmup %d --rounds %d\n",
                 iters, warmup, rounds);
    return 1;
  }
  try {
    validate_format(fmt, "bench_gemm");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  // Tiles to time, in enum order: auto always (what the runner picks), then every forced tile,
  // or only those --tiles names.
  std::vector<bool> wanted(static_cast<int>(kLastGemmTile) + 1, tiles_arg.empty());
  for (size_t at = 0; !tiles_arg.empty() && at != std::string::npos;) {
    const size_t end = tiles_arg.find(',', at);
    const std::string name = tiles_arg.substr(at, end == std::string::npos ? end : end - at);
    at = end == std::string::npos ? end : end + 1;
    bool known = false;
    for (int t = 1; t <= static_cast<int>(kLastGemmTile); ++t) {  // 0 is auto
      if (name != gemm_tile_name(static_cast<GemmTile>(t))) continue;
      wanted[t] = known = true;
    }
    if (!known) {
      std::fprintf(stderr, "bench_gemm: --tiles: unknown tile '%s'\n", name.c_str());
      return 1;
    }
  }
  std::vector<GemmTile> tiles{GemmTile::kAuto};
  for (int t = 1; t <= static_cast<int>(kLastGemmTile); ++t)
    if (wanted[t]) tiles.push_back(static_cast<GemmTile>(t));
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "bench_gemm: no CUDA GPU found\n");
    return 1;
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  const std::unique_ptr<i8h_tools::CardMonitor> monitor = i8h_tools::card_monitor_for(0);
  const int64_t R = M * top_k;

  // Uniform random routing: rows per expert of M*top_k draws (each token's top_k distinct).
  std::mt19937_64 rng(seed);
  std::vector<int64_t> counts(E, 0);
  {
    std::vector<int> perm(E);
    for (int64_t t = 0; t < M; ++t) {
      for (int e = 0; e < E; ++e) perm[e] = e;
      for (int j = 0; j < top_k; ++j) {
        std::uniform_int_distribution<int> d(j, E - 1);
        std::swap(perm[j], perm[d(rng)]);
        ++counts[perm[j]];
      }
    }
  }
  std::vector<int64_t> offsets(E + 1, 0);
  for (int e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + counts[e];
  DeviceArena mem;
  int64_t* d_off = mem.alloc<int64_t>(E + 1);
  CK(cudaMemcpy(d_off, offsets.data(), (E + 1) * sizeof(int64_t), cudaMemcpyHostToDevice));

  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "bench_gemm: cublasCreate failed\n");
    return 1;
  }

  // Every case of both GEMMs first (their operands all live at once: about 2 GiB at the default
  // shape), then the timing in rounds (below).
  std::vector<Case> cases;
  struct G {
    const char* name;
    int64_t N, K;
  };
  for (G g : {G{"gemm1", 2 * inter, hidden}, G{"gemm2", hidden, inter}}) {
    const int64_t N = g.N, K = g.K;
    const int64_t nb = num_blocks(K, fmt), ng = num_groups(K, fmt);
    int8_t* A = mem.alloc<int8_t>(R * K);
    int8_t* B = mem.alloc<int8_t>(int64_t(E) * N * K);
    int32_t* QA = mem.alloc<int32_t>(R * nb);
    int32_t* QB = mem.alloc<int32_t>(int64_t(E) * N * nb);
    float* FA = mem.alloc<float>(R * ng);
    float* FB = mem.alloc<float>(int64_t(E) * N * ng);
    float* SA = mem.alloc<float>(R);
    float* SB = mem.alloc<float>(int64_t(E) * N);
    uint16_t* C = mem.alloc<uint16_t>(R * N);
    int32_t* C32 = mem.alloc<int32_t>(R * N);
    fill_int8<<<1024, 256>>>(A, R * K, seed + 1);
    fill_int8<<<1024, 256>>>(B, size_t(E) * N * K, seed + 2);
    fill_int32<<<1024, 256>>>(QA, R * nb, seed + 3, 1, fmt.q_max);
    fill_int32<<<1024, 256>>>(QB, size_t(E) * N * nb, seed + 4, 1, fmt.q_max);
    fill_float<<<1024, 256>>>(FA, R * ng, seed + 5, 1e-4f, 2e-4f);
    fill_float<<<1024, 256>>>(FB, size_t(E) * N * ng, seed + 6, 1e-4f, 2e-4f);
    fill_float<<<1024, 256>>>(SA, R, seed + 7, 1e-3f, 2e-3f);
    fill_float<<<1024, 256>>>(SB, size_t(E) * N, seed + 8, 1e-3f, 2e-3f);
    CK(cudaGetLastError());
    const size_t ws_bytes = grouped_gemm_workspace_size(E);
    void* ws = mem.alloc<uint8_t>(ws_bytes);
    const GroupedGemmShape shape{R, N, K, E};
    auto add_case = [&](const char* kind, std::string tile, std::function<void()> launch) {
      cases.push_back(Case{g.name, kind, std::move(tile), R, N, K, std::move(launch), {}, {}});
    };
    // "auto=<the tile auto chose>" or the forced tile's name.
    auto tile_label = [](GemmTile asked, GemmTile used) {
      return std::string(asked == GemmTile::kAuto ? "auto=" : "") + gemm_tile_name(used);
    };

    for (GemmTile t : tiles) {
      if (is_sm90_tile(t) && !gemm_sm90_available()) continue;
      PerTokenGemmArgs pa;
      pa.A = A;
      pa.scale_a = SA;
      pa.B = B;
      pa.scale_b = SB;
      pa.expert_offsets = d_off;
      pa.C = C;
      const GemmTile used = t == GemmTile::kAuto ? select_gemm_tile(shape, false) : t;
      add_case("per-token", tile_label(t, used),
               [=] { int8_grouped_gemm(shape, pa, ws, ws_bytes, nullptr, t); });
      if (t == GemmTile::k128x128 || t == GemmTile::kSm90_128x256) continue;  // per-token only
      HybridGemmArgs ha;
      ha.A = A;
      ha.QA = QA;
      ha.FA = FA;
      ha.B = B;
      ha.QB = QB;
      ha.FB = FB;
      ha.expert_offsets = d_off;
      ha.C = C;
      const GemmTile used_h =
          t == GemmTile::kAuto ? select_gemm_tile(shape, true, fmt.block_size) : t;
      add_case("hybrid", tile_label(t, used_h),
               [=] { int8_hybrid_grouped_gemm(shape, fmt, ha, ws, ws_bytes, nullptr, t); });
    }
    // cuBLAS dense INT8 at the same total shape: C32[R, N] = A[R, K] * W[N, K]^T, with the
    // first expert's worth of rows of B reused as one N x K matrix (the ceiling for grouped).
    add_case("cublas-dense-int8", "-", [=] {
      const int32_t alpha = 1, beta = 0;
      // Column-major: C^T (N x R) = W (N x K, ld K, transposed) * A^T (K x R).
      const cublasStatus_t st =
          cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(R), int(K), &alpha, B,
                       CUDA_R_8I, int(K), A, CUDA_R_8I, int(K), &beta, C32, CUDA_R_32I, int(N),
                       CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT);
      if (st != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "bench_gemm: cublasGemmEx failed (%d)\n", int(st));
        std::exit(1);
      }
    });
  }

  // One launch of every case before any timing: a case the library rejects (say a forced SM90
  // tile with --quant-block-size 192) stops the benchmark with the library's message.
  try {
    for (Case& c : cases) c.launch();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: %s\n", e.what());
    return 1;
  }
  CK(cudaDeviceSynchronize());

  // Rounds: each case takes its share of the iterations in every round, one case after another,
  // so a clock that drifts over the run (the card reaching its power cap after seconds of
  // GEMMs) hits every case alike instead of whichever is timed last. Warm-up: `warmup` launches
  // before a case's first round, 2 before each later one (the previous case ran meanwhile).
  for (int round = 0; round < rounds; ++round) {
    for (Case& c : cases) {
      i8h_tools::TimerConfig tc;
      tc.warmup = round == 0 ? warmup : std::min(warmup, 2);
      tc.iters = iters / rounds + (round < iters % rounds ? 1 : 0);
      tc.monitor = monitor.get();
      const std::vector<float> ms = i8h_tools::time_iterations_ms(
          tc, [&](int) { c.launch(); }, check);
      c.ms.insert(c.ms.end(), ms.begin(), ms.end());
      const auto& smp = monitor->samples();
      c.samples.insert(c.samples.end(), smp.begin(), smp.end());
    }
  }
  CK(cudaDeviceSynchronize());
  std::vector<Row> rows;
  for (const Case& c : cases) rows.push_back(make_row(c, *monitor));
  cublasDestroy(handle);

  std::printf(
      "\nbench_gemm on %s (SM%d%d, %d SMs); M=%lld top_k=%d E=%d: R=%lld rows, "
      "uniform routing; hybrid B=%d S=%d q_max=%d; sm90_* = wgmma/TMA kernel, other tiles = SM80 "
      "mma.sync kernels\n",
      prop.name, prop.major, prop.minor, prop.multiProcessorCount, (long long)M, top_k, E,
      (long long)R, fmt.block_size, fmt.super_group, fmt.q_max);
  std::printf("%-6s %-18s %-18s %7s %7s %7s %9s %8s %8s %10s %12s  %-12s %s\n", "gemm", "kind",
              "tile", "R", "N", "K", "ms", "p90/p10", "TOPS", "vs cuBLAS", "/ per-token", "SM MHz",
              "clock limits");
  for (const Row& r : rows) {
    double dense = 0, per_token = 0;  // baselines of the same GEMM (per-token: same tile)
    for (const Row& q : rows) {
      if (q.gemm == r.gemm && q.kind == "cublas-dense-int8") dense = q.ms();
      if (q.gemm == r.gemm && q.kind == "per-token" && q.tile == r.tile) per_token = q.ms();
    }
    char ratio[16] = "";
    if (r.kind == "hybrid" && per_token > 0)
      std::snprintf(ratio, sizeof ratio, "%.2fx", r.ms() / per_token);
    std::printf("%-6s %-18s %-18s %7lld %7lld %7lld %9.4f %8.3f %8.1f %9.2fx %12s  %-12s %s\n",
                r.gemm.c_str(), r.kind.c_str(), r.tile.c_str(), (long long)r.R, (long long)r.N,
                (long long)r.K, r.ms(), r.time.p90_ms / r.time.p10_ms, r.tops, dense / r.ms(),
                ratio, i8h_tools::describe_sm_clock(r.card).c_str(),
                r.card.known ? i8h_tools::clock_limit_names(r.card.limits).c_str() : "n/a");
  }
  if (monitor->available())
    std::printf(
        "(ms: median of %d launches in %d interleaved rounds; SM MHz: median (min) of NVML samples "
        "during each case's timed loops, card maximum %u MHz; clock limits: NVML reasons seen, "
        "idle dropped)\n",
        iters, rounds, monitor->card_max_mhz());
  else
    std::printf(
        "(ms: median of %d launches in %d interleaved rounds; card clock not sampled: %s)\n", iters,
        rounds, monitor->last().why_unknown.c_str());
  if (!json.empty()) {
    i8h_bench::JsonWriter j;
    j.begin_object().string("device", prop.name).integer("sm", prop.major * 10 + prop.minor);
    j.integer("iters", iters).integer("rounds", rounds);
    j.integer("block_size", fmt.block_size).integer("super_group", fmt.super_group);
    j.integer("q_max", fmt.q_max).begin_array("rows");
    for (const Row& r : rows) {
      j.begin_object()
          .string("gemm", r.gemm)
          .string("kind", r.kind)
          .string("tile", r.tile)
          .integer("R", r.R)
          .integer("N", r.N)
          .integer("K", r.K)
          .number("ms", r.ms())
          .number("p10_ms", r.time.p10_ms)
          .number("p90_ms", r.time.p90_ms)
          .number("tops", r.tops);
      i8h_bench::write_card_state(j, "card", r.card);
      j.end_object();
    }
    j.end_array().end_object();
    FILE* f = std::fopen(json.c_str(), "w");
    const bool written = f && std::fprintf(f, "%s\n", j.str().c_str()) >= 0;
    if (!(f && std::fclose(f) == 0 && written)) {
      std::fprintf(stderr, "bench_gemm: cannot write %s\n", json.c_str());
      return 1;
    }
  }
  return 0;
}
