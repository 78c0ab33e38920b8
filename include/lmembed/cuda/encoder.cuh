// lmembed/cuda/encoder.cuh - Encoder<Attention, Pooling, backend::cuda>: the same encoder with
// the backbone on the GPU.
//
//   #include "lmembed/cuda/encoder.cuh"   // in a .cu file; link lmembed::cuda
//   using Enc = lmembed::Encoder<lmembed::attention::bidirectional, lmembed::pooling::mean,
//                                lmembed::backend::cuda>;
//   auto enc = Enc::load("qwen2-0.5b.gguf");
//   lmembed::Matrix e = enc.encode(texts);   // same rows as the CPU encoder, within 1e-4
//
// Tokenization, batching, the EOS check, pooling and normalization are the CPU Encoder's own
// (detail::tokenize_texts, check_eos, the pooling functions and heads); only the backbone
// forward runs on the device (cuda::DeviceBackbone). The pooling heads still run on the host
// over the captured states: they are small next to the backbone, and their device kernels are
// issue 10's. backbone() has no CPU Backbone to return and throws config_error; use
// device_backbone().
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "lmembed/cuda/backbone.cuh"
#include "lmembed/encoder.hpp"

namespace lmembed {

/// The CUDA-backend encoder (partial specialization of Encoder; see the file comment).
template <class Attention, class Pooling>
class Encoder<Attention, Pooling, backend::cuda> final : public EncoderBase {
  static_assert(detail::is_attention_v<Attention>,
                "Encoder<Attention, ...>: Attention must be lmembed::attention::causal or "
                "lmembed::attention::bidirectional");
  static_assert(pooling::Policy<Pooling>,
                "Encoder<..., Pooling, ...>: Pooling must be a pooling policy tag");
  static_assert(!(Pooling::capture.layers == CaptureLayers::all &&
                  Pooling::capture.tokens == CaptureTokens::all),
                "Encoder: a pooling that consumes every token of every layer is not supported");

 public:
  using attention_type = Attention;
  using pooling_type = Pooling;
  using backend_type = backend::cuda;
  /// The head type (trainable poolings), else std::monostate.
  using Head = typename detail::HeadOf<Pooling>::type;

  /// A parameter-free pooling (eos, mean).
  Encoder(cuda::DeviceBackbone backbone, Tokenizer tokenizer,
          EncoderOptions options = {}) requires(!Pooling::trainable)
      : backbone_(std::move(backbone)), tokenizer_(std::move(tokenizer)), opt_(options) {}
  /// A trainable pooling with its head; config_error when the head does not fit the backbone.
  Encoder(cuda::DeviceBackbone backbone, Tokenizer tokenizer, Head head,
          EncoderOptions options = {}) requires(Pooling::trainable)
      : backbone_(std::move(backbone)),
        tokenizer_(std::move(tokenizer)),
        head_(std::move(head)),
        opt_(options) {
    const auto& c = backbone_.config();
    if (head_.dim() != c.d_model)
      throw config_error(std::string(Pooling::name) + " head has width " +
                         std::to_string(head_.dim()) + ", the model has d_model " +
                         std::to_string(c.d_model));
    if constexpr (Pooling::capture.layers == CaptureLayers::all) {
      if (head_.config().n_layers != c.n_layers)
        throw config_error(std::string(Pooling::name) + " head was built for " +
                           std::to_string(head_.config().n_layers) + " layers, the model has " +
                           std::to_string(c.n_layers));
    }
  }

  /// Loads the model onto the device, its tokenizer, and the head file of trainable poolings.
  static Encoder load(const std::filesystem::path& model,
                      const std::filesystem::path& head_file = {}, EncoderOptions options = {},
                      const cuda::DeviceOptions& device = {}) {
    Tokenizer t = Tokenizer::load(model);
    if constexpr (Pooling::trainable) {
      if (head_file.empty())
        throw config_error(std::string("pooling '") + Pooling::name +
                           "' is trainable: give its head file (--head FILE.safetensors)");
      Head h = Encoder<Attention, Pooling>::load_head(head_file);
      return Encoder(cuda::DeviceBackbone::load(model, device), std::move(t), std::move(h),
                     options);
    } else {
      if (!head_file.empty())
        throw config_error(std::string("pooling '") + Pooling::name +
                           "' has no parameters: drop the head file " + head_file.string());
      return Encoder(cuda::DeviceBackbone::load(model, device), std::move(t), options);
    }
  }

  Matrix encode(std::span<const std::string> texts) override { return encode(texts, {}); }

