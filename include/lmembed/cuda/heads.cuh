// lmembed/cuda/heads.cuh - the latent and multi_layer pooling heads, forward and backward,
// written once over an ops executor (head_ops.cuh: HostOps; device_ops.cuh: DeviceOps).
//
// The math is pooling::LatentHead / pooling::MultiLayerHead's step for step (see those headers
// for the formulas and parameter names), on row-major float buffers:
//   - parameters, gradients live in two flat arenas laid out by cuda::plan_params (decayed
//     parameters first, so optim.cuh's fused AdamW runs over them unchanged); ExecHead uploads
//     them from a CPU head object and downloads them back into it, so names, shapes and
//     safetensors files are the CPU head's own (save / load through it);
//   - cross-attention per (text, head) as strided-batched GEMMs: shared rows (the multi_layer
//     latents, the latent head's latent array) are projected once, as on the CPU;
//   - y = mean(X1) + mean(G) W2^T + b2: the second MLP layer runs on one row per text.
// Plain C++ (no CUDA headers): the host executor's composition is tested against the CPU heads
// on every machine (tests/cuda/cuda_head_host_test.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/cuda/head_ops.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/nn/param.hpp"
#include "lmembed/pooling/common.hpp"
#include "lmembed/pooling/latent.hpp"
#include "lmembed/pooling/multi_layer.hpp"

namespace lmembed::cuda {

/// Which composition a CPU head type maps to.
enum class HeadKind : std::uint8_t { latent, multi_layer };

/// Sizes of a head, as the compositions need them (from the CPU head's Config).
struct HeadDims {
  HeadKind kind = HeadKind::multi_layer;
  pooling::MultiLayerInput input = pooling::MultiLayerInput::last_token;  ///< multi_layer only
  std::int64_t d = 0, n_latents = 0, heads = 0, head_dim = 0;
  std::int64_t mult = 4;      ///< mlp_mult (latent) or ff_mult (multi_layer)
  std::int64_t n_layers = 1;  ///< multi_layer: rows of the layer embedding
  bool layer_embedding = false;

  std::int64_t inner() const { return heads * head_dim; }
  /// Width of the first MLP layer's output (2 m d for GEGLU, m d for GELU).
  std::int64_t ff1() const { return kind == HeadKind::latent ? mult * d : 2 * mult * d; }
  /// Width of the MLP's hidden activation.
  std::int64_t ffh() const { return mult * d; }
};

/// HeadDims of a CPU head object (LatentHead<float> or MultiLayerHead<float>).
template <class Head>
HeadDims head_dims(const Head& h) {
  HeadDims k;
  const auto& c = h.config();
  k.d = c.d;
  k.n_latents = c.n_latents;
  k.heads = c.heads;
  k.head_dim = c.head_dim;
  if constexpr (std::is_same_v<Head, pooling::LatentHead<float>>) {
    k.kind = HeadKind::latent;
    k.mult = c.mlp_mult;
  } else {
    static_assert(std::is_same_v<Head, pooling::MultiLayerHead<float>>,
                  "cuda heads: LatentHead<float> or MultiLayerHead<float>");
    k.kind = HeadKind::multi_layer;
    k.input = c.input;
    k.mult = c.ff_mult;
    k.n_layers = c.n_layers;
    k.layer_embedding = c.layer_embedding();
  }
  return k;
}

/// Arena offsets of every parameter of a head (the names are the CPU heads' own; pos = -1 when
/// the head has no layer embedding).
struct HeadSlots {
  std::int64_t lat = -1, pos = -1;
  std::int64_t n_w = -1, n_b = -1, nc_w = -1, nc_b = -1;  ///< cross_attend_blocks.0 norms
  std::int64_t wq = -1, wkv = -1, wo = -1;                ///< to_q, to_kv, to_out
  std::int64_t f_w = -1, f_b = -1;                        ///< cross_attend_blocks.1.norm
  std::int64_t w1 = -1, b1 = -1, w2 = -1, b2 = -1;        ///< fn.net.0, fn.net.2

