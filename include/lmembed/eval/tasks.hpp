// lmembed/eval/tasks.hpp - evaluation tasks: their data, the bundled ones, and loaders for
// user data in MTEB's layouts.
//
// A Task is a name, a category, the instruction given to the model (E5-style, as Tang & Yang
// 2024 evaluate: "Instruct: {instruction}\nQuery: {text}" on the query side; the Embedder
// formats it) and the data of its category. Bundled tasks are read from lmembed's data folder
// (data/datasets, with their licenses); user tasks from a folder in MTEB's layouts:
//   STS                 test.tsv (sentence1 TAB sentence2 TAB score, optional header) or
//                       test.jsonl {"sentence1", "sentence2", "score"}
//   retrieval (BEIR)    queries.jsonl {"_id", "text"}, corpus.jsonl {"_id", "title"?, "text"},
//                       qrels/test.tsv (query-id TAB corpus-id TAB score, header line)
//   classification      train.jsonl + test.jsonl {"text", "label"}
//   clustering          test.jsonl {"text", "label"}
//   pair classification test.jsonl {"sentence1", "sentence2", "label" (0/1)}
//   reranking           test.jsonl {"query", "positive": [...], "negative": [...]}
// An optional task.json {"name", "category", "instruction", "main_metric"?} names the task and
// settles ambiguous layouts (clustering vs pair classification); without it the category is
// inferred from the files and the folder name is the task name.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"

namespace lmembed::eval {

/// Semantic textual similarity: pairs with a gold similarity score.
struct StsData {
  std::vector<std::string> sentence1, sentence2;
  std::vector<double> score;
};
/// Retrieval: queries, a corpus, graded judgments (query id -> doc id -> grade).
struct RetrievalData {
  std::vector<std::string> query_ids, queries;
  std::vector<std::string> doc_ids, docs;
  std::map<std::string, std::map<std::string, int>> qrels;
};
/// Classification: labelled train and test texts (labels are indices into label_names).
struct ClassificationData {
  std::vector<std::string> train_text, test_text;
  std::vector<std::int64_t> train_label, test_label;
  std::vector<std::string> label_names;
};
/// Clustering: texts with gold cluster labels.
struct ClusteringData {
  std::vector<std::string> text;
  std::vector<std::int64_t> label;
  std::vector<std::string> label_names;
};
/// Pair classification: pairs labelled 1 (e.g. duplicate, entailment) or 0.
struct PairClassificationData {
  std::vector<std::string> sentence1, sentence2;
  std::vector<int> label;
};
/// Reranking: per query, candidate documents known to be relevant or not.
struct RerankingData {
  struct Item {
    std::string query;
    std::vector<std::string> positive, negative;
  };
  std::vector<Item> items;
};

/// The data of any task category.
using TaskData = std::variant<StsData, RetrievalData, ClassificationData, ClusteringData,
                              PairClassificationData, RerankingData>;

/// Category names, as results and reports spell them (index = TaskData's alternative).
inline constexpr const char* kCategoryNames[] = {
    "sts", "retrieval", "classification", "clustering", "pair_classification", "reranking"};

/// One evaluation task.
struct Task {
  std::string name;         ///< e.g. "sts-b"
  std::string description;  ///< one line: the data and its source
  std::string instruction;  ///< E5-style task instruction (query side; both sides if symmetric)
  TaskData data;
  std::map<std::string, std::string> notes;  ///< recorded in results (subsampling, source ...)

  /// "sts", "retrieval", ...
  std::string category() const { return kCategoryNames[data.index()]; }
  /// MTEB's main metric of the category.
  std::string main_metric() const {
    static constexpr const char* m[] = {"spearman",  "ndcg_at_10", "accuracy",
                                        "v_measure", "ap",         "map"};
    return m[data.index()];
  }
};

// ------------------------------------------------------------------ parsing helpers
namespace detail {

/// Splits text into lines (LF or CRLF); a final line without newline is kept.
inline std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t s = 0;
  while (s < text.size()) {
    std::size_t e = text.find('\n', s);
    if (e == std::string_view::npos) e = text.size();
    std::string_view line = text.substr(s, e - s);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    s = e + 1;
  }
  return out;
}

/// Trims ASCII whitespace at both ends.
inline std::string trim(std::string_view s) {
  std::size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r' || s[a] == '\n')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r' || s[b - 1] == '\n'))
    --b;
  return std::string(s.substr(a, b - a));
}

