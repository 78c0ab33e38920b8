// lmembed/compare/results.hpp - what `lmembed compare` measures, as data.
//
// One Results value holds everything the report shows and results.json stores: the run's
// configuration and seeds, per design its task scores, training-loss curve and per-stage cost,
// and the significance tests between designs. The report is rendered from this value alone,
// so a results.json can be re-rendered (`lmembed compare --render-only`) without rerunning.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmembed/eval/stats.hpp"

namespace lmembed::compare {

/// results.json's "schema" field; bump on incompatible changes.
inline constexpr const char* kResultsSchema = "lmembed.compare.results/1";

/// One evaluated task for one design (mirrors eval::TaskResult).
struct TaskScore {
  std::string task;                       ///< e.g. "sts-b"
  std::string category;                   ///< e.g. "sts", "classification"
  std::string main_metric;                ///< e.g. "spearman"
  double main_score = 0;                  ///< the main metric's value
  std::map<std::string, double> metrics;  ///< every metric, main included
  std::vector<double> per_example;        ///< per-example scores (for the paired bootstrap)
};

/// One point of a training-loss curve.
struct LossPoint {
  std::int64_t step = 0;
  double loss = 0;
};

/// Cost of one stage (cache / train / eval) of one design; shared caches are recorded once,
/// under the design that built them, with `note` naming the designs that reuse them.
struct StageRecord {
  std::string design;                ///< the design it ran for ("" for run-wide stages)
  std::string stage;                 ///< "cache", "train", "eval", "stats", "report"
  double wall_s = 0;                 ///< wall-clock seconds
  std::int64_t peak_rss_bytes = -1;  ///< peak resident set during the stage; -1 if unknown
  std::string note;                  ///< e.g. "reused cache causal.last_layer.last_token"
};

/// Everything measured for one design.
struct DesignResult {
  std::string design;               ///< registry name
  std::string attention;            ///< "causal" | "bidirectional"
  std::string pooling;              ///< "eos" | "mean" | "latent" | "multi_layer"
  std::string capture;              ///< to_string(CaptureSpec), e.g. "all_layers.last_token"
  std::string head_file;            ///< trained head (relative to the output dir), or ""
  std::string head_sha256;          ///< of head_file, or ""
  std::vector<LossPoint> loss;      ///< training-loss curve (empty when nothing was trained)
  std::vector<TaskScore> tasks;     ///< one per evaluated task
  std::vector<StageRecord> stages;  ///< this design's stages
  /// A reference row (e.g. sentence-transformers' all-MiniLM-L6-v2 from precomputed
  /// embeddings): scored by the same evaluator and tested against the designs, but not a design
  /// (its tests are their own Holm families; it never enters the verdict on designs).
  bool reference = false;
  std::string note;  ///< how a reference's embeddings were made ("" for designs)

