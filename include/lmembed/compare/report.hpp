// lmembed/compare/report.hpp - report.md, report.html and the terminal summary table.
//
// Everything is rendered from a Results value alone. report.html is self-contained: inline CSS
// and inline SVG, no script, no font, no image, no link that leaves the file, so it opens the
// same offline, in a mail attachment or years later. Significance marks in charts and tables
// are always against the baseline (eos-causal) and always say which test gave them:
//   - a category with 2+ tasks: Wilcoxon signed-rank over its tasks (as the paper does);
//   - a category with 1 task: the paired bootstrap over that task's examples (Wilcoxon over
//     one task cannot be computed).
// '*' = significant after Holm correction, '(*)' = significant only without correction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "lmembed/compare/design.hpp"
#include "lmembed/compare/results.hpp"
#include "lmembed/compare/results_json.hpp"
#include "lmembed/core/file.hpp"

namespace lmembed::compare {

namespace detail {

/// printf-style formatting of one double.
inline std::string fmt(double x, int prec = 4) {
  if (!std::isfinite(x)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, x);
  return buf;
}

/// A p-value as people read it: 3 significant digits, "<1e-4" style below 1e-4.
inline std::string fmt_p(double p) {
  if (!std::isfinite(p)) return "n/a";
  char buf[64];
  if (p < 1e-4)
    std::snprintf(buf, sizeof buf, "%.1e", p);
  else
    std::snprintf(buf, sizeof buf, "%.4f", p);
  return buf;
}

/// Text escaped for HTML element content and attribute values.
inline std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// Text escaped for a Markdown table cell.
inline std::string md_cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out;
}

/// The paper label of a design, or "" for names not in the registry.
inline std::string paper_label(const std::string& name) {
  for (const Design& d : kDesigns)
    if (d.name == name) return std::string(d.paper);
  return "";
}
/// The paper column of a row: the paper's label, or "reference" for a reference row.
inline std::string paper_label(const DesignResult& d) {
  return d.reference ? "reference" : paper_label(d.design);
}

/// A stable colour per design (registry index), colour-blind-friendly palette (Okabe-Ito +).
inline std::string design_colour(const std::string& name) {
  static const char* palette[] = {"#555555", "#E69F00", "#56B4E9", "#009E73", "#CC79A7",
                                  "#0072B2", "#D55E00", "#F0E442", "#8C564B", "#17BECF"};
  for (std::size_t i = 0; i < kDesigns.size(); ++i)
    if (kDesigns[i].name == name) return palette[i % 10];
  return "#333333";
}

inline std::string mib(std::int64_t bytes) {
  return bytes < 0 ? "n/a" : fmt(static_cast<double>(bytes) / (1024.0 * 1024.0), 1);
}

}  // namespace detail

/// Verdict of one design against the baseline in one category.
struct Mark {
  const PairTest* test = nullptr;  ///< the test used, or nullptr (baseline / not computed)
  double diff = NAN;               ///< design - baseline (category mean of main scores)
  bool holm = false;               ///< significant after Holm correction
  bool raw = false;                ///< significant without correction
  /// "*", "(*)" or "".
  std::string symbol() const { return holm ? "*" : raw ? "(*)" : ""; }
};

/// The test that decides significance against the baseline in `category` (see the file
/// comment), oriented so that `diff` is design minus baseline.
inline Mark category_mark(const Results& r, const std::string& category,
                          const std::string& design) {
  Mark m;
  if (design == kBaseline) return m;
  const auto tasks = r.tasks_in(category);
  if (tasks.size() >= 2)
    m.test = r.find_test("category", category, design, std::string(kBaseline));
  else if (tasks.size() == 1)
    m.test = r.find_test("task", tasks[0].task, design, std::string(kBaseline));
  const DesignResult* d = r.find(design);
  const DesignResult* b = r.find(std::string(kBaseline));
  if (d && b) {
    auto sd = r.category_score(*d, category), sb = r.category_score(*b, category);
    if (sd && sb) m.diff = *sd - *sb;
  }
  if (m.test) {
    m.raw = std::isfinite(m.test->p) && m.test->p < r.run.alpha;
    m.holm = std::isfinite(m.test->p_holm) && m.test->p_holm < r.run.alpha;
  }
  return m;
}

/// How many tests (of all scopes) are significant, raw and after Holm.
struct SignificanceCount {
  int tests = 0, raw = 0, holm = 0;
};

/// Counts the design-vs-design tests only (reference rows are not designs).
inline SignificanceCount count_significant(const Results& r) {
  SignificanceCount c;
  for (const auto& t : r.tests) {
    if (!std::isfinite(t.p) || t.reference) continue;
    ++c.tests;
    if (t.p < r.run.alpha) ++c.raw;
    if (std::isfinite(t.p_holm) && t.p_holm < r.run.alpha) ++c.holm;
  }
  return c;
}

