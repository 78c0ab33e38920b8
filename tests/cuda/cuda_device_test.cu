// CUDA backend, device side (nvcc; built only with the lmembed::cuda target). Every test that
// needs a GPU skips with the driver's reason when none is present, so CI compiles and lists
// them; on a GPU machine they compare each kernel with the host math it mirrors
// (reference.cuh, math.cuh) and the device backbone with llama.cpp's goldens and the CPU
// backbone. scripts/gpu_check.sh runs this binary plus compute-sanitizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.hpp"
#include "lmembed/backbone/backbone.hpp"
#include "lmembed/cuda/cuda.cuh"
#include "lmembed/cuda/encoder.cuh"
#include "lmembed/cuda/reference.cuh"
#include "lmembed/train/loss.hpp"

namespace {

using namespace lmembed;
using namespace lmembed::cuda;
using namespace cuda_test;

#define LMEMBED_REQUIRE_GPU()                                                          \
  do {                                                                                 \
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device: " << no_device_reason(); \
  } while (0)

std::vector<float> randn(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

template <class T>
DeviceBuffer<T> to_device(const std::vector<T>& h) {
  DeviceBuffer<T> d(std::max<std::size_t>(h.size(), 1));
  d.upload(std::span<const T>(h));
  return d;
}

template <class T>
std::vector<T> to_host(const DeviceBuffer<T>& d, std::size_t n) {
  std::vector<T> h(n);
  d.download(std::span<T>(h));
  LMEMBED_CUDA_CHECK(cudaDeviceSynchronize());
  return h;
}

double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (std::size_t i = 0; i < a.size(); ++i) e = std::max(e, std::abs(double(a[i]) - b[i]));
  return e;
}

TEST(CudaRuntime, FailedCallsThrowLmembedErrorNamingTheCall) {
  // Without a driver cudaMalloc fails with "insufficient driver"; with a GPU, 2^60 bytes is
  // out of memory: either way the error names the call. Runs on every machine.
  try {
    DeviceBuffer<float> huge(std::size_t{1} << 58);
    FAIL() << "allocating 2^60 bytes succeeded";
  } catch (const lmembed::error& e) {
    EXPECT_NE(std::string(e.what()).find("cudaMalloc"), std::string::npos) << e.what();
  }
  if (device_count() == 0) {
    EXPECT_FALSE(no_device_reason().empty());
    std::printf("[ note ] no CUDA device (%s): the GPU tests below skip\n",
                no_device_reason().c_str());
  }
}

TEST(CudaRuntime, BufferRangesAreChecked) {
  LMEMBED_REQUIRE_GPU();
  DeviceBuffer<float> b(4);
  std::vector<float> five(5);
  EXPECT_THROW(b.upload(std::span<const float>(five)), shape_error);
  b.reserve(2);  // never shrinks
  EXPECT_EQ(b.size(), 4u);
  const std::vector<float> x = {1, 2, 3, 4};
  b.upload(std::span<const float>(x));
  EXPECT_EQ(to_host(b, 4), x);
}

TEST(CudaKernels, NormsActivationsAndRowOpsMatchTheHostMath) {
  LMEMBED_REQUIRE_GPU();
  const std::int64_t rows = 5, d = 300;  // d not a multiple of the block size
  const auto x = randn(rows * d, 1, 2.0f), w = randn(d, 2), bta = randn(d, 3);
  auto dx = to_device(x), dw = to_device(w), db = to_device(bta);
  DeviceBuffer<float> dy(rows * d), dm(rows), dr(rows);
  // RMSNorm
  launch_rmsnorm(dx.data(), dw.data(), dy.data(), rows, d, 1e-5f, nullptr);
  {
    Matrix X = Eigen::Map<const Matrix>(x.data(), rows, d), Y;
    reference::rmsnorm(X, w.data(), 1e-5f, Y);
    EXPECT_LT(max_abs(to_host(dy, rows * d), std::vector<float>(Y.data(), Y.data() + Y.size())),
              1e-5);
  }
  // LayerNorm (two-pass, biased variance) vs float64
  launch_layernorm(dx.data(), dw.data(), db.data(), dy.data(), dm.data(), dr.data(), rows, d, 1e-5f,
                   nullptr);
  {
    const auto y = to_host(dy, rows * d);
    for (std::int64_t r = 0; r < rows; ++r) {
      double mu = 0, var = 0;
      for (std::int64_t c = 0; c < d; ++c) mu += x[r * d + c];
      mu /= d;
      for (std::int64_t c = 0; c < d; ++c) var += (x[r * d + c] - mu) * (x[r * d + c] - mu);
      var /= d;
      for (std::int64_t c = 0; c < d; ++c)
        EXPECT_NEAR(y[r * d + c], (x[r * d + c] - mu) / std::sqrt(var + 1e-5) * w[c] + bta[c],
                    1e-4);
    }
  }
  // Softmax (scaled) and L2 normalization vs float64
  dy.upload(std::span<const float>(x));
  launch_softmax(dy.data(), rows, d, 0.5f, nullptr);
  {
    const auto y = to_host(dy, rows * d);
    for (std::int64_t r = 0; r < rows; ++r) {
      double mx = -1e300, z = 0;
      for (std::int64_t c = 0; c < d; ++c) mx = std::max(mx, 0.5 * x[r * d + c]);
      for (std::int64_t c = 0; c < d; ++c) z += std::exp(0.5 * x[r * d + c] - mx);
      for (std::int64_t c = 0; c < d; ++c)
        EXPECT_NEAR(y[r * d + c], std::exp(0.5 * x[r * d + c] - mx) / z, 1e-6);
    }
  }
  dy.upload(std::span<const float>(x));
  launch_l2_normalize(dy.data(), dm.data(), rows, d, nullptr);
  {
    const auto y = to_host(dy, rows * d);
    const auto norms = to_host(dm, rows);
    for (std::int64_t r = 0; r < rows; ++r) {
      double n = 0;
      for (std::int64_t c = 0; c < d; ++c) n += double(x[r * d + c]) * x[r * d + c];
      EXPECT_NEAR(norms[r], std::sqrt(n), 1e-3);
      for (std::int64_t c = 0; c < d; ++c)
        EXPECT_NEAR(y[r * d + c], x[r * d + c] / std::sqrt(n), 1e-6);
    }
  }
  // SwiGLU / GEGLU over fused [a | b] rows, GELU, residual add
  launch_swiglu(dx.data(), dy.data(), rows, d / 2, nullptr);
  launch_geglu(dx.data(), dm.data(), 1, 1, nullptr);  // tiny launch: shape edge
  {
    const auto y = to_host(dy, rows * d / 2);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < d / 2; ++j)
        EXPECT_NEAR(y[r * d / 2 + j], silu(x[r * d + j]) * x[r * d + d / 2 + j],
                    1e-6 * (1 + std::abs(y[r * d / 2 + j])));
  }
  launch_geglu(dx.data(), dy.data(), rows, d / 2, nullptr);
  {
    const auto y = to_host(dy, rows * d / 2);
    for (std::int64_t j = 0; j < d / 2; ++j)
      EXPECT_NEAR(y[j], x[j] * gelu(x[d / 2 + j]), 1e-5 * (1 + std::abs(y[j])));
  }
  dy.upload(std::span<const float>(x));
  launch_gelu(dy.data(), rows * d, nullptr);
  launch_add(dy.data(), dx.data(), rows * d, nullptr);
  {
    const auto y = to_host(dy, rows * d);
    for (std::size_t i = 0; i < y.size(); ++i)
      EXPECT_NEAR(y[i], gelu(x[i]) + x[i], 1e-5 * (1 + std::abs(y[i])));
  }
}

TEST(CudaKernels, QkvBiasRopeMatchesTheHostMirrorInBothForms) {
  LMEMBED_REQUIRE_GPU();
  for (RopeForm form : {RopeForm::interleaved, RopeForm::rotate_half}) {
    ModelSpec m;
    m.n_heads = 6, m.n_kv_heads = 2, m.head_dim = 64, m.rope = form, m.rope_theta = 1e6f;
    TokenBatch b = random_batch({3, 70}, 10, 1);
    const auto pos = token_positions(b);
    const auto rope = rope_table(m.rope_theta, m.head_dim, 70);
    const std::int64_t T = b.n_tokens();
    auto qkv = randn(T * m.qkv_dim(), 4);
    const auto bias = randn(m.qkv_dim(), 5, 0.1f);
    auto dq = to_device(qkv);
    auto dbias = to_device(bias);
    auto dpos = to_device(pos);
    auto drope = to_device(rope);
    launch_qkv_bias_rope(dq.data(), dbias.data(), dpos.data(), drope.data(), T, m, nullptr);
    for (std::int64_t t = 0; t < T; ++t)
      reference::qkv_bias_rope(m, qkv.data() + t * m.qkv_dim(), bias.data(),
                               rope.data() + pos[t] * m.head_dim);
    EXPECT_LT(max_abs(to_host(dq, qkv.size()), qkv), 1e-5);
  }
}

TEST(CudaKernels, CaptureLastMeanAndAllTokens) {
  LMEMBED_REQUIRE_GPU();
  ModelSpec m;
  m.n_vocab = 10, m.d_model = 33, m.n_layers = 2;
  TokenBatch b = random_batch({4, 1, 9}, 10, 2);
  b.pool_from = {1, 0, 8};
  const auto x = randn(b.n_tokens() * m.d_model, 6);
  Matrix X = Eigen::Map<const Matrix>(x.data(), b.n_tokens(), m.d_model);
  auto dx = to_device(x);
  auto doff = to_device(b.offsets);
  auto dpool = to_device(b.pool_from);
  for (CaptureTokens tok : {CaptureTokens::last, CaptureTokens::mean, CaptureTokens::all}) {
    const CapturePlan p = plan_capture(b, {CaptureLayers::all, tok}, m);
    DeviceBuffer<float> out(p.rows() * m.d_model);
    out.zero(p.rows() * m.d_model);
    Matrix want = Matrix::Zero(p.rows(), m.d_model);
    launch_capture(dx.data(), out.data(), doff.data(), dpool.data(), m.d_model, p, 1, nullptr);
    reference::capture(X, b, p, 1, want);
    EXPECT_LT(max_abs(to_host(out, want.size()),
                      std::vector<float>(want.data(), want.data() + want.size())),
              1e-6);
  }
}

TEST(CudaAttention, FlashKernelMatchesTheHostMirrorOnRaggedBatches) {
  LMEMBED_REQUIRE_GPU();
  const std::vector<std::int64_t> lengths = {1, 31, 32, 33, 200, 7, 64, 65};
  std::vector<std::int64_t> offsets = {0};
  for (auto l : lengths) offsets.push_back(offsets.back() + l);
  const auto tiles = attention_tiles(offsets);
  auto dtiles = to_device(tiles);
  auto doff = to_device(offsets);
  for (std::int64_t hd : {8, 64, 80, 128, 256}) {  // every instantiation, padded head sizes
    ModelSpec m;
    m.n_heads = 4, m.n_kv_heads = 2, m.head_dim = hd;
    const std::int64_t T = offsets.back();
    const auto qkv = randn(T * m.qkv_dim(), 9, 1.0f);
    auto dqkv = to_device(qkv);
    DeviceBuffer<float> dout(T * m.n_heads * hd);
    const QkvView view{dqkv.data(), dqkv.data() + m.n_heads * hd,
                       dqkv.data() + (m.n_heads + m.n_kv_heads) * hd, m.qkv_dim()};
    for (bool causal : {true, false}) {
      launch_attention(view, dout.data(), dtiles.data(), static_cast<std::int64_t>(tiles.size()),
                       doff.data(), m, causal, nullptr);
      std::vector<float> want(T * m.n_heads * hd);
      reference::attention(m, qkv.data(), offsets, causal, want.data());
      EXPECT_LT(max_abs(to_host(dout, want.size()), want), 2e-5)
          << "head_dim " << hd << (causal ? " causal" : " bidirectional");
    }
  }
}

TEST(CudaGemm, CublasProductsMatchEigen) {
  LMEMBED_REQUIRE_GPU();
  CublasHandle h = CublasHandle::create(nullptr);
  const std::int64_t M = 37, N = 29, K = 70;
  const auto x = randn(M * K, 1), w = randn(N * K, 2), y0 = randn(M * N, 3);
  const Matrix X = Eigen::Map<const Matrix>(x.data(), M, K),
               W = Eigen::Map<const Matrix>(w.data(), N, K),
               Y0 = Eigen::Map<const Matrix>(y0.data(), M, N);
  const Matrix want = X * W.transpose() + Y0;
  auto dx = to_device(x), dw = to_device(w), dy = to_device(y0);
  gemm_xwt_f32(h.get(), dx.data(), dw.data(), dy.data(), M, N, K, 1.0f, 1.0f);
  auto got = to_host(dy, M * N);
  EXPECT_LT(max_abs(got, std::vector<float>(want.data(), want.data() + want.size())), 1e-4);
  // BF16 inputs, F32 accumulation: within BF16 rounding of the inputs.
  std::vector<__nv_bfloat16> xb(x.size()), wb(w.size());
  for (std::size_t i = 0; i < x.size(); ++i) xb[i] = __float2bfloat16_rn(x[i]);
  for (std::size_t i = 0; i < w.size(); ++i) wb[i] = __float2bfloat16_rn(w[i]);
  auto dxb = to_device(xb), dwb = to_device(wb);
  gemm_xwt_bf16(h.get(), dxb.data(), dwb.data(), dy.data(), M, N, K, 1.0f, 0.0f);
  got = to_host(dy, M * N);
  const Matrix prod = X * W.transpose();
  EXPECT_LT(max_abs(got, std::vector<float>(prod.data(), prod.data() + prod.size())),
            0.02 * std::sqrt(double(K)));
}

/// Device backbone vs llama.cpp goldens, all four pooled modes.
void check_device_golden(const std::string& model, const std::string& name, double tol) {
  DeviceBackbone dev = DeviceBackbone::load(kData / model);
  const Golden& g = golden(name);
  const auto pick = golden_pick(g, g.sentences.size(), true);  // all 44 (cheap on a GPU)
  const TokenBatch batch = golden_batch(g, pick);
  for (AttentionKind kind : {AttentionKind::causal, AttentionKind::bidirectional})
    for (CaptureTokens tok : {CaptureTokens::last, CaptureTokens::mean}) {
      const Captured c = dev.forward(batch, kind, {CaptureLayers::last, tok});
      const std::string key = std::string(tok == CaptureTokens::last ? "last" : "mean") +
                              (kind == AttentionKind::causal ? "_causal" : "_noncausal");
      double worst = 0;
      for (std::size_t s = 0; s < batch.size(); ++s)
        worst = std::max(worst, rel_diff(c.row(std::int64_t(s)).data(),
                                         g.sentences[s].emb.at(key).data(), g.n_embd));
      EXPECT_LT(worst, tol) << model << " " << key;
      std::printf("[ value ] %s %s max rel diff vs llama.cpp %.3g\n", model.c_str(), key.c_str(),
                  worst);
    }
}

TEST(CudaBackbone, GoldensStories260K) {
  LMEMBED_REQUIRE_GPU();
  check_device_golden("models/stories260K.gguf", "stories260K", 1e-4);
}
TEST(CudaBackbone, GoldensTinyLlamaGgufAndHf) {
  LMEMBED_REQUIRE_GPU();
  check_device_golden("golden/models/tiny-llama.gguf", "tiny-llama", 1e-4);
  check_device_golden("golden/models/tiny-llama-hf", "tiny-llama", 1e-4);
}
TEST(CudaBackbone, GoldensTinyQwen2) {
  LMEMBED_REQUIRE_GPU();
  check_device_golden("golden/models/tiny-qwen2.gguf", "tiny-qwen2", 5e-3);
}
TEST(CudaBackbone, GoldensStories260KLowPrecisionFiles) {
  LMEMBED_REQUIRE_GPU();
  check_device_golden("golden/models/stories260K-f16.gguf", "stories260K-f16", 5e-3);
  check_device_golden("golden/models/stories260K-bf16.gguf", "stories260K-bf16", 2e-2);
  check_device_golden("golden/models/stories260K-q8_0.gguf", "stories260K-q8_0", 5e-2);
}

TEST(CudaBackbone, MatchesTheCpuBackboneOnMixedLengthsUpTo2048) {
  LMEMBED_REQUIRE_GPU();
  const auto path = kData / "golden/models/tiny-llama.gguf";
  DeviceBackbone dev = DeviceBackbone::load(path);
  Backbone cpu = Backbone::load(path);
  const std::vector<std::vector<std::int64_t>> batches = {
      {1}, {2048}, {1, 2, 3, 31, 32, 33, 100}, {700, 5, 1, 1300}, {64, 64, 64, 64, 63}};
  std::uint32_t seed = 1;
  for (const auto& lengths : batches) {
    TokenBatch b = random_batch(lengths, dev.config().n_vocab, seed++);
    for (AttentionKind kind : {AttentionKind::causal, AttentionKind::bidirectional})
      for (CaptureSpec spec : {CaptureSpec{CaptureLayers::last, CaptureTokens::last},
                               CaptureSpec{CaptureLayers::all, CaptureTokens::mean},
                               CaptureSpec{CaptureLayers::last, CaptureTokens::all}}) {
        const Captured a = dev.forward(b, kind, spec), c = cpu.forward(b, kind, spec);
        ASSERT_EQ(a.states.rows(), c.states.rows());
        EXPECT_EQ(a.offsets, c.offsets);
        double worst = 0;
        for (Eigen::Index r = 0; r < a.states.rows(); ++r)
          worst = std::max(worst, rel_diff(a.states.row(r).data(), c.states.row(r).data(), a.d));
        EXPECT_LT(worst, 1e-4) << lengths.size() << " sequences, " << to_string(spec) << " "
                               << to_string(kind);
      }
  }
}

TEST(CudaBackbone, WorkspaceTwoCallConventionAndErrors) {
  LMEMBED_REQUIRE_GPU();
  DeviceBackbone dev = DeviceBackbone::load(kData / "models/stories260K.gguf");
  const TokenBatch b = random_batch({5, 9}, 512, 3);
  std::size_t bytes = 0;
  dev.forward_async(nullptr, bytes, b, true, {});
  EXPECT_GT(bytes, 0u);
  DeviceBuffer<std::byte> ws(bytes);
  std::size_t small = bytes - 1;
  EXPECT_THROW(dev.forward_async(ws.data(), small, b, true, {}), shape_error);
  const DeviceCaptured dc = dev.forward_async(ws.data(), bytes, b, true, {});
  LMEMBED_CUDA_CHECK(cudaStreamSynchronize(dev.stream()));  // a non-blocking stream
  std::vector<float> first(dc.rows * dc.d);
  LMEMBED_CUDA_CHECK(cudaMemcpy(first.data(), dc.states, first.size() * 4, cudaMemcpyDeviceToHost));
  const Captured again = dev.forward(b, AttentionKind::causal, {});
  EXPECT_EQ(std::vector<float>(again.states.data(), again.states.data() + again.states.size()),
            first);  // deterministic: same kernels, same order
  TokenBatch bad = b;
  bad.ids[0] = 512;
  EXPECT_THROW(dev.forward(bad, AttentionKind::causal, {}), input_error);
  TokenBatch longer = random_batch({600}, 512, 4);  // n_ctx 512
  EXPECT_THROW(dev.forward(longer, AttentionKind::causal, {}), input_error);
  ForwardOptions cut;
  cut.truncate = true;
  EXPECT_EQ(dev.forward(longer, AttentionKind::causal, {}, cut).offsets.back(), 512);
}

TEST(CudaBackbone, Bf16AndTf32StayCloseToF32) {
  LMEMBED_REQUIRE_GPU();
  const auto path = kData / "golden/models/tiny-llama.gguf";
  DeviceBackbone f32 = DeviceBackbone::load(path);
  DeviceBackbone bf16 = DeviceBackbone::load(path, {0, WeightPrecision::bf16});
  DeviceBackbone tf32 = DeviceBackbone::load(path, {0, WeightPrecision::tf32});
  const TokenBatch b = random_batch({50, 13, 200}, 512, 5);
  const Captured a =
      f32.forward(b, AttentionKind::causal, {CaptureLayers::last, CaptureTokens::mean});
  for (DeviceBackbone* o : {&bf16, &tf32}) {
    const Captured c =
        o->forward(b, AttentionKind::causal, {CaptureLayers::last, CaptureTokens::mean});
    for (Eigen::Index r = 0; r < a.states.rows(); ++r)
      EXPECT_LT(rel_diff(c.states.row(r).data(), a.states.row(r).data(), a.d), 3e-2);
  }
}

TEST(CudaOptim, GradNormClipAndFusedAdamWMatchTheHost) {
  LMEMBED_REQUIRE_GPU();
  const ParamPlan plan = plan_params({{"w", 1000, true}, {"b", 37, false}, {"w2", 5000, true}});
  auto p = randn(plan.n, 1), g = randn(plan.n, 2, 3.0f);
  std::vector<float> m(plan.n, 0.0f), v(plan.n, 0.0f);
  auto dp = to_device(p), dg = to_device(g), dm = to_device(m), dv = to_device(v);
  DeviceBuffer<std::byte> scratch(norm_scratch_bytes());
  DeviceBuffer<float> norm(2);
  double sq = 0;
  for (float x : g) sq += double(x) * x;
  const double want_norm = std::sqrt(sq), max_norm = 1.0;
  for (int t = 1; t <= 3; ++t) {
    launch_grad_norm(dg.data(), plan.n, float(max_norm), scratch.data(), norm.data(), nullptr);
    const AdamWStep h = AdamWStep::make(1e-3, 0.9, 0.999, 1e-8, 0.01, t);
    launch_adamw(dp.data(), dg.data(), dm.data(), dv.data(), plan, h, norm.data(), nullptr);
    const auto nc = to_host(norm, 2);
    EXPECT_NEAR(nc[0], want_norm, 1e-5 * want_norm);
    const float coef = float(max_norm / (want_norm + 1e-6));
    EXPECT_NEAR(nc[1], coef, 1e-6 * coef);
    AdamWStep hh = h;
    hh.grad_scale = nc[1];
    for (std::int64_t i = 0; i < plan.n; ++i)
      adamw_update(p[i], g[i], m[i], v[i], hh, i < plan.n_decay);
  }
  EXPECT_LT(max_abs(to_host(dp, plan.n), p), 1e-6);
  EXPECT_LT(max_abs(to_host(dv, plan.n), v), 1e-9);
  // Deterministic reduction: the same gradients give the same norm bits.
  launch_grad_norm(dg.data(), plan.n, 0.0f, scratch.data(), norm.data(), nullptr);
  const auto a = to_host(norm, 2);
  launch_grad_norm(dg.data(), plan.n, 0.0f, scratch.data(), norm.data(), nullptr);
  EXPECT_EQ(to_host(norm, 2), a);
  EXPECT_EQ(a[1], 1.0f);  // max_norm <= 0 only measures
}

TEST(CudaRetrieval, TopKEqualsTheCpuIncludingTies) {
  LMEMBED_REQUIRE_GPU();
  // Coarse values make many exact score ties; the order must still equal eval::search_topk's.
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-2, 2);
  Matrix q(37, 16), c(1000, 16);
  for (Eigen::Index i = 0; i < q.size(); ++i) q.data()[i] = float(small(rng));
  for (Eigen::Index i = 0; i < c.size(); ++i) c.data()[i] = float(small(rng)) * 0.5f;
  c.row(17).setZero();
  for (std::int64_t k : {1, 10, 300}) {
    const auto want = eval::search_topk(q, c, k, 128);
    const auto got = lmembed::cuda::search_topk(q, c, k, 8, 96);  // many blocks on both axes
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[i].size(), want[i].size());
      for (std::size_t j = 0; j < want[i].size(); ++j) {
        EXPECT_EQ(got[i][j].doc, want[i][j].doc) << "query " << i << " rank " << j << " k " << k;
        EXPECT_EQ(got[i][j].score, want[i][j].score);
      }
    }
  }
}

