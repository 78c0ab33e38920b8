// lmembed/eval/metrics.hpp - MTEB's metrics, one function each, on plain scores and labels.
//
// Definitions follow the reference implementations MTEB calls, so that numbers are comparable
// with published MTEB scores:
//  - clustering: sklearn.metrics.v_measure_score (natural logs, beta = 1);
//  - pair classification: MTEB's find_best_acc_and_threshold / find_best_f1_and_threshold and
//    sklearn.metrics.average_precision_score;
//  - retrieval: trec_eval (pytrec_eval) measures ndcg_cut, map_cut, recall, recip_rank, with
//    trec_eval's conventions (gain = relevance grade, log2 discount, relevant = grade >= 1,
//    ties in score ordered by document id descending);
//  - reranking: MTEB's RerankingEvaluator (per-query average precision, MRR@10).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "lmembed/core/error.hpp"

namespace lmembed::eval {

// ------------------------------------------------------------------ clustering

/// Homogeneity, completeness and V-measure of a clustering against gold labels.
struct VMeasure {
  double homogeneity = 0, completeness = 0, v_measure = 0;
};

namespace detail {
/// Relabels arbitrary int64 labels to 0..k-1 (order of first appearance).
inline std::vector<std::int64_t> compact_labels(std::span<const std::int64_t> y, std::int64_t& k) {
  std::unordered_map<std::int64_t, std::int64_t> ids;
  std::vector<std::int64_t> out(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    auto [it, fresh] = ids.try_emplace(y[i], static_cast<std::int64_t>(ids.size()));
    out[i] = it->second;
  }
  k = static_cast<std::int64_t>(ids.size());
  return out;
}
/// Entropy (nats) of a labeling given its class counts, as sklearn's entropy().
inline double entropy_of_counts(const std::vector<double>& counts) {
  double total = 0;
  for (double c : counts) total += c;
  if (total == 0) return 1.0;  // sklearn: entropy of an empty labeling is 1.0
  const double log_total = std::log(total);
  double h = 0;
  for (double c : counts)
    if (c > 0) h -= (c / total) * (std::log(c) - log_total);
  return h;
}
}  // namespace detail

/// sklearn.metrics.homogeneity_completeness_v_measure(labels_true, labels_pred), beta = 1.
inline VMeasure v_measure(std::span<const std::int64_t> labels_true,
                          std::span<const std::int64_t> labels_pred) {
  if (labels_true.size() != labels_pred.size())
    throw shape_error("v_measure: " + std::to_string(labels_true.size()) + " true labels vs " +
                      std::to_string(labels_pred.size()) + " predicted");
  VMeasure out;
  if (labels_true.empty()) {
    out.homogeneity = out.completeness = out.v_measure = 1.0;
    return out;
  }
  std::int64_t kc = 0, kk = 0;
  const auto c = detail::compact_labels(labels_true, kc);
  const auto k = detail::compact_labels(labels_pred, kk);
  std::vector<double> pi(static_cast<std::size_t>(kc), 0.0), pj(static_cast<std::size_t>(kk), 0.0);
  std::map<std::pair<std::int64_t, std::int64_t>, double> cont;
  for (std::size_t i = 0; i < c.size(); ++i) {
    pi[static_cast<std::size_t>(c[i])] += 1;
    pj[static_cast<std::size_t>(k[i])] += 1;
    cont[{c[i], k[i]}] += 1;
  }
  const double h_c = detail::entropy_of_counts(pi), h_k = detail::entropy_of_counts(pj);
  // Mutual information exactly as sklearn's mutual_info_score on a contingency table.
  const double n = static_cast<double>(c.size());
  const double log_n = std::log(n);
  double mi = 0;
  for (const auto& [ij, nij] : cont) {
    const double p = nij / n;
    const double outer =
        pi[static_cast<std::size_t>(ij.first)] * pj[static_cast<std::size_t>(ij.second)];
    const double log_outer = -std::log(outer) + log_n + log_n;
    double term = p * (std::log(nij) - log_n) + p * log_outer;
    if (std::abs(term) < 2.220446049250313e-16) term = 0.0;
    mi += term;
  }
  mi = std::max(mi, 0.0);
  out.homogeneity = h_c != 0 ? mi / h_c : 1.0;
  out.completeness = h_k != 0 ? mi / h_k : 1.0;
  const double s = out.homogeneity + out.completeness;
  out.v_measure = s == 0 ? 0.0 : 2.0 * out.homogeneity * out.completeness / s;
  return out;
}

// ------------------------------------------------------------------ pair classification

/// sklearn.metrics.average_precision_score for binary labels (1 = positive): the sum over
/// distinct score thresholds, highest first, of (recall gain) * precision. Tied scores form
/// one threshold. NaN-free: 0 positives gives 0 (sklearn warns and returns nan/0 there).
inline double average_precision(std::span<const double> scores, std::span<const int> labels) {
  if (scores.size() != labels.size())
    throw shape_error("average_precision: " + std::to_string(scores.size()) + " scores vs " +
                      std::to_string(labels.size()) + " labels");
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  double total_pos = 0;
  for (int l : labels) total_pos += l == 1;
  if (total_pos == 0) return 0.0;
  double tp = 0, fp = 0, prev_recall = 0, ap = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (labels[order[i]] == 1)
      tp += 1;
    else
      fp += 1;
    const bool last_of_threshold =
        i + 1 == order.size() || scores[order[i + 1]] != scores[order[i]];
    if (!last_of_threshold) continue;
    const double recall = tp / total_pos;
    const double precision = tp / (tp + fp);
    ap += (recall - prev_recall) * precision;
    prev_recall = recall;
  }
  return ap;
}

