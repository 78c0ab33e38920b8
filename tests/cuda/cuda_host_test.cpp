// CUDA backend, host side (runs everywhere, no GPU needed): the plans the device code follows
// and the math its kernels run (math.cuh, shared with the kernels), against independent
// references:
//  - cuBLAS argument mapping: the column-major semantics cuBLAS documents, applied to our
//    arguments, must give Eigen's row-major X W^T;
//  - tiled online-softmax attention (the kernel's algorithm) vs a naive float64 softmax
//    attention written here, on ragged batches, causal and bidirectional, with GQA;
//  - RoPE: interleaved pairs on llama.cpp-permuted rows == HF rotate_half on HF rows;
//  - AdamW: torch.optim.AdamW's numbers (printed by PyTorch 2, script in the comment);
//  - the whole device forward algorithm (reference.cuh) vs llama.cpp goldens and the CPU
//    backbone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "cuda_test_util.hpp"
#include "lmembed/backbone/backbone.hpp"
#include "lmembed/cuda/math.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/reference.cuh"

namespace {

using namespace lmembed;
using namespace lmembed::cuda;
using namespace cuda_test;

Matrix random_matrix(Eigen::Index r, Eigen::Index c, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, scale);
  Matrix m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(rng);
  return m;
}

TEST(CudaGemmArgs, ColumnMajorMappingGivesRowMajorXWt) {
  for (auto [M, N, K] : {std::tuple{7, 5, 3}, {1, 9, 16}, {33, 1, 8}}) {
    const Matrix X = random_matrix(M, K, 1), W = random_matrix(N, K, 2);
    Matrix Y = Matrix::Constant(M, N, 0.5f);
    const Matrix want = X * W.transpose() + 0.5f * Y;
    // Y^T column-major is Y row-major: cuBLAS writes straight into the row-major buffer.
    gemm_colmajor_reference(gemm_xwt(M, N, K), 1.0f, W.data(), X.data(), 0.5f, Y.data());
    EXPECT_LT((Y - want).cwiseAbs().maxCoeff(), 1e-5f) << M << "x" << N << "x" << K;

    const Matrix Wkn = random_matrix(K, N, 3);  // [in, out]
    Matrix Z(M, N);
    gemm_colmajor_reference(gemm_xw(M, N, K), 1.0f, Wkn.data(), X.data(), 0.0f, Z.data());
    EXPECT_LT((Z - X * Wkn).cwiseAbs().maxCoeff(), 1e-5f);
  }
  {  // Y[M,N] = A[K,M]^T B[K,N]
    const Matrix A = random_matrix(6, 4, 4), B = random_matrix(6, 3, 5);
    Matrix Y(4, 3);
    gemm_colmajor_reference(gemm_xtw(4, 3, 6), 1.0f, B.data(), A.data(), 0.0f, Y.data());
    EXPECT_LT((Y - A.transpose() * B).cwiseAbs().maxCoeff(), 1e-5f);
  }
  EXPECT_THROW(gemm_xwt(0, 4, 4), shape_error);
  EXPECT_THROW(gemm_xwt(std::int64_t{1} << 32, 4, 4), shape_error);
}

