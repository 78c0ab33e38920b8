// lmembed/eval/kmeans.hpp - mini-batch k-means as MTEB's clustering tasks run it.
//
// MTEB clusters with sklearn.cluster.MiniBatchKMeans(n_clusters = #labels, batch_size = 512,
// n_init = "auto") and scores the assignment with V-measure. This is the same algorithm
// (sklearn 1.2): greedy k-means++ seeding on a random init subset of 3 * batch_size points,
// per-center learning rates (each center is the running mean of the points assigned to it),
// reassignment of starved centers, early stopping on the exponentially weighted batch inertia,
// then a final nearest-center assignment of every point. The random streams differ from
// numpy's, so single runs differ from sklearn's; averages over seeds agree (tests check).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::eval {

/// MiniBatchKMeans settings (sklearn's defaults where MTEB does not override them).
struct KMeansOptions {
  std::int64_t n_clusters = 8;
  std::int64_t batch_size = 512;  ///< MTEB's k_mean_batch_size
  std::int64_t max_iter = 100;    ///< epochs; steps = max_iter * n / batch_size
  std::int64_t max_no_improvement = 10;
  double reassignment_ratio = 0.01;
  std::uint64_t seed = 0;
};

/// Result of minibatch_kmeans().
struct KMeansResult {
  std::vector<std::int64_t> labels;  ///< cluster of every row
  MatrixX<double> centers;           ///< [n_clusters, d]
  double inertia = 0;                ///< sum of squared distances to the assigned centers
  std::int64_t steps = 0;            ///< mini-batch steps run
};

namespace detail {
/// Nearest center of every row of X (squared Euclidean), accumulating inertia.
inline void assign_nearest(const MatrixX<double>& X, const MatrixX<double>& C,
                           std::vector<std::int64_t>& labels, double& inertia) {
  const Eigen::VectorXd xn = X.rowwise().squaredNorm();
  const Eigen::VectorXd cn = C.rowwise().squaredNorm();
  const MatrixX<double> dot = X * C.transpose();
  labels.resize(static_cast<std::size_t>(X.rows()));
  inertia = 0;
  for (Eigen::Index i = 0; i < X.rows(); ++i) {
    double best = std::numeric_limits<double>::infinity();
    std::int64_t arg = 0;
    for (Eigen::Index c = 0; c < C.rows(); ++c) {
      const double d = cn(c) - 2 * dot(i, c);
      if (d < best) best = d, arg = c;
    }
    labels[static_cast<std::size_t>(i)] = arg;
    inertia += std::max(0.0, best + xn(i));
  }
}

/// Greedy k-means++ (sklearn's _kmeans_plusplus: 2 + floor(ln k) local trials per center).
inline MatrixX<double> kmeans_plusplus(const MatrixX<double>& X, std::int64_t k,
                                       std::mt19937_64& rng) {
  const Eigen::Index n = X.rows();
  MatrixX<double> C(k, X.cols());
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  std::uniform_int_distribution<Eigen::Index> first(0, n - 1);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  C.row(0) = X.row(first(rng));
  Eigen::VectorXd closest = (X.rowwise() - C.row(0)).rowwise().squaredNorm();
  double pot = closest.sum();
  std::vector<double> cum(static_cast<std::size_t>(n));
  for (std::int64_t c = 1; c < k; ++c) {
    std::partial_sum(closest.data(), closest.data() + n, cum.begin());
    double best_pot = std::numeric_limits<double>::infinity();
    Eigen::Index best_id = 0;
    Eigen::VectorXd best_dist;
    for (int t = 0; t < trials; ++t) {
      const double r = unif(rng) * pot;
      auto it = std::upper_bound(cum.begin(), cum.end(), r);
      Eigen::Index id = std::min<Eigen::Index>(it - cum.begin(), n - 1);
      Eigen::VectorXd dist = (X.rowwise() - X.row(id)).rowwise().squaredNorm();
      dist = dist.cwiseMin(closest);
      const double p = dist.sum();
      if (p < best_pot) best_pot = p, best_id = id, best_dist = std::move(dist);
    }
    C.row(c) = X.row(best_id);
    closest = std::move(best_dist);
    pot = best_pot;
  }
  return C;
}
}  // namespace detail

