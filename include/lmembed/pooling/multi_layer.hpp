// lmembed/pooling/multi_layer.hpp - the seed paper's multi-layer trainable pooling.
//
// Tang & Yang 2024 (arXiv 2409.02727), the PerceiverResampler of yixuantt/PoolingAndAttn:
//
//   H  = layer vectors [n_seq, L, d] + layer embedding E [L, d]     (pos_emb.weight)
//   X1 = latents + CrossAttn(q = LN_c(latents), k, v = LN(H))        (cross_attend_blocks.0)
//   X2 = X1 + FF(LN_f(X1)),  FF = Linear(d, 2 m d) -> GEGLU -> Linear(m d, d)   (blocks.1)
//   y  = mean over the n_latents rows of X2                          -> [n_seq, d]
//
// The latents are shared queries (projected once per batch, not once per text); each text's
// L vectors are its keys and values. Parameter names are the PyTorch module's state-dict names,
// so a head trained here loads into that module and back (see docs/pooling.md). Note that in
// that module the PreNorm called `norm` normalizes the layer vectors (its x argument) and
// `norm_context` the latents.
//
// Inputs (MultiLayerInput): last token of every layer (default), per-layer token means (model
// 5), all last-layer tokens of the text with no layer embedding (model 4 of the paper's code),
// or L = 1 last-layer EOS (model 2). The output is NOT L2-normalized (the Encoder and the loss
// normalize).
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

/// The multi_layer head (all four input variants), on scalar T (float, or double for checks).
template <class T>
class MultiLayerHead {
 public:
  /// Sizes. `defaults` suits d from 64 to 4096; `paper` is the paper's exact configuration.
  struct Config {
    MultiLayerInput input = MultiLayerInput::last_token;
    std::int64_t d = 0;           ///< width of the backbone's hidden states (and of the output)
    std::int64_t n_layers = 1;    ///< L: rows of the layer embedding (1 when it has none)
    std::int64_t n_latents = 64;  ///< learned query rows; the output is their mean
    std::int64_t heads = 8;       ///< attention heads
    std::int64_t head_dim = 0;    ///< per-head width; inner = heads * head_dim (0: ceil(d/heads))
    std::int64_t ff_mult = 4;     ///< m: the GEGLU feed-forward is d -> 2 m d -> m d -> d

    /// Whether this input variant adds a learned layer embedding (last_token, mean_tokens).
    bool layer_embedding() const {
      return input == MultiLayerInput::last_token || input == MultiLayerInput::mean_tokens;
    }
    /// Our defaults: 64 latents, 8 heads of ceil(d/8) (inner = d, as the backbone's own
    /// attention), FF x4. Cost is linear in n_latents; 64 latents already exceed the L <= 80
    /// keys a text offers, so more buy little rank for their cost. d = 64 gives heads of 8.
    static Config defaults(std::int64_t d, std::int64_t n_layers,
                           MultiLayerInput input = MultiLayerInput::last_token) {
      Config c;
      c.input = input;
      c.d = d;
      c.n_layers = c.layer_embedding() ? n_layers : 1;
      c.head_dim = (d + c.heads - 1) / c.heads;
      return c;
    }
    /// The paper's configuration: 768 latents, 32 heads x 2048, FF x4 (about 1.4e9 parameters
    /// at d = 4096: constructible, but mind the memory).
    static Config paper(std::int64_t d, std::int64_t n_layers,
                        MultiLayerInput input = MultiLayerInput::last_token) {
      Config c = defaults(d, n_layers, input);
      c.n_latents = 768;
      c.heads = 32;
      c.head_dim = 2048;
      return c;
    }
    /// config_error naming the bad size.
    void validate() const {
      auto bad = [](const std::string& w) { throw config_error("multi_layer head: " + w); };
      if (d <= 0) bad("d must be positive, got " + std::to_string(d));
      if (n_layers <= 0) bad("n_layers must be positive, got " + std::to_string(n_layers));
      if (!layer_embedding() && n_layers != 1)
        bad(std::string(policy_name(input)) + " has no layer embedding: n_layers must be 1");
      if (n_latents <= 0) bad("n_latents must be positive, got " + std::to_string(n_latents));
      if (heads <= 0 || head_dim <= 0)
        bad("heads and head_dim must be positive, got " + std::to_string(heads) + " x " +
            std::to_string(head_dim));
      if (ff_mult <= 0) bad("ff_mult must be positive, got " + std::to_string(ff_mult));
    }
  };

