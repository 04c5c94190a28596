// Micro-benchmark of the memory-bound MoE kernels: GB/s (bytes read + written through the API,
// counted exactly) against the device-to-device copy bandwidth. CUDA events, warm-up, median of
// the timed iterations, inputs rotated over enough buffers to exceed L2.
//
//   bench_kernels [--iters N] [--json PATH]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_timer.h"
#include "int8_hybrid_moe/kernels.h"

using namespace int8_hybrid_moe;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_kernels: error: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
#define CK(expr) check((expr), #expr)

// Device allocation freed at exit of scope.
struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buf(size_t n) : bytes(n) { CK(cudaMalloc(&p, std::max<size_t>(n, 1))); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Fills a buffer with random bf16 words of normal(0, 1) values (via a host staging copy).
void fill_bf16(Buf& b, uint64_t seed) {
  const size_t n = b.bytes / 2;
  std::vector<uint16_t> h(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : h) {
    const float f = nd(rng);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    v = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  CK(cudaMemcpy(b.p, h.data(), n * 2, cudaMemcpyHostToDevice));
}

struct Result {
  std::string kernel, shape;
  double us = 0, gbps = 0, pct = 0;
};

int g_iters = 25;

// Median time (us) of `iters` runs of fn(i) (i rotates the buffer set), after 3 warm-up runs; a
// host sync after each run keeps the runs from overlapping.
double time_median_us(const std::function<void(int)>& fn) {
  i8h_tools::TimerConfig tc;
  tc.warmup = 3;
  tc.iters = g_iters;
  tc.sync_each_iteration = true;
  return i8h_tools::upper_median(i8h_tools::time_iterations_ms(tc, fn, check)) * 1e3;
}

// Number of buffer copies so that one rotation exceeds twice the L2 size.
int sets_for(size_t bytes_per_set, int l2_bytes) {
  return int(std::max<size_t>(2, (2 * size_t(l2_bytes) + bytes_per_set - 1) / bytes_per_set));
}

}  // namespace

int run(int argc, char** argv) {
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--iters" && i + 1 < argc) {
      g_iters = std::atoi(argv[++i]);
      if (g_iters < 20) {
        std::fprintf(stderr, "bench_kernels: error: --iters must be >= 20\n");
        return 2;
      }
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_kernels [--iters N (>= 20, default 25)] [--json PATH]\n");
      return 0;
    } else {
      std::fprintf(stderr, "bench_kernels: error: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "bench_kernels: error: no CUDA GPU available\n");
    return 1;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int l2 = prop.l2CacheSize;
  std::vector<Result> results;

  // --- Copy bandwidth: 1 GiB device-to-device, bytes read + written. ---
  double copy_gbps = 0;
  {
    const size_t bytes = size_t(1) << 30;
    Buf src(bytes), dst(bytes);
    CK(cudaMemset(src.p, 1, bytes));
    const double us = time_median_us(
        [&](int) { CK(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice, 0)); });
    copy_gbps = 2.0 * bytes / (us * 1e3);
    results.push_back({"memcpy D2D", "1 GiB", us, copy_gbps, 100.0});
  }
  auto add = [&](const char* name, const std::string& shape, double us, double bytes) {
    const double gbps = bytes / (us * 1e3);
    results.push_back({name, shape, us, gbps, 100.0 * gbps / copy_gbps});
  };

  const DType dt = DType::kBFloat16;
  HybridFormat fmt;  // B 128, S 256, q_max 16
  // --- Row quantization [65536, 2048]. ---
  {
    const int64_t R = 65536, K = 2048;
    const int64_t nb = num_blocks(K, fmt), ng = num_groups(K, fmt);
    const size_t in_bytes = size_t(R * K * 2);
    const int sets = sets_for(in_bytes, l2);
    std::vector<std::unique_ptr<Buf>> x, q, Q, F, s;
    for (int i = 0; i < sets; ++i) {
      x.emplace_back(new Buf(in_bytes));
      fill_bf16(*x.back(), 11 + i);
      q.emplace_back(new Buf(size_t(R * K)));
      Q.emplace_back(new Buf(size_t(R * nb * 4)));
      F.emplace_back(new Buf(size_t(R * ng * 4)));
      s.emplace_back(new Buf(size_t(R * 4)));
    }
    double us = time_median_us([&](int i) {
      i %= sets;
      quantize_rows_hybrid(x[i]->p, dt, R, K, fmt,
                           {q[i]->as<int8_t>(), Q[i]->as<int32_t>(), F[i]->as<float>()}, nullptr,
                           0);
    });
    add("quantize_rows_hybrid", "[65536, 2048] bf16 B128", us,
        double(R * K * 2 + R * K + R * nb * 4 + R * ng * 4));
    us = time_median_us([&](int i) {
      i %= sets;
      quantize_rows_per_token(x[i]->p, dt, R, K, {q[i]->as<int8_t>(), s[i]->as<float>()}, nullptr,
                              0);
    });
    add("quantize_rows_per_token", "[65536, 2048] bf16", us, double(R * K * 2 + R * K + R * 4));
  }

  // --- Routing: M = 8192, K = 2048, E = 256, top_k = 8. ---
  {
    const int64_t M = 8192, K = 2048;
    const int E = 256, top_k = 8;
    const int64_t n = M * top_k;
    std::vector<int32_t> ids(static_cast<size_t>(n));
    std::mt19937_64 rng(7);
    std::vector<int32_t> perm(E);
    for (int e = 0; e < E; ++e) perm[size_t(e)] = e;
    for (int64_t t = 0; t < M; ++t) {
      for (int j = 0; j < top_k; ++j)  // distinct experts per token: partial shuffle
        std::swap(perm[size_t(j)], perm[size_t(j + rng() % (E - j))]);
      for (int j = 0; j < top_k; ++j) ids[size_t(t * top_k + j)] = perm[size_t(j)];
    }
    PermuteProblem p;
    p.num_tokens = M;
    p.hidden = K;
    p.top_k = top_k;
    p.num_experts = p.num_local_experts = E;
    const size_t hid_bytes = size_t(M * K * 2);
    const int sets = sets_for(hid_bytes, l2);
    std::vector<std::unique_ptr<Buf>> hidden;
    for (int i = 0; i < sets; ++i) {
      hidden.emplace_back(new Buf(hid_bytes));
      fill_bf16(*hidden.back(), 100 + i);
    }
    Buf d_ids(size_t(n * 4)), offsets(size_t(E + 1) * 8), p2ts(size_t(n * 4)), ts2p(size_t(n * 4));
    Buf gathered(size_t(n * K * 2));
    CK(cudaMemcpy(d_ids.p, ids.data(), size_t(n * 4), cudaMemcpyHostToDevice));
    const size_t ws_bytes = moe_permute_workspace_size(p);
    Buf ws(ws_bytes);
    PermuteOutputs out;
    out.expert_offsets = offsets.as<int64_t>();
    out.permuted_to_token_slot = p2ts.as<int32_t>();
    out.token_slot_to_permuted = ts2p.as<int32_t>();
    out.permuted_hidden = gathered.p;
    double us = time_median_us([&](int i) {
      moe_permute(p, dt, hidden[size_t(i % sets)]->p, d_ids.as<int32_t>(), nullptr, out, ws.p,
                  ws_bytes, 0);
    });
    // ids read; both maps and offsets written; every slot kept: one hidden row read and one
    // permuted row written per slot.
    add("moe_permute (maps+gather)", "M 8192 K 2048 E 256 top_k 8", us,
        double(n * 4 + n * 4 * 2 + (E + 1) * 8 + 2 * n * K * 2));

    const int64_t nb = num_blocks(K, fmt), ng = num_groups(K, fmt);
    Buf q(size_t(n * K)), Q(size_t(n * nb * 4)), F(size_t(n * ng * 4));
    us = time_median_us([&](int i) {
      permute_quantize_hybrid(hidden[size_t(i % sets)]->p, dt, ts2p.as<int32_t>(), M, top_k, K, fmt,
                              {q.as<int8_t>(), Q.as<int32_t>(), F.as<float>()}, 0);
    });
    add("permute_quantize_hybrid", "M 8192 K 2048 top_k 8 B128", us,
        double(M * K * 2 + n * 4 + n * K + n * nb * 4 + n * ng * 4));

    // Unpermute [65536, 2048] -> [8192, 2048] with the permute's map; y rotated (256 MB each).
    std::vector<std::unique_ptr<Buf>> y;
    for (int i = 0; i < 2; ++i) {
      y.emplace_back(new Buf(size_t(n * K * 2)));
      fill_bf16(*y.back(), 200 + i);
    }
    Buf w(size_t(n * 4)), o(size_t(M * K * 2));
    std::vector<float> wh(static_cast<size_t>(n), 0.125f);
    CK(cudaMemcpy(w.p, wh.data(), size_t(n * 4), cudaMemcpyHostToDevice));
    us = time_median_us([&](int i) {
      moe_unpermute(y[size_t(i % 2)]->p, dt, w.as<float>(), ts2p.as<int32_t>(), M, top_k, K, o.p,
                    0);
    });
    add("moe_unpermute", "[65536, 2048] -> [8192, 2048]", us,
        double(n * K * 2 + n * 4 + n * 4 + M * K * 2));
  }

  // --- SiLU-and-mul [65536, 1024] -> [65536, 512], plain and fused with quantization. ---
  {
    const int64_t R = 65536, N = 512;
    const int64_t nb = num_blocks(N, fmt), ng = num_groups(N, fmt);
    const size_t in_bytes = size_t(R * 2 * N * 2);
    const int sets = sets_for(in_bytes, l2);
    std::vector<std::unique_ptr<Buf>> x;
    for (int i = 0; i < sets; ++i) {
      x.emplace_back(new Buf(in_bytes));
      fill_bf16(*x.back(), 300 + i);
    }
    Buf out(size_t(R * N * 2)), q(size_t(R * N)), Q(size_t(R * nb * 4)), F(size_t(R * ng * 4));
    double us = time_median_us(
        [&](int i) { silu_and_mul(x[size_t(i % sets)]->p, dt, R, N, out.p, nullptr, 0); });
    add("silu_and_mul", "[65536, 1024] -> [65536, 512]", us, double(R * 2 * N * 2 + R * N * 2));
    us = time_median_us([&](int i) {
      silu_and_mul_quantize_hybrid(x[size_t(i % sets)]->p, dt, R, N, fmt,
                                   {q.as<int8_t>(), Q.as<int32_t>(), F.as<float>()}, nullptr, 0);
    });
    add("silu_and_mul_quantize_hybrid", "[65536, 1024] -> [65536, 512] B128", us,
        double(R * 2 * N * 2 + R * N + R * nb * 4 + R * ng * 4));
  }
  CK(cudaDeviceSynchronize());

  std::printf("device: %s (L2 %d MiB), median of %d iterations\n", prop.name, l2 >> 20, g_iters);
  std::printf("%-30s %-38s %10s %9s %8s\n", "kernel", "shape", "time (us)", "GB/s", "% copy");
  for (const auto& r : results)
    std::printf("%-30s %-38s %10.1f %9.1f %7.1f%%\n", r.kernel.c_str(), r.shape.c_str(), r.us,
                r.gbps, r.pct);
  std::printf("target: >= 70%% of copy bandwidth for quantization, unpermute and SiLU+quant\n");

  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "bench_kernels: error: cannot write '%s'\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"iterations\": %d,\n  \"copy_gbps\": %.3f,\n",
                 prop.name, g_iters, copy_gbps);
    std::fprintf(f, "  \"results\": [\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::fprintf(f,
                   "    {\"kernel\": \"%s\", \"shape\": \"%s\", \"time_us\": %.3f, \"gbps\": %.3f, "
                   "\"pct_of_copy\": %.2f}%s\n",
                   r.kernel.c_str(), r.shape.c_str(), r.us, r.gbps, r.pct,
                   i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: error: %s\n", e.what());
    return 1;
  }
}