using GpuMean = Encoder<attention::causal, pooling::mean, backend::cuda>;
static_assert(std::is_same_v<GpuMean::backend_type, backend::cuda>,
              "Encoder<..., backend::cuda> resolves to the CUDA specialization");

TEST(CudaEncoder, RuntimeChoicesAreCheckedBeforeTouchingTheDevice) {
  // Runs on every machine: a bad pooling name fails before any model or device work.
  EXPECT_THROW(lmembed::cuda::make_encoder(kData / "models/stories260K.gguf", AttentionKind::causal,
                                           "no_such_pooling"),
               config_error);
}

TEST(CudaEncoder, SameEmbeddingsAsTheCpuEncoder) {
  LMEMBED_REQUIRE_GPU();
  const auto model = kData / "models/stories260K.gguf";
  const std::vector<std::string> texts = {"Once upon a time", "A man is playing a flute.", "Hello",
                                          std::string(200, 'a')};
  for (AttentionKind kind : {AttentionKind::causal, AttentionKind::bidirectional})
    for (const char* pooling : {"mean", "eos"}) {
      EncoderOptions o;
      o.eos_check = EosCheck::off;
      AnyEncoder gpu = lmembed::cuda::make_encoder(model, kind, pooling, {}, o);
      AnyEncoder cpu = lmembed::make_encoder(model, kind, pooling, {}, o);
      const Matrix a = gpu->encode(texts), b = cpu->encode(texts);
      ASSERT_EQ(a.rows(), b.rows());
      for (Eigen::Index r = 0; r < a.rows(); ++r)
        EXPECT_LT(rel_diff(a.row(r).data(), b.row(r).data(), a.cols()), 1e-4) << pooling;
      EXPECT_THROW(gpu->backbone(), config_error);
    }
}