  /// What backward needs from forward.
  struct Context {
    std::int64_t n_seq = 0, in_rows = 0;
    nn::AttentionLayout layout;
    std::vector<std::int64_t> src;           ///< all_tokens: rows of in.states that were gathered
    MatrixX<T> h, hn, ln, x1, n2, f1, gbar;  ///< gbar: per-text mean of GEGLU(f1)
    typename nn::LayerNorm<T>::Context norm, norm_context, ff_norm;
    typename nn::CrossAttention<T>::Context attn;
  };

  explicit MultiLayerHead(const Config& c)
      : cfg_(c),
        latents_("latents", {c.n_latents, c.d}),
        pos_emb_(c.layer_embedding() ? nn::Param<T>("pos_emb.weight", {c.n_layers, c.d})
                                     : nn::Param<T>()),
        norm_("cross_attend_blocks.0.norm", c.d),
        norm_context_("cross_attend_blocks.0.norm_context", c.d),
        attn_("cross_attend_blocks.0.fn", c.d, c.d, c.d, c.heads, c.head_dim),
        ff_norm_("cross_attend_blocks.1.norm", c.d),
        ff_in_("cross_attend_blocks.1.fn.net.0", c.d, 2 * c.ff_mult * c.d, true),
        ff_out_("cross_attend_blocks.1.fn.net.2", c.ff_mult * c.d, c.d, true) {
    c.validate();
  }

  const Config& config() const { return cfg_; }
  /// The pooling name this head implements ("multi_layer", "multi_layer_mean", ...).
  const char* name() const { return policy_name(cfg_.input); }
  /// What it consumes.
  CaptureSpec capture() const { return capture_of(cfg_.input); }
  /// Output width.
  std::int64_t dim() const { return cfg_.d; }

  /// PyTorch's initialization: latents and layer embedding N(0, 1) (torch.randn, nn.Embedding),
  /// LayerNorms 1 / 0, Linears U(-1/sqrt(in), 1/sqrt(in)).
  void init(std::uint64_t seed) {
    nn::Rng rng(seed);
    nn::init_normal(latents_, 1.0, rng);
    if (cfg_.layer_embedding()) nn::init_normal(pos_emb_, 1.0, rng);
    norm_.init();
    norm_context_.init();
    attn_.init(rng);
    ff_norm_.init();
    ff_in_.init(rng);
    ff_out_.init(rng);
  }

