// lmembed/train/cache_capture.hpp - the capture of a cache by name: parse_capture ("eos",
// "multi_layer", "all_layers.last_token" ...) and the layers a spec stores (captured_layers).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"

namespace lmembed::train {

/// The number of captured layers and "rows per item" of a spec.
inline std::int64_t captured_layers(CaptureSpec spec, std::int64_t model_layers) {
  return spec.layers == CaptureLayers::all ? model_layers : 1;
}

/// "eos", "multi_layer" ... (a pooling name) or "last_layer.last_token" ... -> CaptureSpec.
inline CaptureSpec parse_capture(std::string_view s) {
  static const std::pair<const char*, CaptureSpec> named[] = {
      {"eos", {CaptureLayers::last, CaptureTokens::last}},
      {"mean", {CaptureLayers::last, CaptureTokens::mean}},
      {"latent", {CaptureLayers::last, CaptureTokens::all}},
      {"multi_layer", {CaptureLayers::all, CaptureTokens::last}},
      {"multi_layer_mean", {CaptureLayers::all, CaptureTokens::mean}},
      {"multi_layer_tokens", {CaptureLayers::last, CaptureTokens::all}},
      {"multi_layer_eos", {CaptureLayers::last, CaptureTokens::last}}};
  for (const auto& [n, c] : named)
    if (s == n) return c;
  for (auto l : {CaptureLayers::last, CaptureLayers::all})
    for (auto t : {CaptureTokens::last, CaptureTokens::all, CaptureTokens::mean})
      if (s == to_string(CaptureSpec{l, t})) return {l, t};
  throw config_error("unknown capture '" + std::string(s) +
                     "': use a pooling name (eos, mean, latent, multi_layer, multi_layer_mean, "
                     "multi_layer_tokens, multi_layer_eos) or layers.tokens such as "
                     "all_layers.last_token");
}

}  // namespace lmembed::train
