// lmembed/tokenizer/special_tokens.hpp - Tokenizer's special tokens: attributes of GGUF token
// types, end-of-generation tokens forced to control, the longest-first list of special tokens,
// and the split of a text on them (llama.cpp's tokenizer_st_partition).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/tokenizer/vocab.hpp"

namespace lmembed {

inline std::uint8_t Tokenizer::attr_of_type(std::int32_t type) {
  switch (type) {
    case 1:
      return detail::kAttrNormal;
    case 2:
      return detail::kAttrUnknown;
    case 3:
      return detail::kAttrControl;
    case 4:
      return detail::kAttrUserDefined;
    case 5:
      return detail::kAttrUnused;
    case 6:
      return detail::kAttrByte;
    default:
      return 0;  // undefined: never matched as special, rendered as nothing
  }
}

// llama.cpp forces end-of-generation looking tokens to control type.
inline void Tokenizer::force_eog_control() {
  static constexpr std::string_view eog[] = {"<|eot_id|>",      "<|im_end|>",    "<|end|>",
                                             "<end_of_turn>",   "<|endoftext|>", "<|eom_id|>",
                                             "<|end_of_text|>", "<EOT>",         "_<EOT>"};
  for (std::size_t i = 0; i < tokens_.size(); ++i)
    for (std::string_view e : eog)
      if (tokens_[i] == e) attrs_[i] = static_cast<std::uint8_t>(attrs_[i] | detail::kAttrControl);
}

inline void Tokenizer::build_maps() {
  token_to_id_.build(tokens_);  // later duplicates win (llama.cpp)
  specials_.clear();
  for (std::size_t i = 0; i < tokens_.size(); ++i)
    if (attrs_[i] & (detail::kAttrControl | detail::kAttrUserDefined | detail::kAttrUnknown))
      specials_.push_back(static_cast<std::int32_t>(i));
  std::stable_sort(specials_.begin(), specials_.end(), [&](std::int32_t a, std::int32_t b) {
    return tokens_[static_cast<std::size_t>(a)].size() >
           tokens_[static_cast<std::size_t>(b)].size();
  });
}

// Splits the text on special tokens, longest token first (llama.cpp's tokenizer_st_partition).
inline std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text,
                                                             bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back(Fragment{0, text.size(), -1});
  std::vector<Fragment> next;
  for (std::int32_t id : specials_) {
    const std::uint8_t a = attrs_[static_cast<std::size_t>(id)];
    if (!parse_special && (a & (detail::kAttrControl | detail::kAttrUnknown))) continue;
    const std::string& tok = tokens_[static_cast<std::size_t>(id)];
    next.clear();
    bool changed = false;
    for (const Fragment& f : frags) {
      if (f.token >= 0 || f.length < tok.size()) {
        next.push_back(f);
        continue;
      }
      const std::string_view region = text.substr(f.offset, f.length);
      std::size_t start = 0;
      for (std::size_t m = region.find(tok); m != std::string_view::npos;
           m = region.find(tok, start)) {
        if (m > start) next.push_back(Fragment{f.offset + start, m - start, -1});
        next.push_back(Fragment{f.offset + m, tok.size(), id});
        start = m + tok.size();
        changed = true;
      }
      if (start < f.length) next.push_back(Fragment{f.offset + start, f.length - start, -1});
    }
    if (changed) frags.swap(next);
  }
  return frags;
}

}  // namespace lmembed
