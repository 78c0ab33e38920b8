// Unit tests of lmembed::eval: hand-computed trec_eval cases (graded relevance, ties), metric
// and statistics identities, loaders on the bundled data and on MTEB-layout folders, the
// streaming top-k against brute force, and the runner end to end with a bag-of-words embedder.
// Reference comparisons with scipy/sklearn live in test_reference.py.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "lmembed/eval/eval.hpp"

namespace ev = lmembed::eval;
using lmembed::Matrix;

namespace {

std::filesystem::path data_dir() {
  return LMEMBED_DATA_DIR;
}

// Hashed bag of words (lower-cased alphanumeric tokens), L2-normalized: a cheap, deterministic
// embedder with real signal on the bundled tasks.
Matrix bow_embed(std::span<const std::string> texts, std::string_view instruction, int dim = 64) {
  Matrix out = Matrix::Zero(static_cast<Eigen::Index>(texts.size()), dim);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    std::string tok;
    auto flush = [&] {
      if (tok.empty()) return;
      const auto h = std::hash<std::string>{}(tok);
      out(static_cast<Eigen::Index>(i),
          static_cast<Eigen::Index>(h % static_cast<std::size_t>(dim))) +=
          (h >> 32) & 1 ? 1.0f : -1.0f;
      tok.clear();
    };
    for (char c : texts[i]) {
      if (std::isalnum(static_cast<unsigned char>(c)))
        tok += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      else
        flush();
    }
    flush();
    (void)instruction;
  }
  return ev::l2_normalized(out);
}

}  // namespace

// ------------------------------------------------------------------ retrieval (trec_eval)

TEST(Retrieval, GradedRelevanceHandComputed) {
  // qrels: d1:2, d2:1, d3:0, d4:1, d5:2 -> 4 relevant (grade >= 1); d6 unjudged.
  const std::map<std::string, int> qrels{{"d1", 2}, {"d2", 1}, {"d3", 0}, {"d4", 1}, {"d5", 2}};
  const std::vector<std::string> ranked{"d3", "d1", "d2", "d6", "d5"};
  const auto q = ev::score_ranking(ranked, qrels);
  const double dcg = 2 / std::log2(3.0) + 1 / std::log2(4.0) + 2 / std::log2(6.0);
  const double idcg =
      2 / std::log2(2.0) + 2 / std::log2(3.0) + 1 / std::log2(4.0) + 1 / std::log2(5.0);
  EXPECT_NEAR(q.ndcg_at_10, dcg / idcg, 1e-15);
  EXPECT_NEAR(q.ndcg_at_10, 0.6047808, 1e-7);  // by hand: 2.5355651 / 4.1925361
  EXPECT_DOUBLE_EQ(q.mrr_at_10, 0.5);
  EXPECT_NEAR(q.map_at_100, (1.0 / 2 + 2.0 / 3 + 3.0 / 5) / 4, 1e-15);
  EXPECT_DOUBLE_EQ(q.recall_at_1, 0.0);
  EXPECT_DOUBLE_EQ(q.recall_at_10, 0.75);
  EXPECT_DOUBLE_EQ(q.recall_at_100, 0.75);
  EXPECT_DOUBLE_EQ(q.precision_at_10, 0.3);  // trec_eval P_10 divides by 10
  // No relevant document: every measure is 0.
  const auto z = ev::score_ranking(ranked, {{"d3", 0}});
  EXPECT_EQ(z.ndcg_at_10, 0.0);
  EXPECT_EQ(z.map_at_100, 0.0);
}

