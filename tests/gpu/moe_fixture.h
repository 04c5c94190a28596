// A whole MoE layer problem for the GPU tests of the hardening pass (fuzzing, sanitizers,
// stability, non-finite input): random bf16/fp16 activations and weights, caller-chosen routing
// and optional expert_map, weights quantized on the GPU by the library and downloaded for the
// CPU reference (ref::moe_forward_hybrid / _per_token).
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "int8_hybrid_moe/moe.h"
#include "int8_hybrid_moe/reference.h"

namespace i8h_test {

struct MoeCase {
  int64_t M = 0, K = 0, N = 0;
  int E = 0, top_k = 0;
  int8_hybrid_moe::DType dtype = int8_hybrid_moe::DType::kBFloat16;
  int8_hybrid_moe::QuantScheme scheme = int8_hybrid_moe::QuantScheme::kHybrid;
  int8_hybrid_moe::HybridFormat fmt = {};
};

inline std::string describe_case(const MoeCase& c) {
  return int8_hybrid_moe::detail::concat(
      "M=", c.M, " K=", c.K, " N=", c.N, " E=", c.E, " top_k=", c.top_k, " ",
      int8_hybrid_moe::dtype_name(c.dtype), " ", int8_hybrid_moe::quant_scheme_name(c.scheme),
      " B=", c.fmt.block_size, " S=", c.fmt.super_group, " q_max=", c.fmt.q_max);
}

// Raw inputs: hidden [M, K], w13 [E_local, 2N, K], w2 [E_local, K, N] as dtype words; ids and
// weights [M, top_k]; map [E] (empty: none).
struct MoeRawInputs {
  std::vector<uint16_t> hidden, w13, w2;
  std::vector<int32_t> ids, map;
  std::vector<float> wts;
  int E_local = 0;
};

// Random activations N(0,1), weights N(0, 1/fan_in), for `E_local` local experts.
inline MoeRawInputs random_layer(const MoeCase& c, int E_local, uint64_t seed) {
  MoeRawInputs r;
  r.E_local = E_local;
  r.hidden = random_act(size_t(c.M * c.K), seed, c.dtype);
  r.w13 = random_act(size_t(E_local) * 2 * c.N * c.K, seed + 1, c.dtype,
                     1.0f / std::sqrt(static_cast<float>(c.K)));
  r.w2 = random_act(size_t(E_local) * c.K * c.N, seed + 2, c.dtype,
                    1.0f / std::sqrt(static_cast<float>(c.N)));
  return r;
}

// Device copies, GPU-quantized weights, the runner's problem and the reference.
struct MoeFixture {
  MoeCase c;
  MoeRawInputs raw;
  int8_hybrid_moe::MoeProblem p;
  DeviceBuffer<uint16_t> d_hidden, d_w13, d_w2;
  DeviceBuffer<int32_t> d_ids, d_map;
  DeviceBuffer<float> d_wts;
  DeviceBuffer<int8_t> w13q, w2q;
  DeviceBuffer<int32_t> w13Q, w2Q;
  DeviceBuffer<float> w13F, w2F, w13s, w2s;
  int8_hybrid_moe::MoeWeights w;

  MoeFixture(const MoeCase& cs, MoeRawInputs r) : c(cs), raw(std::move(r)) {
    namespace moe = int8_hybrid_moe;
    p.num_tokens = c.M;
    p.hidden = c.K;
    p.intermediate = c.N;
    p.num_experts = c.E;
    p.num_local_experts = raw.E_local;
    p.top_k = c.top_k;
    p.dtype = c.dtype;
    p.scheme = c.scheme;
    p.format = c.fmt;
    put(d_hidden, raw.hidden);
    put(d_ids, raw.ids);
    put(d_wts, raw.wts);
    if (!raw.map.empty()) put(d_map, raw.map);
    put(d_w13, raw.w13);
    put(d_w2, raw.w2);
    const int64_t K = c.K, N = c.N, E = raw.E_local;
    w13q.resize(size_t(E * 2 * N * K));
    w2q.resize(size_t(E * K * N));
    if (c.scheme == moe::QuantScheme::kHybrid) {
      w13Q.resize(size_t(E * 2 * N * moe::num_blocks(K, c.fmt)));
      w13F.resize(size_t(E * 2 * N * moe::num_groups(K, c.fmt)));
      w2Q.resize(size_t(E * K * moe::num_blocks(N, c.fmt)));
      w2F.resize(size_t(E * K * moe::num_groups(N, c.fmt)));
      moe::quantize_weights_hybrid(d_w13.get(), c.dtype, E, 2 * N, K, c.fmt,
                                   {w13q.get(), w13Q.get(), w13F.get()}, nullptr);
      moe::quantize_weights_hybrid(d_w2.get(), c.dtype, E, K, N, c.fmt,
                                   {w2q.get(), w2Q.get(), w2F.get()}, nullptr);
      w.w13_hybrid = {w13q.get(), w13Q.get(), w13F.get()};
      w.w2_hybrid = {w2q.get(), w2Q.get(), w2F.get()};
    } else {
      w13s.resize(size_t(E * 2 * N));
      w2s.resize(size_t(E * K));
      moe::quantize_weights_per_channel(d_w13.get(), c.dtype, E, 2 * N, K, {w13q.get(), w13s.get()},
                                        nullptr);
      moe::quantize_weights_per_channel(d_w2.get(), c.dtype, E, K, N, {w2q.get(), w2s.get()},
                                        nullptr);
      w.w13_channel = {w13q.get(), w13s.get()};
      w.w2_channel = {w2q.get(), w2s.get()};
    }
    if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("weight quantization");
  }

