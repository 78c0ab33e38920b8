// lmembed compare: the seed paper's experiment end to end - cache, train, evaluate every
// design, test the differences, write results.json, report.md and report.html.
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "command.hpp"
#include "lmembed/compare/compare.hpp"
#include "lmembed/core/file.hpp"

namespace {

using lmembed::cli::Args;

const char* kUsage =
    "lmembed compare --model PATH --train FILE.jsonl|bundled:snli --out DIR [options]\n"
    "lmembed compare --report-only --out DIR [--alpha A] [--bootstrap B] [--reference ...]\n"
    "\n"
    "For each design: cache the hidden states its pooling consumes (designs that consume the\n"
    "same states share a cache), train the head where there is one, evaluate every task; then\n"
    "compare designs with the Wilcoxon signed-rank test over the tasks of each category and a\n"
    "paired bootstrap over each task's examples, and write DIR/results.json, DIR/report.md and\n"
    "DIR/report.html. An interrupted run resumes from the designs already finished in DIR.\n"
    "\n"
    "  --designs LIST      comma-separated names or groups (default: paper)\n"
    "                      groups: paper (models 1-5, model 4 in both forms), extra, all\n"
    "                      names: eos-causal lastlayer-causal multilayer-causal\n"
    "                        latent-bidirectional perceiver-tokens-bidirectional\n"
    "                        multilayer-bidirectional mean-causal mean-bidirectional\n"
    "                        eos-bidirectional latent-causal\n"
    "  --tasks LIST        bundled tasks (default: all: sts-b,banking77,banking77-clustering,\n"
    "                      snli-pairs,snli-retrieval; 'none' for only --task-dir)\n"
    "  --task-dir DIR      a task folder in an MTEB layout (repeatable)\n"
    "  --data-dir DIR      where the bundled data lives (default: the build's data/)\n"
    "  --max-examples N    seeded subsample of each bundled task (default: all)\n"
    "  --max-corpus N      bundled retrieval corpus: the documents relevant to the kept\n"
    "                      queries + seeded distractors up to N (default: all)\n"
    "  --max-train N       use the first N training examples (default: all)\n"
    "  --steps N           training steps per head (default 200)\n"
    "  --batch N           examples per step (default 64)\n"
    "  --lr X              peak learning rate (default 1e-3)\n"
    "  --warmup N          warmup steps (default 20)\n"
    "  --seed N            training and bootstrap seed (default 42)\n"
    "  --ml-latents N      latents of the multi_layer heads (default: the head's default)\n"
    "  --latent-latents N  latents of the latent heads (default: the head's default)\n"
    "  --bootstrap N       paired-bootstrap resamples (default 2000)\n"
    "  --n-experiments N   classification experiments (default 10, MTEB's; a reference row\n"
    "                      must be evaluated with the same `lmembed eval --n-experiments`)\n"
    "  --alpha X           significance level of the marks (default 0.05)\n"
    "  --threads N         backbone threads (default: all)\n"
    "  --weights W         stored (default; Q8_0/Q4_0/Q4_1 weights stay quantized) or f32\n"
    "                      (dequantized; exact), as `lmembed embed`\n"
    "  --reference LABEL=FILE  a reference row (repeatable): FILE is `lmembed eval\n"
    "                      --embeddings ... --output FILE` on the same tasks and\n"
    "                      --max-examples; scored beside the designs and tested against them\n"
    "                      (its own Holm families), never counted as a design\n"
    "  --per-design-encoding  run the backbone for every design (default: once per attention\n"
    "                      mode and text, shared by that mode's designs; same embeddings)\n"
    "  --quiet             no progress on stderr\n";

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int run(std::span<const std::string> argv) {
  namespace cmp = lmembed::compare;
  Args a(argv, kUsage);
  a.option("--model").option("--train").option("--out").option("--designs").option("--tasks");
  a.option("--task-dir").option("--data-dir").option("--max-examples").option("--max-train");
  a.option("--max-corpus");
  a.option("--steps").option("--batch").option("--lr").option("--warmup").option("--seed");
  a.option("--ml-latents").option("--latent-latents").option("--bootstrap").option("--alpha");
  a.option("--threads")
      .option("--weights")
      .option("--reference")
      .flag("--quiet")
      .flag("--report-only");
  a.flag("--per-design-encoding").option("--n-experiments");
  a.parse();
  if (a.help()) {
    std::cout << kUsage;
    return 0;
  }
  if (!a.positional().empty())
    throw lmembed::cli::usage_error("unexpected argument '" + a.positional().front() + "'");
  const std::filesystem::path out = a.require("--out");
  std::vector<std::pair<std::string, std::filesystem::path>> refs;
  for (const auto& r : a.get_all("--reference")) {
    const auto eq = r.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == r.size())
      throw lmembed::cli::usage_error("--reference wants LABEL=FILE.json, got '" + r + "'");
    refs.emplace_back(r.substr(0, eq), r.substr(eq + 1));
  }
  // One writer per output folder: a second compare (or --report-only) on it while the first
  // runs is refused, instead of interleaving caches, heads and results.
  lmembed::DirLock lock;
  if (a.has("--report-only")) {
    if (std::filesystem::is_directory(out))
      lock = lmembed::DirLock::acquire(out, "lmembed compare");
    std::optional<double> alpha;
    std::optional<std::int64_t> boot;
    if (a.has("--alpha")) alpha = a.get_double("--alpha", 0.05);
    if (a.has("--bootstrap")) boot = a.get_int("--bootstrap", 2000);
    const cmp::Results r = cmp::rerender(out, alpha, boot, refs);
    std::cout << cmp::summary_table(r)
              << "\nreport: " << std::filesystem::absolute(out / "report.html").string() << "\n";
    return 0;
  }
  cmp::CompareOptions o;
  o.model = a.require("--model");
  o.train = a.require("--train");
  o.out = out;
  o.data_dir = a.get_or("--data-dir", LMEMBED_DATA_DIR);
  o.designs = cmp::parse_designs(a.get_or("--designs", "paper"));
  const std::string tasks = a.get_or("--tasks", "all");
  if (tasks == "all")
    o.tasks = lmembed::eval::bundled_task_names();
  else if (tasks != "none")
    o.tasks = split_list(tasks);
  for (const auto& d : a.get_all("--task-dir")) o.task_dirs.emplace_back(d);
  o.max_examples = a.get_int("--max-examples", 0);
  o.max_corpus = a.get_int("--max-corpus", 0);
  if (o.max_examples < 0 || o.max_corpus < 0)
    throw lmembed::cli::usage_error("--max-examples and --max-corpus must be >= 0");
  o.max_train = a.get_int("--max-train", 0);
  o.steps = a.get_int("--steps", o.steps);
  o.batch = a.get_int("--batch", o.batch);
  o.lr = a.get_double("--lr", o.lr);
  o.warmup = a.get_int("--warmup", o.warmup);
  o.seed = static_cast<std::uint64_t>(a.get_int("--seed", 42));
  o.ml_latents = a.get_int("--ml-latents", 0);
  o.latent_latents = a.get_int("--latent-latents", 0);
  o.bootstrap = a.get_int("--bootstrap", o.bootstrap);
  o.n_experiments = a.get_int("--n-experiments", o.n_experiments);
  if (o.n_experiments < 1) throw lmembed::cli::usage_error("--n-experiments must be at least 1");
  o.alpha = a.get_double("--alpha", o.alpha);
  o.threads = static_cast<int>(a.get_int("--threads", 0));
  o.weights = lmembed::cli::weights_option(a);
  o.progress = !a.has("--quiet");
  o.shared_pass = !a.has("--per-design-encoding");
  o.references = refs;
  if (o.bootstrap < 1) throw lmembed::cli::usage_error("--bootstrap must be at least 1");
  if (!(o.alpha > 0 && o.alpha < 1)) throw lmembed::cli::usage_error("--alpha must be in (0, 1)");
  lock = lmembed::DirLock::acquire(out, "lmembed compare");
  const cmp::Results r = cmp::run_compare(o);
  std::cout << cmp::summary_table(r)
            << "\nreport: " << std::filesystem::absolute(out / "report.html").string() << "\n";
  return 0;
}

const lmembed::cli::Register reg{"compare",
                                 "Compare embedding designs end to end (cache, train, evaluate, "
                                 "test, report)",
                                 &run};

}  // namespace
