// lmembed/compare/stats.hpp - the significance tests between designs.
//
// Families and tests (each family gets its own Holm correction):
//   scope "task"     one task, every pair of designs: paired bootstrap over the task's
//                    per-example scores (eval::paired_bootstrap). Its p is floored at 1/B
//                    (B resamples): "no resample crossed zero" means p < 1/B, not p = 0.
//   scope "category" one category with 2+ tasks, every pair: Wilcoxon signed-rank over the
//                    category's task main scores (eval::wilcoxon, scipy's defaults), as the
//                    paper compares designs.
//   scope "all"      every task (2+), every pair: Wilcoxon over all main scores.
// Pairs are (a, b) with b the design that ran first (so the baseline, eos-causal, is b).
// Reference rows (DesignResult::reference, listed after the designs) are tested against every
// design with a = the reference; those tests form families of their own (PairTest::reference),
// so adding a reference leaves the Holm-corrected p of the design-vs-design tests unchanged.
// Two references are not tested against each other.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lmembed/compare/results.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/eval/stats.hpp"

namespace lmembed::compare {

/// Options of compute_tests().
struct TestOptions {
  std::int64_t bootstrap_samples = 2000;  ///< B of the paired bootstrap
  std::uint64_t seed = 0;                 ///< bootstrap seed (each pair gets seed + its index)
};

/// Holm-corrects p_holm within each (scope, name, reference) family of `tests`; NaN p stays out
/// of the family and keeps NaN.
inline void apply_holm(std::vector<PairTest>& tests) {
  std::vector<bool> done(tests.size(), false);
  for (std::size_t i = 0; i < tests.size(); ++i) {
    if (done[i]) continue;
    std::vector<std::size_t> fam;
    std::vector<double> ps;
    for (std::size_t j = i; j < tests.size(); ++j)
      if (!done[j] && tests[j].scope == tests[i].scope && tests[j].name == tests[i].name &&
          tests[j].reference == tests[i].reference) {
        done[j] = true;
        if (std::isfinite(tests[j].p)) {
          fam.push_back(j);
          ps.push_back(tests[j].p);
        }
      }
    const std::vector<double> adj = eval::holm(ps);
    for (std::size_t k = 0; k < fam.size(); ++k) tests[fam[k]].p_holm = adj[k];
  }
}

/// Every test between the finished designs of `r` (replacing r.tests). Designs must carry
/// per-example scores for the bootstrap; a task missing from a design is left out of that
/// design's pairs.
inline std::vector<PairTest> compute_tests(const Results& r, const TestOptions& opt = {}) {
  std::vector<PairTest> out;
  const auto& ds = r.designs;
  // Per task: paired bootstrap over examples. Pairs are independent: run them in parallel,
  // each with its own seed, so results do not depend on the thread count.
  struct Job {
    const TaskScore *a, *b;
    std::string an, bn, task;
    bool reference;
  };
  std::vector<Job> jobs;
  for (const auto& t : r.run.tasks)
    for (std::size_t i = 0; i < ds.size(); ++i)
      for (std::size_t j = i + 1; j < ds.size(); ++j) {
        if (ds[i].reference) continue;  // references only against designs (a = reference)
        const TaskScore* sa = ds[j].find_task(t.task);
        const TaskScore* sb = ds[i].find_task(t.task);
        if (sa && sb) jobs.push_back({sa, sb, ds[j].design, ds[i].design, t.task, ds[j].reference});
      }
  std::vector<PairTest> boot(jobs.size());
  const double floor_p =
      1.0 / static_cast<double>(std::max<std::int64_t>(opt.bootstrap_samples, 1));
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(jobs.size()); ++k) {
    const Job& jb = jobs[static_cast<std::size_t>(k)];
    PairTest& t = boot[static_cast<std::size_t>(k)];
    t.scope = "task";
    t.name = jb.task;
    t.a = jb.an;
    t.b = jb.bn;
    t.test = "bootstrap";
    t.reference = jb.reference;
    t.n = static_cast<std::int64_t>(jb.a->per_example.size());
    t.min_p = floor_p;
    if (jb.a->per_example.empty() || jb.a->per_example.size() != jb.b->per_example.size()) {
      t.mean_diff = jb.a->main_score - jb.b->main_score;  // no per-example scores: no test
      continue;
    }
    const auto res =
        eval::paired_bootstrap(jb.a->per_example, jb.b->per_example, opt.bootstrap_samples, 0.95,
                               opt.seed + static_cast<std::uint64_t>(k));
    t.mean_diff = res.mean_diff;
    t.ci_low = res.ci_low;
    t.ci_high = res.ci_high;
    t.p = std::max(res.p_two_sided, floor_p);
  }
  out.insert(out.end(), boot.begin(), boot.end());

  // Wilcoxon over tasks: per category with 2+ tasks, and over all tasks.
  auto wilcoxon_family = [&](const std::string& scope, const std::string& name,
                             const std::vector<TaskInfo>& tasks) {
    if (tasks.size() < 2) return;
    for (std::size_t i = 0; i < ds.size(); ++i)
      for (std::size_t j = i + 1; j < ds.size(); ++j) {
        if (ds[i].reference) continue;
        std::vector<double> xa, xb;
        for (const auto& t : tasks) {
          const TaskScore* sa = ds[j].find_task(t.task);
          const TaskScore* sb = ds[i].find_task(t.task);
          if (sa && sb) {
            xa.push_back(sa->main_score);
            xb.push_back(sb->main_score);
          }
        }
        PairTest t;
        t.scope = scope;
        t.name = name;
        t.a = ds[j].design;
        t.b = ds[i].design;
        t.test = "wilcoxon";
        t.reference = ds[j].reference;
        t.n = static_cast<std::int64_t>(xa.size());
        t.min_p = eval::wilcoxon_min_pvalue(t.n);
        double sum = 0;
        bool all_zero = true;
        for (std::size_t k = 0; k < xa.size(); ++k) {
          sum += xa[k] - xb[k];
          all_zero = all_zero && xa[k] == xb[k];
        }
        t.mean_diff = xa.empty() ? NAN : sum / static_cast<double>(xa.size());
        // scipy refuses all-zero differences; identical scores are simply "no difference".
        if (xa.size() >= 2) t.p = all_zero ? 1.0 : eval::wilcoxon(xa, xb).pvalue;
        out.push_back(std::move(t));
      }
  };
  for (const auto& c : r.categories()) wilcoxon_family("category", c, r.tasks_in(c));
  wilcoxon_family("all", "all", r.run.tasks);
  apply_holm(out);
  return out;
}

}  // namespace lmembed::compare
