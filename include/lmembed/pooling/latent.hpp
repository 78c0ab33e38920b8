// lmembed/pooling/latent.hpp - NV-Embed's latent attention pooling (arXiv 2405.17428).
//
// Every pooled token of the last layer is a query; a trainable latent array gives the keys and
// values; then a 2-layer GELU MLP with a residual, and a masked mean over the tokens:
//
//   X  = last-layer token states [pool_from, end) of each text      [T, d]
//   X1 = X + CrossAttn(q = LN(X), k, v = LN_c(latents))               (cross_attend_blocks.0)
//   X2 = X1 + MLP(LN_m(X1)),  MLP = Linear(d, m d) -> GELU -> Linear(m d, d)  (blocks.1)
//   y  = mean of X2 over each text's pooled tokens                   -> [n_seq, d]
//
// Parameter names (shapes, PyTorch [out, in] layout; inner = heads * head_dim):
//   latents                                 [r, d]
//   cross_attend_blocks.0.norm.{weight,bias}          [d]   LayerNorm of the token states
//   cross_attend_blocks.0.norm_context.{weight,bias}  [d]   LayerNorm of the latents
//   cross_attend_blocks.0.fn.to_q.weight    [inner, d]      applied to the tokens
//   cross_attend_blocks.0.fn.to_kv.weight   [2 inner, d]    applied to the latents (k then v)
//   cross_attend_blocks.0.fn.to_out.weight  [d, inner]      output projection
//   cross_attend_blocks.1.norm.{weight,bias}          [d]
//   cross_attend_blocks.1.fn.net.0.{weight,bias}      [m d, d], [m d]
//   cross_attend_blocks.1.fn.net.2.{weight,bias}      [d, m d], [d]
// These follow NV-Embed's released LatentAttentionModel (its pre-norms, its to_q/to_kv/to_out),
// with the plain GELU MLP the paper describes instead of the release's GEGLU.
// Tokens do not attend to each other, so each token is independent until the mean: the head
// computes only the pooled tokens. The output is NOT L2-normalized.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/nn/activation.hpp"
#include "lmembed/nn/attention.hpp"
#include "lmembed/nn/init.hpp"
#include "lmembed/nn/layernorm.hpp"
#include "lmembed/nn/linear.hpp"
#include "lmembed/nn/reduce.hpp"
#include "lmembed/pooling/common.hpp"
#include "lmembed/pooling/head_io.hpp"
#include "lmembed/pooling/policy.hpp"

namespace lmembed::pooling {

/// The latent head on scalar T (float, or double for gradient checks).
template <class T>
class LatentHead {
 public:
  /// Sizes; `defaults(d)` is NV-Embed's r = 512 latents and 8 heads, with heads of ceil(d/8)
  /// (inner = d) and an MLP of 4 d, which suits d from 64 to 4096.
  struct Config {
    std::int64_t d = 0;            ///< width of the hidden states and of the output
    std::int64_t n_latents = 512;  ///< r: rows of the latent array (keys/values)
    std::int64_t heads = 8;        ///< attention heads
    std::int64_t head_dim = 0;     ///< per-head width (0: ceil(d/heads))
    std::int64_t mlp_mult = 4;     ///< MLP hidden width = mlp_mult * d

    static Config defaults(std::int64_t d) {
      Config c;
      c.d = d;
      c.head_dim = (d + c.heads - 1) / c.heads;
      return c;
    }
    /// config_error naming the bad size.
    void validate() const {
      auto bad = [](const std::string& w) { throw config_error("latent head: " + w); };
      if (d <= 0) bad("d must be positive, got " + std::to_string(d));
      if (n_latents <= 0) bad("n_latents must be positive, got " + std::to_string(n_latents));
      if (heads <= 0 || head_dim <= 0)
        bad("heads and head_dim must be positive, got " + std::to_string(heads) + " x " +
            std::to_string(head_dim));
      if (mlp_mult <= 0) bad("mlp_mult must be positive, got " + std::to_string(mlp_mult));
    }
  };