  /// The score of `task`, or nullptr.
  const TaskScore* find_task(const std::string& name) const {
    for (const auto& t : tasks)
      if (t.task == name) return &t;
    return nullptr;
  }
};

/// A task as the run saw it.
struct TaskInfo {
  std::string task;
  std::string category;
  std::string main_metric;
  std::int64_t n_examples = 0;  ///< number of per-example scores (bootstrap units)
};

/// The run's configuration: what was compared, on what, with which seeds.
struct RunInfo {
  std::string lmembed_version;
  std::string model;       ///< model path as given
  std::string model_arch;  ///< e.g. "llama"
  std::int64_t d_model = 0, n_layers = 0, n_params = 0;
  std::string train_file;            ///< training JSONL
  std::int64_t n_train = 0;          ///< training examples used
  std::int64_t n_train_overlap = 0;  ///< dropped: they share a text with an eval example
  std::int64_t steps = 0, batch = 0;
  double lr = 0;
  std::uint64_t seed = 0;
  int threads = 0;
  std::int64_t bootstrap_samples = 0;
  double alpha = 0.05;  ///< significance level of every mark in the report
  std::string started_utc, finished_utc;
  std::vector<std::string> designs;  ///< requested, in order
  std::vector<TaskInfo> tasks;
  std::map<std::string, std::string> head_config;  ///< head sizes as strings, for the record
  /// "shared" (one backbone pass per attention mode and text) or "per-design".
  std::string encoding;
  double backbone_seconds = 0;          ///< wall seconds in the backbone (this run)
  std::int64_t backbone_sequences = 0;  ///< sequences the backbone ran (this run)
  double wall_seconds = 0;              ///< load to the last design (stats and report excluded)
  std::int64_t negatives = 0;  ///< hard negatives per training example (most of any example)
};

/// One pairwise significance test between designs a and b (difference = a - b).
struct PairTest {
  std::string scope;   ///< "category" (Wilcoxon over its tasks), "task" (bootstrap), "all"
  std::string name;    ///< the category, the task, or "all"
  std::string a, b;    ///< design names
  std::string test;    ///< "wilcoxon" | "bootstrap"
  std::int64_t n = 0;  ///< tasks (wilcoxon) or examples (bootstrap)
  double mean_diff = 0;
  double ci_low = NAN, ci_high = NAN;  ///< bootstrap 95% interval of the difference
  double p = NAN;                      ///< raw two-sided p
  double p_holm = NAN;                 ///< Holm-corrected within its (scope, name) family
  double min_p = NAN;      ///< smallest p this test could give with this n (power bound)
  bool reference = false;  ///< one side is a reference row (a), the other a design (b)
};

/// The whole comparison.
struct Results {
  std::string schema = kResultsSchema;
  RunInfo run;
  std::vector<DesignResult> designs;  ///< finished designs, in run order, then references
  std::vector<PairTest> tests;
  std::vector<StageRecord> stages;  ///< run-wide stages (load, stats, report)

  /// The finished design named `name`, or nullptr.
  const DesignResult* find(const std::string& name) const {
    for (const auto& d : designs)
      if (d.design == name) return &d;
    return nullptr;
  }
  /// The categories in first-seen task order.
  std::vector<std::string> categories() const {
    std::vector<std::string> out;
    for (const auto& t : run.tasks) {
      bool seen = false;
      for (const auto& c : out) seen = seen || c == t.category;
      if (!seen) out.push_back(t.category);
    }
    return out;
  }
  /// The tasks of one category.
  std::vector<TaskInfo> tasks_in(const std::string& category) const {
    std::vector<TaskInfo> out;
    for (const auto& t : run.tasks)
      if (t.category == category) out.push_back(t);
    return out;
  }
  /// Mean main score of design over the tasks of `category`; nullopt when any is missing.
  std::optional<double> category_score(const DesignResult& d, const std::string& category) const {
    double sum = 0;
    int n = 0;
    for (const auto& t : tasks_in(category)) {
      const TaskScore* s = d.find_task(t.task);
      if (!s) return std::nullopt;
      sum += s->main_score;
      ++n;
    }
    if (n == 0) return std::nullopt;
    return sum / n;
  }
  /// The test of `scope`/`name` between a and b in either order (mean_diff then refers to the
  /// stored order), or nullptr.
  const PairTest* find_test(const std::string& scope, const std::string& name, const std::string& a,
                            const std::string& b) const {
    for (const auto& t : tests)
      if (t.scope == scope && t.name == name && ((t.a == a && t.b == b) || (t.a == b && t.b == a)))
        return &t;
    return nullptr;
  }
};

/// The smallest number of tasks with which the exact two-sided Wilcoxon signed-rank test can
/// reach p < alpha (6 for alpha = 0.05, since 2/2^5 = 0.0625).
inline std::int64_t wilcoxon_tasks_needed(double alpha) {
  std::int64_t n = 1;
  while (eval::wilcoxon_min_pvalue(n) >= alpha && n < 1000) ++n;
  return n;
}

}  // namespace lmembed::compare
