// The pooling heads and their trainer on the GPU (nvcc; built only with lmembed::cuda). Every
// test skips with the driver's reason when no GPU is present. On a GPU:
//  - each DeviceOps operation against HostOps (the host mirror) on the same random inputs;
//  - DeviceHead (heads.cuh over DeviceOps) against the CPU heads pooling::LatentHead /
//    MultiLayerHead: outputs, parameter gradients and input gradients <= 1e-4 relative (F32);
//  - DeviceTrainer against train::Trainer on the same cache: 100 steps, losses within 1e-4
//    relative; checkpoints resume across the two.
// scripts/gpu_check.sh runs this binary, also under compute-sanitizer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cuda_train_fixture.hpp"
#include "lmembed/cuda/device_ops.cuh"

namespace {

using namespace lmembed;
using namespace lmembed::cuda;
using pooling::LatentHead;
using pooling::MultiLayerHead;
using pooling::MultiLayerInput;

#define LMEMBED_REQUIRE_GPU()                                                          \
  do {                                                                                 \
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device: " << no_device_reason(); \
  } while (0)

std::vector<float> randv(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Matrix randn(Eigen::Index r, Eigen::Index c, std::uint32_t seed) {
  const auto v = randv(std::size_t(r * c), seed);
  return Eigen::Map<const Matrix>(v.data(), r, c);
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - b[i]));
    den = std::max(den, std::abs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}
double rel(const Matrix& a, const Matrix& b) {
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.cols(), b.cols());
  if (a.rows() != b.rows() || a.cols() != b.cols()) return 1e30;
  const double den = b.cwiseAbs().maxCoeff();
  const double num = (a - b).cwiseAbs().maxCoeff();
  return den > 0 ? num / den : num;
}

/// Buffers of one op's operands in both executors.
struct Both {
  HostOps host;
  DeviceOps dev;
  std::vector<HostBuffer<float>> h;
  std::vector<DeviceBuffer<float>> d;
  std::vector<std::size_t> n;
  /// A new operand with these contents in both; returns its index.
  int add(const std::vector<float>& v) {
    h.emplace_back(v.size());
    d.emplace_back(std::max<std::size_t>(v.size(), 1));
    std::copy(v.begin(), v.end(), h.back().data());
    dev.upload(d.back().data(), v.data(), v.size());
    n.push_back(v.size());
    return int(h.size()) - 1;
  }
  float* H(int i) { return h[std::size_t(i)].data(); }
  float* D(int i) { return d[std::size_t(i)].data(); }
  /// rel diff of operand i between the executors.
  double diff(int i) {
    std::vector<float> a(n[std::size_t(i)]), b(a.size());
    dev.download(a.data(), D(i), a.size());
    std::copy(H(i), H(i) + b.size(), b.begin());
    return rel(a, b);
  }
};

TEST(CudaHeadOps, DeviceOpsMatchHostOps) {
  LMEMBED_REQUIRE_GPU();
  // GEMM: every transpose combination, strided batches, beta 0 and 1.
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const std::int64_t M = 37, N = 29, K = 45, batch = 3;
    Both x;
    const int a = x.add(randv(std::size_t(batch * M * K), 1));
    const int b = x.add(randv(std::size_t(batch * K * N), 2));
    const int c = x.add(randv(std::size_t(batch * M * N), 3));
    for (float beta : {0.0f, 1.0f}) {
      x.host.gemm(ta, tb, M, N, K, 0.5f, x.H(a), ta ? M : K, M * K, x.H(b), tb ? K : N, K * N, beta,
                  x.H(c), N, M * N, batch);
      x.dev.gemm(ta, tb, M, N, K, 0.5f, x.D(a), ta ? M : K, M * K, x.D(b), tb ? K : N, K * N, beta,
                 x.D(c), N, M * N, batch);
      EXPECT_LE(x.diff(c), 1e-5) << "ta " << ta << " tb " << tb << " beta " << beta;
    }
  }
  const std::int64_t rows = 23, d = 300;
  Both x;
  const int X = x.add(randv(std::size_t(rows * d), 4, 2.0f)), W = x.add(randv(std::size_t(d), 5));
  const int Bv = x.add(randv(std::size_t(d), 6)),
            Y = x.add(std::vector<float>(std::size_t(rows * d)));
  const int mu = x.add(std::vector<float>(std::size_t(rows))),
            rs = x.add(std::vector<float>(std::size_t(rows)));
  x.host.layernorm_fwd(x.H(X), x.H(W), x.H(Bv), x.H(Y), x.H(mu), x.H(rs), rows, d, 1e-5f);
  x.dev.layernorm_fwd(x.D(X), x.D(W), x.D(Bv), x.D(Y), x.D(mu), x.D(rs), rows, d, 1e-5f);
  EXPECT_LE(x.diff(Y), 1e-5) << "layernorm_fwd";
  const int dY = x.add(randv(std::size_t(rows * d), 7)),
            dX = x.add(randv(std::size_t(rows * d), 8));
  const int dW = x.add(randv(std::size_t(d), 9)), dB = x.add(randv(std::size_t(d), 10));
  const int tmp = x.add(std::vector<float>(std::size_t(rows * d)));
  x.host.layernorm_bwd(x.H(dY), x.H(X), x.H(mu), x.H(rs), x.H(W), rows, d, x.H(dX), 1.0f, x.H(dW),
                       x.H(dB), x.H(tmp));
  x.dev.layernorm_bwd(x.D(dY), x.D(X), x.D(mu), x.D(rs), x.D(W), rows, d, x.D(dX), 1.0f, x.D(dW),
                      x.D(dB), x.D(tmp));
  EXPECT_LE(x.diff(dX), 1e-5) << "layernorm_bwd dx";
  EXPECT_LE(x.diff(dW), 1e-5) << "layernorm_bwd dw";
  EXPECT_LE(x.diff(dB), 1e-5) << "layernorm_bwd db";
  const int P = x.add(randv(std::size_t(rows * d), 11, 3.0f)),
            dP = x.add(randv(std::size_t(rows * d), 12));
  x.host.softmax_fwd(x.H(P), rows, d, 0.3f);
  x.dev.softmax_fwd(x.D(P), rows, d, 0.3f);
  EXPECT_LE(x.diff(P), 1e-5) << "softmax_fwd";
  x.host.softmax_bwd(x.H(P), x.H(dP), rows, d, 0.3f);
  x.dev.softmax_bwd(x.D(P), x.D(dP), rows, d, 0.3f);
  EXPECT_LE(x.diff(dP), 1e-5) << "softmax_bwd";
  const int G = x.add(std::vector<float>(std::size_t(rows * d / 2))),
            dG = x.add(randv(std::size_t(rows * d / 2), 13));
  x.host.geglu_fwd(x.H(X), x.H(G), rows, d / 2);
  x.dev.geglu_fwd(x.D(X), x.D(G), rows, d / 2);
  EXPECT_LE(x.diff(G), 1e-5) << "geglu_fwd";
  x.host.geglu_bwd(x.H(X), x.H(dG), x.H(dX), rows, d / 2);
  x.dev.geglu_bwd(x.D(X), x.D(dG), x.D(dX), rows, d / 2);
  EXPECT_LE(x.diff(dX), 1e-5) << "geglu_bwd";
  x.host.gelu_fwd(x.H(X), x.H(Y), rows * d);
  x.dev.gelu_fwd(x.D(X), x.D(Y), rows * d);
  EXPECT_LE(x.diff(Y), 1e-5) << "gelu_fwd";
  x.host.gelu_bwd(x.H(X), x.H(dY), x.H(dX), rows * d);
  x.dev.gelu_bwd(x.D(X), x.D(dY), x.D(dX), rows * d);
  EXPECT_LE(x.diff(dX), 1e-5) << "gelu_bwd";
  // Segment means over ragged segments, column sums, tiled adds.
  const std::vector<std::int64_t> off{0, 3, 4, 11, 23};
  DeviceBuffer<std::int64_t> doff(off.size());
  x.dev.upload(doff.data(), off.data(), off.size());
  const int S = x.add(randv(std::size_t(4 * d), 14));
  x.host.segment_mean_fwd(x.H(X), off.data(), 4, d, x.H(S), 1.0f);
  x.dev.segment_mean_fwd(x.D(X), doff.data(), 4, d, x.D(S), 1.0f);
  EXPECT_LE(x.diff(S), 1e-5) << "segment_mean_fwd";
  x.host.segment_mean_bwd(x.H(S), off.data(), 4, d, x.H(dX), 0.0f);
  x.dev.segment_mean_bwd(x.D(S), doff.data(), 4, d, x.D(dX), 0.0f);
  EXPECT_LE(x.diff(dX), 1e-5) << "segment_mean_bwd";
  x.host.colsum(x.H(X), rows, d, x.H(dW), 1.0f);
  x.dev.colsum(x.D(X), rows, d, x.D(dW), 1.0f);
  EXPECT_LE(x.diff(dW), 1e-5) << "colsum";
  x.host.add_tiled(x.H(Y), x.H(X), x.H(W), rows, d);
  x.dev.add_tiled(x.D(Y), x.D(X), x.D(W), rows, d);
  EXPECT_LE(x.diff(Y), 1e-6) << "add_tiled";
}

