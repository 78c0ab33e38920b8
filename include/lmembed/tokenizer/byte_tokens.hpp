// lmembed/tokenizer/byte_tokens.hpp - Tokenizer's byte tokens: the initial symbol of each byte
// (its GPT-2 byte-level symbol or its <0xNN> token), byte-level tokens by the bytes they stand
// for, and the <0xNN> spelling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/tokenizer/unicode.hpp"

namespace lmembed {

// byte_ids_[b]: the initial symbol of byte b (byte-level: its GPT-2 symbol's token; otherwise
// the <0xNN> byte token). raw_to_id_: byte-level tokens by their decoded bytes (ignore_merges).
inline void Tokenizer::build_byte_ids() {
  for (int b = 0; b < 256; ++b) {
    std::int32_t id = -1;
    if (byte_level_) {
      id = token_id(
          detail::unicode::to_utf8(detail::unicode::byte_to_cpt()[static_cast<std::size_t>(b)]));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      id = token_id(buf);
      if (id < 0 && model_ == Model::spm) id = token_id(std::string(1, static_cast<char>(b)));
    }
    byte_ids_[static_cast<std::size_t>(b)] = id;
  }
  if (byte_level_ && ignore_merges_) {
    raw_to_id_.clear();
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      std::string raw;
      if (!byte_level_raw(tokens_[i], raw)) continue;
      raw_to_id_.emplace(std::move(raw), static_cast<std::int32_t>(i));
    }
  }
}

// The bytes a byte-level token text stands for; false when it holds a non-byte symbol.
inline bool Tokenizer::byte_level_raw(std::string_view text, std::string& raw) {
  raw.clear();
  for (std::size_t pos = 0; pos < text.size();) {
    const int b = detail::unicode::cpt_to_byte(detail::unicode::next_cpt(text, pos));
    if (b < 0) return false;
    raw.push_back(static_cast<char>(b));
  }
  return true;
}

inline bool Tokenizer::is_byte_token(std::string_view t) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
  };
  return t.size() == 6 && t.substr(0, 3) == "<0x" && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

}  // namespace lmembed
