// lmembed/cuda/reference.cuh - the CUDA backbone's algorithm, run on the CPU.
//
// A host mirror of what backbone.cuh launches, step for step and with the same plans and
// per-element math: fused Q|K|V and gate|up products, bias + RoPE in the weights' own pair
// layout (no permutation), attention over the same query tiles and key tiles with the same
// online-softmax updates (one "warp" = 32 keys at a time), SwiGLU, and the same capture. It lets
// the CPU tests check the device algorithm against llama.cpp goldens and the CPU backbone on a
// machine without a GPU; the device tests then compare the kernels with this mirror.
// Plain C++ (no CUDA headers); slow by design, for tests only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "lmembed/backbone/config.hpp"
#include "lmembed/backbone/decoder.hpp"
#include "lmembed/core/batch.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/cuda/math.cuh"
#include "lmembed/cuda/plan.cuh"

namespace lmembed::cuda::reference {

/// Attention of every token over its own sequence, as kernels::flash_attention computes it:
/// per query tile and head, key tiles of attention_tile_k, block max -> rescale -> weights.
/// qkv rows are [Q heads | K heads | V heads] (row stride m.qkv_dim()); out is
/// [n_tokens, n_heads * head_dim].
inline void attention(const ModelSpec& m, const float* qkv, std::span<const std::int64_t> offsets,
                      bool causal, float* out) {
  const std::int64_t hd = m.head_dim, stride = m.qkv_dim(), group = m.n_heads / m.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> acc(static_cast<std::size_t>(hd)), p(attention_tile_k);
  for (const AttentionTile& tile : attention_tiles(offsets)) {
    const std::int64_t begin = offsets[tile.seq], len = offsets[tile.seq + 1] - begin;
    const std::int64_t kv_end = attention_kv_end(len, tile.q_begin, causal);
    for (std::int64_t h = 0; h < m.n_heads; ++h) {
      const std::int64_t kvh = h / group;
      for (std::int64_t qi = tile.q_begin;
           qi < std::min<std::int64_t>(len, tile.q_begin + attention_tile_q); ++qi) {
        const float* q = qkv + (begin + qi) * stride + h * hd;
        OnlineSoftmax st;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (std::int64_t k0 = 0; k0 < kv_end; k0 += attention_tile_k) {
          float s[attention_tile_k];
          float mx = -INFINITY;
          for (int j = 0; j < attention_tile_k; ++j) {
            const std::int64_t kj = k0 + j;
            s[j] = -INFINITY;
            if (kj < kv_end && (!causal || kj <= qi)) {
              const float* k = qkv + (begin + kj) * stride + (m.n_heads + kvh) * hd;
              float dot = 0.0f;
              for (std::int64_t c = 0; c < hd; ++c) dot += q[c] * k[c];
              s[j] = dot * scale;
            }
            mx = std::max(mx, s[j]);
          }
          if (mx == -INFINITY) continue;
          const float f = st.rescale_to(mx);
          float psum = 0.0f;
          for (int j = 0; j < attention_tile_k; ++j) {
            p[j] = s[j] == -INFINITY ? 0.0f : std::exp(s[j] - st.m);
            psum += p[j];
          }
          st.l += psum;
          for (auto& a : acc) a *= f;
          for (int j = 0; j < attention_tile_k; ++j) {
            if (p[j] == 0.0f) continue;
            const float* v =
                qkv + (begin + k0 + j) * stride + (m.n_heads + m.n_kv_heads + kvh) * hd;
            for (std::int64_t c = 0; c < hd; ++c) acc[c] += p[j] * v[c];
          }
        }
        const float inv = st.inv_sum();
        float* o = out + (begin + qi) * m.n_heads * hd + h * hd;
        for (std::int64_t c = 0; c < hd; ++c) o[c] = acc[c] * inv;
      }
    }
  }
}

/// Bias + RoPE of one token row of the fused QKV buffer, as kernels::qkv_bias_rope.
inline void qkv_bias_rope(const ModelSpec& m, float* row, const float* bias, const float* cs) {
  const int hd = static_cast<int>(m.head_dim), half = hd / 2;
  const int n_pairs = static_cast<int>(m.n_heads + m.n_kv_heads) * half;
  for (int j = 0; j < n_pairs; ++j) {
    const int head = j / half, i = j % half;
    const RopePair p = rope_pair(m.rope, i, hd);
    float a = row[head * hd + p.a], b = row[head * hd + p.b];
    if (bias) {
      a += bias[head * hd + p.a];
      b += bias[head * hd + p.b];
    }
    rope_rotate(a, b, cs[2 * i], cs[2 * i + 1]);
    row[head * hd + p.a] = a;
    row[head * hd + p.b] = b;
  }
  if (bias)
    for (std::int64_t c = (m.n_heads + m.n_kv_heads) * hd; c < m.qkv_dim(); ++c) row[c] += bias[c];
}

/// RMSNorm of each row (F32 sum of squares, as the kernel).
inline void rmsnorm(const Matrix& x, const float* w, float eps, Matrix& y) {
  y.resize(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    float ss = 0.0f;
    for (Eigen::Index c = 0; c < x.cols(); ++c) ss += x(r, c) * x(r, c);
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(x.cols()) + eps);
    for (Eigen::Index c = 0; c < x.cols(); ++c) y(r, c) = x(r, c) * inv * w[c];
  }
}

