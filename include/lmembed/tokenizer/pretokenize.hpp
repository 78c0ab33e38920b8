// lmembed/tokenizer/pretokenize.hpp - the regex pre-tokenizers of byte-level BPE models, written
// by hand (no regex engine at run time).
//
// A pre-tokenizer is a list of steps. Each step is one regex applied, like llama.cpp's
// unicode_regex_split, to every segment left by the previous step: the segment is cut into the
// regex's successive leftmost matches and the unmatched gaps between them (both kept). The text is
// a sequence of code points; \s is the Unicode White_Space property and \p{L} \p{N} \p{P} are the
// general categories L*, N*, P* (tables in unicode_tables.hpp). Published patterns per name
// (llama.cpp src/llama-vocab.cpp, llm_tokenizer_bpe; Hugging Face tokenizer.json files):
//   gpt-2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2    the llama3 pattern with \p{N} instead of \p{N}{1,3}
//   smollm   \p{N} ; (gpt-2 pattern)
//   deepseek-llm    [\r\n] ; \s?[A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃]+ ;
//                   \s?[!-/:-~！-／：-～‘-‟　-。]+ ; \s+$ ;
//                   [一-龥ࠀ-一가-퟿]+ ; \p{N}+
//   deepseek-coder  [\r\n] ; \s?\p{L}+ ; \s?\p{P}+ ; [一-龥ࠀ-一가-퟿]+ ; \p{N}
//   default  [\p{P}\$\+<=>\^~\|]+ ; (gpt-2 pattern) ; \p{N}+ ; [0-9][0-9][0-9]
// Patterns without \p{..} (the explicit character classes of deepseek) see non-ASCII whitespace as
// U+000B, as llama.cpp's std::wregex path does, so e.g. U+3000 is whitespace there, not
// punctuation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/tokenizer/unicode.hpp"

namespace lmembed::detail {

/// A text decoded to code points, with each code point's property flags.
struct CodepointText {
  std::vector<std::uint32_t> cpts;
  std::vector<std::uint16_t> flags;
};

/// A segment [begin, end) in code point indices.
using Segment = std::pair<std::uint32_t, std::uint32_t>;

/// One split step of a pre-tokenizer.
struct SplitStep {
  enum class Kind {
    gpt2,         // the GPT-2 alternation
    llama3,       // the Llama-3 / Qwen2 alternation; max_digits = 3 or 1
    class_run,    // [\s?] CLASS (+ | {count}) [$]
    before_char,  // HF Metaspace split: a new segment starts at each `cpt` (MergedWithNext)
  };
  /// What a class_run's CLASS is.
  enum class Class {
    cr_lf,             // [\r\n]
    letters_deepseek,  // deepseek-llm's explicit letter ranges
    punct_deepseek,    // deepseek-llm's explicit punctuation ranges
    whitespace,        // \s
    cjk_deepseek,      // [一-龥ࠀ-一가-퟿]
    number,            // \p{N}
    letter,            // \p{L}
    punctuation,       // \p{P}
    punct_default,     // [\p{P}\$\+<=>\^~\|]
    ascii_digit,       // [0-9]
  };
  Kind kind = Kind::gpt2;
  int max_digits = 3;
  Class cls = Class::number;
  bool ws_prefix = false;  // a leading \s?
  int count = 0;           // 0: one or more; k > 0: exactly k
  bool at_end = false;     // anchored with $ (end of the segment)
  std::uint32_t cpt = 0;   // before_char's code point
};

/// A named list of split steps.
struct PreTokenizer {
  std::string name;
  std::vector<SplitStep> steps;

