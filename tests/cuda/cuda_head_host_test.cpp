// The pooling heads' device algorithm, run on the CPU (no GPU needed): heads.cuh's composition
// over the host executor (HostOps, the per-element math the kernels share) against the CPU
// heads pooling::LatentHead / MultiLayerHead - themselves verified against PyTorch in
// tests/pooling - forward outputs, parameter gradients and input gradients, on small shapes
// with variable token counts and inner width != d; and the executor trainer (trainer.cuh) over
// HostOps against train::Trainer on the same cache (losses, gradient norms, weights, and a
// checkpoint that either trainer resumes).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "cuda_train_fixture.hpp"
#include "lmembed/cuda/head_ops.cuh"
#include "lmembed/cuda/heads.cuh"
#include "lmembed/cuda/trainer.cuh"
#include "lmembed/pooling/latent.hpp"
#include "lmembed/pooling/multi_layer.hpp"
#include "lmembed/train/trainer.hpp"

namespace {

using namespace lmembed;
using namespace lmembed::cuda;
using pooling::LatentHead;
using pooling::MultiLayerHead;
using pooling::MultiLayerInput;

Matrix randn(Eigen::Index r, Eigen::Index c, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, scale);
  Matrix m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(rng);
  return m;
}

/// max |a - b| / max |b| (0 when both are 0).
double rel(const Matrix& a, const Matrix& b) {
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.cols(), b.cols());
  if (a.rows() != b.rows() || a.cols() != b.cols()) return 1e30;
  const double den = b.cwiseAbs().maxCoeff();
  const double num = (a - b).cwiseAbs().maxCoeff();
  return den > 0 ? num / den : num;
}

/// A capture of n texts for a head's spec: all-token captures get variable lengths and
/// instruction tokens (pool_from) to skip; per-text captures get L layers.
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
      const std::int64_t len = 2 + (s * 7 + 3) % 9;  // 2..10 tokens
      c.offsets.push_back(c.offsets.back() + len);
      c.pool_from.push_back(std::int32_t(s % 2));  // some texts skip one instruction token
    }
    c.states = randn(c.offsets.back() * c.n_layers, d, seed);
  } else {
    c.states = randn(n * c.n_layers, d, seed);
  }
  return c;
}

/// Runs the CPU head and the host-executor composition on the same input and d_out; checks
/// outputs, every parameter gradient and the input gradient (<= 1e-4 relative).
template <class Head>
void check_head(Head& head, const Captured& in, const char* what, bool one_key = false) {
  SCOPED_TRACE(what);
  typename Head::Context cctx;
  const Matrix y_cpu = head.forward(in, cctx);
  const Matrix d_out = randn(y_cpu.rows(), y_cpu.cols(), 99);
  head.zero_grad();
  const Matrix din_cpu = head.backward(d_out, cctx);
  std::vector<Matrix> g_cpu;
  for (auto* p : head.parameters()) g_cpu.push_back(p->grad);

  HostOps ops;
  ExecHead<Head, HostOps> eh(ops, head);
  typename ExecHead<Head, HostOps>::Context ctx;
  const Matrix y = eh.forward(in, ctx);
  EXPECT_LE(rel(y, y_cpu), 1e-4) << "forward";
  const Matrix din = eh.backward(d_out, ctx);
  EXPECT_LE(rel(din, din_cpu), 1e-4) << "input gradient";
  head.zero_grad();
  eh.download_grads_to(head);
  auto ps = head.parameters();
  for (std::size_t k = 0; k < ps.size(); ++k) {
    EXPECT_LE(rel(ps[k]->grad, g_cpu[k]), 1e-4) << ps[k]->name;
    // With one key per text the softmax is constant: queries get no gradient (legitimately).
    const bool query_side = ps[k]->name.find("to_q") != std::string::npos ||
                            ps[k]->name.find("norm_context") != std::string::npos;
    if (!(one_key && query_side)) {
      EXPECT_GT(g_cpu[k].cwiseAbs().maxCoeff(), 0.0f)
          << ps[k]->name << ": a zero gradient tests nothing";
    }
  }
  // A second chunk through the same context (buffers reused) accumulates gradients.
  const Matrix y2 = eh.forward(in, ctx);
  EXPECT_EQ(y2, y);
  eh.backward(d_out, ctx);
  eh.download_grads_to(head);
  for (std::size_t k = 0; k < ps.size(); ++k)
    EXPECT_LE(rel(ps[k]->grad, 2.0f * g_cpu[k]), 1e-4) << ps[k]->name << " (accumulated)";
  // The arena holds exactly the head's values: download into a fresh head gives the same.
  Head other = head;
  other.init(1234);
  eh.download_to(other);
  auto po = other.parameters();
  for (std::size_t k = 0; k < ps.size(); ++k) EXPECT_EQ(po[k]->value, ps[k]->value) << ps[k]->name;
}