TEST(CudaWorkspace, LayoutIsAlignedDisjointAndIndependentOfDepth) {
  WorkspaceLayout L;
  const std::size_t a = L.add<float>(3), b = L.add<std::int64_t>(5), c = L.add(0, 4),
                    d = L.add<char>(1);
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(b, 256u);
  EXPECT_EQ(c, 512u);
  EXPECT_EQ(d, 512u);  // an empty slice takes no room
  EXPECT_EQ(L.bytes(), 768u);

  ModelSpec m;
  m.n_vocab = 100, m.d_model = 64, m.n_layers = 2, m.n_heads = 8, m.n_kv_heads = 4;
  m.head_dim = 8, m.d_ff = 172, m.n_ctx = 512;
  const auto w = plan_backbone_workspace(m, 50, 3, 40, 4, 3, WeightPrecision::f32);
  ModelSpec deep = m;
  deep.n_layers = 40;
  EXPECT_EQ(plan_backbone_workspace(deep, 50, 3, 40, 4, 3, WeightPrecision::f32).bytes, w.bytes);
  // Every slice fits its size before the next one starts.
  const std::vector<std::pair<std::size_t, std::size_t>> slices = {
      {w.x, 50 * 64 * 4},    {w.h, 50 * 64 * 4},        {w.qkv, 50 * 128 * 4},
      {w.attn, 50 * 64 * 4}, {w.gate_up, 50 * 344 * 4}, {w.act, 50 * 172 * 4},
      {w.staging, 0},        {w.ids, 50 * 4},           {w.positions, 50 * 4},
      {w.offsets, 4 * 8},    {w.pool_from, 3 * 4},      {w.tiles, 4 * 8},
      {w.rope, 40 * 8 * 4},  {w.captured, 3 * 64 * 4}};
  for (std::size_t i = 0; i < slices.size(); ++i) {
    EXPECT_EQ(slices[i].first % WorkspaceLayout::alignment, 0u);
    const std::size_t end = slices[i].first + slices[i].second;
    EXPECT_LE(end, i + 1 < slices.size() ? slices[i + 1].first : w.bytes) << "slice " << i;
  }
  const auto wb = plan_backbone_workspace(m, 50, 3, 40, 4, 3, WeightPrecision::bf16);
  EXPECT_GE(wb.ids - wb.staging, 50u * 172 * 2);  // BF16 staging as wide as d_ff
  EXPECT_GT(plan_backbone_workspace(m, 51, 3, 40, 4, 3, WeightPrecision::f32).bytes, w.bytes);
}

TEST(CudaAttentionPlan, TilesCoverEveryQueryOnceLongestFirst) {
  const std::vector<std::int64_t> offsets = {0, 1, 33, 33 + 64, 33 + 64 + 100};
  const auto tiles = attention_tiles(offsets);
  std::set<std::pair<int, int>> seen;
  for (const auto& t : tiles)
    for (int q = t.q_begin; q < std::min<std::int64_t>(t.q_begin + attention_tile_q,
                                                       offsets[t.seq + 1] - offsets[t.seq]);
         ++q)
      EXPECT_TRUE(seen.insert({t.seq, q}).second) << "query visited twice";
  EXPECT_EQ(seen.size(), 1u + 32 + 64 + 100);
  EXPECT_EQ(tiles.size(), 1u + 1 + 2 + 4);
  EXPECT_EQ(tiles.front().seq, 3);  // 100 tokens: the longest first
  EXPECT_EQ(tiles.back().seq, 0);
  EXPECT_EQ(attention_kv_end(100, 64, true), 96);
  EXPECT_EQ(attention_kv_end(100, 96, true), 100);
  EXPECT_EQ(attention_kv_end(100, 0, false), 100);
  EXPECT_LE(attention_smem_bytes(64), 48u * 1024);    // no opt-in needed up to head_dim 64
  EXPECT_GT(attention_smem_bytes(128), 48u * 1024);   // the launcher opts in above 48 KiB
  EXPECT_LE(attention_smem_bytes(256), 163u * 1024);  // fits sm_80's opt-in limit
}

