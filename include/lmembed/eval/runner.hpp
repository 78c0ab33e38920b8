// lmembed/eval/runner.hpp - runs a Task against an embedding callback and returns its scores.
//
// The runner knows nothing about models: it asks an Embedder for the embeddings of texts under
// an instruction ("" for documents), so the same code scores an Encoder, precomputed
// embeddings (LookupEmbedder) or anything else. Each category follows MTEB's evaluator:
//   sts                  cosine of the pair; Spearman (main) and Pearson against gold
//   retrieval            exact top-100 by cosine (streamed, TopK); trec_eval nDCG@10 (main),
//                        MRR@10, MAP@100, Recall@{1,10,100}, P@{1,10}
//   classification       n_experiments x (k examples per label, seeded) -> logistic
//                        regression; accuracy (main) and macro-F1, means over experiments
//   clustering           n_runs x (cluster_size texts drawn with replacement, seeded) ->
//                        mini-batch k-means with k = #labels; V-measure (main), mean of runs
//   pair_classification  cosine; best-threshold accuracy and F1, average precision (main)
//   reranking            cosine of query and candidates; MAP (main) and MRR@10
// TaskResult::per_example holds the scores whose mean is (or linearizes) the main score,
// in a fixed order, for the paired bootstrap between two systems on the same task.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/eval/kmeans.hpp"
#include "lmembed/eval/logreg.hpp"
#include "lmembed/eval/metrics.hpp"
#include "lmembed/eval/stats.hpp"
#include "lmembed/eval/tasks.hpp"
#include "lmembed/eval/topk.hpp"