/// The plain-language paragraph on what was run and on the power of the tests.
inline std::vector<std::string> power_statement(const Results& r) {
  std::vector<std::string> out;
  const RunInfo& ri = r.run;
  out.push_back("Model: " + ri.model + " (" + ri.model_arch + ", width " +
                std::to_string(ri.d_model) + ", " + std::to_string(ri.n_layers) + " layers" +
                (ri.n_params > 0 ? ", " + std::to_string(ri.n_params) + " parameters" : "") +
                "). The backbone is frozen; only the pooling heads are trained.");
  out.push_back("Training: " + std::to_string(ri.n_train) + " examples from " + ri.train_file +
                (ri.n_train_overlap > 0
                     ? " (" + std::to_string(ri.n_train_overlap) +
                           " more were removed because they share a text with an evaluation "
                           "example)"
                     : std::string()) +
                ", " + std::to_string(ri.steps) + " steps of batch " + std::to_string(ri.batch) +
                ", learning rate " + detail::fmt(ri.lr, 6) + ", seed " + std::to_string(ri.seed) +
                ".");
  std::string tasks = "Evaluation: " + std::to_string(ri.tasks.size()) + " tasks (";
  bool first = true;
  for (const auto& t : ri.tasks) {
    tasks += (first ? "" : "; ") + t.task + ": " + t.category + ", " +
             std::to_string(t.n_examples) + " examples";
    first = false;
  }
  out.push_back(tasks + ").");
  const std::int64_t need = wilcoxon_tasks_needed(ri.alpha);
  std::vector<std::string> single;
  for (const auto& c : r.categories())
    if (r.tasks_in(c).size() == 1) single.push_back(c);
  if (!single.empty()) {
    std::string s = single.size() == 1 ? "Category " : "Categories ";
    for (std::size_t i = 0; i < single.size(); ++i)
      s += (i == 0 ? "" : i + 1 == single.size() ? " and " : ", ") + single[i];
    s += single.size() == 1 ? " has one task" : " have one task each";
    s += ": a Wilcoxon test over one task is impossible, so there the designs are compared on "
         "the task alone with a paired bootstrap over its examples. That says whether a "
         "difference holds on this data set, not whether it generalizes to other tasks.";
    out.push_back(s);
  }
  for (const auto& c : r.categories()) {
    const auto n = static_cast<std::int64_t>(r.tasks_in(c).size());
    if (n == 1) continue;
    std::string s = "Category " + c + ": " + std::to_string(n) + " tasks";
    {
      s += ". The smallest two-sided p an exact Wilcoxon signed-rank test can give with " +
           std::to_string(n) + " tasks is 2/2^" + std::to_string(n) + " = " +
           detail::fmt_p(eval::wilcoxon_min_pvalue(n)) + "; ";
      s += eval::wilcoxon_min_pvalue(n) >= ri.alpha
               ? "so no outcome can be significant at alpha = " + detail::fmt(ri.alpha, 2) +
                     " however large the differences (at least " + std::to_string(need) +
                     " tasks are needed)."
               : "significance at alpha = " + detail::fmt(ri.alpha, 2) +
                     " is attainable but the test has little power with so few tasks.";
    }
    out.push_back(s);
  }
  for (const auto& t : ri.tasks)
    if (t.category == "clustering")
      out.push_back("Task " + t.task + ": its per-example scores are the " +
                    std::to_string(t.n_examples) +
                    " k-means runs over the same texts, so its bootstrap measures k-means "
                    "randomness, not the sampling of texts, and overstates significance.");
  const auto n_all = static_cast<std::int64_t>(ri.tasks.size());
  if (n_all >= 2)
    out.push_back(
        "Across all " + std::to_string(n_all) + " tasks the smallest attainable Wilcoxon p is " +
        detail::fmt_p(eval::wilcoxon_min_pvalue(n_all)) +
        (eval::wilcoxon_min_pvalue(n_all) >= ri.alpha ? ", which cannot reach significance either."
                                                      : "."));
  const SignificanceCount sc = count_significant(r);
  if (sc.tests == 0)
    out.push_back("No significance test could be computed (too few finished designs).");
  else if (sc.raw == 0)
    out.push_back("Nothing is significant: none of the " + std::to_string(sc.tests) +
                  " tests gives p < " + detail::fmt(ri.alpha, 2) +
                  ", even without correction. The differences below may be noise.");
  else if (sc.holm == 0)
    out.push_back(std::to_string(sc.raw) + " of " + std::to_string(sc.tests) + " tests give p < " +
                  detail::fmt(ri.alpha, 2) +
                  " without correction, but none survives Holm's correction for multiple "
                  "comparisons: treat them as suggestive only.");
  else
    out.push_back(std::to_string(sc.holm) + " of " + std::to_string(sc.tests) +
                  " tests are significant after Holm's correction (" + std::to_string(sc.raw) +
                  " without correction).");
  return out;
}

/// The chance level of the training loss: ln(candidates per query) with uniform scores, the
/// batch's positives and hard negatives being the candidates.
inline double chance_loss(const RunInfo& ri) {
  return std::log(static_cast<double>(std::max<std::int64_t>(ri.batch, 1)) *
                  static_cast<double>(1 + std::max<std::int64_t>(ri.negatives, 0)));
}

/// Whether a trained head learned: its last loss is below half the chance level.
inline bool learned(const RunInfo& ri, const DesignResult& d) {
  return !d.loss.empty() && std::isfinite(d.loss.back().loss) &&
         d.loss.back().loss < 0.5 * chance_loss(ri);
}

