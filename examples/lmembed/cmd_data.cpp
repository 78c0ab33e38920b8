// `lmembed data`: converters of the bundled data sets to training JSONL, and a checker.
#include <iostream>
#include <span>
#include <string>

#include "command.hpp"
#include "lmembed/train/data.hpp"

namespace {

int run_data(std::span<const std::string> argv) {
  using lmembed::cli::Args;
  using lmembed::cli::usage_error;
  namespace train = lmembed::train;
  Args a(argv,
         "usage: lmembed data snli --in DIR --out FILE.jsonl [--limit N]\n"
         "       lmembed data stsb --in FILE.csv --out FILE.jsonl [--min-score S] [--limit N]\n"
         "       lmembed data check FILE.jsonl [--skip-bad]\n"
         "  snli   SNLI (s1.dev, s2.dev, labels.dev in DIR) -> (premise, entailment,\n"
         "         contradiction) triplets: {\"query\", \"positive\", \"negative\"}\n"
         "  stsb   STS Benchmark pairs with score >= S (default 4) -> {\"query\", \"positive\"}\n"
         "  check  reads a training JSONL file and counts examples; a malformed line is an error\n"
         "         naming it, or with --skip-bad is skipped and counted\n"
         "  --limit N   keep the first N examples");
  a.option("--in").option("--out").option("--min-score").option("--limit").flag("--skip-bad");
  a.parse();
  if (a.help()) {
    std::cout << a.usage() << "\n";
    return 0;
  }
  if (a.positional().empty()) throw usage_error("which converter: snli, stsb or check?");
  const std::string what = a.positional()[0];
  const long long limit = a.get_int("--limit", -1);
  auto finish = [&](std::vector<train::Example> ex) {
    if (limit >= 0 && static_cast<long long>(ex.size()) > limit) ex.resize(std::size_t(limit));
    const std::string out = a.require("--out");
    train::write_examples(out, ex);
    std::size_t negs = 0;
    for (const auto& e : ex) negs += e.negatives.size();
    std::cerr << "lmembed data " << what << ": " << ex.size() << " examples (" << negs
              << " hard negatives) -> " << out << "\n";
    return 0;
  };
  if (what == "snli") return finish(train::convert_snli(a.require("--in")));
  if (what == "stsb")
    return finish(train::convert_stsb(a.require("--in"), a.get_double("--min-score", 4.0)));
  if (what == "check") {
    if (a.positional().size() != 2) throw usage_error("check needs one FILE.jsonl");
    train::ReadStats st;
    const auto ex = train::read_examples(a.positional()[1], {a.has("--skip-bad")}, &st);
    if (ex.empty())
      throw lmembed::input_error(a.positional()[1] + ": holds no training examples" +
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

const lmembed::cli::Register reg{"data", "Convert SNLI / STS-B to training JSONL; check JSONL",
                                 &run_data};

}  // namespace
