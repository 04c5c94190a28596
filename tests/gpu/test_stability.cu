// Stability: one small forward captured in a CUDA graph together with a checksum kernel, replayed
// 10,000 times back to back. Every replay's checksum (written to its own slot by the graph) must
// equal the eager forward's, every 100th output is also compared word by word, and the free
// device memory must not shrink over the replays.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "bench_cli.h"
#include "gpu/gpu_test_util.h"
#include "gpu/moe_fixture.h"
#include "int8_hybrid_moe/moe.h"

namespace {

namespace moe = int8_hybrid_moe;
using i8h_test::DeviceBuffer;

// Order-independent 64-bit checksum of n words (each word mixed with its index), written to
// sums[*counter], then *counter += 1. One block: the graph stays a plain chain.
__global__ void checksum_kernel(const uint16_t* words, int64_t n, unsigned long long* sums,
                                int* counter) {
  __shared__ unsigned long long acc;
  if (threadIdx.x == 0) acc = 0;
  __syncthreads();
  unsigned long long local = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    unsigned long long x = (static_cast<unsigned long long>(i) << 16) | words[i];
    x ^= x >> 31;
    x *= 0x7FB5D329728EA185ull;
    x ^= x >> 27;
    local += x;
  }
  atomicAdd(&acc, local);
  __syncthreads();
  if (threadIdx.x == 0) {
    sums[*counter] = acc;
    *counter += 1;
  }
}

unsigned long long host_checksum(const std::vector<uint16_t>& w) {
  unsigned long long s = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    unsigned long long x = (static_cast<unsigned long long>(i) << 16) | w[i];
    x ^= x >> 31;
    x *= 0x7FB5D329728EA185ull;
    x ^= x >> 27;
    s += x;
  }
  return s;
}

TEST(Stability, GraphReplays10000) {
  I8H_REQUIRE_GPU();
  constexpr int kReplays = 10000;
  for (moe::QuantScheme scheme : {moe::QuantScheme::kHybrid, moe::QuantScheme::kPerToken}) {
    i8h_test::MoeCase c;
    c.M = 64;
    c.K = 256;
    c.N = 128;
    c.E = 8;
    c.top_k = 2;
    c.scheme = scheme;
    const uint64_t seed = i8h_test::fresh_seed();
    SCOPED_TRACE(i8h_test::describe_case(c) + " seed=" + std::to_string(seed));
    i8h_test::MoeRawInputs raw = i8h_test::random_layer(c, c.E, seed);
    const i8h_bench::RoutingData r =
        i8h_bench::make_routing(c.M, c.E, c.top_k, i8h_bench::RoutingKind::kZipf, seed);
    raw.ids = r.ids;
    raw.wts = r.weights;
    i8h_test::MoeFixture f(c, raw);
    cudaStream_t stream = nullptr;
    I8H_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const moe::MoeOptions o = i8h_test::moe_options(1, 0);
    const std::vector<uint16_t> eager = i8h_test::run_forward(f, o, stream);
    const unsigned long long want = host_checksum(eager);

    DeviceBuffer<uint8_t> ws(moe::moe_workspace_size(f.p, o));
    DeviceBuffer<uint16_t> out(size_t(c.M * c.K));
    DeviceBuffer<unsigned long long> sums(kReplays + 1);
    DeviceBuffer<int> counter(1);
    counter.poison(0);
    I8H_CUDA_OK(cudaDeviceSynchronize());
    cudaGraph_t graph = nullptr;
    I8H_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    moe::moe_forward(f.p, o, f.inputs(), f.w, out.get(), ws.get(), ws.size(), stream);
    checksum_kernel<<<1, 256, 0, stream>>>(out.get(), c.M * c.K, sums.get(), counter.get());
    I8H_CUDA_OK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    I8H_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    // One warm-up replay, then the counter restarts.
    I8H_CUDA_OK(cudaGraphLaunch(exec, stream));
    I8H_CUDA_OK(cudaStreamSynchronize(stream));
    counter.poison(0);
    I8H_CUDA_OK(cudaDeviceSynchronize());
    size_t free_before = 0, free_after = 0, total = 0;
    I8H_CUDA_OK(cudaMemGetInfo(&free_before, &total));
    int compared = 0;
    for (int i = 0; i < kReplays; ++i) {
      I8H_CUDA_OK(cudaGraphLaunch(exec, stream));
      if (i % 100 == 99) {
        I8H_CUDA_OK(cudaStreamSynchronize(stream));
        ASSERT_TRUE(out.download() == eager) << "replay " << i << " differs from eager";
        ++compared;
      }
    }
    I8H_CUDA_OK(cudaStreamSynchronize(stream));
    I8H_CUDA_OK(cudaMemGetInfo(&free_after, &total));
    EXPECT_EQ(counter.download()[0], kReplays);
    const std::vector<unsigned long long> got = sums.download();
    int mismatched = 0;
    for (int i = 0; i < kReplays; ++i) mismatched += got[size_t(i)] == want ? 0 : 1;
    EXPECT_EQ(mismatched, 0) << "replays whose output checksum differs from the eager forward";
    EXPECT_GE(free_after, free_before) << "free device memory shrank over the replays";
    std::printf(
        "[stability] %s: %d graph replays, %d checksums differ, %d outputs compared word "
        "by word, free memory %zu -> %zu bytes\n",
        moe::quant_scheme_name(scheme), kReplays, mismatched, compared, free_before, free_after);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

}  // namespace