namespace detail {

/// "a vs b" in every category: which is higher where, and what the tests say (see findings()).
inline std::string pair_sentence(const Results& r, const std::string& a, const std::string& b) {
  const DesignResult* da = r.find(a);
  const DesignResult* db = r.find(b);
  if (!da || !db) return "";
  const auto cats = r.categories();
  int higher = 0, n = 0;
  std::vector<std::string> holm_up, holm_down, raw_only;
  for (const auto& c : cats) {
    const auto sa = r.category_score(*da, c), sb = r.category_score(*db, c);
    if (!sa || !sb) continue;
    ++n;
    const double diff = *sa - *sb;
    if (diff > 0) ++higher;
    const auto ts = r.tasks_in(c);
    const PairTest* t = ts.size() >= 2 ? r.find_test("category", c, a, b)
                                       : r.find_test("task", ts.front().task, a, b);
    if (!t || !std::isfinite(t->p)) continue;
    const std::string what = c + " (" + (diff >= 0 ? "+" : "") + fmt(diff, 4) + ", p " +
                             fmt_p(t->p) + ", Holm " + fmt_p(t->p_holm) + ")";
    if (std::isfinite(t->p_holm) && t->p_holm < r.run.alpha)
      (diff > 0 ? holm_up : holm_down).push_back(what);
    else if (t->p < r.run.alpha)
      raw_only.push_back(what);
  }
  if (n == 0) return "";
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) {
      s += i == 0 ? "" : i + 1 == v.size() ? " and " : ", ";
      s += v[i];
    }
    return s;
  };
  std::string s = a + " scores higher than " + b + " in " + std::to_string(higher) + " of " +
                  std::to_string(n) + " categories";
  if (holm_up.empty() && holm_down.empty()) s += "; no difference survives Holm's correction";
  if (!holm_up.empty()) s += "; significantly higher after Holm in " + join(holm_up);
  if (!holm_down.empty()) s += "; significantly lower after Holm in " + join(holm_down);
  if (!raw_only.empty()) s += "; significant only without correction in " + join(raw_only);
  if (const PairTest* t = r.find_test("all", "all", a, b); t && std::isfinite(t->p))
    s += ". Over all " + std::to_string(t->n) + " tasks (Wilcoxon): p " + fmt_p(t->p) +
         " (smallest attainable " + fmt_p(t->min_p) + ")";
  return s + ".";
}

}  // namespace detail

/// The paper's questions answered on this run, in plain sentences: does bidirectional attention
/// beat causal (same pooling), does multi-layer pooling beat last-layer pooling, does a trained
/// head beat the EOS state, did the heads learn, where does a reference row stand, and what a
/// single-task category can and cannot say. Only pairs whose designs both finished are answered.
inline std::vector<std::string> findings(const Results& r) {
  std::vector<std::string> out;
  auto ask = [&](const std::string& question,
                 const std::vector<std::pair<std::string, std::string>>& pairs) {
    std::string s;
    for (const auto& [a, b] : pairs) {
      const std::string x = detail::pair_sentence(r, a, b);
      if (x.empty()) continue;
      const std::string la = detail::paper_label(a), lb = detail::paper_label(b);
      if (!s.empty()) s += ' ';
      if (!la.empty() && !lb.empty()) {
        s += la;
        s += " vs ";
        s += lb;
        s += ": ";
      }
      s += x;
    }
    if (!s.empty()) out.push_back(question + " " + s);
  };
  ask("Does bidirectional attention beat causal attention here (same pooling)?",
      {{"mean-bidirectional", "mean-causal"},
       {"multilayer-bidirectional", "multilayer-causal"},
       {"eos-bidirectional", "eos-causal"},
       {"latent-bidirectional", "latent-causal"}});
  ask("Does multi-layer pooling beat last-layer pooling?",
      {{"multilayer-causal", "lastlayer-causal"}, {"multilayer-causal", "eos-causal"}});
  ask("Does a trained pooling head beat the plain EOS state?",
      {{"lastlayer-causal", "eos-causal"}});
  ask("Model 4 as the paper's text describes it vs as its code builds it:",
      {{"latent-bidirectional", "perceiver-tokens-bidirectional"}});

  std::vector<std::string> did, did_not;
  for (const auto& d : r.designs) {
    if (d.loss.empty()) continue;
    (learned(r.run, d) ? did : did_not)
        .push_back(d.design + " " + detail::fmt(d.loss.front().loss, 3) + " -> " +
                   detail::fmt(d.loss.back().loss, 3));
  }
  if (!did.empty() || !did_not.empty()) {
    std::string s = "Training (chance level ln(" + std::to_string(r.run.batch) + " x " +
                    std::to_string(1 + r.run.negatives) +
                    " candidates) = " + detail::fmt(chance_loss(r.run), 3) + "): ";
    auto list = [](const std::vector<std::string>& v) {
      std::string x;
      for (const auto& e : v) {
        if (!x.empty()) x += ", ";
        x += e;
      }
      return x;
    };
    if (!did.empty()) s += "below half the chance level at the end: " + list(did) + ". ";
    if (!did_not.empty())
      s += "NOT below half the chance level (these heads barely learned; their scores say "
           "little about the design): " +
           list(did_not) + ".";
    out.push_back(s);
  }

  for (const auto& ref : r.designs) {
    if (!ref.reference) continue;
    int above = 0, n = 0;
    std::string best;
    for (const auto& c : r.categories()) {
      const auto sr = r.category_score(ref, c);
      if (!sr) continue;
      double top = -INFINITY;
      std::string top_name;
      for (const auto& d : r.designs)
        if (!d.reference)
          if (auto s = r.category_score(d, c); s && *s > top) top = *s, top_name = d.design;
      if (top_name.empty()) continue;
      ++n;
      if (*sr > top) ++above;
      if (!best.empty()) best += "; ";
      best += c + " " + detail::fmt(*sr, 4) + " vs " + top_name + " " + detail::fmt(top, 4);
    }
    if (n > 0)
      out.push_back("Reference " + ref.design + " (a ready-made embedding model, not a design: " +
                    "its tests against the designs are corrected as families of their own) "
                    "scores above the best design in " +
                    std::to_string(above) + " of " + std::to_string(n) + " categories (" + best +
                    ").");
  }

  std::vector<std::string> single;
  for (const auto& c : r.categories())
    if (r.tasks_in(c).size() == 1) single.push_back(c);
  if (!single.empty() && single.size() == r.categories().size())
    out.push_back(
        "Power: every category here has a single task, so each answer above is a "
        "paired bootstrap over that task's examples: it says whether a difference "
        "holds on this data set, not whether it holds for the category. The paper "
        "compares categories with a Wilcoxon test over their tasks, which needs at "
        "least " +
        std::to_string(wilcoxon_tasks_needed(r.run.alpha)) +
        " tasks per category to reach significance.");
  else if (!single.empty())
    out.push_back("Power: " + std::to_string(single.size()) +
                  " categories have a single task; their answers are bootstraps over that "
                  "task's examples, not evidence about the category.");
  return out;
}