  /// Training forward: [n_seq, d], keeping what backward needs in ctx.
  MatrixX<T> forward(const CapturedT<T>& in, Context& ctx) const {
    detail::check_input(in, capture(), cfg_.d, name());
    const std::int64_t n = in.n_seq, L = cfg_.n_layers, nl = cfg_.n_latents;
    ctx.n_seq = n;
    ctx.in_rows = in.states.rows();
    ctx.layout = nn::AttentionLayout{};
    ctx.layout.n_segments = n;
    auto& kv = ctx.layout.kv_offsets;
    if (cfg_.input == MultiLayerInput::all_tokens) {
      detail::gather_pooled_tokens(in, ctx.h, kv, ctx.src, name());
    } else {
      const std::int64_t per = cfg_.layer_embedding() ? L : 1;
      if (in.n_layers != per)
        throw shape_error(std::string(name()) + ": input has " + std::to_string(in.n_layers) +
                          " layers per text, the head was built for " + std::to_string(per));
      ctx.h = in.states;
      kv.resize(static_cast<std::size_t>(n + 1));
      for (std::int64_t s = 0; s <= n; ++s) kv[static_cast<std::size_t>(s)] = s * per;
      if (cfg_.layer_embedding())
        for (std::int64_t s = 0; s < n; ++s) ctx.h.middleRows(s * L, L) += pos_emb_.value;
    }
    MatrixX<T> a;
    norm_.forward(ctx.h, ctx.hn, ctx.norm);
    norm_context_.forward(latents_.value, ctx.ln, ctx.norm_context);
    attn_.forward(ctx.ln, ctx.hn, ctx.layout, a, ctx.attn);
    ctx.x1 = std::move(a);
    for (std::int64_t s = 0; s < n; ++s) ctx.x1.middleRows(s * nl, nl) += latents_.value;
    ff_norm_.forward(ctx.x1, ctx.n2, ctx.ff_norm);
    ff_in_.forward(ctx.n2, ctx.f1);
    MatrixX<T> g;
    nn::geglu_forward(ctx.f1, g);
    // y = mean_i (X1 + G W2^T + b2) = mean_i X1 + (mean_i G) W2^T + b2: the output projection
    // runs on one row per text instead of one per latent (exact up to rounding).
    ctx.gbar.resize(n, g.cols());
    MatrixX<T> y(n, cfg_.d);
    for (std::int64_t s = 0; s < n; ++s) {
      ctx.gbar.row(s) = g.middleRows(s * nl, nl).colwise().sum() / static_cast<T>(nl);
      y.row(s) = ctx.x1.middleRows(s * nl, nl).colwise().sum() / static_cast<T>(nl);
    }
    MatrixX<T> f2;
    ff_out_.forward(ctx.gbar, f2);
    y += f2;
    return y;
  }
  /// Inference forward.
  MatrixX<T> forward(const CapturedT<T>& in) const {
    Context ctx;
    return forward(in, ctx);
  }

  /// Accumulates parameter gradients for d_out = dLoss/dy [n_seq, d]; returns dLoss/d(in.states)
  /// (rows the head did not read get zeros).
  MatrixX<T> backward(const MatrixX<T>& d_out, const Context& ctx) {
    const std::int64_t n = ctx.n_seq, nl = cfg_.n_latents, L = cfg_.n_layers;
    if (d_out.rows() != n || d_out.cols() != cfg_.d)
      throw shape_error(std::string(name()) + " backward: d_out is [" +
                        std::to_string(d_out.rows()) + ", " + std::to_string(d_out.cols()) +
                        "], the forward gave [" + std::to_string(n) + ", " +
                        std::to_string(cfg_.d) + "]");
    // Through y = mean_i X1 + gbar W2^T + b2 (see forward): every latent row of text s gets
    // d_out[s] / n_latents, for X1 directly and for G through gbar.
    MatrixX<T> dgbar, df1, dn2, dx1, dln, dhn, dh, dlat;
    ff_out_.backward(ctx.gbar, d_out, &dgbar);
    MatrixX<T> dg(n * nl, dgbar.cols()), dx2(n * nl, cfg_.d);
    for (std::int64_t s = 0; s < n; ++s) {
      dg.middleRows(s * nl, nl).rowwise() = dgbar.row(s) / static_cast<T>(nl);
      dx2.middleRows(s * nl, nl).rowwise() = d_out.row(s) / static_cast<T>(nl);
    }
    nn::geglu_backward(ctx.f1, dg, df1);
    ff_in_.backward(ctx.n2, df1, &dn2);
    ff_norm_.backward(dn2, ctx.ff_norm, dx1);
    dx1 += dx2;
    for (std::int64_t s = 0; s < n; ++s) latents_.grad += dx1.middleRows(s * nl, nl);
    attn_.backward(ctx.ln, ctx.hn, ctx.layout, dx1, ctx.attn, &dln, &dhn);
    norm_context_.backward(dln, ctx.norm_context, dlat);
    latents_.grad += dlat;
    norm_.backward(dhn, ctx.norm, dh);
    if (cfg_.input == MultiLayerInput::all_tokens) {
      MatrixX<T> d_in = MatrixX<T>::Zero(ctx.in_rows, cfg_.d);
      for (std::size_t i = 0; i < ctx.src.size(); ++i)
        d_in.row(ctx.src[i]) += dh.row(static_cast<Eigen::Index>(i));
      return d_in;
    }
    if (cfg_.layer_embedding())
      for (std::int64_t s = 0; s < n; ++s) pos_emb_.grad += dh.middleRows(s * L, L);
    return dh;
  }

