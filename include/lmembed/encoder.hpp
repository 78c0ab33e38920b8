// lmembed/encoder.hpp - Encoder<Attention, Pooling, Backend>: text in, L2-normalized embedding out.
//
// The design is the type, the sizes are run-time config:
//   using Model5 = lmembed::Encoder<lmembed::attention::bidirectional,
//   lmembed::pooling::multi_layer>; auto enc = Model5::load("qwen2-0.5b.gguf", "head.safetensors");
//   lmembed::Matrix e = enc.encode(texts);          // [n, d], rows L2-normalized
// The pooling declares what it consumes (Pooling::capture); the backbone captures exactly that.
// AnyEncoder / make_encoder choose attention and pooling at run time (the CLI).
#pragma once

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "lmembed/attention/attention.hpp"
#include "lmembed/backbone/backbone.hpp"
#include "lmembed/core/backend.hpp"
#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/nn/reduce.hpp"
#include "lmembed/pooling/pooling.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

namespace lmembed {

/// What to do when eos-style pooling meets a text whose last token is not EOS.
enum class EosCheck {
  off,    ///< pool the last token silently (as llama.cpp and most peers do)
  warn,   ///< pool it, and say so on stderr (default)
  error,  ///< input_error naming the texts
};

/// Run-time options of an Encoder.
struct EncoderOptions {
  bool normalize = true;        ///< L2-normalize each embedding (off: the raw pooled vector)
  std::optional<bool> add_bos;  ///< nullopt: the model's flag
  std::optional<bool> add_eos;  ///< nullopt: true for poolings that read the last token, else
                                ///< the model's flag
  std::int32_t pool_from = 0;   ///< tokens at the start of every text that mean-style pooling
                                ///< skips (an instruction prefix), see TokenBatch::pool_from
  EosCheck eos_check = EosCheck::warn;
  int threads = 0;                   ///< backbone threads (< 1: all OpenMP offers)
  bool truncate = false;             ///< cut texts longer than the context instead of input_error
  std::int64_t batch_tokens = 8192;  ///< tokens per backbone call (bounds memory)
  bool progress = false;             ///< report progress on stderr
  /// How load() / make_encoder(path, ...) hold the weights: stored (default; Q8_0 / Q4_0 / Q4_1
  /// stay quantized, integer kernels) or f32 (exact, 4 bytes per parameter).
  WeightFormat weights = WeightFormat::stored;
};

namespace detail {

template <class A>
inline constexpr bool is_attention_v =
    std::is_same_v<A, attention::causal> || std::is_same_v<A, attention::bidirectional>;
template <class B>
inline constexpr bool is_backend_v =
    std::is_same_v<B, backend::cpu> || std::is_same_v<B, backend::cuda>;
/// What an Encoder needs of its backend: the backbone type (which decides where the weights
/// live and which executor runs the decoder, backbone/decoder.hpp), how it loads, its load
/// options. Specialized per backend: backend::cpu here, backend::cuda in cuda/encoder.cuh.
template <class Backend>
struct BackendTraits;

template <>
struct BackendTraits<backend::cpu> {
  using backbone_type = Backbone;
  /// Load options beyond EncoderOptions (none on the CPU).
  struct options {};
  static constexpr const char* progress_suffix = "";
  static Backbone load(const std::filesystem::path& model, const EncoderOptions& o,
                       const options&) {
    return Backbone::load(model, o.weights);
  }
  static void set_threads(Backbone& b, int n) { b.set_threads(n); }
  static const Backbone& host_backbone(const Backbone& b) { return b; }
};

template <class B>
inline constexpr bool has_backend_v = requires {
  typename BackendTraits<B>::backbone_type;
};

/// The float head of a trainable policy, std::monostate for the others.
template <class P, bool = P::trainable>
struct HeadOf {
  using type = std::monostate;
};
template <class P>
struct HeadOf<P, true> {
  using type = typename P::template head<float>;
};

/// Whether the pooling reads the last token of a text (then EOS matters).
inline constexpr bool reads_last_token(CaptureSpec c) {
  return c.tokens == CaptureTokens::last;
}

/// Appends one sequence with its pool_from. (TokenBatch::add drops a non-zero pool_from given
/// for the very first sequence of a batch; this does not.)
inline void add_sequence(TokenBatch& b, std::span<const std::int32_t> seq, std::int32_t pf) {
  b.ids.insert(b.ids.end(), seq.begin(), seq.end());
  const std::size_t before = b.size();
  b.offsets.push_back(static_cast<std::int64_t>(b.ids.size()));
  if (pf != 0 || !b.pool_from.empty()) {
    if (b.pool_from.empty()) b.pool_from.assign(before, 0);
    b.pool_from.push_back(pf);
  }
}

/// Tokenizes texts (with an optional instruction prefix that pooling then skips).
inline TokenBatch tokenize_texts(const Tokenizer& tok, std::span<const std::string> texts,
                                 std::string_view instruction, const EncoderOptions& o,
                                 CaptureSpec capture) {
  EncodeOptions eo;
  eo.add_bos = o.add_bos;
  eo.add_eos = o.add_eos ? o.add_eos
                         : (reads_last_token(capture) ? std::optional<bool>(true) : std::nullopt);
  std::int32_t prefix = o.pool_from;
  if (!instruction.empty()) {
    EncodeOptions io = eo;
    io.add_eos = false;
    prefix += static_cast<std::int32_t>(tok.encode(instruction, io).size());
  }
  TokenBatch b;
  const std::string ins(instruction);
  for (const std::string& t : texts) {
    const auto ids = instruction.empty() ? tok.encode(t, eo) : tok.encode(ins + t, eo);
    // Never skip the whole text: the last token always stays in the pool.
    const auto n = static_cast<std::int32_t>(ids.size());
    add_sequence(b, ids, n > 0 ? std::min(prefix, n - 1) : 0);
  }
  return b;
}

/// Applies the EOS check of `o` to a batch pooled by its last token.
inline void check_eos(const TokenBatch& b, std::int32_t eos_id, const EncoderOptions& o) {
  if (o.eos_check == EosCheck::off) return;
  const auto bad = pooling::sequences_without_eos(b, eos_id);
  if (bad.empty()) return;
  std::string msg = std::to_string(bad.size()) + " of " + std::to_string(b.size()) +
                    " texts do not end with the EOS token (id " + std::to_string(eos_id) +
                    "), e.g. text " + std::to_string(bad.front()) +
                    ": the pooling reads their last token instead (append EOS: --eos / "
                    "EncoderOptions::add_eos)";
  if (o.eos_check == EosCheck::error) throw input_error(msg);
  std::cerr << "lmembed: warning: " << msg << "\n";
}

}  // namespace detail

/// Interface shared by every Encoder instantiation, so run-time code (AnyEncoder, the CLI, the
/// evaluator's callback) can hold any of them.
class EncoderBase {
 public:
  virtual ~EncoderBase() = default;
  /// Embeddings of texts, [n, dim()]; rows L2-normalized unless options().normalize is false.
  virtual Matrix encode(std::span<const std::string> texts) = 0;
  /// Same, with an instruction prefixed to every text and left out of mean-style pooling.
  virtual Matrix encode(std::span<const std::string> texts, std::string_view instruction) = 0;
  /// Embeddings of pre-tokenized sequences (ids used as given).
  virtual Matrix encode(const TokenBatch& batch) = 0;
  /// Embedding width.
  virtual std::int64_t dim() const = 0;
  /// "causal", "bidirectional".
  virtual const char* attention_name() const = 0;
  /// The pooling name ("eos", "multi_layer", ...).
  virtual const char* pooling_name() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual const Backbone& backbone() const = 0;
  virtual EncoderOptions& options() = 0;
};

/// Tokenizer + frozen backbone + pooling, fixed at compile time.
///
/// Attention: attention::causal | attention::bidirectional. Pooling: pooling::eos | mean |
/// latent | multi_layer | multi_layer_mean | multi_layer_tokens | multi_layer_eos. Backend:
/// backend::cpu, or backend::cuda (include lmembed/cuda/encoder.cuh): the backend decides the
/// backbone type and so where the decoder runs; everything else here is shared.
template <class Attention, class Pooling, class Backend = backend::cpu>
class Encoder final : public EncoderBase {
  static_assert(detail::is_attention_v<Attention>,
                "Encoder<Attention, ...>: Attention must be lmembed::attention::causal or "
                "lmembed::attention::bidirectional");
  static_assert(pooling::Policy<Pooling>,
                "Encoder<..., Pooling, ...>: Pooling must be a pooling policy tag: "
                "lmembed::pooling::eos, mean, latent, multi_layer, multi_layer_mean, "
                "multi_layer_tokens or multi_layer_eos");
  static_assert(detail::is_backend_v<Backend>,
                "Encoder<..., Backend>: Backend must be lmembed::backend::cpu or ::cuda");
  static_assert(detail::has_backend_v<Backend>,
                "Encoder<..., backend::cuda>: include \"lmembed/cuda/encoder.cuh\" (in a .cu "
                "file) and link lmembed::cuda");
  static_assert(!(Pooling::capture.layers == CaptureLayers::all &&
                  Pooling::capture.tokens == CaptureTokens::all),
                "Encoder: a pooling that consumes every token of every layer is not supported "
                "(the backbone would have to keep tokens x layers x d states)");