/// One line on where the time went: the backbone's share of the run's wall time.
inline std::string backbone_share(const RunInfo& ri) {
  // Nothing ran in this invocation (every design resumed): no share to report.
  if (ri.wall_seconds <= 0 || ri.encoding.empty() || ri.backbone_sequences == 0) return "";
  return "Backbone: " + detail::fmt(ri.backbone_seconds, 1) + " s of " +
         detail::fmt(ri.wall_seconds, 1) + " s (" +
         detail::fmt(100.0 * ri.backbone_seconds / ri.wall_seconds, 1) + "%) with " +
         (ri.encoding == "shared" ? "one backbone pass per attention mode and text ("
                                  : "a backbone pass per design (") +
         std::to_string(ri.backbone_sequences) + " sequences run).";
}

/// The summary table printed on the terminal: designs x categories (mean main score per
/// category), marks against the baseline, then the significant differences in words.
inline std::string summary_table(const Results& r) {
  const auto cats = r.categories();
  std::size_t w0 = 6;
  for (const auto& d : r.designs) w0 = std::max(w0, d.design.size());
  std::string out;
  auto pad = [](std::string s, std::size_t w) {
    if (s.size() < w) s.insert(0, w - s.size(), ' ');
    return s;
  };
  std::vector<std::size_t> widths;
  out += "design" + std::string(w0 - 6, ' ') + "  paper         ";
  for (const auto& c : cats) {
    widths.push_back(std::max<std::size_t>(c.size(), 11));
    out += "  " + pad(c, widths.back());
  }
  out += "\n" + std::string(out.size() - 1, '-') + "\n";
  for (const auto& d : r.designs) {
    std::string label = detail::paper_label(d);
    out += d.design + std::string(w0 - d.design.size(), ' ') + "  " + label +
           std::string(label.size() < 14 ? 14 - label.size() : 1, ' ');
    for (std::size_t i = 0; i < cats.size(); ++i) {
      auto s = r.category_score(d, cats[i]);
      std::string cell = s ? detail::fmt(*s, 4) : "-";
      std::string mark = category_mark(r, cats[i], d.design).symbol();
      cell += mark.empty() ? "   " : mark == "*" ? "*  " : mark;
      out += "  " + pad(cell, widths[i]);
    }
    out += "\n";
  }
  out += "scores: mean main metric per category (";
  bool first = true;
  for (const auto& c : cats) {
    auto ts = r.tasks_in(c);
    out += std::string(first ? "" : "; ") + c + ":";
    for (const auto& t : ts) out += " " + t.task + " " + t.main_metric;
    first = false;
  }
  out += ")\nmarks vs " + std::string(kBaseline) + ", alpha " + detail::fmt(r.run.alpha, 2) +
         ": * Holm-corrected, (*) uncorrected only\n";
  bool any = false;
  for (const auto& c : cats)
    for (const auto& d : r.designs) {
      Mark m = category_mark(r, c, d.design);
      if (!m.raw || !m.test) continue;
      any = true;
      out += "  " + c + ": " + d.design + (m.diff > 0 ? " better than " : " worse than ") +
             std::string(kBaseline) + " by " + detail::fmt(std::fabs(m.diff), 4) + " (" +
             m.test->test + ", p " + detail::fmt_p(m.test->p) + ", Holm " +
             detail::fmt_p(m.test->p_holm) + ")\n";
    }
  if (!any)
    out +=
        "  no design differs significantly from " + std::string(kBaseline) + " in any category\n";
  const auto answers = findings(r);
  if (!answers.empty()) {
    out += "\nthe paper's questions on this run:\n";
    for (const auto& s : answers) out += "  - " + s + "\n";
  }
  if (const std::string b = backbone_share(r.run); !b.empty()) out += b + "\n";
  return out;
}

