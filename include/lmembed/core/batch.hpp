// lmembed/core/batch.hpp - packed token batches and the hidden states captured from them.
//
// Sequences are packed side by side with offsets, never padded: a batch of texts of 3, 40 and
// 7 tokens holds 50 ids. Every stage (backbone, capture, pooling, cache) uses these types.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed {

/// Several token sequences packed without padding.
/// Sequence s holds ids[offsets[s] .. offsets[s+1]); offsets.front() == 0 and
/// offsets.back() == ids.size(). pool_from (empty, or one entry per sequence) is the first
/// token, relative to the sequence start, that mean-style pooling uses (an instruction prefix
/// before it is left out).
struct TokenBatch {
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> offsets{0};
  std::vector<std::int32_t> pool_from;

  /// Appends one sequence; `pool_from` is relative to the sequence's first token.
  void add(std::span<const std::int32_t> seq, std::int32_t pool_from_token = 0) {
    // pool_from stays empty while every sequence pools from 0; the first non-zero value
    // back-fills zeros for the sequences before it.
    const bool record = pool_from_token != 0 || !pool_from.empty();
    if (record && pool_from.empty()) pool_from.assign(size(), 0);
    ids.insert(ids.end(), seq.begin(), seq.end());
    offsets.push_back(static_cast<std::int64_t>(ids.size()));
    if (record) pool_from.push_back(pool_from_token);
  }
  /// Number of sequences.
  std::size_t size() const noexcept { return offsets.empty() ? 0 : offsets.size() - 1; }
  /// Total number of tokens.
  std::int64_t n_tokens() const noexcept { return static_cast<std::int64_t>(ids.size()); }
  /// Length of sequence s.
  std::int64_t length(std::size_t s) const { return offsets[s + 1] - offsets[s]; }
  /// The ids of sequence s.
  std::span<const std::int32_t> sequence(std::size_t s) const {
    return {ids.data() + offsets[s], static_cast<std::size_t>(length(s))};
  }
  /// First pooled token of sequence s (0 when no pool_from was given).
  std::int32_t pool_start(std::size_t s) const { return pool_from.empty() ? 0 : pool_from[s]; }
};

/// Which layers a pooling consumes.
enum class CaptureLayers : std::uint8_t {
  last,  ///< the final hidden state (after the final RMSNorm)
  all,   ///< layers 1..L (1..L-1 the residual stream after block l, L after the final norm)
};

/// Which tokens (of each captured layer) a pooling consumes.
enum class CaptureTokens : std::uint8_t {
  last,  ///< the last token of each sequence
  all,   ///< every token of each sequence
  mean,  ///< the mean over tokens [pool_from, end) of each sequence
};

/// What a pooling consumes; the backbone captures exactly this and nothing more.
/// Same convention as Hugging Face's output_hidden_states (embedding output excluded).
struct CaptureSpec {
  CaptureLayers layers = CaptureLayers::last;
  CaptureTokens tokens = CaptureTokens::last;
  friend constexpr bool operator==(CaptureSpec, CaptureSpec) = default;
};

/// "last-layer/last-token" etc. - the name used in the CLI (--capture), cache index and docs.
inline std::string to_string(CaptureSpec c) {
  const char* l = c.layers == CaptureLayers::last ? "last_layer" : "all_layers";
  const char* t = c.tokens == CaptureTokens::last ? "last_token"
                  : c.tokens == CaptureTokens::all ? "all_tokens"
                                                   : "mean_tokens";
  return std::string(l) + "." + t;
}

/// Hidden states captured by the backbone for one TokenBatch, in one row-major buffer.
///
/// Rows are item-major, layer-minor, with n_layers = 1 for CaptureLayers::last:
///  - tokens last|mean: row = seq * n_layers + layer            -> [n_seq, n_layers, d]
///  - tokens all:       row = token * n_layers + layer          -> [n_tokens, n_layers, d]
///    where token indexes the packed batch and offsets (copied from the batch) delimit
///    sequences; pool_from likewise.
template <class T = float>
struct CapturedT {
  CaptureSpec spec{};
  std::int64_t n_seq = 0;
  std::int64_t n_layers = 1;
  std::int64_t d = 0;
  std::vector<std::int64_t> offsets;    ///< sequence offsets into token rows (tokens == all)
  std::vector<std::int32_t> pool_from;  ///< per sequence, or empty
  MatrixX<T> states;                    ///< rows as described above, d columns

  /// Number of items (sequences, or tokens when spec.tokens == all).
  std::int64_t n_items() const { return n_layers ? states.rows() / n_layers : 0; }
  /// Row of (item, layer).
  auto row(std::int64_t item, std::int64_t layer = 0) { return states.row(item * n_layers + layer); }
  auto row(std::int64_t item, std::int64_t layer = 0) const {
    return states.row(item * n_layers + layer);
  }
  /// Throws shape_error unless the sizes agree with each other.
  void check() const {
    const std::int64_t items = spec.tokens == CaptureTokens::all
                                   ? (offsets.empty() ? 0 : offsets.back())
                                   : n_seq;
    if (states.rows() != items * n_layers || states.cols() != d)
      throw shape_error("Captured(" + to_string(spec) + "): states are [" +
                        std::to_string(states.rows()) + ", " + std::to_string(states.cols()) +
                        "], expected [" + std::to_string(items * n_layers) + ", " +
                        std::to_string(d) + "]");
  }
};
using Captured = CapturedT<float>;

}  // namespace lmembed