/// Splits on a single-character separator, no quoting.
inline std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t a = 0;
  for (;;) {
    std::size_t b = s.find(sep, a);
    if (b == std::string_view::npos) {
      out.push_back(s.substr(a));
      return out;
    }
    out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
}

/// RFC 4180 CSV records (quoted fields may hold commas, "" escapes and newlines).
/// format_error names the file and byte offset of an unterminated quote.
inline std::vector<std::vector<std::string>> parse_csv(std::string_view text,
                                                       const std::filesystem::path& file) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool in_quotes = false, field_started = false;
  std::size_t quote_start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"' && !field_started) {
      in_quotes = true;
      field_started = true;
      quote_start = i;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      field_started = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      row.push_back(std::move(field));
      field.clear();
      field_started = false;
      if (!(row.size() == 1 && row[0].empty())) rows.push_back(std::move(row));
      row.clear();
    } else {
      field += c;
      field_started = true;
    }
  }
  if (in_quotes) throw format_error(file, quote_start, "unterminated quoted CSV field");
  if (field_started || !row.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

/// Parses a JSONL file into objects; format_error names the file and line of a bad record.
inline std::vector<ordered_json> read_jsonl(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  std::vector<ordered_json> out;
  std::size_t line_no = 0, offset = 0;
  for (auto line : split_lines(text)) {
    ++line_no;
    const std::size_t here = offset;
    offset += line.size() + 1;
    if (trim(line).empty()) continue;
    ordered_json v = json::parse(line, file.string() + ":" + std::to_string(line_no));
    if (!v.is_object())
      throw format_error(file, here,
                         "line " + std::to_string(line_no) + ": expected a JSON object");
    out.push_back(std::move(v));
  }
  return out;
}

/// A required string member of a JSONL record.
inline std::string str_field(const ordered_json& v, std::string_view key,
                             const std::filesystem::path& file, std::size_t record) {
  const ordered_json* f = json::find(v, key);
  if (!f)
    throw format_error(file.string() + ": record " + std::to_string(record + 1) + ": missing \"" +
                       std::string(key) + "\"");
  if (f->is_string()) return f->get_ref<const std::string&>();
  if (f->is_number())
    return json::is_integer(*f) ? std::to_string(json::as_int(*f)) : json::dump(*f);
  throw format_error(file.string() + ": record " + std::to_string(record + 1) + ": \"" +
                     std::string(key) + "\" must be a string");
}

/// Maps label strings to indices 0..k-1 in order of first appearance (names kept).
struct LabelIndex {
  std::unordered_map<std::string, std::int64_t> index;
  std::vector<std::string> names;
  std::int64_t operator()(const std::string& s) {
    auto [it, fresh] = index.try_emplace(s, static_cast<std::int64_t>(names.size()));
    if (fresh) names.push_back(s);
    return it->second;
  }
};

/// Deterministic subsample: the sorted first m of a seeded permutation of 0..n-1.
inline std::vector<std::size_t> subsample_indices(std::size_t n, std::size_t m,
                                                  std::uint64_t seed) {
  std::vector<std::size_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  if (m >= n) return idx;
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < m; ++i) {  // partial Fisher-Yates
    std::uniform_int_distribution<std::size_t> d(i, n - 1);
    std::swap(idx[i], idx[d(rng)]);
  }
  idx.resize(m);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace detail

// ------------------------------------------------------------------ instructions
/// E5-mistral-style instructions used by Tang & Yang 2024 (their code follows E5's prompts).
namespace instructions {
inline constexpr const char* sts = "Retrieve semantically similar text.";
inline constexpr const char* banking77 =
    "Given a online banking query, find the corresponding intents";
inline constexpr const char* banking77_clustering =
    "Identify the intent category of the given online banking query";
inline constexpr const char* nli_pairs = "Retrieve semantically similar text.";
inline constexpr const char* nli_retrieval =
    "Given a premise, retrieve a hypothesis that is entailed by the premise";
}  // namespace instructions

// ------------------------------------------------------------------ bundled tasks

/// STS Benchmark rows (tab-separated, no CSV quoting; fields 0-6, extra source columns
/// ignored) as STS data.
inline StsData read_stsbenchmark(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  StsData d;
  std::size_t offset = 0, line_no = 0;
  for (auto line : detail::split_lines(text)) {
    ++line_no;
    const std::size_t here = offset;
    offset += line.size() + 1;
    if (line.empty()) continue;
    auto f = detail::split(line, '\t');
    if (f.size() < 7)
      throw format_error(file, here,
                         "line " + std::to_string(line_no) +
                             ": expected >= 7 tab-separated fields, got " +
                             std::to_string(f.size()));
    double score = 0;
    try {
      std::size_t pos = 0;
      score = std::stod(std::string(f[4]), &pos);
    } catch (const std::exception&) {
      throw format_error(
          file, here,
          "line " + std::to_string(line_no) + ": bad score '" + std::string(f[4]) + "'");
    }
    d.sentence1.emplace_back(f[5]);
    d.sentence2.emplace_back(f[6]);
    d.score.push_back(score);
  }
  return d;
}

/// Banking77's CSV (header text,category; RFC 4180 quoting) as (texts, label names).
inline std::pair<std::vector<std::string>, std::vector<std::string>> read_banking77_csv(
    const std::filesystem::path& file) {
  auto rows = detail::parse_csv(read_text_file(file), file);
  if (rows.empty() || rows[0].size() != 2 || rows[0][0] != "text" || rows[0][1] != "category")
    throw format_error(file, 0, "expected the header 'text,category'");
  std::vector<std::string> text, cat;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    if (rows[r].size() != 2)
      throw format_error(file.string() + ": CSV record " + std::to_string(r + 1) + " has " +
                         std::to_string(rows[r].size()) + " fields, expected 2");
    text.push_back(std::move(rows[r][0]));
    cat.push_back(std::move(rows[r][1]));
  }
  return {std::move(text), std::move(cat)};
}

