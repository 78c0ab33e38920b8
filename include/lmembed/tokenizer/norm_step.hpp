// lmembed/tokenizer/norm_step.hpp - one Hugging Face normalizer step (Prepend, Replace,
// Lowercase, NFC) of a tokenizer.json BPE model; Tokenizer::normalize (bpe.hpp) applies them.
#pragma once

#include <string>

namespace lmembed::detail {

/// One Hugging Face normalizer step that BPE models use.
struct NormStep {
  enum class Kind { prepend, replace, lowercase, nfc } kind = Kind::prepend;
  std::string a;  // prepend: the prefix; replace: the pattern
  std::string b;  // replace: the content
};

}  // namespace lmembed::detail
