// lmembed/io/quant.hpp - GGML's block-quantized tensor formats, decoded to float.
//
// One decoder per type turns one block (block_bytes(t) bytes, unaligned) into block_size(t)
// floats; they allocate nothing and never fail, so a quantized GEMM can call them per block or
// per row. The arithmetic is exactly gguf-py's (gguf.quants.dequantize, itself ggml's
// dequantize_row_*): F16 scales widened exactly, then the same float32 products and sums in the
// same order. Every product of scales and integers there is exact in float32 (an F16 scale has
// 11 significant bits, the sub-scales and quants it meets at most 7 and 5 more, e.g. Q6_K's
// int8 scale times its 6-bit signed quant: 23 <= 24 bits), so each value is rounded once, by its
// final add or subtract; a fused multiply-add rounds it the same way, so the result is bit-exact
// whether or not the compiler contracts. Layouts: docs/formats.md.
//
// Non-finite F16 scales (NaN, Inf) would decode to NaN or Inf garbage: first_bad_scale finds
// them; the GGUF reader calls it on every quantized tensor when the file is opened.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "lmembed/io/dtype.hpp"

namespace lmembed::io::quant {

namespace detail {
/// The little-endian F16 at p, as float.
inline float f16_at(const std::byte* p) noexcept {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}
inline std::uint8_t u8_at(const std::byte* p, std::size_t i) noexcept {
  return static_cast<std::uint8_t>(p[i]);
}
/// 6-bit scale and min j (0..7) of a Q4_K/Q5_K block's 12 packed scale bytes.
inline void k_scale_min(const std::byte* s, int j, int& sc, int& mn) noexcept {
  if (j < 4) {
    sc = u8_at(s, j) & 0x3F;
    mn = u8_at(s, j + 4) & 0x3F;
  } else {
    sc = (u8_at(s, j + 4) & 0x0F) | ((u8_at(s, j - 4) >> 2) & 0x30);
    mn = (u8_at(s, j + 4) >> 4) | ((u8_at(s, j) >> 2) & 0x30);
  }
}
}  // namespace detail

/// Q4_0 (18 bytes -> 32 values): F16 d, 16 bytes of nibbles; y[j] = d * (lo(j) - 8) and
/// y[j + 16] = d * (hi(j) - 8).
inline void dequantize_block_q4_0(const std::byte* b, float* y) noexcept {
  const float d = detail::f16_at(b);
  for (int j = 0; j < 16; ++j) {
    const int q = detail::u8_at(b + 2, j);
    y[j] = d * static_cast<float>((q & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((q >> 4) - 8);
  }
}

/// Q4_1 (20 bytes -> 32 values): F16 d, F16 m, 16 bytes of nibbles; y = d * q + m.
inline void dequantize_block_q4_1(const std::byte* b, float* y) noexcept {
  const float d = detail::f16_at(b), m = detail::f16_at(b + 2);
  for (int j = 0; j < 16; ++j) {
    const int q = detail::u8_at(b + 4, j);
    y[j] = d * static_cast<float>(q & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(q >> 4) + m;
  }
}

/// Q5_0 (22 bytes -> 32 values): F16 d, uint32 of fifth bits (bit j for value j), 16 bytes of
/// nibbles; y = d * (q - 16).
inline void dequantize_block_q5_0(const std::byte* b, float* y) noexcept {
  const float d = detail::f16_at(b);
  std::uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  for (int j = 0; j < 16; ++j) {
    const int q = detail::u8_at(b + 6, j);
    const int lo = (q & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (q >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + 16] = d * static_cast<float>(hi - 16);
  }
}

/// Q5_1 (24 bytes -> 32 values): F16 d, F16 m, uint32 of fifth bits, 16 bytes of nibbles;
/// y = d * q + m.
inline void dequantize_block_q5_1(const std::byte* b, float* y) noexcept {
  const float d = detail::f16_at(b), m = detail::f16_at(b + 2);
  std::uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  for (int j = 0; j < 16; ++j) {
    const int q = detail::u8_at(b + 8, j);
    const int lo = (q & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (q >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + 16] = d * static_cast<float>(hi) + m;
  }
}

/// Q8_0 (34 bytes -> 32 values): F16 d, 32 int8; y = q * d.
inline void dequantize_block_q8_0(const std::byte* b, float* y) noexcept {
  const float d = detail::f16_at(b);
  for (int j = 0; j < 32; ++j)
    y[j] = static_cast<float>(static_cast<std::int8_t>(detail::u8_at(b + 2, j))) * d;
}

/// Q2_K (84 bytes -> 256 values): 16 scale bytes (low nibble scale, high nibble min, one per 16
/// values), 64 bytes of 2-bit quants, F16 d, F16 dmin; y = (d * sc) * q - dmin * mn.
inline void dequantize_block_q2_k(const std::byte* b, float* y) noexcept {
  const std::byte* qs = b + 16;
  const float d = detail::f16_at(b + 80), dmin = detail::f16_at(b + 82);
  // Value i = 128 h + 32 s + l holds bits 2s..2s+1 of qs[32 h + l].
  for (int i = 0; i < 256; i += 16) {
    const int sc = detail::u8_at(b, static_cast<std::size_t>(i / 16));
    const float dl = d * static_cast<float>(sc & 0x0F);
    const float ml = dmin * static_cast<float>(sc >> 4);
    const int h = i / 128, s = (i / 32) % 4;
    for (int k = 0; k < 16; ++k) {
      const int l = i % 32 + k;
      const int q = (detail::u8_at(qs, static_cast<std::size_t>(32 * h + l)) >> (2 * s)) & 3;
      y[i + k] = dl * static_cast<float>(q) - ml;
    }
  }
}

/// Q3_K (110 bytes -> 256 values): 32 bytes of high bits (hmask), 64 bytes of 2-bit quants,
/// 12 bytes of packed 6-bit scales (one per 16 values, biased by 32), F16 d;
/// y = (d * (sc - 32)) * q, q = low2 - (high bit clear ? 4 : 0).
inline void dequantize_block_q3_k(const std::byte* b, float* y) noexcept {
  const std::byte* hmask = b;
  const std::byte* qs = b + 32;
  const std::byte* sc = b + 96;
  const float d = detail::f16_at(b + 108);
  for (int i = 0; i < 256; i += 16) {
    const int j = i / 16;  // sub-block: low 4 bits from sc[j % 8], high 2 from sc[8 + j % 4]
    const int lo = (detail::u8_at(sc, static_cast<std::size_t>(j % 8)) >> (4 * (j / 8))) & 0x0F;
    const int hi = (detail::u8_at(sc, static_cast<std::size_t>(8 + j % 4)) >> (2 * (j / 4))) & 3;
    const float dl = d * static_cast<float>(static_cast<std::int8_t>(lo | (hi << 4)) - 32);
    const int h = i / 128, s = (i / 32) % 4, bit = i / 32;
    for (int k = 0; k < 16; ++k) {
      const int l = i % 32 + k;
      const int ql = (detail::u8_at(qs, static_cast<std::size_t>(32 * h + l)) >> (2 * s)) & 3;
      const int hb = (detail::u8_at(hmask, static_cast<std::size_t>(l)) >> bit) & 1;
      y[i + k] = dl * static_cast<float>(ql - ((hb ^ 1) << 2));
    }
  }
}

/// Q4_K (144 bytes -> 256 values): F16 d, F16 dmin, 12 bytes of packed 6-bit scales and mins
/// (one pair per 32 values), 128 bytes of nibbles; y = (d * sc) * q - dmin * mn.
inline void dequantize_block_q4_k(const std::byte* b, float* y) noexcept {
  const float d = detail::f16_at(b), dmin = detail::f16_at(b + 2);
  const std::byte* qs = b + 16;
  for (int j = 0; j < 8; ++j) {  // value 32 j + l is nibble j % 2 of qs[32 (j / 2) + l]
    int sc, mn;
    detail::k_scale_min(b + 4, j, sc, mn);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
    const std::byte* q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l)
      y[32 * j + l] =
          dl * static_cast<float>((detail::u8_at(q, static_cast<std::size_t>(l)) >> shift) & 0x0F) -
          ml;
  }
}

/// Q5_K (176 bytes -> 256 values): as Q4_K with 32 bytes of fifth bits (bit j of qh[l] for
/// value 32 j + l) before the nibbles; y = (d * sc) * q - dmin * mn.
inline void dequantize_block_q5_k(const std::byte* b, float* y) noexcept {
  const float d = detail::f16_at(b), dmin = detail::f16_at(b + 2);
  const std::byte* qh = b + 16;
  const std::byte* qs = b + 48;
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    detail::k_scale_min(b + 4, j, sc, mn);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
    const std::byte* q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l) {
      const auto ul = static_cast<std::size_t>(l);
      const int v =
          ((detail::u8_at(q, ul) >> shift) & 0x0F) | (((detail::u8_at(qh, ul) >> j) & 1) << 4);
      y[32 * j + l] = dl * static_cast<float>(v) - ml;
    }
  }
}

/// Q6_K (210 bytes -> 256 values): 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16
/// int8 scales (one per 16 values), F16 d; y = (d * sc) * (q - 32).
inline void dequantize_block_q6_k(const std::byte* b, float* y) noexcept {
  const std::byte* ql = b;
  const std::byte* qh = b + 128;
  const std::byte* sc = b + 192;
  const float d = detail::f16_at(b + 208);
  // Value i = 128 h + 32 s + l (s 0..3, l 0..31): low nibble (s / 2) of ql[64 h + 32 (s % 2) + l],
  // high bits 2s..2s+1 of qh[32 h + l].
  for (int i = 0; i < 256; i += 16) {
    const float dl = d * static_cast<float>(static_cast<std::int8_t>(
                             detail::u8_at(sc, static_cast<std::size_t>(i / 16))));
    const int h = i / 128, s = (i / 32) % 4;
    for (int k = 0; k < 16; ++k) {
      const int l = i % 32 + k;
      const int lo = (detail::u8_at(ql, static_cast<std::size_t>(64 * h + 32 * (s % 2) + l)) >>
                      (4 * (s / 2))) &
                     0x0F;
      const int hi = (detail::u8_at(qh, static_cast<std::size_t>(32 * h + l)) >> (2 * s)) & 3;
      y[i + k] = dl * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
}

/// Decodes `n_blocks` consecutive blocks of quantized type t from src into dst
/// (n_blocks * block_size(t) floats). Does nothing for non-quantized t.
inline void dequantize_blocks(DType t, const std::byte* src, std::int64_t n_blocks,
                              float* dst) noexcept {
  using Fn = void (*)(const std::byte*, float*) noexcept;
  Fn f = nullptr;
  switch (t) {
    case DType::q4_0:
      f = dequantize_block_q4_0;
      break;
    case DType::q4_1:
      f = dequantize_block_q4_1;
      break;
    case DType::q5_0:
      f = dequantize_block_q5_0;
      break;
    case DType::q5_1:
      f = dequantize_block_q5_1;
      break;
    case DType::q8_0:
      f = dequantize_block_q8_0;
      break;
    case DType::q2_k:
      f = dequantize_block_q2_k;
      break;
    case DType::q3_k:
      f = dequantize_block_q3_k;
      break;
    case DType::q4_k:
      f = dequantize_block_q4_k;
      break;
    case DType::q5_k:
      f = dequantize_block_q5_k;
      break;
    case DType::q6_k:
      f = dequantize_block_q6_k;
      break;
    default:
      return;
  }
  const auto bb = static_cast<std::size_t>(block_bytes(t));
  const auto bs = static_cast<std::size_t>(block_size(t));
  for (std::int64_t i = 0; i < n_blocks; ++i) {
    const auto u = static_cast<std::size_t>(i);
    f(src + u * bb, dst + u * bs);
  }
}

/// Decodes one row of `n` values (a multiple of block_size(t)) of quantized type t.
inline void dequantize_row(DType t, const std::byte* src, std::int64_t n, float* dst) noexcept {
  dequantize_blocks(t, src, n / block_size(t), dst);
}

/// Byte offsets of a block's F16 scales (d, then dmin/m where the type has one).
struct ScaleOffsets {
  int n = 0;                         ///< 0 for non-quantized types, else 1 or 2.
  int at[2] = {0, 0};                ///< Offsets within the block.
  const char* name[2] = {"d", "d"};  ///< GGML's field names.
};

/// Where the F16 scales of a block of type t lie.
constexpr ScaleOffsets scale_offsets(DType t) noexcept {
  switch (t) {
    case DType::q4_0:
    case DType::q5_0:
    case DType::q8_0:
      return {1, {0, 0}, {"d", "d"}};
    case DType::q4_1:
    case DType::q5_1:
      return {2, {0, 2}, {"d", "m"}};
    case DType::q2_k:
      return {2, {80, 82}, {"d", "dmin"}};
    case DType::q3_k:
      return {1, {108, 108}, {"d", "d"}};
    case DType::q4_k:
    case DType::q5_k:
      return {2, {0, 2}, {"d", "dmin"}};
    case DType::q6_k:
      return {1, {208, 208}, {"d", "d"}};
    default:
      return {};
  }
}

/// A block whose F16 scale is NaN or infinite.
struct BadScale {
  std::int64_t block = 0;    ///< Block index within the scanned bytes.
  std::uint64_t offset = 0;  ///< Byte offset of the scale within the scanned bytes.
  const char* field = "d";   ///< Which scale ("d", "m", "dmin").
  std::uint16_t bits = 0;    ///< Its F16 bits.
};

/// The first block of `n_blocks` (type t, at src) with a non-finite F16 scale, or nullopt.
/// Finite scales guarantee finite values (the largest, 65504 * 127 * 32 for Q6_K, fits float).
inline std::optional<BadScale> first_bad_scale(DType t, const std::byte* src,
                                               std::int64_t n_blocks) noexcept {
  const ScaleOffsets so = scale_offsets(t);
  const auto bb = static_cast<std::size_t>(block_bytes(t));
  for (std::int64_t i = 0; i < n_blocks; ++i)
    for (int k = 0; k < so.n; ++k) {
      const std::size_t at = static_cast<std::size_t>(i) * bb + static_cast<std::size_t>(so.at[k]);
      std::uint16_t h;
      std::memcpy(&h, src + at, 2);
      if ((h & 0x7C00u) == 0x7C00u) return BadScale{i, at, so.name[k], h};
    }
  return std::nullopt;
}

}  // namespace lmembed::io::quant
