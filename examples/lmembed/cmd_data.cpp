// `lmembed data`: converters of the bundled data sets to training JSONL, and a checker.
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "lmembed/train/data.hpp"

namespace {

struct Options {
  std::optional<std::string> in, out;
  double min_score = 4.0;
  long long limit = -1;
  bool skip_bad = false;
  std::vector<std::string> args;  // the converter, and check's FILE.jsonl
};

void add_options(CLI::App& app, Options& o) {
  namespace cli = lmembed::cli;
  app.description(
      "  lmembed data snli --in DIR --out FILE.jsonl [--limit N]\n"
      "    SNLI (s1.dev, s2.dev, labels.dev in DIR) -> (premise, entailment, contradiction)\n"
      "    triplets: {\"query\", \"positive\", \"negative\"}\n"
      "  lmembed data stsb --in FILE.csv --out FILE.jsonl [--min-score S] [--limit N]\n"
      "    STS Benchmark pairs with score >= S -> {\"query\", \"positive\"}\n"
      "  lmembed data check FILE.jsonl [--skip-bad]\n"
      "    reads a training JSONL file and counts examples; a malformed line is an error\n"
      "    naming it, or with --skip-bad is skipped and counted");
  cli::option(app, "--in PATH", o.in, "snli: the SNLI folder; stsb: the STS Benchmark .csv");
  cli::option(app, "--out FILE", o.out, "the training JSONL to write");
  cli::option(app, "--min-score S", o.min_score, "stsb: keep the pairs scored >= S (default 4)");
  cli::option(app, "--limit N", o.limit, "keep the first N examples");
  cli::flag(app, "--skip-bad", o.skip_bad, "check: skip malformed lines (counted)");
  cli::positionals(app, "ARGS", o.args, "snli, stsb or check FILE.jsonl");
}

int run_data(const Options& o) {
  using lmembed::cli::require;
  using lmembed::cli::usage_error;
  namespace train = lmembed::train;
  if (o.args.empty()) throw usage_error("which converter: snli, stsb or check?");
  const std::string what = o.args[0];
  const long long limit = o.limit;
  auto finish = [&](std::vector<train::Example> ex) {
    if (limit >= 0 && static_cast<long long>(ex.size()) > limit) ex.resize(std::size_t(limit));
    const std::string out = require(o.out, "--out");
    train::write_examples(out, ex);
    std::size_t negs = 0;
    for (const auto& e : ex) negs += e.negatives.size();
    std::cerr << "lmembed data " << what << ": " << ex.size() << " examples (" << negs
              << " hard negatives) -> " << out << "\n";
    return 0;
  };
  if (what == "snli") return finish(train::convert_snli(require(o.in, "--in")));
  if (what == "stsb") return finish(train::convert_stsb(require(o.in, "--in"), o.min_score));
  if (what == "check") {
    if (o.args.size() != 2) throw usage_error("check needs one FILE.jsonl");
    train::ReadStats st;
    const auto ex = train::read_examples(o.args[1], {o.skip_bad}, &st);
    if (ex.empty())
      throw lmembed::input_error(o.args[1] + ": holds no training examples" +
                                 (st.skipped ? " (every line was skipped as malformed)"
                                             : " (an empty file, or only blank lines)"));
    std::size_t negs = 0;
    for (const auto& e : ex) negs += e.negatives.size();
    std::cout << "lines " << st.lines << "\nexamples " << st.examples << "\nskipped " << st.skipped
              << "\nhard_negatives " << negs << "\n";
    for (const auto& m : st.first_errors) std::cerr << "skipped: " << m << "\n";
    return 0;
  }
  throw usage_error("unknown converter '" + what + "' (snli, stsb or check)");
}

const lmembed::cli::Register<Options> reg{
    "data", "Convert SNLI / STS-B to training JSONL; check JSONL", &add_options, &run_data};

}  // namespace
