// Fuzzing of the runner against the CPU reference: random valid problems (shapes incl. tails of
// every tile, dtypes, both schemes, hybrid formats B in {64,128,256}, S, q_max 1..127, routing
// skew incl. empty experts and all tokens on one expert set, invalid ids, optional expert_map,
// forced GEMM tiles), each run through the four fused/unfused paths (bitwise equal) and checked
// against ref::moe_forward_hybrid / _per_token with the agreement criterion of the CLIs
// (bench_cli.h, docs/FORMAT.md section 8).
//
//   I8H_FUZZ_SEED=<seed>   replay (default: a fresh seed, printed)
//   I8H_FUZZ_COUNT=<n>     problems (default 200)
//   I8H_FUZZ_ONLY=<i>      run problem i of that seed only
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "gpu/gpu_test_util.h"
#include "gpu/moe_fixture.h"
#include "int8_hybrid_moe/moe.h"
#include "int8_hybrid_moe/reference.h"

namespace {

namespace moe = int8_hybrid_moe;
namespace ref = int8_hybrid_moe::ref;
using i8h_test::MoeCase;
using i8h_test::MoeFixture;
using i8h_test::MoeRawInputs;

uint64_t env_u64(const char* name, uint64_t fallback, bool* given = nullptr) {
  const char* v = std::getenv(name);
  if (given) *given = v != nullptr && *v != '\0';
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 10);
}

const char* const kRoutingNames[] = {"uniform", "zipf", "all-on-one-set", "subset", "invalid-ids"};

struct FuzzProblem {
  MoeCase c;
  int routing = 0;
  bool with_map = false;
  moe::GemmTile tile1 = moe::GemmTile::kAuto, tile2 = moe::GemmTile::kAuto;
};

std::string describe(const FuzzProblem& f, const MoeRawInputs& r) {
  return i8h_test::describe_case(f.c) + " routing=" + kRoutingNames[f.routing] +
         " expert_map=" + (f.with_map ? std::to_string(r.E_local) + " local" : "none") +
         " tiles=" + moe::gemm_tile_name(f.tile1) + "/" + moe::gemm_tile_name(f.tile2);
}

FuzzProblem draw_problem(std::mt19937_64& g) {
  auto uni = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(g);
  };
  FuzzProblem f;
  MoeCase& c = f.c;
  c.scheme = uni(0, 1) ? moe::QuantScheme::kHybrid : moe::QuantScheme::kPerToken;
  c.dtype = uni(0, 1) ? moe::DType::kBFloat16 : moe::DType::kFloat16;
  c.M = uni(0, 4) < 3 ? uni(1, 200) : 16 * uni(1, 12);
  do {
    c.K = 16 * uni(1, 48);
    c.N = 16 * uni(1, 32);
  } while (c.K * c.N > 256 * 512);
  const int blocks[] = {64, 128, 256};
  c.fmt.block_size = blocks[uni(0, 2)];
  const int groups[] = {1, 2, 3, 256};
  c.fmt.super_group = groups[uni(0, 3)];
  const int q = static_cast<int>(uni(0, 3));
  c.fmt.q_max = q == 0 ? 1 : q == 1 ? 127 : static_cast<int>(uni(1, 127));
  c.E = static_cast<int>(uni(0, 3) == 0 ? uni(1, 4) : uni(1, 40));
  c.top_k = static_cast<int>(uni(1, std::min(c.E, 8)));
  f.routing = static_cast<int>(uni(0, 4));
  f.with_map = uni(0, 3) == 0;
  // The SM90 tile (H100 / H200 builds) where it applies: hybrid needs B a multiple of 128.
  const bool sm90 = moe::gemm_sm90_available() &&
                    (c.scheme != moe::QuantScheme::kHybrid || c.fmt.block_size % 128 == 0);
  const moe::GemmTile hy[] = {moe::GemmTile::kAuto, moe::GemmTile::k64x64, moe::GemmTile::k128x64,
                              moe::GemmTile::kSm90_128x128};
  const moe::GemmTile pt[] = {moe::GemmTile::kAuto,         moe::GemmTile::k64x64,
                              moe::GemmTile::k128x64,       moe::GemmTile::k128x128,
                              moe::GemmTile::kSm90_128x128, moe::GemmTile::kSm90_128x256};
  if (c.scheme == moe::QuantScheme::kHybrid) {
    f.tile1 = hy[uni(0, sm90 ? 3 : 2)];
    f.tile2 = hy[uni(0, sm90 ? 3 : 2)];
  } else {
    f.tile1 = pt[uni(0, sm90 ? 5 : 3)];
    f.tile2 = pt[uni(0, sm90 ? 5 : 3)];
  }
  return f;
}

