// lmembed/eval/stats.hpp - the statistics behind the paper's claims.
//
// Rank correlations (STS), the Wilcoxon signed-rank test (the paper's significance test over
// tasks), the paired bootstrap (per-task intervals of a difference) and Holm's correction.
// Every function follows scipy 1.10's definitions and defaults so that numbers agree with
// scipy.stats to ~1e-12 (tests/eval/test_reference.py checks this against scipy in the test).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/core/error.hpp"

namespace lmembed::eval {

/// Ranks 1..n with ties given the average of the ranks they span (scipy rankdata 'average').
inline std::vector<double> rankdata(std::span<const double> x) {
  const std::size_t n = x.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && x[order[j]] == x[order[i]]) ++j;
    // Ranks i+1 .. j (1-based) share their mean.
    const double avg = 0.5 * (static_cast<double>(i + 1) + static_cast<double>(j));
    for (std::size_t k = i; k < j; ++k) r[order[k]] = avg;
    i = j;
  }
  return r;
}

/// Pearson's correlation coefficient (scipy.stats.pearsonr's statistic); NaN when either
/// input is constant. Throws shape_error when the lengths differ or n < 2.
inline double pearson(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size() || x.size() < 2)
    throw shape_error("pearson: inputs have lengths " + std::to_string(x.size()) + " and " +
                      std::to_string(y.size()) + " (need equal lengths >= 2)");
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mx += x[i], my += y[i];
  mx /= n;
  my /= n;
  // Centered sums in the scipy way: r = <xm, ym> / (|xm| |ym|), computed on scaled vectors
  // (scipy divides each centered vector by its max-abs before the norms, for range safety).
  double ax = 0, ay = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    ax = std::max(ax, std::abs(x[i] - mx));
    ay = std::max(ay, std::abs(y[i] - my));
  }
  if (ax == 0 || ay == 0) return std::nan("");
  double sxx = 0, syy = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double a = (x[i] - mx) / ax, b = (y[i] - my) / ay;
    sxx += a * a;
    syy += b * b;
    sxy += a * b;
  }
  const double r = sxy / (std::sqrt(sxx) * std::sqrt(syy));
  return std::clamp(r, -1.0, 1.0);
}

/// Spearman's rho with ties (Pearson of average ranks), as scipy.stats.spearmanr.
inline double spearman(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size() || x.size() < 2)
    throw shape_error("spearman: inputs have lengths " + std::to_string(x.size()) + " and " +
                      std::to_string(y.size()) + " (need equal lengths >= 2)");
  const auto rx = rankdata(x), ry = rankdata(y);
  return pearson(rx, ry);
}

/// Per-example terms whose mean is exactly Spearman's rho: z(rank x)_i * z(rank y)_i with
/// population standard deviations. Used as STS's per_example scores for the paired bootstrap
/// (a linearization: resampling these keeps the full-set ranks fixed).
inline std::vector<double> spearman_terms(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size() || x.size() < 2)
    throw shape_error("spearman_terms: inputs have lengths " + std::to_string(x.size()) + " and " +
                      std::to_string(y.size()));
  auto rx = rankdata(x), ry = rankdata(y);
  const double n = static_cast<double>(x.size());
  auto standardize = [n](std::vector<double>& r) {
    double m = 0, v = 0;
    for (double a : r) m += a;
    m /= n;
    for (double a : r) v += (a - m) * (a - m);
    const double sd = std::sqrt(v / n);
    for (double& a : r) a = sd > 0 ? (a - m) / sd : 0.0;
  };
  standardize(rx);
  standardize(ry);
  std::vector<double> t(x.size());
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = rx[i] * ry[i];
  return t;
}

/// Standard normal survival function 1 - Phi(z), accurate in the tails.
inline double normal_sf(double z) {
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}
/// Standard normal CDF Phi(z).
inline double normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

