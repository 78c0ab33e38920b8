// Forward + backward of the multi_layer and latent heads at Qwen2-0.5B-like sizes: d = 896,
// L = 24 layers, batch 64 texts; several latent counts. bench/compare_heads_torch.py runs the
// same modules in PyTorch and prints the ratio.
//
// Arguments after Google Benchmark's own: none. The latent head sees 64 texts of 32 pooled
// tokens (2048 token rows).
#include <benchmark/benchmark.h>

#include "lmembed/cpu/dispatch.hpp"
#include "lmembed/nn/init.hpp"
#include "lmembed/pooling/latent.hpp"
#include "lmembed/pooling/multi_layer.hpp"

using namespace lmembed;

namespace {

// The run-time CPU level in the benchmark's context (JSON "context", console header).
[[maybe_unused]] const bool kCpuContext =
    (benchmark::AddCustomContext("lmembed_cpu", cpu::describe()), true);

constexpr std::int64_t kD = 896, kL = 24, kBatch = 64, kTokens = 32;

Matrix random_matrix(std::int64_t r, std::int64_t c, std::uint64_t seed) {
  nn::Rng rng(seed);
  Matrix m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal());
  return m;
}

void BM_MultiLayerForwardBackward(benchmark::State& state) {
  auto c = pooling::MultiLayerHead<float>::Config::defaults(kD, kL);
  c.n_latents = state.range(0);  // 8 heads x 112, FF x4
  pooling::MultiLayerHead<float> head(c);
  head.init(1);
  Captured in;
  in.spec = pooling::multi_layer::capture;
  in.n_seq = kBatch;
  in.n_layers = kL;
  in.d = kD;
  in.states = random_matrix(kBatch * kL, kD, 2);
  const Matrix dy = random_matrix(kBatch, kD, 3);
  pooling::MultiLayerHead<float>::Context ctx;
  for (auto _ : state) {
    head.zero_grad();
    Matrix y = head.forward(in, ctx);
    Matrix dx = head.backward(dy, ctx);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["latents"] = static_cast<double>(c.n_latents);
}
BENCHMARK(BM_MultiLayerForwardBackward)
    ->Arg(64)
    ->Arg(256)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->MinTime(2.0);

void BM_LatentForwardBackward(benchmark::State& state) {
  auto c = pooling::LatentHead<float>::Config::defaults(kD);
  c.n_latents = state.range(0);  // 8 heads x 112, MLP x4
  pooling::LatentHead<float> head(c);
  head.init(1);
  Captured in;
  in.spec = pooling::latent::capture;
  in.n_seq = kBatch;
  in.d = kD;
  for (std::int64_t s = 0; s <= kBatch; ++s) in.offsets.push_back(s * kTokens);
  in.states = random_matrix(kBatch * kTokens, kD, 2);
  const Matrix dy = random_matrix(kBatch, kD, 3);
  pooling::LatentHead<float>::Context ctx;
  for (auto _ : state) {
    head.zero_grad();
    Matrix y = head.forward(in, ctx);
    Matrix dx = head.backward(dy, ctx);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["latents"] = static_cast<double>(c.n_latents);
}
BENCHMARK(BM_LatentForwardBackward)
    ->Arg(128)
    ->Arg(512)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
