// lmembed/compare/shared_pass.hpp - one backbone pass per (attention mode, text), served to every
// design of that mode.
//
// The designs of one attention mode differ only in what they take from the same forward pass
// (last token of every layer, per-layer token means, all last-layer tokens). A SharedPass runs
// the backbone once for each distinct sequence it is asked about, capturing every layer and
// every token (all_layers.all_tokens), keeps only what the designs it serves need, and returns
// for any batch and CaptureSpec the Captured that Backbone::forward would have returned.
//
// Bit-identical to Backbone::forward, not merely close: the backbone computes every row of a
// sequence independently of the other sequences of its batch (attention never crosses
// sequences; the GEMM micro-kernel keeps one accumulator per output row and walks k in the same
// blocks whatever the row count; RMSNorm is per row), so a sequence's states do not depend on
// the batch it ran in, nor on the last-token shortcut of a last_layer.last_token capture. The
// token means are summed here exactly as the backbone's capture sums them (double, token order,
// one division). tests/compare/test_compare.cpp checks the equality for every CaptureSpec and
// both attention modes on stories260K.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "lmembed/backbone/backbone.hpp"
#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"

namespace lmembed::compare {

/// What a SharedPass keeps of each sequence: the union of the CaptureSpecs of the designs it
/// serves, reduced to three stores (a last-layer capture is served from the all-layers one,
/// whose last row is the same final-norm state).
struct PassNeeds {
  bool last_token = false;  ///< last token of every layer kept (or of the last layer only)
  bool mean = false;        ///< per-layer token means kept (or of the last layer only)
  bool all_tokens = false;  ///< every last-layer token kept
  bool all_layers_last = false, all_layers_mean = false;  ///< all layers, not only the last

  /// Adds what `spec` needs. all_layers.all_tokens is refused: no design consumes it, and it
  /// would keep L x the rows of the forward pass.
  void add(CaptureSpec spec) {
    switch (spec.tokens) {
      case CaptureTokens::last:
        last_token = true;
        all_layers_last = all_layers_last || spec.layers == CaptureLayers::all;
        break;
      case CaptureTokens::mean:
        mean = true;
        all_layers_mean = all_layers_mean || spec.layers == CaptureLayers::all;
        break;
      case CaptureTokens::all:
        if (spec.layers == CaptureLayers::all)
          throw config_error("SharedPass: all_layers.all_tokens is not served (no design uses it)");
        all_tokens = true;
        break;
    }
  }
  /// Whether `spec` can be served.
  bool covers(CaptureSpec spec) const {
    switch (spec.tokens) {
      case CaptureTokens::last:
        return last_token && (spec.layers == CaptureLayers::last || all_layers_last);
      case CaptureTokens::mean:
        return mean && (spec.layers == CaptureLayers::last || all_layers_mean);
      case CaptureTokens::all:
        return all_tokens && spec.layers == CaptureLayers::last;
    }
    return false;
  }
};

/// Runs the frozen backbone once per distinct sequence (ids and pool_from) for one attention
/// mode and serves every CaptureSpec of `needs` from that pass (see the file comment).
class SharedPass {
 public:
  /// Tokens per backbone call: the full capture holds tokens x layers x d floats per call.
  static constexpr std::int64_t kBatchTokens = 1024;

  SharedPass(const Backbone& bb, AttentionKind attention, PassNeeds needs,
             ForwardOptions options = {.truncate = true})
      : bb_(&bb), att_(attention), needs_(needs), fo_(options) {
    fo_.stats = nullptr;
  }

  /// What bb.forward(batch, attention, spec, options) returns, running the backbone only for
  /// the sequences of `batch` it has not seen. config_error when `spec` is not among the needs.
  Captured capture(const TokenBatch& batch, CaptureSpec spec) {
    if (!needs_.covers(spec))
      throw config_error("SharedPass: " + to_string(spec) + " was not declared");
    if (!batch.pool_from.empty() && batch.pool_from.size() != batch.size())
      throw input_error("TokenBatch: pool_from has " + std::to_string(batch.pool_from.size()) +
                        " entries for " + std::to_string(batch.size()) + " sequences");
    const std::size_t n_seq = batch.size();
    std::vector<std::size_t> slot(n_seq);
    std::vector<std::size_t> missing;  // sequences of `batch` to run
    {
      std::unordered_map<std::string, std::size_t> fresh;  // duplicates within the batch
      for (std::size_t s = 0; s < n_seq; ++s) {
        std::string k = key(batch, s);
        if (auto it = index_.find(k); it != index_.end()) {
          slot[s] = it->second;
          ++served_;
        } else if (auto f = fresh.find(k); f != fresh.end()) {
          slot[s] = f->second;  // a repeat within the batch runs once too
          ++served_;
        } else {
          slot[s] = entries_.size() + missing.size();
          fresh.emplace(std::move(k), slot[s]);
          missing.push_back(s);
        }
      }
    }
    run(batch, missing);
    for (std::size_t s : missing) index_.emplace(key(batch, s), slot[s]);

    const std::int64_t d = bb_->config().d_model, L = bb_->config().n_layers;
    Captured out;
    out.spec = spec;
    out.n_seq = static_cast<std::int64_t>(n_seq);
    out.n_layers = spec.layers == CaptureLayers::all ? L : 1;
    out.d = d;
    out.offsets.assign(1, 0);
    for (std::size_t s = 0; s < n_seq; ++s)
      out.offsets.push_back(out.offsets.back() + entries_[slot[s]].length);
    if (!batch.pool_from.empty()) out.pool_from = batch.pool_from;
    const std::int64_t items = spec.tokens == CaptureTokens::all ? out.offsets.back() : out.n_seq;
    out.states.resize(items * out.n_layers, d);
    for (std::size_t s = 0; s < n_seq; ++s) {
      const Entry& e = entries_[slot[s]];
      float* dst = out.states.data();
      switch (spec.tokens) {
        case CaptureTokens::all:
          std::memcpy(dst + out.offsets[s] * d, e.tokens.data(), sizeof(float) * e.tokens.size());
          break;
        case CaptureTokens::last:
        case CaptureTokens::mean: {
          const std::vector<float>& src = spec.tokens == CaptureTokens::last ? e.last : e.mean;
          const std::int64_t src_layers = static_cast<std::int64_t>(src.size()) / d;
          // A last-layer capture takes the last row of an all-layers store.
          const float* from = src.data() + (src_layers - out.n_layers) * d;
          std::memcpy(dst + static_cast<std::int64_t>(s) * out.n_layers * d, from,
                      sizeof(float) * out.n_layers * d);
          break;
        }
      }
    }
    return out;
  }