  Matrix encode(std::span<const std::string> texts, std::string_view instruction) override {
    Matrix out(static_cast<Eigen::Index>(texts.size()), dim());
    std::size_t i = 0;
    while (i < texts.size()) {
      std::size_t j = i;
      TokenBatch batch;
      std::int64_t tokens = 0;
      while (j < texts.size() && (j == i || tokens < opt_.batch_tokens)) {
        TokenBatch one = detail::tokenize_texts(tokenizer_, texts.subspan(j, 1), instruction, opt_,
                                                Pooling::capture);
        tokens += one.n_tokens();
        batch.add(one.sequence(0), one.pool_start(0));
        ++j;
      }
      out.middleRows(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j - i)) =
          encode(batch);
      i = j;
      if (opt_.progress)
        std::cerr << "\rlmembed: encoded " << i << " / " << texts.size() << " texts (cuda)"
                  << (i == texts.size() ? "\n" : "") << std::flush;
    }
    return out;
  }

  Matrix encode(const TokenBatch& batch) override {
    if (batch.size() == 0) return Matrix(0, dim());
    if constexpr (detail::reads_last_token(Pooling::capture))
      detail::check_eos(batch, tokenizer_.eos_id(), opt_);
    ForwardOptions fo;
    fo.truncate = opt_.truncate;
    const Captured cap = backbone_.template forward<Attention>(batch, Pooling::capture, fo);
    Matrix y = pool(cap);
    if (opt_.normalize) nn::l2_normalize_rows(y);
    return y;
  }

  /// The pooled (unnormalized) vectors of captured states (on the host).
  Matrix pool(const Captured& cap) const {
    if constexpr (std::is_same_v<Pooling, pooling::eos>)
      return pooling::eos_forward(cap);
    else if constexpr (std::is_same_v<Pooling, pooling::mean>)
      return pooling::mean_forward(cap);
    else
      return head_.forward(cap);
  }

  std::int64_t dim() const override { return backbone_.config().d_model; }
  const char* attention_name() const override { return Attention::name; }
  const char* pooling_name() const override { return Pooling::name; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }
  /// Throws config_error: this encoder's backbone lives on the device (device_backbone()).
  const Backbone& backbone() const override {
    throw config_error(
        "Encoder<..., backend::cuda> keeps its backbone on the GPU: use device_backbone()");
  }
  EncoderOptions& options() override { return opt_; }
  /// The device backbone.
  cuda::DeviceBackbone& device_backbone() { return backbone_; }
  /// The trainable head (trainable poolings only).
  const Head& head() const requires(Pooling::trainable) { return head_; }

 private:
  cuda::DeviceBackbone backbone_;
  Tokenizer tokenizer_;
  [[no_unique_address]] Head head_;
  EncoderOptions opt_;
};

namespace cuda {

namespace detail {
template <class Attention, class Pooling>
AnyEncoder make_as(const std::filesystem::path& model, const std::filesystem::path& head,
                   const EncoderOptions& o, const DeviceOptions& dev) {
  return std::make_unique<Encoder<Attention, Pooling, backend::cuda>>(
      Encoder<Attention, Pooling, backend::cuda>::load(model, head, o, dev));
}
template <class Attention>
AnyEncoder make_for(std::string_view name, const std::filesystem::path& model,
                    const std::filesystem::path& head, const EncoderOptions& o,
                    const DeviceOptions& dev) {
  if (name == pooling::eos::name) return make_as<Attention, pooling::eos>(model, head, o, dev);
  if (name == pooling::mean::name) return make_as<Attention, pooling::mean>(model, head, o, dev);
  if (name == pooling::latent::name)
    return make_as<Attention, pooling::latent>(model, head, o, dev);
  if (name == pooling::multi_layer::name)
    return make_as<Attention, pooling::multi_layer>(model, head, o, dev);
  if (name == pooling::multi_layer_mean::name)
    return make_as<Attention, pooling::multi_layer_mean>(model, head, o, dev);
  if (name == pooling::multi_layer_tokens::name)
    return make_as<Attention, pooling::multi_layer_tokens>(model, head, o, dev);
  return make_as<Attention, pooling::multi_layer_eos>(model, head, o, dev);
}
}  // namespace detail

/// make_encoder() with the backbone on the GPU (`--device cuda`): same choices, same errors.
inline AnyEncoder make_encoder(const std::filesystem::path& model, AttentionKind attention,
                               std::string_view pooling_name,
                               const std::filesystem::path& head_file = {},
                               const EncoderOptions& options = {},
                               const DeviceOptions& device = {}) {
  (void)pooling::capture_of(pooling_name);  // config_error listing the names, before loading
  if (attention == AttentionKind::causal)
    return detail::make_for<attention::causal>(pooling_name, model, head_file, options, device);
  return detail::make_for<attention::bidirectional>(pooling_name, model, head_file, options,
                                                    device);
}

}  // namespace cuda

}  // namespace lmembed