/// SNLI dev as aligned (premise, hypothesis, label) lines, whitespace-trimmed.
struct SnliPairs {
  std::vector<std::string> premise, hypothesis, label;
};
inline SnliPairs read_snli(const std::filesystem::path& dir) {
  auto lines = [&](const char* name) {
    std::vector<std::string> out;
    const std::string text = read_text_file(dir / name);
    for (auto l : detail::split_lines(text)) out.push_back(detail::trim(l));
    while (!out.empty() && out.back().empty()) out.pop_back();
    return out;
  };
  SnliPairs s{lines("s1.dev"), lines("s2.dev"), lines("labels.dev")};
  if (s.premise.size() != s.hypothesis.size() || s.premise.size() != s.label.size())
    throw format_error((dir / "labels.dev").string() + ": s1/s2/labels have " +
                       std::to_string(s.premise.size()) + "/" +
                       std::to_string(s.hypothesis.size()) + "/" + std::to_string(s.label.size()) +
                       " lines");
  return s;
}

/// Options of the bundled tasks: upper bounds applied as seeded subsamples and recorded in the
/// task's notes.
struct BundledOptions {
  std::int64_t max_examples = 0;  ///< examples (pairs, test texts, queries) per task; 0 = all
  std::uint64_t seed = 42;
  /// Retrieval corpus size (0 = the whole corpus): every document relevant to a kept query
  /// stays, the rest of the budget is a seeded sample of the other documents (distractors), as
  /// MTEB's downsampled retrieval tasks do. A smaller corpus makes the task easier: compare
  /// designs at the same setting only.
  std::int64_t max_corpus = 0;
};