TEST(Retrieval, TiesFollowTrecEvalDocnoOrderThroughTheRunner) {
  // Three documents embed identically, so their scores tie; trec_eval ranks ties by document
  // id descending: c (grade 2), b (0), a (1). Ascending order would give nDCG 0.760.
  ev::RetrievalData d;
  d.query_ids = {"q1"};
  d.queries = {"query"};
  d.doc_ids = {"a", "b", "c", "z"};
  d.docs = {"same", "same", "same", "other"};
  d.qrels["q1"] = {{"a", 1}, {"b", 0}, {"c", 2}};
  ev::Task t;
  t.name = "ties";
  t.data = d;
  ev::Embedder e = [](std::span<const std::string> texts, std::string_view) {
    Matrix m(static_cast<Eigen::Index>(texts.size()), 2);
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const bool other = texts[i] == "other";
      m(static_cast<Eigen::Index>(i), 0) = other ? 0.0f : 1.0f;
      m(static_cast<Eigen::Index>(i), 1) = other ? 1.0f : 0.0f;
    }
    return m;
  };
  ev::EvalOptions o;
  o.progress = false;
  o.corpus_block = 2;  // ties straddle corpus blocks
  const auto r = ev::evaluate(t, e, o);
  const double expect = (2.0 + 1.0 / std::log2(4.0)) / (2.0 + 1.0 / std::log2(3.0));
  EXPECT_NEAR(r.main_score, expect, 1e-12);
  EXPECT_NEAR(r.main_score, 0.9502344, 1e-7);  // 2.5 / 2.6309298
  EXPECT_DOUBLE_EQ(r.metrics.at("mrr_at_10"), 1.0);
  EXPECT_DOUBLE_EQ(r.metrics.at("map_at_100"), (1.0 + 2.0 / 3.0) / 2.0);
  ASSERT_EQ(r.per_example.size(), 1u);
}

TEST(Retrieval, StreamingTopKMatchesBruteForce) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  Matrix Q(37, 16), D(1001, 16);
  for (Eigen::Index i = 0; i < Q.size(); ++i) Q.data()[i] = g(rng);
  for (Eigen::Index i = 0; i < D.size(); ++i) D.data()[i] = g(rng);
  const auto hits = ev::search_topk(Q, D, 10, 128);
  const Matrix S = Q * D.transpose();
  for (Eigen::Index q = 0; q < Q.rows(); ++q) {
    std::vector<std::pair<float, std::int64_t>> all;
    for (Eigen::Index j = 0; j < D.rows(); ++j) all.emplace_back(-S(q, j), j);
    std::sort(all.begin(), all.end());
    ASSERT_EQ(hits[static_cast<std::size_t>(q)].size(), 10u);
    for (int r = 0; r < 10; ++r) {
      EXPECT_EQ(hits[static_cast<std::size_t>(q)][static_cast<std::size_t>(r)].doc,
                all[static_cast<std::size_t>(r)].second);
    }
  }
  EXPECT_THROW(ev::TopK(Q, 0), lmembed::config_error);
  ev::TopK t(Q, 3);
  EXPECT_THROW(t.add(Matrix(4, 3), 0), lmembed::shape_error);
}

// ------------------------------------------------------------------ other metrics

TEST(Metrics, PairClassificationHandComputed) {
  const std::vector<double> s{0.9, 0.8, 0.7, 0.6};
  const std::vector<int> l{1, 0, 1, 0};
  const auto m = ev::pair_classification(s, l);
  EXPECT_NEAR(m.ap, (1.0 + 2.0 / 3.0) / 2.0, 1e-15);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.75);
  EXPECT_NEAR(m.accuracy_threshold, 0.85, 1e-15);
  EXPECT_NEAR(m.f1, 0.8, 1e-15);
  EXPECT_NEAR(m.f1_threshold, 0.65, 1e-15);
  // Ties: one threshold for equal scores (sklearn): scores {1,1} with labels {1,0} -> AP 0.5.
  EXPECT_DOUBLE_EQ(ev::average_precision(std::vector<double>{1, 1, 0}, std::vector<int>{1, 0, 0}),
                   0.5);
  const auto pe = ev::precision_at_positives(s, l);
  ASSERT_EQ(pe.size(), 2u);
  EXPECT_NEAR((pe[0] + pe[1]) / 2, m.ap, 1e-15);
}

