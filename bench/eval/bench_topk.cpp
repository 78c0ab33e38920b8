// Streaming exact top-k retrieval: throughput and peak memory over a 100k x 1024 corpus.
//
// The corpus (random unit vectors, float32: 410 MB) is generated block by block and handed
// to TopK as it would come out of an encoder, so the whole corpus is never resident; only the
// queries, the heaps and one block are. Reported counters:
//   docs_per_s     corpus documents scored per second (all queries against each document)
//   gflops         2 * queries * docs * dim / time
//   peak_rss_mb    peak resident set of the process (getrusage), after the run
//   score_matrix_mb what a full [queries x docs] float score matrix would have taken
// BM_Dense_FullScoreMatrix is the naive baseline (whole corpus and score matrix resident).
// Run: bench/bench_eval_topk [--benchmark_filter=...]; set OMP_NUM_THREADS to the cores used.
// Times are wall-clock (UseRealTime), since the GEMMs run on OpenMP threads.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <random>
#include <vector>

#include "lmembed/eval/topk.hpp"

namespace {

lmembed::Matrix random_unit_rows(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  lmembed::Matrix m(n, d);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = g(rng);
  m.rowwise().normalize();
  return m;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

void BM_TopK_Streaming(benchmark::State& state) {
  const std::int64_t n_docs = state.range(0), n_queries = state.range(1), dim = 1024, k = 100;
  const std::int64_t block = state.range(2);
  const lmembed::Matrix Q = random_unit_rows(n_queries, dim, 1);
  for (auto _ : state) {
    lmembed::eval::TopK topk(Q, k);
    for (std::int64_t s = 0; s < n_docs; s += block) {
      // Each block is fresh (distinct documents), generated outside the timing, and dropped
      // after scoring - as blocks coming out of an encoder.
      state.PauseTiming();
      const lmembed::Matrix B =
          random_unit_rows(std::min(block, n_docs - s), dim, 1000 + static_cast<std::uint64_t>(s));
      state.ResumeTiming();
      topk.add(B, s);
    }
    benchmark::DoNotOptimize(topk.result(0));
  }
  const double docs = static_cast<double>(n_docs) * static_cast<double>(state.iterations());
  state.counters["docs_per_s"] = benchmark::Counter(docs, benchmark::Counter::kIsRate);
  state.counters["gflops"] =
      benchmark::Counter(2e-9 * docs * static_cast<double>(n_queries) * static_cast<double>(dim),
                         benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = peak_rss_mb();
  state.counters["score_matrix_mb"] =
      4.0 * static_cast<double>(n_queries) * static_cast<double>(n_docs) / 1048576.0;
}
// 100k documents x 1024 dims; 1000 and 5000 queries; corpus blocks of 4096 documents.
BENCHMARK(BM_TopK_Streaming)
    ->Args({100000, 1000, 4096})
    ->Args({100000, 5000, 4096})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

// The naive alternative, for comparison: one full [queries x docs] score matrix, then a
// partial selection per row. Registered last: peak RSS is a process-wide maximum.
void BM_Dense_FullScoreMatrix(benchmark::State& state) {
  const std::int64_t n_docs = state.range(0), n_queries = state.range(1), dim = 1024, k = 100;
  const lmembed::Matrix Q = random_unit_rows(n_queries, dim, 1);
  const lmembed::Matrix D = random_unit_rows(n_docs, dim, 3);
  for (auto _ : state) {
    const lmembed::Matrix S = Q * D.transpose();
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n_docs));
    for (std::int64_t q = 0; q < n_queries; ++q) {
      for (std::int64_t j = 0; j < n_docs; ++j) idx[static_cast<std::size_t>(j)] = j;
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                        [&](std::int64_t a, std::int64_t b) { return S(q, a) > S(q, b); });
      benchmark::DoNotOptimize(idx.data());
    }
  }
  const double docs = static_cast<double>(n_docs) * static_cast<double>(state.iterations());
  state.counters["docs_per_s"] = benchmark::Counter(docs, benchmark::Counter::kIsRate);
  state.counters["gflops"] =
      benchmark::Counter(2e-9 * docs * static_cast<double>(n_queries) * static_cast<double>(dim),
                         benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = peak_rss_mb();
}
BENCHMARK(BM_Dense_FullScoreMatrix)
    ->Args({100000, 1000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