/// Names of the bundled tasks, in their default evaluation order.
inline std::vector<std::string> bundled_task_names() {
  return {"sts-b", "banking77", "banking77-clustering", "snli-pairs", "snli-retrieval"};
}

/// Builds bundled task `name` from `data_dir` (the repository's data/ folder).
/// config_error for an unknown name (listing the known ones).
inline Task load_bundled_task(const std::string& name, const std::filesystem::path& data_dir,
                              const BundledOptions& opt = {}) {
  const auto ds = data_dir / "datasets";
  const auto cap = static_cast<std::size_t>(opt.max_examples);
  Task t;
  t.name = name;
  auto note_subsample = [&](std::size_t kept, std::size_t total, const std::string& what) {
    if (kept < total)
      t.notes["subsample"] = std::to_string(kept) + " of " + std::to_string(total) + " " + what +
                             " (seeded, seed " + std::to_string(opt.seed) + ")";
  };
  if (name == "sts-b") {
    StsData all = read_stsbenchmark(ds / "stsbenchmark" / "sts-dev.csv");
    StsData d;
    auto idx = detail::subsample_indices(all.score.size(), cap ? cap : all.score.size(), opt.seed);
    for (auto i : idx) {
      d.sentence1.push_back(all.sentence1[i]);
      d.sentence2.push_back(all.sentence2[i]);
      d.score.push_back(all.score[i]);
    }
    note_subsample(idx.size(), all.score.size(), "pairs");
    t.description = "STS Benchmark dev (1500 pairs, scores 0-5)";
    t.instruction = instructions::sts;
    t.data = std::move(d);
  } else if (name == "banking77" || name == "banking77-clustering") {
    auto [tr_text, tr_cat] = read_banking77_csv(ds / "banking77" / "train.csv");
    auto [te_text, te_cat] = read_banking77_csv(ds / "banking77" / "test.csv");
    // Label indices follow categories.json's order.
    const std::filesystem::path cats_file = ds / "banking77" / "categories.json";
    const ordered_json cats = json::parse(read_text_file(cats_file), cats_file.string());
    detail::LabelIndex li;
    for (const auto& c : json::as_array(cats, cats_file.string()))
      li(json::as_string(c, cats_file.string()));
    const std::size_t n_known = li.names.size();
    auto label_of = [&](const std::string& c) {
      const auto l = li(c);
      if (static_cast<std::size_t>(l) >= n_known)
        throw format_error("banking77: category '" + c + "' is not in categories.json");
      return l;
    };
    if (name == "banking77") {
      ClassificationData d;
      d.label_names = li.names;
      for (std::size_t i = 0; i < tr_text.size(); ++i) {
        d.train_text.push_back(tr_text[i]);
        d.train_label.push_back(label_of(tr_cat[i]));
      }
      auto idx = detail::subsample_indices(te_text.size(), cap ? cap : te_text.size(), opt.seed);
      for (auto i : idx) {
        d.test_text.push_back(te_text[i]);
        d.test_label.push_back(label_of(te_cat[i]));
      }
      note_subsample(idx.size(), te_text.size(), "test texts");
      t.description = "Banking77 intent classification (77 intents; train 10003, test 3080)";
      t.instruction = instructions::banking77;
      t.data = std::move(d);
    } else {
      ClusteringData d;
      d.label_names = li.names;
      auto idx = detail::subsample_indices(te_text.size(), cap ? cap : te_text.size(), opt.seed);
      for (auto i : idx) {
        d.text.push_back(te_text[i]);
        d.label.push_back(label_of(te_cat[i]));
      }
      note_subsample(idx.size(), te_text.size(), "texts");
      t.description = "Banking77 test texts clustered on their 77 intents";
      t.instruction = instructions::banking77_clustering;
      t.data = std::move(d);
    }
  } else if (name == "snli-pairs") {
    const SnliPairs s = read_snli(ds / "snli_dev");
    std::vector<std::size_t> keep;
    for (std::size_t i = 0; i < s.label.size(); ++i)
      if (s.label[i] == "entailment" || s.label[i] == "contradiction") keep.push_back(i);
    auto idx = detail::subsample_indices(keep.size(), cap ? cap : keep.size(), opt.seed);
    PairClassificationData d;
    for (auto j : idx) {
      const auto i = keep[j];
      d.sentence1.push_back(s.premise[i]);
      d.sentence2.push_back(s.hypothesis[i]);
      d.label.push_back(s.label[i] == "entailment" ? 1 : 0);
    }
    note_subsample(idx.size(), keep.size(), "pairs");
    t.description = "SNLI dev, entailment (1) vs contradiction (0) pairs";
    t.instruction = instructions::nli_pairs;
    t.data = std::move(d);
  } else if (name == "snli-retrieval") {
    const SnliPairs s = read_snli(ds / "snli_dev");
    // Queries: distinct premises with an entailed hypothesis; corpus: distinct hypotheses.
    RetrievalData d;
    std::unordered_map<std::string, std::size_t> qid, did;
    for (std::size_t i = 0; i < s.hypothesis.size(); ++i)
      if (did.try_emplace(s.hypothesis[i], d.docs.size()).second) {
        d.doc_ids.push_back("h" + std::to_string(d.docs.size()));
        d.docs.push_back(s.hypothesis[i]);
      }
    std::vector<std::string> q_text;
    std::vector<std::vector<std::size_t>> q_rel;
    for (std::size_t i = 0; i < s.premise.size(); ++i) {
      if (s.label[i] != "entailment") continue;
      auto [it, fresh] = qid.try_emplace(s.premise[i], q_text.size());
      if (fresh) {
        q_text.push_back(s.premise[i]);
        q_rel.emplace_back();
      }
      q_rel[it->second].push_back(did.at(s.hypothesis[i]));
    }
    auto idx = detail::subsample_indices(q_text.size(), cap ? cap : q_text.size(), opt.seed);
    for (auto j : idx) {
      const std::string id = "p" + std::to_string(j);
      d.query_ids.push_back(id);
      d.queries.push_back(q_text[j]);
      for (auto h : q_rel[j]) d.qrels[id][d.doc_ids[h]] = 1;
    }
    note_subsample(idx.size(), q_text.size(),
                   opt.max_corpus > 0 ? "queries" : "queries (corpus kept whole)");
    const std::size_t n_docs = d.docs.size();
    if (opt.max_corpus > 0 && static_cast<std::size_t>(opt.max_corpus) < n_docs) {
      // Relevant documents first (all of them, even past the budget), then seeded distractors;
      // kept in corpus order so that ties rank as they would in the whole corpus.
      std::vector<char> keep(n_docs, 0);
      std::size_t kept = 0;
      for (auto j : idx)
        for (auto h : q_rel[j]) {
          kept += keep[h] ? 0 : 1;
          keep[h] = 1;
        }
      std::vector<std::size_t> others;
      for (std::size_t h = 0; h < n_docs; ++h)
        if (!keep[h]) others.push_back(h);
      const std::size_t want = static_cast<std::size_t>(opt.max_corpus);
      if (kept < want)
        for (auto o : detail::subsample_indices(others.size(), want - kept, opt.seed ^ 0x5eedULL))
          keep[others[o]] = 1;
      RetrievalData small;
      small.query_ids = std::move(d.query_ids);
      small.queries = std::move(d.queries);
      small.qrels = std::move(d.qrels);
      for (std::size_t h = 0; h < n_docs; ++h)
        if (keep[h]) {
          small.doc_ids.push_back(d.doc_ids[h]);
          small.docs.push_back(d.docs[h]);
        }
      d = std::move(small);
      t.notes["corpus"] = std::to_string(d.docs.size()) + " of " + std::to_string(n_docs) +
                          " hypotheses: every one relevant to a kept query + seeded distractors "
                          "(seed " +
                          std::to_string(opt.seed) + "); an easier task than the whole corpus";
    }
    t.description = "SNLI dev: each premise retrieves its entailed hypotheses among all hypotheses";
    t.instruction = instructions::nli_retrieval;
    t.data = std::move(d);
  } else {
    std::string known;
    for (const auto& n : bundled_task_names()) known += (known.empty() ? "" : ", ") + n;
    throw config_error("unknown task '" + name + "' (bundled tasks: " + known +
                       "; use --task-dir for your own)");
  }
  t.notes["source"] = "bundled:" + name;
  return t;
}