/// Naive float64 attention: softmax over the visible keys of the query's own sequence.
std::vector<double> naive_attention(const ModelSpec& m, const std::vector<float>& qkv,
                                    const std::vector<std::int64_t>& offsets, bool causal) {
  const std::int64_t hd = m.head_dim, stride = m.qkv_dim(), T = offsets.back();
  std::vector<double> out(static_cast<std::size_t>(T * m.n_heads * hd), 0.0);
  for (std::size_t s = 0; s + 1 < offsets.size(); ++s)
    for (std::int64_t h = 0; h < m.n_heads; ++h) {
      const std::int64_t kvh = h * m.n_kv_heads / m.n_heads;
      for (std::int64_t i = offsets[s]; i < offsets[s + 1]; ++i) {
        const std::int64_t jend = causal ? i + 1 : offsets[s + 1];
        std::vector<double> sc;
        for (std::int64_t j = offsets[s]; j < jend; ++j) {
          double dot = 0;
          for (std::int64_t c = 0; c < hd; ++c)
            dot += static_cast<double>(qkv[i * stride + h * hd + c]) *
                   qkv[j * stride + (m.n_heads + kvh) * hd + c];
          sc.push_back(dot / std::sqrt(static_cast<double>(hd)));
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double z = 0;
        for (double& x : sc) z += (x = std::exp(x - mx));
        for (std::int64_t j = offsets[s]; j < jend; ++j)
          for (std::int64_t c = 0; c < hd; ++c)
            out[(i * m.n_heads + h) * hd + c] +=
                sc[j - offsets[s]] / z *
                qkv[j * stride + (m.n_heads + m.n_kv_heads + kvh) * hd + c];
      }
    }
  return out;
}

TEST(CudaAttentionMath, TiledOnlineSoftmaxMatchesNaiveAttention) {
  ModelSpec m;
  m.n_heads = 4, m.n_kv_heads = 2, m.head_dim = 16;
  const std::vector<std::int64_t> lengths = {1, 31, 32, 33, 7, 64, 65, 130};
  std::vector<std::int64_t> offsets = {0};
  for (auto l : lengths) offsets.push_back(offsets.back() + l);
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.5f);  // large scores: the rescaling matters
  std::vector<float> qkv(static_cast<std::size_t>(offsets.back() * m.qkv_dim()));
  for (float& x : qkv) x = n(rng);
  for (bool causal : {true, false}) {
    std::vector<float> out(static_cast<std::size_t>(offsets.back() * m.n_heads * m.head_dim));
    reference::attention(m, qkv.data(), offsets, causal, out.data());
    const auto want = naive_attention(m, qkv, offsets, causal);
    double err = 0;
    for (std::size_t i = 0; i < out.size(); ++i) err = std::max(err, std::abs(out[i] - want[i]));
    EXPECT_LT(err, 2e-5) << (causal ? "causal" : "bidirectional");
  }
  // The first token of a causal sequence sees only itself: its output is its own V.
  std::vector<float> out(static_cast<std::size_t>(offsets.back() * m.n_heads * m.head_dim));
  reference::attention(m, qkv.data(), offsets, true, out.data());
  for (std::int64_t c = 0; c < m.head_dim; ++c)
    EXPECT_FLOAT_EQ(out[static_cast<std::size_t>(c)],
                    qkv[static_cast<std::size_t>((m.n_heads + m.n_kv_heads) * m.head_dim + c)]);
}

TEST(CudaAttentionMath, OnlineSoftmaxStateHandlesEmptyAndUnderflow) {
  OnlineSoftmax st;
  EXPECT_EQ(st.inv_sum(), 0.0f);  // nothing seen: zero output, not NaN
  EXPECT_EQ(st.rescale_to(1000.0f), 0.0f);
  EXPECT_FLOAT_EQ(st.weight(1000.0f), 1.0f);
  EXPECT_EQ(st.weight(-INFINITY), 0.0f);
  const float f = st.rescale_to(2000.0f);  // old mass underflows to 0, no NaN
  EXPECT_EQ(f, 0.0f);
  EXPECT_FLOAT_EQ(st.weight(2000.0f), 1.0f);
  EXPECT_FLOAT_EQ(st.inv_sum(), 1.0f);
}