/// Which alternative hypothesis a test reports (scipy's `alternative`).
enum class Alternative { two_sided, greater, less };
/// How the Wilcoxon test treats zero differences (scipy's `zero_method`).
enum class ZeroMethod { wilcox, pratt, zsplit };
/// How the Wilcoxon p-value is computed (scipy's `method`).
enum class WilcoxonMethod {
  automatic,  ///< exact when n <= 50 with no zeros and no ties, else the normal approximation
  exact,      ///< exact null distribution (falls back to approx when there are zeros, as scipy)
  approx,     ///< normal approximation with tie correction
};

/// "two-sided" | "greater" | "less" (scipy's spelling).
inline Alternative parse_alternative(std::string_view s) {
  if (s == "two-sided") return Alternative::two_sided;
  if (s == "greater") return Alternative::greater;
  if (s == "less") return Alternative::less;
  throw config_error("alternative must be two-sided, greater or less, got '" + std::string(s) +
                     "'");
}

/// Options of wilcoxon(); the defaults are scipy's (zero_method="wilcox", correction=False,
/// alternative="two-sided", method="auto").
struct WilcoxonOptions {
  ZeroMethod zero_method = ZeroMethod::wilcox;
  bool correction = false;  ///< continuity correction (approx path only)
  Alternative alternative = Alternative::two_sided;
  WilcoxonMethod method = WilcoxonMethod::automatic;
};

/// Result of wilcoxon().
struct WilcoxonResult {
  double statistic = NAN;  ///< min(R+, R-) for two-sided, R+ for one-sided (scipy's T)
  double pvalue = NAN;
  double zstatistic = NAN;   ///< the normal-approximation z (NaN on the exact path)
  bool exact = false;        ///< which path computed the p-value
  std::int64_t n_used = 0;   ///< differences ranked (zeros dropped under wilcox)
  std::int64_t n_zeros = 0;  ///< zero differences seen
  bool ties = false;         ///< whether |d| had ties
};

namespace detail {
/// P(R+ = r), r = 0..n(n+1)/2, under H0 for n untied nonzero differences (scipy's recursion).
inline std::vector<double> wilcoxon_pmf(std::int64_t n) {
  std::vector<double> c(1, 1.0);
  for (std::int64_t k = 1; k <= n; ++k) {
    std::vector<double> next(static_cast<std::size_t>(k * (k + 1) / 2 + 1), 0.0);
    const std::size_t m = c.size();
    for (std::size_t i = 0; i < m; ++i) next[i] = c[i] * 0.5;
    for (std::size_t i = 0; i < m; ++i) next[next.size() - m + i] += c[i] * 0.5;
    c.swap(next);
  }
  return c;
}
}  // namespace detail

