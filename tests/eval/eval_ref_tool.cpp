// eval_ref_tool: runs lmembed::eval functions on cases described in a JSON file and prints the
// results as JSON, so that tests/eval/test_reference.py can compare them with scipy/sklearn
// computed on the same inputs inside the test.
//
//   eval_ref_tool cases.json > results.json
// cases.json: [{"op": "...", ...}, ...]; each result is {"op": ..., <outputs>}.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "lmembed/core/file.hpp"
#include "lmembed/core/json.hpp"
#include "lmembed/eval/eval.hpp"
#include "lmembed/io/npy.hpp"

namespace {

using lmembed::json::Value;

std::vector<double> doubles(const Value& v) {
  std::vector<double> out;
  for (const auto& x : v.as_array()) out.push_back(x.as_double());
  return out;
}
std::vector<std::int64_t> ints(const Value& v) {
  std::vector<std::int64_t> out;
  for (const auto& x : v.as_array()) out.push_back(x.as_int());
  return out;
}
Value num(double x) {
  return std::isfinite(x) ? Value(x) : Value();
}

Value run_case(const Value& c) {
  namespace ev = lmembed::eval;
  const std::string op = c.at("op").as_string();
  Value r = Value::object();
  r["op"] = op;
  if (op == "corr") {
    const auto x = doubles(c.at("x")), y = doubles(c.at("y"));
    r["spearman"] = num(ev::spearman(x, y));
    r["pearson"] = num(ev::pearson(x, y));
    const auto t = ev::spearman_terms(x, y);
    double m = 0;
    for (double a : t) m += a;
    r["spearman_terms_mean"] = num(m / static_cast<double>(t.size()));
  } else if (op == "wilcoxon") {
    const auto x = doubles(c.at("x")), y = doubles(c.at("y"));
    ev::WilcoxonOptions o;
    const std::string zm = c.at("zero_method").as_string();
    o.zero_method = zm == "wilcox"  ? ev::ZeroMethod::wilcox
                    : zm == "pratt" ? ev::ZeroMethod::pratt
                                    : ev::ZeroMethod::zsplit;
    o.alternative = ev::parse_alternative(c.at("alternative").as_string());
    const std::string m = c.at("method").as_string();
    o.method = m == "auto"    ? ev::WilcoxonMethod::automatic
               : m == "exact" ? ev::WilcoxonMethod::exact
                              : ev::WilcoxonMethod::approx;
    o.correction = c.at("correction").as_bool();
    const auto w = ev::wilcoxon(x, y, o);
    r["statistic"] = num(w.statistic);
    r["pvalue"] = num(w.pvalue);
    r["exact"] = w.exact;
  } else if (op == "vmeasure") {
    const auto a = ints(c.at("a")), b = ints(c.at("b"));
    const auto v = ev::v_measure(a, b);
    r["homogeneity"] = num(v.homogeneity);
    r["completeness"] = num(v.completeness);
    r["v_measure"] = num(v.v_measure);
  } else if (op == "pairs") {
    const auto s = doubles(c.at("scores"));
    std::vector<int> l;
    for (auto v : ints(c.at("labels"))) l.push_back(static_cast<int>(v));
    const auto m = ev::pair_classification(s, l);
    r["ap"] = num(m.ap);
    r["accuracy"] = num(m.accuracy);
    r["f1"] = num(m.f1);
  } else if (op == "kmeans") {
    // Mean V-measure over seeds of our mini-batch k-means on the rows of an .npy file.
    const lmembed::Matrix X = lmembed::io::read_npy(c.at("npy").as_string()).to_matrix();
    const auto y = ints(c.at("labels"));
    double sum = 0;
    const auto seeds = c.at("seeds").as_int();
    Value per = Value::array();
    for (std::int64_t s = 0; s < seeds; ++s) {
      ev::KMeansOptions o;
      o.n_clusters = c.at("k").as_int();
      o.batch_size = c.at("batch_size").as_int();
      o.seed = static_cast<std::uint64_t>(s);
      const auto km = ev::minibatch_kmeans(X, o);
      const double v = ev::v_measure(y, km.labels).v_measure;
      per.push_back(v);
      sum += v;
    }
    r["v_measure"] = sum / static_cast<double>(seeds);
    r["runs"] = std::move(per);
  } else if (op == "logreg") {
    const lmembed::Matrix Xtr = lmembed::io::read_npy(c.at("train_npy").as_string()).to_matrix();
    const lmembed::Matrix Xte = lmembed::io::read_npy(c.at("test_npy").as_string()).to_matrix();
    const auto ytr = ints(c.at("train_labels")), yte = ints(c.at("test_labels"));
    ev::LogisticRegression clf;
    clf.fit(Xtr, ytr);
    const auto pred = clf.predict(Xte);
    const auto s = ev::classification_scores(yte, pred);
    r["accuracy"] = s.accuracy;
    r["f1"] = s.f1_macro;
    r["objective"] = clf.objective();
    r["iterations"] = clf.iterations();
  } else {
    throw lmembed::config_error("unknown op '" + op + "'");
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: eval_ref_tool cases.json\n";
    return 2;
  }
  try {
    const Value cases = lmembed::json::parse(lmembed::read_text_file(argv[1]), argv[1]);
    Value out = Value::array();
    for (const auto& c : cases.as_array()) out.push_back(run_case(c));
    std::cout << lmembed::json::dump(out) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "eval_ref_tool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