TEST(CudaRope, InterleavedOnPermutedRowsEqualsRotateHalf) {
  const int hd = 8, half = hd / 2;
  EXPECT_EQ(rope_pair(RopeForm::interleaved, 3, hd).a, 6);
  EXPECT_EQ(rope_pair(RopeForm::interleaved, 3, hd).b, 7);
  EXPECT_EQ(rope_pair(RopeForm::rotate_half, 3, hd).a, 3);
  EXPECT_EQ(rope_pair(RopeForm::rotate_half, 3, hd).b, 7);
  const float theta = 10000.0f;
  const auto table = rope_table(theta, hd, 50);
  for (int pos : {0, 1, 17, 49})
    for (int i = 0; i < half; ++i) {
      const double ang = pos * std::pow(10000.0, -2.0 * i / hd);
      EXPECT_NEAR(table[(pos * half + i) * 2], std::cos(ang), 1e-7);
      EXPECT_NEAR(table[(pos * half + i) * 2 + 1], std::sin(ang), 1e-7);
    }
  std::mt19937 rng(3);
  std::normal_distribution<float> n;
  std::vector<float> hf(hd);
  for (float& x : hf) x = n(rng);
  for (int pos : {0, 5, 49}) {
    // HF: q * cos + rotate_half(q) * sin, cos/sin repeated over both halves.
    std::vector<double> want(hd);
    for (int c = 0; c < hd; ++c) {
      const int i = c % half;
      const double ang = pos * std::pow(10000.0, -2.0 * i / hd);
      const double rot = c < half ? -hf[c + half] : hf[c - half];
      want[c] = hf[c] * std::cos(ang) + rot * std::sin(ang);
    }
    std::vector<float> a = hf;  // rotate-half form on HF rows
    for (int i = 0; i < half; ++i) {
      const RopePair p = rope_pair(RopeForm::rotate_half, i, hd);
      rope_rotate(a[p.a], a[p.b], table[(pos * half + i) * 2], table[(pos * half + i) * 2 + 1]);
    }
    // llama.cpp's GGUF rows: row 2i+j = HF row j*half+i; interleaved form on those.
    std::vector<float> g(hd);
    for (int i = 0; i < half; ++i)
      for (int j = 0; j < 2; ++j) g[2 * i + j] = hf[j * half + i];
    for (int i = 0; i < half; ++i) {
      const RopePair p = rope_pair(RopeForm::interleaved, i, hd);
      rope_rotate(g[p.a], g[p.b], table[(pos * half + i) * 2], table[(pos * half + i) * 2 + 1]);
    }
    for (int c = 0; c < hd; ++c) {
      EXPECT_NEAR(a[c], want[c], 1e-5);
      EXPECT_NEAR(g[2 * (c % half) + c / half], want[c], 1e-5);
    }
  }
}

TEST(CudaMath, ActivationsAndTheirGradients) {
  for (float x : {-6.0f, -1.3f, -0.2f, 0.0f, 0.7f, 2.5f, 9.0f}) {
    EXPECT_NEAR(silu(x), x / (1.0 + std::exp(-static_cast<double>(x))), 1e-6);
    EXPECT_NEAR(gelu(x), 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))), 1e-6);
    const double h = 1e-3;
    auto num = [&](auto f) { return (f(x + h) - f(x - h)) / (2 * h); };
    EXPECT_NEAR(silu_grad(x), num([](double v) { return v / (1.0 + std::exp(-v)); }), 1e-4);
    EXPECT_NEAR(gelu_grad(x),
                num([](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }), 1e-4);
  }
}

TEST(CudaMath, AdamWMatchesTorch) {
  // /usr/bin/python3: p = [0.5, -1, 2, 0]; torch.optim.AdamW(lr=0.01, betas=(0.9, 0.999),
  // eps=1e-8, weight_decay=0.1); three steps with the gradients below; print p, exp_avg,
  // exp_avg_sq (torch 2.x, float32).
  float p[4] = {0.5f, -1.0f, 2.0f, 0.0f}, m[4] = {}, v[4] = {};
  const float g[3][4] = {
      {0.1f, -0.2f, 0.3f, 1.0f}, {0.05f, 0.4f, -0.1f, -2.0f}, {-0.3f, 0.0f, 0.2f, 0.5f}};
  for (int t = 0; t < 3; ++t) {
    const AdamWStep h = AdamWStep::make(0.01, 0.9, 0.999, 1e-8, 0.1, t + 1);
    for (int i = 0; i < 4; ++i) adamw_update(p[i], g[t][i], m[i], v[i], h, true);
  }
  const double want_p[4] = {0.4826812744140625, -0.9935104250907898, 1.9739969968795776,
                            -0.004955729003995657};
  const double want_m[4] = {-0.017400002107024193, 0.01979999989271164, 0.03530000150203705,
                            -0.049000006169080734};
  const double want_v[4] = {0.00010247751924907789, 0.0001997600484173745, 0.00013981011579744518,
                            0.005244001280516386};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(p[i], want_p[i], 1e-7) << i;
    EXPECT_NEAR(m[i], want_m[i], 1e-8) << i;
    EXPECT_NEAR(v[i], want_v[i], 1e-6 * want_v[i]) << i;
  }
  // No decay for biases/norms; a clipping scale multiplies the gradient first.
  float q = 1.0f, qm = 0.0f, qv = 0.0f;
  AdamWStep h = AdamWStep::make(0.01, 0.9, 0.999, 1e-8, 0.1, 1);
  h.grad_scale = 0.5f;
  adamw_update(q, 2.0f, qm, qv, h, false);
  EXPECT_NEAR(q, 1.0f - 0.01f, 1e-6);  // first step moves by lr * sign(g)
  EXPECT_NEAR(qm, 0.1f, 1e-7);         // (1 - beta1) * 0.5 * 2
}