  /// The pre-tokenizer named `name` (tokenizer.ggml.pre values); config_error for unknown names.
  static PreTokenizer named(const std::string& name) {
    using K = SplitStep::Kind;
    using C = SplitStep::Class;
    PreTokenizer p;
    p.name = name;
    auto run = [](C c, bool ws = false, int count = 0, bool at_end = false) {
      SplitStep s;
      s.kind = K::class_run;
      s.cls = c;
      s.ws_prefix = ws;
      s.count = count;
      s.at_end = at_end;
      return s;
    };
    auto gpt2 = [] {
      SplitStep s;
      s.kind = K::gpt2;
      return s;
    };
    auto llama3 = [](int digits) {
      SplitStep s;
      s.kind = K::llama3;
      s.max_digits = digits;
      return s;
    };
    if (name == "gpt-2" || name == "gpt2" || name == "phi-2" || name == "mpt" || name == "olmo" ||
        name == "roberta-bpe" || name == "jina-es" || name == "jina-de") {
      p.steps = {gpt2()};
    } else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3" || name == "dbrx" ||
               name == "smaug-bpe" || name == "falcon3" || name == "pixtral") {
      p.steps = {llama3(3)};
    } else if (name == "qwen2" || name == "stablelm2" || name == "deepseek-r1-qwen" ||
               name == "megrez") {
      p.steps = {llama3(1)};
    } else if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r" ||
               name == "codeshell" || name == "exaone" || name == "minerva-7b" ||
               name == "mellum2") {
      // Every number code point is cut off alone before the GPT-2 pattern runs, so its
      // " ?\p{N}+" can never join digits (llama.cpp LLAMA_VOCAB_PRE_TYPE_SMOLLM and friends).
      p.steps = {run(C::number, false, 1), gpt2()};
    } else if (name == "deepseek-llm") {
      p.steps = {run(C::cr_lf, false, 1),      run(C::letters_deepseek, true),
                 run(C::punct_deepseek, true), run(C::whitespace, false, 0, true),
                 run(C::cjk_deepseek),         run(C::number)};
    } else if (name == "deepseek-coder") {
      p.steps = {run(C::cr_lf, false, 1), run(C::letter, true), run(C::punctuation, true),
                 run(C::cjk_deepseek), run(C::number, false, 1)};
    } else if (name == "default" || name.empty()) {
      p.name = "default";
      p.steps = {run(C::punct_default), gpt2(), run(C::number), run(C::ascii_digit, false, 3)};
    } else {
      throw config_error("unsupported pre-tokenizer '" + name +
                         "' (supported: default, gpt-2, llama-bpe, qwen2, smollm, deepseek-llm, "
                         "deepseek-coder and their llama.cpp aliases)");
    }
    return p;
  }

  /// Splits code points [0, n) of `t` into segments.
  std::vector<Segment> split(const CodepointText& t) const {
    std::vector<Segment> cur, next;
    if (t.cpts.empty()) return cur;
    cur.emplace_back(0, static_cast<std::uint32_t>(t.cpts.size()));
    for (const SplitStep& s : steps) {
      next.clear();
      next.reserve(cur.size() + cur.size() / 2 + 8);
      for (const Segment& seg : cur) split_segment(t, s, seg.first, seg.second, next);
      cur.swap(next);
    }
    return cur;
  }

 private:
  static constexpr std::uint32_t npos = 0xFFFFFFFFu;

  static bool in_ranges(std::uint32_t c, const std::uint32_t (*r)[2], std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      if (c >= r[i][0] && c <= r[i][1]) return true;
    return false;
  }

  // deepseek-llm's explicit letter class, as code point ranges (from the published pattern).
  static bool deepseek_letter(std::uint32_t c) {
    static constexpr std::uint32_t r[][2] = {
        {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},
        {0xD8, 0xF6},       {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},
        {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
        {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},
        {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
        {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
        {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
        {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
        {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
        {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
        {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
        {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
        {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
        {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
        {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
        {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
        {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
        {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
        {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
        {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
        {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943}};
    return in_ranges(c, r, sizeof(r) / sizeof(r[0]));
  }
  static bool deepseek_punct(std::uint32_t c) {
    static constexpr std::uint32_t r[][2] = {{0x21, 0x2F},     {0x3A, 0x7E},     {0xFF01, 0xFF0F},
                                             {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002}};
    return in_ranges(c, r, sizeof(r) / sizeof(r[0]));
  }
  static bool deepseek_cjk(std::uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) ||
           (c >= 0xAC00 && c <= 0xD7FF);
  }

  // Whether code point i of t is in the class. Explicit classes see non-ASCII whitespace as
  // U+000B (llama.cpp's wregex path).
  static bool in_class(const CodepointText& t, std::uint32_t i, SplitStep::Class cls) {
    using C = SplitStep::Class;
    const std::uint32_t raw = t.cpts[i];
    const std::uint16_t f = t.flags[i];
    const std::uint32_t c = (raw > 0x7F && (f & unicode::kWhitespace)) ? 0x0B : raw;
    switch (cls) {
      case C::cr_lf:
        return c == '\r' || c == '\n';
      case C::letters_deepseek:
        return deepseek_letter(c);
      case C::punct_deepseek:
        return deepseek_punct(c);
      case C::whitespace:
        return f & unicode::kWhitespace;
      case C::cjk_deepseek:
        return deepseek_cjk(c);
      case C::number:
        return f & unicode::kNumber;
      case C::letter:
        return f & unicode::kLetter;
      case C::punctuation:
        return f & unicode::kPunctuation;
      case C::punct_default:
        return (f & unicode::kPunctuation) || c == '$' || c == '+' || c == '<' || c == '=' ||
               c == '>' || c == '^' || c == '~' || c == '|';
      case C::ascii_digit:
        return c >= '0' && c <= '9';
    }
    return false;
  }

  static bool ws(const CodepointText& t, std::uint32_t i) {
    return t.flags[i] & unicode::kWhitespace;
  }
  static bool letter(const CodepointText& t, std::uint32_t i) {
    return t.flags[i] & unicode::kLetter;
  }
  static bool number(const CodepointText& t, std::uint32_t i) {
    return t.flags[i] & unicode::kNumber;
  }
  // [^\s\p{L}\p{N}]
  static bool other(const CodepointText& t, std::uint32_t i) {
    return !(t.flags[i] & (unicode::kWhitespace | unicode::kLetter | unicode::kNumber));
  }

  // End of the whitespace run starting at p (p itself when t[p] is not whitespace).
  static std::uint32_t ws_run(const CodepointText& t, std::uint32_t p, std::uint32_t end) {
    while (p < end && ws(t, p)) ++p;
    return p;
  }

  // \s+(?!\S) then \s+ at p (t[p] is whitespace): the end of the match.
  static std::uint32_t trailing_ws(const CodepointText& t, std::uint32_t p, std::uint32_t end) {
    const std::uint32_t r = ws_run(t, p, end);
    if (r == end) return r;        // whitespace up to the end: all of it
    if (r - p >= 2) return r - 1;  // leave the last one to prefix the next word
    return r;                      // the final \s+
  }

  // The GPT-2 pattern at p: end of the match (always matches something).
  static std::uint32_t match_gpt2(const CodepointText& t, std::uint32_t p, std::uint32_t end) {
    const std::uint32_t c = t.cpts[p];
    if (c == '\'' && p + 1 < end) {
      const std::uint32_t n1 = t.cpts[p + 1];
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return p + 2;
      if (p + 2 < end) {
        const std::uint32_t n2 = t.cpts[p + 2];
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
          return p + 3;
      }
    }
    const std::uint32_t q = (c == ' ' && p + 1 < end) ? p + 1 : p;  // after an optional space
    if (letter(t, q)) {
      std::uint32_t e = q + 1;
      while (e < end && letter(t, e)) ++e;
      return e;
    }
    if (number(t, q)) {
      std::uint32_t e = q + 1;
      while (e < end && number(t, e)) ++e;
      return e;
    }
    if (other(t, q)) {
      std::uint32_t e = q + 1;
      while (e < end && other(t, e)) ++e;
      return e;
    }
    return trailing_ws(t, p, end);  // t[p] is whitespace here
  }

  // The Llama-3 / Qwen2 pattern at p: end of the match, or npos when none starts at p.
  static std::uint32_t match_llama3(const CodepointText& t, std::uint32_t p, std::uint32_t end,
                                    int max_digits) {
    const std::uint32_t c = t.cpts[p];
    if (c == '\'' && p + 1 < end) {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
      const std::uint32_t n1 = unicode::to_lower(t.cpts[p + 1]);
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return p + 2;
      if (p + 2 < end) {
        const std::uint32_t n2 = unicode::to_lower(t.cpts[p + 2]);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
          return p + 3;
      }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c != '\r' && c != '\n' && !number(t, p)) {
      if (letter(t, p) || (p + 1 < end && letter(t, p + 1))) {
        std::uint32_t e = p + 1;
        while (e < end && letter(t, e)) ++e;
        return e;
      }
    }
    // \p{N}{1,max}
    if (number(t, p)) {
      std::uint32_t e = p + 1;
      while (e < end && number(t, e) && static_cast<int>(e - p) < max_digits) ++e;
      return e;
    }
    // ' '?[^\s\p{L}\p{N}]+[\r\n]*
    const std::uint32_t q = (c == ' ' && p + 1 < end) ? p + 1 : p;
    if (other(t, q)) {
      std::uint32_t e = q + 1;
      while (e < end && other(t, e)) ++e;
      while (e < end && (t.cpts[e] == '\r' || t.cpts[e] == '\n')) ++e;
      return e;
    }
    if (!ws(t, p)) return npos;
    // \s*[\r\n]+ : up to the last CR/LF of the whitespace run
    const std::uint32_t r = ws_run(t, p, end);
    for (std::uint32_t i = r; i > p; --i)
      if (t.cpts[i - 1] == '\r' || t.cpts[i - 1] == '\n') return i;
    return trailing_ws(t, p, end);
  }

  // A class_run step at p: end of the match, or npos; `resume` is where the search may go on
  // (past a run that cannot reach $, so that long runs stay linear).
  static std::uint32_t match_run(const CodepointText& t, const SplitStep& s, std::uint32_t p,
                                 std::uint32_t end, std::uint32_t& resume) {
    resume = p + 1;
    std::uint32_t q = p;
    if (s.ws_prefix && ws(t, p) && p + 1 < end && in_class(t, p + 1, s.cls)) q = p + 1;
    if (!in_class(t, q, s.cls)) return npos;
    std::uint32_t e = q + 1;
    if (s.count > 0) {
      while (e < end && static_cast<int>(e - q) < s.count && in_class(t, e, s.cls)) ++e;
      if (static_cast<int>(e - q) < s.count) return npos;
      return e;
    }
    while (e < end && in_class(t, e, s.cls)) ++e;
    if (s.at_end && e != end) {  // no start inside this run reaches $ either
      resume = e;
      return npos;
    }
    return e;
  }

  static void split_segment(const CodepointText& t, const SplitStep& s, std::uint32_t begin,
                            std::uint32_t end, std::vector<Segment>& out) {
    if (s.kind == SplitStep::Kind::before_char) {
      std::uint32_t start = begin;
      for (std::uint32_t i = begin + 1; i < end; ++i)
        if (t.cpts[i] == s.cpt) {
          out.emplace_back(start, i);
          start = i;
        }
      out.emplace_back(start, end);
      return;
    }
    std::uint32_t gap = begin;  // start of the unmatched text before p
    std::uint32_t p = begin;
    while (p < end) {
      std::uint32_t m = npos, resume = p + 1;
      switch (s.kind) {
        case SplitStep::Kind::gpt2:
          m = match_gpt2(t, p, end);
          break;
        case SplitStep::Kind::llama3:
          m = match_llama3(t, p, end, s.max_digits);
          break;
        case SplitStep::Kind::class_run:
          m = match_run(t, s, p, end, resume);
          break;
        case SplitStep::Kind::before_char:
          break;
      }
      if (m == npos) {
        p = resume;
        continue;
      }
      if (gap < p) out.emplace_back(gap, p);
      out.emplace_back(p, m);
      p = m;
      gap = m;
    }
    if (gap < end) out.emplace_back(gap, end);
  }
};

/// Decodes UTF-8 `text` to code points with their flags (invalid bytes become U+FFFD, see
/// unicode.hpp). `offsets` receives the byte offset of each code point plus a final end offset,
/// into `text` itself when it was well-formed and canonical, else into `clean`, which is then set
/// to the re-encoded text (what llama.cpp tokenizes in that case). Returns the text the offsets
/// refer to.
inline std::string_view decode_text(std::string_view text, CodepointText& out,
                                    std::vector<std::uint32_t>& offsets, std::string& clean) {
  out.cpts.clear();
  out.flags.clear();
  offsets.clear();
  out.cpts.reserve(text.size());
  bool canonical = true;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t start = pos;
    const unsigned char b = static_cast<unsigned char>(text[pos]);
    std::uint32_t c;
    if (b < 0x80) {
      c = b;
      ++pos;
    } else {
      c = unicode::next_cpt(text, pos);
      const std::size_t enc = c < 0x80        ? 1
                              : c < 0x800     ? 2
                              : c < 0x10000   ? 3
                              : c <= 0x10FFFF ? 4
                                              : 0;
      if (enc != pos - start) canonical = false;  // invalid byte, overlong form or > U+10FFFF
      if (c > 0x10FFFF) c = unicode::kReplacement;
    }
    out.cpts.push_back(c);
  }
  std::string_view used = text;
  if (!canonical) {
    clean.clear();
    for (std::uint32_t c : out.cpts) unicode::append_utf8(clean, c);
    used = clean;
  }
  offsets.reserve(out.cpts.size() + 1);
  out.flags.resize(out.cpts.size());
  std::uint32_t off = 0;
  for (std::size_t i = 0; i < out.cpts.size(); ++i) {
    const std::uint32_t c = out.cpts[i];
    offsets.push_back(off);
    off += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    out.flags[i] = unicode::flags(c);
  }
  offsets.push_back(off);
  return used;
}

/// The words (UTF-8 byte strings) that pre-tokenizer `pre` cuts `text` into.
inline std::vector<std::string> split_words(const PreTokenizer& pre, std::string_view text) {
  CodepointText t;
  std::vector<std::uint32_t> offsets;
  std::string clean;
  const std::string_view used = decode_text(text, t, offsets, clean);
  std::vector<std::string> words;
  for (const Segment& s : pre.split(t))
    words.emplace_back(used.substr(offsets[s.first], offsets[s.second] - offsets[s.first]));
  return words;
}

}  // namespace lmembed::detail
