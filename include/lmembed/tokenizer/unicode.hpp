// lmembed/tokenizer/unicode.hpp - UTF-8 decoding, code point properties and GPT-2's byte <->
// unicode mapping, as the tokenizers need them.
//
// Invalid UTF-8 (documented in docs/tokenizer.md): decode_utf8 follows llama.cpp's decoder, so that
// byte-level BPE gives llama.cpp's ids on any input. A lead byte starts a sequence of the length
// its high bits announce; if a byte of that sequence is missing or is not a continuation byte, the
// lead byte alone becomes U+FFFD and decoding resumes at the next byte. Overlong forms and
// surrogates are decoded as written (as llama.cpp does); code points above U+10FFFF have no
// properties (kUndefined).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/tokenizer/unicode_tables.hpp"

namespace lmembed::detail::unicode {

/// The replacement character that invalid UTF-8 bytes decode to.
inline constexpr std::uint32_t kReplacement = 0xFFFD;

/// Length of the UTF-8 sequence that byte `b` starts, from its high bits only (1 for ASCII and
/// for stray continuation bytes), like llama.cpp's unicode_len_utf8.
inline constexpr std::size_t utf8_len(unsigned char b) noexcept {
  constexpr std::uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[b >> 4];
}

/// Decodes one code point at `pos` (advancing it); invalid sequences consume one byte and give
/// U+FFFD (see the header comment).
inline std::uint32_t next_cpt(std::string_view s, std::size_t& pos) noexcept {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(pos);
  const auto cont = [&](std::size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  if (c < 0x80) {
    ++pos;
    return c;
  }
  if ((c & 0x40) == 0) {  // stray continuation byte
    ++pos;
    return kReplacement;
  }
  if ((c & 0x20) == 0) {
    if (!cont(pos + 1)) {
      ++pos;
      return kReplacement;
    }
    std::uint32_t r = ((c & 0x1Fu) << 6) | (b(pos + 1) & 0x3Fu);
    pos += 2;
    return r;
  }
  if ((c & 0x10) == 0) {
    if (!cont(pos + 1) || !cont(pos + 2)) {
      ++pos;
      return kReplacement;
    }
    std::uint32_t r = ((c & 0x0Fu) << 12) | ((b(pos + 1) & 0x3Fu) << 6) | (b(pos + 2) & 0x3Fu);
    pos += 3;
    return r;
  }
  if ((c & 0x08) == 0) {
    if (!cont(pos + 1) || !cont(pos + 2) || !cont(pos + 3)) {
      ++pos;
      return kReplacement;
    }
    std::uint32_t r = ((c & 0x07u) << 18) | ((b(pos + 1) & 0x3Fu) << 12) |
                      ((b(pos + 2) & 0x3Fu) << 6) | (b(pos + 3) & 0x3Fu);
    pos += 4;
    return r;
  }
  ++pos;  // 0xF8..0xFF never start a sequence
  return kReplacement;
}

/// Appends the UTF-8 encoding of `cpt` (code points above U+10FFFF are written as U+FFFD).
inline void append_utf8(std::string& out, std::uint32_t cpt) {
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt <= 0x10FFFF) {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    append_utf8(out, kReplacement);
  }
}

/// The UTF-8 encoding of one code point.
inline std::string to_utf8(std::uint32_t cpt) {
  std::string s;
  append_utf8(s, cpt);
  return s;
}

namespace detail_tables {
/// Flags of every BMP code point, expanded once from the runs (thread-safe static init).
inline const std::vector<std::uint16_t>& bmp_flags() {
  static const std::vector<std::uint16_t> table = [] {
    std::vector<std::uint16_t> t(0x10000);
    constexpr std::size_t n = sizeof(kFlagRuns) / sizeof(kFlagRuns[0]);
    for (std::size_t i = 0; i < n && kFlagRuns[i].first < 0x10000; ++i) {
      const std::uint32_t end =
          i + 1 < n ? std::min<std::uint32_t>(kFlagRuns[i + 1].first, 0x10000) : 0x10000;
      for (std::uint32_t c = kFlagRuns[i].first; c < end; ++c) t[c] = kFlagRuns[i].flags;
    }
    return t;
  }();
  return table;
}
}  // namespace detail_tables

/// The property flags (Flag bits) of a code point.
inline std::uint16_t flags(std::uint32_t cpt) {
  if (cpt < 0x10000) return detail_tables::bmp_flags()[cpt];
  if (cpt > 0x10FFFF) return kUndefined;
  const auto* end = std::end(kFlagRuns);
  const auto* it = std::upper_bound(std::begin(kFlagRuns), end, cpt,
                                    [](std::uint32_t c, const FlagRun& r) { return c < r.first; });
  return (it - 1)->flags;
}

inline bool is_letter(std::uint32_t c) {
  return flags(c) & kLetter;
}
inline bool is_number(std::uint32_t c) {
  return flags(c) & kNumber;
}
inline bool is_whitespace(std::uint32_t c) {
  return flags(c) & kWhitespace;
}
inline bool is_punctuation(std::uint32_t c) {
  return flags(c) & kPunctuation;
}

/// Simple lowercase mapping (UnicodeData.txt field 13); the code point itself when it has none.
inline std::uint32_t to_lower(std::uint32_t cpt) {
  if (cpt < 0x80) return (cpt >= 'A' && cpt <= 'Z') ? cpt + 32 : cpt;
  const auto* end = std::end(kLowercase);
  const auto* it = std::lower_bound(std::begin(kLowercase), end, cpt,
                                    [](const CaseMap& m, std::uint32_t c) { return m.from < c; });
  return (it != end && it->from == cpt) ? it->to : cpt;
}

/// GPT-2's reversible byte -> code point mapping: printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100.. in byte order (OpenAI's bytes_to_unicode).
inline const std::array<std::uint32_t, 256>& byte_to_cpt() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    std::uint32_t n = 0;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? b : 256 + n++;
    }
    return t;
  }();
  return table;
}