TEST(CudaMath, RetrievalOrderBreaksTiesByIndex) {
  std::vector<std::pair<float, int>> hits = {
      {0.5f, 3}, {0.9f, 7}, {0.5f, 1}, {0.9f, 2}, {-1.0f, 0}};
  std::sort(hits.begin(), hits.end(), [](const auto& a, const auto& b) {
    return ranks_before(a.first, a.second, b.first, b.second);
  });
  const std::vector<int> want = {2, 7, 1, 3, 0};
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(hits[i].second, want[i]);
}

TEST(CudaCapturePlan, ValidatesLikeTheCpuBackbone) {
  ModelSpec m;
  m.n_vocab = 10, m.d_model = 4, m.n_layers = 3, m.n_ctx = 5;
  TokenBatch b;
  b.add(std::vector<std::int32_t>{1, 2, 3});
  b.add(std::vector<std::int32_t>{4});
  auto p = plan_capture(b, {CaptureLayers::all, CaptureTokens::all}, m);
  EXPECT_EQ(p.n_items, 4);
  EXPECT_EQ(p.n_layers_out, 3);
  EXPECT_EQ(p.slot(1, 3), 0);
  EXPECT_EQ(p.slot(3, 3), 2);
  p = plan_capture(b, {CaptureLayers::last, CaptureTokens::mean}, m);
  EXPECT_EQ(p.rows(), 2);
  EXPECT_EQ(p.slot(2, 3), -1);
  EXPECT_EQ(p.slot(3, 3), 0);
  EXPECT_EQ(token_positions(b), (std::vector<std::int32_t>{0, 1, 2, 0}));

  TokenBatch bad = b;
  bad.ids[1] = 10;
  EXPECT_THROW(plan_capture(bad, {}, m), input_error);
  TokenBatch empty_seq = b;
  empty_seq.offsets.push_back(empty_seq.offsets.back());
  EXPECT_THROW(plan_capture(empty_seq, {}, m), input_error);
  TokenBatch pooled;
  pooled.add(std::vector<std::int32_t>{1, 2});
  pooled.pool_from = {2};  // past the end
  EXPECT_THROW(plan_capture(pooled, {CaptureLayers::last, CaptureTokens::mean}, m), input_error);
  EXPECT_NO_THROW(plan_capture(pooled, {CaptureLayers::last, CaptureTokens::last}, m));
  TokenBatch longer;
  longer.add(std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7});
  EXPECT_THROW(plan_capture(longer, {}, m), input_error);
  const TokenBatch cut = truncate_batch(longer, 5);
  EXPECT_EQ(cut.offsets, (std::vector<std::int64_t>{0, 5}));
  EXPECT_NO_THROW(plan_capture(cut, {}, m));
}

/// The device algorithm on the CPU vs llama.cpp's goldens (pooled final-layer states).
void check_reference_golden(const std::string& model, const std::string& name, double tol,
                            std::size_t n_sentences, bool with_long) {
  const auto [cfg, w] = io::load_model_weights(kData / model);
  const Golden& g = golden(name);
  const auto pick = golden_pick(g, n_sentences, with_long);
  const TokenBatch batch = golden_batch(g, pick);
  for (bool causal : {true, false})
    for (CaptureTokens tok : {CaptureTokens::last, CaptureTokens::mean}) {
      const Captured c = reference::forward(cfg, w, batch, causal, {CaptureLayers::last, tok});
      const std::string key = std::string(tok == CaptureTokens::last ? "last" : "mean") +
                              (causal ? "_causal" : "_noncausal");
      double worst = 0;
      for (std::size_t s = 0; s < batch.size(); ++s)
        worst = std::max(worst, rel_diff(c.row(static_cast<std::int64_t>(s)).data(),
                                         g.sentences[pick[s]].emb.at(key).data(),
                                         static_cast<std::size_t>(g.n_embd)));
      EXPECT_LT(worst, tol) << model << " " << key;
    }
}