 public:
  using attention_type = Attention;
  using pooling_type = Pooling;
  using backend_type = Backend;
  using traits = detail::BackendTraits<Backend>;
  /// The backbone: lmembed::Backbone (cpu) or cuda::DeviceBackbone (cuda).
  using backbone_type = typename traits::backbone_type;
  /// The backend's load options (cuda::DeviceOptions for cuda; empty for cpu).
  using backend_options = typename traits::options;
  /// The head type (trainable poolings), else std::monostate.
  using Head = typename detail::HeadOf<Pooling>::type;

  /// A parameter-free pooling (eos, mean).
  Encoder(backbone_type backbone, Tokenizer tokenizer,
          EncoderOptions options = {}) requires(!Pooling::trainable)
      : backbone_(std::move(backbone)), tokenizer_(std::move(tokenizer)), opt_(options) {
    traits::set_threads(backbone_, opt_.threads);
  }
  /// A trainable pooling with its head; config_error when the head does not fit the backbone.
  /// (The heads run on the host over the captured states: they are small next to the
  /// backbone.)
  Encoder(backbone_type backbone, Tokenizer tokenizer, Head head,
          EncoderOptions options = {}) requires(Pooling::trainable)
      : backbone_(std::move(backbone)),
        tokenizer_(std::move(tokenizer)),
        head_(std::move(head)),
        opt_(options) {
    traits::set_threads(backbone_, opt_.threads);
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

  /// Loads the model (.gguf or HF folder), its tokenizer, and for trainable poolings the head
  /// file (config_error when a trainable pooling gets none, or the file is another pooling's).
  static Encoder load(const std::filesystem::path& model,
                      const std::filesystem::path& head_file = {}, EncoderOptions options = {},
                      const backend_options& backend = {}) {
    backbone_type b = traits::load(model, options, backend);
    Tokenizer t = Tokenizer::load(model);
    if constexpr (Pooling::trainable) {
      if (head_file.empty())
        throw config_error(std::string("pooling '") + Pooling::name +
                           "' is trainable: give its head file (--head FILE.safetensors)");
      return Encoder(std::move(b), std::move(t), load_head(head_file), options);
    } else {
      if (!head_file.empty())
        throw config_error(std::string("pooling '") + Pooling::name +
                           "' has no parameters: drop the head file " + head_file.string());
      return Encoder(std::move(b), std::move(t), options);
    }
  }

  Matrix encode(std::span<const std::string> texts) override { return encode(texts, {}); }

  Matrix encode(std::span<const std::string> texts, std::string_view instruction) override {
    Matrix out(static_cast<Eigen::Index>(texts.size()), dim());
    std::size_t i = 0;
    while (i < texts.size()) {
      // Tokenize a run of texts up to batch_tokens tokens, then encode it in one call.
      std::size_t j = i;
      TokenBatch batch;
      std::int64_t tokens = 0;
      while (j < texts.size() && (j == i || tokens < opt_.batch_tokens)) {
        TokenBatch one = detail::tokenize_texts(tokenizer_, texts.subspan(j, 1), instruction, opt_,
                                                Pooling::capture);
        // Say which text is too long here, where its index is known (the backbone sees only
        // its place in a batch).
        if (!opt_.truncate && one.n_tokens() > backbone_.config().n_ctx)
          throw input_error(
              "text " + std::to_string(j + 1) + " of " + std::to_string(texts.size()) + " has " +
              std::to_string(one.n_tokens()) + " tokens, more than the model's context length " +
              std::to_string(backbone_.config().n_ctx) +
              " (cut it: --truncate / EncoderOptions::truncate)");
        tokens += one.n_tokens();
        detail::add_sequence(batch, one.sequence(0), one.pool_start(0));
        ++j;
      }
      out.middleRows(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j - i)) =
          encode(batch);
      i = j;
      if (opt_.progress)
        std::cerr << "\rlmembed: encoded " << i << " / " << texts.size() << " texts"
                  << traits::progress_suffix << (i == texts.size() ? "\n" : "") << std::flush;
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

  /// The pooled (unnormalized) vectors of captured states.
  Matrix pool(const Captured& cap) const {
    if constexpr (Pooling::trainable)
      return head_.forward(cap);
    else
      return Pooling::forward(cap);
  }

  std::int64_t dim() const override { return backbone_.config().d_model; }
  const char* attention_name() const override { return Attention::name; }
  const char* pooling_name() const override { return Pooling::name; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }
  /// The CPU backbone; config_error for a backbone on a device (see device_backbone()).
  const Backbone& backbone() const override { return traits::host_backbone(backbone_); }
  EncoderOptions& options() override { return opt_; }
  /// The backbone in its backend's type.
  backbone_type& device_backbone() { return backbone_; }
  /// The trainable head (trainable poolings only).
  const Head& head() const requires(Pooling::trainable) { return head_; }

  /// Loads a head file for this pooling (checks its __metadata__ names this pooling).
  static Head load_head(const std::filesystem::path& file) requires(Pooling::trainable) {
    if constexpr (std::is_same_v<Pooling, pooling::latent>)
      return Head::load(file);
    else
      return Head::load(file, Pooling::input);
  }

 private:
  backbone_type backbone_;
  Tokenizer tokenizer_;
  [[no_unique_address]] Head head_;
  EncoderOptions opt_;
};

/// An encoder whose attention and pooling are chosen at run time.
using AnyEncoder = std::unique_ptr<EncoderBase>;

namespace detail {
template <class Attention, class Pooling, class Backend>
AnyEncoder make_encoder_as(typename BackendTraits<Backend>::backbone_type b, Tokenizer t,
                           const std::filesystem::path& head, const EncoderOptions& o) {
  using E = Encoder<Attention, Pooling, Backend>;
  if constexpr (Pooling::trainable) {
    if (head.empty())
      throw config_error(std::string("pooling '") + Pooling::name +
                         "' is trainable: give its head file (--head FILE.safetensors)");
    return std::make_unique<E>(std::move(b), std::move(t), E::load_head(head), o);
  } else {
    if (!head.empty())
      throw config_error(std::string("pooling '") + Pooling::name +
                         "' has no parameters: drop --head " + head.string());
    return std::make_unique<E>(std::move(b), std::move(t), o);
  }
}
template <class Attention, class Backend>
AnyEncoder make_encoder_for(std::string_view name, typename BackendTraits<Backend>::backbone_type b,
                            Tokenizer t, const std::filesystem::path& head,
                            const EncoderOptions& o) {
  (void)pooling::capture_of(name);  // config_error listing the names
  auto as = [&]<class P>(P) {
    return make_encoder_as<Attention, P, Backend>(std::move(b), std::move(t), head, o);
  };
  if (name == pooling::eos::name) return as(pooling::eos{});
  if (name == pooling::mean::name) return as(pooling::mean{});
  if (name == pooling::latent::name) return as(pooling::latent{});
  if (name == pooling::multi_layer::name) return as(pooling::multi_layer{});
  if (name == pooling::multi_layer_mean::name) return as(pooling::multi_layer_mean{});
  if (name == pooling::multi_layer_tokens::name) return as(pooling::multi_layer_tokens{});
  return as(pooling::multi_layer_eos{});
}
/// make_encoder() on any backend: the attention and pooling chosen at run time.
template <class Backend>
AnyEncoder make_encoder_on(typename BackendTraits<Backend>::backbone_type b, Tokenizer t,
                           AttentionKind attention, std::string_view pooling_name,
                           const std::filesystem::path& head, const EncoderOptions& o) {
  if (attention == AttentionKind::causal)
    return make_encoder_for<attention::causal, Backend>(pooling_name, std::move(b), std::move(t),
                                                        head, o);
  return make_encoder_for<attention::bidirectional, Backend>(pooling_name, std::move(b),
                                                             std::move(t), head, o);
}
}  // namespace detail

/// Builds an encoder from run-time choices: model (.gguf or HF folder), attention, pooling name
/// (pooling::names), head file (trainable poolings only) and options.
inline AnyEncoder make_encoder(Backbone backbone, Tokenizer tokenizer, AttentionKind attention,
                               std::string_view pooling_name,
                               const std::filesystem::path& head_file = {},
                               const EncoderOptions& options = {}) {
  return detail::make_encoder_on<backend::cpu>(std::move(backbone), std::move(tokenizer), attention,
                                               pooling_name, head_file, options);
}
/// Same, loading the model and its tokenizer from `model`.
inline AnyEncoder make_encoder(const std::filesystem::path& model, AttentionKind attention,
                               std::string_view pooling_name,
                               const std::filesystem::path& head_file = {},
                               const EncoderOptions& options = {}) {
  (void)pooling::capture_of(pooling_name);  // fail on a bad name before loading a model
  return make_encoder(Backbone::load(model, options.weights), Tokenizer::load(model), attention,
                      pooling_name, head_file, options);
}

}  // namespace lmembed