namespace lmembed::eval {

/// Embeds texts under an instruction ("" = none, e.g. retrieval documents): one row per text,
/// L2-normalized. How the instruction is shown to the model is the callback's business
/// (lmembed's Encoder uses "Instruct: {instruction}\nQuery: {text}").
using Embedder =
    std::function<Matrix(std::span<const std::string> texts, std::string_view instruction)>;

/// The E5-style prompt prefix of a task instruction, as Tang & Yang 2024 (and E5-mistral)
/// evaluate: "Instruct: {instruction}\nQuery: " ("" stays ""). Encoder-backed Embedders pass
/// format_instruction(instruction) to Encoder::encode(texts, prefix), which leaves the prefix
/// out of mean-style pooling.
inline std::string format_instruction(std::string_view instruction) {
  if (instruction.empty()) return {};
  return "Instruct: " + std::string(instruction) + "\nQuery: ";
}

/// The scores of one task.
struct TaskResult {
  std::string task;                       ///< task name, e.g. "sts-b"
  std::string category;                   ///< "sts", "retrieval", ...
  std::string main_metric;                ///< e.g. "spearman"
  double main_score = 0;                  ///< value of main_metric
  std::map<std::string, double> metrics;  ///< every metric, main included
  std::vector<double> per_example;        ///< per-example scores for the paired bootstrap
  // Record of how the numbers were obtained (written to results JSON).
  std::string instruction;                   ///< the task instruction given to the Embedder
  std::string per_example_unit;              ///< what one per_example entry is
  std::map<std::string, std::string> notes;  ///< task notes + evaluation settings
  double seconds = 0;                        ///< wall time, embedding included
};

/// Evaluation settings (MTEB's defaults).
struct EvalOptions {
  std::uint64_t seed = 42;        ///< MTEB's task seed
  std::int64_t batch_size = 256;  ///< texts per Embedder call
  // classification
  std::int64_t n_experiments = 10;
  std::int64_t samples_per_label = 8;
  LogRegOptions logreg{};
  // clustering (MTEB's ClusteringFast)
  std::int64_t clustering_runs = 10;
  std::int64_t cluster_size = 2048;  ///< texts per run (drawn with replacement)
  std::int64_t kmeans_batch_size = 512;
  // retrieval
  std::int64_t top_k = 100;
  std::int64_t corpus_block = 4096;  ///< documents embedded and scored at a time
  bool progress = true;              ///< progress lines on stderr
  /// Retrieval scoring elsewhere (`lmembed eval --device cuda`: cuda::search_topk): exact top-k
  /// of every query row over the corpus rows by inner product, best first, equal scores to the
  /// smaller corpus row (eval::search_topk's contract). Empty: TopK on the CPU. Either way the
  /// ranking is the same: the runner hands each corpus block over in trec_eval's tie order.
  std::function<std::vector<std::vector<Hit>>(const Matrix& queries, const Matrix& corpus,
                                              std::int64_t k)>
      search_topk;
};

// ------------------------------------------------------------------ embedding helpers

/// Embeds `texts` under `instruction` in batches of opt.batch_size, embedding each distinct
/// text once, and checks the callback's output (row count, width, finite values).
inline Matrix embed_texts(const Embedder& embed, std::span<const std::string> texts,
                          std::string_view instruction, const EvalOptions& opt,
                          std::string_view what = "texts") {
  std::unordered_map<std::string_view, std::int64_t> first;
  std::vector<std::string> unique;
  std::vector<std::int64_t> row_of(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto [it, fresh] = first.try_emplace(texts[i], static_cast<std::int64_t>(unique.size()));
    if (fresh) unique.push_back(texts[i]);
    row_of[i] = it->second;
  }
  Matrix U;
  const auto bs = static_cast<std::size_t>(std::max<std::int64_t>(1, opt.batch_size));
  auto t0 = std::chrono::steady_clock::now(), last = t0;
  for (std::size_t s = 0; s < unique.size(); s += bs) {
    const std::size_t m = std::min(bs, unique.size() - s);
    Matrix E = embed(std::span<const std::string>(unique).subspan(s, m), instruction);
    if (E.rows() != static_cast<Eigen::Index>(m) || (U.size() && E.cols() != U.cols()) ||
        E.cols() == 0)
      throw shape_error("embedder returned [" + std::to_string(E.rows()) + ", " +
                        std::to_string(E.cols()) + "] for " + std::to_string(m) + " texts" +
                        (U.size() ? " (expected width " + std::to_string(U.cols()) + ")" : ""));
    if (!E.allFinite()) throw input_error("embedder returned non-finite values");
    if (U.size() == 0) U.resize(static_cast<Eigen::Index>(unique.size()), E.cols());
    U.middleRows(static_cast<Eigen::Index>(s), static_cast<Eigen::Index>(m)) = E;
    const auto now = std::chrono::steady_clock::now();
    if (opt.progress && std::chrono::duration<double>(now - last).count() > 2.0) {
      last = now;
      std::cerr << "  embedded " << s + m << "/" << unique.size() << " " << what << "\n";
    }
  }
  Matrix out(static_cast<Eigen::Index>(texts.size()), U.cols());
  for (std::size_t i = 0; i < texts.size(); ++i)
    out.row(static_cast<Eigen::Index>(i)) = U.row(row_of[i]);
  return out;
}

/// Rows scaled to unit L2 norm (zero rows stay zero): cosine similarity becomes a dot product.
inline Matrix l2_normalized(Matrix m) {
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    const float n = m.row(i).norm();
    if (n > 0) m.row(i) /= n;
  }
  return m;
}

/// Row-wise cosine of two [n, d] matrices, in double.
inline std::vector<double> paired_cosine(const Matrix& a, const Matrix& b) {
  std::vector<double> out(static_cast<std::size_t>(a.rows()));
  for (Eigen::Index i = 0; i < a.rows(); ++i) {
    const double na = a.row(i).cast<double>().norm(), nb = b.row(i).cast<double>().norm();
    const double dot = a.row(i).cast<double>().dot(b.row(i).cast<double>());
    out[static_cast<std::size_t>(i)] = (na > 0 && nb > 0) ? dot / (na * nb) : 0.0;
  }
  return out;
}

/// Every (instruction, text) the runner may ask the Embedder for on `task` (a superset:
/// classification lists all training texts, not only the sampled ones). `lmembed eval
/// --dump-texts` writes this list so that embeddings can be computed elsewhere.
inline std::vector<std::pair<std::string, std::string>> requested_texts(const Task& task) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string& ins = task.instruction;
  auto add = [&](const std::vector<std::string>& v, const std::string& i) {
    for (const auto& s : v) out.emplace_back(i, s);
  };
  std::visit(
      [&](const auto& d) {
        using D = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<D, StsData> || std::is_same_v<D, PairClassificationData>) {
          add(d.sentence1, ins);
          add(d.sentence2, ins);
        } else if constexpr (std::is_same_v<D, RetrievalData>) {
          add(d.queries, ins);
          add(d.docs, "");
        } else if constexpr (std::is_same_v<D, ClassificationData>) {
          add(d.train_text, ins);
          add(d.test_text, ins);
        } else if constexpr (std::is_same_v<D, ClusteringData>) {
          add(d.text, ins);
        } else {
          for (const auto& it : d.items) {
            out.emplace_back(ins, it.query);
            add(it.positive, "");
            add(it.negative, "");
          }
        }
      },
      task.data);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// An Embedder over precomputed embeddings: row i of `embeddings` belongs to keys[i] =