TEST(CudaReferenceForward, Stories260KInterleavedRopeMatchesLlamaCpp) {
  check_reference_golden("models/stories260K.gguf", "stories260K", 1e-4, 12, true);
}
TEST(CudaReferenceForward, TinyQwen2RotateHalfWithBiasMatchesLlamaCpp) {
  check_reference_golden("golden/models/tiny-qwen2.gguf", "tiny-qwen2", 5e-3, 6, false);
}
TEST(CudaReferenceForward, TinyLlamaHfMatchesLlamaCpp) {
  check_reference_golden("golden/models/tiny-llama-hf", "tiny-llama", 1e-4, 6, false);
}

TEST(CudaReferenceForward, EveryLayerAndTokenMatchesTheCpuBackbone) {
  const auto path = kData / "golden/models/tiny-llama.gguf";
  const auto [cfg, w] = io::load_model_weights(path);
  const Backbone cpu = Backbone::load(path);
  TokenBatch batch = random_batch({1, 40, 33, 7}, cfg.n_vocab, 11);
  batch.pool_from = {0, 5, 0, 2};
  for (bool causal : {true, false})
    for (CaptureSpec spec : {CaptureSpec{CaptureLayers::all, CaptureTokens::all},
                             CaptureSpec{CaptureLayers::all, CaptureTokens::mean}}) {
      const Captured a = reference::forward(cfg, w, batch, causal, spec);
      const Captured b =
          cpu.forward(batch, causal ? AttentionKind::causal : AttentionKind::bidirectional, spec);
      ASSERT_EQ(a.states.rows(), b.states.rows());
      ASSERT_EQ(a.n_layers, b.n_layers);
      EXPECT_EQ(a.offsets, b.offsets);
      for (Eigen::Index r = 0; r < a.states.rows(); ++r)
        EXPECT_LT(
            rel_diff(a.states.row(r).data(), b.states.row(r).data(), static_cast<std::size_t>(a.d)),
            1e-4)
            << "row " << r << (causal ? " causal " : " bidirectional ") << to_string(spec);
    }
}

TEST(CudaOptimPlan, DecayedParametersFirstInCallerOrder) {
  const ParamPlan p =
      plan_params({{"w1", 6, true}, {"b1", 2, false}, {"w2", 4, true}, {"norm", 3, false}});
  EXPECT_EQ(p.n, 15);
  EXPECT_EQ(p.n_decay, 10);
  EXPECT_EQ(p.slots[0].offset, 0);
  EXPECT_EQ(p.slots[2].offset, 6);
  EXPECT_EQ(p.slots[1].offset, 10);
  EXPECT_EQ(p.slots[3].offset, 12);
  EXPECT_EQ(plan_params({{"b", 3, false}}).n_decay, 0);
  EXPECT_THROW(plan_params({{"x", -1, true}}), shape_error);
}

TEST(CudaTopKPlan, BlocksAndCandidates) {
  const TopKPlan p = plan_topk(10, 100, 7, 4, 30);
  EXPECT_EQ(p.query_block, 4);
  EXPECT_EQ(p.n_corpus_blocks, 4);  // 30 + 30 + 30 + 10
  EXPECT_EQ(p.cand_cols, 7 * 4);    // every block keeps k
  const TopKPlan q = plan_topk(3, 100, 20, 1024, 30);
  EXPECT_EQ(q.cand_cols, 20 * 3 + 10);          // the last block has only 10 documents
  EXPECT_EQ(plan_topk(3, 5, 20).cand_cols, 5);  // k larger than the corpus
  EXPECT_THROW(plan_topk(3, 5, 0), config_error);
  EXPECT_THROW(plan_topk(1 << 20, 1 << 20, 4096, 1024, 1024), shape_error);
}

}  // namespace