  /// Looks every name up in the plan; config_error naming a missing one.
  static HeadSlots from(const ParamPlan& plan, bool with_pos) {
    auto at = [&](const std::string& name) -> std::int64_t {
      for (const ParamSlot& s : plan.slots)
        if (s.name == name) return s.offset;
      throw config_error("cuda head: the head has no parameter '" + name + "'");
    };
    HeadSlots s;
    const std::string b0 = "cross_attend_blocks.0.", b1 = "cross_attend_blocks.1.";
    s.lat = at("latents");
    if (with_pos) s.pos = at("pos_emb.weight");
    s.n_w = at(b0 + "norm.weight");
    s.n_b = at(b0 + "norm.bias");
    s.nc_w = at(b0 + "norm_context.weight");
    s.nc_b = at(b0 + "norm_context.bias");
    s.wq = at(b0 + "fn.to_q.weight");
    s.wkv = at(b0 + "fn.to_kv.weight");
    s.wo = at(b0 + "fn.to_out.weight");
    s.f_w = at(b1 + "norm.weight");
    s.f_b = at(b1 + "norm.bias");
    s.w1 = at(b1 + "fn.net.0.weight");
    s.b1 = at(b1 + "fn.net.0.bias");
    s.w2 = at(b1 + "fn.net.2.weight");
    s.b2 = at(b1 + "fn.net.2.bias");
    return s;
  }
};

/// One chunk of texts as the compositions consume it: `rows` [n_rows, d] in executor memory
/// (the states the head reads: per text its L layer vectors, or its pooled tokens) and per text
/// its rows [offsets[s], offsets[s+1]) (host vector, n_seq + 1 entries).
struct ChunkInput {
  const float* rows = nullptr;
  std::int64_t n_rows = 0;
  std::vector<std::int64_t> offsets;
  std::int64_t n_seq() const { return std::int64_t(offsets.size()) - 1; }
};

/// Activations and scratch of one chunk, in executor memory; reused across chunks (buffers only
/// grow), so a training step allocates nothing after its first chunk.
template <class Ops>
struct HeadContext {
  template <class T>
  using Buf = typename Ops::template Buf<T>;
  // sizes of the chunk this context holds
  std::int64_t n = 0, R = 0;
  std::vector<std::int64_t> off, qoff;  ///< host: input row offsets; latent-row offsets
  bool uniform = true;                  ///< every text has the same number of input rows
  Buf<std::int64_t> d_off, d_qoff;      ///< the same offsets in executor memory
  // forward activations
  Buf<float> x, x_mean, x_rstd, xn;     ///< input rows (+ layer embedding), their LayerNorm
  Buf<float> lnc, lnc_mean, lnc_rstd;   ///< LayerNorm of the latents
  Buf<float> q, kv, p, o;               ///< attention: projections, probabilities, head outputs
  Buf<float> x1, x1_mean, x1_rstd, n2;  ///< after the attention block; its LayerNorm
  Buf<float> f1, g, gbar;               ///< MLP pre-activation, activation, per-text mean
  // backward scratch
  Buf<float> dgbar, dg, df1, dn2, dx1, tmp, d_o, dp, dq_seg, dq, dkv, dlnc, dxn, dx;
};

namespace detail {

/// Cross-attention with shared query rows xq [Rq, d_q] (every segment's queries) and keys /
/// values from xc rows [koff[s], koff[s+1]) per segment s; output [n_seg * Rq, d_out].
/// Weights Wq [inner, d], Wkv [2 inner, d], Wo [d, inner]. The probabilities of (s, h) are the
/// block p + Rq * heads * koff[s] + h * Rq * nk_s, [Rq, nk_s].
template <class Ops>
struct Attention {
  Ops& ops;
  std::int64_t d, heads, hd;
  std::int64_t inner() const { return heads * hd; }

