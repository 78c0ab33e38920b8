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

/// The device backbone's forward, on the CPU (weights as the loaders give them).
inline Captured forward(const ModelConfig& cfg, const ModelWeights& w, const TokenBatch& batch,
                        bool causal, CaptureSpec spec) {
  const ModelSpec m = to_spec(cfg);
  m.check();
  const CapturePlan cap = plan_capture(batch, spec, m);
  const std::int64_t T = batch.n_tokens(), d = m.d_model, ff = m.d_ff;
  const std::int64_t dq = m.n_heads * m.head_dim, dkv = m.n_kv_heads * m.head_dim;
  std::int64_t max_len = 0;
  for (std::size_t s = 0; s < batch.size(); ++s) max_len = std::max(max_len, batch.length(s));
  const std::vector<float> rope = rope_table(m.rope_theta, m.head_dim, max_len);
  const std::vector<std::int32_t> pos = token_positions(batch);

  Captured out;
  out.spec = spec;
  out.n_seq = static_cast<std::int64_t>(batch.size());
  out.n_layers = cap.n_layers_out;
  out.d = d;
  out.offsets = batch.offsets;
  out.pool_from = batch.pool_from;
  out.states.setZero(cap.rows(), d);

  Matrix x(T, d), h, qkv(T, m.qkv_dim()), attn(T, dq);
  for (std::int64_t t = 0; t < T; ++t) x.row(t) = w.tok_embd.row(batch.ids[t]);
  for (std::int64_t l = 0; l < m.n_layers; ++l) {
    const LayerWeights& L = w.layers[static_cast<std::size_t>(l)];
    rmsnorm(x, L.attn_norm.data(), m.rms_eps, h);
    qkv.leftCols(dq).noalias() = h * L.wq.transpose();
    qkv.middleCols(dq, dkv).noalias() = h * L.wk.transpose();
    qkv.rightCols(dkv).noalias() = h * L.wv.transpose();
    std::vector<float> bias;
    if (m.qkv_bias) {
      bias.resize(static_cast<std::size_t>(m.qkv_dim()));
      std::copy_n(L.bq.data(), dq, bias.begin());
      std::copy_n(L.bk.data(), dkv, bias.begin() + dq);
      std::copy_n(L.bv.data(), dkv, bias.begin() + dq + dkv);
    }
    for (std::int64_t t = 0; t < T; ++t)
      qkv_bias_rope(m, qkv.row(t).data(), bias.empty() ? nullptr : bias.data(),
                    rope.data() + static_cast<std::int64_t>(pos[t]) * m.head_dim);
    attention(m, qkv.data(), batch.offsets, causal, attn.data());
    x.noalias() += attn * L.wo.transpose();
    rmsnorm(x, L.ffn_norm.data(), m.rms_eps, h);
    const Matrix g = h * L.w_gate.transpose(), u = h * L.w_up.transpose();
    Matrix a(T, ff);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < ff; ++j) a(t, j) = silu(g(t, j)) * u(t, j);
    x.noalias() += a * L.w_down.transpose();
    const std::int64_t slot = cap.slot(l + 1, m.n_layers);
    if (slot >= 0 && l + 1 < m.n_layers) capture(x, batch, cap, slot, out.states);
  }
  rmsnorm(x, w.out_norm.data(), m.rms_eps, h);
  capture(h, batch, cap, cap.slot(m.n_layers, m.n_layers), out.states);
  return out;
}

}  // namespace lmembed::cuda::reference