/// Copies one layer's states into its Captured slot, as kernels::capture.
inline void capture(const Matrix& x, const TokenBatch& batch, const CapturePlan& p,
                    std::int64_t slot, Matrix& out) {
  for (std::int64_t item = 0; item < p.n_items; ++item) {
    auto dst = out.row(item * p.n_layers_out + slot);
    if (p.spec.tokens == CaptureTokens::all) {
      dst = x.row(item);
    } else if (p.spec.tokens == CaptureTokens::last) {
      dst = x.row(batch.offsets[item + 1] - 1);
    } else {
      const std::int64_t b = batch.offsets[item] + batch.pool_start(item),
                         e = batch.offsets[item + 1];
      for (Eigen::Index c = 0; c < x.cols(); ++c) {
        double s = 0.0;
        for (std::int64_t t = b; t < e; ++t) s += x(t, c);
        dst(c) = static_cast<float>(s / static_cast<double>(e - b));
      }
    }
  }
}

/// The host executor of run_decoder() (backbone/decoder.hpp) that mirrors the device's: Eigen
/// products on the fused weights and the per-element functions above.
struct Exec {
  struct Layer {
    std::vector<float> attn_norm, ffn_norm, bias;
    Matrix wqkv, wo, wgu, wdown;
  };
  const ModelSpec& m;
  const ModelWeights& w;
  const TokenBatch& batch;
  const CapturePlan& cap;
  bool causal;
  const std::vector<float>& rope;
  const std::vector<std::int32_t>& pos;
  Captured& out;
  std::vector<Layer> layers;
  std::vector<float> final_norm;
  Matrix x, h, qkv, attn, gu, act;

  Matrix& view(Act a) {
    switch (a) {
      case Act::x:
        return x;
      case Act::h:
        return h;
      case Act::qkv:
        return qkv;
      case Act::attn:
        return attn;
      case Act::gate_up:
        return gu;
      case Act::act:
        return act;
    }
    return x;
  }
  static std::vector<float> row(const Matrix& v) { return {v.data(), v.data() + v.size()}; }
  static Matrix stack(std::initializer_list<const Matrix*> parts) {
    Eigen::Index rows = 0;
    for (const Matrix* p : parts) rows += p->rows();
    Matrix s(rows, (*parts.begin())->cols());
    Eigen::Index at = 0;
    for (const Matrix* p : parts) {
      s.middleRows(at, p->rows()) = *p;
      at += p->rows();
    }
    return s;
  }

