// lmembed compare: the seed paper's experiment end to end - cache, train, evaluate every
// design, test the differences, write results.json, report.md and report.html.
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "lmembed/compare/compare.hpp"
#include "lmembed/core/file.hpp"

namespace {

struct Options {
  std::optional<std::string> model, train, out, data_dir;
  std::string designs = "paper", tasks = "all";
  std::vector<std::string> task_dirs, references;
  long long max_examples = 0, max_corpus = 0, max_train = 0, seed = 42, ml_latents = 0;
  long long latent_latents = 0, threads = 0;
  std::optional<long long> steps, batch, warmup, bootstrap, n_experiments;
  std::optional<double> lr, alpha;
  lmembed::WeightFormat weights = lmembed::WeightFormat::stored;
  bool quiet = false, report_only = false, per_design_encoding = false;
};

void add_options(CLI::App& app, Options& o) {
  namespace cli = lmembed::cli;
  app.description(
      "  lmembed compare --model PATH --train FILE.jsonl|bundled:snli --out DIR [options]\n"
      "  lmembed compare --report-only --out DIR [--alpha A] [--bootstrap B] [--reference ...]\n"
      "For each design: cache the hidden states its pooling consumes (designs that consume the\n"
      "same states share a cache), train the head where there is one, evaluate every task; then\n"
      "compare designs with the Wilcoxon signed-rank test over the tasks of each category and a\n"
      "paired bootstrap over each task's examples, and write DIR/results.json, DIR/report.md and\n"
      "DIR/report.html. An interrupted run resumes from the designs already finished in DIR.");
  app.footer(
      "Design groups: paper (models 1-5, model 4 in both forms), extra, all. Designs:\n"
      "  eos-causal lastlayer-causal multilayer-causal latent-bidirectional\n"
      "  perceiver-tokens-bidirectional multilayer-bidirectional mean-causal\n"
      "  mean-bidirectional eos-bidirectional latent-causal\n"
      "Bundled tasks: sts-b, banking77, banking77-clustering, snli-pairs, snli-retrieval.\n"
      "--max-corpus keeps the documents relevant to the kept queries plus seeded distractors.\n"
      "--reference LABEL=FILE: FILE is `lmembed eval --embeddings ... --output FILE` on the\n"
      "same tasks and --max-examples (and --n-experiments); scored beside the designs and\n"
      "tested against them (its own Holm families), never counted as a design.\n"
      "--per-design-encoding gives the same embeddings as the default, which runs the\n"
      "backbone once per attention mode and text, shared by that mode's designs.");
  cli::option(app, "--model PATH", o.model, "a .gguf file or a Hugging Face folder");
  cli::option(app, "--train FILE", o.train, "training JSONL, or bundled:snli");
  cli::option(app, "--out DIR", o.out, "the results folder");
  cli::option(app, "--designs LIST", o.designs,
              "comma-separated designs or groups (default: paper; see below)");
  cli::option(app, "--tasks LIST", o.tasks,
              "bundled tasks (default: all; 'none' for only --task-dir)");
  cli::repeatable(app, "--task-dir DIR", o.task_dirs,
                  "a task folder in an MTEB layout (repeatable)");
  cli::option(app, "--data-dir DIR", o.data_dir,
              "where the bundled data lives (default: the build's data/)");
  cli::option(app, "--max-examples N", o.max_examples,
              "seeded subsample of each bundled task (default: all)");
  cli::option(app, "--max-corpus N", o.max_corpus,
              "documents of a bundled retrieval corpus (default: all)");
  cli::option(app, "--max-train N", o.max_train,
              "use the first N training examples (default: all)");
  cli::option(app, "--steps N", o.steps, "training steps per head (default 200)");
  cli::option(app, "--batch N", o.batch, "examples per step (default 64)");
  cli::option(app, "--lr X", o.lr, "peak learning rate (default 1e-3)");
  cli::option(app, "--warmup N", o.warmup, "warmup steps (default 20)");
  cli::option(app, "--seed N", o.seed, "training and bootstrap seed (default 42)");
  cli::option(app, "--ml-latents N", o.ml_latents,
              "latents of the multi_layer heads (default: the head's default)");
  cli::option(app, "--latent-latents N", o.latent_latents,
              "latents of the latent heads (default: the head's default)");
  cli::option(app, "--bootstrap N", o.bootstrap, "paired-bootstrap resamples (default 2000)");
  cli::option(app, "--n-experiments N", o.n_experiments,
              "classification experiments (default 10, MTEB's)");
  cli::option(app, "--alpha X", o.alpha, "significance level of the marks (default 0.05)");
  cli::option(app, "--threads N", o.threads, "backbone threads (default: all)");
  cli::weights_option(app, o.weights, "stored (default) or f32, as `lmembed embed`");
  cli::repeatable(app, "--reference LABEL=FILE", o.references,
                  "a reference row from `lmembed eval` (repeatable; see below)");
  cli::flag(app, "--per-design-encoding", o.per_design_encoding,
            "run the backbone for every design (default: once per attention mode)");
  cli::flag(app, "--report-only", o.report_only,
            "re-render DIR's report from its results.json (tests recomputed)");
  cli::flag(app, "--quiet", o.quiet, "no progress on stderr");
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int run(const Options& a) {
  namespace cmp = lmembed::compare;
  using lmembed::cli::require;
  const std::filesystem::path out = require(a.out, "--out");
  std::vector<std::pair<std::string, std::filesystem::path>> refs;
  for (const auto& r : a.references) {
    const auto eq = r.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == r.size())
      throw lmembed::cli::usage_error("--reference wants LABEL=FILE.json, got '" + r + "'");
    refs.emplace_back(r.substr(0, eq), r.substr(eq + 1));
  }
  // One writer per output folder: a second compare (or --report-only) on it while the first
  // runs is refused, instead of interleaving caches, heads and results.
  lmembed::DirLock lock;
  if (a.report_only) {
    if (std::filesystem::is_directory(out))
      lock = lmembed::DirLock::acquire(out, "lmembed compare");
    std::optional<std::int64_t> boot;
    if (a.bootstrap) boot = *a.bootstrap;
    const cmp::Results r = cmp::rerender(out, a.alpha, boot, refs);
    std::cout << cmp::summary_table(r)
              << "\nreport: " << std::filesystem::absolute(out / "report.html").string() << "\n";
    return 0;
  }
  cmp::CompareOptions o;
  o.model = require(a.model, "--model");
  o.train = require(a.train, "--train");
  o.out = out;
  o.data_dir = a.data_dir.value_or(LMEMBED_DATA_DIR);
  o.designs = cmp::parse_designs(a.designs);
  const std::string& tasks = a.tasks;
  if (tasks == "all")
    o.tasks = lmembed::eval::bundled_task_names();
  else if (tasks != "none")
    o.tasks = split_list(tasks);
  for (const auto& d : a.task_dirs) o.task_dirs.emplace_back(d);
  o.max_examples = a.max_examples;
  o.max_corpus = a.max_corpus;
  if (o.max_examples < 0 || o.max_corpus < 0)
    throw lmembed::cli::usage_error("--max-examples and --max-corpus must be >= 0");
  o.max_train = a.max_train;
  o.steps = a.steps.value_or(o.steps);
  o.batch = a.batch.value_or(o.batch);
  o.lr = a.lr.value_or(o.lr);
  o.warmup = a.warmup.value_or(o.warmup);
  o.seed = static_cast<std::uint64_t>(a.seed);
  o.ml_latents = a.ml_latents;
  o.latent_latents = a.latent_latents;
  o.bootstrap = a.bootstrap.value_or(o.bootstrap);
  o.n_experiments = a.n_experiments.value_or(o.n_experiments);
  if (o.n_experiments < 1) throw lmembed::cli::usage_error("--n-experiments must be at least 1");
  o.alpha = a.alpha.value_or(o.alpha);
  o.threads = static_cast<int>(a.threads);
  o.weights = a.weights;
  o.progress = !a.quiet;
  o.shared_pass = !a.per_design_encoding;
  o.references = refs;
  if (o.bootstrap < 1) throw lmembed::cli::usage_error("--bootstrap must be at least 1");
  if (!(o.alpha > 0 && o.alpha < 1)) throw lmembed::cli::usage_error("--alpha must be in (0, 1)");
  lock = lmembed::DirLock::acquire(out, "lmembed compare");
  const cmp::Results r = cmp::run_compare(o);
  std::cout << cmp::summary_table(r)
            << "\nreport: " << std::filesystem::absolute(out / "report.html").string() << "\n";
  return 0;
}

const lmembed::cli::Register<Options> reg{"compare",
                                          "Compare embedding designs end to end (cache, train, "
                                          "evaluate, test, report)",
                                          &add_options, &run};

}  // namespace