// Routing ids/weights and the optional map for the drawn kind.
void draw_routing(const FuzzProblem& f, std::mt19937_64& g, uint64_t seed, MoeRawInputs& r) {
  const MoeCase& c = f.c;
  auto uni = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(g);
  };
  const size_t slots = size_t(c.M) * c.top_k;
  r.ids.assign(slots, 0);
  r.wts.assign(slots, 0.0f);
  std::vector<int32_t> pool(size_t(c.E));
  std::iota(pool.begin(), pool.end(), 0);
  if (f.routing == 1) {
    const i8h_bench::RoutingData d =
        i8h_bench::make_routing(c.M, c.E, c.top_k, i8h_bench::RoutingKind::kZipf, seed);
    r.ids = d.ids;
    r.wts = d.weights;
  } else {
    std::vector<int32_t> choices = pool;
    if (f.routing == 2) {
      std::shuffle(choices.begin(), choices.end(), g);
      choices.resize(size_t(c.top_k));  // every token on the same top_k experts
    } else if (f.routing == 3) {
      std::shuffle(choices.begin(), choices.end(), g);
      choices.resize(size_t(std::max<int64_t>(c.top_k, c.E / 4)));
    }
    std::uniform_real_distribution<float> wd(0.05f, 1.0f);
    for (int64_t t = 0; t < c.M; ++t) {
      std::shuffle(choices.begin(), choices.end(), g);
      float sum = 0;
      for (int j = 0; j < c.top_k; ++j) {
        r.ids[size_t(t * c.top_k + j)] = choices[size_t(j)];
        sum += (r.wts[size_t(t * c.top_k + j)] = wd(g));
      }
      for (int j = 0; j < c.top_k; ++j) r.wts[size_t(t * c.top_k + j)] /= sum;
    }
    if (f.routing == 4)
      for (size_t i = 0; i < slots; i += size_t(uni(1, 9)))
        r.ids[i] = uni(0, 1) ? -1 - static_cast<int32_t>(uni(0, 5))
                             : c.E + static_cast<int32_t>(uni(0, 5));
  }
  r.E_local = c.E;
  if (f.with_map) {
    std::vector<int32_t> local;
    for (int e = 0; e < c.E; ++e)
      if (uni(0, 9) < 6) local.push_back(e);
    if (local.empty()) local.push_back(static_cast<int32_t>(uni(0, c.E - 1)));
    r.E_local = static_cast<int>(local.size());
    std::vector<int32_t> ids_local(local.size());
    std::iota(ids_local.begin(), ids_local.end(), 0);
    std::shuffle(ids_local.begin(), ids_local.end(), g);
    r.map.assign(size_t(c.E), -1);
    for (size_t i = 0; i < local.size(); ++i) r.map[size_t(local[i])] = ids_local[i];
    // An out-of-range map entry behaves like -1 (docs/FORMAT.md section 6).
    if (c.E > r.E_local && uni(0, 1)) {
      for (int e = 0; e < c.E; ++e)
        if (r.map[size_t(e)] < 0) {
          r.map[size_t(e)] = r.E_local + static_cast<int32_t>(uni(0, 3));
          break;
        }
    }
  }
}

struct FuzzStats {
  int run = 0, failed = 0, with_tight_outside = 0;
  double worst_tight = 0, worst_loose = 0, worst_l2_over_limit = 0;
  int64_t elements = 0;
};