/// Wilcoxon signed-rank test on paired samples x, y (differences d = x - y), following
/// scipy.stats.wilcoxon. Differences from scipy 1.10, on purpose: method=automatic also uses
/// the normal approximation when |d| has ties (scipy 1.10 takes the exact path there and
/// truncates a half-integer R+; later scipy versions switch to approx, as we do).
inline WilcoxonResult wilcoxon(std::span<const double> x, std::span<const double> y,
                               const WilcoxonOptions& opt = {}) {
  if (x.size() != y.size())
    throw shape_error("wilcoxon: x has " + std::to_string(x.size()) + " values, y has " +
                      std::to_string(y.size()));
  std::vector<double> d(x.size());
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = x[i] - y[i];
  WilcoxonResult res;
  if (d.empty()) return res;
  for (double v : d)
    if (!std::isfinite(v)) throw input_error("wilcoxon: non-finite difference");
  std::int64_t n_zero = 0;
  for (double v : d) n_zero += v == 0;
  res.n_zeros = n_zero;

  bool exact = opt.method == WilcoxonMethod::exact ||
               (opt.method == WilcoxonMethod::automatic && d.size() <= 50);
  if (n_zero > 0)
    exact = false;  // scipy: "exact p-value calculation does not work if there are zeros"
  if (!exact && opt.zero_method != ZeroMethod::zsplit &&
      n_zero == static_cast<std::int64_t>(d.size()))
    throw input_error("wilcoxon: zero_method wilcox/pratt do not work when every difference is 0");
  if (!exact && opt.zero_method == ZeroMethod::wilcox)
    d.erase(std::remove(d.begin(), d.end(), 0.0), d.end());

  const std::int64_t count = static_cast<std::int64_t>(d.size());
  std::vector<double> ad(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) ad[i] = std::abs(d[i]);
  const auto r = rankdata(ad);
  double r_plus = 0, r_minus = 0, r_zero = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (d[i] > 0) r_plus += r[i];
    if (d[i] < 0) r_minus += r[i];
    if (d[i] == 0) r_zero += r[i];
  }
  if (opt.zero_method == ZeroMethod::zsplit) {
    r_plus += r_zero / 2.0;
    r_minus += r_zero / 2.0;
  }
  // Tie groups of the ranks (sizes > 1).
  std::vector<double> sorted_r = r;
  std::sort(sorted_r.begin(), sorted_r.end());
  std::vector<double> tie_sizes;
  for (std::size_t i = 0; i < sorted_r.size();) {
    std::size_t j = i + 1;
    while (j < sorted_r.size() && sorted_r[j] == sorted_r[i]) ++j;
    if (j - i > 1) tie_sizes.push_back(static_cast<double>(j - i));
    i = j;
  }
  res.ties = !tie_sizes.empty();
  if (opt.method == WilcoxonMethod::automatic && res.ties) exact = false;

  res.n_used = count;
  res.statistic = opt.alternative == Alternative::two_sided ? std::min(r_plus, r_minus) : r_plus;
  const double T = res.statistic;
  res.exact = exact;
  if (!exact) {
    const double cn = static_cast<double>(count);
    double mn = cn * (cn + 1.0) * 0.25;
    double se = cn * (cn + 1.0) * (2.0 * cn + 1.0);
    std::vector<double> tie_r = r;
    if (opt.zero_method == ZeroMethod::pratt) {
      const double nz = static_cast<double>(n_zero);
      mn -= nz * (nz + 1.0) * 0.25;
      se -= nz * (nz + 1.0) * (2.0 * nz + 1.0);
      // scipy recounts ties on the ranks of the nonzero differences only.
      tie_r.clear();
      for (std::size_t i = 0; i < d.size(); ++i)
        if (d[i] != 0) tie_r.push_back(r[i]);
      std::sort(tie_r.begin(), tie_r.end());
      tie_sizes.clear();
      for (std::size_t i = 0; i < tie_r.size();) {
        std::size_t j = i + 1;
        while (j < tie_r.size() && tie_r[j] == tie_r[i]) ++j;
        if (j - i > 1) tie_sizes.push_back(static_cast<double>(j - i));
        i = j;
      }
    }
    double tie_term = 0;
    for (double t : tie_sizes) tie_term += t * (t * t - 1.0);
    se -= 0.5 * tie_term;
    se = std::sqrt(se / 24.0);
    double cc = 0;
    if (opt.correction) {
      if (opt.alternative == Alternative::two_sided)
        cc = 0.5 * ((T - mn) > 0 ? 1.0 : (T - mn) < 0 ? -1.0 : 0.0);
      else if (opt.alternative == Alternative::less)
        cc = -0.5;
      else
        cc = 0.5;
    }
    const double z = (T - mn - cc) / se;
    res.zstatistic = z;
    if (opt.alternative == Alternative::two_sided)
      res.pvalue = 2.0 * normal_sf(std::abs(z));
    else if (opt.alternative == Alternative::greater)
      res.pvalue = normal_sf(z);
    else
      res.pvalue = normal_cdf(z);
  } else {
    const auto pmf = detail::wilcoxon_pmf(count);
    // R+ is integral here unless the caller forced exact with ties: round down as scipy does.
    const auto rp = static_cast<std::size_t>(r_plus);
    double p = 0;
    if (opt.alternative == Alternative::two_sided) {
      if (rp == (pmf.size() - 1) / 2) {
        p = 1.0;
      } else {
        double p_less = 0, p_greater = 0;
        for (std::size_t i = 0; i <= rp; ++i) p_less += pmf[i];
        for (std::size_t i = rp; i < pmf.size(); ++i) p_greater += pmf[i];
        p = 2.0 * std::min(p_greater, p_less);
      }
    } else if (opt.alternative == Alternative::greater) {
      for (std::size_t i = rp; i < pmf.size(); ++i) p += pmf[i];
    } else {
      for (std::size_t i = 0; i <= rp; ++i) p += pmf[i];
    }
    res.pvalue = std::clamp(p, 0.0, 1.0);
  }
  return res;
}