/// report.md.
inline std::string render_markdown(const Results& r) {
  const auto cats = r.categories();
  std::string md = "# lmembed compare: pooling and attention designs\n\n";
  md +=
      "Reproduces the experiment of Tang & Yang 2024, *Pooling and Attention: What are "
      "effective designs for LLM-based embedding models?* (arXiv 2409.02727) with lmembed " +
      r.run.lmembed_version + ". Run " + r.run.started_utc + " to " + r.run.finished_utc + ".\n\n";
  md += "## What was run, and what the tests can say\n\n";
  for (const auto& s : power_statement(r)) md += "- " + detail::md_cell(s) + "\n";
  if (const auto answers = findings(r); !answers.empty()) {
    md += "\n## The paper's questions, answered on this run\n\n";
    for (const auto& s : answers) md += "- " + detail::md_cell(s) + "\n";
  }
  md += "\n## Summary (mean main score per category)\n\n| design | paper |";
  for (const auto& c : cats) md += " " + c + " |";
  md += "\n|---|---|";
  for (std::size_t i = 0; i < cats.size(); ++i) md += "---:|";
  md += "\n";
  for (const auto& d : r.designs) {
    md += "| " + d.design + " | " + detail::paper_label(d) + " |";
    for (const auto& c : cats) {
      auto s = r.category_score(d, c);
      std::string sym = category_mark(r, c, d.design).symbol();
      md += ' ';
      md += s ? detail::fmt(*s, 4) : std::string("-");
      if (!sym.empty()) md += ' ' + sym;
      md += " |";
    }
    md += "\n";
  }
  md += "\nMarks against " + std::string(kBaseline) + " at alpha = " + detail::fmt(r.run.alpha, 2) +
        ": `*` significant after Holm correction, `(*)` only without correction. Categories "
        "with 2+ tasks use the Wilcoxon signed-rank test over tasks; single-task categories use "
        "the paired bootstrap over examples.\n";

  md += "\n## Scores per task\n\n| design |";
  for (const auto& t : r.run.tasks) md += " " + t.task + " (" + t.main_metric + ") |";
  md += "\n|---|";
  for (std::size_t i = 0; i < r.run.tasks.size(); ++i) md += "---:|";
  md += "\n";
  for (const auto& d : r.designs) {
    md += "| " + d.design + " |";
    for (const auto& t : r.run.tasks) {
      const TaskScore* s = d.find_task(t.task);
      md += ' ';
      md += s ? detail::fmt(s->main_score, 4) : std::string("-");
      md += " |";
    }
    md += "\n";
  }

  auto test_rows = [&](bool baseline_only) {
    std::string s =
        "| scope | a | b | test | n | mean diff (a-b) | 95% CI | p | p (Holm) |\n"
        "|---|---|---|---|---:|---:|---|---:|---:|\n";
    for (const auto& t : r.tests) {
      if (baseline_only && t.b != kBaseline && t.a != kBaseline) continue;
      std::string ci = std::isfinite(t.ci_low)
                           ? "[" + detail::fmt(t.ci_low, 4) + ", " + detail::fmt(t.ci_high, 4) + "]"
                           : "";
      s += "| " + t.scope + " " + t.name + " | " + t.a + " | " + t.b + " | " + t.test + " | " +
           std::to_string(t.n) + " | " + detail::fmt(t.mean_diff, 4) + " | " + ci + " | " +
           detail::fmt_p(t.p) + " | " + detail::fmt_p(t.p_holm) + " |\n";
    }
    return s;
  };
  md += "\n## Tests against " + std::string(kBaseline) + "\n\n" + test_rows(true);
  md +=
      "\n## All pairwise tests\n\nHolm's correction is applied within each family: all "
      "pairs of designs within one category (Wilcoxon), within one task (bootstrap), or "
      "across all tasks.\n\n" +
      test_rows(false);

  md +=
      "\n## Training\n\nChance level (uniform scores over the batch's positives and hard "
      "negatives): " +
      detail::fmt(chance_loss(r.run), 4) +
      ".\n\n| design | steps | first loss | last loss | last / chance | learned |\n"
      "|---|---:|---:|---:|---:|---|\n";
  for (const auto& d : r.designs) {
    if (d.loss.empty()) continue;
    md += "| " + d.design + " | " + std::to_string(d.loss.back().step) + " | " +
          detail::fmt(d.loss.front().loss, 4) + " | " + detail::fmt(d.loss.back().loss, 4) + " | " +
          detail::fmt(d.loss.back().loss / chance_loss(r.run), 3) + " | " +
          (learned(r.run, d) ? "yes" : "no") + " |\n";
  }
  for (const auto& d : r.designs)
    if (d.reference) md += "\nReference " + d.design + ": " + detail::md_cell(d.note) + "\n";
  md +=
      "\n## Run time and memory per stage\n\n| design | stage | wall (s) | peak RSS (MiB) | "
      "note |\n|---|---|---:|---:|---|\n";
  auto stage_row = [](const StageRecord& s) {
    return "| " + (s.design.empty() ? std::string("(run)") : s.design) + " | " + s.stage + " | " +
           detail::fmt(s.wall_s, 2) + " | " + detail::mib(s.peak_rss_bytes) + " | " +
           detail::md_cell(s.note) + " |\n";
  };
  for (const auto& d : r.designs)
    for (const auto& s : d.stages) md += stage_row(s);
  for (const auto& s : r.stages) md += stage_row(s);
  if (const std::string b = backbone_share(r.run); !b.empty()) md += "\n" + b + "\n";
  return md;
}