  void forward(const float* xq, std::int64_t Rq, const float* xc, std::int64_t Rc,
               const std::vector<std::int64_t>& koff, bool uniform, const float* Wq,
               const float* Wkv, const float* Wo, HeadContext<Ops>& c, float* y) {
    const std::int64_t in = inner(), n = std::int64_t(koff.size()) - 1;
    const float scale = 1.0f / std::sqrt(float(hd));
    c.q.reserve(std::size_t(Rq * in));
    c.kv.reserve(std::size_t(Rc * 2 * in));
    c.p.reserve(std::size_t(Rq * heads * Rc));
    c.o.reserve(std::size_t(n * Rq * in));
    float *q = c.q.data(), *kv = c.kv.data(), *p = c.p.data(), *o = c.o.data();
    ops.gemm(false, true, Rq, in, d, 1.0f, xq, d, 0, Wq, d, 0, 0.0f, q, in, 0);
    ops.gemm(false, true, Rc, 2 * in, d, 1.0f, xc, d, 0, Wkv, d, 0, 0.0f, kv, 2 * in, 0);
    if (uniform) {  // every segment has L keys: per head, one GEMM batched over the segments
      const std::int64_t L = koff[1] - koff[0];
      for (std::int64_t h = 0; h < heads; ++h)
        ops.gemm(false, true, Rq, L, hd, 1.0f, q + h * hd, in, 0, kv + h * hd, 2 * in, L * 2 * in,
                 0.0f, p + h * Rq * L, L, heads * Rq * L, n);
      ops.softmax_fwd(p, n * heads * Rq, L, scale);
      for (std::int64_t h = 0; h < heads; ++h)
        ops.gemm(false, false, Rq, hd, L, 1.0f, p + h * Rq * L, L, heads * Rq * L, kv + in + h * hd,
                 2 * in, L * 2 * in, 0.0f, o + h * hd, in, Rq * in, n);
    } else {  // per segment, one GEMM batched over the heads
      for (std::int64_t s = 0; s < n; ++s) {
        const std::int64_t nk = koff[s + 1] - koff[s];
        float* ps = p + Rq * heads * koff[s];
        const float* ks = kv + koff[s] * 2 * in;
        ops.gemm(false, true, Rq, nk, hd, 1.0f, q, in, hd, ks, 2 * in, hd, 0.0f, ps, nk, Rq * nk,
                 heads);
        ops.softmax_fwd(ps, heads * Rq, nk, scale);
        ops.gemm(false, false, Rq, hd, nk, 1.0f, ps, nk, Rq * nk, ks + in, 2 * in, hd, 0.0f,
                 o + s * Rq * in, in, hd, heads);
      }
    }
    ops.gemm(false, true, n * Rq, d, in, 1.0f, o, in, 0, Wo, in, 0, 0.0f, y, d, 0);
  }

  /// dy [n_seg * Rq, d] -> accumulates dWq, dWkv, dWo; writes dxq [Rq, d] and dxc [Rc, d].
  void backward(const float* xq, std::int64_t Rq, const float* xc, std::int64_t Rc,
                const std::vector<std::int64_t>& koff, bool uniform, const float* Wq,
                const float* Wkv, const float* Wo, float* dWq, float* dWkv, float* dWo,
                const float* dy, HeadContext<Ops>& c, float* dxq, float* dxc) {
    const std::int64_t in = inner(), n = std::int64_t(koff.size()) - 1;
    const float scale = 1.0f / std::sqrt(float(hd));
    c.d_o.reserve(std::size_t(n * Rq * in));
    c.dp.reserve(std::size_t(Rq * heads * Rc));
    c.dkv.reserve(std::size_t(Rc * 2 * in));
    c.dq_seg.reserve(std::size_t(n * Rq * in));
    const float *q = c.q.data(), *kv = c.kv.data(), *p = c.p.data(), *o = c.o.data();
    float *d_o = c.d_o.data(), *dp = c.dp.data(), *dkv = c.dkv.data(), *dqs = c.dq_seg.data();
    // to_out: dWo += dy^T o, d_o = dy Wo
    ops.gemm(true, false, d, in, n * Rq, 1.0f, dy, d, 0, o, in, 0, 1.0f, dWo, in, 0);
    ops.gemm(false, false, n * Rq, in, d, 1.0f, dy, d, 0, Wo, in, 0, 0.0f, d_o, in, 0);
    if (uniform) {
      const std::int64_t L = koff[1] - koff[0];
      for (std::int64_t h = 0; h < heads; ++h) {
        const std::int64_t ph = h * Rq * L, sp = heads * Rq * L;
        // dP = dO V^T; dV = P^T dO
        ops.gemm(false, true, Rq, L, hd, 1.0f, d_o + h * hd, in, Rq * in, kv + in + h * hd, 2 * in,
                 L * 2 * in, 0.0f, dp + ph, L, sp, n);
        ops.gemm(true, false, L, hd, Rq, 1.0f, p + ph, L, sp, d_o + h * hd, in, Rq * in, 0.0f,
                 dkv + in + h * hd, 2 * in, L * 2 * in, n);
      }
      ops.softmax_bwd(p, dp, n * heads * Rq, L, scale);
      for (std::int64_t h = 0; h < heads; ++h) {
        const std::int64_t ph = h * Rq * L, sp = heads * Rq * L;
        // dQ (per segment) = dS K; dK = dS^T Q
        ops.gemm(false, false, Rq, hd, L, 1.0f, dp + ph, L, sp, kv + h * hd, 2 * in, L * 2 * in,
                 0.0f, dqs + h * hd, in, Rq * in, n);
        ops.gemm(true, false, L, hd, Rq, 1.0f, dp + ph, L, sp, q + h * hd, in, 0, 0.0f,
                 dkv + h * hd, 2 * in, L * 2 * in, n);
      }
    } else {
      for (std::int64_t s = 0; s < n; ++s) {
        const std::int64_t nk = koff[s + 1] - koff[s];
        const float* ps = p + Rq * heads * koff[s];
        float* dps = dp + Rq * heads * koff[s];
        const float* ks = kv + koff[s] * 2 * in;
        float* dks = dkv + koff[s] * 2 * in;
        const float* dos = d_o + s * Rq * in;
        ops.gemm(false, true, Rq, nk, hd, 1.0f, dos, in, hd, ks + in, 2 * in, hd, 0.0f, dps, nk,
                 Rq * nk, heads);
        ops.gemm(true, false, nk, hd, Rq, 1.0f, ps, nk, Rq * nk, dos, in, hd, 0.0f, dks + in,
                 2 * in, hd, heads);
        ops.softmax_bwd(ps, dps, heads * Rq, nk, scale);
        ops.gemm(false, false, Rq, hd, nk, 1.0f, dps, nk, Rq * nk, ks, 2 * in, hd, 0.0f,
                 dqs + s * Rq * in, in, hd, heads);
        ops.gemm(true, false, nk, hd, Rq, 1.0f, dps, nk, Rq * nk, q, in, hd, 0.0f, dks, 2 * in, hd,
                 heads);
      }
    }
    // The queries are shared: their gradient is the sum over the segments.
    const float* dq = dqs;
    if (n > 1) {
      c.dq.reserve(std::size_t(Rq * in));
      ops.colsum(dqs, n, Rq * in, c.dq.data(), 0.0f);
      dq = c.dq.data();
    }
    ops.gemm(true, false, in, d, Rq, 1.0f, dq, in, 0, xq, d, 0, 1.0f, dWq, d, 0);
    ops.gemm(false, false, Rq, d, in, 1.0f, dq, in, 0, Wq, d, 0, 0.0f, dxq, d, 0);
    ops.gemm(true, false, 2 * in, d, Rc, 1.0f, dkv, 2 * in, 0, xc, d, 0, 1.0f, dWkv, d, 0);
    ops.gemm(false, false, Rc, d, 2 * in, 1.0f, dkv, 2 * in, 0, Wkv, d, 0, 0.0f, dxc, d, 0);
  }
};

}  // namespace detail

/// A pooling head's forward and backward over an ops executor, with the parameters in the
/// executor's memory (see the file comment). `Head` is pooling::LatentHead<float> or
/// pooling::MultiLayerHead<float>: the CPU object the parameters come from and go back to.
template <class Head, class Ops>
class ExecHead {
 public:
  template <class T>
  using Buf = typename Ops::template Buf<T>;
  using Context = HeadContext<Ops>;