TEST(Metrics, VMeasureHandCases) {
  const std::vector<std::int64_t> t{0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(ev::v_measure(t, std::vector<std::int64_t>{5, 5, 9, 9}).v_measure, 1.0);
  const auto one = ev::v_measure(t, std::vector<std::int64_t>{0, 0, 0, 0});
  EXPECT_DOUBLE_EQ(one.homogeneity, 0.0);
  EXPECT_DOUBLE_EQ(one.completeness, 1.0);
  EXPECT_DOUBLE_EQ(one.v_measure, 0.0);
  // labels {0,0,1,1} vs {0,1,1,1}: H(C)=ln2, H(K)=H(1/4,3/4), MI = H(C) - H(C|K).
  const auto v = ev::v_measure(t, std::vector<std::int64_t>{0, 1, 1, 1});
  const double hc = std::log(2.0);
  const double hk = -(0.25 * std::log(0.25) + 0.75 * std::log(0.75));
  const double hck = 0.75 * -((1.0 / 3) * std::log(1.0 / 3) + (2.0 / 3) * std::log(2.0 / 3));
  EXPECT_NEAR(v.homogeneity, (hc - hck) / hc, 1e-14);
  EXPECT_NEAR(v.completeness, (hc - hck) / hk, 1e-14);
}

TEST(Metrics, RerankAndClassificationScores) {
  const auto m = ev::rerank_metrics(std::vector<double>{0.1, 0.9, 0.5}, std::vector<int>{1, 0, 0});
  EXPECT_DOUBLE_EQ(m.mrr_at_10, 1.0 / 3);
  EXPECT_DOUBLE_EQ(m.ap, 1.0 / 3);
  const auto s = ev::classification_scores(std::vector<std::int64_t>{0, 0, 1, 2},
                                           std::vector<std::int64_t>{0, 1, 1, 1});
  EXPECT_DOUBLE_EQ(s.accuracy, 0.5);
  // f1: class0 2/3, class1 2*1/(2+2+0)=0.5, class2 0 -> mean 7/18.
  EXPECT_NEAR(s.f1_macro, (2.0 / 3 + 0.5 + 0.0) / 3, 1e-15);
}

TEST(LogisticRegression, SeparableAndErrors) {
  Matrix X(6, 2);
  X << 1, 0, 0.9, 0.1, 0, 1, 0.1, 0.9, -1, 0, -0.9, -0.1;
  const std::vector<std::int64_t> y{3, 3, 7, 7, 9, 9};
  ev::LogisticRegression clf;
  clf.fit(X, y);
  EXPECT_EQ(clf.predict(X), y);
  // Optimality: the gradient of the objective vanishes at the solution (checked via the
  // intercept gradient sum: at the optimum sum_i (p_ic - y_ic) = 0 for every class c).
  EXPECT_GT(clf.iterations(), 0);
  EXPECT_THROW(clf.fit(X, std::vector<std::int64_t>{1, 1, 1, 1, 1, 1}), lmembed::input_error);
  EXPECT_THROW(clf.predict(Matrix(2, 3)), lmembed::shape_error);
}

// ------------------------------------------------------------------ statistics

TEST(Stats, HolmHandComputed) {
  const auto a = ev::holm(std::vector<double>{0.01, 0.04, 0.03, 0.005});
  EXPECT_DOUBLE_EQ(a[0], 0.03);
  EXPECT_DOUBLE_EQ(a[1], 0.06);
  EXPECT_DOUBLE_EQ(a[2], 0.06);
  EXPECT_DOUBLE_EQ(a[3], 0.02);
}

TEST(Stats, WilcoxonExactSmallCases) {
  const std::vector<double> x{1, 2, 3, 4, 5}, y{0, 0, 0, 0, 0};
  const auto w = ev::wilcoxon(x, y);
  EXPECT_TRUE(w.exact);
  EXPECT_DOUBLE_EQ(w.statistic, 0.0);
  EXPECT_DOUBLE_EQ(w.pvalue, 2.0 / 32);  // all 5 positive: P(R+=15) = 1/32, two-sided
  ev::WilcoxonOptions g;
  g.alternative = ev::Alternative::greater;
  EXPECT_DOUBLE_EQ(ev::wilcoxon(x, y, g).pvalue, 1.0 / 32);
  EXPECT_DOUBLE_EQ(ev::wilcoxon_min_pvalue(5), 2.0 / 32);
  EXPECT_THROW(ev::wilcoxon(x, std::vector<double>{1, 2}), lmembed::shape_error);
  EXPECT_THROW(ev::wilcoxon(x, x), lmembed::input_error);  // all differences zero
}

TEST(Stats, BootstrapDeterministicAndSane) {
  std::vector<double> a(200), b(200);
  std::mt19937 rng(3);
  std::normal_distribution<double> g;
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = g(rng) + 0.5, b[i] = g(rng);
  const auto r1 = ev::paired_bootstrap(a, b, 2000, 0.95, 11);
  const auto r2 = ev::paired_bootstrap(a, b, 2000, 0.95, 11);
  EXPECT_EQ(r1.ci_low, r2.ci_low);
  EXPECT_LT(r1.ci_low, r1.mean_diff);
  EXPECT_GT(r1.ci_high, r1.mean_diff);
  EXPECT_GT(r1.ci_low, 0.0);  // a true difference of 0.5 with n = 200 and sd sqrt(2)
  // Standard error of the mean difference ~ sqrt(2/200) = 0.1: the 95% width is ~0.39.
  EXPECT_NEAR(r1.ci_high - r1.ci_low, 0.39, 0.08);
  const std::vector<double> c(10, 2.0), z(10, 1.0);
  const auto k = ev::paired_bootstrap(c, z, 100);
  EXPECT_DOUBLE_EQ(k.ci_low, 1.0);
  EXPECT_DOUBLE_EQ(k.ci_high, 1.0);
}

// ------------------------------------------------------------------ loaders

TEST(Loaders, BundledTasks) {
  const auto sts = ev::load_bundled_task("sts-b", data_dir());
  const auto& s = std::get<ev::StsData>(sts.data);
  EXPECT_EQ(s.score.size(), 1500u);  // rows with extra source columns included
  EXPECT_EQ(s.sentence1[0], "A man with a hard hat is dancing.");
  EXPECT_DOUBLE_EQ(s.score[0], 5.0);
  const auto b = ev::load_bundled_task("banking77", data_dir());
  const auto& c = std::get<ev::ClassificationData>(b.data);
  EXPECT_EQ(c.train_text.size(), 10003u);
  EXPECT_EQ(c.test_text.size(), 3080u);
  EXPECT_EQ(c.label_names.size(), 77u);
  EXPECT_EQ(c.train_text[1], "What can I do if my card still hasn't arrived after 2 weeks?");
  // A quoted CSV field keeps its comma.
  EXPECT_NE(std::find(c.train_text.begin(), c.train_text.end(),
                      "How do I know if I will get my card, or if it is lost?"),
            c.train_text.end());
  const auto p = ev::load_bundled_task("snli-pairs", data_dir());
  EXPECT_EQ(std::get<ev::PairClassificationData>(p.data).label.size(), 3329u + 3278u);
  const auto r = ev::load_bundled_task("snli-retrieval", data_dir());
  const auto& rd = std::get<ev::RetrievalData>(r.data);
  EXPECT_EQ(rd.qrels.size(), rd.queries.size());
  EXPECT_GT(rd.docs.size(), 9000u);
  EXPECT_EQ(rd.docs[0].back(), '.');  // trailing blank of the e-SNLI lines trimmed
  ev::BundledOptions small;
  small.max_examples = 100;
  const auto sub = ev::load_bundled_task("sts-b", data_dir(), small);
  EXPECT_EQ(std::get<ev::StsData>(sub.data).score.size(), 100u);
  EXPECT_EQ(sub.notes.at("subsample"), "100 of 1500 pairs (seeded, seed 42)");
  EXPECT_THROW(ev::load_bundled_task("nope", data_dir()), lmembed::config_error);
}

TEST(Loaders, RetrievalCorpusCapKeepsEveryRelevantDocument) {
  ev::BundledOptions whole;
  whole.max_examples = 50;
  const auto full = ev::load_bundled_task("snli-retrieval", data_dir(), whole);
  ev::BundledOptions capped = whole;
  capped.max_corpus = 600;
  const auto cut = ev::load_bundled_task("snli-retrieval", data_dir(), capped);
  const auto& f = std::get<ev::RetrievalData>(full.data);
  const auto& c = std::get<ev::RetrievalData>(cut.data);
  EXPECT_EQ(c.queries, f.queries);
  EXPECT_EQ(c.qrels, f.qrels);
  ASSERT_EQ(c.docs.size(), 600u);
  ASSERT_EQ(c.doc_ids.size(), 600u);
  // Every relevant document is there, every kept document is one of the corpus (with its id),
  // and the corpus order is kept.
  std::map<std::string, std::string> by_id;
  for (std::size_t i = 0; i < f.docs.size(); ++i) by_id[f.doc_ids[i]] = f.docs[i];
  std::set<std::string> kept(c.doc_ids.begin(), c.doc_ids.end());
  EXPECT_EQ(kept.size(), 600u);
  for (const auto& [q, rel] : c.qrels)
    for (const auto& [doc, grade] : rel) EXPECT_TRUE(kept.count(doc)) << q << " -> " << doc;
  for (std::size_t i = 0; i < c.docs.size(); ++i) EXPECT_EQ(by_id.at(c.doc_ids[i]), c.docs[i]);
  for (std::size_t i = 1; i < c.doc_ids.size(); ++i)
    EXPECT_LT(std::stoi(c.doc_ids[i - 1].substr(1)), std::stoi(c.doc_ids[i].substr(1)));
  EXPECT_NE(cut.notes.at("corpus").find("600 of " + std::to_string(f.docs.size())),
            std::string::npos);
  EXPECT_EQ(full.notes.count("corpus"), 0u);
  // Seeded: the same call gives the same corpus; a budget below the relevant set keeps them all.
  EXPECT_EQ(
      std::get<ev::RetrievalData>(ev::load_bundled_task("snli-retrieval", data_dir(), capped).data)
          .doc_ids,
      c.doc_ids);
  capped.max_corpus = 1;
  const auto tiny = ev::load_bundled_task("snli-retrieval", data_dir(), capped);
  std::set<std::string> rel_docs;
  for (const auto& [q, rel] : f.qrels)
    for (const auto& [doc, grade] : rel) rel_docs.insert(doc);
  EXPECT_EQ(std::get<ev::RetrievalData>(tiny.data).docs.size(), rel_docs.size());
}

TEST(Loaders, CsvQuotingAndErrors) {
  const auto rows =
      ev::detail::parse_csv("a,b\n\"x, \"\"y\"\"\",z\r\nq,\"multi\nline\"\n", "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1][0], "x, \"y\"");
  EXPECT_EQ(rows[2][1], "multi\nline");
  try {
    ev::detail::parse_csv("a,\"open\n", "t.csv");
    FAIL();
  } catch (const lmembed::format_error& e) {
    EXPECT_EQ(e.offset(), 2u);
  }
}

TEST(Loaders, MtebLayoutFolders) {
  namespace fs = std::filesystem;
  const fs::path root =
      fs::temp_directory_path() / ("lmembed_eval_dirs_" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto write = [](const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << s;
  };
  write(root / "sts" / "test.tsv", "sentence1\tsentence2\tscore\na b\tc d\t1.5\ne\tf\t4\n");
  write(root / "stsj" / "test.jsonl", "{\"sentence1\":\"a\",\"sentence2\":\"b\",\"score\":2}\n");
  write(root / "ret" / "queries.jsonl", "{\"_id\":\"q1\",\"text\":\"hello\"}\n");
  write(root / "ret" / "corpus.jsonl",
        "{\"_id\":\"d1\",\"title\":\"T\",\"text\":\"body\"}\n{\"_id\":\"d2\",\"text\":\"x\"}\n");
  write(root / "ret" / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\n");
  write(root / "cls" / "train.jsonl",
        "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"y\"}\n");
  write(root / "cls" / "test.jsonl", "{\"text\":\"c\",\"label\":\"y\"}\n");
  write(root / "clu" / "test.jsonl", "{\"text\":\"a\",\"label\":3}\n");
  write(root / "pair" / "test.jsonl", "{\"sentence1\":\"a\",\"sentence2\":\"b\",\"label\":1}\n");
  write(root / "rr" / "test.jsonl",
        "{\"query\":\"q\",\"positive\":[\"p\"],\"negative\":[\"n\",\"m\"]}\n");
  write(root / "named" / "task.json",
        "{\"name\":\"mine\",\"category\":\"clustering\",\"instruction\":\"Do it\"}");
  write(root / "named" / "test.jsonl", "{\"text\":\"a\",\"label\":\"l\"}\n");
  write(root / "bad" / "test.jsonl", "{\"text\":\"a\",\"label\":\"l\"}\n{\"text\": oops}\n");

  auto sts = ev::load_task_dir(root / "sts");
  EXPECT_EQ(sts.category(), "sts");
  EXPECT_EQ(std::get<ev::StsData>(sts.data).score, (std::vector<double>{1.5, 4}));
  EXPECT_EQ(ev::load_task_dir(root / "stsj").category(), "sts");
  auto ret = ev::load_task_dir(root / "ret");
  const auto& rd = std::get<ev::RetrievalData>(ret.data);
  EXPECT_EQ(rd.docs[0], "T body");
  EXPECT_EQ(rd.docs[1], "x");
  EXPECT_EQ(rd.qrels.at("q1").at("d1"), 2);
  EXPECT_EQ(ev::load_task_dir(root / "cls").category(), "classification");
  EXPECT_EQ(ev::load_task_dir(root / "clu").category(), "clustering");
  EXPECT_EQ(ev::load_task_dir(root / "pair").category(), "pair_classification");
  auto rr = ev::load_task_dir(root / "rr");
  EXPECT_EQ(std::get<ev::RerankingData>(rr.data).items[0].negative.size(), 2u);
  auto named = ev::load_task_dir(root / "named");
  EXPECT_EQ(named.name, "mine");
  EXPECT_EQ(named.instruction, "Do it");
  EXPECT_THROW(ev::load_task_dir(root / "bad"), lmembed::format_error);
  EXPECT_THROW(ev::load_task_dir(root / "missing"), lmembed::io_error);
  fs::remove_all(root);
}

// ------------------------------------------------------------------ runner end to end

TEST(Runner, BundledTasksWithBagOfWords) {
  ev::EvalOptions o;
  o.progress = false;
  o.n_experiments = 3;
  o.clustering_runs = 2;
  o.cluster_size = 1024;
  ev::BundledOptions b;
  b.max_examples = 600;
  ev::Embedder e = [](std::span<const std::string> t, std::string_view i) {
    return bow_embed(t, i);
  };
  std::map<std::string, double> score;
  for (const auto& name : ev::bundled_task_names()) {
    const auto task = ev::load_bundled_task(name, data_dir(), b);
    const auto r = ev::evaluate(task, e, o);
    EXPECT_FALSE(r.per_example.empty()) << name;
    EXPECT_TRUE(std::isfinite(r.main_score)) << name;
    score[name] = r.main_score;
    // Records survive the JSON round trip.
    const auto back = ev::from_json(lmembed::json::parse(lmembed::json::dump(ev::to_json(r))));
    EXPECT_EQ(back.task, r.task);
    EXPECT_DOUBLE_EQ(back.main_score, r.main_score);
    EXPECT_EQ(back.per_example.size(), r.per_example.size());
  }
  // Word overlap carries real signal on every task (chance levels: 0, 1/77, ~0, 0.5, ~0).
  EXPECT_GT(score["sts-b"], 0.3);
  EXPECT_GT(score["banking77"], 0.15);
  EXPECT_GT(score["banking77-clustering"], 0.2);
  EXPECT_GT(score["snli-pairs"], 0.55);
  EXPECT_GT(score["snli-retrieval"], 0.1);
}

TEST(Runner, EmbedderErrorsAreReported) {
  const auto task = ev::load_bundled_task("sts-b", data_dir(), {10, 1});
  ev::EvalOptions o;
  o.progress = false;
  ev::Embedder wrong_rows = [](std::span<const std::string> t, std::string_view) {
    return Matrix(static_cast<Eigen::Index>(t.size() + 1), 4);
  };
  EXPECT_THROW(ev::evaluate(task, wrong_rows, o), lmembed::shape_error);
  ev::Embedder nan = [](std::span<const std::string> t, std::string_view) {
    return Matrix::Constant(static_cast<Eigen::Index>(t.size()), 4, std::nanf(""));
  };
  EXPECT_THROW(ev::evaluate(task, nan, o), lmembed::input_error);
  // Precomputed embeddings: every requested text is found, an unknown one is named.
  const auto keys = ev::requested_texts(task);
  Matrix E(static_cast<Eigen::Index>(keys.size()), 3);
  E.setRandom();
  ev::LookupEmbedder lookup(keys, E);
  EXPECT_NO_THROW(ev::evaluate(task, lookup, o));
  EXPECT_THROW(lookup(std::vector<std::string>{"never seen"}, ""), lmembed::input_error);
  EXPECT_THROW(ev::LookupEmbedder(keys, Matrix(1, 3)), lmembed::shape_error);
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(ev::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ev::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two blocks (56 bytes: padding spills into a second block).
  EXPECT_EQ(ev::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // The bundled model's published sha256 (data/PROVENANCE.md).
  EXPECT_EQ(ev::sha256_file(data_dir() / "models" / "stories260K.gguf"),
            "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
  EXPECT_THROW(ev::sha256_file(data_dir() / "no-such-file"), lmembed::io_error);
}

TEST(Runner, RerankingHandComputed) {
  // q: candidates n1 (most similar, irrelevant), p1 (relevant), n2 -> AP 1/2, RR 1/2.
  // r: candidates a (relevant, most similar), b -> AP 1, RR 1. A query without negatives is
  // skipped (MTEB). MAP = MRR@10 = 0.75.
  ev::RerankingData d;
  d.items = {{"q", {"p1"}, {"n1", "n2"}}, {"r", {"a"}, {"b"}}, {"s", {"x"}, {}}};
  ev::Task t;
  t.name = "rerank";
  t.instruction = "Rank";
  t.data = d;
  const std::map<std::string, std::pair<float, float>> vec{
      {"q", {1, 0}},    {"p1", {1, 1}}, {"n1", {1, 0.1f}}, {"n2", {0, 1}}, {"r", {0, 1}},
      {"a", {0.1f, 1}}, {"b", {1, 0}},  {"s", {1, 1}},     {"x", {1, 1}}};
  std::vector<std::string> seen_ins;
  ev::Embedder e = [&](std::span<const std::string> texts, std::string_view ins) {
    seen_ins.emplace_back(ins);
    Matrix m(static_cast<Eigen::Index>(texts.size()), 2);
    for (std::size_t i = 0; i < texts.size(); ++i) {
      m(static_cast<Eigen::Index>(i), 0) = vec.at(texts[i]).first;
      m(static_cast<Eigen::Index>(i), 1) = vec.at(texts[i]).second;
    }
    return m;
  };
  ev::EvalOptions o;
  o.progress = false;
  const auto r = ev::evaluate(t, e, o);
  EXPECT_EQ(r.category, "reranking");
  EXPECT_DOUBLE_EQ(r.main_score, 0.75);
  EXPECT_DOUBLE_EQ(r.metrics.at("mrr_at_10"), 0.75);
  EXPECT_EQ(r.per_example, (std::vector<double>{0.5, 1.0}));
  // Queries get the instruction, candidates none.
  EXPECT_EQ(seen_ins, (std::vector<std::string>{"Rank", ""}));
  EXPECT_EQ(ev::format_instruction("Rank"), "Instruct: Rank\nQuery: ");
  EXPECT_EQ(ev::format_instruction(""), "");
}