/// Inverse of byte_to_cpt: the byte for a code point, or -1 when the code point is not one of the
/// 256 images.
inline int cpt_to_byte(std::uint32_t cpt) {
  static const std::array<std::int16_t, 324> table = [] {
    std::array<std::int16_t, 324> t{};
    t.fill(-1);
    for (int b = 0; b < 256; ++b)
      t[byte_to_cpt()[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
    return t;
  }();
  return cpt < table.size() ? table[cpt] : -1;
}

/// Canonical combining class of a code point (0 for starters).
inline std::uint8_t combining_class(std::uint32_t cpt) {
  if (cpt < 0x300) return 0;
  const auto* end = std::end(kCombiningClass);
  const auto* it = std::lower_bound(std::begin(kCombiningClass), end, cpt,
                                    [](const CccEntry& e, std::uint32_t c) { return e.cpt < c; });
  return (it != end && it->cpt == cpt) ? it->ccc : 0;
}

namespace detail_nfc {
inline constexpr std::uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
inline constexpr std::uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
inline constexpr std::uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Appends the full canonical decomposition of c.
inline void decompose(std::uint32_t c, std::vector<std::uint32_t>& out) {
  if (c >= kSBase && c < kSBase + kSCount) {  // Hangul syllable, algorithmic
    const std::uint32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (c >= 0xC0) {
    const auto* end = std::end(kDecompositions);
    const auto* it =
        std::lower_bound(std::begin(kDecompositions), end, c,
                         [](const Decomposition& d, std::uint32_t x) { return d.cpt < x; });
    if (it != end && it->cpt == c) {
      decompose(it->first, out);
      if (it->second) decompose(it->second, out);
      return;
    }
  }
  out.push_back(c);
}

// The primary composite of (a, b), or 0.
inline std::uint32_t compose(std::uint32_t a, std::uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto* end = std::end(kCompositions);
  const auto* it = std::lower_bound(
      std::begin(kCompositions), end, std::pair<std::uint32_t, std::uint32_t>{a, b},
      [](const Composition& c, const std::pair<std::uint32_t, std::uint32_t>& k) {
        return c.first < k.first || (c.first == k.first && c.second < k.second);
      });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}
}  // namespace detail_nfc

/// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical
/// composition; UAX #15). Invalid UTF-8 bytes become U+FFFD first, except in text whose bytes
/// are all below 0xCC (code points below U+0300, already NFC), which is returned unchanged.
inline std::string nfc(std::string_view s) {
  bool simple = true;
  for (unsigned char b : s)
    if (b >= 0xCC) {  // a lead byte of U+0300 or above (or an invalid byte)
      simple = false;
      break;
    }
  if (simple) return std::string(s);
  std::vector<std::uint32_t> d;
  d.reserve(s.size());
  for (std::size_t pos = 0; pos < s.size();) detail_nfc::decompose(next_cpt(s, pos), d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (std::size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(
        d.begin() + static_cast<std::ptrdiff_t>(i), d.begin() + static_cast<std::ptrdiff_t>(j),
        [](std::uint32_t a, std::uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition.
  if (!d.empty()) {
    std::size_t starter = 0, w = 1;
    int last_class = combining_class(d[0]) ? 256 : 0;
    for (std::size_t i = 1; i < d.size(); ++i) {
      const std::uint32_t c = d[i];
      const int cls = combining_class(c);
      const std::uint32_t comp = detail_nfc::compose(d[starter], c);
      if (comp && (last_class < cls || last_class == 0) && combining_class(d[starter]) == 0) {
        d[starter] = comp;
        continue;
      }
      if (cls == 0) starter = w;
      last_class = cls;
      d[w++] = c;
    }
    d.resize(w);
  }
  std::string out;
  out.reserve(s.size());
  for (std::uint32_t c : d) append_utf8(out, c);
  return out;
}

}  // namespace lmembed::detail::unicode
