// lmembed/nn/linear.hpp - y = x W^T + b, with W stored [out, in] as in PyTorch.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "lmembed/cpu/dispatch.hpp"
#include "lmembed/nn/gemm.hpp"
#include "lmembed/nn/init.hpp"
#include "lmembed/nn/param.hpp"

namespace lmembed::nn {

/// Fully connected layer on row vectors. Rows of x are independent items.
template <class T>
struct Linear {
  Param<T> weight;        ///< [out, in] ("<prefix>.weight")
  Param<T> bias;          ///< [out] ("<prefix>.bias"), only when has_bias
  bool has_bias = false;  ///< PyTorch's bias=...

  Linear() = default;
  /// `prefix` is the dotted module name ("fn.to_q"); parameters are prefix.weight / prefix.bias.
  Linear(const std::string& prefix, std::int64_t in, std::int64_t out, bool with_bias)
      : weight(prefix + ".weight", {out, in}),
        bias(with_bias ? Param<T>(prefix + ".bias", {out}, false) : Param<T>()),
        has_bias(with_bias) {}

  std::int64_t in_features() const { return weight.value.cols(); }
  std::int64_t out_features() const { return weight.value.rows(); }

  /// PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  void init(Rng& rng) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features()));
    init_uniform(weight, bound, rng);
    if (has_bias) init_uniform(bias, bound, rng);
  }

  /// y = x W^T + b; x is [n, in], y becomes [n, out]. The caller keeps x for backward.
  void forward(const MatrixX<T>& x, MatrixX<T>& y) const {
    if (x.cols() != in_features())
      throw shape_error("Linear " + weight.name + ": input [" + std::to_string(x.rows()) + ", " +
                        std::to_string(x.cols()) + "] does not fit weight " +
                        to_string(weight.shape));
    matmul_nt(x, weight.value, y);
    if (has_bias) y.rowwise() += bias.value.row(0);
  }
  MatrixX<T> forward(const MatrixX<T>& x) const {
    MatrixX<T> y;
    forward(x, y);
    return y;
  }

  /// Accumulates dW += dy^T x, db += sum_rows dy; writes dx = dy W when dx is non-null.
  void backward(const MatrixX<T>& x, const MatrixX<T>& dy, MatrixX<T>* dx) {
    matmul_tn_accumulate(dy, x, weight.grad);
    if (has_bias) {
      if constexpr (std::is_same_v<T, float>) {
        // Column sums on the dispatched kernel (Eigen's reduction is SSE2 in a plain build).
        std::vector<float> sum(static_cast<std::size_t>(dy.cols()), 0.0f);
        cpu::ops().add_col_sums(dy.data(), dy.rows(), dy.cols(), dy.cols(), sum.data());
        bias.grad.row(0) += Eigen::Map<const Eigen::RowVectorXf>(sum.data(), dy.cols());
      } else {
        bias.grad.row(0) += dy.colwise().sum();
      }
    }
    if (dx) matmul_nn(dy, weight.value, *dx);
  }

  /// weight then bias.
  ParamList<T> parameters() {
    ParamList<T> p{&weight};
    if (has_bias) p.push_back(&bias);
    return p;
  }
};

}  // namespace lmembed::nn
