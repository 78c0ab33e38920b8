// lmembed/nn/activation.hpp - exact-erf GELU and GEGLU with their derivatives.
#pragma once

#include <cmath>
#include <type_traits>
#include <vector>

#include <unsupported/Eigen/SpecialFunctions>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/cpu/dispatch.hpp"

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

// Not `detail`: nn's other headers name lmembed::detail unqualified from inside lmembed::nn.
namespace gelu_detail {
/// Calls f(i, cdf, pdf) for every row i of x [n, c] with Phi and (when `want_pdf`) phi of the
/// row's columns [c0, c0 + w): float rows through the dispatched kernel (cpu::Ops::gelu_parts,
/// this CPU's ISA whatever the build flags), other types through Eigen. Rows run in parallel
/// when there are more than 65,536 values.
template <class T, class F>
void for_gelu_rows(const MatrixX<T>& x, Eigen::Index c0, Eigen::Index w, bool want_pdf, F&& f) {
  const Eigen::Index n = x.rows();
  const cpu::Ops* k = nullptr;
  if constexpr (std::is_same_v<T, float>) k = &cpu::ops();  // may throw: outside the region
#pragma omp parallel if (n * w > 65536)
  {
    std::vector<T> cdf(static_cast<std::size_t>(w)),
        pdf(static_cast<std::size_t>(want_pdf ? w : 0));
    T* const pdf_or_null = want_pdf ? pdf.data() : nullptr;
#pragma omp for schedule(static)
    for (Eigen::Index i = 0; i < n; ++i) {
      const T* row = x.data() + i * x.cols() + c0;
      if constexpr (std::is_same_v<T, float>) {
        k->gelu_parts(row, cdf.data(), pdf_or_null, w);
      } else {
        using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
        const Eigen::Map<const Row> xr(row, w);
        Eigen::Map<Row>(cdf.data(), w) = gelu_cdf(xr);
        if (want_pdf) Eigen::Map<Row>(pdf.data(), w) = gelu_pdf(xr);
      }
      f(i, cdf.data(), pdf_or_null);
    }
  }
}
}  // namespace gelu_detail

/// y = GELU(x), elementwise. The caller keeps x for backward.
template <class T>
void gelu_forward(const MatrixX<T>& x, MatrixX<T>& y) {
  y.resize(x.rows(), x.cols());
  const Eigen::Index c = x.cols();
  gelu_detail::for_gelu_rows(x, 0, c, false, [&](Eigen::Index i, const T* cdf, const T*) {
    const T* xr = x.data() + i * c;
    T* yr = y.data() + i * c;
    for (Eigen::Index j = 0; j < c; ++j) yr[j] = xr[j] * cdf[j];
  });
}
/// dx = dy * GELU'(x), GELU'(x) = Phi(x) + x phi(x).
template <class T>
void gelu_backward(const MatrixX<T>& x, const MatrixX<T>& dy, MatrixX<T>& dx) {
  dx.resize(x.rows(), x.cols());
  const Eigen::Index c = x.cols();
  gelu_detail::for_gelu_rows(x, 0, c, true, [&](Eigen::Index i, const T* cdf, const T* pdf) {
    const T* xr = x.data() + i * c;
    const T* dr = dy.data() + i * c;
    T* out = dx.data() + i * c;
    for (Eigen::Index j = 0; j < c; ++j) out[j] = dr[j] * (cdf[j] + xr[j] * pdf[j]);
  });
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
  gelu_detail::for_gelu_rows(x, h, h, false, [&](Eigen::Index i, const T* cdf, const T*) {
    const T* a = x.data() + i * 2 * h;
    const T* g = a + h;
    T* yr = y.data() + i * h;
    for (Eigen::Index j = 0; j < h; ++j) yr[j] = a[j] * g[j] * cdf[j];
  });
}
/// d value = dy * GELU(gate); d gate = dy * value * GELU'(gate).
template <class T>
void geglu_backward(const MatrixX<T>& x, const MatrixX<T>& dy, MatrixX<T>& dx) {
  const Eigen::Index n = x.rows(), h = x.cols() / 2;
  dx.resize(n, 2 * h);
  gelu_detail::for_gelu_rows(x, h, h, true, [&](Eigen::Index i, const T* cdf, const T* pdf) {
    const T* a = x.data() + i * 2 * h;
    const T* g = a + h;
    const T* d = dy.data() + i * h;
    T* da = dx.data() + i * 2 * h;
    T* dg = da + h;
    for (Eigen::Index j = 0; j < h; ++j) {
      da[j] = d[j] * g[j] * cdf[j];
      dg[j] = d[j] * a[j] * (cdf[j] + g[j] * pdf[j]);
    }
  });
}

}  // namespace lmembed::nn