  /// Plans the arenas from head.parameters() and uploads the values (gradients zeroed).
  ExecHead(Ops& ops, Head& head)
      : ops_(ops), dims_(head_dims(head)), capture_(head.capture()), name_(head.name()) {
    std::vector<ParamSlot> slots;
    for (const nn::Param<float>* p : head.parameters())
      slots.push_back(ParamSlot{p->name, p->numel(), p->decay, 0});
    plan_ = plan_params(std::move(slots));
    slots_ = HeadSlots::from(plan_, dims_.layer_embedding);
    values_.reserve(std::size_t(std::max<std::int64_t>(plan_.n, 1)));
    grads_.reserve(std::size_t(std::max<std::int64_t>(plan_.n, 1)));
    upload_from(head);
    zero_grad();
  }

  const HeadDims& dims() const { return dims_; }
  const ParamPlan& plan() const { return plan_; }
  Ops& ops() { return ops_; }
  float* values() { return values_.data(); }
  float* grads() { return grads_.data(); }

  /// Copies the CPU head's parameter values into the arena.
  void upload_from(Head& head) {
    auto ps = head.parameters();
    for (std::size_t k = 0; k < ps.size(); ++k)
      ops_.upload(values_.data() + plan_.slots[k].offset, ps[k]->value.data(),
                  std::size_t(ps[k]->numel()));
  }
  /// Copies the arena's values into the CPU head (then head.save() writes the usual file).
  void download_to(Head& head) {
    auto ps = head.parameters();
    for (std::size_t k = 0; k < ps.size(); ++k)
      ops_.download(ps[k]->value.data(), values_.data() + plan_.slots[k].offset,
                    std::size_t(ps[k]->numel()));
    ops_.sync();
  }
  /// Copies the arena's gradients into the CPU head's grad members (tests).
  void download_grads_to(Head& head) {
    auto ps = head.parameters();
    for (std::size_t k = 0; k < ps.size(); ++k)
      ops_.download(ps[k]->grad.data(), grads_.data() + plan_.slots[k].offset,
                    std::size_t(ps[k]->numel()));
    ops_.sync();
  }
  /// Zeroes every gradient.
  void zero_grad() { ops_.zero(grads_.data(), plan_.n); }