TEST(CudaHeadHost, CublasArgumentsOfRowMajorGemmMatchHostOpsAndEigen) {
  // DeviceOps::gemm hands rowmajor_gemm_args to cuBLAS with B first; plan.cuh's column-major
  // reference (cuBLAS's documented semantics) on those arguments must give the row-major
  // product, for every transpose and with padded leading dimensions (the attention's
  // per-head column blocks).
  const std::int64_t M = 7, N = 5, K = 9, pad = 3;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const std::int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    const Matrix A = randn(ta ? K : M, lda, 1), B = randn(tb ? N : K, ldb, 2);
    const Matrix C0 = randn(M, ldc, 3);
    Matrix opA = ta ? Matrix(A.leftCols(M).transpose()) : Matrix(A.leftCols(K));
    Matrix opB = tb ? Matrix(B.leftCols(K).transpose()) : Matrix(B.leftCols(N));
    Matrix want = C0;
    want.leftCols(N) = 0.5f * opA * opB + 2.0f * C0.leftCols(N);
    Matrix viaBlas = C0, viaHost = C0;
    gemm_colmajor_reference(rowmajor_gemm_args(ta, tb, M, N, K, lda, ldb, ldc), 0.5f, B.data(),
                            A.data(), 2.0f, viaBlas.data());
    HostOps().gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, 0, B.data(), ldb, 0, 2.0f, viaHost.data(),
                   ldc, 0);
    EXPECT_LE(rel(viaBlas, want), 1e-6) << "ta " << ta << " tb " << tb;
    EXPECT_LE(rel(viaHost, want), 1e-6) << "ta " << ta << " tb " << tb;
    EXPECT_EQ(viaBlas.rightCols(pad), C0.rightCols(pad));  // padding untouched
  }
  EXPECT_THROW(rowmajor_gemm_args(false, false, 0, 1, 1, 1, 1, 1), shape_error);
  EXPECT_THROW(rowmajor_gemm_args(false, false, 1, std::int64_t(1) << 31, 1, 1, 1, 1), shape_error);
}

TEST(CudaHeadHost, LatentMatchesCpuHeadWithVariableTokenCounts) {
  LatentHead<float>::Config c;
  c.d = 12;
  c.n_latents = 7;
  c.heads = 3;
  c.head_dim = 5;  // inner 15 != d
  c.mlp_mult = 2;
  LatentHead<float> head(c);
  head.init(11);
  check_head(head, make_input(pooling::latent::capture, 5, 1, c.d, 3), "latent");
}

TEST(CudaHeadHost, MultiLayerMatchesCpuHeadForEveryInput) {
  struct Case {
    MultiLayerInput input;
    std::int64_t L;
  };
  for (const Case k : {Case{MultiLayerInput::last_token, 4}, Case{MultiLayerInput::mean_tokens, 3},
                       Case{MultiLayerInput::all_tokens, 1}, Case{MultiLayerInput::eos, 1}}) {
    auto c = MultiLayerHead<float>::Config::defaults(12, k.L, k.input);
    c.n_latents = 6;
    c.heads = 3;
    c.head_dim = 5;
    c.ff_mult = 2;
    MultiLayerHead<float> head(c);
    head.init(7);
    check_head(head, make_input(pooling::capture_of(k.input), 5, k.L, c.d, 5),
               pooling::policy_name(k.input), k.input == MultiLayerInput::eos);
  }
}

TEST(CudaHeadHost, ShapeErrorsAreReported) {
  auto c = MultiLayerHead<float>::Config::defaults(8, 3);
  c.n_latents = 2;
  MultiLayerHead<float> head(c);
  head.init(1);
  HostOps ops;
  ExecHead<MultiLayerHead<float>, HostOps> eh(ops, head);
  ExecHead<MultiLayerHead<float>, HostOps>::Context ctx;
  const Captured wrong = make_input(pooling::multi_layer::capture, 2, 2, 8, 1);  // 2 layers, not 3
  EXPECT_THROW(eh.forward(wrong, ctx), shape_error);
  const Captured narrow = make_input(pooling::multi_layer::capture, 2, 3, 6, 1);  // d 6, not 8
  EXPECT_THROW(eh.forward(narrow, ctx), shape_error);
  const Captured tokens = make_input(pooling::latent::capture, 2, 1, 8, 1);  // another capture
  EXPECT_THROW(eh.forward(tokens, ctx), shape_error);
  const Captured ok = make_input(pooling::multi_layer::capture, 2, 3, 8, 1);
  eh.forward(ok, ctx);
  EXPECT_THROW(eh.backward(Matrix::Zero(3, 8), ctx), shape_error);
}

// ---- the executor trainer over HostOps vs train::Trainer ----------------------------------