/// Best-threshold accuracy and F1 of a similarity score, and average precision.
struct PairClassificationMetrics {
  double accuracy = 0, accuracy_threshold = -1;
  double f1 = 0, f1_threshold = 0, precision = 0, recall = 0;
  double ap = 0;
};

/// MTEB's PairClassificationEvaluator for one similarity (higher = more similar): the
/// accuracy and F1 maximized over thresholds between consecutive sorted scores (MTEB's loops,
/// including their stable order for ties), and sklearn's average precision.
inline PairClassificationMetrics pair_classification(std::span<const double> scores,
                                                     std::span<const int> labels) {
  if (scores.size() != labels.size() || scores.size() < 2)
    throw shape_error("pair_classification: " + std::to_string(scores.size()) + " scores vs " +
                      std::to_string(labels.size()) + " labels (need >= 2)");
  for (int l : labels)
    if (l != 0 && l != 1) throw input_error("pair_classification: labels must be 0 or 1");
  std::vector<std::size_t> rows(scores.size());
  std::iota(rows.begin(), rows.end(), std::size_t{0});
  std::stable_sort(rows.begin(), rows.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  PairClassificationMetrics m;
  const double n = static_cast<double>(scores.size());
  double positive_so_far = 0, remaining_negatives = 0, total_pos = 0;
  for (int l : labels) {
    remaining_negatives += l == 0;
    total_pos += l == 1;
  }
  double nextract = 0, ncorrect = 0;
  for (std::size_t i = 0; i + 1 < rows.size(); ++i) {
    const int label = labels[rows[i]];
    const double thr = (scores[rows[i]] + scores[rows[i + 1]]) / 2;
    if (label == 1)
      positive_so_far += 1;
    else
      remaining_negatives -= 1;
    const double acc = (positive_so_far + remaining_negatives) / n;
    if (acc > m.accuracy) {
      m.accuracy = acc;
      m.accuracy_threshold = thr;
    }
    nextract += 1;
    if (label == 1) ncorrect += 1;
    if (ncorrect > 0) {
      const double p = ncorrect / nextract, r = ncorrect / total_pos;
      const double f1 = 2 * p * r / (p + r);
      if (f1 > m.f1) {
        m.f1 = f1;
        m.precision = p;
        m.recall = r;
        m.f1_threshold = thr;
      }
    }
  }
  m.ap = average_precision(scores, labels);
  return m;
}

/// Per positive pair (in input order), the precision at its rank in the descending score
/// order: their mean is the average precision when scores have no ties. Pair classification's
/// per_example scores for the paired bootstrap.
inline std::vector<double> precision_at_positives(std::span<const double> scores,
                                                  std::span<const int> labels) {
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  std::vector<double> prec_at(scores.size(), -1.0);
  double tp = 0;
  for (std::size_t i = 0; i < order.size(); ++i)
    if (labels[order[i]] == 1) {
      tp += 1;
      prec_at[order[i]] = tp / static_cast<double>(i + 1);
    }
  std::vector<double> out;
  for (std::size_t i = 0; i < scores.size(); ++i)
    if (labels[i] == 1) out.push_back(prec_at[i]);
  return out;
}

// ------------------------------------------------------------------ retrieval

/// trec_eval measures of one query's ranking. Cutoffs are those MTEB reports.
struct QueryMetrics {
  double ndcg_at_10 = 0;
  double mrr_at_10 = 0;
  double map_at_100 = 0;
  double recall_at_1 = 0, recall_at_10 = 0, recall_at_100 = 0;
  double precision_at_1 = 0, precision_at_10 = 0;
};

/// Scores one query's ranked list (best first, already in trec_eval order: score descending,
/// ties by document id descending) against its graded judgments (doc id -> grade; grade >= 1
/// is relevant, gains are the grades). Documents without judgment have grade 0.
inline QueryMetrics score_ranking(std::span<const std::string> ranked,
                                  const std::map<std::string, int>& qrels) {
  QueryMetrics q;
  std::vector<int> ideal;
  for (const auto& [doc, g] : qrels)
    if (g > 0) ideal.push_back(g);
  const double num_rel = static_cast<double>(ideal.size());
  if (num_rel == 0) return q;  // trec_eval: every measure is 0 for a query with no relevant doc
  std::sort(ideal.rbegin(), ideal.rend());
  double dcg = 0, idcg = 0, hits = 0, ap = 0;
  bool found = false;
  for (std::size_t i = 0; i < ranked.size() && i < 100; ++i) {
    auto it = qrels.find(ranked[i]);
    const int g = it == qrels.end() ? 0 : it->second;
    const double disc = std::log2(static_cast<double>(i) + 2.0);
    if (i < 10 && g > 0) dcg += g / disc;
    if (g >= 1) {
      hits += 1;
      ap += hits / static_cast<double>(i + 1);
      if (!found && i < 10) q.mrr_at_10 = 1.0 / static_cast<double>(i + 1);
      found = true;
    }
    if (i == 0) q.recall_at_1 = hits / num_rel, q.precision_at_1 = hits;
    if (i == 9) q.recall_at_10 = hits / num_rel, q.precision_at_10 = hits / 10.0;
    if (i == 99) q.recall_at_100 = hits / num_rel;
  }
  // Lists shorter than a cutoff: the measure at the cutoff counts what was retrieved.
  if (ranked.size() < 1) q.recall_at_1 = 0;
  if (ranked.size() < 10) {
    q.recall_at_10 = hits / num_rel;
    q.precision_at_10 = hits / 10.0;
  }
  if (ranked.size() < 100) q.recall_at_100 = hits / num_rel;
  for (std::size_t i = 0; i < ideal.size() && i < 10; ++i)
    idcg += ideal[i] / std::log2(static_cast<double>(i) + 2.0);
  q.ndcg_at_10 = idcg > 0 ? dcg / idcg : 0.0;
  q.map_at_100 = ap / num_rel;
  return q;
}

// ------------------------------------------------------------------ reranking

/// MTEB RerankingEvaluator's per-query measures: sklearn average precision of the candidates
/// and reciprocal rank of the first relevant candidate within the top 10.
struct RerankMetrics {
  double ap = 0, mrr_at_10 = 0;
};

/// One query's reranking measures from candidate scores and relevance (1/0).
inline RerankMetrics rerank_metrics(std::span<const double> scores, std::span<const int> relevant) {
  RerankMetrics m;
  m.ap = average_precision(scores, relevant);
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  for (std::size_t r = 0; r < order.size() && r < 10; ++r)
    if (relevant[order[r]] == 1) {
      m.mrr_at_10 = 1.0 / static_cast<double>(r + 1);
      break;
    }
  return m;
}

}  // namespace lmembed::eval