/// DeviceHead vs the CPU head: forward, input gradient, every parameter gradient.
template <class Head>
void check_device_head(Head& head, const Captured& in, const char* what) {
  SCOPED_TRACE(what);
  typename Head::Context cctx;
  const Matrix y_cpu = head.forward(in, cctx);
  const Matrix d_out = randn(y_cpu.rows(), y_cpu.cols(), 99);
  head.zero_grad();
  const Matrix din_cpu = head.backward(d_out, cctx);
  std::vector<Matrix> g_cpu;
  for (auto* p : head.parameters()) g_cpu.push_back(p->grad);

  DeviceOps ops;
  DeviceHead<Head> dh(ops, head);
  typename DeviceHead<Head>::Context ctx;
  const Matrix y = dh.forward(in, ctx);
  EXPECT_LE(rel(y, y_cpu), 1e-4) << "forward";
  const Matrix din = dh.backward(d_out, ctx);
  EXPECT_LE(rel(din, din_cpu), 1e-4) << "input gradient";
  head.zero_grad();
  dh.download_grads_to(head);
  double worst = 0;
  auto ps = head.parameters();
  for (std::size_t k = 0; k < ps.size(); ++k) {
    const double r = rel(ps[k]->grad, g_cpu[k]);
    worst = std::max(worst, r);
    EXPECT_LE(r, 1e-4) << ps[k]->name;
  }
  std::printf("[ value ] %s: output rel %.3g, input grad rel %.3g, worst parameter grad rel %.3g\n",
              what, rel(y, y_cpu), rel(din, din_cpu), worst);
}

