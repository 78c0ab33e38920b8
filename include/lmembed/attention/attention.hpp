// lmembed/attention/attention.hpp - the attention policies of the backbone.
//
// The paper compares causal (the LLM as trained) with bidirectional attention (every token of
// a sequence sees every other token of that sequence). The policy is a compile-time tag so the
// mask test compiles away in the attention kernel; AttentionKind selects it at run time (CLI).
#pragma once

#include <string>
#include <string_view>

#include "lmembed/core/error.hpp"

namespace lmembed {

namespace attention {

/// Token i attends to tokens j <= i of its own sequence (the decoder as pretrained).
struct causal {
  static constexpr const char* name = "causal";
  static constexpr bool is_causal = true;
};

/// Token i attends to every token of its own sequence.
struct bidirectional {
  static constexpr const char* name = "bidirectional";
  static constexpr bool is_causal = false;
};

}  // namespace attention

/// Run-time choice between the attention policies (the CLI's --attention).
enum class AttentionKind { causal, bidirectional };

/// "causal" | "bidirectional".
inline const char* to_string(AttentionKind k) {
  return k == AttentionKind::causal ? attention::causal::name : attention::bidirectional::name;
}

/// Parses "causal" or "bidirectional"; config_error listing the valid names otherwise.
inline AttentionKind parse_attention(std::string_view s) {
  if (s == attention::causal::name) return AttentionKind::causal;
  if (s == attention::bidirectional::name) return AttentionKind::bidirectional;
  throw config_error("unknown attention '" + std::string(s) + "' (valid: causal, bidirectional)");
}

/// The AttentionKind of a policy tag.
template <class Attention>
constexpr AttentionKind attention_kind_of() {
  return Attention::is_causal ? AttentionKind::causal : AttentionKind::bidirectional;
}

}  // namespace lmembed
