// lmembed/nn/layernorm.hpp - LayerNorm over the last dimension (PyTorch semantics, eps 1e-5).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "lmembed/nn/param.hpp"

namespace lmembed::nn {

/// y = (x - mean) / sqrt(var + eps) * weight + bias, per row; var is the biased variance.
template <class T>
struct LayerNorm {
  Param<T> weight;  ///< [d] ("<prefix>.weight"), initialized to 1
  Param<T> bias;    ///< [d] ("<prefix>.bias"), initialized to 0
  double eps = 1e-5;

  /// What backward needs: the normalized input and 1/std per row.
  struct Context {
    MatrixX<T> xhat;
    VectorX<T> rstd;
  };

  LayerNorm() = default;
  LayerNorm(const std::string& prefix, std::int64_t d, double eps_ = 1e-5)
      : weight(prefix + ".weight", {d}, false), bias(prefix + ".bias", {d}, false), eps(eps_) {
    weight.value.setOnes();
  }

  std::int64_t dim() const { return weight.value.cols(); }
  /// weight 1, bias 0 (PyTorch's default).
  void init() {
    weight.value.setOnes();
    bias.value.setZero();
  }

  /// y = LN(x) for x [n, d].
  void forward(const MatrixX<T>& x, MatrixX<T>& y, Context& ctx) const {
    if (x.cols() != dim())
      throw shape_error("LayerNorm " + weight.name + ": input has " + std::to_string(x.cols()) +
                        " columns, expected " + std::to_string(dim()));
    const Eigen::Index n = x.rows(), d = x.cols();
    ctx.xhat.resize(n, d);
    ctx.rstd.resize(n);
    y.resize(n, d);
    const auto w = weight.value.row(0);
    const auto b = bias.value.row(0);
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto xr = x.row(i);
      const T mean = xr.mean();
      const T var = (xr.array() - mean).square().mean();
      const T rstd = T(1) / std::sqrt(var + static_cast<T>(eps));
      ctx.rstd(i) = rstd;
      ctx.xhat.row(i) = (xr.array() - mean) * rstd;
      y.row(i) = ctx.xhat.row(i).cwiseProduct(w) + b;
    }
  }

  /// Accumulates dweight, dbias; writes dx.
  /// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight.
  void backward(const MatrixX<T>& dy, const Context& ctx, MatrixX<T>& dx) {
    const Eigen::Index n = dy.rows(), d = dy.cols();
    dx.resize(n, d);
    const auto w = weight.value.row(0);
    weight.grad.row(0) += dy.cwiseProduct(ctx.xhat).colwise().sum();
    bias.grad.row(0) += dy.colwise().sum();
    for (Eigen::Index i = 0; i < n; ++i) {
      const RowVectorX<T> g = dy.row(i).cwiseProduct(w);
      const T mg = g.mean();
      const T mgx = g.cwiseProduct(ctx.xhat.row(i)).mean();
      dx.row(i) = ((g.array() - mg) - ctx.xhat.row(i).array() * mgx) * ctx.rstd(i);
    }
  }

  ParamList<T> parameters() { return {&weight, &bias}; }
};

}  // namespace lmembed::nn