/// (instruction, text). Asking for an unknown pair throws input_error naming it.
class LookupEmbedder {
 public:
  LookupEmbedder(std::vector<std::pair<std::string, std::string>> keys, Matrix embeddings)
      : E_(std::move(embeddings)) {
    if (static_cast<Eigen::Index>(keys.size()) != E_.rows())
      throw shape_error("precomputed embeddings are [" + std::to_string(E_.rows()) + ", " +
                        std::to_string(E_.cols()) + "] but " + std::to_string(keys.size()) +
                        " texts were listed");
    for (std::size_t i = 0; i < keys.size(); ++i)
      index_.emplace(key(keys[i].first, keys[i].second), static_cast<Eigen::Index>(i));
  }
  Matrix operator()(std::span<const std::string> texts, std::string_view instruction) const {
    Matrix out(static_cast<Eigen::Index>(texts.size()), E_.cols());
    for (std::size_t i = 0; i < texts.size(); ++i) {
      auto it = index_.find(key(instruction, texts[i]));
      if (it == index_.end())
        throw input_error("no precomputed embedding for text '" + texts[i].substr(0, 80) +
                          "' under instruction '" + std::string(instruction) + "'");
      out.row(static_cast<Eigen::Index>(i)) = E_.row(it->second);
    }
    return out;
  }

 private:
  static std::string key(std::string_view ins, std::string_view text) {
    std::string k(ins);
    k += '\x1f';
    k += text;
    return k;
  }
  Matrix E_;
  std::unordered_map<std::string, Eigen::Index> index_;
};

// ------------------------------------------------------------------ per category

