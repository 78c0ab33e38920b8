// lmembed/train/data.hpp - training examples (JSONL) and converters for the bundled data sets.
//
// One example a line, the paper's format:
//   {"query": "...", "positive": "...", "negative": "..."}
// "postive" (the paper's own spelling) is accepted for "positive"; "negative" is optional, a
// string or a list of strings. Optional "query_instruction" / "document_instruction" give an
// instruction prefix per side: it is kept apart from the text so that mean pooling can leave
// its tokens out (TokenBatch::pool_from) and identical texts with the same prefix are cached once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"

namespace lmembed::train {

/// One training example: a query, its positive, and zero or more hard negatives.
struct Example {
  std::string query;
  std::string positive;
  std::vector<std::string> negatives;
  std::string query_instruction;     ///< prefix of the query (may be empty)
  std::string document_instruction;  ///< prefix of the positive and the negatives (may be empty)

  friend bool operator==(const Example&, const Example&) = default;
};

/// How read_examples treats malformed lines.
struct ReadOptions {
  bool skip_bad = false;  ///< skip (and count) malformed lines instead of throwing
};

/// What read_examples saw.
struct ReadStats {
  std::int64_t lines = 0;                 ///< non-blank lines
  std::int64_t examples = 0;              ///< examples kept
  std::int64_t skipped = 0;               ///< malformed lines skipped (skip_bad only)
  std::vector<std::string> first_errors;  ///< up to 5 messages of skipped lines
};

namespace detail {

/// Byte offset of the first ill-formed UTF-8 sequence of `s` (overlong forms, surrogates and
/// code points past U+10FFFF included), or npos. JSON text is UTF-8 (RFC 8259); a training text
/// that is not would be tokenized into replacement characters and trained on silently.
inline std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80         ? 1
                          : (c >> 5) == 6  ? 2
                          : (c >> 4) == 14 ? 3
                          : (c >> 3) == 30 ? 4
                                           : 0;
    if (n == 0 || i + n > s.size()) return i;
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return i;
      cp = (cp << 6) | (d & 0x3fu);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += n;
  }
  return std::string_view::npos;
}

/// config_error unless `s` (the value of `key`) is well-formed UTF-8.
inline const std::string& require_utf8(const std::string& s, const char* key) {
  if (const std::size_t at = first_invalid_utf8(s); at != std::string_view::npos)
    throw config_error(std::string("'") + key + "' is not valid UTF-8 (byte " + std::to_string(at) +
                       " of the string)");
  return s;
}

inline std::string require_text(const ordered_json& obj, const char* key, const char* alt) {
  const ordered_json* v = json::find(obj, key);
  if (!v && alt) v = json::find(obj, alt);
  if (!v) throw config_error(std::string("missing key '") + key + "'");
  if (!v->is_string()) throw config_error(std::string("'") + key + "' must be a string");
  const auto& s = v->get_ref<const std::string&>();
  if (s.empty()) throw config_error(std::string("'") + key + "' is empty");
  return require_utf8(s, key);
}

inline std::string optional_text(const ordered_json& obj, const char* key) {
  const ordered_json* v = json::find(obj, key);
  if (!v || v->is_null()) return {};
  if (!v->is_string()) throw config_error(std::string("'") + key + "' must be a string");
  return require_utf8(v->get_ref<const std::string&>(), key);
}

}  // namespace detail

