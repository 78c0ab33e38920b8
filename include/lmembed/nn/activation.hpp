// lmembed/nn/activation.hpp - exact-erf GELU and GEGLU with their derivatives.
#pragma once

#include <cmath>

#include <unsupported/Eigen/SpecialFunctions>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::nn {

/// GELU(x) = x * Phi(x) with the exact erf (PyTorch's default approximate='none').
template <class T>
inline T gelu(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * static_cast<T>(M_SQRT1_2)));
}
/// d GELU / dx = Phi(x) + x * phi(x).
template <class T>
inline T gelu_grad(T x) {
  const T cdf = T(0.5) * (T(1) + std::erf(x * static_cast<T>(M_SQRT1_2)));
  const T pdf = std::exp(T(-0.5) * x * x) * static_cast<T>(0.3989422804014327);  // 1/sqrt(2 pi)
  return cdf + x * pdf;
}

/// Phi(x) = 0.5 (1 + erf(x / sqrt 2)) elementwise, vectorized (Eigen's packet erf for float).
template <class Derived>
auto gelu_cdf(const Eigen::ArrayBase<Derived>& x) {
  using T = typename Derived::Scalar;
  return T(0.5) * (T(1) + (x * static_cast<T>(M_SQRT1_2)).erf());
}
/// phi(x) = exp(-x^2 / 2) / sqrt(2 pi) elementwise.
template <class Derived>
auto gelu_pdf(const Eigen::ArrayBase<Derived>& x) {
  using T = typename Derived::Scalar;
  return (T(-0.5) * x.square()).exp() * static_cast<T>(0.3989422804014327);
}

/// y = GELU(x), elementwise. The caller keeps x for backward.
template <class T>
void gelu_forward(const MatrixX<T>& x, MatrixX<T>& y) {
  y.resize(x.rows(), x.cols());
  const Eigen::Index n = x.rows();
#pragma omp parallel for schedule(static) if (x.size() > 65536)
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto xr = x.row(i).array();
    y.row(i).array() = xr * gelu_cdf(xr);
  }
}
/// dx = dy * GELU'(x), GELU'(x) = Phi(x) + x phi(x).
template <class T>
void gelu_backward(const MatrixX<T>& x, const MatrixX<T>& dy, MatrixX<T>& dx) {
  dx.resize(x.rows(), x.cols());
  const Eigen::Index n = x.rows();
#pragma omp parallel for schedule(static) if (x.size() > 65536)
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto xr = x.row(i).array();
    dx.row(i).array() = dy.row(i).array() * (gelu_cdf(xr) + xr * gelu_pdf(xr));
  }
}

/// GEGLU: x [n, 2h] is split into a value half (columns 0..h) and a gate half (h..2h), as
/// PyTorch's x.chunk(2, dim=-1) does; y [n, h] = value * GELU(gate).
template <class T>
void geglu_forward(const MatrixX<T>& x, MatrixX<T>& y) {
  if (x.cols() % 2 != 0)
    throw shape_error("GEGLU: input has an odd number of columns (" + std::to_string(x.cols()) +
                      ")");
  const Eigen::Index n = x.rows(), h = x.cols() / 2;
  y.resize(n, h);
#pragma omp parallel for schedule(static) if (n * h > 65536)
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto a = x.row(i).head(h).array();
    const auto g = x.row(i).tail(h).array();
    y.row(i).array() = a * g * gelu_cdf(g);
  }
}
/// d value = dy * GELU(gate); d gate = dy * value * GELU'(gate).
template <class T>
void geglu_backward(const MatrixX<T>& x, const MatrixX<T>& dy, MatrixX<T>& dx) {
  const Eigen::Index n = x.rows(), h = x.cols() / 2;
  dx.resize(n, 2 * h);
#pragma omp parallel for schedule(static) if (n * h > 65536)
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto a = x.row(i).head(h).array();
    const auto g = x.row(i).tail(h).array();
    const auto d = dy.row(i).array();
    const RowVectorX<T> cdf = gelu_cdf(g).matrix();
    dx.row(i).head(h).array() = d * g * cdf.array();
    dx.row(i).tail(h).array() = d * a * (cdf.array() + g * gelu_pdf(g));
  }
}

}  // namespace lmembed::nn