  /// Wall seconds spent in the backbone so far.
  double backbone_seconds() const noexcept { return seconds_; }
  /// Sequences the backbone ran (each once).
  std::int64_t sequences_run() const noexcept { return static_cast<std::int64_t>(entries_.size()); }
  /// Sequence requests answered without running the backbone.
  std::int64_t sequences_served() const noexcept { return served_; }
  /// Bytes of kept states.
  std::int64_t bytes() const noexcept { return bytes_; }

 private:
  struct Entry {
    std::int64_t length = 0;        // tokens after truncation
    std::vector<float> last, mean;  // [layers, d] (layers = L or 1), or empty
    std::vector<float> tokens;      // [length, d] of the last layer, or empty
  };

  static std::string key(const TokenBatch& b, std::size_t s) {
    const auto ids = b.sequence(s);
    const std::int32_t pf = b.pool_start(s);
    std::string k(sizeof(std::int32_t) * (ids.size() + 1), '\0');
    std::memcpy(k.data(), &pf, sizeof pf);
    std::memcpy(k.data() + sizeof pf, ids.data(), sizeof(std::int32_t) * ids.size());
    return k;
  }

  /// Runs the sequences `which` of `batch` through the backbone (full capture, in calls of
  /// about kBatchTokens tokens) and appends their entries in that order.
  void run(const TokenBatch& batch, const std::vector<std::size_t>& which) {
    const std::int64_t d = bb_->config().d_model, L = bb_->config().n_layers;
    constexpr CaptureSpec full{CaptureLayers::all, CaptureTokens::all};
    std::size_t i = 0;
    while (i < which.size()) {
      TokenBatch sub;
      const std::size_t i0 = i;
      while (i < which.size() &&
             (i == i0 || sub.n_tokens() + batch.length(which[i]) <= kBatchTokens)) {
        const std::size_t s = which[i++];
        const auto ids = batch.sequence(s);
        const std::size_t before = sub.size();
        sub.ids.insert(sub.ids.end(), ids.begin(), ids.end());
        sub.offsets.push_back(sub.n_tokens());
        const std::int32_t pf = batch.pool_start(s);
        if (pf != 0 || !sub.pool_from.empty()) {
          if (sub.pool_from.empty()) sub.pool_from.assign(before, 0);
          sub.pool_from.push_back(pf);
        }
      }
      const auto t0 = std::chrono::steady_clock::now();
      const Captured c = bb_->forward(sub, att_, full, fo_);
      seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (std::size_t s = 0; s < sub.size(); ++s) {
        Entry e;
        const std::int64_t r0 = c.offsets[s], n = c.offsets[s + 1] - r0;
        e.length = n;
        auto row = [&](std::int64_t token, std::int64_t layer) {
          return c.states.data() + ((r0 + token) * L + layer) * d;
        };
        const std::int64_t first_layer_last = needs_.all_layers_last ? 0 : L - 1;
        const std::int64_t first_layer_mean = needs_.all_layers_mean ? 0 : L - 1;
        if (needs_.last_token)
          for (std::int64_t l = first_layer_last; l < L; ++l)
            e.last.insert(e.last.end(), row(n - 1, l), row(n - 1, l) + d);
        if (needs_.mean) {
          const std::int64_t from = sub.pool_start(s);
          if (from < 0 || from >= n)
            throw input_error("sequence " + std::to_string(which[i0 + s]) + ": pool_from " +
                              std::to_string(from) + " leaves no token to average (length " +
                              std::to_string(n) + ")");
          std::vector<double> acc(static_cast<std::size_t>(d));
          for (std::int64_t l = first_layer_mean; l < L; ++l) {
            std::fill(acc.begin(), acc.end(), 0.0);
            for (std::int64_t t = from; t < n; ++t) {
              const float* x = row(t, l);
              for (std::int64_t j = 0; j < d; ++j) acc[j] += x[j];
            }
            for (std::int64_t j = 0; j < d; ++j)
              e.mean.push_back(static_cast<float>(acc[j] / static_cast<double>(n - from)));
          }
        }
        if (needs_.all_tokens)
          for (std::int64_t t = 0; t < n; ++t)
            e.tokens.insert(e.tokens.end(), row(t, L - 1), row(t, L - 1) + d);
        bytes_ += static_cast<std::int64_t>(sizeof(float) *
                                            (e.last.size() + e.mean.size() + e.tokens.size()));
        entries_.push_back(std::move(e));
      }
    }
  }

  const Backbone* bb_;
  AttentionKind att_;
  PassNeeds needs_;
  ForwardOptions fo_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<Entry> entries_;
  double seconds_ = 0;
  std::int64_t served_ = 0, bytes_ = 0;
};

}  // namespace lmembed::compare