/// Runs both trainers `steps` steps; losses and gradient norms within 1e-4 relative.
template <class Head>
void compare_trainers(Head& cpu_head, Head& exec_head, const train::Cache& cache,
                      const train::TrainOptions& o) {
  train::Trainer<Head> ref(cpu_head, cache, o);
  HostOps ops;
  ExecTrainer<Head, HostOps> t(ops, exec_head, cache, o);
  double worst = 0;
  while (!ref.done()) {
    const auto a = ref.step();
    const auto b = t.step();
    ASSERT_EQ(a.step, b.step);
    ASSERT_EQ(a.texts, b.texts);
    EXPECT_EQ(a.lr, b.lr);
    EXPECT_LE(std::abs(a.loss - b.loss), 1e-4 * std::abs(a.loss)) << "step " << a.step;
    EXPECT_LE(std::abs(a.grad_norm - b.grad_norm), 1e-4 * a.grad_norm) << "step " << a.step;
    worst = std::max(worst, std::abs(a.loss - b.loss) / std::abs(a.loss));
  }
  t.sync_head();
  std::printf("[ value ] %s: %lld steps, worst loss rel diff %.3g, weights rel diff %.3g\n",
              cpu_head.name(), (long long)o.steps, worst,
              cuda_train_test::weights_rel_diff(exec_head, cpu_head));
  EXPECT_LE(cuda_train_test::weights_rel_diff(exec_head, cpu_head), 1e-3);
}

TEST(CudaTrainHost, MultiLayerHostExecutorMatchesTrainerFor100Steps) {
  using namespace cuda_train_test;
  CacheFixture f(pooling::multi_layer::capture, 60, "cuda-train-ml");
  auto a = small_multi_layer(3), b = small_multi_layer(3);
  compare_trainers(a, b, f.cache, options(100, 7));  // GradCache: several chunks per step
}

TEST(CudaTrainHost, LatentHostExecutorMatchesTrainerInOneAndSeveralChunks) {
  using namespace cuda_train_test;
  CacheFixture f(pooling::latent::capture, 40, "cuda-train-latent");
  for (std::int64_t chunk : {0, 5}) {
    auto a = small_latent(4), b = small_latent(4);
    auto o = options(25, chunk);
    o.loss.symmetric = chunk == 0;
    compare_trainers(a, b, f.cache, o);
  }
}

TEST(CudaTrainHost, CheckpointsResumeAcrossTrainers) {
  using namespace cuda_train_test;
  CacheFixture f(pooling::multi_layer::capture, 60, "cuda-train-ckpt");
  const auto o = options(16, 7);
  // Reference: 16 uninterrupted CPU steps.
  auto ref_head = small_multi_layer(8);
  train::Trainer<pooling::MultiLayerHead<float>> ref(ref_head, f.cache, o);
  std::vector<double> ref_loss;
  while (!ref.done()) ref_loss.push_back(ref.step().loss);
  lmembed_test::TempDir ck1("ckpt-cpu"), ck2("ckpt-exec");
  HostOps ops;
  // CPU 5 steps -> checkpoint -> executor resumes for 6 -> checkpoint -> CPU finishes.
  auto h1 = small_multi_layer(8);
  {
    train::Trainer<pooling::MultiLayerHead<float>> t(h1, f.cache, o);
    for (int i = 0; i < 5; ++i) t.step();
    t.save_checkpoint(ck1.path);
  }
  auto h2 = small_multi_layer(99);  // other weights: the checkpoint must overwrite them
  {
    ExecTrainer<pooling::MultiLayerHead<float>, HostOps> t(ops, h2, f.cache, o);
    t.load_checkpoint(ck1.path);
    EXPECT_EQ(t.step_count(), 5);
    for (int i = 5; i < 11; ++i) {
      const double l = t.step().loss;
      EXPECT_LE(std::abs(l - ref_loss[std::size_t(i)]), 1e-4 * ref_loss[std::size_t(i)]) << i;
    }
    t.save_checkpoint(ck2.path);
  }
  auto h3 = small_multi_layer(77);
  train::Trainer<pooling::MultiLayerHead<float>> t3(h3, f.cache, o);
  t3.load_checkpoint(ck2.path);
  EXPECT_EQ(t3.step_count(), 11);
  for (int i = 11; i < 16; ++i) {
    const double l = t3.step().loss;
    EXPECT_LE(std::abs(l - ref_loss[std::size_t(i)]), 1e-4 * ref_loss[std::size_t(i)]) << i;
  }
  EXPECT_LE(cuda_train_test::weights_rel_diff(h3, ref_head), 1e-3);
  // Other options refuse the checkpoint, as train::Trainer does.
  auto o2 = o;
  o2.seed = 6;
  auto h4 = small_multi_layer(8);
  ExecTrainer<pooling::MultiLayerHead<float>, HostOps> t4(ops, h4, f.cache, o2);
  EXPECT_THROW(t4.load_checkpoint(ck2.path), config_error);
}

}  // namespace
