// lmembed/nn/reduce.hpp - segment means and L2 normalization with their backward passes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::nn {

/// y[s] = mean of x rows [offsets[s], offsets[s+1]); every segment must be non-empty.
template <class T>
void segment_mean_forward(const MatrixX<T>& x, const std::vector<std::int64_t>& offsets,
                          MatrixX<T>& y) {
  const std::int64_t n = static_cast<std::int64_t>(offsets.size()) - 1;
  y.setZero(std::max<std::int64_t>(n, 0), x.cols());
  for (std::int64_t s = 0; s < n; ++s) {
    const std::int64_t a = offsets[s], b = offsets[s + 1];
    if (b <= a || b > x.rows())
      throw shape_error("segment_mean: segment " + std::to_string(s) + " is rows [" +
                        std::to_string(a) + ", " + std::to_string(b) + ") of [" +
                        std::to_string(x.rows()) + ", " + std::to_string(x.cols()) + "]");
    y.row(s) = x.middleRows(a, b - a).colwise().sum() / static_cast<T>(b - a);
  }
}
/// dx rows of segment s = dy[s] / |s| (rows outside every segment get 0).
template <class T>
void segment_mean_backward(const MatrixX<T>& dy, const std::vector<std::int64_t>& offsets,
                           std::int64_t x_rows, MatrixX<T>& dx) {
  dx.setZero(x_rows, dy.cols());
  for (std::size_t s = 0; s + 1 < offsets.size(); ++s) {
    const std::int64_t a = offsets[s], b = offsets[s + 1];
    dx.middleRows(a, b - a).rowwise() =
        dy.row(static_cast<Eigen::Index>(s)) / static_cast<T>(b - a);
  }
}

/// y = x / max(||x||, eps) per row (torch.nn.functional.normalize, eps 1e-12).
template <class T>
void l2_normalize_forward(const MatrixX<T>& x, MatrixX<T>& y, VectorX<T>* norms = nullptr,
                          T eps = T(1e-12)) {
  y.resize(x.rows(), x.cols());
  if (norms) norms->resize(x.rows());
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    const T nrm = std::max(x.row(i).norm(), eps);
    if (norms) (*norms)(i) = nrm;
    y.row(i) = x.row(i) / nrm;
  }
}
/// In-place row normalization (inference).
template <class T>
void l2_normalize_rows(MatrixX<T>& x, T eps = T(1e-12)) {
  for (Eigen::Index i = 0; i < x.rows(); ++i) x.row(i) /= std::max(x.row(i).norm(), eps);
}
/// dx = (dy - y (y . dy)) / ||x|| (where ||x|| > eps; below eps the map is linear: dy / eps).
template <class T>
void l2_normalize_backward(const MatrixX<T>& y, const VectorX<T>& norms, const MatrixX<T>& dy,
                           MatrixX<T>& dx, T eps = T(1e-12)) {
  dx.resize(dy.rows(), dy.cols());
  for (Eigen::Index i = 0; i < dy.rows(); ++i) {
    if (norms(i) > eps)
      dx.row(i) = (dy.row(i) - y.row(i) * y.row(i).dot(dy.row(i))) / norms(i);
    else
      dx.row(i) = dy.row(i) / eps;
  }
}

}  // namespace lmembed::nn