  /// What backward needs from forward.
  struct Context {
    std::int64_t n_seq = 0, in_rows = 0;
    std::vector<std::int64_t> seg, src;  ///< pooled-token offsets per text; source rows
    nn::AttentionLayout layout;
    MatrixX<T> x, xn, ln, x1, n2, h1, gbar;  ///< gbar: per-text mean of GELU(h1)
    typename nn::LayerNorm<T>::Context norm, norm_context, mlp_norm;
    typename nn::CrossAttention<T>::Context attn;
  };

  explicit LatentHead(const Config& c)
      : cfg_(c),
        latents_("latents", {c.n_latents, c.d}),
        norm_("cross_attend_blocks.0.norm", c.d),
        norm_context_("cross_attend_blocks.0.norm_context", c.d),
        attn_("cross_attend_blocks.0.fn", c.d, c.d, c.d, c.heads, c.head_dim),
        mlp_norm_("cross_attend_blocks.1.norm", c.d),
        fc1_("cross_attend_blocks.1.fn.net.0", c.d, c.mlp_mult * c.d, true),
        fc2_("cross_attend_blocks.1.fn.net.2", c.mlp_mult * c.d, c.d, true) {
    c.validate();
  }

  const Config& config() const { return cfg_; }
  const char* name() const { return latent::name; }
  CaptureSpec capture() const { return latent::capture; }
  std::int64_t dim() const { return cfg_.d; }

  /// PyTorch's initialization: latents N(0, 1), LayerNorms 1 / 0, Linears U(+-1/sqrt(in)).
  void init(std::uint64_t seed) {
    nn::Rng rng(seed);
    nn::init_normal(latents_, 1.0, rng);
    norm_.init();
    norm_context_.init();
    attn_.init(rng);
    mlp_norm_.init();
    fc1_.init(rng);
    fc2_.init(rng);
  }

  /// Training forward: [n_seq, d], keeping what backward needs in ctx.
  MatrixX<T> forward(const CapturedT<T>& in, Context& ctx) const {
    detail::check_input(in, capture(), cfg_.d, name());
    ctx.n_seq = in.n_seq;
    ctx.in_rows = in.states.rows();
    detail::gather_pooled_tokens(in, ctx.x, ctx.seg, ctx.src, name());
    ctx.layout = nn::AttentionLayout{};  // one segment; the latent keys are shared
    norm_.forward(ctx.x, ctx.xn, ctx.norm);
    norm_context_.forward(latents_.value, ctx.ln, ctx.norm_context);
    attn_.forward(ctx.xn, ctx.ln, ctx.layout, ctx.x1, ctx.attn);
    ctx.x1 += ctx.x;
    mlp_norm_.forward(ctx.x1, ctx.n2, ctx.mlp_norm);
    fc1_.forward(ctx.n2, ctx.h1);
    MatrixX<T> g;
    nn::gelu_forward(ctx.h1, g);
    // y = mean_t (X1 + G W2^T + b2) = mean_t X1 + (mean_t G) W2^T + b2: the second MLP layer
    // runs on one row per text instead of one per token (exact up to rounding).
    MatrixX<T> y, f2;
    nn::segment_mean_forward(g, ctx.seg, ctx.gbar);
    nn::segment_mean_forward(ctx.x1, ctx.seg, y);
    fc2_.forward(ctx.gbar, f2);
    y += f2;
    return y;
  }
  /// Inference forward.
  MatrixX<T> forward(const CapturedT<T>& in) const {
    Context ctx;
    return forward(in, ctx);
  }

