// lmembed/io/npy.hpp - NumPy .npy reader and writer (header versions 1, 2 and 3; C order).
//
// Layout: "\x93NUMPY", major, minor, header length (uint16 for v1, uint32 for v2/v3), then a
// Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
// spaces and a newline, then the raw little-endian data. The reader parses that literal with a
// small strict parser and checks the data size against the shape.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/io/tensor_view.hpp"

namespace lmembed::io {

/// An array read from (or to be written to) a .npy file; data is C-order little-endian.
struct NpyArray {
  DType dtype = DType::f32;     ///< Element type.
  Shape shape;                  ///< Outermost first.
  std::vector<std::byte> data;  ///< The raw elements.

  /// Number of elements.
  std::int64_t numel() const noexcept { return TensorView{"", dtype, shape, {}}.numel(); }
  /// A view of the data (for to_float and friends).
  TensorView view(std::string name = "npy") const {
    return TensorView{std::move(name), dtype, shape, std::span<const std::byte>(data)};
  }
  /// The array as a float matrix (rows = shape[0], cols = the rest; 1-D is 1 x n).
  Matrix to_matrix() const { return io::to_matrix(view()); }
};

namespace detail {

/// numpy descr for a DType ("<f4"); nullptr for types npy cannot hold here.
inline const char* npy_descr(DType t) noexcept {
  switch (t) {
    case DType::f32:
      return "<f4";
    case DType::f16:
      return "<f2";
    case DType::f64:
      return "<f8";
    case DType::i8:
      return "|i1";
    case DType::u8:
      return "|u1";
    case DType::i16:
      return "<i2";
    case DType::i32:
      return "<i4";
    case DType::i64:
      return "<i8";
    case DType::bf16:
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
      return nullptr;
  }
  return nullptr;
}

/// Strict parser of the header dict literal; errors are format_errors at file offsets.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view s, std::uint64_t base, const std::filesystem::path& file)
      : s_(s), base_(base), file_(file) {}

  struct Result {
    std::string descr;
    bool fortran_order = false;
    Shape shape;
  };

  Result parse() {
    Result r;
    bool has_descr = false, has_fortran = false, has_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const std::uint64_t key_at = pos_;
      const std::string key = str();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        r.descr = str();
        has_descr = true;
      } else if (key == "fortran_order") {
        if (s_.substr(pos_, 4) == "True") {
          r.fortran_order = true;
          pos_ += 4;
        } else if (s_.substr(pos_, 5) == "False") {
          pos_ += 5;
        } else {
          fail("fortran_order must be True or False");
        }
        has_fortran = true;
      } else if (key == "shape") {
        r.shape = tuple();
        has_shape = true;
      } else {
        fail_at(key_at, "unexpected header key '" + key + "'");
      }
      ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      ws();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      fail("expected ',' or '}' in header dict");
    }
    if (!has_descr || !has_fortran || !has_shape)
      fail_at(0, "header dict must have 'descr', 'fortran_order' and 'shape'");
    ws();
    if (pos_ != s_.size()) fail("unexpected data after the header dict");
    return r;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }
  [[noreturn]] void fail_at(std::uint64_t at, const std::string& what) const {
    throw format_error(file_, base_ + at, what);
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "' in header");
    ++pos_;
  }
  std::string str() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string in header");
    const std::size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\') fail("escapes are not supported in npy header strings");
      ++pos_;
    }
    if (pos_ >= s_.size()) fail_at(start - 1, "unterminated string in header");
    return std::string(s_.substr(start, pos_++ - start));
  }
  Shape tuple() {
    expect('(');
    Shape out;
    for (;;) {
      ws();
      if (peek() == ')') {
        ++pos_;
        return out;
      }
      const std::uint64_t at = pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("shape entries must be non-negative integers");
      std::int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, peek() - '0', &v))
          fail_at(at, "shape entry overflows int64");
        ++pos_;
      }
      // Python writes long ints as 3L in old files.
      if (peek() == 'L') ++pos_;
      out.push_back(v);
      ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      ws();
      if (peek() == ')') {
        ++pos_;
        return out;
      }
      fail("expected ',' or ')' in shape");
    }
  }

  std::string_view s_;
  std::uint64_t base_;
  const std::filesystem::path& file_;
  std::size_t pos_ = 0;
};

}  // namespace detail