namespace detail {

/// One horizontal bar chart: the designs' mean main score in one category.
inline std::string bar_chart_svg(const Results& r, const std::string& category) {
  struct Row {
    std::string design;
    double score;
    Mark mark;
    bool reference;
  };
  std::vector<Row> rows;
  for (const auto& d : r.designs)
    if (auto s = r.category_score(d, category))
      rows.push_back({d.design, *s, category_mark(r, category, d.design), d.reference});
  const int label_w = 290, plot_w = 360, value_w = 110, row_h = 24, top = 8, axis_h = 24;
  const int width = label_w + plot_w + value_w;
  const int height = top + static_cast<int>(rows.size()) * row_h + axis_h;
  double lo = 0, hi = 0;
  for (const auto& row : rows) {
    lo = std::min(lo, row.score);
    hi = std::max(hi, row.score);
  }
  if (hi - lo < 1e-12) hi = lo + 1;
  const double pad = 0.05 * (hi - lo);
  if (lo < 0) lo -= pad;
  hi += pad;
  auto x_of = [&](double v) { return label_w + (v - lo) / (hi - lo) * plot_w; };
  std::string s = "<svg class=\"chart bars\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                  std::to_string(width) + "\" height=\"" + std::to_string(height) +
                  "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
                  "\" role=\"img\" aria-label=\"" + html_escape(category) +
                  ": main score per design\">\n";
  const double x0 = x_of(0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const int y = top + static_cast<int>(i) * row_h;
    const double xa = std::min(x0, x_of(row.score)), xb = std::max(x0, x_of(row.score));
    std::string cls = row.reference             ? "bar ref"
                      : row.design == kBaseline ? "bar base"
                      : row.mark.holm           ? (row.mark.diff > 0 ? "bar up" : "bar down")
                      : row.mark.raw            ? "bar weak"
                                                : "bar";
    s += "<text class=\"lbl\" x=\"" + std::to_string(label_w - 6) + "\" y=\"" +
         std::to_string(y + 16) + "\" text-anchor=\"end\">" + html_escape(row.design) + "</text>\n";
    s += "<rect class=\"" + cls + "\" x=\"" + fmt(xa, 1) + "\" y=\"" + std::to_string(y + 4) +
         "\" width=\"" + fmt(std::max(xb - xa, 1.0), 1) + "\" height=\"" +
         std::to_string(row_h - 8) + "\"><title>" + html_escape(row.design) + ": " +
         fmt(row.score, 4) +
         (row.mark.test ? " (" + row.mark.test->test + " p " + fmt_p(row.mark.test->p) + ", Holm " +
                              fmt_p(row.mark.test->p_holm) + ")"
                        : std::string()) +
         "</title></rect>\n";
    s += "<text class=\"val\" x=\"" + std::to_string(label_w + plot_w + 6) + "\" y=\"" +
         std::to_string(y + 16) + "\">" + fmt(row.score, 4) +
         (row.mark.symbol().empty() ? "" : " " + html_escape(row.mark.symbol())) + "</text>\n";
  }
  const int ya = top + static_cast<int>(rows.size()) * row_h;
  s += "<line class=\"axis\" x1=\"" + fmt(x0, 1) + "\" y1=\"" + std::to_string(top) + "\" x2=\"" +
       fmt(x0, 1) + "\" y2=\"" + std::to_string(ya) + "\"/>\n";
  s += "<line class=\"axis\" x1=\"" + std::to_string(label_w) + "\" y1=\"" + std::to_string(ya) +
       "\" x2=\"" + std::to_string(label_w + plot_w) + "\" y2=\"" + std::to_string(ya) + "\"/>\n";
  for (double v : {lo, (lo + hi) / 2, hi})
    s += "<text class=\"tick\" x=\"" + fmt(x_of(v), 1) + "\" y=\"" + std::to_string(ya + 16) +
         "\" text-anchor=\"middle\">" + fmt(v, 3) + "</text>\n";
  return s + "</svg>\n";
}

/// Training-loss curves of every trained design on one set of axes.
inline std::string loss_chart_svg(const Results& r) {
  const int left = 56, right = 230, top = 10, bottom = 36, plot_w = 480, plot_h = 240;
  const int width = left + plot_w + right, height = top + plot_h + bottom;
  double x_max = 1, y_lo = INFINITY, y_hi = -INFINITY;
  int n_curves = 0;
  for (const auto& d : r.designs) {
    if (d.loss.empty()) continue;
    ++n_curves;
    for (const auto& p : d.loss) {
      if (!std::isfinite(p.loss)) continue;
      x_max = std::max(x_max, static_cast<double>(p.step));
      y_lo = std::min(y_lo, p.loss);
      y_hi = std::max(y_hi, p.loss);
    }
  }
  if (n_curves == 0 || !std::isfinite(y_lo)) return "";
  if (y_hi - y_lo < 1e-12) y_hi = y_lo + 1;
  auto X = [&](double step) { return left + step / x_max * plot_w; };
  auto Y = [&](double loss) { return top + (y_hi - loss) / (y_hi - y_lo) * plot_h; };
  std::string s = "<svg class=\"chart loss\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                  std::to_string(width) + "\" height=\"" + std::to_string(height) +
                  "\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
                  "\" role=\"img\" aria-label=\"training loss per design\">\n";
  s += "<rect class=\"frame\" x=\"" + std::to_string(left) + "\" y=\"" + std::to_string(top) +
       "\" width=\"" + std::to_string(plot_w) + "\" height=\"" + std::to_string(plot_h) + "\"/>\n";
  for (int k = 0; k <= 4; ++k) {
    const double v = y_lo + (y_hi - y_lo) * k / 4.0;
    s += "<text class=\"tick\" x=\"" + std::to_string(left - 4) + "\" y=\"" + fmt(Y(v) + 4, 1) +
         "\" text-anchor=\"end\">" + fmt(v, 3) + "</text>\n";
    const double st = x_max * k / 4.0;
    s += "<text class=\"tick\" x=\"" + fmt(X(st), 1) + "\" y=\"" +
         std::to_string(top + plot_h + 16) + "\" text-anchor=\"middle\">" + fmt(st, 0) +
         "</text>\n";
  }
  s += "<text class=\"tick\" x=\"" + std::to_string(left + plot_w / 2) + "\" y=\"" +
       std::to_string(height - 4) + "\" text-anchor=\"middle\">step</text>\n";
  int legend = 0;
  for (const auto& d : r.designs) {
    if (d.loss.empty()) continue;
    std::string pts;
    for (const auto& p : d.loss)
      if (std::isfinite(p.loss))
        pts += fmt(X(static_cast<double>(p.step)), 1) + "," + fmt(Y(p.loss), 1) + " ";
    const std::string col = design_colour(d.design);
    s += "<polyline class=\"curve\" fill=\"none\" stroke=\"" + col +
         "\" stroke-width=\"1.6\" points=\"" + pts + "\"><title>" + html_escape(d.design) +
         "</title></polyline>\n";
    const int ly = top + 12 + legend * 18;
    s += "<line x1=\"" + std::to_string(left + plot_w + 12) + "\" y1=\"" + std::to_string(ly - 4) +
         "\" x2=\"" + std::to_string(left + plot_w + 32) + "\" y2=\"" + std::to_string(ly - 4) +
         "\" stroke=\"" + col + "\" stroke-width=\"3\"/>\n";
    s += "<text class=\"lbl\" x=\"" + std::to_string(left + plot_w + 36) + "\" y=\"" +
         std::to_string(ly) + "\">" + html_escape(d.design) + "</text>\n";
    ++legend;
  }
  return s + "</svg>\n";
}

/// Background class of a p-value cell.
inline std::string p_class(double p, double alpha) {
  return !std::isfinite(p) ? "na" : p < alpha ? "sig" : "";
}

}  // namespace detail