Captured make_input(CaptureSpec spec, std::int64_t n, std::int64_t L, std::int64_t d,
                    std::uint32_t seed) {
  Captured c;
  c.spec = spec;
  c.n_seq = n;
  c.d = d;
  c.n_layers = spec.layers == CaptureLayers::all ? L : 1;
  if (spec.tokens == CaptureTokens::all) {
    c.offsets.push_back(0);
    for (std::int64_t s = 0; s < n; ++s) {
      c.offsets.push_back(c.offsets.back() + 2 + (s * 7 + 3) % 19);
      c.pool_from.push_back(std::int32_t(s % 2));
    }
    c.states = randn(c.offsets.back() * c.n_layers, d, seed);
  } else {
    c.states = randn(n * c.n_layers, d, seed);
  }
  return c;
}

TEST(CudaHead, LatentMatchesCpuHead) {
  LMEMBED_REQUIRE_GPU();
  LatentHead<float>::Config c;
  c.d = 64;
  c.n_latents = 24;
  c.heads = 4;
  c.head_dim = 20;
  c.mlp_mult = 2;
  LatentHead<float> head(c);
  head.init(11);
  check_device_head(head, make_input(pooling::latent::capture, 13, 1, c.d, 3), "latent");
}

TEST(CudaHead, MultiLayerMatchesCpuHeadForEveryInput) {
  LMEMBED_REQUIRE_GPU();
  struct Case {
    MultiLayerInput input;
    std::int64_t L;
  };
  for (const Case k : {Case{MultiLayerInput::last_token, 6}, Case{MultiLayerInput::mean_tokens, 5},
                       Case{MultiLayerInput::all_tokens, 1}, Case{MultiLayerInput::eos, 1}}) {
    auto c = MultiLayerHead<float>::Config::defaults(64, k.L, k.input);
    c.n_latents = 16;
    c.heads = 4;
    c.head_dim = 20;
    c.ff_mult = 2;
    MultiLayerHead<float> head(c);
    head.init(7);
    check_device_head(head, make_input(pooling::capture_of(k.input), 11, k.L, c.d, 5),
                      pooling::policy_name(k.input));
  }
}