namespace detail {

inline void progress(const EvalOptions& opt, const std::string& msg) {
  if (opt.progress) std::cerr << msg << "\n";
}

inline void eval_sts(const StsData& d, const std::string& ins, const Embedder& e,
                     const EvalOptions& opt, TaskResult& r) {
  const Matrix a = embed_texts(e, d.sentence1, ins, opt, "sentence1");
  const Matrix b = embed_texts(e, d.sentence2, ins, opt, "sentence2");
  const auto cos = paired_cosine(a, b);
  r.metrics["spearman"] = spearman(d.score, cos);
  r.metrics["pearson"] = pearson(d.score, cos);
  r.per_example = spearman_terms(d.score, cos);
  r.per_example_unit = "pair: z(rank gold) * z(rank cosine); mean = Spearman";
  r.notes["n_pairs"] = std::to_string(d.score.size());
}

inline void eval_pairs(const PairClassificationData& d, const std::string& ins, const Embedder& e,
                       const EvalOptions& opt, TaskResult& r) {
  const Matrix a = embed_texts(e, d.sentence1, ins, opt, "sentence1");
  const Matrix b = embed_texts(e, d.sentence2, ins, opt, "sentence2");
  const auto cos = paired_cosine(a, b);
  const auto m = pair_classification(cos, d.label);
  r.metrics["ap"] = m.ap;
  r.metrics["accuracy"] = m.accuracy;
  r.metrics["accuracy_threshold"] = m.accuracy_threshold;
  r.metrics["f1"] = m.f1;
  r.metrics["f1_threshold"] = m.f1_threshold;
  r.metrics["precision"] = m.precision;
  r.metrics["recall"] = m.recall;
  r.per_example = precision_at_positives(cos, d.label);
  r.per_example_unit = "positive pair: precision at its rank; mean = AP (no ties)";
  r.notes["n_pairs"] = std::to_string(d.label.size());
}

/// Scores corpus block D (documents first .. first + D.rows()) with opt.search_topk and merges
/// its hits into `topk`. The block goes over in tie-rank order, so the callback's "smaller row
/// first" on equal scores is trec_eval's order, and the merged result equals TopK::add's.
inline void add_block_hits(TopK& topk, const Matrix& Q, const Matrix& D, std::size_t first,
                           const std::vector<std::int64_t>& rank, const EvalOptions& opt) {
  const auto m = static_cast<std::size_t>(D.rows());
  std::vector<std::size_t> by_rank(m);
  for (std::size_t j = 0; j < m; ++j) by_rank[j] = j;
  std::sort(by_rank.begin(), by_rank.end(),
            [&](std::size_t a, std::size_t b) { return rank[first + a] < rank[first + b]; });
  Matrix P(D.rows(), D.cols());
  for (std::size_t t = 0; t < m; ++t)
    P.row(static_cast<Eigen::Index>(t)) = D.row(static_cast<Eigen::Index>(by_rank[t]));
  auto hits = opt.search_topk(Q, P, opt.top_k);
  if (hits.size() != static_cast<std::size_t>(Q.rows()))
    throw shape_error("retrieval: search_topk returned hits for " + std::to_string(hits.size()) +
                      " queries, expected " + std::to_string(Q.rows()));
  for (std::size_t q = 0; q < hits.size(); ++q) {
    for (Hit& h : hits[q]) {
      if (h.doc < 0 || h.doc >= static_cast<std::int64_t>(m))
        throw shape_error("retrieval: search_topk returned document " + std::to_string(h.doc) +
                          " of a block of " + std::to_string(m));
      h.doc = static_cast<std::int64_t>(first + by_rank[static_cast<std::size_t>(h.doc)]);
    }
    topk.add_hits(static_cast<std::int64_t>(q), hits[q]);
  }
}

inline void eval_retrieval(const RetrievalData& d, const std::string& ins, const Embedder& e,
                           const EvalOptions& opt, TaskResult& r) {
  // Queries judged in qrels are evaluated (pytrec_eval scores exactly those).
  std::vector<std::size_t> qsel;
  std::vector<std::string> qtext;
  for (std::size_t i = 0; i < d.query_ids.size(); ++i)
    if (d.qrels.count(d.query_ids[i])) qsel.push_back(i), qtext.push_back(d.queries[i]);
  if (qsel.empty()) throw input_error("retrieval: no query has judgments in qrels");
  const Matrix Q = l2_normalized(embed_texts(e, qtext, ins, opt, "queries"));
  TopK topk(Q, opt.top_k);
  // trec_eval orders equal scores by document id, descending.
  std::vector<std::int64_t> rank(d.doc_ids.size());
  {
    std::vector<std::size_t> order(d.doc_ids.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return d.doc_ids[a] > d.doc_ids[b]; });
    for (std::size_t i = 0; i < order.size(); ++i) rank[order[i]] = static_cast<std::int64_t>(i);
    topk.set_tie_rank(rank);
  }
  // The corpus streams through in blocks: embedded, scored, dropped.
  const auto block = static_cast<std::size_t>(std::max<std::int64_t>(1, opt.corpus_block));
  for (std::size_t s = 0; s < d.docs.size(); s += block) {
    const std::size_t m = std::min(block, d.docs.size() - s);
    const Matrix D = l2_normalized(
        embed_texts(e, std::span<const std::string>(d.docs).subspan(s, m), "", opt, "documents"));
    if (D.cols() != Q.cols())
      throw shape_error("retrieval: documents embed to width " + std::to_string(D.cols()) +
                        ", queries to " + std::to_string(Q.cols()));
    if (opt.search_topk)
      add_block_hits(topk, Q, D, s, rank, opt);
    else
      topk.add(D, static_cast<std::int64_t>(s));
    if (opt.progress && d.docs.size() > block)
      std::cerr << "  scored " << s + m << "/" << d.docs.size() << " documents\n";
  }
  QueryMetrics sum;
  r.per_example.clear();
  for (std::size_t qi = 0; qi < qsel.size(); ++qi) {
    const auto hits = topk.result(static_cast<std::int64_t>(qi));
    std::vector<std::string> ranked;
    ranked.reserve(hits.size());
    for (const auto& h : hits) ranked.push_back(d.doc_ids[static_cast<std::size_t>(h.doc)]);
    const auto q = score_ranking(ranked, d.qrels.at(d.query_ids[qsel[qi]]));
    sum.ndcg_at_10 += q.ndcg_at_10;
    sum.mrr_at_10 += q.mrr_at_10;
    sum.map_at_100 += q.map_at_100;
    sum.recall_at_1 += q.recall_at_1;
    sum.recall_at_10 += q.recall_at_10;
    sum.recall_at_100 += q.recall_at_100;
    sum.precision_at_1 += q.precision_at_1;
    sum.precision_at_10 += q.precision_at_10;
    r.per_example.push_back(q.ndcg_at_10);
  }
  const double n = static_cast<double>(qsel.size());
  r.metrics["ndcg_at_10"] = sum.ndcg_at_10 / n;
  r.metrics["mrr_at_10"] = sum.mrr_at_10 / n;
  r.metrics["map_at_100"] = sum.map_at_100 / n;
  r.metrics["recall_at_1"] = sum.recall_at_1 / n;
  r.metrics["recall_at_10"] = sum.recall_at_10 / n;
  r.metrics["recall_at_100"] = sum.recall_at_100 / n;
  r.metrics["precision_at_1"] = sum.precision_at_1 / n;
  r.metrics["precision_at_10"] = sum.precision_at_10 / n;
  r.per_example_unit = "query: nDCG@10";
  r.notes["n_queries"] = std::to_string(qsel.size());
  r.notes["n_documents"] = std::to_string(d.docs.size());
}