// ------------------------------------------------------------------ MTEB-layout folders

namespace detail {
/// format_error when a task file gave no usable records (a header alone, blank lines, an empty
/// file): the metrics would otherwise fail later on empty inputs, far from the file at fault.
inline void require_records(std::size_t n, const std::filesystem::path& file, const char* what) {
  if (n == 0)
    throw format_error(file.string() + ": holds no " + what +
                       " (an empty file, or only blank or header lines)");
}

inline StsData read_sts_tsv(const std::filesystem::path& file) {
  const std::string text = read_text_file(file);
  StsData d;
  std::size_t offset = 0, line_no = 0;
  for (auto line : split_lines(text)) {
    ++line_no;
    const std::size_t here = offset;
    offset += line.size() + 1;
    if (trim(line).empty()) continue;
    auto f = split(line, '\t');
    if (f.size() < 3)
      throw format_error(
          file, here,
          "line " + std::to_string(line_no) + ": expected sentence1<TAB>sentence2<TAB>score");
    double score = 0;
    try {
      std::size_t pos = 0;
      score = std::stod(std::string(f[2]), &pos);
      if (pos != f[2].size()) throw std::invalid_argument("trailing");
      if (!std::isfinite(score)) throw std::invalid_argument("not finite");
    } catch (const std::exception&) {
      if (line_no == 1) continue;  // a header line
      throw format_error(
          file, here,
          "line " + std::to_string(line_no) + ": bad score '" + std::string(f[2]) + "'");
    }
    d.sentence1.emplace_back(f[0]);
    d.sentence2.emplace_back(f[1]);
    d.score.push_back(score);
  }
  require_records(d.score.size(), file, "sentence pairs");
  return d;
}

inline double num_field(const ordered_json& v, std::string_view key,
                        const std::filesystem::path& file, std::size_t record) {
  const ordered_json* f = json::find(v, key);
  if (!f || !f->is_number() || !std::isfinite(f->get<double>()))
    throw format_error(file.string() + ": record " + std::to_string(record + 1) + ": \"" +
                       std::string(key) + "\" must be a finite number");
  return f->get<double>();
}

inline std::vector<std::string> str_list(const ordered_json& v, std::string_view key,
                                         const std::filesystem::path& file, std::size_t record) {
  const ordered_json* f = json::find(v, key);
  if (!f || !f->is_array())
    throw format_error(file.string() + ": record " + std::to_string(record + 1) + ": \"" +
                       std::string(key) + "\" must be an array of strings");
  std::vector<std::string> out;
  for (const auto& e : *f) {
    if (!e.is_string())
      throw format_error(file.string() + ": record " + std::to_string(record + 1) + ": \"" +
                         std::string(key) + "\" must hold strings");
    out.push_back(e.get_ref<const std::string&>());
  }
  return out;
}
}  // namespace detail