/// Clusters the rows of X (any scalar; computed in double) into opt.n_clusters clusters.
template <class Derived>
KMeansResult minibatch_kmeans(const Eigen::MatrixBase<Derived>& X_in, const KMeansOptions& opt) {
  const MatrixX<double> X = X_in.template cast<double>();
  const std::int64_t n = X.rows(), k = opt.n_clusters;
  if (k < 1 || n < k)
    throw input_error("minibatch_kmeans: need 1 <= n_clusters <= n_samples, got " +
                      std::to_string(k) + " clusters for " + std::to_string(n) + " samples");
  std::mt19937_64 rng(opt.seed);
  const std::int64_t batch = std::min(opt.batch_size, n);
  std::int64_t init_size = 3 * batch;
  if (init_size < k) init_size = 3 * k;
  init_size = std::min(init_size, n);
  std::uniform_int_distribution<std::int64_t> pick(0, n - 1);

  // Seeding on a random subset (sklearn: n_init="auto" is a single k-means++ init).
  MatrixX<double> init(init_size, X.cols());
  for (std::int64_t i = 0; i < init_size; ++i) init.row(i) = X.row(pick(rng));
  MatrixX<double> C = detail::kmeans_plusplus(init, k, rng);
  std::vector<double> counts(static_cast<std::size_t>(k), 0.0);

  const std::int64_t n_steps = std::max<std::int64_t>(1, (opt.max_iter * n) / batch);
  double ewa = 0, ewa_min = std::numeric_limits<double>::infinity();
  bool have_ewa = false;
  std::int64_t no_improvement = 0, since_reassign = 0, step = 0;
  MatrixX<double> B(batch, X.cols());
  std::vector<std::int64_t> bl;
  for (; step < n_steps; ++step) {
    for (std::int64_t i = 0; i < batch; ++i) B.row(i) = X.row(pick(rng));
    double inertia = 0;
    detail::assign_nearest(B, C, bl, inertia);
    // Per-center running means (sklearn's _mini_batch_update_csr/dense, unit weights).
    MatrixX<double> sums = MatrixX<double>::Zero(k, X.cols());
    std::vector<double> add(static_cast<std::size_t>(k), 0.0);
    for (std::int64_t i = 0; i < batch; ++i) {
      sums.row(bl[static_cast<std::size_t>(i)]) += B.row(i);
      add[static_cast<std::size_t>(bl[static_cast<std::size_t>(i)])] += 1;
    }
    for (std::int64_t c = 0; c < k; ++c) {
      const double a = add[static_cast<std::size_t>(c)];
      if (a == 0) continue;
      double& w = counts[static_cast<std::size_t>(c)];
      C.row(c) = (C.row(c) * w + sums.row(c)) / (w + a);
      w += a;
    }
    // Random reassignment of starved centers every 10 * k samples (or while any is empty).
    since_reassign += batch;
    const bool any_empty =
        std::any_of(counts.begin(), counts.end(), [](double w) { return w == 0; });
    if (opt.reassignment_ratio > 0 && (any_empty || since_reassign >= 10 * k)) {
      since_reassign = 0;
      const double mx = *std::max_element(counts.begin(), counts.end());
      std::vector<std::int64_t> starved;
      for (std::int64_t c = 0; c < k; ++c)
        if (counts[static_cast<std::size_t>(c)] < opt.reassignment_ratio * mx) starved.push_back(c);
      if (static_cast<double>(starved.size()) > 0.5 * static_cast<double>(batch)) {
        std::sort(starved.begin(), starved.end(), [&](std::int64_t a, std::int64_t b) {
          return counts[static_cast<std::size_t>(a)] < counts[static_cast<std::size_t>(b)];
        });
        starved.resize(static_cast<std::size_t>(batch / 2));
      }
      if (!starved.empty()) {
        double min_kept = std::numeric_limits<double>::infinity();
        std::vector<char> is_starved(static_cast<std::size_t>(k), 0);
        for (auto c : starved) is_starved[static_cast<std::size_t>(c)] = 1;
        for (std::int64_t c = 0; c < k; ++c)
          if (!is_starved[static_cast<std::size_t>(c)])
            min_kept = std::min(min_kept, counts[static_cast<std::size_t>(c)]);
        if (!std::isfinite(min_kept)) min_kept = 0;
        // Distinct batch points become the new centers.
        std::vector<std::int64_t> idx(static_cast<std::size_t>(batch));
        std::iota(idx.begin(), idx.end(), std::int64_t{0});
        std::shuffle(idx.begin(), idx.end(), rng);
        for (std::size_t s = 0; s < starved.size(); ++s) {
          C.row(starved[s]) = B.row(idx[s]);
          counts[static_cast<std::size_t>(starved[s])] = min_kept;
        }
      }
    }
    // Early stopping on the EWA of the per-sample batch inertia (first step skipped).
    if (step == 0) continue;
    const double bi = inertia / static_cast<double>(batch);
    if (!have_ewa) {
      ewa = bi;
      have_ewa = true;
    } else {
      const double alpha =
          std::min(1.0, static_cast<double>(batch) * 2.0 / (static_cast<double>(n) + 1));
      ewa = ewa * (1 - alpha) + bi * alpha;
    }
    if (ewa < ewa_min) {
      no_improvement = 0;
      ewa_min = ewa;
    } else if (++no_improvement >= opt.max_no_improvement) {
      ++step;
      break;
    }
  }
  KMeansResult r;
  detail::assign_nearest(X, C, r.labels, r.inertia);
  r.centers = std::move(C);
  r.steps = step;
  return r;
}

}  // namespace lmembed::eval
