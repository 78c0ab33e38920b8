// Tokenizer throughput: the bundled datasets concatenated (several MB of English text), encoded
// line by line (each line one text, as embedding inputs are) on one thread; bytes_per_second is
// the MB/s figure. Plus the long bad-input strings (1 MB without spaces, 1 MB of one character)
// at two sizes, to show the merge queue keeps them near-linear.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "lmembed/io/gguf.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

namespace {

const std::filesystem::path kData = LMEMBED_DATA_DIR;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The datasets' text files, concatenated and split into lines.
const std::vector<std::string>& corpus_lines() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> out;
    for (const char* f :
         {"bench/corpus256.txt", "datasets/stsbenchmark/sts-train.csv",
          "datasets/stsbenchmark/sts-dev.csv", "datasets/banking77/train.csv",
          "datasets/banking77/test.csv", "datasets/snli_dev/s1.dev", "datasets/snli_dev/s2.dev"}) {
      std::istringstream in(slurp(kData / f));
      for (std::string l; std::getline(in, l);)
        if (!l.empty()) out.push_back(l);
    }
    return out;
  }();
  return lines;
}

const lmembed::Tokenizer& tokenizer(const std::string& name) {
  static const lmembed::Tokenizer spm = lmembed::Tokenizer::from_gguf(
      lmembed::io::GgufFile::open(kData / "tokenizer" / "ggml-vocab-llama-spm.gguf"));
  static const lmembed::Tokenizer gpt2 = lmembed::Tokenizer::from_gguf(
      lmembed::io::GgufFile::open(kData / "tokenizer" / "ggml-vocab-gpt-2.gguf"));
  return name == "spm" ? spm : gpt2;
}

void BM_Corpus(benchmark::State& st, const std::string& name) {
  const auto& tok = tokenizer(name);
  const auto& lines = corpus_lines();
  std::size_t bytes = 0, tokens = 0;
  for (const auto& l : lines) bytes += l.size();
  for (auto _ : st) {
    tokens = 0;
    for (const auto& l : lines) {
      auto ids = tok.encode(l);
      tokens += ids.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(bytes) * st.iterations());
  st.counters["MB"] = static_cast<double>(bytes) / 1e6;
  st.counters["tokens"] = static_cast<double>(tokens);
}

void BM_Long(benchmark::State& st, const std::string& name, bool one_char) {
  const auto& tok = tokenizer(name);
  const std::size_t n = static_cast<std::size_t>(st.range(0));
  std::string s;
  if (one_char) {
    s.assign(n, 'a');
  } else {
    const std::string word = "Tokenization0123456789abcdefghij";
    while (s.size() < n) s += word;
    s.resize(n);
  }
  for (auto _ : st) {
    auto ids = tok.encode(s);
    benchmark::DoNotOptimize(ids.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(n) * st.iterations());
}

}  // namespace

BENCHMARK_CAPTURE(BM_Corpus, spm_llama, std::string("spm"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Corpus, bpe_gpt2, std::string("gpt2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Long, spm_nospace, std::string("spm"), false)
    ->Arg(1 << 18)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Long, spm_onechar, std::string("spm"), true)
    ->Arg(1 << 18)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Long, bpe_nospace, std::string("gpt2"), false)
    ->Arg(1 << 18)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Long, bpe_onechar, std::string("gpt2"), true)
    ->Arg(1 << 18)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
