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

/// Element type of a stored tensor. q4_0 ... q6_k are GGML's block-quantized formats (GGUF only):
/// a tensor row is a whole number of blocks of block_size(t) values, each block_bytes(t) bytes
/// holding F16 scales and packed integers; lmembed/io/quant.hpp decodes them and
/// docs/formats.md gives every layout.
enum class DType {
  f32,
  f16,
  bf16,
  q8_0,
  f64,
  i8,
  i16,
  i32,
  i64,
  u8,
  q4_0,
  q4_1,
  q5_0,
  q5_1,
  q2_k,
  q3_k,
  q4_k,
  q5_k,
  q6_k
};

/// Every DType, in enum order.
inline constexpr DType all_dtypes[] = {
    DType::f32,  DType::f16,  DType::bf16, DType::q8_0, DType::f64,  DType::i8,   DType::i16,
    DType::i32,  DType::i64,  DType::u8,   DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1,
    DType::q2_k, DType::q3_k, DType::q4_k, DType::q5_k, DType::q6_k};

/// Whether t is one of GGML's block-quantized formats (q4_0 ... q6_k, q8_0).
constexpr bool is_quantized(DType t) noexcept {
  switch (t) {
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
      return true;
    default:
      return false;
  }
}

/// The safetensors spelling ("F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64", "U8") and
/// GGML's for the quantized types ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K" ... "Q6_K").
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
    case DType::q4_0:
      return "Q4_0";
    case DType::q4_1:
      return "Q4_1";
    case DType::q5_0:
      return "Q5_0";
    case DType::q5_1:
      return "Q5_1";
    case DType::q2_k:
      return "Q2_K";
    case DType::q3_k:
      return "Q3_K";
    case DType::q4_k:
      return "Q4_K";
    case DType::q5_k:
      return "Q5_K";
    case DType::q6_k:
      return "Q6_K";
  }
  return "?";
}

/// The DType spelled `s` (case-insensitive, as to_string writes it), or nullopt.
inline std::optional<DType> try_parse_dtype(std::string_view s) noexcept {
  std::string u(s);
  for (char& c : u) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  for (DType t : all_dtypes)
    if (u == to_string(t)) return t;
  return std::nullopt;
}

/// The DType spelled `s`; config_error listing the valid names otherwise.
inline DType parse_dtype(std::string_view s) {
  if (auto t = try_parse_dtype(s)) return *t;
  throw config_error(
      "unknown dtype '" + std::string(s) +
      "' (valid: F32, F16, BF16, F64, I8, I16, I32, I64, U8, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
      "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
}

/// Same as parse_dtype (the brief's spelling).
inline DType parse(std::string_view s) {
  return parse_dtype(s);
}

/// Values per storage block: 32 for q4_0, q4_1, q5_0, q5_1, q8_0; 256 for the k-quants q2_k ...
/// q6_k; 1 for the plain types.
constexpr std::int64_t block_size(DType t) noexcept {
  switch (t) {
    case DType::q8_0:
    case DType::q4_0:
    case DType::q4_1:
    case DType::q5_0:
    case DType::q5_1:
      return 32;
    case DType::q2_k:
    case DType::q3_k:
    case DType::q4_k:
    case DType::q5_k:
    case DType::q6_k:
      return 256;
    default:
      return 1;
  }
}

/// Bytes per storage block (GGML's type size: 18 q4_0, 20 q4_1, 22 q5_0, 24 q5_1, 34 q8_0,
/// 84 q2_k, 110 q3_k, 144 q4_k, 176 q5_k, 210 q6_k; the element size for plain types).
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
    case DType::q4_0:
      return 18;
    case DType::q4_1:
      return 20;
    case DType::q5_0:
      return 22;
    case DType::q5_1:
      return 24;
    case DType::q2_k:
      return 84;
    case DType::q3_k:
      return 110;
    case DType::q4_k:
      return 144;
    case DType::q5_k:
      return 176;
    case DType::q6_k:
      return 210;
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