  /// Rows per text for the uniform inputs (multi_layer's L layer vectors, or 1).
  std::int64_t rows_per_text() const {
    if (dims_.kind == HeadKind::latent || dims_.input == pooling::MultiLayerInput::all_tokens)
      return 0;  // variable
    return dims_.layer_embedding ? dims_.n_layers : 1;
  }

  /// Forward of one chunk: y [n_seq, d] (executor memory), keeping what backward needs in c.
  void forward(const ChunkInput& in, Context& c, float* y) {
    const std::int64_t n = in.n_seq(), R = in.n_rows, d = dims_.d;
    if (n <= 0 || R <= 0 || in.offsets.front() != 0 || in.offsets.back() != R)
      throw shape_error("cuda head forward: " + std::to_string(n) + " texts over " +
                        std::to_string(R) + " rows with offsets that do not cover them");
    c.n = n;
    c.R = R;
    c.off = in.offsets;
    c.uniform = true;
    for (std::int64_t s = 0; s < n; ++s) {
      if (c.off[s + 1] <= c.off[s]) throw input_error("cuda head forward: text without rows");
      if (c.off[s + 1] - c.off[s] != c.off[1] - c.off[0]) c.uniform = false;
    }
    c.d_off.reserve(std::size_t(n + 1));
    ops_.upload(c.d_off.data(), c.off.data(), std::size_t(n + 1));
    c.x.reserve(std::size_t(R * d));
    c.xn.reserve(std::size_t(R * d));
    c.x_mean.reserve(std::size_t(R));
    c.x_rstd.reserve(std::size_t(R));
    const float* P = values_.data();
    const std::int64_t nl = dims_.n_latents;
    c.lnc.reserve(std::size_t(nl * d));
    c.lnc_mean.reserve(std::size_t(nl));
    c.lnc_rstd.reserve(std::size_t(nl));
    ops_.layernorm_fwd(P + slots_.lat, P + slots_.nc_w, P + slots_.nc_b, c.lnc.data(),
                       c.lnc_mean.data(), c.lnc_rstd.data(), nl, d, head_ln_eps);
    if (dims_.layer_embedding) {
      const std::int64_t L = dims_.n_layers;
      if (!c.uniform || c.off[1] != L)
        throw shape_error("cuda multi_layer head: every text needs " + std::to_string(L) +
                          " layer rows");
      ops_.copy(c.x.data(), in.rows, R * d);
      ops_.add_tiled(c.x.data(), nullptr, P + slots_.pos, n, L * d);
    } else {
      ops_.copy(c.x.data(), in.rows, R * d);
    }
    ops_.layernorm_fwd(c.x.data(), P + slots_.n_w, P + slots_.n_b, c.xn.data(), c.x_mean.data(),
                       c.x_rstd.data(), R, d, head_ln_eps);
    detail::Attention<Ops> att{ops_, d, dims_.heads, dims_.head_dim};
    if (dims_.kind == HeadKind::multi_layer)
      forward_multi_layer(c, att, y);
    else
      forward_latent(c, att, y);
  }

  /// Backward of the chunk in c: accumulates the parameter gradients for d_out [n_seq, d];
  /// writes dLoss/d(input rows) [n_rows, d] to d_in when non-null (training does not need it).
  void backward(const float* d_out, Context& c, float* d_in) {
    detail::Attention<Ops> att{ops_, dims_.d, dims_.heads, dims_.head_dim};
    if (dims_.kind == HeadKind::multi_layer)
      backward_multi_layer(d_out, c, att, d_in);
    else
      backward_latent(d_out, c, att, d_in);
  }

  // ---- host-side conveniences (tests, inference): a CapturedT in, matrices out.