TEST(CudaLoss, InfoNceAndGradientsMatchTheCpuLoss) {
  LMEMBED_REQUIRE_GPU();
  CublasHandle h = CublasHandle::create(nullptr);
  const std::int64_t B = 24, N = 40, D = 96;
  const auto q = randn(B * D, 1), c = randn((B + N) * D, 2);
  const Matrix Q = Eigen::Map<const Matrix>(q.data(), B, D);
  const Matrix C = Eigen::Map<const Matrix>(c.data(), B + N, D);
  for (bool symmetric : {false, true}) {
    train::InfoNceOptions o;
    o.symmetric = symmetric;
    const auto want = train::info_nce<float>(Q, C.topRows(B), C.bottomRows(N), o);
    auto dq = to_device(q), dc = to_device(c);
    DeviceBuffer<float> loss(1), gq(B * D), gc((B + N) * D);
    std::size_t bytes = 0;
    info_nce_device(nullptr, bytes, h.get(), dq.data(), dc.data(), B, N, D, 20.0f, symmetric,
                    loss.data(), gq.data(), gc.data(), nullptr);
    DeviceBuffer<std::byte> ws(bytes);
    info_nce_device(ws.data(), bytes, h.get(), dq.data(), dc.data(), B, N, D, 20.0f, symmetric,
                    loss.data(), gq.data(), gc.data(), nullptr);
    EXPECT_NEAR(to_host(loss, 1)[0], want.loss, 1e-4 * std::abs(want.loss));
    Matrix wc(B + N, D);
    wc.topRows(B) = want.d_positives;
    wc.bottomRows(N) = want.d_negatives;
    const auto got_q = to_host(gq, B * D), got_c = to_host(gc, (B + N) * D);
    EXPECT_LT(
        max_abs(got_q, std::vector<float>(want.d_queries.data(), want.d_queries.data() + B * D)),
        1e-4 * want.d_queries.cwiseAbs().maxCoeff());
    EXPECT_LT(max_abs(got_c, std::vector<float>(wc.data(), wc.data() + wc.size())),
              1e-4 * wc.cwiseAbs().maxCoeff());
  }
}