inline void eval_classification(const ClassificationData& d, const std::string& ins,
                                const Embedder& e, const EvalOptions& opt, TaskResult& r) {
  const Matrix test = embed_texts(e, d.test_text, ins, opt, "test texts");
  // MTEB's undersampling: one permutation, reshuffled per experiment, first k per label.
  std::mt19937_64 rng(opt.seed);
  std::vector<std::size_t> idx(d.train_text.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::vector<double> correct(d.test_text.size(), 0.0);
  double acc = 0, f1 = 0;
  // Embeddings of sampled training texts are cached across experiments.
  std::unordered_map<std::size_t, Eigen::Index> cached;
  Matrix cache;
  for (std::int64_t x = 0; x < opt.n_experiments; ++x) {
    std::shuffle(idx.begin(), idx.end(), rng);
    std::map<std::int64_t, std::int64_t> per_label;
    std::vector<std::size_t> pick;
    for (auto i : idx)
      if (per_label[d.train_label[i]] < opt.samples_per_label) {
        ++per_label[d.train_label[i]];
        pick.push_back(i);
      }
    std::vector<std::string> fresh;
    std::vector<std::size_t> fresh_idx;
    for (auto i : pick)
      if (!cached.count(i)) fresh.push_back(d.train_text[i]), fresh_idx.push_back(i);
    if (!fresh.empty()) {
      const Matrix F = embed_texts(e, fresh, ins, opt, "training texts");
      const Eigen::Index base = cache.rows();
      Matrix grown(base + F.rows(), F.cols());
      if (base) grown.topRows(base) = cache;
      grown.bottomRows(F.rows()) = F;
      cache.swap(grown);
      for (std::size_t j = 0; j < fresh_idx.size(); ++j)
        cached[fresh_idx[j]] = base + static_cast<Eigen::Index>(j);
    }
    Matrix Xtr(static_cast<Eigen::Index>(pick.size()), cache.cols());
    std::vector<std::int64_t> ytr(pick.size());
    for (std::size_t j = 0; j < pick.size(); ++j) {
      Xtr.row(static_cast<Eigen::Index>(j)) = cache.row(cached.at(pick[j]));
      ytr[j] = d.train_label[pick[j]];
    }
    LogisticRegression clf;
    clf.fit(Xtr, ytr, opt.logreg);
    const auto pred = clf.predict(test);
    const auto s = classification_scores(d.test_label, pred);
    acc += s.accuracy;
    f1 += s.f1_macro;
    for (std::size_t i = 0; i < pred.size(); ++i) correct[i] += pred[i] == d.test_label[i];
    r.metrics["accuracy_experiment_" + std::to_string(x)] = s.accuracy;
  }
  const double ne = static_cast<double>(opt.n_experiments);
  r.metrics["accuracy"] = acc / ne;
  r.metrics["f1"] = f1 / ne;
  for (auto& c : correct) c /= ne;
  r.per_example = std::move(correct);
  r.per_example_unit =
      "test text: fraction of experiments classifying it correctly; mean = accuracy";
  r.notes["n_experiments"] = std::to_string(opt.n_experiments);
  r.notes["samples_per_label"] = std::to_string(opt.samples_per_label);
  r.notes["n_test"] = std::to_string(d.test_text.size());
  r.notes["classifier"] = "multinomial logistic regression, L2, C=" + std::to_string(opt.logreg.C);
}

inline void eval_clustering(const ClusteringData& d, const std::string& ins, const Embedder& e,
                            const EvalOptions& opt, TaskResult& r) {
  const Matrix X = embed_texts(e, d.text, ins, opt, "texts");
  std::int64_t k = 0;
  detail::compact_labels(d.label, k);
  std::mt19937_64 rng(opt.seed);
  const auto n = static_cast<std::int64_t>(d.text.size());
  const std::int64_t size = std::min(opt.cluster_size, n);
  std::uniform_int_distribution<std::int64_t> pick(0, n - 1);
  double sum = 0;
  r.per_example.clear();
  for (std::int64_t run = 0; run < opt.clustering_runs; ++run) {
    // MTEB draws each run's texts with replacement.
    Matrix S(size, X.cols());
    std::vector<std::int64_t> y(static_cast<std::size_t>(size));
    for (std::int64_t i = 0; i < size; ++i) {
      const auto j = pick(rng);
      S.row(i) = X.row(j);
      y[static_cast<std::size_t>(i)] = d.label[static_cast<std::size_t>(j)];
    }
    std::int64_t ks = 0;
    detail::compact_labels(y, ks);
    KMeansOptions ko;
    ko.n_clusters = ks;
    ko.batch_size = opt.kmeans_batch_size;
    ko.seed = opt.seed + static_cast<std::uint64_t>(run);
    const auto km = minibatch_kmeans(S, ko);
    const double v = v_measure(y, km.labels).v_measure;
    r.per_example.push_back(v);
    sum += v;
  }
  r.metrics["v_measure"] = sum / static_cast<double>(opt.clustering_runs);
  double var = 0;
  for (double v : r.per_example) var += (v - r.metrics["v_measure"]) * (v - r.metrics["v_measure"]);
  r.metrics["v_measure_std"] = std::sqrt(var / static_cast<double>(opt.clustering_runs));
  r.per_example_unit = "clustering run: V-measure";
  r.notes["runs"] = std::to_string(opt.clustering_runs);
  r.notes["cluster_size"] = std::to_string(size);
  r.notes["n_clusters"] = std::to_string(k);
  r.notes["kmeans"] =
      "mini-batch k-means, batch " + std::to_string(opt.kmeans_batch_size) + ", k-means++";
}

inline void eval_reranking(const RerankingData& d, const std::string& ins, const Embedder& e,
                           const EvalOptions& opt, TaskResult& r) {
  std::vector<std::string> queries, docs;
  for (const auto& it : d.items) {
    queries.push_back(it.query);
    docs.insert(docs.end(), it.positive.begin(), it.positive.end());
    docs.insert(docs.end(), it.negative.begin(), it.negative.end());
  }
  const Matrix Q = l2_normalized(embed_texts(e, queries, ins, opt, "queries"));
  const Matrix D = l2_normalized(embed_texts(e, docs, "", opt, "candidates"));
  double map = 0, mrr = 0;
  std::size_t off = 0, used = 0;
  r.per_example.clear();
  for (std::size_t q = 0; q < d.items.size(); ++q) {
    const auto& it = d.items[q];
    const std::size_t m = it.positive.size() + it.negative.size();
    if (it.positive.empty() || it.negative.empty()) {  // MTEB skips such samples
      off += m;
      continue;
    }
    std::vector<double> sc(m);
    std::vector<int> rel(m);
    for (std::size_t j = 0; j < m; ++j) {
      sc[j] = Q.row(static_cast<Eigen::Index>(q))
                  .cast<double>()
                  .dot(D.row(static_cast<Eigen::Index>(off + j)).cast<double>());
      rel[j] = j < it.positive.size();
    }
    off += m;
    const auto rm = rerank_metrics(sc, rel);
    map += rm.ap;
    mrr += rm.mrr_at_10;
    r.per_example.push_back(rm.ap);
    ++used;
  }
  if (used == 0) throw input_error("reranking: no query has both positive and negative candidates");
  r.metrics["map"] = map / static_cast<double>(used);
  r.metrics["mrr_at_10"] = mrr / static_cast<double>(used);
  r.per_example_unit = "query: average precision";
  r.notes["n_queries"] = std::to_string(used);
}

}  // namespace detail