  /// The rows and offsets the head reads from `in` (pooled tokens gathered, as the CPU head);
  /// `src` receives each row's index in in.states (for scattering d_in back).
  ChunkInput prepare(const CapturedT<float>& in, Matrix& rows, std::vector<std::int64_t>& src) {
    pooling::detail::check_input(in, capture_, dims_.d, name_.c_str());
    ChunkInput ci;
    const std::int64_t per = rows_per_text();
    if (per == 0) {
      pooling::detail::gather_pooled_tokens(in, rows, ci.offsets, src, "cuda head");
    } else {
      if (in.n_layers != per || in.states.rows() != in.n_seq * per)
        throw shape_error("cuda head: input has " + std::to_string(in.n_layers) +
                          " layers per text, the head was built for " + std::to_string(per));
      rows = in.states;
      src.clear();
      for (std::int64_t s = 0; s <= in.n_seq; ++s) ci.offsets.push_back(s * per);
    }
    ci.n_rows = rows.rows();
    return ci;
  }

  /// Forward of a whole capture (uploads it; host matrix out). `c` keeps the activations.
  Matrix forward(const CapturedT<float>& in, Context& c) {
    Matrix rows;
    ChunkInput ci = prepare(in, rows, src_);
    in_rows_ = in.states.rows();
    input_.reserve(std::size_t(rows.size()));
    ops_.upload(input_.data(), rows.data(), std::size_t(rows.size()));
    ci.rows = input_.data();
    out_.reserve(std::size_t(ci.n_seq() * dims_.d));
    forward(ci, c, out_.data());
    Matrix y(ci.n_seq(), dims_.d);
    ops_.download(y.data(), out_.data(), std::size_t(y.size()));
    ops_.sync();
    return y;
  }
  /// Backward for the capture of the last host forward: returns dLoss/d(in.states) like the
  /// CPU head (rows it did not read get zeros).
  Matrix backward(const Matrix& d_out, Context& c) {
    if (d_out.rows() != c.n || d_out.cols() != dims_.d)
      throw shape_error("cuda head backward: d_out is [" + std::to_string(d_out.rows()) + ", " +
                        std::to_string(d_out.cols()) + "], the forward gave [" +
                        std::to_string(c.n) + ", " + std::to_string(dims_.d) + "]");
    out_.reserve(std::size_t(d_out.size()));
    ops_.upload(out_.data(), d_out.data(), std::size_t(d_out.size()));
    din_.reserve(std::size_t(c.R * dims_.d));
    backward(out_.data(), c, din_.data());
    Matrix dr(c.R, dims_.d);
    ops_.download(dr.data(), din_.data(), std::size_t(dr.size()));
    ops_.sync();
    if (src_.empty()) return dr;
    Matrix d_in = Matrix::Zero(in_rows_, dims_.d);
    for (std::size_t i = 0; i < src_.size(); ++i) d_in.row(src_[i]) += dr.row(Eigen::Index(i));
    return d_in;
  }

 private:
  void forward_multi_layer(Context& c, detail::Attention<Ops>& att, float* y) {
    const float* P = values_.data();
    const std::int64_t n = c.n, R = c.R, d = dims_.d, nl = dims_.n_latents;
    const std::int64_t rows = n * nl, f1w = dims_.ff1(), fh = dims_.ffh();
    c.x1.reserve(std::size_t(rows * d));
    att.forward(c.lnc.data(), nl, c.xn.data(), R, c.off, c.uniform, P + slots_.wq, P + slots_.wkv,
                P + slots_.wo, c, c.x1.data());
    ops_.add_tiled(c.x1.data(), nullptr, P + slots_.lat, n, nl * d);  // X1 = latents + attn
    c.qoff.resize(std::size_t(n + 1));
    for (std::int64_t s = 0; s <= n; ++s) c.qoff[std::size_t(s)] = s * nl;
    c.d_qoff.reserve(std::size_t(n + 1));
    ops_.upload(c.d_qoff.data(), c.qoff.data(), std::size_t(n + 1));
    mlp_forward(c, rows, f1w, fh, c.d_qoff.data(), y);
    (void)R;
  }

  void forward_latent(Context& c, detail::Attention<Ops>& att, float* y) {
    const float* P = values_.data();
    const std::int64_t R = c.R, d = dims_.d, nl = dims_.n_latents;
    const std::vector<std::int64_t> koff{0, nl};
    c.x1.reserve(std::size_t(R * d));
    att.forward(c.xn.data(), R, c.lnc.data(), nl, koff, true, P + slots_.wq, P + slots_.wkv,
                P + slots_.wo, c, c.x1.data());
    ops_.add(c.x1.data(), c.x.data(), R * d);  // X1 = X + attn
    mlp_forward(c, R, dims_.ff1(), dims_.ffh(), c.d_off.data(), y);
  }

