// lmembed/eval/logreg.hpp - L2-regularized multinomial logistic regression on Eigen.
//
// MTEB's classification tasks fit sklearn.linear_model.LogisticRegression() (C = 1, L2,
// multinomial softmax over all classes, unpenalized intercept, lbfgs) on embeddings and report
// test accuracy and macro-F1. This minimizes the same objective
//     sum_i [logsumexp(z_i) - z_i[y_i]] + ||W||^2 / (2C),   z_i = W x_i + b,
// with L-BFGS (two-loop recursion, Armijo backtracking) in double precision. sklearn stops
// lbfgs after max_iter = 100 iterations; we iterate to a tight gradient tolerance by default,
// so scores agree with sklearn's to the extent sklearn itself converged (tests: within 0.5
// accuracy points on Banking77).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <span>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::eval {

/// LogisticRegression settings.
struct LogRegOptions {
  double C = 1.0;                ///< inverse regularization strength (sklearn's C)
  std::int64_t max_iter = 1000;  ///< L-BFGS iterations
  double tol = 1e-6;             ///< stop when max |gradient| <= tol * max(1, |f|)
  int memory = 10;               ///< L-BFGS history
};

/// A fitted multinomial logistic regression.
class LogisticRegression {
 public:
  /// Fits on rows of X with labels y (any int64 values; classes are their sorted distinct set).
  template <class Derived>
  void fit(const Eigen::MatrixBase<Derived>& X_in, std::span<const std::int64_t> y,
           const LogRegOptions& opt = {}) {
    const MatrixX<double> X = X_in.template cast<double>();
    if (X.rows() != static_cast<Eigen::Index>(y.size()) || X.rows() == 0)
      throw shape_error("LogisticRegression::fit: X is [" + std::to_string(X.rows()) + ", " +
                        std::to_string(X.cols()) + "] but y has " + std::to_string(y.size()) +
                        " labels");
    classes_.assign(y.begin(), y.end());
    std::sort(classes_.begin(), classes_.end());
    classes_.erase(std::unique(classes_.begin(), classes_.end()), classes_.end());
    if (classes_.size() < 2) throw input_error("LogisticRegression::fit: need >= 2 classes");
    std::map<std::int64_t, Eigen::Index> index;
    for (std::size_t c = 0; c < classes_.size(); ++c)
      index[classes_[c]] = static_cast<Eigen::Index>(c);
    const Eigen::Index n = X.rows(), d = X.cols(), K = static_cast<Eigen::Index>(classes_.size());
    std::vector<Eigen::Index> yi(static_cast<std::size_t>(n));
    for (Eigen::Index i = 0; i < n; ++i)
      yi[static_cast<std::size_t>(i)] = index[y[static_cast<std::size_t>(i)]];

    // Parameters packed as [W (K x d, row-major) | b (K)].
    const Eigen::Index P = K * d + K;
    Eigen::VectorXd w = Eigen::VectorXd::Zero(P), g(P);
    auto objective = [&](const Eigen::VectorXd& theta, Eigen::VectorXd& grad) {
      Eigen::Map<const MatrixX<double>> W(theta.data(), K, d);
      Eigen::Map<const Eigen::VectorXd> b(theta.data() + K * d, K);
      MatrixX<double> Z = X * W.transpose();
      Z.rowwise() += b.transpose();
      double f = 0;
      for (Eigen::Index i = 0; i < n; ++i) {
        const double m = Z.row(i).maxCoeff();
        Z.row(i).array() = (Z.row(i).array() - m).exp();
        const double s = Z.row(i).sum();
        f += std::log(s) + m - (std::log(Z(i, yi[static_cast<std::size_t>(i)])) + m);
        Z.row(i) /= s;
        Z(i, yi[static_cast<std::size_t>(i)]) -= 1.0;  // Z is now dL/dz
      }
      f += 0.5 / opt.C * W.squaredNorm();
      Eigen::Map<MatrixX<double>> gW(grad.data(), K, d);
      gW.noalias() = Z.transpose() * X;
      gW += W / opt.C;
      Eigen::Map<Eigen::VectorXd>(grad.data() + K * d, K) = Z.colwise().sum().transpose();
      return f;
    };

    double f = objective(w, g);
    std::deque<Eigen::VectorXd> S, Yd;
    std::deque<double> rho;
    iterations_ = 0;
    for (std::int64_t it = 0; it < opt.max_iter; ++it) {
      if (g.cwiseAbs().maxCoeff() <= opt.tol * std::max(1.0, std::abs(f))) break;
      // Two-loop recursion for the search direction.
      Eigen::VectorXd q = g;
      std::vector<double> alpha(S.size());
      for (std::size_t j = S.size(); j-- > 0;) {
        alpha[j] = rho[j] * S[j].dot(q);
        q -= alpha[j] * Yd[j];
      }
      double gamma = 1.0;
      if (!S.empty())
        gamma = S.back().dot(Yd.back()) / Yd.back().squaredNorm();
      else
        gamma = 1.0 / std::max(1.0, g.norm());
      q *= gamma;
      for (std::size_t j = 0; j < S.size(); ++j) {
        const double beta = rho[j] * Yd[j].dot(q);
        q += (alpha[j] - beta) * S[j];
      }
      Eigen::VectorXd dir = -q;
      double slope = g.dot(dir);
      if (slope >= 0) {  // not a descent direction: restart from steepest descent
        S.clear(), Yd.clear(), rho.clear();
        dir = -g / std::max(1.0, g.norm());
        slope = g.dot(dir);
      }
      double step = 1.0, f_new = 0;
      Eigen::VectorXd w_new(P), g_new(P);
      bool ok = false;
      for (int ls = 0; ls < 50; ++ls) {
        w_new = w + step * dir;
        f_new = objective(w_new, g_new);
        if (f_new <= f + 1e-4 * step * slope) {
          ok = true;
          break;
        }
        step *= 0.5;
      }
      ++iterations_;
      if (!ok) break;  // no decrease possible at machine precision: converged
      Eigen::VectorXd s = w_new - w, yv = g_new - g;
      const double sy = s.dot(yv);
      if (sy > 1e-12 * yv.squaredNorm()) {
        S.push_back(std::move(s));
        Yd.push_back(std::move(yv));
        rho.push_back(1.0 / sy);
        if (static_cast<int>(S.size()) > opt.memory) S.pop_front(), Yd.pop_front(), rho.pop_front();
      }
      const double f_old = f;
      w = w_new;
      g = g_new;
      f = f_new;
      if (std::abs(f_old - f) <= 1e-14 * std::max(1.0, std::abs(f))) break;
    }
    W_ = Eigen::Map<const MatrixX<double>>(w.data(), K, d);
    b_ = Eigen::Map<const Eigen::VectorXd>(w.data() + K * d, K);
    objective_ = f;
  }

