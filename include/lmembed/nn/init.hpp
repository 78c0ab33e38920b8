// lmembed/nn/init.hpp - a small deterministic random generator and parameter initializers.
//
// The generator is our own (splitmix64 + Box-Muller) rather than <random>'s distributions,
// whose algorithms differ between standard libraries: a seed gives the same head everywhere.
#pragma once

#include <cmath>
#include <cstdint>

#include "lmembed/nn/param.hpp"

namespace lmembed::nn {

/// Deterministic generator: splitmix64 for bits, Box-Muller for normals.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  /// 64 random bits.
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Standard normal.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0.0;
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

/// U(-bound, bound) - PyTorch's nn.Linear default uses bound = 1/sqrt(fan_in) for weight and bias.
template <class T>
void init_uniform(Param<T>& p, double bound, Rng& rng) {
  for (Eigen::Index i = 0; i < p.value.size(); ++i)
    p.value.data()[i] = static_cast<T>(rng.uniform(-bound, bound));
}

/// N(0, std^2) - PyTorch's nn.Embedding and torch.randn latents use std = 1.
template <class T>
void init_normal(Param<T>& p, double std, Rng& rng) {
  for (Eigen::Index i = 0; i < p.value.size(); ++i)
    p.value.data()[i] = static_cast<T>(std * rng.normal());
}

/// Every entry = v (LayerNorm: weight 1, bias 0).
template <class T>
void init_constant(Param<T>& p, double v) {
  p.value.setConstant(static_cast<T>(v));
}

}  // namespace lmembed::nn
