// lmembed/interop/xtensor.hpp - xtensor interop (target lmembed::xtensor, xtensor 0.24 / xtl).
//
// lmembed computes on row-major Eigen matrices; xtensor's default containers are row-major too,
// so data crosses between them without copies wherever the layout allows:
//   - as_matrix(x): an Eigen view of an xt::xtensor<float, N> (rows = shape[0], cols = the rest),
//     so an xtensor can be fed to any lmembed function taking a Matrix expression;
//   - to_xtensor(std::move(m)): an xtensor container that takes over a Matrix's buffer
//     (XMatrix, an xt::xtensor_adaptor), so lmembed results come back as xtensor without copies;
//   - view_xtensor<N>(tensor): a zero-copy xtensor view of an F32 tensor in a model file;
//   - to_xtensor<N>(tensor): any stored dtype dequantized straight into an xt::xtensor.
// Copies happen only where they must: to_matrix(expression) evaluates a lazy xtensor expression
// or a column-major / strided view.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <iterator>
#include <span>
#include <string>
#include <utility>
#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/io/tensor_view.hpp"

namespace lmembed::interop {

/// A 1-D container over an owned row-major Matrix, with the interface xtensor adaptors need;
/// lets an xtensor_adaptor own an lmembed result without copying it.
class MatrixBuffer {
 public:
  using value_type = float;
  using allocator_type = std::allocator<float>;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using reference = float&;
  using const_reference = const float&;
  using pointer = float*;
  using const_pointer = const float*;
  using iterator = float*;
  using const_iterator = const float*;
  using reverse_iterator = std::reverse_iterator<iterator>;
  using const_reverse_iterator = std::reverse_iterator<const_iterator>;

  MatrixBuffer() = default;
  /// Takes over `m`'s storage.
  explicit MatrixBuffer(Matrix&& m) noexcept : m_(std::move(m)) {}

  size_type size() const noexcept { return static_cast<size_type>(m_.size()); }
  bool empty() const noexcept { return m_.size() == 0; }
  /// Keeps the data when the size is unchanged (as xtensor asks on reshape); else reallocates.
  void resize(size_type n) {
    if (n != size()) m_.resize(1, static_cast<Eigen::Index>(n));
  }
  pointer data() noexcept { return m_.data(); }
  const_pointer data() const noexcept { return m_.data(); }
  reference operator[](size_type i) { return m_.data()[i]; }
  const_reference operator[](size_type i) const { return m_.data()[i]; }
  reference front() { return m_.data()[0]; }
  const_reference front() const { return m_.data()[0]; }
  reference back() { return m_.data()[size() - 1]; }
  const_reference back() const { return m_.data()[size() - 1]; }
  iterator begin() noexcept { return data(); }
  iterator end() noexcept { return data() + size(); }
  const_iterator begin() const noexcept { return data(); }
  const_iterator end() const noexcept { return data() + size(); }
  const_iterator cbegin() const noexcept { return data(); }
  const_iterator cend() const noexcept { return data() + size(); }
  reverse_iterator rbegin() noexcept { return reverse_iterator(end()); }
  reverse_iterator rend() noexcept { return reverse_iterator(begin()); }
  const_reverse_iterator rbegin() const noexcept { return const_reverse_iterator(end()); }
  const_reverse_iterator rend() const noexcept { return const_reverse_iterator(begin()); }
  const_reverse_iterator crbegin() const noexcept { return rbegin(); }
  const_reverse_iterator crend() const noexcept { return rend(); }
  void swap(MatrixBuffer& o) noexcept { m_.swap(o.m_); }
  allocator_type get_allocator() const noexcept { return {}; }