TEST(CudaStream, DoubleBufferedUploadsFeedEveryBatchOnce) {
  LMEMBED_REQUIRE_GPU();
  Stream compute = Stream::create();
  const std::int64_t n = 9, len = 5000;
  DeviceBuffer<float> acc(len);
  acc.zero(len, compute.get());
  std::vector<double> want(len, 0.0);
  stream_batches(
      n, len * sizeof(float),
      [&](std::int64_t i, std::span<std::byte> pinned) {
        const std::int64_t m = i == 3 ? len / 2 : len;  // one short batch
        auto* f = reinterpret_cast<float*>(pinned.data());
        for (std::int64_t j = 0; j < m; ++j) f[j] = float(i + 1) + 0.001f * float(j % 100);
        for (std::int64_t j = m; j < len; ++j) f[j] = 0.0f;
        for (std::int64_t j = 0; j < len; ++j) want[j] += f[j];
        return static_cast<std::size_t>(len) * sizeof(float);
      },
      [&](std::int64_t, const std::byte* dev, std::size_t bytes, cudaStream_t s) {
        launch_add(acc.data(), reinterpret_cast<const float*>(dev),
                   static_cast<std::int64_t>(bytes / sizeof(float)), s);
      },
      compute.get());
  const auto got = to_host(acc, len);
  for (std::int64_t j = 0; j < len; ++j) EXPECT_NEAR(got[j], want[j], 1e-3) << j;
}

}  // namespace