/// Parses one JSONL line into an Example; throws format_error / config_error (without place).
inline Example parse_example(std::string_view line, const std::string& source = "<jsonl>") {
  const auto v = json::parse(line, source);
  if (!v.is_object()) throw config_error("an example must be a JSON object");
  Example e;
  e.query = detail::require_text(v, "query", nullptr);
  e.positive = detail::require_text(v, "positive", "postive");
  if (const ordered_json* n = json::find(v, "negative"); n && !n->is_null()) {
    if (n->is_string()) {
      if (n->get_ref<const std::string&>().empty()) throw config_error("'negative' is empty");
      e.negatives.push_back(detail::require_utf8(n->get_ref<const std::string&>(), "negative"));
    } else if (n->is_array()) {
      for (const auto& x : *n) {
        if (!x.is_string() || x.get_ref<const std::string&>().empty())
          throw config_error("'negative' must be a string or a list of non-empty strings");
        e.negatives.push_back(detail::require_utf8(x.get_ref<const std::string&>(), "negative"));
      }
    } else {
      throw config_error("'negative' must be a string or a list of strings");
    }
  }
  e.query_instruction = detail::optional_text(v, "query_instruction");
  e.document_instruction = detail::optional_text(v, "document_instruction");
  return e;
}

/// Reads a JSONL file of examples. A malformed line throws format_error naming the file, the
/// line number and its byte offset - or, with skip_bad, is skipped and counted in stats.
inline std::vector<Example> read_examples(const std::filesystem::path& file,
                                          const ReadOptions& opt = {}, ReadStats* stats = nullptr) {
  const std::string text = read_text_file(file);
  ReadStats st;
  std::vector<Example> out;
  std::size_t pos = 0;
  std::int64_t line_no = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    std::string_view line(text.data() + pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::size_t offset = pos;
    pos = end + 1;
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    ++st.lines;
    std::string msg;
    std::uint64_t at = offset;
    try {
      out.push_back(parse_example(line, "line " + std::to_string(line_no)));
      continue;
    } catch (const format_error& e) {  // JSON syntax: e names "line N" and the offset in it
      msg = e.what();
      if (e.offset() != format_error::npos) at += e.offset();
    } catch (const error& e) {  // well-formed JSON, not an example
      msg = "line " + std::to_string(line_no) + ": " + e.what();
    }
    if (!opt.skip_bad) throw format_error(file, at, msg);
    ++st.skipped;
    if (st.first_errors.size() < 5) st.first_errors.push_back(msg);
  }
  st.examples = static_cast<std::int64_t>(out.size());
  if (stats) *stats = st;
  return out;
}

/// One example as a JSON object (the keys read_examples reads; "negative" a string when there
/// is one negative, a list when there are several, absent when none).
inline ordered_json to_json(const Example& e) {
  ordered_json v = ordered_json::object();
  v["query"] = e.query;
  v["positive"] = e.positive;
  if (e.negatives.size() == 1) {
    v["negative"] = e.negatives[0];
  } else if (!e.negatives.empty()) {
    v["negative"] = e.negatives;
  }
  if (!e.query_instruction.empty()) v["query_instruction"] = e.query_instruction;
  if (!e.document_instruction.empty()) v["document_instruction"] = e.document_instruction;
  return v;
}

/// Writes examples as JSONL, atomically.
inline void write_examples(const std::filesystem::path& file, const std::vector<Example>& ex) {
  std::string out;
  for (const auto& e : ex) out += json::dump(to_json(e)) + "\n";
  write_file_atomic(file, std::string_view(out));
}

namespace detail {

/// Lines of a text file without their line ends (a final empty line dropped).
inline std::vector<std::string> read_lines(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string l = text.substr(pos, end - pos);
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(std::move(l));
    pos = end + 1;
  }
  return lines;
}

inline std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

}  // namespace detail