 private:
  Matrix m_;
};

/// A 2-D row-major xtensor container that owns an lmembed Matrix (see to_xtensor).
using XMatrix = xt::xtensor_adaptor<MatrixBuffer, 2, xt::layout_type::row_major>;

namespace detail {
template <class X>
std::array<Eigen::Index, 2> rows_cols(const X& x) {
  const auto& s = x.shape();
  if (s.size() == 0) return {1, 1};
  if (s.size() == 1) return {1, static_cast<Eigen::Index>(s[0])};
  Eigen::Index cols = 1;
  for (std::size_t i = 1; i < s.size(); ++i) cols *= static_cast<Eigen::Index>(s[i]);
  return {static_cast<Eigen::Index>(s[0]), cols};
}
template <class X>
void require_row_major(const X& x) {
  if (x.layout() != xt::layout_type::row_major)
    throw shape_error(
        "lmembed::interop: a zero-copy view needs a row-major xtensor, got " +
        std::string(x.layout() == xt::layout_type::column_major ? "column-major" : "dynamic") +
        " (use to_matrix, which copies)");
}
}  // namespace detail

/// A zero-copy Eigen view of a row-major xtensor: rows = shape[0], cols = product of the rest
/// (1-D: 1 x n). shape_error when the tensor is not row-major.
template <std::size_t N, xt::layout_type L>
ConstMatrixMap<float> as_matrix(const xt::xtensor<float, N, L>& x) {
  detail::require_row_major(x);
  const auto rc = detail::rows_cols(x);
  return ConstMatrixMap<float>(x.data(), rc[0], rc[1]);
}
/// A zero-copy mutable Eigen view of a row-major xtensor (writes go to the xtensor).
template <std::size_t N, xt::layout_type L>
MatrixMap<float> as_matrix(xt::xtensor<float, N, L>& x) {
  detail::require_row_major(x);
  const auto rc = detail::rows_cols(x);
  return MatrixMap<float>(x.data(), rc[0], rc[1]);
}
/// A zero-copy Eigen view of an XMatrix.
inline ConstMatrixMap<float> as_matrix(const XMatrix& x) {
  return ConstMatrixMap<float>(x.data(), static_cast<Eigen::Index>(x.shape()[0]),
                               static_cast<Eigen::Index>(x.shape()[1]));
}

/// Evaluates any float xtensor expression (lazy, strided, column-major) into a Matrix (a copy).
template <class E>
Matrix to_matrix(const xt::xexpression<E>& e) {
  const auto& x = e.derived_cast();
  const auto rc = detail::rows_cols(x);
  Matrix m(rc[0], rc[1]);
  std::copy(x.template cbegin<xt::layout_type::row_major>(),
            x.template cend<xt::layout_type::row_major>(), m.data());
  return m;
}

/// An xtensor container taking over `m`'s buffer: no copy when called with std::move(m).
inline XMatrix to_xtensor(Matrix m) {
  const std::array<std::size_t, 2> shape{static_cast<std::size_t>(m.rows()),
                                         static_cast<std::size_t>(m.cols())};
  return XMatrix(MatrixBuffer(std::move(m)), shape);
}

/// A zero-copy N-D xtensor view of an F32 stored tensor (e.g. GGUF weights in the memory map).
/// shape_error when the tensor does not have N dimensions; format_error when it is not F32 or
/// not aligned (use to_xtensor<N>, which converts).
template <std::size_t N>
auto view_xtensor(const io::TensorView& t) {
  const ConstMatrixMap<float> m = io::map_f32(t);  // checks dtype, size and alignment
  if (t.shape.size() != N)
    throw shape_error("tensor '" + t.name + "' has shape " + lmembed::to_string(t.shape) +
                      ", not " + std::to_string(N) + " dimensions");
  std::array<std::size_t, N> shape{};
  for (std::size_t i = 0; i < N; ++i) shape[i] = static_cast<std::size_t>(t.shape[i]);
  return xt::adapt(m.data(), static_cast<std::size_t>(m.size()), xt::no_ownership(), shape);
}

/// An N-D xt::xtensor holding `t`'s values as float (F16/BF16/Q8_0 dequantized straight into
/// the xtensor's storage). shape_error when the tensor does not have N dimensions.
template <std::size_t N>
xt::xtensor<float, N> to_xtensor(const io::TensorView& t) {
  io::detail::check_view(t);  // before allocating anything from the shape
  if (t.shape.size() != N)
    throw shape_error("tensor '" + t.name + "' has shape " + lmembed::to_string(t.shape) +
                      ", not " + std::to_string(N) + " dimensions");
  std::array<std::size_t, N> shape{};
  for (std::size_t i = 0; i < N; ++i) shape[i] = static_cast<std::size_t>(t.shape[i]);
  xt::xtensor<float, N> out(shape);
  io::to_float(t, std::span<float>(out.data(), out.size()));
  return out;
}

}  // namespace lmembed::interop