  /// The MLP block over `rows` rows of x1 and the per-text means (offsets `seg`, executor
  /// memory): y = mean(X1) + mean(act(LN(X1) W1^T + b1)) W2^T + b2.
  void mlp_forward(Context& c, std::int64_t rows, std::int64_t f1w, std::int64_t fh,
                   const std::int64_t* seg, float* y) {
    const float* P = values_.data();
    const std::int64_t n = c.n, d = dims_.d;
    c.n2.reserve(std::size_t(rows * d));
    c.x1_mean.reserve(std::size_t(rows));
    c.x1_rstd.reserve(std::size_t(rows));
    c.f1.reserve(std::size_t(rows * f1w));
    c.g.reserve(std::size_t(rows * fh));
    c.gbar.reserve(std::size_t(n * fh));
    ops_.layernorm_fwd(c.x1.data(), P + slots_.f_w, P + slots_.f_b, c.n2.data(), c.x1_mean.data(),
                       c.x1_rstd.data(), rows, d, head_ln_eps);
    ops_.gemm(false, true, rows, f1w, d, 1.0f, c.n2.data(), d, 0, P + slots_.w1, d, 0, 0.0f,
              c.f1.data(), f1w, 0);
    ops_.add_tiled(c.f1.data(), nullptr, P + slots_.b1, rows, f1w);
    if (dims_.kind == HeadKind::latent)
      ops_.gelu_fwd(c.f1.data(), c.g.data(), rows * fh);
    else
      ops_.geglu_fwd(c.f1.data(), c.g.data(), rows, fh);
    ops_.segment_mean_fwd(c.g.data(), seg, n, fh, c.gbar.data(), 0.0f);
    ops_.segment_mean_fwd(c.x1.data(), seg, n, d, y, 0.0f);
    ops_.gemm(false, true, n, d, fh, 1.0f, c.gbar.data(), fh, 0, P + slots_.w2, fh, 0, 1.0f, y, d,
              0);
    ops_.add_tiled(y, nullptr, P + slots_.b2, n, d);
  }

  /// Backward of mlp_forward: leaves dLoss/dX1 [rows, d] in c.dx1.
  void mlp_backward(const float* d_out, Context& c, std::int64_t rows, std::int64_t f1w,
                    std::int64_t fh, const std::int64_t* seg) {
    const float* P = values_.data();
    float* G = grads_.data();
    const std::int64_t n = c.n, d = dims_.d;
    c.dgbar.reserve(std::size_t(n * fh));
    c.dg.reserve(std::size_t(rows * fh));
    c.df1.reserve(std::size_t(rows * f1w));
    c.dn2.reserve(std::size_t(rows * d));
    c.dx1.reserve(std::size_t(rows * d));
    c.tmp.reserve(std::size_t(std::max({rows, c.R, dims_.n_latents}) * d));
    // net.2 on the per-text means: dW2 += d_out^T gbar, db2 += sum d_out, dgbar = d_out W2
    ops_.gemm(true, false, d, fh, n, 1.0f, d_out, d, 0, c.gbar.data(), fh, 0, 1.0f, G + slots_.w2,
              fh, 0);
    ops_.colsum(d_out, n, d, G + slots_.b2, 1.0f);
    ops_.gemm(false, false, n, fh, d, 1.0f, d_out, d, 0, P + slots_.w2, fh, 0, 0.0f, c.dgbar.data(),
              fh, 0);
    ops_.segment_mean_bwd(c.dgbar.data(), seg, n, fh, c.dg.data(), 0.0f);
    ops_.segment_mean_bwd(d_out, seg, n, d, c.dx1.data(), 0.0f);
    if (dims_.kind == HeadKind::latent)
      ops_.gelu_bwd(c.f1.data(), c.dg.data(), c.df1.data(), rows * fh);
    else
      ops_.geglu_bwd(c.f1.data(), c.dg.data(), c.df1.data(), rows, fh);
    // net.0: dW1 += df1^T n2, db1 += sum df1, dn2 = df1 W1
    ops_.gemm(true, false, f1w, d, rows, 1.0f, c.df1.data(), f1w, 0, c.n2.data(), d, 0, 1.0f,
              G + slots_.w1, d, 0);
    ops_.colsum(c.df1.data(), rows, f1w, G + slots_.b1, 1.0f);
    ops_.gemm(false, false, rows, d, f1w, 1.0f, c.df1.data(), f1w, 0, P + slots_.w1, d, 0, 0.0f,
              c.dn2.data(), d, 0);
    ops_.layernorm_bwd(c.dn2.data(), c.x1.data(), c.x1_mean.data(), c.x1_rstd.data(),
                       P + slots_.f_w, rows, d, c.dx1.data(), 1.0f, G + slots_.f_w, G + slots_.f_b,
                       c.tmp.data());
  }

