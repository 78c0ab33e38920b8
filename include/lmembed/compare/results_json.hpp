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
#include "lmembed/core/json.hpp"

namespace lmembed::compare {

namespace detail {
inline json::Value num_or_null(double x) {
  return std::isfinite(x) ? json::Value(x) : json::Value();
}
inline double get_num(const json::Value& o, std::string_view key, double fallback = NAN) {
  const json::Value* v = o.find(key);
  if (!v || v->is_null()) return fallback;
  return v->as_double();
}
inline std::int64_t get_int(const json::Value& o, std::string_view key, std::int64_t fallback = 0) {
  const json::Value* v = o.find(key);
  return v && !v->is_null() ? v->as_int() : fallback;
}
inline std::string get_str(const json::Value& o, std::string_view key) {
  const json::Value* v = o.find(key);
  return v && !v->is_null() ? v->as_string() : std::string();
}
}  // namespace detail

/// JSON of one stage record.
inline json::Value to_json(const StageRecord& s) {
  json::Value o = json::Value::object();
  o["design"] = s.design;
  o["stage"] = s.stage;
  o["wall_s"] = s.wall_s;
  o["peak_rss_bytes"] = s.peak_rss_bytes;
  if (!s.note.empty()) o["note"] = s.note;
  return o;
}

/// Reads a stage record.
inline StageRecord stage_from_json(const json::Value& o) {
  StageRecord s;
  s.design = detail::get_str(o, "design");
  s.stage = o.at("stage").as_string();
  s.wall_s = detail::get_num(o, "wall_s", 0);
  s.peak_rss_bytes = detail::get_int(o, "peak_rss_bytes", -1);
  s.note = detail::get_str(o, "note");
  return s;
}

/// JSON of one design's results; per-example scores only when asked (resume files).
inline json::Value to_json(const DesignResult& d, bool per_example) {
  json::Value o = json::Value::object();
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
  json::Value loss = json::Value::array();
  for (const auto& p : d.loss) {
    json::Value pt = json::Value::array();
    pt.push_back(p.step);
    pt.push_back(detail::num_or_null(p.loss));
    loss.push_back(std::move(pt));
  }
  o["loss"] = std::move(loss);
  json::Value tasks = json::Value::array();
  for (const auto& t : d.tasks) {
    json::Value r = json::Value::object();
    r["task"] = t.task;
    r["category"] = t.category;
    r["main_metric"] = t.main_metric;
    r["main_score"] = detail::num_or_null(t.main_score);
    json::Value m = json::Value::object();
    for (const auto& [k, v] : t.metrics) m[k] = detail::num_or_null(v);
    r["metrics"] = std::move(m);
    r["n_examples"] = static_cast<std::int64_t>(t.per_example.size());
    if (per_example) {
      json::Value pe = json::Value::array();
      for (double x : t.per_example) pe.push_back(detail::num_or_null(x));
      r["per_example"] = std::move(pe);
    }
    tasks.push_back(std::move(r));
  }
  o["tasks"] = std::move(tasks);
  json::Value st = json::Value::array();
  for (const auto& s : d.stages) st.push_back(to_json(s));
  o["stages"] = std::move(st);
  return o;
}

/// Reads one design's results (per-example scores when present).
inline DesignResult design_from_json(const json::Value& o) {
  DesignResult d;
  d.design = o.at("design").as_string();
  d.attention = detail::get_str(o, "attention");
  d.pooling = detail::get_str(o, "pooling");
  d.capture = detail::get_str(o, "capture");
  d.head_file = detail::get_str(o, "head_file");
  d.head_sha256 = detail::get_str(o, "head_sha256");
  if (const json::Value* ref = o.find("reference")) d.reference = ref->as_bool();
  d.note = detail::get_str(o, "note");
  if (const json::Value* loss = o.find("loss"))
    for (const auto& p : loss->as_array())
      d.loss.push_back({p.at(0).as_int(), p.at(1).is_null() ? NAN : p.at(1).as_double()});
  for (const auto& r : o.at("tasks").as_array()) {
    TaskScore t;
    t.task = r.at("task").as_string();
    t.category = r.at("category").as_string();
    t.main_metric = detail::get_str(r, "main_metric");
    t.main_score = detail::get_num(r, "main_score");
    if (const json::Value* m = r.find("metrics"))
      for (const auto& [k, v] : m->as_object()) t.metrics[k] = v.is_null() ? NAN : v.as_double();
    if (const json::Value* pe = r.find("per_example"))
      for (const auto& x : pe->as_array())
        t.per_example.push_back(x.is_null() ? NAN : x.as_double());
    d.tasks.push_back(std::move(t));
  }
  if (const json::Value* st = o.find("stages"))
    for (const auto& s : st->as_array()) d.stages.push_back(stage_from_json(s));
  return d;
}

/// results.json: the whole comparison (per-example scores left to the design files).
inline json::Value to_json(const Results& r) {
  json::Value o = json::Value::object();
  o["schema"] = r.schema;
  const RunInfo& ri = r.run;
  json::Value run = json::Value::object();
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
  json::Value designs = json::Value::array();
  for (const auto& d : ri.designs) designs.push_back(d);
  run["designs"] = std::move(designs);
  json::Value tasks = json::Value::array();
  for (const auto& t : ri.tasks) {
    json::Value x = json::Value::object();
    x["task"] = t.task;
    x["category"] = t.category;
    x["main_metric"] = t.main_metric;
    x["n_examples"] = t.n_examples;
    tasks.push_back(std::move(x));
  }
  run["tasks"] = std::move(tasks);
  json::Value hc = json::Value::object();
  for (const auto& [k, v] : ri.head_config) hc[k] = v;
  run["head_config"] = std::move(hc);
  o["run"] = std::move(run);

  json::Value ds = json::Value::array();
  for (const auto& d : r.designs) ds.push_back(to_json(d, false));
  o["designs"] = std::move(ds);
  json::Value tests = json::Value::array();
  for (const auto& t : r.tests) {
    json::Value x = json::Value::object();
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
  json::Value st = json::Value::array();
  for (const auto& s : r.stages) st.push_back(to_json(s));
  o["stages"] = std::move(st);
  return o;
}

/// Reads results.json; config_error on another schema.
inline Results results_from_json(const json::Value& o) {
  Results r;
  r.schema = o.at("schema").as_string();
  if (r.schema != kResultsSchema)
    throw config_error("results.json: schema '" + r.schema + "', expected '" + kResultsSchema +
                       "'");
  const json::Value& run = o.at("run");
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
  if (const json::Value* ds = run.find("designs"))
    for (const auto& d : ds->as_array()) ri.designs.push_back(d.as_string());
  if (const json::Value* ts = run.find("tasks"))
    for (const auto& t : ts->as_array())
      ri.tasks.push_back({t.at("task").as_string(), t.at("category").as_string(),
                          detail::get_str(t, "main_metric"), detail::get_int(t, "n_examples")});
  if (const json::Value* hc = run.find("head_config"))
    for (const auto& [k, v] : hc->as_object()) ri.head_config[k] = v.as_string();
  for (const auto& d : o.at("designs").as_array()) r.designs.push_back(design_from_json(d));
  for (const auto& x : o.at("tests").as_array()) {
    PairTest t;
    t.scope = x.at("scope").as_string();
    t.name = x.at("name").as_string();
    t.a = x.at("a").as_string();
    t.b = x.at("b").as_string();
    t.test = x.at("test").as_string();
    t.n = detail::get_int(x, "n");
    t.mean_diff = detail::get_num(x, "mean_diff");
    t.ci_low = detail::get_num(x, "ci_low");
    t.ci_high = detail::get_num(x, "ci_high");
    t.p = detail::get_num(x, "p");
    t.p_holm = detail::get_num(x, "p_holm");
    t.min_p = detail::get_num(x, "min_p");
    if (const json::Value* ref = x.find("reference")) t.reference = ref->as_bool();
    r.tests.push_back(std::move(t));
  }
  if (const json::Value* st = o.find("stages"))
    for (const auto& s : st->as_array()) r.stages.push_back(stage_from_json(s));
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
  json::Value a = json::Value::array();
  for (const auto& d : refs) a.push_back(to_json(d, true));
  write_file_atomic(references_file(dir), json::dump(a, 1) + "\n");
}

/// The reference rows saved in `dir` (none when there is no references.json).
inline std::vector<DesignResult> load_references(const std::filesystem::path& dir) {
  std::vector<DesignResult> out;
  const auto path = references_file(dir);
  if (!std::filesystem::exists(path)) return out;
  const json::Value doc = json::parse(read_text_file(path), path.string());
  for (const auto& v : doc.as_array()) {
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