/// Evaluates one task. Throws what the Embedder throws, shape_error for inconsistent
/// embeddings, input_error for degenerate data.
inline TaskResult evaluate(const Task& task, const Embedder& embed, const EvalOptions& opt = {}) {
  TaskResult r;
  r.task = task.name;
  r.category = task.category();
  r.main_metric = task.main_metric();
  r.instruction = task.instruction;
  r.notes = task.notes;
  r.notes["seed"] = std::to_string(opt.seed);
  detail::progress(opt, "[eval] " + task.name + " (" + r.category + ")");
  const auto t0 = std::chrono::steady_clock::now();
  std::visit(
      [&](const auto& d) {
        using D = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<D, StsData>)
          detail::eval_sts(d, task.instruction, embed, opt, r);
        else if constexpr (std::is_same_v<D, RetrievalData>)
          detail::eval_retrieval(d, task.instruction, embed, opt, r);
        else if constexpr (std::is_same_v<D, ClassificationData>)
          detail::eval_classification(d, task.instruction, embed, opt, r);
        else if constexpr (std::is_same_v<D, ClusteringData>)
          detail::eval_clustering(d, task.instruction, embed, opt, r);
        else if constexpr (std::is_same_v<D, PairClassificationData>)
          detail::eval_pairs(d, task.instruction, embed, opt, r);
        else
          detail::eval_reranking(d, task.instruction, embed, opt, r);
      },
      task.data);
  r.main_score = r.metrics.at(r.main_metric);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  detail::progress(opt, "[eval] " + task.name + ": " + r.main_metric + " = " +
                            std::to_string(r.main_score) + " (" + std::to_string(r.seconds) +
                            " s)");
  return r;
}

