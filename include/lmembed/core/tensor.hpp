// lmembed/core/tensor.hpp - the dense array types lmembed passes around.
//
// All matrices are row-major (a row is one token, one text or one layer vector), so that a
// row is contiguous and rows of a packed batch can be handed out as spans without copies.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

namespace lmembed {

/// Row-major dynamic matrix of scalar T (float in production, double in gradient checks).
template <class T>
using MatrixX = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// Column vector of scalar T.
template <class T>
using VectorX = Eigen::Matrix<T, Eigen::Dynamic, 1>;
/// Row vector of scalar T.
template <class T>
using RowVectorX = Eigen::Matrix<T, 1, Eigen::Dynamic>;

using Matrix = MatrixX<float>;        ///< float32 row-major matrix.
using Vector = VectorX<float>;        ///< float32 column vector.
using RowVector = RowVectorX<float>;  ///< float32 row vector.

/// Mapped (non-owning) views, for zero-copy access to memory-mapped files and buffers.
template <class T>
using MatrixMap = Eigen::Map<MatrixX<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const MatrixX<T>>;

/// A shape written outermost dimension first (row-major, as numpy and safetensors write it).
using Shape = std::vector<std::int64_t>;

/// "[2, 3, 4]" - for error messages.
inline std::string to_string(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace lmembed
