// lmembed/compare/results_json.hpp - results.json and the per-design resume files.
//
// Layout of an output directory DIR written by `lmembed compare`:
//   DIR/results.json            Results without per-example scores (schema kResultsSchema)
//   DIR/designs/<name>.json     one finished design, per-example scores included; written
//                               atomically the moment the design finishes, so an interrupted
//                               run resumes from the designs already there
//   DIR/report.md, report.html  rendered from results.json alone
// NaN (a p-value that was not computed) is written as null and read back as NaN.
#pragma once

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>

#include "lmembed/compare/results.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"

namespace lmembed::compare {

namespace detail {
inline ordered_json num_or_null(double x) {
  return std::isfinite(x) ? ordered_json(x) : ordered_json();
}
// Optional members (absent or null: the fallback); config_error naming the key otherwise.
inline double get_num(const ordered_json& o, std::string_view key, double fallback = NAN) {
  const ordered_json* v = json::find(o, key);
  return v && !v->is_null() ? json::as_double(*v, {}, key) : fallback;
}
inline std::int64_t get_int(const ordered_json& o, std::string_view key,
                            std::int64_t fallback = 0) {
  const ordered_json* v = json::find(o, key);
  return v && !v->is_null() ? json::as_int(*v, {}, key) : fallback;
}
inline std::string get_str(const ordered_json& o, std::string_view key) {
  const ordered_json* v = json::find(o, key);
  return v && !v->is_null() ? json::as_string(*v, {}, key) : std::string();
}
inline double num_or_nan(const ordered_json& v) {
  return v.is_null() ? NAN : json::as_double(v);
}
}  // namespace detail

/// JSON of one stage record.
inline ordered_json to_json(const StageRecord& s) {
  ordered_json o = ordered_json::object();
  o["design"] = s.design;
  o["stage"] = s.stage;
  o["wall_s"] = s.wall_s;
  o["peak_rss_bytes"] = s.peak_rss_bytes;
  if (!s.note.empty()) o["note"] = s.note;
  return o;
}

/// Reads a stage record.
inline StageRecord stage_from_json(const ordered_json& o) {
  StageRecord s;
  s.design = detail::get_str(o, "design");
  s.stage = json::get_string(o, "stage");
  s.wall_s = detail::get_num(o, "wall_s", 0);
  s.peak_rss_bytes = detail::get_int(o, "peak_rss_bytes", -1);
  s.note = detail::get_str(o, "note");
  return s;
}

/// JSON of one design's results; per-example scores only when asked (resume files).
inline ordered_json to_json(const DesignResult& d, bool per_example) {
  ordered_json o = ordered_json::object();
  o["design"] = d.design;
  o["attention"] = d.attention;
  o["pooling"] = d.pooling;
  o["capture"] = d.capture;
  o["head_file"] = d.head_file;
  o["head_sha256"] = d.head_sha256;
  if (d.reference) {
    o["reference"] = true;
    o["note"] = d.note;
  }
  ordered_json loss = ordered_json::array();
  for (const auto& p : d.loss) {
    ordered_json pt = ordered_json::array();
    pt.push_back(p.step);
    pt.push_back(detail::num_or_null(p.loss));
    loss.push_back(std::move(pt));
  }
  o["loss"] = std::move(loss);
  ordered_json tasks = ordered_json::array();
  for (const auto& t : d.tasks) {
    ordered_json r = ordered_json::object();
    r["task"] = t.task;
    r["category"] = t.category;
    r["main_metric"] = t.main_metric;
    r["main_score"] = detail::num_or_null(t.main_score);
    ordered_json m = ordered_json::object();
    for (const auto& [k, v] : t.metrics) m[k] = detail::num_or_null(v);
    r["metrics"] = std::move(m);
    r["n_examples"] = static_cast<std::int64_t>(t.per_example.size());
    if (per_example) {
      ordered_json pe = ordered_json::array();
      for (double x : t.per_example) pe.push_back(detail::num_or_null(x));
      r["per_example"] = std::move(pe);
    }
    tasks.push_back(std::move(r));
  }
  o["tasks"] = std::move(tasks);
  ordered_json st = ordered_json::array();
  for (const auto& s : d.stages) st.push_back(to_json(s));
  o["stages"] = std::move(st);
  return o;
}

/// Reads one design's results (per-example scores when present).
inline DesignResult design_from_json(const ordered_json& o) {
  DesignResult d;
  d.design = json::get_string(o, "design");
  d.attention = detail::get_str(o, "attention");
  d.pooling = detail::get_str(o, "pooling");
  d.capture = detail::get_str(o, "capture");
  d.head_file = detail::get_str(o, "head_file");
  d.head_sha256 = detail::get_str(o, "head_sha256");
  if (const ordered_json* ref = json::find(o, "reference")) d.reference = json::as_bool(*ref);
  d.note = detail::get_str(o, "note");
  if (const ordered_json* loss = json::find(o, "loss"))
    for (const auto& p : json::as_array(*loss))
      d.loss.push_back({json::as_int(json::at(p, 0)), detail::num_or_nan(json::at(p, 1))});
  for (const auto& r : json::get_array(o, "tasks")) {
    TaskScore t;
    t.task = json::get_string(r, "task");
    t.category = json::get_string(r, "category");
    t.main_metric = detail::get_str(r, "main_metric");
    t.main_score = detail::get_num(r, "main_score");
    if (const ordered_json* m = json::find(r, "metrics"))
      for (const auto& [k, v] : json::as_object(*m)) t.metrics[k] = detail::num_or_nan(v);
    if (const ordered_json* pe = json::find(r, "per_example"))
      for (const auto& x : json::as_array(*pe)) t.per_example.push_back(detail::num_or_nan(x));
    d.tasks.push_back(std::move(t));
  }
  if (const ordered_json* st = json::find(o, "stages"))
    for (const auto& s : json::as_array(*st)) d.stages.push_back(stage_from_json(s));
  return d;
}

/// results.json: the whole comparison (per-example scores left to the design files).
inline ordered_json to_json(const Results& r) {
  ordered_json o = ordered_json::object();
  o["schema"] = r.schema;
  const RunInfo& ri = r.run;
  ordered_json run = ordered_json::object();
  run["lmembed_version"] = ri.lmembed_version;
  run["model"] = ri.model;
  run["model_arch"] = ri.model_arch;
  run["d_model"] = ri.d_model;
  run["n_layers"] = ri.n_layers;
  run["n_params"] = ri.n_params;
  run["train_file"] = ri.train_file;
  run["n_train"] = ri.n_train;
  run["n_train_overlap"] = ri.n_train_overlap;
  run["steps"] = ri.steps;
  run["batch"] = ri.batch;
  run["lr"] = ri.lr;
  run["seed"] = static_cast<std::int64_t>(ri.seed);
  run["threads"] = ri.threads;
  run["bootstrap_samples"] = ri.bootstrap_samples;
  run["alpha"] = ri.alpha;
  run["started_utc"] = ri.started_utc;
  run["finished_utc"] = ri.finished_utc;
  run["encoding"] = ri.encoding;
  run["backbone_seconds"] = ri.backbone_seconds;
  run["backbone_sequences"] = ri.backbone_sequences;
  run["wall_seconds"] = ri.wall_seconds;
  run["negatives"] = ri.negatives;
  ordered_json designs = ordered_json::array();
  for (const auto& d : ri.designs) designs.push_back(d);
  run["designs"] = std::move(designs);
  ordered_json tasks = ordered_json::array();
  for (const auto& t : ri.tasks) {
    ordered_json x = ordered_json::object();
    x["task"] = t.task;
    x["category"] = t.category;
    x["main_metric"] = t.main_metric;
    x["n_examples"] = t.n_examples;
    tasks.push_back(std::move(x));
  }
  run["tasks"] = std::move(tasks);
  ordered_json hc = ordered_json::object();
  for (const auto& [k, v] : ri.head_config) hc[k] = v;
  run["head_config"] = std::move(hc);
  o["run"] = std::move(run);

  ordered_json ds = ordered_json::array();
  for (const auto& d : r.designs) ds.push_back(to_json(d, false));
  o["designs"] = std::move(ds);
  ordered_json tests = ordered_json::array();
  for (const auto& t : r.tests) {
    ordered_json x = ordered_json::object();
    x["scope"] = t.scope;
    x["name"] = t.name;
    x["a"] = t.a;
    x["b"] = t.b;
    x["test"] = t.test;
    x["n"] = t.n;
    x["mean_diff"] = detail::num_or_null(t.mean_diff);
    x["ci_low"] = detail::num_or_null(t.ci_low);
    x["ci_high"] = detail::num_or_null(t.ci_high);
    x["p"] = detail::num_or_null(t.p);
    x["p_holm"] = detail::num_or_null(t.p_holm);
    x["min_p"] = detail::num_or_null(t.min_p);
    if (t.reference) x["reference"] = true;
    tests.push_back(std::move(x));
  }
  o["tests"] = std::move(tests);
  ordered_json st = ordered_json::array();
  for (const auto& s : r.stages) st.push_back(to_json(s));
  o["stages"] = std::move(st);
  return o;
}

/// Reads results.json; config_error on another schema.
inline Results results_from_json(const ordered_json& o) {
  Results r;
  r.schema = json::get_string(o, "schema");
  if (r.schema != kResultsSchema)
    throw config_error("results.json: schema '" + r.schema + "', expected '" + kResultsSchema +
                       "'");
  const ordered_json& run = json::at(o, "run");
  RunInfo& ri = r.run;
  ri.lmembed_version = detail::get_str(run, "lmembed_version");
  ri.model = detail::get_str(run, "model");
  ri.model_arch = detail::get_str(run, "model_arch");
  ri.d_model = detail::get_int(run, "d_model");
  ri.n_layers = detail::get_int(run, "n_layers");
  ri.n_params = detail::get_int(run, "n_params");
  ri.train_file = detail::get_str(run, "train_file");
  ri.n_train = detail::get_int(run, "n_train");
  ri.n_train_overlap = detail::get_int(run, "n_train_overlap");
  ri.steps = detail::get_int(run, "steps");
  ri.batch = detail::get_int(run, "batch");
  ri.lr = detail::get_num(run, "lr", 0);
  ri.seed = static_cast<std::uint64_t>(detail::get_int(run, "seed"));
  ri.threads = static_cast<int>(detail::get_int(run, "threads"));
  ri.bootstrap_samples = detail::get_int(run, "bootstrap_samples");
  ri.alpha = detail::get_num(run, "alpha", 0.05);
  ri.started_utc = detail::get_str(run, "started_utc");
  ri.finished_utc = detail::get_str(run, "finished_utc");
  ri.encoding = detail::get_str(run, "encoding");
  ri.backbone_seconds = detail::get_num(run, "backbone_seconds", 0);
  ri.backbone_sequences = detail::get_int(run, "backbone_sequences");
  ri.wall_seconds = detail::get_num(run, "wall_seconds", 0);
  ri.negatives = detail::get_int(run, "negatives");
  if (const ordered_json* ds = json::find(run, "designs"))
    for (const auto& d : json::as_array(*ds)) ri.designs.push_back(json::as_string(d));
  if (const ordered_json* ts = json::find(run, "tasks"))
    for (const auto& t : json::as_array(*ts))
      ri.tasks.push_back({json::get_string(t, "task"), json::get_string(t, "category"),
                          detail::get_str(t, "main_metric"), detail::get_int(t, "n_examples")});
  if (const ordered_json* hc = json::find(run, "head_config"))
    for (const auto& [k, v] : json::as_object(*hc))
      ri.head_config[k] = json::as_string(v, "head_config", k);
  for (const auto& d : json::get_array(o, "designs")) r.designs.push_back(design_from_json(d));
  for (const auto& x : json::get_array(o, "tests")) {
    PairTest t;
    t.scope = json::get_string(x, "scope");
    t.name = json::get_string(x, "name");
    t.a = json::get_string(x, "a");
    t.b = json::get_string(x, "b");
    t.test = json::get_string(x, "test");
    t.n = detail::get_int(x, "n");
    t.mean_diff = detail::get_num(x, "mean_diff");
    t.ci_low = detail::get_num(x, "ci_low");
    t.ci_high = detail::get_num(x, "ci_high");
    t.p = detail::get_num(x, "p");
    t.p_holm = detail::get_num(x, "p_holm");
    t.min_p = detail::get_num(x, "min_p");
    if (const ordered_json* ref = json::find(x, "reference")) t.reference = json::as_bool(*ref);
    r.tests.push_back(std::move(t));
  }
  if (const ordered_json* st = json::find(o, "stages"))
    for (const auto& s : json::as_array(*st)) r.stages.push_back(stage_from_json(s));
  return r;
}

/// DIR/designs/<name>.json: one finished design with its per-example scores.
inline std::filesystem::path design_file(const std::filesystem::path& dir,
                                         const std::string& name) {
  return dir / "designs" / (name + ".json");
}

/// Saves one finished design atomically (the unit an interrupted run resumes from).
inline void save_design(const std::filesystem::path& dir, const DesignResult& d) {
  std::filesystem::create_directories(dir / "designs");
  write_file_atomic(design_file(dir, d.design), json::dump(to_json(d, true), 1) + "\n");
}

/// The finished design `name` saved in `dir`, or nullopt when there is none. A file that does
/// not parse throws format_error naming it (never silently recomputed over).
inline std::optional<DesignResult> load_design(const std::filesystem::path& dir,
                                               const std::string& name) {
  const auto path = design_file(dir, name);
  if (!std::filesystem::exists(path)) return std::nullopt;
  return design_from_json(json::parse(read_text_file(path), path.string()));
}

/// DIR/references.json: the reference rows with their per-example scores.
inline std::filesystem::path references_file(const std::filesystem::path& dir) {
  return dir / "references.json";
}

/// Saves the reference rows (with per-example scores) atomically; removes the file for none.
inline void save_references(const std::filesystem::path& dir,
                            const std::vector<DesignResult>& refs) {
  if (refs.empty()) {
    std::filesystem::remove(references_file(dir));
    return;
  }
  ordered_json a = ordered_json::array();
  for (const auto& d : refs) a.push_back(to_json(d, true));
  write_file_atomic(references_file(dir), json::dump(a, 1) + "\n");
}

/// The reference rows saved in `dir` (none when there is no references.json).
inline std::vector<DesignResult> load_references(const std::filesystem::path& dir) {
  std::vector<DesignResult> out;
  const auto path = references_file(dir);
  if (!std::filesystem::exists(path)) return out;
  const ordered_json doc = json::parse(read_text_file(path), path.string());
  for (const auto& v : json::as_array(doc)) {
    out.push_back(design_from_json(v));
    out.back().reference = true;
  }
  return out;
}

/// Reads DIR/results.json (or the given file).
inline Results load_results(const std::filesystem::path& file) {
  return results_from_json(json::parse(read_text_file(file), file.string()));
}

}  // namespace lmembed::compare
