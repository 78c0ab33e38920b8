// lmembed/eval/topk.hpp - exact top-k inner-product search over a corpus that streams in blocks.
//
// Retrieval needs, per query, the k best documents out of a corpus that may not fit in memory
// as a score matrix (100k queries x 1M documents would be 400 GB). TopK keeps one bounded
// min-heap of k entries per query and consumes the corpus block by block: each block costs one
// [query_block x corpus_block] GEMM (Eigen, float) per query block, then a heap pass. Memory is
// O(queries * k) for the heaps plus one score buffer per thread and the current corpus block,
// never O(queries * corpus), and nothing is fully sorted.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::eval {

/// One retrieved document: its index in the corpus and its score.
struct Hit {
  std::int64_t doc = -1;
  float score = 0;
};

/// Streaming exact top-k by inner product.
///
///   TopK topk(queries, 100);                 // queries: [n_queries, d], rows L2-normalized
///   for (each corpus block B of [m, d] starting at doc index first) topk.add(B, first);
///   auto hits = topk.result(q);              // best first
///
/// Ties in score are broken by `tie_rank` when given (smaller wins; retrieval passes the rank
/// of each document id in descending string order, trec_eval's convention), else by the smaller
/// document index.
class TopK {
 public:
  /// `queries` is copied; `k` >= 1. `query_block` rows of queries are scored at a time, so the
  /// score buffer is [query_block, corpus block].
  TopK(const Matrix& queries, std::int64_t k, std::int64_t query_block = 256)
      : q_(queries), k_(k), query_block_(std::max<std::int64_t>(1, query_block)) {
    if (k < 1) throw config_error("TopK: k must be >= 1, got " + std::to_string(k));
    heaps_.resize(static_cast<std::size_t>(q_.rows()));
    for (auto& h : heaps_) h.reserve(static_cast<std::size_t>(k_));
  }

  /// Documents' tie-breaking ranks (index -> rank; smaller is ranked first on equal scores).
  /// Must cover every document index passed to add().
  void set_tie_rank(std::vector<std::int64_t> rank) { tie_rank_ = std::move(rank); }

  /// Adds corpus rows [first_doc, first_doc + block.rows()).
  template <class Derived>
  void add(const Eigen::MatrixBase<Derived>& block, std::int64_t first_doc) {
    if (block.cols() != q_.cols())
      throw shape_error("TopK::add: corpus block is [" + std::to_string(block.rows()) + ", " +
                        std::to_string(block.cols()) + "], queries are [" +
                        std::to_string(q_.rows()) + ", " + std::to_string(q_.cols()) + "]");
    const std::int64_t m = block.rows(), nq = q_.rows();
    if (m == 0 || nq == 0) return;
    const std::int64_t n_qb = (nq + query_block_ - 1) / query_block_;
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (std::int64_t qb = 0; qb < n_qb; ++qb) {
      const std::int64_t q0 = qb * query_block_, qn = std::min(query_block_, nq - q0);
      // One GEMM per (query block, corpus block); the buffer is per thread.
      Matrix scores = q_.middleRows(q0, qn) * block.transpose();
      for (std::int64_t i = 0; i < qn; ++i) {
        auto& h = heaps_[static_cast<std::size_t>(q0 + i)];
        const float* row = scores.data() + i * m;
        for (std::int64_t j = 0; j < m; ++j) push(h, Hit{first_doc + j, row[j]});
      }
    }
  }

  /// Offers query q hits found elsewhere (e.g. a GPU's top-k of one corpus block; `doc` is the
  /// global document index, covered by the tie ranks): they compete with what add() found, in
  /// the same order, so the k best overall are kept.
  void add_hits(std::int64_t q, std::span<const Hit> hits) {
    auto& h = heaps_.at(static_cast<std::size_t>(q));
    for (const Hit& x : hits) push(h, x);
  }

  /// The k best hits of query q (fewer if the corpus was smaller), best first.
  std::vector<Hit> result(std::int64_t q) const {
    auto h = heaps_.at(static_cast<std::size_t>(q));
    std::sort(h.begin(), h.end(), [this](const Hit& a, const Hit& b) { return better(a, b); });
    return h;
  }
  /// Number of queries.
  std::int64_t n_queries() const {
    return q_.rows();
  }
  /// The k asked for.
  std::int64_t k() const {
    return k_;
  }

 private:
  bool better(const Hit& a, const Hit& b) const {
    if (a.score != b.score) return a.score > b.score;
    if (!tie_rank_.empty())
      return tie_rank_[static_cast<std::size_t>(a.doc)] <
             tie_rank_[static_cast<std::size_t>(b.doc)];
    return a.doc < b.doc;
  }
  // Min-heap on "better": the root is the worst kept hit.
  void push(std::vector<Hit>& h, Hit x) const {
    auto worse_first = [this](const Hit& a, const Hit& b) { return better(a, b); };
    if (static_cast<std::int64_t>(h.size()) < k_) {
      h.push_back(x);
      std::push_heap(h.begin(), h.end(), worse_first);
    } else if (better(x, h.front())) {
      std::pop_heap(h.begin(), h.end(), worse_first);
      h.back() = x;
      std::push_heap(h.begin(), h.end(), worse_first);
    }
  }

  Matrix q_;
  std::int64_t k_;
  std::int64_t query_block_;
  std::vector<std::vector<Hit>> heaps_;
  std::vector<std::int64_t> tie_rank_;
};

/// Exact top-k of every query over an in-memory corpus, streamed in blocks of `corpus_block`
/// rows (no [queries x corpus] matrix is formed).
inline std::vector<std::vector<Hit>> search_topk(const Matrix& queries, const Matrix& corpus,
                                                 std::int64_t k, std::int64_t corpus_block = 8192) {
  TopK t(queries, k);
  for (std::int64_t s = 0; s < corpus.rows(); s += corpus_block) {
    const std::int64_t m = std::min(corpus_block, corpus.rows() - s);
    t.add(corpus.middleRows(s, m), s);
  }
  std::vector<std::vector<Hit>> out(static_cast<std::size_t>(queries.rows()));
  for (std::int64_t q = 0; q < queries.rows(); ++q) out[static_cast<std::size_t>(q)] = t.result(q);
  return out;
}

}  // namespace lmembed::eval
