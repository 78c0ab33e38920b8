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
#include "lmembed/core/json_util.hpp"
#include "lmembed/eval/eval.hpp"
#include "lmembed/io/npy.hpp"

namespace {

using lmembed::ordered_json;
namespace json = lmembed::json;

std::vector<double> doubles(const ordered_json& v) {
  std::vector<double> out;
  for (const auto& x : json::as_array(v)) out.push_back(json::as_double(x));
  return out;
}
std::vector<std::int64_t> ints(const ordered_json& v) {
  std::vector<std::int64_t> out;
  for (const auto& x : json::as_array(v)) out.push_back(json::as_int(x));
  return out;
}
ordered_json num(double x) {
  return std::isfinite(x) ? ordered_json(x) : ordered_json();
}

ordered_json run_case(const ordered_json& c) {
  namespace ev = lmembed::eval;
  const std::string op = json::get_string(c, "op");
  ordered_json r = ordered_json::object();
  r["op"] = op;
  if (op == "corr") {
    const auto x = doubles(json::at(c, "x")), y = doubles(json::at(c, "y"));
    r["spearman"] = num(ev::spearman(x, y));
    r["pearson"] = num(ev::pearson(x, y));
    const auto t = ev::spearman_terms(x, y);
    double m = 0;
    for (double a : t) m += a;
    r["spearman_terms_mean"] = num(m / static_cast<double>(t.size()));
  } else if (op == "wilcoxon") {
    const auto x = doubles(json::at(c, "x")), y = doubles(json::at(c, "y"));
    ev::WilcoxonOptions o;
    const std::string zm = json::get_string(c, "zero_method");
    o.zero_method = zm == "wilcox"  ? ev::ZeroMethod::wilcox
                    : zm == "pratt" ? ev::ZeroMethod::pratt
                                    : ev::ZeroMethod::zsplit;
    o.alternative = ev::parse_alternative(json::get_string(c, "alternative"));
    const std::string m = json::get_string(c, "method");
    o.method = m == "auto"    ? ev::WilcoxonMethod::automatic
               : m == "exact" ? ev::WilcoxonMethod::exact
                              : ev::WilcoxonMethod::approx;
    o.correction = json::get_bool(c, "correction");
    const auto w = ev::wilcoxon(x, y, o);
    r["statistic"] = num(w.statistic);
    r["pvalue"] = num(w.pvalue);
    r["exact"] = w.exact;
  } else if (op == "vmeasure") {
    const auto a = ints(json::at(c, "a")), b = ints(json::at(c, "b"));
    const auto v = ev::v_measure(a, b);
    r["homogeneity"] = num(v.homogeneity);
    r["completeness"] = num(v.completeness);
    r["v_measure"] = num(v.v_measure);
  } else if (op == "pairs") {
    const auto s = doubles(json::at(c, "scores"));
    std::vector<int> l;
    for (auto v : ints(json::at(c, "labels"))) l.push_back(static_cast<int>(v));
    const auto m = ev::pair_classification(s, l);
    r["ap"] = num(m.ap);
    r["accuracy"] = num(m.accuracy);
    r["f1"] = num(m.f1);
  } else if (op == "kmeans") {
    // Mean V-measure over seeds of our mini-batch k-means on the rows of an .npy file.
    const lmembed::Matrix X = lmembed::io::read_npy(json::get_string(c, "npy")).to_matrix();
    const auto y = ints(json::at(c, "labels"));
    double sum = 0;
    const auto seeds = json::get_int(c, "seeds");
    ordered_json per = ordered_json::array();
    for (std::int64_t s = 0; s < seeds; ++s) {
      ev::KMeansOptions o;
      o.n_clusters = json::get_int(c, "k");
      o.batch_size = json::get_int(c, "batch_size");
      o.seed = static_cast<std::uint64_t>(s);
      const auto km = ev::minibatch_kmeans(X, o);
      const double v = ev::v_measure(y, km.labels).v_measure;
      per.push_back(v);
      sum += v;
    }
    r["v_measure"] = sum / static_cast<double>(seeds);
    r["runs"] = std::move(per);
  } else if (op == "logreg") {
    const lmembed::Matrix Xtr = lmembed::io::read_npy(json::get_string(c, "train_npy")).to_matrix();
    const lmembed::Matrix Xte = lmembed::io::read_npy(json::get_string(c, "test_npy")).to_matrix();
    const auto ytr = ints(json::at(c, "train_labels")), yte = ints(json::at(c, "test_labels"));
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
    const ordered_json cases = json::parse(lmembed::read_text_file(argv[1]), argv[1]);
    ordered_json out = ordered_json::array();
    for (const auto& c : json::as_array(cases)) out.push_back(run_case(c));
    std::cout << json::dump(out) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "eval_ref_tool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