  /// Predicted class (one of the training labels) of every row of X.
  template <class Derived>
  std::vector<std::int64_t> predict(const Eigen::MatrixBase<Derived>& X_in) const {
    if (W_.size() == 0) throw config_error("LogisticRegression::predict before fit");
    if (X_in.cols() != W_.cols())
      throw shape_error("LogisticRegression::predict: X has " + std::to_string(X_in.cols()) +
                        " columns, the model " + std::to_string(W_.cols()));
    MatrixX<double> Z = X_in.template cast<double>() * W_.transpose();
    Z.rowwise() += b_.transpose();
    std::vector<std::int64_t> out(static_cast<std::size_t>(Z.rows()));
    for (Eigen::Index i = 0; i < Z.rows(); ++i) {
      Eigen::Index arg = 0;
      Z.row(i).maxCoeff(&arg);
      out[static_cast<std::size_t>(i)] = classes_[static_cast<std::size_t>(arg)];
    }
    return out;
  }

  const std::vector<std::int64_t>& classes() const { return classes_; }
  /// Weights [n_classes, d] and intercepts [n_classes].
  const MatrixX<double>& coef() const { return W_; }
  const Eigen::VectorXd& intercept() const { return b_; }
  /// L-BFGS iterations run and the final objective value.
  std::int64_t iterations() const { return iterations_; }
  double objective() const { return objective_; }

 private:
  std::vector<std::int64_t> classes_;
  MatrixX<double> W_;
  Eigen::VectorXd b_;
  std::int64_t iterations_ = 0;
  double objective_ = 0;
};

/// Accuracy and macro-F1 (sklearn f1_score(average="macro"): over the union of true and
/// predicted labels; a label with no true and no predicted example does not occur).
struct ClassificationScores {
  double accuracy = 0, f1_macro = 0;
};

/// Accuracy and macro-F1 of predictions against gold labels.
inline ClassificationScores classification_scores(std::span<const std::int64_t> gold,
                                                  std::span<const std::int64_t> pred) {
  if (gold.size() != pred.size() || gold.empty())
    throw shape_error("classification_scores: " + std::to_string(gold.size()) + " gold vs " +
                      std::to_string(pred.size()) + " predicted labels");
  std::map<std::int64_t, std::array<double, 3>> t;  // tp, fp, fn
  double correct = 0;
  for (std::size_t i = 0; i < gold.size(); ++i) {
    if (gold[i] == pred[i]) {
      correct += 1;
      t[gold[i]][0] += 1;
    } else {
      t[pred[i]][1] += 1;
      t[gold[i]][2] += 1;
    }
  }
  ClassificationScores s;
  s.accuracy = correct / static_cast<double>(gold.size());
  double f1 = 0;
  for (const auto& [label, c] : t) {
    const double denom = 2 * c[0] + c[1] + c[2];
    f1 += denom > 0 ? 2 * c[0] / denom : 0.0;
  }
  s.f1_macro = f1 / static_cast<double>(t.size());
  return s;
}

}  // namespace lmembed::eval
