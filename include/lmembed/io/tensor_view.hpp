// lmembed/io/tensor_view.hpp - a named, typed, shaped view of tensor bytes in a file.
//
// Readers hand out TensorViews that point into the memory map, so nothing is copied until a
// caller asks for floats. The bytes may be unaligned (safetensors does not align its data), so
// every conversion here goes through memcpy; map_f32 gives a zero-copy Eigen view only when the
// bytes are F32 and suitably aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/io/quant.hpp"

namespace lmembed::io {

/// The product of `shape` (1 for a scalar), or -1 when a dimension is negative or the product
/// of the non-zero dimensions overflows int64. Like numpy, a shape such as (0, 2^62, 4) is
/// refused although it holds no element, so that any sub-product (e.g. the columns of
/// to_matrix) fits int64 too.
inline std::int64_t checked_numel(const Shape& shape) noexcept {
  std::int64_t nonzero = 1;
  bool zero = false;
  for (const auto d : shape) {
    if (d < 0) return -1;
    if (d == 0) {
      zero = true;
    } else if (__builtin_mul_overflow(nonzero, d, &nonzero)) {
      return -1;
    }
  }
  return zero ? 0 : nonzero;
}

/// A tensor stored in a file: name, element type, shape (outermost first) and its bytes.
struct TensorView {
  std::string name;                 ///< Name in the file.
  DType dtype = DType::f32;         ///< Element type of `data`.
  Shape shape;                      ///< Outermost dimension first (numpy / PyTorch order).
  std::span<const std::byte> data;  ///< The stored bytes (exactly byte_size(dtype, numel())).

  /// Number of elements: checked_numel(shape) (-1 for shapes the readers never produce).
  std::int64_t numel() const noexcept { return checked_numel(shape); }
};

namespace detail {
template <class T>
inline T load_le(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

inline std::string describe(const TensorView& t) {
  return "tensor '" + t.name + "' (" + to_string(t.dtype) + " " + lmembed::to_string(t.shape) + ")";
}

/// Checks that the view's bytes match its dtype and shape (format_error otherwise).
inline void check_view(const TensorView& t) {
  auto need = byte_size(t.dtype, t.numel());
  if (!need)
    throw format_error(describe(t) + ": element count " + std::to_string(t.numel()) +
                       " is not storable as " + to_string(t.dtype));
  if (static_cast<std::uint64_t>(*need) != t.data.size())
    throw format_error(describe(t) + ": holds " + std::to_string(t.data.size()) +
                       " bytes, its shape needs " + std::to_string(*need));
}
}  // namespace detail

/// Converts (dequantizes) all elements of `t` into `out`, which must hold exactly numel()
/// floats (shape_error otherwise). Works for every DType; the quantized ones decode as gguf-py
/// does, bit for bit (lmembed/io/quant.hpp). Scales are not checked here: the GGUF reader
/// refuses non-finite ones when it opens the file.
inline void to_float(const TensorView& t, std::span<float> out) {
  const std::int64_t n = t.numel();
  if (static_cast<std::int64_t>(out.size()) != n)
    throw shape_error(detail::describe(t) + ": output holds " + std::to_string(out.size()) +
                      " floats, the tensor has " + std::to_string(n));
  detail::check_view(t);
  const std::byte* p = t.data.data();
  float* o = out.data();
  const auto un = static_cast<std::size_t>(n);
  switch (t.dtype) {
    case DType::f32:
      if (un) std::memcpy(o, p, un * sizeof(float));
      break;
    case DType::f16:
      for (std::size_t i = 0; i < un; ++i)
        o[i] = half_to_float(detail::load_le<std::uint16_t>(p + 2 * i));
      break;
    case DType::bf16:
      for (std::size_t i = 0; i < un; ++i)
        o[i] = bf16_to_float(detail::load_le<std::uint16_t>(p + 2 * i));
      break;
    case DType::q8_0:
    case DType::q4_0:
    case DType::q4_1:
    case DType::q5_0:
    case DType::q5_1:
    case DType::q2_k:
    case DType::q3_k:
    case DType::q4_k:
    case DType::q5_k:
    case DType::q6_k:
      quant::dequantize_blocks(t.dtype, p, n / block_size(t.dtype), o);
      break;
    case DType::f64:
      for (std::size_t i = 0; i < un; ++i)
        o[i] = static_cast<float>(detail::load_le<double>(p + 8 * i));
      break;
    case DType::i8:
      for (std::size_t i = 0; i < un; ++i) o[i] = static_cast<std::int8_t>(p[i]);
      break;
    case DType::u8:
      for (std::size_t i = 0; i < un; ++i) o[i] = static_cast<std::uint8_t>(p[i]);
      break;
    case DType::i16:
      for (std::size_t i = 0; i < un; ++i) o[i] = detail::load_le<std::int16_t>(p + 2 * i);
      break;
    case DType::i32:
      for (std::size_t i = 0; i < un; ++i)
        o[i] = static_cast<float>(detail::load_le<std::int32_t>(p + 4 * i));
      break;
    case DType::i64:
      for (std::size_t i = 0; i < un; ++i)
        o[i] = static_cast<float>(detail::load_le<std::int64_t>(p + 8 * i));
      break;
  }
}

/// The tensor as a float matrix: rows = shape[0], cols = product of the other dimensions
/// (a 1-D tensor of n values is 1 x n; a scalar is 1 x 1).
inline Matrix to_matrix(const TensorView& t) {
  detail::check_view(t);  // before sizing anything from the shape
  std::int64_t rows = 1, cols = 1;
  if (t.shape.size() == 1) {
    cols = t.shape[0];
  } else if (!t.shape.empty()) {
    rows = t.shape[0];
    for (std::size_t i = 1; i < t.shape.size(); ++i) cols *= t.shape[i];
  }
  Matrix m(rows, cols);
  to_float(t, std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
  return m;
}

/// A zero-copy row-major view of an F32 tensor (rows/cols as to_matrix). format_error when the
/// tensor is not F32 or its bytes are not 4-byte aligned (then use to_matrix).
inline ConstMatrixMap<float> map_f32(const TensorView& t) {
  detail::check_view(t);
  if (t.dtype != DType::f32)
    throw format_error(detail::describe(t) + ": map_f32 needs F32 data, use to_matrix");
  if (reinterpret_cast<std::uintptr_t>(t.data.data()) % alignof(float) != 0)
    throw format_error(detail::describe(t) + ": data is not 4-byte aligned, use to_matrix");
  std::int64_t rows = 1, cols = 1;
  if (t.shape.size() == 1) {
    cols = t.shape[0];
  } else if (!t.shape.empty()) {
    rows = t.shape[0];
    for (std::size_t i = 1; i < t.shape.size(); ++i) cols *= t.shape[i];
  }
  return ConstMatrixMap<float>(reinterpret_cast<const float*>(t.data.data()), rows, cols);
}

}  // namespace lmembed::io