  /// Accumulates parameter gradients; returns dLoss/d(in.states) (zeros for unpooled tokens).
  MatrixX<T> backward(const MatrixX<T>& d_out, const Context& ctx) {
    if (d_out.rows() != ctx.n_seq || d_out.cols() != cfg_.d)
      throw shape_error("latent backward: d_out is [" + std::to_string(d_out.rows()) + ", " +
                        std::to_string(d_out.cols()) + "], the forward gave [" +
                        std::to_string(ctx.n_seq) + ", " + std::to_string(cfg_.d) + "]");
    MatrixX<T> dx2, dgbar, dg, dh1, dn2, dx1, dxn, dln, dlat, dx;
    fc2_.backward(ctx.gbar, d_out, &dgbar);
    nn::segment_mean_backward(dgbar, ctx.seg, ctx.x1.rows(), dg);
    nn::segment_mean_backward(d_out, ctx.seg, ctx.x1.rows(), dx2);
    nn::gelu_backward(ctx.h1, dg, dh1);
    fc1_.backward(ctx.n2, dh1, &dn2);
    mlp_norm_.backward(dn2, ctx.mlp_norm, dx1);
    dx1 += dx2;
    attn_.backward(ctx.xn, ctx.ln, ctx.layout, dx1, ctx.attn, &dxn, &dln);
    norm_context_.backward(dln, ctx.norm_context, dlat);
    latents_.grad += dlat;
    norm_.backward(dxn, ctx.norm, dx);
    dx += dx1;
    MatrixX<T> d_in = MatrixX<T>::Zero(ctx.in_rows, cfg_.d);
    for (std::size_t i = 0; i < ctx.src.size(); ++i)
      d_in.row(ctx.src[i]) += dx.row(static_cast<Eigen::Index>(i));
    return d_in;
  }

  /// Parameters in the documented order.
  nn::ParamList<T> parameters() {
    nn::ParamList<T> p{&latents_};
    for (auto* q : norm_.parameters()) p.push_back(q);
    for (auto* q : norm_context_.parameters()) p.push_back(q);
    for (auto* q : attn_.parameters()) p.push_back(q);
    for (auto* q : mlp_norm_.parameters()) p.push_back(q);
    for (auto* q : fc1_.parameters()) p.push_back(q);
    for (auto* q : fc2_.parameters()) p.push_back(q);
    return p;
  }
  void zero_grad() { nn::zero_grad(parameters()); }

  /// The __metadata__ a head file carries.
  std::map<std::string, std::string> metadata() const {
    return {{"pooling", name()},
            {"d", std::to_string(cfg_.d)},
            {"n_latents", std::to_string(cfg_.n_latents)},
            {"heads", std::to_string(cfg_.heads)},
            {"head_dim", std::to_string(cfg_.head_dim)},
            {"mlp_mult", std::to_string(cfg_.mlp_mult)}};
  }
  /// Writes a safetensors file (atomically) with the documented names and metadata.
  void save(const std::filesystem::path& file) const {
    detail::save_params(const_cast<LatentHead*>(this)->parameters(), metadata(), file);
  }
  /// Reads a head written by save; the metadata must say pooling = latent and agree with the
  /// tensors.
  static LatentHead load(const std::filesystem::path& file) {
    auto f = io::SafetensorsFile::open(file);
    const std::string fs = file.string();
    const auto& m = detail::check_head_file(f, latent::name, fs);
    Config c;
    c.d = detail::meta_int(m, "d", fs);
    c.n_latents = detail::meta_int(m, "n_latents", fs);
    c.heads = detail::meta_int(m, "heads", fs);
    c.head_dim = detail::meta_int(m, "head_dim", fs);
    c.mlp_mult = detail::meta_int(m, "mlp_mult", fs);
    try {
      c.validate();
    } catch (const config_error& e) {
      throw config_error(fs + ": " + e.what());
    }
    LatentHead h(c);
    detail::load_params(f, h.parameters(), fs);
    return h;
  }

 private:
  Config cfg_;
  nn::Param<T> latents_;
  nn::LayerNorm<T> norm_, norm_context_;
  nn::CrossAttention<T> attn_;
  nn::LayerNorm<T> mlp_norm_;
  nn::Linear<T> fc1_, fc2_;
};

}  // namespace lmembed::pooling