/// DeviceTrainer vs train::Trainer, step by step.
template <class Head>
void compare_trainers(Head& cpu_head, Head& dev_head, const train::Cache& cache,
                      const train::TrainOptions& o) {
  train::Trainer<Head> ref(cpu_head, cache, o);
  DeviceOps ops;
  DeviceTrainer<Head> t(ops, dev_head, cache, o);
  double worst = 0;
  while (!ref.done()) {
    const auto a = ref.step();
    const auto b = t.step();
    ASSERT_EQ(a.texts, b.texts);
    EXPECT_LE(std::abs(a.loss - b.loss), 1e-4 * std::abs(a.loss)) << "step " << a.step;
    EXPECT_LE(std::abs(a.grad_norm - b.grad_norm), 1e-3 * a.grad_norm) << "step " << a.step;
    worst = std::max(worst, std::abs(a.loss - b.loss) / std::abs(a.loss));
  }
  t.sync_head();
  std::printf("[ value ] %s on the GPU: %lld steps, worst loss rel diff %.3g, weights %.3g\n",
              cpu_head.name(), (long long)o.steps, worst,
              cuda_train_test::weights_rel_diff(dev_head, cpu_head));
}

TEST(CudaTrain, MultiLayer100StepsMatchTheCpuTrainer) {
  LMEMBED_REQUIRE_GPU();
  using namespace cuda_train_test;
  CacheFixture f(pooling::multi_layer::capture, 60, "cuda-dev-train-ml");
  auto a = small_multi_layer(3), b = small_multi_layer(3);
  compare_trainers(a, b, f.cache, options(100, 7));
}

TEST(CudaTrain, Latent100StepsMatchTheCpuTrainer) {
  LMEMBED_REQUIRE_GPU();
  using namespace cuda_train_test;
  CacheFixture f(pooling::latent::capture, 40, "cuda-dev-train-latent");
  auto a = small_latent(4), b = small_latent(4);
  compare_trainers(a, b, f.cache, options(100, 5));
}

TEST(CudaTrain, CheckpointsResumeAcrossCpuAndGpu) {
  LMEMBED_REQUIRE_GPU();
  using namespace cuda_train_test;
  CacheFixture f(pooling::multi_layer::capture, 60, "cuda-dev-ckpt");
  const auto o = options(12, 7);
  auto ref_head = small_multi_layer(8);
  train::Trainer<MultiLayerHead<float>> ref(ref_head, f.cache, o);
  std::vector<double> ref_loss;
  while (!ref.done()) ref_loss.push_back(ref.step().loss);
  lmembed_test::TempDir ck1("dev-ckpt1"), ck2("dev-ckpt2");
  auto h1 = small_multi_layer(8);
  {
    train::Trainer<MultiLayerHead<float>> t(h1, f.cache, o);
    for (int i = 0; i < 4; ++i) t.step();
    t.save_checkpoint(ck1.path);
  }
  DeviceOps ops;
  auto h2 = small_multi_layer(99);
  {
    DeviceTrainer<MultiLayerHead<float>> t(ops, h2, f.cache, o);
    t.load_checkpoint(ck1.path);
    for (int i = 4; i < 8; ++i)
      EXPECT_LE(std::abs(t.step().loss - ref_loss[std::size_t(i)]),
                1e-4 * ref_loss[std::size_t(i)]);
    t.save_checkpoint(ck2.path);
  }
  auto h3 = small_multi_layer(77);
  train::Trainer<MultiLayerHead<float>> t3(h3, f.cache, o);
  t3.load_checkpoint(ck2.path);
  for (int i = 8; i < 12; ++i)
    EXPECT_LE(std::abs(t3.step().loss - ref_loss[std::size_t(i)]), 1e-4 * ref_loss[std::size_t(i)]);
}

}  // namespace