  std::int64_t n_layers() const { return m.n_layers; }
  const Layer& layer(std::int64_t l) {
    // Fused [wq | wk | wv] and [w_gate | w_up] as the device uploads them, built on first use.
    while (static_cast<std::int64_t>(layers.size()) <= l) {
      const LayerWeights& L = w.layers[layers.size()];
      Layer f;
      f.attn_norm = row(L.attn_norm);
      f.ffn_norm = row(L.ffn_norm);
      if (m.qkv_bias)
        for (const Matrix* b : {&L.bq, &L.bk, &L.bv})
          f.bias.insert(f.bias.end(), b->data(), b->data() + b->size());
      f.wqkv = stack({&L.wq, &L.wk, &L.wv});
      f.wo = L.wo;
      f.wgu = stack({&L.w_gate, &L.w_up});
      f.wdown = L.w_down;
      layers.push_back(std::move(f));
    }
    return layers[static_cast<std::size_t>(l)];
  }
  const std::vector<float>& out_norm() {
    if (final_norm.empty()) final_norm = row(w.out_norm);
    return final_norm;
  }

  void embed(Act dst) {
    Matrix& e = view(dst);
    e.resize(batch.n_tokens(), m.d_model);
    for (std::int64_t t = 0; t < batch.n_tokens(); ++t) e.row(t) = w.tok_embd.row(batch.ids[t]);
  }
  void rms_norm(Act src, const std::vector<float>& weight, Act dst) {
    rmsnorm(view(src), weight.data(), m.rms_eps, view(dst));
  }
  void linear(Act src, const Matrix& W, Act dst, bool accumulate) {
    Matrix& y = view(dst);
    if (accumulate)
      y.noalias() += view(src) * W.transpose();
    else
      y.noalias() = view(src) * W.transpose();
  }
  void bias_rope(Act a, const Layer& L) {
    Matrix& q = view(a);
    for (Eigen::Index t = 0; t < q.rows(); ++t)
      qkv_bias_rope(m, q.row(t).data(), L.bias.empty() ? nullptr : L.bias.data(),
                    rope.data() + static_cast<std::int64_t>(pos[t]) * m.head_dim);
  }
  void attention(Act src, Act dst, bool /*last layer: every row is kept*/) {
    Matrix& o = view(dst);
    o.resize(view(src).rows(), m.n_heads * m.head_dim);
    reference::attention(m, view(src).data(), batch.offsets, causal, o.data());
  }
  void swiglu(Act gate_up, Act dst) {
    const Matrix& g = view(gate_up);
    Matrix& a = view(dst);
    const std::int64_t ff = m.d_ff;
    a.resize(g.rows(), ff);
    for (Eigen::Index t = 0; t < g.rows(); ++t)
      for (std::int64_t j = 0; j < ff; ++j) a(t, j) = silu(g(t, j)) * g(t, ff + j);
  }
  void capture(Act a, std::int64_t l) {
    const std::int64_t slot = cap.slot(l, m.n_layers);
    if (slot >= 0) reference::capture(view(a), batch, cap, slot, out.states);
  }
};

/// The device backbone's forward, on the CPU (weights as the loaders give them).
inline Captured forward(const ModelConfig& cfg, const ModelWeights& w, const TokenBatch& batch,
                        bool causal, CaptureSpec spec) {
  const ModelSpec m = to_spec(cfg);
  m.check();
  const CapturePlan cap = plan_capture(batch, spec, m);
  std::int64_t max_len = 0;
  for (std::size_t s = 0; s < batch.size(); ++s) max_len = std::max(max_len, batch.length(s));
  const std::vector<float> rope = rope_table(m.rope_theta, m.head_dim, max_len);
  const std::vector<std::int32_t> pos = token_positions(batch);

  Captured out;
  out.spec = spec;
  out.n_seq = static_cast<std::int64_t>(batch.size());
  out.n_layers = cap.n_layers_out;
  out.d = m.d_model;
  out.offsets = batch.offsets;
  out.pool_from = batch.pool_from;
  out.states.setZero(cap.rows(), m.d_model);
  Exec ex{m, w, batch, cap, causal, rope, pos, out, {}, {}, {}, {}, {}, {}, {}, {}};
  run_decoder(ex);
  return out;
}

}  // namespace lmembed::cuda::reference