/// report.html: self-contained (inline CSS and SVG, no script, nothing fetched).
inline std::string render_html(const Results& r) {
  using detail::fmt;
  using detail::fmt_p;
  using detail::html_escape;
  const auto cats = r.categories();
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>lmembed compare report</title>\n<style>\n"
      "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d1d1f;"
      "max-width:1000px;margin:24px auto;padding:0 16px;background:#fff}\n"
      "h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.25em;margin-top:32px;"
      "border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:1.05em;margin:18px 0 4px}\n"
      ".sub{color:#666;margin-top:0}.statement li{margin:4px 0}\n"
      ".verdict{padding:10px 14px;border-radius:6px;background:#fff7e0;border:1px solid #f0d890}\n"
      ".verdict.sig{background:#e8f5ec;border-color:#9fd3b0}\n"
      "table{border-collapse:collapse;margin:8px 0;font-size:13px}\n"
      "th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}\n"
      "th:first-child,td:first-child,td.l{text-align:left}th{background:#f4f4f6}\n"
      "td.sig{background:#dff0e3;font-weight:600}td.na{color:#999}\n"
      "svg.chart{display:block;margin:4px 0 12px}svg text{font:12px system-ui,sans-serif;"
      "fill:#333}\n"
      "svg .bar{fill:#8fb3d9}svg .bar.base{fill:#9a9a9a}svg .bar.up{fill:#2e9e5b}"
      "svg .bar.down{fill:#d0543c}svg .bar.ref{fill:#b39ddb}svg "
      ".bar.weak{fill:#b7cfe6;stroke:#2e6da4;"
      "stroke-dasharray:3 2}\n"
      "svg .axis{stroke:#444;stroke-width:1}svg .frame{fill:none;stroke:#bbb}"
      "svg .tick{fill:#666;font-size:11px}\n"
      ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;"
      "vertical-align:middle}\n"
      "details{margin:8px 0}summary{cursor:pointer;color:#2e6da4}\n"
      "code{background:#f4f4f6;padding:1px 4px;border-radius:3px}\n"
      "</style>\n</head>\n<body>\n";
  h += "<h1>lmembed compare: pooling and attention designs</h1>\n";
  h += "<p class=\"sub\">The experiment of Tang &amp; Yang 2024, <i>Pooling and Attention: What "
       "are effective designs for LLM-based embedding models?</i> (arXiv 2409.02727), run with "
       "lmembed " +
       html_escape(r.run.lmembed_version) + " from " + html_escape(r.run.started_utc) + " to " +
       html_escape(r.run.finished_utc) + ".</p>\n";

  const SignificanceCount sc = count_significant(r);
  const auto statement = power_statement(r);
  h += "<div class=\"verdict" + std::string(sc.holm > 0 ? " sig" : "") + "\">" +
       html_escape(statement.back()) + "</div>\n";
  h += "<h2>What was run, and what the tests can say</h2>\n<ul class=\"statement\">\n";
  for (std::size_t i = 0; i + 1 < statement.size(); ++i)
    h += "<li>" + html_escape(statement[i]) + "</li>\n";
  h += "</ul>\n";
  if (const auto answers = findings(r); !answers.empty()) {
    h += "<h2>The paper's questions, answered on this run</h2>\n<ul class=\"findings\">\n";
    for (const auto& s : answers) h += "<li>" + html_escape(s) + "</li>\n";
    h += "</ul>\n";
  }

  h += "<h2>Main score per category</h2>\n<p class=\"legend\">Bars: mean main score over the "
       "category's tasks. Against <code>" +
       std::string(kBaseline) + "</code> (grey) at alpha = " + fmt(r.run.alpha, 2) +
       ":<span style=\"background:#2e9e5b\"></span>significantly better (Holm)"
       "<span style=\"background:#d0543c\"></span>significantly worse (Holm)"
       "<span style=\"background:#b7cfe6;border:1px dashed #2e6da4\"></span>significant "
       "only without correction<span style=\"background:#8fb3d9\"></span>not significant"
       "<span style=\"background:#b39ddb\"></span>reference row (not a design). "
       "<code>*</code> Holm-corrected, <code>(*)</code> uncorrected only.</p>\n";
  for (const auto& c : cats) {
    const auto ts = r.tasks_in(c);
    std::string what;
    for (const auto& t : ts)
      what += (what.empty() ? "" : ", ") + t.task + " (" + t.main_metric + ")";
    h += "<h3>" + html_escape(c) + " <small>" + html_escape(what) + "; " +
         (ts.size() >= 2 ? "Wilcoxon over " + std::to_string(ts.size()) + " tasks"
                         : std::string("paired bootstrap over examples")) +
         "</small></h3>\n";
    h += detail::bar_chart_svg(r, c);
  }

  h += "<h2>Scores per task</h2>\n<table>\n<tr><th>design</th><th>paper</th>";
  for (const auto& t : r.run.tasks)
    h += "<th>" + html_escape(t.task) + "<br><small>" + html_escape(t.category) + ", " +
         html_escape(t.main_metric) + "</small></th>";
  h += "</tr>\n";
  for (const auto& d : r.designs) {
    h += "<tr><td>" + html_escape(d.design) + "</td><td class=\"l\">" +
         html_escape(detail::paper_label(d)) + "</td>";
    for (const auto& t : r.run.tasks) {
      const TaskScore* s = d.find_task(t.task);
      h += "<td>" + (s ? fmt(s->main_score, 4) : std::string("-")) + "</td>";
    }
    h += "</tr>\n";
  }
  h += "</table>\n";

  const std::string loss_svg = detail::loss_chart_svg(r);
  h += "<h2>Training loss</h2>\n";
  h += loss_svg.empty() ? "<p>No design with a trainable head finished.</p>\n" : loss_svg;
  if (!loss_svg.empty()) {
    h += "<p>Chance level (uniform scores over the batch's positives and hard negatives): " +
         fmt(chance_loss(r.run), 4) +
         ".</p>\n<table>\n<tr><th>design</th><th>steps</th><th>first loss</th><th>last "
         "loss</th><th>last / chance</th><th>learned</th></tr>\n";
    for (const auto& d : r.designs) {
      if (d.loss.empty()) continue;
      h += "<tr><td>" + html_escape(d.design) + "</td><td>" + std::to_string(d.loss.back().step) +
           "</td><td>" + fmt(d.loss.front().loss, 4) + "</td><td>" + fmt(d.loss.back().loss, 4) +
           "</td><td>" + fmt(d.loss.back().loss / chance_loss(r.run), 3) + "</td><td class=\"l\">" +
           (learned(r.run, d) ? "yes" : "no") + "</td></tr>\n";
    }
    h += "</table>\n";
  }

  auto test_table = [&](bool baseline_only) {
    std::string t =
        "<table>\n<tr><th>scope</th><th>a</th><th>b</th><th>test</th><th>n</th>"
        "<th>mean diff (a&minus;b)</th><th>95% CI</th><th>p</th><th>p (Holm)</th>"
        "<th>smallest attainable p</th></tr>\n";
    for (const auto& x : r.tests) {
      if (baseline_only && x.a != kBaseline && x.b != kBaseline) continue;
      const std::string ci =
          std::isfinite(x.ci_low) ? "[" + fmt(x.ci_low, 4) + ", " + fmt(x.ci_high, 4) + "]" : "";
      t += "<tr><td>" + html_escape(x.scope + " " + x.name) + "</td><td class=\"l\">" +
           html_escape(x.a) + "</td><td class=\"l\">" + html_escape(x.b) + "</td><td class=\"l\">" +
           html_escape(x.test) + "</td><td>" + std::to_string(x.n) + "</td><td>" +
           fmt(x.mean_diff, 4) + "</td><td>" + ci + "</td><td class=\"" +
           detail::p_class(x.p, r.run.alpha) + "\">" + fmt_p(x.p) + "</td><td class=\"" +
           detail::p_class(x.p_holm, r.run.alpha) + "\">" + fmt_p(x.p_holm) + "</td><td>" +
           fmt_p(x.min_p) + "</td></tr>\n";
    }
    return t + "</table>\n";
  };
  h += "<h2>Pairwise tests</h2>\n<p>Two-sided p-values, raw and Holm-corrected within each "
       "family (all pairs within one category, one task, or all tasks). Highlighted: p &lt; " +
       fmt(r.run.alpha, 2) + ".</p>\n<h3>Against " + std::string(kBaseline) + "</h3>\n" +
       test_table(true);
  h += "<details><summary>All " + std::to_string(r.tests.size()) + " pairwise tests</summary>\n" +
       test_table(false) + "</details>\n";

  h += "<h2>Run time and memory per stage</h2>\n<table>\n<tr><th>design</th><th>stage</th>"
       "<th>wall (s)</th><th>peak RSS (MiB)</th><th>note</th></tr>\n";
  double total = 0;
  auto stage_row = [&](const StageRecord& s) {
    total += s.wall_s;
    return "<tr><td>" + html_escape(s.design.empty() ? "(run)" : s.design) +
           "</td><td class=\"l\">" + html_escape(s.stage) + "</td><td>" + fmt(s.wall_s, 2) +
           "</td><td>" + detail::mib(s.peak_rss_bytes) + "</td><td class=\"l\">" +
           html_escape(s.note) + "</td></tr>\n";
  };
  for (const auto& d : r.designs)
    for (const auto& s : d.stages) h += stage_row(s);
  for (const auto& s : r.stages) h += stage_row(s);
  h += "<tr><th>total</th><th></th><th>" + fmt(total, 2) + "</th><th></th><th></th></tr>\n";
  h += "</table>\n";
  if (const std::string b = backbone_share(r.run); !b.empty())
    h += "<p class=\"backbone\">" + html_escape(b) + "</p>\n";

  h += "<h2>Designs</h2>\n<table>\n<tr><th>design</th><th>paper</th><th>attention</th>"
       "<th>pooling</th><th>captured states</th><th>what it is</th></tr>\n";
  for (const auto& d : r.designs) {
    std::string summary = d.note;
    for (const Design& k : kDesigns)
      if (k.name == d.design) summary = std::string(k.summary);
    h += "<tr><td>" + html_escape(d.design) + "</td><td class=\"l\">" +
         html_escape(detail::paper_label(d)) + "</td><td class=\"l\">" + html_escape(d.attention) +
         "</td><td class=\"l\">" + html_escape(d.pooling) + "</td><td class=\"l\">" +
         html_escape(d.capture) + "</td><td class=\"l\">" + html_escape(summary) + "</td></tr>\n";
  }
  h += "</table>\n";
  if (!r.run.head_config.empty()) {
    h += "<p>Configuration: ";
    bool first = true;
    for (const auto& [k, v] : r.run.head_config) {
      h += (first ? "" : ", ") + html_escape(k) + " = " + html_escape(v);
      first = false;
    }
    h += ".</p>\n";
  }
  h += "<p class=\"sub\">Every number here is in <code>results.json</code> next to this file "
       "(per-example scores in <code>designs/*.json</code>).</p>\n</body>\n</html>\n";
  return h;
}

/// Writes DIR/results.json, DIR/report.md and DIR/report.html, each atomically.
inline void write_report(const Results& r, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  write_file_atomic(dir / "results.json", json::dump(to_json(r), 1) + "\n");
  write_file_atomic(dir / "report.md", render_markdown(r));
  write_file_atomic(dir / "report.html", render_html(r));
}

}  // namespace lmembed::compare