/// Loads a task folder in one of MTEB's layouts (see the file comment).
inline Task load_task_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw io_error(dir.string() + ": not a directory");
  Task t;
  t.name = dir.filename().string();
  if (t.name.empty()) t.name = dir.parent_path().filename().string();
  std::string category;
  if (fs::exists(dir / "task.json")) {
    const std::string meta_file = (dir / "task.json").string();
    const ordered_json meta = json::parse(read_text_file(meta_file), meta_file);
    if (auto* v = json::find(meta, "name")) t.name = json::as_string(*v, meta_file, "name");
    if (auto* v = json::find(meta, "category"))
      category = json::as_string(*v, meta_file, "category");
    if (auto* v = json::find(meta, "instruction"))
      t.instruction = json::as_string(*v, meta_file, "instruction");
    if (auto* v = json::find(meta, "description"))
      t.description = json::as_string(*v, meta_file, "description");
  }
  const fs::path test_jsonl = dir / "test.jsonl";
  if (category.empty()) {
    if (fs::exists(dir / "corpus.jsonl"))
      category = "retrieval";
    else if (fs::exists(dir / "train.jsonl"))
      category = "classification";
    else if (fs::exists(dir / "test.tsv"))
      category = "sts";
    else if (fs::exists(test_jsonl)) {
      auto recs = detail::read_jsonl(test_jsonl);
      if (recs.empty()) throw format_error(test_jsonl.string() + ": no records");
      const auto& r = recs.front();
      if (json::find(r, "query") && json::find(r, "positive"))
        category = "reranking";
      else if (json::find(r, "sentence1") && json::find(r, "score"))
        category = "sts";
      else if (json::find(r, "sentence1") && json::find(r, "label"))
        category = "pair_classification";
      else if (json::find(r, "text") && json::find(r, "label"))
        category = "clustering";
      else
        throw format_error(test_jsonl.string() +
                           ": record 1 matches no MTEB layout (see docs/evaluation.md)");
    } else {
      throw config_error(dir.string() +
                         ": no task files (test.jsonl, test.tsv, train.jsonl or corpus.jsonl)");
    }
  }
  if (category == "sts") {
    if (fs::exists(dir / "test.tsv")) {
      t.data = detail::read_sts_tsv(dir / "test.tsv");
    } else {
      StsData d;
      auto recs = detail::read_jsonl(test_jsonl);
      for (std::size_t i = 0; i < recs.size(); ++i) {
        d.sentence1.push_back(detail::str_field(recs[i], "sentence1", test_jsonl, i));
        d.sentence2.push_back(detail::str_field(recs[i], "sentence2", test_jsonl, i));
        d.score.push_back(detail::num_field(recs[i], "score", test_jsonl, i));
      }
      detail::require_records(d.score.size(), test_jsonl, "sentence pairs");
      t.data = std::move(d);
    }
    if (t.instruction.empty()) t.instruction = instructions::sts;
  } else if (category == "retrieval") {
    RetrievalData d;
    const fs::path qf = dir / "queries.jsonl", cf = dir / "corpus.jsonl";
    fs::path rf = dir / "qrels" / "test.tsv";
    if (!fs::exists(rf)) rf = dir / "qrels.tsv";
    auto qs = detail::read_jsonl(qf);
    for (std::size_t i = 0; i < qs.size(); ++i) {
      d.query_ids.push_back(detail::str_field(qs[i], "_id", qf, i));
      d.queries.push_back(detail::str_field(qs[i], "text", qf, i));
    }
    auto cs = detail::read_jsonl(cf);
    for (std::size_t i = 0; i < cs.size(); ++i) {
      d.doc_ids.push_back(detail::str_field(cs[i], "_id", cf, i));
      std::string title;
      if (auto* v = json::find(cs[i], "title"); v && v->is_string())
        title = v->get_ref<const std::string&>();
      // MTEB/BEIR: a document is "title text", stripped.
      d.docs.push_back(detail::trim(title + " " + detail::str_field(cs[i], "text", cf, i)));
    }
    const std::string qtext = read_text_file(rf);
    std::size_t offset = 0, line_no = 0;
    for (auto line : detail::split_lines(qtext)) {
      ++line_no;
      const std::size_t here = offset;
      offset += line.size() + 1;
      if (detail::trim(line).empty()) continue;
      auto f = detail::split(line, '\t');
      if (f.size() < 3)
        throw format_error(
            rf, here,
            "line " + std::to_string(line_no) + ": expected query-id<TAB>corpus-id<TAB>score");
      int grade = 0;
      try {
        std::size_t pos = 0;
        grade = std::stoi(std::string(f[2]), &pos);
      } catch (const std::exception&) {
        if (line_no == 1) continue;  // header "query-id corpus-id score"
        throw format_error(
            rf, here,
            "line " + std::to_string(line_no) + ": bad grade '" + std::string(f[2]) + "'");
      }
      d.qrels[std::string(f[0])][std::string(f[1])] = grade;
    }
    detail::require_records(d.queries.size(), qf, "queries");
    detail::require_records(d.docs.size(), cf, "documents");
    detail::require_records(d.qrels.size(), rf, "relevance judgments");
    t.data = std::move(d);
  } else if (category == "classification") {
    ClassificationData d;
    detail::LabelIndex li;
    for (const char* split : {"train.jsonl", "test.jsonl"}) {
      const fs::path f = dir / split;
      auto recs = detail::read_jsonl(f);
      for (std::size_t i = 0; i < recs.size(); ++i) {
        auto text = detail::str_field(recs[i], "text", f, i);
        auto label = li(detail::str_field(recs[i], "label", f, i));
        if (split[1] == 'r')
          d.train_text.push_back(std::move(text)), d.train_label.push_back(label);
        else
          d.test_text.push_back(std::move(text)), d.test_label.push_back(label);
      }
    }
    detail::require_records(d.train_text.size(), dir / "train.jsonl", "records");
    detail::require_records(d.test_text.size(), dir / "test.jsonl", "records");
    d.label_names = li.names;
    t.data = std::move(d);
  } else if (category == "clustering") {
    ClusteringData d;
    detail::LabelIndex li;
    auto recs = detail::read_jsonl(test_jsonl);
    for (std::size_t i = 0; i < recs.size(); ++i) {
      d.text.push_back(detail::str_field(recs[i], "text", test_jsonl, i));
      d.label.push_back(li(detail::str_field(recs[i], "label", test_jsonl, i)));
    }
    detail::require_records(d.text.size(), test_jsonl, "records");
    d.label_names = li.names;
    t.data = std::move(d);
  } else if (category == "pair_classification") {
    PairClassificationData d;
    auto recs = detail::read_jsonl(test_jsonl);
    for (std::size_t i = 0; i < recs.size(); ++i) {
      d.sentence1.push_back(detail::str_field(recs[i], "sentence1", test_jsonl, i));
      d.sentence2.push_back(detail::str_field(recs[i], "sentence2", test_jsonl, i));
      const double l = detail::num_field(recs[i], "label", test_jsonl, i);
      if (l != 0 && l != 1)
        throw format_error(test_jsonl.string() + ": record " + std::to_string(i + 1) +
                           ": label must be 0 or 1");
      d.label.push_back(static_cast<int>(l));
    }
    detail::require_records(d.label.size(), test_jsonl, "sentence pairs");
    t.data = std::move(d);
  } else if (category == "reranking") {
    RerankingData d;
    auto recs = detail::read_jsonl(test_jsonl);
    for (std::size_t i = 0; i < recs.size(); ++i)
      d.items.push_back({detail::str_field(recs[i], "query", test_jsonl, i),
                         detail::str_list(recs[i], "positive", test_jsonl, i),
                         detail::str_list(recs[i], "negative", test_jsonl, i)});
    detail::require_records(d.items.size(), test_jsonl, "queries");
    t.data = std::move(d);
  } else {
    throw config_error(
        (dir / "task.json").string() + ": unknown category '" + category +
        "' (sts, retrieval, classification, clustering, pair_classification, reranking)");
  }
  t.notes["source"] = "dir:" + dir.string();
  return t;
}

}  // namespace lmembed::eval
