// A deterministic stand-in for tokenizer + backbone, so that cache and trainer tests need
// neither: token ids are the text's bytes, and hidden state (token t, layer l, column j) is
// a smooth function of the token id, its position, l and j.
#pragma once

#include <cmath>
#include <functional>

#include "lmembed/train/cache.hpp"

namespace lmembed_test {

/// Instruction bytes then text bytes (ids 1..256); pool_from = instruction length + 1 (BOS 0).
inline lmembed::train::TokenizedText fake_tokenize(const lmembed::train::CacheText& t) {
  lmembed::train::TokenizedText out;
  out.ids.push_back(0);
  for (unsigned char c : t.instruction) out.ids.push_back(1 + c);
  out.pool_from = static_cast<std::int32_t>(out.ids.size());
  for (unsigned char c : t.text) out.ids.push_back(1 + c);
  return out;
}

/// State of (token id, position in its sequence, layer, column).
inline float fake_state(std::int32_t id, std::int64_t pos, std::int64_t layer, std::int64_t j) {
  return static_cast<float>(
      std::sin(0.37 * id + 0.011 * double(pos) + 0.7 * double(layer) + 0.13 * double(j)) +
      0.05 * double(layer));
}

/// The capture a backbone with L layers and width d would return (per CaptureSpec).
inline lmembed::Captured fake_capture(const lmembed::TokenBatch& b, lmembed::CaptureSpec spec,
                                      std::int64_t d, std::int64_t L) {
  using namespace lmembed;
  Captured c;
  c.spec = spec;
  c.n_seq = std::int64_t(b.size());
  c.n_layers = spec.layers == CaptureLayers::all ? L : 1;
  c.d = d;
  auto layer_of = [&](std::int64_t l) { return spec.layers == CaptureLayers::all ? l : L - 1; };
  if (spec.tokens == CaptureTokens::all) {
    c.offsets = b.offsets;
    c.pool_from = b.pool_from;
    c.states.resize(b.n_tokens() * c.n_layers, d);
    for (std::size_t s = 0; s < b.size(); ++s)
      for (std::int64_t t = 0; t < b.length(s); ++t)
        for (std::int64_t l = 0; l < c.n_layers; ++l)
          for (std::int64_t j = 0; j < d; ++j)
            c.states((b.offsets[s] + t) * c.n_layers + l, j) =
                fake_state(b.sequence(s)[std::size_t(t)], t, layer_of(l), j);
  } else {
    c.states.resize(c.n_seq * c.n_layers, d);
    for (std::size_t s = 0; s < b.size(); ++s) {
      const auto seq = b.sequence(s);
      const std::int64_t len = b.length(s);
      for (std::int64_t l = 0; l < c.n_layers; ++l)
        for (std::int64_t j = 0; j < d; ++j) {
          double v = 0;
          if (spec.tokens == CaptureTokens::last) {
            v = fake_state(seq[std::size_t(len - 1)], len - 1, layer_of(l), j);
          } else {
            const std::int64_t from = b.pool_start(s);
            for (std::int64_t t = from; t < len; ++t)
              v += fake_state(seq[std::size_t(t)], t, layer_of(l), j);
            v /= double(len - from);
          }
          c.states(std::int64_t(s) * c.n_layers + l, j) = float(v);
        }
    }
  }
  return c;
}

}  // namespace lmembed_test