  template <typename T>
  static void put(DeviceBuffer<T>& d, const std::vector<T>& h) {
    d.resize(h.size());
    d.upload(h);
  }

  int8_hybrid_moe::MoeInputs inputs() const {
    int8_hybrid_moe::MoeInputs in;
    in.hidden = d_hidden.get();
    in.topk_ids = d_ids.get();
    in.topk_weights = d_wts.get();
    in.expert_map = raw.map.empty() ? nullptr : d_map.get();
    return in;
  }

  // Reference on `tokens`. With an expert_map the reference sees local ids; dropped and invalid
  // slots get weight 0 (an exact no-op in the weighted sum).
  std::vector<float> reference(const std::vector<int64_t>& tokens) const {
    namespace moe = int8_hybrid_moe;
    namespace ref = int8_hybrid_moe::ref;
    ref::MoeRefProblem rp;
    rp.M = c.M;
    rp.K = c.K;
    rp.N = c.N;
    rp.E = raw.E_local;
    rp.top_k = c.top_k;
    rp.dtype = c.dtype;
    rp.fmt = c.fmt;
    std::vector<int32_t> rids = raw.ids;
    std::vector<float> rw = raw.wts;
    for (size_t i = 0; i < rids.size(); ++i) {
      const int32_t g = rids[i];
      int32_t l = (g >= 0 && g < c.E) ? g : -1;
      if (l >= 0 && !raw.map.empty()) l = raw.map[size_t(g)];
      if (l >= raw.E_local) l = -1;
      rids[i] = l >= 0 ? l : 0;
      if (l < 0) rw[i] = 0.0f;
    }
    const std::vector<float> hf = ref::to_float(raw.hidden, c.dtype);
    const int64_t K = c.K, N = c.N, E = raw.E_local;
    if (c.scheme == moe::QuantScheme::kHybrid) {
      auto split = [&](const DeviceBuffer<int8_t>& q, const DeviceBuffer<int32_t>& Q,
                       const DeviceBuffer<float>& F, int64_t rows, int64_t cols) {
        return ref::split_experts(q.download(), Q.download(), F.download(), E, rows, cols, c.fmt);
      };
      return ref::moe_forward_hybrid(rp, hf, rids, rw, split(w13q, w13Q, w13F, 2 * N, K),
                                     split(w2q, w2Q, w2F, K, N), &tokens);
    }
    auto split = [&](const DeviceBuffer<int8_t>& q, const DeviceBuffer<float>& s, int64_t rows,
                     int64_t cols) {
      const auto hq = q.download();
      const auto hs = s.download();
      std::vector<ref::PerTokenTensor> v(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) {
        ref::PerTokenTensor& t = v[size_t(e)];
        t.rows = rows;
        t.K = cols;
        t.q.assign(hq.begin() + e * rows * cols, hq.begin() + (e + 1) * rows * cols);
        t.scale.assign(hs.begin() + e * rows, hs.begin() + (e + 1) * rows);
      }
      return v;
    };
    return ref::moe_forward_per_token(rp, hf, rids, rw, split(w13q, w13s, 2 * N, K),
                                      split(w2q, w2s, K, N), &tokens);
  }
};

// One eager forward on `stream` into a fresh poisoned output; returns its raw words.
// invalid_ids: optional device counter of out-of-range topk ids (moe_forward's argument).
inline std::vector<uint16_t> run_forward(const MoeFixture& f, const int8_hybrid_moe::MoeOptions& o,
                                         cudaStream_t stream, int32_t* invalid_ids = nullptr) {
  DeviceBuffer<uint8_t> ws(int8_hybrid_moe::moe_workspace_size(f.p, o));
  DeviceBuffer<uint16_t> out(size_t(f.c.M * f.c.K));
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("before forward");
  int8_hybrid_moe::moe_forward(f.p, o, f.inputs(), f.w, out.get(), ws.get(), ws.size(), stream,
                               nullptr, invalid_ids);
  if (cudaStreamSynchronize(stream) != cudaSuccess) throw std::runtime_error("forward failed");
  return out.download();
}

inline int8_hybrid_moe::MoeOptions moe_options(int fused_silu, int fused_permute) {
  int8_hybrid_moe::MoeOptions o;
  o.fused_silu_quant = fused_silu;
  o.fused_permute_quant = fused_permute;
  return o;
}

}  // namespace i8h_test