TEST(Fuzz, RunnerVsReference) {
  I8H_REQUIRE_GPU();
  bool seed_given = false;
  const uint64_t seed = env_u64("I8H_FUZZ_SEED", i8h_test::fresh_seed(), &seed_given);
  const int count = static_cast<int>(env_u64("I8H_FUZZ_COUNT", 200));
  bool only_given = false;
  const int only = static_cast<int>(env_u64("I8H_FUZZ_ONLY", 0, &only_given));
  std::printf("[fuzz] seed %llu (%s), %d problems; replay: I8H_FUZZ_SEED=%llu I8H_FUZZ_COUNT=%d\n",
              static_cast<unsigned long long>(seed), seed_given ? "from I8H_FUZZ_SEED" : "fresh",
              count, static_cast<unsigned long long>(seed), count);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  FuzzStats st;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) {
    if (only_given && i != only) continue;
    const uint64_t pseed = i8h_bench::mix64(seed ^ (0x9E3779B97F4A7C15ull * uint64_t(i + 1)));
    std::mt19937_64 g(pseed);
    const FuzzProblem f = draw_problem(g);
    MoeRawInputs raw;
    draw_routing(f, g, pseed, raw);
    {
      const MoeRawInputs layer = i8h_test::random_layer(f.c, raw.E_local, pseed);
      raw.hidden = layer.hidden;
      raw.w13 = layer.w13;
      raw.w2 = layer.w2;
    }
    const std::string what = "fuzz problem " + std::to_string(i) + " of seed " +
                             std::to_string(seed) + " (I8H_FUZZ_SEED=" + std::to_string(seed) +
                             " I8H_FUZZ_ONLY=" + std::to_string(i) + "): " + describe(f, raw);
    SCOPED_TRACE(what);
    MoeFixture fx(f.c, raw);
    std::vector<uint16_t> first;
    bool ok = true;
    for (int silu : {1, 0})
      for (int perm : {0, 1}) {
        moe::MoeOptions o = i8h_test::moe_options(silu, perm);
        o.gemm1_tile = f.tile1;
        o.gemm2_tile = f.tile2;
        const std::vector<uint16_t> out = i8h_test::run_forward(fx, o, stream);
        if (first.empty()) {
          first = out;
        } else if (out != first) {
          ADD_FAILURE() << "fused_silu_quant=" << silu << " fused_permute_quant=" << perm
                        << " differs from fused_silu_quant=1 fused_permute_quant=0";
          ok = false;
        }
      }
    const std::vector<int64_t> tokens = i8h_bench::sample_tokens(f.c.M, 48);
    const std::vector<float> want = fx.reference(tokens);
    std::vector<float> got;
    got.reserve(want.size());
    for (int64_t t : tokens)
      for (int64_t k = 0; k < f.c.K; ++k)
        got.push_back(ref::to_float(first[size_t(t * f.c.K + k)], f.c.dtype));
    const i8h_bench::Agreement a = i8h_bench::check_agreement(got, want, f.c.dtype, f.c.K);
    if (!a.agree) {
      ADD_FAILURE() << "disagrees with the reference: " << i8h_bench::describe_agreement(a)
                    << "; first outside tight in token "
                    << (a.first_bad >= 0 ? tokens[size_t(a.first_bad / f.c.K)] : -1);
      ok = false;
    }
    ++st.run;
    st.failed += ok ? 0 : 1;
    st.with_tight_outside += a.num_bad > 0 ? 1 : 0;
    st.elements += a.count;
    st.worst_tight = std::max(st.worst_tight, a.worst_err_over_tol);
    st.worst_loose = std::max(st.worst_loose, a.worst_err_over_loose);
    st.worst_l2_over_limit = std::max(st.worst_l2_over_limit, a.rel_l2 / a.rel_l2_limit);
    if (!ok) std::printf("[fuzz] FAILED %s\n", what.c_str());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "[fuzz] seed %llu: %d problems (x4 fused/unfused paths), %d failed, %.1f s; %lld elements "
      "checked; problems with elements outside the tight bound: %d; worst err/tight %.3g, "
      "err/loose %.3g, rel-L2/limit %.3g\n",
      static_cast<unsigned long long>(seed), st.run, st.failed, secs,
      static_cast<long long>(st.elements), st.with_tight_outside, st.worst_tight, st.worst_loose,
      st.worst_l2_over_limit);
  cudaStreamDestroy(stream);
}

}  // namespace
