// lmembed/tokenizer/bpe.hpp - Tokenizer's merge-rank BPE encoder (GGUF "gpt2", Hugging Face BPE):
// merge rules, Hugging Face normalizers, pre-tokenized words, and merges by rank (lowest first,
// leftmost on ties) on bytes or characters.
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

#include "lmembed/core/error.hpp"
#include "lmembed/tokenizer/norm_step.hpp"
#include "lmembed/tokenizer/pretokenize.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/tokenizer/unicode.hpp"

namespace lmembed {

inline void Tokenizer::add_merge(std::string_view a, std::string_view b, std::int32_t rank) {
  const std::int32_t ia = token_id(a), ib = token_id(b);
  if (ia < 0 || ib < 0) return;
  std::string ab;
  ab.reserve(a.size() + b.size());
  ab.append(a).append(b);
  const std::int32_t iab = token_id(ab);
  if (iab < 0) return;  // a merge whose result is no token can never be emitted
  merges_.insert(ia, ib, rank, iab);
}

// Hugging Face normalizers, then Metaspace / ByteLevel prefix handling.
inline std::string Tokenizer::normalize(std::string_view piece, bool first) const {
  std::string s(piece);
  for (const detail::NormStep& n : normalizer_) {
    switch (n.kind) {
      case detail::NormStep::Kind::prepend:
        if (!s.empty()) s.insert(0, n.a);
        break;
      case detail::NormStep::Kind::replace: {
        if (n.a.empty()) break;
        std::string r;
        r.reserve(s.size());
        std::size_t start = 0;
        for (std::size_t m = s.find(n.a); m != std::string::npos; m = s.find(n.a, start)) {
          r.append(s, start, m - start).append(n.b);
          start = m + n.a.size();
        }
        r.append(s, start, std::string::npos);
        s.swap(r);
        break;
      }
      case detail::NormStep::Kind::lowercase: {
        std::string r;
        r.reserve(s.size());
        for (std::size_t pos = 0; pos < s.size();)
          detail::unicode::append_utf8(
              r, detail::unicode::to_lower(detail::unicode::next_cpt(s, pos)));
        s.swap(r);
        break;
      }
      case detail::NormStep::Kind::nfc:
        s = detail::unicode::nfc(s);
        break;
    }
  }
  if (metaspace_) {  // HF Metaspace: spaces become U+2581, then the prefix unless present
    std::string r;
    const bool prepend = metaspace_prepend_ == 2 || (metaspace_prepend_ == 1 && first);
    if (prepend && !(!s.empty() && s[0] == ' ') &&
        !(s.size() >= 3 && s.compare(0, 3, "\xe2\x96\x81") == 0))
      r += "\xe2\x96\x81";
    for (char c : s) {
      if (c == ' ')
        r += "\xe2\x96\x81";
      else
        r.push_back(c);
    }
    s.swap(r);
  }
  if (byte_level_prefix_space_ && !s.empty() && s[0] != ' ') s.insert(0, " ");
  return s;
}

inline void Tokenizer::encode_bpe(std::string_view piece, bool first, Scratch& s,
                                  std::vector<std::int32_t>& out) const {
  std::string_view text = piece;
  if (!normalizer_.empty() || metaspace_ || byte_level_prefix_space_) {
    s.norm = normalize(piece, first);
    text = s.norm;
  }
  if (text.empty()) return;
  const std::string_view used = detail::decode_text(text, s.cps, s.offsets, s.clean);
  if (pre_.steps.empty()) {
    bpe_word(used, s, out);
    return;
  }
  for (const detail::Segment& seg : pre_.split(s.cps))
    bpe_word(used.substr(s.offsets[seg.first], s.offsets[seg.second] - s.offsets[seg.first]), s,
             out);
}

// One word: initial symbols, then merges by rank (lowest first, leftmost on ties).
inline void Tokenizer::bpe_word(std::string_view word, Scratch& s,
                                std::vector<std::int32_t>& out) const {
  if (word.empty()) return;
  std::vector<std::int32_t>& ids = s.ids;
  ids.clear();
  if (byte_level_) {
    if (ignore_merges_) {
      if (auto it = raw_to_id_.find(word); it != raw_to_id_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    for (char c : word) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
  } else {
    if (ignore_merges_) {
      if (const std::int32_t id = token_to_id_.find(word); id >= 0) {
        out.push_back(id);
        return;
      }
    }
    // Characters; those not in the vocabulary become <0xNN> tokens (byte_fallback) or unk.
    for (std::size_t off = 0; off < word.size();) {
      const std::size_t len = std::min(
          detail::unicode::utf8_len(static_cast<unsigned char>(word[off])), word.size() - off);
      const std::string_view ch = word.substr(off, len);
      off += len;
      if (const std::int32_t id = token_to_id_.find(ch); id >= 0) {
        ids.push_back(id);
        continue;
      }
      bool done = false;
      if (byte_fallback_) {
        done = true;
        for (char c : ch)
          if (byte_ids_[static_cast<unsigned char>(c)] < 0) done = false;
        if (done)
          for (char c : ch) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
      }
      if (!done) {
        if (unk_ < 0)
          throw input_error(source_ + ": character '" + std::string(ch) +
                            "' is not in the vocabulary and the model has no unknown token");
        if (!(fuse_unk_ && !ids.empty() && ids.back() == unk_)) ids.push_back(unk_);
      }
    }
  }
  merge(ids, s);
  for (std::int32_t id : ids)
    if (id >= 0) out.push_back(id);  // -1: a byte with no symbol token (dropped, as llama.cpp)
}

// Applies merges to `ids` in place.
inline void Tokenizer::merge(std::vector<std::int32_t>& ids, Scratch& s) const {
  const std::size_t n = ids.size();
  if (n < 2) return;
  constexpr std::int32_t kNone = std::numeric_limits<std::int32_t>::max();
  if (n <= 48) {
    // Short words: keep each adjacent pair's rank in an array; one scan per merge.
    std::array<std::int32_t, 48> rank{};
    std::array<std::int32_t, 48> res{};
    std::size_t m = n;
    auto look = [&](std::size_t i) {
      const auto* e = merges_.find(ids[i], ids[i + 1]);
      rank[i] = e ? e->rank : kNone;
      res[i] = e ? e->id : -1;
    };
    for (std::size_t i = 0; i + 1 < m; ++i) look(i);
    while (m > 1) {
      std::size_t best = 0;
      for (std::size_t i = 1; i + 1 < m; ++i)
        if (rank[i] < rank[best]) best = i;
      if (rank[best] == kNone) break;
      ids[best] = res[best];
      for (std::size_t i = best + 1; i + 1 < m; ++i) {
        ids[i] = ids[i + 1];
        rank[i] = rank[i + 1];
        res[i] = res[i + 1];
      }
      --m;
      if (best > 0) look(best - 1);
      if (best + 1 < m) look(best);
    }
    ids.resize(m);
    return;
  }
  // Long words: a priority queue of merge candidates, stale entries skipped on pop.
  struct Cand {
    std::int32_t rank, left, right, lid, rid;
  };
  auto worse = [](const Cand& a, const Cand& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> queue(worse);
  std::vector<std::int32_t>& prev = s.prev;
  std::vector<std::int32_t>& next = s.next;
  prev.resize(n);
  next.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<std::int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
  }
  auto push = [&](std::int32_t l, std::int32_t r) {
    if (l < 0 || r < 0) return;
    const auto* e =
        merges_.find(ids[static_cast<std::size_t>(l)], ids[static_cast<std::size_t>(r)]);
    if (e)
      queue.push(
          Cand{e->rank, l, r, ids[static_cast<std::size_t>(l)], ids[static_cast<std::size_t>(r)]});
  };
  for (std::size_t i = 0; i + 1 < n; ++i)
    push(static_cast<std::int32_t>(i), static_cast<std::int32_t>(i + 1));
  constexpr std::int32_t kDead = -2;
  while (!queue.empty()) {
    const Cand c = queue.top();
    queue.pop();
    const auto l = static_cast<std::size_t>(c.left), r = static_cast<std::size_t>(c.right);
    if (ids[l] != c.lid || ids[r] != c.rid || next[l] != c.right) continue;  // outdated
    const auto* e = merges_.find(c.lid, c.rid);
    ids[l] = e->id;
    ids[r] = kDead;
    next[l] = next[r];
    if (next[r] >= 0) prev[static_cast<std::size_t>(next[r])] = c.left;
    push(prev[l], c.left);
    push(c.left, next[l]);
  }
  std::size_t w = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (ids[i] != kDead) ids[w++] = ids[i];
  ids.resize(w);
}

}  // namespace lmembed
