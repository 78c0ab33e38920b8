// lmembed/nn/activation.hpp - exact-erf GELU and GEGLU with their derivatives.
#pragma once

#include <cmath>

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

/// y = GELU(x), elementwise. The caller keeps x for backward.
template <class T>
void gelu_forward(const MatrixX<T>& x, MatrixX<T>& y) {
  y.resize(x.rows(), x.cols());
  const Eigen::Index n = x.size();
  const T* xs = x.data();
  T* ys = y.data();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (Eigen::Index i = 0; i < n; ++i) ys[i] = gelu(xs[i]);
}
/// dx = dy * GELU'(x).
template <class T>
void gelu_backward(const MatrixX<T>& x, const MatrixX<T>& dy, MatrixX<T>& dx) {
  dx.resize(x.rows(), x.cols());
  const Eigen::Index n = x.size();
  const T* xs = x.data();
  const T* g = dy.data();
  T* o = dx.data();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (Eigen::Index i = 0; i < n; ++i) o[i] = g[i] * gelu_grad(xs[i]);
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
    const T* xr = x.data() + i * 2 * h;
    T* yr = y.data() + i * h;
    for (Eigen::Index j = 0; j < h; ++j) yr[j] = xr[j] * gelu(xr[h + j]);
  }
}
/// d value = dy * GELU(gate); d gate = dy * value * GELU'(gate).
template <class T>
void geglu_backward(const MatrixX<T>& x, const MatrixX<T>& dy, MatrixX<T>& dx) {
  const Eigen::Index n = x.rows(), h = x.cols() / 2;
  dx.resize(n, 2 * h);
#pragma omp parallel for schedule(static) if (n * h > 65536)
  for (Eigen::Index i = 0; i < n; ++i) {
    const T* xr = x.data() + i * 2 * h;
    const T* g = dy.data() + i * h;
    T* o = dx.data() + i * 2 * h;
    for (Eigen::Index j = 0; j < h; ++j) {
      const T a = xr[j], b = xr[h + j];
      o[j] = g[j] * gelu(b);
      o[h + j] = g[j] * a * gelu_grad(b);
    }
  }
}

}  // namespace lmembed::nn
