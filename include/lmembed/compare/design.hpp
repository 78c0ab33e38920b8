// lmembed/compare/design.hpp - the named embedding designs that `lmembed compare` compares.
//
// A design is one point of the seed paper's grid (Tang & Yang 2024, arXiv 2409.02727):
// an attention policy for the frozen backbone, a pooling, the hidden states that pooling
// consumes (its CaptureSpec) and, for trainable poolings, which head is trained. The names are
// the CLI's (`--designs eos-causal,...`), the results.json keys and the report's labels.
#pragma once

#include <algorithm>
#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"

namespace lmembed::compare {

/// Which trainable module a design trains (none for the parameter-free poolings).
enum class HeadKind : std::uint8_t {
  none,         ///< eos / mean: nothing to train
  latent,       ///< NV-Embed latent-attention pooling over all last-layer tokens
  multi_layer,  ///< the paper's multi-layer trainable pooling (PerceiverResampler)
};

/// "none" | "latent" | "multi_layer".
constexpr std::string_view to_string(HeadKind h) {
  return h == HeadKind::none ? "none" : h == HeadKind::latent ? "latent" : "multi_layer";
}

/// One embedding design: what the backbone runs, what it captures and how it is pooled.
struct Design {
  std::string_view name;       ///< CLI / results.json / report name, e.g. "eos-causal"
  std::string_view paper;      ///< the paper's label ("model 1" ...), or "" if not in it
  std::string_view attention;  ///< "causal" | "bidirectional" (attention::causal::name ...)
  std::string_view
      pooling;          ///< a pooling policy name (pooling::names): "eos", "multi_layer_eos" ...
  CaptureSpec capture;  ///< exactly the states the pooling consumes
  HeadKind head;        ///< the trainable module, or none
  std::string_view summary;  ///< one sentence for the report

  /// True when a head must be trained before evaluation.
  constexpr bool trainable() const { return head != HeadKind::none; }
  /// True for bidirectional attention.
  constexpr bool bidirectional() const { return attention == "bidirectional"; }
};

namespace detail {
inline constexpr CaptureSpec kLastLast{CaptureLayers::last, CaptureTokens::last};
inline constexpr CaptureSpec kLastMean{CaptureLayers::last, CaptureTokens::mean};
inline constexpr CaptureSpec kLastAll{CaptureLayers::last, CaptureTokens::all};
inline constexpr CaptureSpec kAllLast{CaptureLayers::all, CaptureTokens::last};
inline constexpr CaptureSpec kAllMean{CaptureLayers::all, CaptureTokens::mean};
}  // namespace detail

/// Every design `lmembed compare` knows, the paper's first (in its order), then the extras.
inline constexpr std::array<Design, 10> kDesigns{{
    {"eos-causal", "model 1", "causal", "eos", detail::kLastLast, HeadKind::none,
     "causal attention, last-layer EOS state (the usual decoder embedding; the baseline)"},
    {"lastlayer-causal", "model 2", "causal", "multi_layer_eos", detail::kLastLast,
     HeadKind::multi_layer,
     "causal attention, the multi-layer trainable pooling fed only the last-layer EOS state "
     "(L = 1)"},
    {"multilayer-causal", "model 3", "causal", "multi_layer", detail::kAllLast,
     HeadKind::multi_layer,
     "causal attention, the multi-layer trainable pooling over the EOS state of every layer"},
    {"latent-bidirectional", "model 4 (text)", "bidirectional", "latent", detail::kLastAll,
     HeadKind::latent,
     "bidirectional attention, NV-Embed latent-attention pooling over all last-layer tokens "
     "(model 4 as the paper's text describes it)"},
    {"perceiver-tokens-bidirectional", "model 4 (code)", "bidirectional", "multi_layer_tokens",
     detail::kLastAll, HeadKind::multi_layer,
     "bidirectional attention, the multi-layer module cross-attending to all last-layer tokens "
     "(model 4 as the paper's code builds it)"},
    {"multilayer-bidirectional", "model 5", "bidirectional", "multi_layer_mean", detail::kAllMean,
     HeadKind::multi_layer,
     "bidirectional attention, the multi-layer trainable pooling over the per-layer token "
     "means"},
    {"mean-causal", "", "causal", "mean", detail::kLastMean, HeadKind::none,
     "causal attention, mean of the last layer over the text's tokens"},
    {"mean-bidirectional", "", "bidirectional", "mean", detail::kLastMean, HeadKind::none,
     "bidirectional attention, mean of the last layer over the text's tokens"},
    {"eos-bidirectional", "", "bidirectional", "eos", detail::kLastLast, HeadKind::none,
     "bidirectional attention, last-layer EOS state"},
    {"latent-causal", "", "causal", "latent", detail::kLastAll, HeadKind::latent,
     "causal attention, NV-Embed latent-attention pooling over all last-layer tokens"},
}};

/// The baseline every significance mark in the report is against.
inline constexpr std::string_view kBaseline = "eos-causal";

/// The design named `name`; config_error listing the valid names otherwise.
inline const Design& find_design(std::string_view name) {
  for (const Design& d : kDesigns)
    if (d.name == name) return d;
  std::string valid;
  for (const Design& d : kDesigns) valid += (valid.empty() ? "" : ", ") + std::string(d.name);
  throw config_error("unknown design '" + std::string(name) + "' (valid: " + valid +
                     "; groups: paper, all, extra)");
}

/// Expands a comma-separated list of design names and groups into designs, in registry order
/// with duplicates removed. Groups: `paper` (the paper's five, with model 4 in both forms),
/// `extra` (the four designs beyond the paper), `all`. config_error on an unknown name or an
/// empty list.
inline std::vector<Design> parse_designs(std::string_view list) {
  std::vector<bool> chosen(kDesigns.size(), false);
  std::size_t start = 0;
  bool any = false;
  while (start <= list.size()) {
    std::size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    std::string_view item = list.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      any = true;
      for (std::size_t i = 0; i < kDesigns.size(); ++i) {
        const bool in_paper = !kDesigns[i].paper.empty();
        if ((item == "paper" && in_paper) || (item == "extra" && !in_paper) || item == "all")
          chosen[i] = true;
      }
      if (item != "paper" && item != "extra" && item != "all") {
        const Design& d = find_design(item);
        chosen[static_cast<std::size_t>(&d - kDesigns.data())] = true;
      }
    }
    start = end + 1;
  }
  if (!any) throw config_error("--designs: empty list (e.g. paper,mean-causal)");
  std::vector<Design> out;
  for (std::size_t i = 0; i < kDesigns.size(); ++i)
    if (chosen[i]) out.push_back(kDesigns[i]);
  return out;
}

/// The key under which a design's cached hidden states are stored: designs with the same
/// attention and CaptureSpec consume exactly the same states and share one cache.
inline std::string cache_key(const Design& d) {
  return std::string(d.attention) + "." + to_string(d.capture);
}

}  // namespace lmembed::compare