/// Parses .npy bytes (held in memory); `file` is used in error messages.
inline NpyArray parse_npy(std::span<const std::byte> b, const std::filesystem::path& file) {
  const std::uint64_t size = b.size();
  if (size < 10)
    throw format_error(
        file, 0, "truncated: " + std::to_string(size) + " bytes, too short for an npy header");
  if (std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
    throw format_error(file, 0, "wrong magic, expected '\\x93NUMPY' (not an npy file)");
  const auto major = static_cast<unsigned>(b[6]);
  const auto minor = static_cast<unsigned>(b[7]);
  std::uint64_t header_len = 0, header_at = 0;
  if (major == 1) {
    std::uint16_t n;
    std::memcpy(&n, b.data() + 8, 2);
    header_len = n;
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw format_error(file, 8, "truncated: npy v2 header length needs 4 bytes");
    std::uint32_t n;
    std::memcpy(&n, b.data() + 8, 4);
    header_len = n;
    header_at = 12;
  } else {
    throw format_error(file, 6,
                       "unknown npy version " + std::to_string(major) + "." +
                           std::to_string(minor) + " (only 1.x, 2.x, 3.x)");
  }
  if (header_len > size - header_at)
    throw format_error(file, 8,
                       "header length " + std::to_string(header_len) +
                           " runs past the end of the file (" + std::to_string(size) + " bytes)");
  const std::string_view text(reinterpret_cast<const char*>(b.data() + header_at),
                              static_cast<std::size_t>(header_len));
  auto h = detail::NpyHeaderParser(text, header_at, file).parse();
  if (h.fortran_order)
    throw format_error(file, header_at,
                       "fortran_order True is not supported (save a C-order array)");
  std::optional<DType> dt;
  std::string descr = h.descr;
  if (descr.size() == 3 && descr[0] == '=') descr[0] = '<';  // native = little on our targets
  for (DType t : {DType::f32, DType::f16, DType::f64, DType::i8, DType::u8, DType::i16, DType::i32,
                  DType::i64}) {
    const std::string d = detail::npy_descr(t);
    if (descr == d ||
        (d[0] == '|' && descr.size() == 3 && descr[0] == '<' && descr.substr(1) == d.substr(1)))
      dt = t;
  }
  if (!dt)
    throw format_error(file, header_at,
                       "unsupported dtype descr '" + h.descr +
                           "' (supported: <f4 <f2 <f8 <i4 <i8 <i2 |i1 |u1; big-endian is not)");
  NpyArray a;
  a.dtype = *dt;
  a.shape = h.shape;
  const std::int64_t numel = checked_numel(a.shape);
  if (numel < 0)
    throw format_error(file, header_at,
                       "shape " + lmembed::to_string(a.shape) + " overflows the element count");
  const auto need = byte_size(a.dtype, numel);
  if (!need)
    throw format_error(file, header_at,
                       "shape " + lmembed::to_string(a.shape) + " overflows the byte size");
  const std::uint64_t data_at = header_at + header_len;
  const std::uint64_t have = size - data_at;
  if (static_cast<std::uint64_t>(*need) != have)
    throw format_error(file, data_at,
                       std::string(to_string(a.dtype)) + " shape " + lmembed::to_string(a.shape) +
                           " needs " + std::to_string(*need) + " data bytes, the file has " +
                           std::to_string(have));
  a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(data_at), b.end());
  return a;
}

/// Reads a .npy file; io_error when unreadable, format_error when not a supported npy file.
inline NpyArray read_npy(const std::filesystem::path& path) {
  const MappedFile f = MappedFile::open(path);
  return parse_npy(f.bytes(), path);
}

/// Writes raw C-order little-endian `data` of type `dtype` and `shape` as .npy (atomic).
/// shape_error when the bytes do not match; config_error for dtypes npy cannot hold (BF16 and
/// the quantized types).
inline void write_npy(const std::filesystem::path& path, DType dtype, Shape shape,
                      std::span<const std::byte> data) {
  const char* descr = detail::npy_descr(dtype);
  if (!descr)
    throw config_error(std::string("npy cannot store dtype ") + to_string(dtype) + " (" +
                       path.string() + ")");
  const auto need = byte_size(dtype, TensorView{"", dtype, shape, {}}.numel());
  if (!need || static_cast<std::uint64_t>(*need) != data.size())
    throw shape_error(path.string() + ": npy " + to_string(dtype) + " " +
                      lmembed::to_string(shape) + " needs " +
                      (need ? std::to_string(*need) : std::string("an invalid number of")) +
                      " bytes, got " + std::to_string(data.size()));
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i)
    dict += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
  dict += "), }";
  // numpy pads the header with spaces so that data starts at a multiple of 64, then '\n'.
  std::size_t prefix = 10;
  std::size_t total = prefix + dict.size() + 1;
  int major = 1;
  if ((total + 63) / 64 * 64 - prefix > 65535) {
    major = 2;
    prefix = 12;
    total = prefix + dict.size() + 1;
  }
  const std::size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  std::vector<std::byte> out(prefix + dict.size() + data.size());
  std::memcpy(out.data(), "\x93NUMPY", 6);
  out[6] = static_cast<std::byte>(major);
  out[7] = std::byte{0};
  if (major == 1) {
    const auto n = static_cast<std::uint16_t>(dict.size());
    std::memcpy(out.data() + 8, &n, 2);
  } else {
    const auto n = static_cast<std::uint32_t>(dict.size());
    std::memcpy(out.data() + 8, &n, 4);
  }
  std::memcpy(out.data() + prefix, dict.data(), dict.size());
  if (!data.empty()) std::memcpy(out.data() + prefix + dict.size(), data.data(), data.size());
  write_file_atomic(path, std::span<const std::byte>(out));
}

/// Writes a float matrix as a 2-D float32 .npy [rows, cols] (atomic).
inline void write_npy(const std::filesystem::path& path, const Matrix& m) {
  write_npy(path, DType::f32, {m.rows(), m.cols()},
            std::as_bytes(std::span<const float>(m.data(), static_cast<std::size_t>(m.size()))));
}

}  // namespace lmembed::io
