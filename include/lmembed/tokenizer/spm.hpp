// lmembed/tokenizer/spm.hpp - Tokenizer's SentencePiece-BPE encoder (GGUF model "llama"): spaces
// escaped to U+2581, adjacent pieces merged by token score, <0xNN> byte fallback (llama.cpp's
// llm_tokenizer_spm).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/tokenizer/unicode.hpp"

namespace lmembed {

// Whether no token holds U+2581 right after a character other than U+2581.
inline bool Tokenizer::no_inner_metaspace() const {
  for (const std::string& t : tokens_)
    for (std::size_t p = t.find("\xe2\x96\x81", 1); p != std::string::npos;
         p = t.find("\xe2\x96\x81", p + 1))
      if (p < 3 || t.compare(p - 3, 3, "\xe2\x96\x81") != 0) return false;
  return true;
}

inline void Tokenizer::encode_spm(std::string_view piece, bool prefix_space, Scratch& s,
                                  std::vector<std::int32_t>& out) const {
  std::string& text = s.escaped;
  text.clear();
  text.reserve(piece.size() + 8);
  if (prefix_space) text += "\xe2\x96\x81";
  for (char c : piece) {
    if (c == ' ')
      text += "\xe2\x96\x81";
    else
      text.push_back(c);
  }
  if (text.empty()) return;
  if (!spm_split_) {
    spm_segment(text, out);
    return;
  }
  // No token holds U+2581 after another character (checked at load), so no merge can cross
  // the start of a U+2581 that follows another character: the pieces between such starts
  // are tokenized independently, with the same result and small, cache-resident work.
  std::size_t start = 0;
  for (std::size_t i = 3; i + 3 <= text.size(); ++i) {
    if (text.compare(i, 3, "\xe2\x96\x81") == 0 && text.compare(i - 3, 3, "\xe2\x96\x81") != 0) {
      spm_segment(std::string_view(text).substr(start, i - start), out);
      start = i;
    }
  }
  spm_segment(std::string_view(text).substr(start), out);
}

// One SPM segment: merges by token score (highest first, leftmost on ties), as llama.cpp's
// llm_tokenizer_spm_session; short segments scan an array, long ones use a priority queue.
inline void Tokenizer::spm_segment(std::string_view text, std::vector<std::int32_t>& out) const {
  if (text.empty()) return;
  std::size_t nsym = 0;
  for (std::size_t off = 0; off < text.size(); ++nsym)
    off += detail::unicode::utf8_len(static_cast<unsigned char>(text[off]));
  if (nsym <= 32) {
    std::array<std::uint32_t, 33> start{};
    std::array<float, 32> score{};  // score of the pair (i, i+1); -inf when not a token
    std::size_t m = 0;
    for (std::size_t off = 0; off < text.size(); ++m) {
      start[m] = static_cast<std::uint32_t>(off);
      off = std::min(off + detail::unicode::utf8_len(static_cast<unsigned char>(text[off])),
                     text.size());
    }
    start[m] = static_cast<std::uint32_t>(text.size());
    constexpr float kNo = -std::numeric_limits<float>::infinity();
    std::array<bool, 32> ok{};
    auto look = [&](std::size_t i) {
      const std::int32_t id = token_to_id_.find(text.substr(start[i], start[i + 2] - start[i]));
      ok[i] = id >= 0;
      score[i] = id >= 0 ? scores_[static_cast<std::size_t>(id)] : kNo;
    };
    for (std::size_t i = 0; i + 1 < m; ++i) look(i);
    while (m > 1) {
      std::size_t best = m;
      for (std::size_t i = 0; i + 1 < m; ++i)
        if (ok[i] && (best == m || score[i] > score[best])) best = i;
      if (best == m) break;
      for (std::size_t i = best + 1; i < m; ++i) start[i] = start[i + 1];
      for (std::size_t i = best + 1; i + 1 < m; ++i) {
        score[i] = score[i + 1];
        ok[i] = ok[i + 1];
      }
      --m;
      if (best > 0) look(best - 1);
      if (best + 1 < m) look(best);
    }
    for (std::size_t i = 0; i < m; ++i)
      spm_emit(text.substr(start[i], start[i + 1] - start[i]), out);
    return;
  }
  // Symbols: [start, start + len) of `text`, linked left-to-right.
  struct Sym {
    std::uint32_t start, len;
    std::int32_t prev, next;
  };
  std::vector<Sym> sym;
  sym.reserve(text.size());
  for (std::size_t off = 0; off < text.size();) {
    const std::size_t len = std::min(
        detail::unicode::utf8_len(static_cast<unsigned char>(text[off])), text.size() - off);
    const auto idx = static_cast<std::int32_t>(sym.size());
    sym.push_back(Sym{static_cast<std::uint32_t>(off), static_cast<std::uint32_t>(len), idx - 1,
                      off + len == text.size() ? -1 : idx + 1});
    off += len;
  }
  struct Bigram {
    float score;
    std::int32_t left, right;
    std::uint32_t size;
  };
  // Highest score first, then leftmost (llama.cpp's llm_bigram_spm comparator).
  auto worse = [](const Bigram& l, const Bigram& r) {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  auto try_add = [&](std::int32_t l, std::int32_t r) {
    if (l < 0 || r < 0) return;
    const Sym& a = sym[static_cast<std::size_t>(l)];
    const Sym& b = sym[static_cast<std::size_t>(r)];
    const std::string_view cat(text.data() + a.start, a.len + b.len);
    const std::int32_t id = token_to_id_.find(cat);
    if (id < 0) return;
    queue.push(Bigram{scores_[static_cast<std::size_t>(id)], l, r, a.len + b.len});
  };
  for (std::size_t i = 1; i < sym.size(); ++i)
    try_add(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Sym& l = sym[static_cast<std::size_t>(bg.left)];
    Sym& r = sym[static_cast<std::size_t>(bg.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;  // outdated
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<std::size_t>(r.next)].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }
  for (std::int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next) {
    const Sym& x = sym[static_cast<std::size_t>(i)];
    spm_emit(std::string_view(text.data() + x.start, x.len), out);
  }
}

// A final SPM symbol: its token, or (merged symbols always are tokens) byte fallback.
inline void Tokenizer::spm_emit(std::string_view str, std::vector<std::int32_t>& out) const {
  if (const std::int32_t id = token_to_id_.find(str); id >= 0) {
    out.push_back(id);
    return;
  }
  for (char c : str) {
    const std::int32_t b = byte_ids_[static_cast<unsigned char>(c)];
    if (b >= 0)
      out.push_back(b);
    else if (unk_ >= 0)
      out.push_back(unk_);
  }
}

}  // namespace lmembed
