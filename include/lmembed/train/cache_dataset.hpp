// lmembed/train/cache_dataset.hpp - what a cache holds besides its rows: the distinct texts
// (CacheText), the examples as text ids (CacheExample, CacheDataset), and their
// texts.jsonl / examples.jsonl files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/train/data.hpp"

namespace lmembed::train {

/// One distinct text of a cache: what the backbone reads is instruction + text, and the pooled
/// tokens start after the instruction's.
struct CacheText {
  std::string instruction;
  std::string text;
  friend bool operator==(const CacheText&, const CacheText&) = default;
};

/// An example as ids into the cache's distinct texts.
struct CacheExample {
  std::int64_t query = 0;
  std::int64_t positive = 0;
  std::vector<std::int64_t> negatives;
  friend bool operator==(const CacheExample&, const CacheExample&) = default;
};

/// The distinct texts of a data set and its examples as text ids.
struct CacheDataset {
  std::vector<CacheText> texts;
  std::vector<CacheExample> examples;

  /// Deduplicates the texts of `examples` (same instruction and text -> one id), in order of
  /// first appearance.
  static CacheDataset from_examples(const std::vector<Example>& examples) {
    CacheDataset d;
    std::unordered_map<std::string, std::int64_t> ids;
    auto id = [&](const std::string& instr, const std::string& text) {
      std::string key = instr;
      key += '\0';
      key += text;
      auto [it, fresh] = ids.try_emplace(std::move(key), std::int64_t(d.texts.size()));
      if (fresh) d.texts.push_back({instr, text});
      return it->second;
    };
    for (const auto& e : examples) {
      CacheExample c;
      c.query = id(e.query_instruction, e.query);
      c.positive = id(e.document_instruction, e.positive);
      for (const auto& n : e.negatives) c.negatives.push_back(id(e.document_instruction, n));
      d.examples.push_back(std::move(c));
    }
    return d;
  }
};

namespace detail {

inline std::string texts_jsonl(const CacheDataset& d) {
  std::string out;
  for (const auto& t : d.texts) {
    ordered_json v = ordered_json::object();
    v["instruction"] = t.instruction;
    v["text"] = t.text;
    out += json::dump(v) + "\n";
  }
  return out;
}

inline std::string examples_jsonl(const CacheDataset& d) {
  std::string out;
  for (const auto& e : d.examples) {
    // Appends only: GCC 12 misreports -Wrestrict on "literal" + std::string temporaries.
    out += '[';
    out += std::to_string(e.query);
    out += ',';
    out += std::to_string(e.positive);
    for (auto n : e.negatives) {
      out += ',';
      out += std::to_string(n);
    }
    out += "]\n";
  }
  return out;
}

/// Parses examples.jsonl (as written by examples_jsonl) with ids checked against n_texts.
inline std::vector<CacheExample> parse_examples_jsonl(const std::string& text,
                                                      const std::filesystem::path& file,
                                                      std::int64_t n_texts) {
  std::vector<CacheExample> out;
  std::size_t pos = 0;
  std::int64_t line = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line;
    const ordered_json v =
        json::parse(std::string_view(text).substr(pos, end - pos), "line " + std::to_string(line));
    if (!v.is_array() || v.size() < 2)
      throw format_error(file, pos, "line " + std::to_string(line) + ": expected [q, p, n...]");
    CacheExample e;
    std::vector<std::int64_t> ids;
    for (const auto& x : v) {
      if (!json::is_integer(x))
        throw format_error(
            file, pos,
            "line " + std::to_string(line) + ": text id " + json::dump(x) + " is not an integer");
      const std::int64_t id = json::as_int(x);
      if (id < 0 || id >= n_texts)
        throw format_error(file, pos,
                           "line " + std::to_string(line) + ": text id " + std::to_string(id) +
                               " out of range [0, " + std::to_string(n_texts) + ")");
      ids.push_back(id);
    }
    e.query = ids[0];
    e.positive = ids[1];
    e.negatives.assign(ids.begin() + 2, ids.end());
    out.push_back(std::move(e));
    pos = end + 1;
  }
  return out;
}

}  // namespace detail

}  // namespace lmembed::train