/// The smallest two-sided p-value the exact Wilcoxon test can give with n paired values
/// (2 / 2^n): with few tasks per category no difference can be "significant" at 0.05 below
/// n = 6 - reports print this bound next to the p-values.
inline double wilcoxon_min_pvalue(std::int64_t n) {
  return n <= 0 ? 1.0 : std::min(1.0, 2.0 * std::pow(0.5, static_cast<double>(n)));
}

/// Result of paired_bootstrap().
struct BootstrapResult {
  double mean_diff = NAN;  ///< mean(a - b) on the full sample
  double ci_low = NAN;     ///< percentile interval of the resampled mean difference
  double ci_high = NAN;
  double p_two_sided = NAN;  ///< 2 * min(P*(diff <= 0), P*(diff >= 0)), capped at 1
  std::int64_t n = 0, resamples = 0;
};

/// Paired bootstrap of the mean difference of per-example scores a - b: resamples example
/// indices with replacement (the same indices for both systems), `resamples` times, and
/// returns the percentile interval at `confidence`. Deterministic for a given seed.
inline BootstrapResult paired_bootstrap(std::span<const double> a, std::span<const double> b,
                                        std::int64_t resamples = 10000, double confidence = 0.95,
                                        std::uint64_t seed = 0) {
  if (a.size() != b.size() || a.empty())
    throw shape_error("paired_bootstrap: per-example scores have lengths " +
                      std::to_string(a.size()) + " and " + std::to_string(b.size()) +
                      " (need equal, non-zero lengths)");
  if (resamples < 1 || !(confidence > 0 && confidence < 1))
    throw config_error("paired_bootstrap: need resamples >= 1 and 0 < confidence < 1");
  const std::size_t n = a.size();
  std::vector<double> d(n);
  double full = 0;
  for (std::size_t i = 0; i < n; ++i) full += (d[i] = a[i] - b[i]);
  BootstrapResult res;
  res.n = static_cast<std::int64_t>(n);
  res.resamples = resamples;
  res.mean_diff = full / static_cast<double>(n);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  std::vector<double> means(static_cast<std::size_t>(resamples));
  std::int64_t le = 0, ge = 0;
  for (auto& m : means) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += d[pick(rng)];
    m = s / static_cast<double>(n);
    le += m <= 0;
    ge += m >= 0;
  }
  std::sort(means.begin(), means.end());
  // Linear interpolation between order statistics (numpy.percentile's default).
  auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(means.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos));
    const std::size_t hi = std::min(lo + 1, means.size() - 1);
    return means[lo] + (pos - static_cast<double>(lo)) * (means[hi] - means[lo]);
  };
  const double alpha = 1.0 - confidence;
  res.ci_low = quantile(alpha / 2);
  res.ci_high = quantile(1 - alpha / 2);
  res.p_two_sided =
      std::min(1.0, 2.0 * static_cast<double>(std::min(le, ge)) / static_cast<double>(resamples));
  return res;
}

/// Holm's step-down adjusted p-values, in the input order:
/// p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j)) over the ascending order.
inline std::vector<double> holm(std::span<const double> p) {
  const std::size_t m = p.size();
  std::vector<std::size_t> order(m);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return p[a] < p[b]; });
  std::vector<double> adj(m);
  double running = 0;
  for (std::size_t k = 0; k < m; ++k) {
    const double v = std::min(1.0, static_cast<double>(m - k) * p[order[k]]);
    running = std::max(running, v);
    adj[order[k]] = running;
  }
  return adj;
}

}  // namespace lmembed::eval