  /// Parameters in state-dict order (the layer embedding only when the variant has one).
  nn::ParamList<T> parameters() {
    nn::ParamList<T> p{&latents_};
    if (cfg_.layer_embedding()) p.push_back(&pos_emb_);
    for (auto* q : norm_.parameters()) p.push_back(q);
    for (auto* q : norm_context_.parameters()) p.push_back(q);
    for (auto* q : attn_.parameters()) p.push_back(q);
    for (auto* q : ff_norm_.parameters()) p.push_back(q);
    for (auto* q : ff_in_.parameters()) p.push_back(q);
    for (auto* q : ff_out_.parameters()) p.push_back(q);
    return p;
  }
  void zero_grad() { nn::zero_grad(parameters()); }

  /// The __metadata__ a head file carries.
  std::map<std::string, std::string> metadata() const {
    return {{"pooling", name()},
            {"d", std::to_string(cfg_.d)},
            {"n_layers", std::to_string(cfg_.n_layers)},
            {"n_latents", std::to_string(cfg_.n_latents)},
            {"heads", std::to_string(cfg_.heads)},
            {"head_dim", std::to_string(cfg_.head_dim)},
            {"ff_mult", std::to_string(cfg_.ff_mult)}};
  }
  /// Writes a safetensors file (atomically) with PyTorch state-dict names and metadata.
  void save(const std::filesystem::path& file) const {
    // parameters() is non-const only because it hands out mutable pointers; save reads.
    detail::save_params(const_cast<MultiLayerHead*>(this)->parameters(), metadata(), file);
  }
  /// Reads a head written by save (or by PyTorch with the same metadata). The metadata must
  /// name a multi_layer* pooling and sizes that agree with every tensor.
  static MultiLayerHead load(const std::filesystem::path& file) {
    auto f = io::SafetensorsFile::open(file);
    const std::string fs = file.string();
    auto pit = f.metadata().find("pooling");
    if (pit == f.metadata().end())
      throw config_error(fs + ": __metadata__ has no 'pooling' entry (not an lmembed head)");
    Config c;
    c.input = parse_multi_layer_input(pit->second);
    const auto& m = f.metadata();
    c.d = detail::meta_int(m, "d", fs);
    c.n_layers = detail::meta_int(m, "n_layers", fs);
    c.n_latents = detail::meta_int(m, "n_latents", fs);
    c.heads = detail::meta_int(m, "heads", fs);
    c.head_dim = detail::meta_int(m, "head_dim", fs);
    c.ff_mult = detail::meta_int(m, "ff_mult", fs);
    try {
      c.validate();
    } catch (const config_error& e) {
      throw config_error(fs + ": " + e.what());
    }
    MultiLayerHead h(c);
    detail::load_params(f, h.parameters(), fs);
    return h;
  }
  /// load, then checks the file holds the pooling `expected` (config_error otherwise).
  static MultiLayerHead load(const std::filesystem::path& file, MultiLayerInput expected) {
    MultiLayerHead h = load(file);
    if (h.cfg_.input != expected)
      throw config_error(file.string() + ": a '" + h.name() + "' head, expected '" +
                         policy_name(expected) + "'");
    return h;
  }

 private:
  Config cfg_;
  nn::Param<T> latents_, pos_emb_;
  nn::LayerNorm<T> norm_, norm_context_;
  nn::CrossAttention<T> attn_;
  nn::LayerNorm<T> ff_norm_;
  nn::Linear<T> ff_in_, ff_out_;
};

}  // namespace lmembed::pooling