// ------------------------------------------------------------------ results JSON

/// One results record: task, category, metric, value, metrics, per_example and the record of
/// settings. The CLI adds the design and model.
inline ordered_json to_json(const TaskResult& r) {
  ordered_json v = ordered_json::object();
  v["task"] = r.task;
  v["category"] = r.category;
  v["metric"] = r.main_metric;
  v["value"] = r.main_score;
  ordered_json m = ordered_json::object();
  for (const auto& [k, x] : r.metrics) m[k] = std::isfinite(x) ? ordered_json(x) : ordered_json();
  v["metrics"] = std::move(m);
  v["instruction"] = r.instruction;
  ordered_json notes = ordered_json::object();
  for (const auto& [k, x] : r.notes) notes[k] = x;
  v["notes"] = std::move(notes);
  v["seconds"] = r.seconds;
  v["per_example_unit"] = r.per_example_unit;
  v["per_example"] = r.per_example;
  return v;
}

/// Reads a record written by to_json back (for `lmembed compare` and scripts).
inline TaskResult from_json(const ordered_json& v) {
  TaskResult r;
  r.task = json::get_string(v, "task");
  r.category = json::get_string(v, "category");
  r.main_metric = json::get_string(v, "metric");
  r.main_score = json::get_double(v, "value");
  for (const auto& [k, x] : json::get_object(v, "metrics"))
    r.metrics[k] = x.is_null() ? std::nan("") : json::as_double(x, "metrics", k);
  if (auto* p = json::find(v, "per_example"))
    for (const auto& x : json::as_array(*p, {}, "per_example"))
      r.per_example.push_back(json::as_double(x, {}, "per_example"));
  if (auto* p = json::find(v, "instruction"))
    r.instruction = json::as_string(*p, {}, "instruction");
  if (auto* p = json::find(v, "per_example_unit"))
    r.per_example_unit = json::as_string(*p, {}, "per_example_unit");
  if (auto* p = json::find(v, "notes"))
    for (const auto& [k, x] : json::as_object(*p, {}, "notes"))
      r.notes[k] = json::as_string(x, "notes", k);
  if (auto* p = json::find(v, "seconds")) r.seconds = json::as_double(*p, {}, "seconds");
  return r;
}

}  // namespace lmembed::eval
