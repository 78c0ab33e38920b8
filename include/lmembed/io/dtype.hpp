// lmembed/io/dtype.hpp - element types of stored tensors and the half-precision conversions.
//
// One enum for all formats (GGUF, safetensors, npy): readers map their own type codes onto it,
// so the code after the reader never cares where a tensor came from.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "lmembed/core/error.hpp"

namespace lmembed::io {

/// Element type of a stored tensor. q8_0 is GGML's block format: blocks of 32 values, each an
/// F16 scale followed by 32 int8 (34 bytes per block).
enum class DType { f32, f16, bf16, q8_0, f64, i8, i16, i32, i64, u8 };

/// The safetensors spelling: "F32", "F16", "BF16", "Q8_0", "F64", "I8", "I16", "I32", "I64", "U8".
inline const char* to_string(DType t) noexcept {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
    case DType::q8_0:
      return "Q8_0";
    case DType::f64:
      return "F64";
    case DType::i8:
      return "I8";
    case DType::i16:
      return "I16";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
  }
  return "?";
}

/// The DType spelled `s` (case-insensitive, as to_string writes it), or nullopt.
inline std::optional<DType> try_parse_dtype(std::string_view s) noexcept {
  std::string u(s);
  for (char& c : u) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::q8_0, DType::f64, DType::i8,
                  DType::i16, DType::i32, DType::i64, DType::u8})
    if (u == to_string(t)) return t;
  return std::nullopt;
}

/// The DType spelled `s`; config_error listing the valid names otherwise.
inline DType parse_dtype(std::string_view s) {
  if (auto t = try_parse_dtype(s)) return *t;
  throw config_error("unknown dtype '" + std::string(s) +
                     "' (valid: F32, F16, BF16, Q8_0, F64, I8, I16, I32, I64, U8)");
}

/// Same as parse_dtype (the brief's spelling).
inline DType parse(std::string_view s) {
  return parse_dtype(s);
}

/// Values per storage block (32 for q8_0, 1 otherwise).
constexpr std::int64_t block_size(DType t) noexcept {
  return t == DType::q8_0 ? 32 : 1;
}

/// Bytes per storage block (34 for q8_0; the element size otherwise).
constexpr std::int64_t block_bytes(DType t) noexcept {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
    case DType::q8_0:
      return 34;
    case DType::f64:
      return 8;
    case DType::i8:
      return 1;
    case DType::i16:
      return 2;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
    case DType::u8:
      return 1;
  }
  return 1;
}

/// Bytes that `numel` values of type t take, or nullopt when numel is negative, not a whole
/// number of blocks, or the size overflows int64.
inline std::optional<std::int64_t> byte_size(DType t, std::int64_t numel) noexcept {
  if (numel < 0 || numel % block_size(t) != 0) return std::nullopt;
  std::int64_t out = 0;
  if (__builtin_mul_overflow(numel / block_size(t), block_bytes(t), &out)) return std::nullopt;
  return out;
}

/// IEEE binary16 bits to float (exact; subnormals, infinities and NaN kept). Branch-free so
/// that conversion loops vectorize: normal numbers are re-biased by a float multiply, and
/// subnormals come out of a float subtraction against a magic constant.
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
  const std::uint32_t sign = w & 0x80000000u;
  const std::uint32_t two_w = w + w;  // exponent and mantissa, sign shifted out
  // Normal (and inf/NaN): shift into float position, add (127 - 15) + 112 to the exponent,
  // then scale by 2^-112 so that exponent 31 lands on float's 255.
  const float normalized =
      std::bit_cast<float>((two_w >> 4) + (0xE0u << 23)) * std::bit_cast<float>(0x7800000u);
  // Subnormal: mantissa m as the low bits of 0.5 * 2^0 plus m * 2^-24, minus 0.5.
  const float denormalized = std::bit_cast<float>((two_w >> 17) | (126u << 23)) - 0.5f;
  const std::uint32_t bits = two_w < (1u << 27) ? std::bit_cast<std::uint32_t>(denormalized)
                                                : std::bit_cast<std::uint32_t>(normalized);
  return std::bit_cast<float>(sign | bits);
}

/// float to IEEE binary16 bits, rounding to nearest even (overflow gives infinity; NaN stays NaN).
inline std::uint16_t float_to_half(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u)  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u : 0u));
  if (ax >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds to inf
  if (ax < 0x38800000u) {               // result is subnormal or zero
    if (ax < 0x33000000u) return sign;  // below half the smallest subnormal
    const std::uint32_t e = ax >> 23;
    const std::uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126 - e;  // 14..24 (to a 10-bit subnormal mantissa)
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t r = ((ax >> 13) - ((127 - 15) << 10));
  const std::uint32_t rem = ax & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<std::uint16_t>(sign | r);
}

/// bfloat16 bits to float (exact).
inline float bf16_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// float to bfloat16 bits, rounding to nearest even (NaN stays a quiet NaN).
inline std::uint16_t float_to_bf16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

}  // namespace lmembed::io