  void backward_multi_layer(const float* d_out, Context& c, detail::Attention<Ops>& att,
                            float* d_in) {
    const float* P = values_.data();
    float* G = grads_.data();
    const std::int64_t n = c.n, R = c.R, d = dims_.d, nl = dims_.n_latents;
    const std::int64_t rows = n * nl;
    mlp_backward(d_out, c, rows, dims_.ff1(), dims_.ffh(), c.d_qoff.data());
    // X1 = latents + attn: the latents get the sum over texts of dX1
    ops_.colsum(c.dx1.data(), n, nl * d, G + slots_.lat, 1.0f);
    c.dlnc.reserve(std::size_t(nl * d));
    c.dxn.reserve(std::size_t(R * d));
    att.backward(c.lnc.data(), nl, c.xn.data(), R, c.off, c.uniform, P + slots_.wq, P + slots_.wkv,
                 P + slots_.wo, G + slots_.wq, G + slots_.wkv, G + slots_.wo, c.dx1.data(), c,
                 c.dlnc.data(), c.dxn.data());
    ops_.layernorm_bwd(c.dlnc.data(), P + slots_.lat, c.lnc_mean.data(), c.lnc_rstd.data(),
                       P + slots_.nc_w, nl, d, G + slots_.lat, 1.0f, G + slots_.nc_w,
                       G + slots_.nc_b, c.tmp.data());
    // LN of the layer rows: its input gradient is needed for the layer embedding or d_in
    float* dh = d_in;
    if (!dh) {
      c.dx.reserve(std::size_t(R * d));
      dh = c.dx.data();
    }
    ops_.layernorm_bwd(c.dxn.data(), c.x.data(), c.x_mean.data(), c.x_rstd.data(), P + slots_.n_w,
                       R, d, dh, 0.0f, G + slots_.n_w, G + slots_.n_b, c.tmp.data());
    if (dims_.layer_embedding) ops_.colsum(dh, n, dims_.n_layers * d, G + slots_.pos, 1.0f);
  }

  void backward_latent(const float* d_out, Context& c, detail::Attention<Ops>& att, float* d_in) {
    const float* P = values_.data();
    float* G = grads_.data();
    const std::int64_t R = c.R, d = dims_.d, nl = dims_.n_latents;
    mlp_backward(d_out, c, R, dims_.ff1(), dims_.ffh(), c.d_off.data());
    const std::vector<std::int64_t> koff{0, nl};
    c.dlnc.reserve(std::size_t(nl * d));
    c.dxn.reserve(std::size_t(R * d));
    att.backward(c.xn.data(), R, c.lnc.data(), nl, koff, true, P + slots_.wq, P + slots_.wkv,
                 P + slots_.wo, G + slots_.wq, G + slots_.wkv, G + slots_.wo, c.dx1.data(), c,
                 c.dxn.data(), c.dlnc.data());
    ops_.layernorm_bwd(c.dlnc.data(), P + slots_.lat, c.lnc_mean.data(), c.lnc_rstd.data(),
                       P + slots_.nc_w, nl, d, G + slots_.lat, 1.0f, G + slots_.nc_w,
                       G + slots_.nc_b, c.tmp.data());
    if (d_in) {  // X1 = X + attn(LN(X)): dX = dX1 + LN'(dXn)
      ops_.copy(d_in, c.dx1.data(), R * d);
      ops_.layernorm_bwd(c.dxn.data(), c.x.data(), c.x_mean.data(), c.x_rstd.data(), P + slots_.n_w,
                         R, d, d_in, 1.0f, G + slots_.n_w, G + slots_.n_b, c.tmp.data());
    } else {  // the norm's parameters still need their gradients
      c.dx.reserve(std::size_t(R * d));
      ops_.layernorm_bwd(c.dxn.data(), c.x.data(), c.x_mean.data(), c.x_rstd.data(), P + slots_.n_w,
                         R, d, c.dx.data(), 0.0f, G + slots_.n_w, G + slots_.n_b, c.tmp.data());
    }
  }

  Ops& ops_;
  HeadDims dims_;
  CaptureSpec capture_;  ///< what the head consumes (checked by the host-side API)
  std::string name_;
  ParamPlan plan_;
  HeadSlots slots_;
  Buf<float> values_, grads_;
  // host-side convenience API state
  Buf<float> input_, out_, din_;
  std::vector<std::int64_t> src_;
  std::int64_t in_rows_ = 0;
};

}  // namespace lmembed::cuda
