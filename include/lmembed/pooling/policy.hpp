// lmembed/pooling/policy.hpp - the pooling policy tags and what each consumes.
//
// A pooling is a type: it declares at compile time which hidden states it needs (CaptureSpec),
// whether it has trainable parameters, and, if so, its head class template on the scalar.
// The backbone captures exactly `capture`; Encoder<Attention, Pooling> checks the combination.
#pragma once

#include <array>
#include <concepts>
#include <string>
#include <string_view>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"

namespace lmembed::pooling {

template <class T>
class LatentHead;
template <class T>
class MultiLayerHead;
template <class T>
MatrixX<T> eos_forward(const CapturedT<T>& in);
template <class T>
MatrixX<T> mean_forward(const CapturedT<T>& in);

/// What the multi_layer head attends over (its keys and values), one per policy tag.
enum class MultiLayerInput : std::uint8_t {
  last_token,   ///< last token of every layer 1..L, plus a layer embedding (the paper's default)
  mean_tokens,  ///< per-layer mean over tokens [pool_from, end), plus a layer embedding (model 5)
  all_tokens,  ///< all last-layer tokens [pool_from, end) of the text, no layer embedding (model 4)
  eos,         ///< the last-layer last token only (L = 1), no layer embedding (model 2)
};

/// The last token of the last layer (the EOS token when the tokenizer appends it).
struct eos {
  static constexpr const char* name = "eos";
  static constexpr CaptureSpec capture{CaptureLayers::last, CaptureTokens::last};
  static constexpr bool trainable = false;
  /// [n_seq, d]: the captured row of each text (pooling/simple.hpp).
  template <class T>
  static MatrixX<T> forward(const CapturedT<T>& in) {
    return eos_forward(in);
  }
};

/// Mean of the last layer over tokens [pool_from, end) of each text.
struct mean {
  static constexpr const char* name = "mean";
  static constexpr CaptureSpec capture{CaptureLayers::last, CaptureTokens::mean};
  static constexpr bool trainable = false;
  /// [n_seq, d]: the captured per-text means (pooling/simple.hpp).
  template <class T>
  static MatrixX<T> forward(const CapturedT<T>& in) {
    return mean_forward(in);
  }
};

/// NV-Embed's latent attention (arXiv 2405.17428) over the last layer's tokens.
struct latent {
  static constexpr const char* name = "latent";
  static constexpr CaptureSpec capture{CaptureLayers::last, CaptureTokens::all};
  static constexpr bool trainable = true;
  template <class T>
  using head = LatentHead<T>;
};

/// The seed paper's multi-layer trainable pooling: learned latents cross-attend to the last
/// token of every layer plus a learned layer embedding.
struct multi_layer {
  static constexpr const char* name = "multi_layer";
  static constexpr CaptureSpec capture{CaptureLayers::all, CaptureTokens::last};
  static constexpr bool trainable = true;
  static constexpr MultiLayerInput input = MultiLayerInput::last_token;
  template <class T>
  using head = MultiLayerHead<T>;
};

/// multi_layer fed the per-layer token means (the paper's bidirectional model 5).
struct multi_layer_mean {
  static constexpr const char* name = "multi_layer_mean";
  static constexpr CaptureSpec capture{CaptureLayers::all, CaptureTokens::mean};
  static constexpr bool trainable = true;
  static constexpr MultiLayerInput input = MultiLayerInput::mean_tokens;
  template <class T>
  using head = MultiLayerHead<T>;
};

/// multi_layer fed all last-layer tokens of a text, masked per text, no layer embedding
/// (what the paper's code uses for its model 4).
struct multi_layer_tokens {
  static constexpr const char* name = "multi_layer_tokens";
  static constexpr CaptureSpec capture{CaptureLayers::last, CaptureTokens::all};
  static constexpr bool trainable = true;
  static constexpr MultiLayerInput input = MultiLayerInput::all_tokens;
  template <class T>
  using head = MultiLayerHead<T>;
};

/// multi_layer with L = 1 fed the last-layer EOS state (the paper's "last-layer trainable
/// pooling", model 2).
struct multi_layer_eos {
  static constexpr const char* name = "multi_layer_eos";
  static constexpr CaptureSpec capture{CaptureLayers::last, CaptureTokens::last};
  static constexpr bool trainable = true;
  static constexpr MultiLayerInput input = MultiLayerInput::eos;
  template <class T>
  using head = MultiLayerHead<T>;
};

/// A pooling policy: a name, a CaptureSpec and whether it is trainable. A parameter-free
/// policy also pools: `static MatrixX<T> forward(const CapturedT<T>&)` ([n_seq, d], not
/// normalized); a trainable one names its head (TrainablePolicy). docs/architecture.md walks
/// through adding one.
template <class P>
concept Policy = requires {
  { P::name } -> std::convertible_to<const char*>;
  { P::capture } -> std::convertible_to<CaptureSpec>;
  { P::trainable } -> std::convertible_to<bool>;
}
&&(P::trainable || requires(const Captured& c) {
  { P::forward(c) } -> std::convertible_to<Matrix>;
});

/// A trainable pooling policy: also names its head class template.
template <class P>
concept TrainablePolicy = Policy<P> && P::trainable && requires {
  typename P::template head<float>;
  typename P::template head<double>;
};

/// The head type of a trainable policy for scalar T.
template <TrainablePolicy P, class T = float>
using head_t = typename P::template head<T>;

/// Every pooling name, in the order the CLI lists them.
inline constexpr std::array<std::string_view, 7> names{"eos",
                                                       "mean",
                                                       "latent",
                                                       "multi_layer",
                                                       "multi_layer_mean",
                                                       "multi_layer_tokens",
                                                       "multi_layer_eos"};

/// Name of a MultiLayerInput's policy ("multi_layer", "multi_layer_mean", ...).
inline const char* policy_name(MultiLayerInput in) {
  switch (in) {
    case MultiLayerInput::last_token:
      return multi_layer::name;
    case MultiLayerInput::mean_tokens:
      return multi_layer_mean::name;
    case MultiLayerInput::all_tokens:
      return multi_layer_tokens::name;
    case MultiLayerInput::eos:
      return multi_layer_eos::name;
  }
  return "?";
}
/// The CaptureSpec a MultiLayerInput needs.
inline constexpr CaptureSpec capture_of(MultiLayerInput in) {
  switch (in) {
    case MultiLayerInput::last_token:
      return multi_layer::capture;
    case MultiLayerInput::mean_tokens:
      return multi_layer_mean::capture;
    case MultiLayerInput::all_tokens:
      return multi_layer_tokens::capture;
    case MultiLayerInput::eos:
      return multi_layer_eos::capture;
  }
  return {};
}
/// The MultiLayerInput of a multi_layer* policy name; config_error for any other name.
inline MultiLayerInput parse_multi_layer_input(std::string_view pooling) {
  for (MultiLayerInput in : {MultiLayerInput::last_token, MultiLayerInput::mean_tokens,
                             MultiLayerInput::all_tokens, MultiLayerInput::eos})
    if (pooling == policy_name(in)) return in;
  throw config_error("'" + std::string(pooling) +
                     "' is not a multi_layer pooling (multi_layer, multi_layer_mean, "
                     "multi_layer_tokens, multi_layer_eos)");
}

/// The CaptureSpec of a pooling name; config_error listing the valid names otherwise.
inline CaptureSpec capture_of(std::string_view pooling) {
  if (pooling == eos::name) return eos::capture;
  if (pooling == mean::name) return mean::capture;
  if (pooling == latent::name) return latent::capture;
  for (MultiLayerInput in : {MultiLayerInput::last_token, MultiLayerInput::mean_tokens,
                             MultiLayerInput::all_tokens, MultiLayerInput::eos})
    if (pooling == policy_name(in)) return capture_of(in);
  std::string all;
  for (auto n : names) all += (all.empty() ? "" : ", ") + std::string(n);
  throw config_error("unknown pooling '" + std::string(pooling) + "' (valid: " + all + ")");
}
/// Whether a pooling name has a trainable head (needs --head FILE).
inline bool is_trainable(std::string_view pooling) {
  (void)capture_of(pooling);  // validates the name
  return pooling != eos::name && pooling != mean::name;
}

}  // namespace lmembed::pooling