/// SNLI (the e-SNLI copy of the dev split: line-aligned s1.dev, s2.dev, labels.dev in `dir`) to
/// (premise, entailed hypothesis, contradicting hypothesis) triplets: premises are grouped (in
/// order of first appearance); each entailed hypothesis of a premise makes one triplet, its hard
/// negative the premise's contradictions taken in turn. Premises lacking either are dropped.
/// format_error names the file and line when the three files do not line up or a label is
/// unknown.
inline std::vector<Example> convert_snli(const std::filesystem::path& dir) {
  const auto s1 = detail::read_lines(dir / "s1.dev");
  const auto s2 = detail::read_lines(dir / "s2.dev");
  const auto labels = detail::read_lines(dir / "labels.dev");
  if (s1.size() != s2.size() || s1.size() != labels.size())
    throw format_error(dir / "labels.dev", format_error::npos,
                       "s1.dev, s2.dev and labels.dev have " + std::to_string(s1.size()) + ", " +
                           std::to_string(s2.size()) + " and " + std::to_string(labels.size()) +
                           " lines; they must be line-aligned");
  struct Group {
    std::vector<std::string> entail, contra;
  };
  std::vector<std::string> order;
  std::map<std::string, Group> groups;
  for (std::size_t i = 0; i < s1.size(); ++i) {
    const std::string p = detail::trim(s1[i]), h = detail::trim(s2[i]);
    const std::string l = detail::trim(labels[i]);
    if (l != "entailment" && l != "contradiction" && l != "neutral")
      throw format_error(dir / "labels.dev", format_error::npos,
                         "line " + std::to_string(i + 1) + ": unknown label '" + l + "'");
    if (p.empty() || h.empty())
      throw format_error(p.empty() ? dir / "s1.dev" : dir / "s2.dev", format_error::npos,
                         "line " + std::to_string(i + 1) + ": empty sentence");
    auto [it, fresh] = groups.try_emplace(p);
    if (fresh) order.push_back(p);
    if (l == "entailment") it->second.entail.push_back(h);
    if (l == "contradiction") it->second.contra.push_back(h);
  }
  std::vector<Example> out;
  for (const auto& p : order) {
    const Group& g = groups[p];
    if (g.entail.empty() || g.contra.empty()) continue;
    for (std::size_t k = 0; k < g.entail.size(); ++k)
      out.push_back(Example{p, g.entail[k], {g.contra[k % g.contra.size()]}, {}, {}});
  }
  return out;
}

/// A labelled pair of the STS Benchmark (for evaluating with Spearman correlation).
struct ScoredPair {
  std::string a, b;
  double score = 0;
};

/// Every pair of an STS Benchmark file (tab-separated: genre, source, year, id, score,
/// sentence1, sentence2 [, extra columns ignored]; no CSV quoting, fields may hold '"') with its
/// gold score. format_error names the file and line of a short row or a bad score.
inline std::vector<ScoredPair> read_stsb(const std::filesystem::path& csv) {
  const auto lines = detail::read_lines(csv);
  std::vector<ScoredPair> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    std::vector<std::string> f;
    std::size_t pos = 0;
    while (f.size() < 7) {
      const std::size_t tab = lines[i].find('\t', pos);
      f.push_back(lines[i].substr(pos, tab == std::string::npos ? std::string::npos : tab - pos));
      if (tab == std::string::npos) break;
      pos = tab + 1;
    }
    if (f.size() < 7)
      throw format_error(csv, format_error::npos,
                         "line " + std::to_string(i + 1) + ": expected at least 7 fields");
    try {
      std::size_t used = 0;
      const double score = std::stod(f[4], &used);
      if (used != f[4].size()) throw std::invalid_argument("trailing");
      out.push_back(ScoredPair{detail::trim(f[5]), detail::trim(f[6]), score});
    } catch (const std::exception&) {
      throw format_error(
          csv, format_error::npos,
          "line " + std::to_string(i + 1) + ": score '" + f[4] + "' is not a number");
    }
  }
  return out;
}

/// STS Benchmark train pairs with score >= min_score as (sentence1, sentence2) examples
/// without negatives (the file format as read_stsb).
inline std::vector<Example> convert_stsb(const std::filesystem::path& csv, double min_score = 4.0) {
  std::vector<Example> out;
  for (auto& p : read_stsb(csv))
    if (p.score >= min_score && !p.a.empty() && !p.b.empty())
      out.push_back(Example{std::move(p.a), std::move(p.b), {}, {}, {}});
  return out;
}

}  // namespace lmembed::train
