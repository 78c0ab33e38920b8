// lmembed/cpu/qkernels.hpp - integer GEMM kernels for weights kept in GGML's Q8_0 / Q4_0 / Q4_1.
//
// Y[M, N] = X[M, K] W[N, K]^T with W in 32-value blocks (int8 or uint4 values, one f32 scale per
// block, plus a min for Q4_1) and X quantized per 32-value block to int8 with an f32 scale, as
// llama.cpp's Q8_0/Q8_1 activations: each block's dot product is exact in int32, then scaled by
// d_w * d_x and summed in f32.
//
// Packed weight layout (backbone/qgemm.hpp builds it once at load): panels of kQNr = 16 output
// columns; within a panel, block b of the 16 columns is 8 groups of 4 consecutive k, each group
// 64 bytes with byte 4j + r = value (k = 4g + r) of column j. An int32 lane of a zmm (a ymm
// holds 8 of them) is then one column's 4-value partial dot, and one broadcast int32 of the
// activation row feeds all 16 columns: VNNI's dpbusd (u8 x s8, 4 products per lane) or
// maddubs + madd do 64 multiply-adds per instruction, no horizontal sums. Q4 types pack two
// groups per 64 bytes (group 2h in the low nibbles, 2h + 1 in the high ones: one and / shift
// unpacks them). Scales: 16 f32 per (panel, block), and the same for Q4_1's mins.
//
// Signs: dpbusd / maddubs multiply unsigned by signed bytes. Q4 nibbles are unsigned (0..15),
// so they go straight in against the signed activations; Q4_0's offset of 8 is folded into the
// int32 accumulator's start value (-8 * sum of the block's activation quants), Q4_1's min is
// one f32 multiply-add per block (m * d_x * sum of quants). Q8_0 is signed x signed: |w| times x
// with w's sign (the usual trick; |w| <= 128, |x| <= 127, so maddubs' int16 pair sums stay below
// 32767 and never saturate).
//
// Levels (lmembed/cpu/dispatch.hpp): AVX-512 with VNNI (dpbusd) when the CPU has it, else
// AVX-512BW (maddubs), AVX2 (maddubs), and portable scalar code (any CPU, aarch64 included).
// Same packed layout at every level; the integer dot products are exact everywhere, so levels
// differ only by the f32 rounding of the block sums (FMA or not).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "lmembed/cpu/dispatch.hpp"
#include "lmembed/cpu/kernels.hpp"
#include "lmembed/cpu/simd.hpp"

namespace lmembed::cpu {

/// Values per quantization block (weights and activations).
inline constexpr int kQBlock = 32;
/// Output columns per packed weight panel.
inline constexpr int kQNr = 16;
/// Rows of X one quantized micro-kernel call computes (activation buffers are padded to it).
inline constexpr int kQMr = 8;

/// The block formats with integer kernels.
enum class QType : std::uint8_t {
  q8_0,  ///< int8 values, scale d: w = d * q
  q4_0,  ///< uint4 values, scale d: w = d * (q - 8)
  q4_1,  ///< uint4 values, scale d and min m: w = d * q + m
};

/// Bytes of one (panel, block) of packed values: 16 columns x 32 values, 8 or 4 bits each.
constexpr int qblock_bytes(QType t) {
  return t == QType::q8_0 ? kQNr * kQBlock : kQNr * kQBlock / 2;
}

/// Activations quantized per block: row i's block b has int8 values q[i * ldq + 32 b ...],
/// scale d[i * ldb + b], sum of its quants s[...] and d * s in ds[...].
struct QActs {
  const std::int8_t* q = nullptr;   ///< int8 values, row stride ldq
  const float* d = nullptr;         ///< per-block scales, row stride ldb
  const std::int32_t* s = nullptr;  ///< per-block sums of q (Q4_0's offset)
  const float* ds = nullptr;        ///< per-block d * s (Q4_1's min)
  std::int64_t ldq = 0;             ///< bytes per row
  std::int64_t ldb = 0;             ///< blocks per row
};

namespace qbody {

/// Quantizes rows x rows of k floats (row stride lda; k a multiple of 32) per 32-block: d =
/// max|x| / 127, q = nearest integer to x / d (ties to even; 0 for an all-zero block), s = sum
/// q, ds = d * s. |x - d q| <= d / 2 for every value.
LMEMBED_CPU_INLINE void quantize_rows(const float* a, std::int64_t lda, std::int64_t rows,
                                      std::int64_t k, std::int8_t* q, float* d, std::int32_t* s,
                                      float* ds) {
  const std::int64_t nb = k / kQBlock;
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* x = a + i * lda;
    for (std::int64_t b = 0; b < nb; ++b) {
      const float* xb = x + b * kQBlock;
      float amax = 0.0f;
      for (int j = 0; j < kQBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
      const float db = amax / 127.0f;
      const float id = db > 0.0f ? 1.0f / db : 0.0f;
      std::int8_t* qb = q + i * k + b * kQBlock;
      std::int32_t sum = 0;
      for (int j = 0; j < kQBlock; ++j) {
        const int v = static_cast<int>(std::nearbyint(xb[j] * id));
        qb[j] = static_cast<std::int8_t>(v);
        sum += v;
      }
      d[i * nb + b] = db;
      s[i * nb + b] = sum;
      ds[i * nb + b] = db * static_cast<float>(sum);
    }
  }
}

/// quantize_rows with a vector block quantizer V::quantize_block (same results).
template <class V>
LMEMBED_CPU_INLINE void quantize_rows_v(const float* a, std::int64_t lda, std::int64_t rows,
                                        std::int64_t k, std::int8_t* q, float* d, std::int32_t* s,
                                        float* ds) {
  const std::int64_t nb = k / kQBlock;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t b = 0; b < nb; ++b) {
      float db;
      const std::int32_t sum =
          V::quantize_block(a + i * lda + b * kQBlock, q + i * k + b * kQBlock, db);
      d[i * nb + b] = db;
      s[i * nb + b] = sum;
      ds[i * nb + b] = db * static_cast<float>(sum);
    }
}

/// Portable kernel: C[rows, cols] (=|+=) X W^T over nb blocks of one panel.
template <QType T>
LMEMBED_CPU_INLINE void qkernel_generic(const std::uint8_t* wq, const float* wd, const float* wm,
                                        std::int64_t nb, const QActs& x, float* c, std::int64_t ldc,
                                        bool accumulate, int rows, int cols) {
  (void)wm;
  constexpr int QB = qblock_bytes(T);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      float acc = 0.0f;
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::uint8_t* wb = wq + b * QB;
        const std::int8_t* xb = x.q + i * x.ldq + b * kQBlock;
        std::int32_t dot = 0;
        for (int g = 0; g < 8; ++g)
          for (int r = 0; r < 4; ++r) {
            int w;
            if constexpr (T == QType::q8_0)
              w = static_cast<std::int8_t>(wb[g * 64 + 4 * j + r]);
            else
              w = (wb[(g / 2) * 64 + 4 * j + r] >> (4 * (g % 2))) & 0x0F;
            dot += w * xb[4 * g + r];
          }
        if constexpr (T == QType::q4_0) dot -= 8 * x.s[i * x.ldb + b];
        acc += static_cast<float>(dot) * (x.d[i * x.ldb + b] * wd[b * kQNr + j]);
        if constexpr (T == QType::q4_1) acc += wm[b * kQNr + j] * x.ds[i * x.ldb + b];
      }
      float& out = c[i * ldc + j];
      out = accumulate ? out + acc : acc;
    }
}

/// Vector kernel for R rows x one panel (C vectors of V::W columns): see the file comment.
template <class V, QType T, int R, int C>
LMEMBED_CPU_INLINE void qtile(const std::uint8_t* wq, const float* wd, const float* wm,
                              std::int64_t nb, const QActs& x, float* c, std::int64_t ldc,
                              bool accumulate, int rows, int cols) {
  static_assert(C * V::W == kQNr, "one tile covers a panel");
  (void)wm;
  constexpr int QB = qblock_bytes(T);
  using freg = typename V::reg;
  using ireg = typename V::ireg;
  freg acc[R][C];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < C; ++j) V::zero(acc[i][j]);
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::uint8_t* wb = wq + b * QB;
    ireg ai[R][C];
    for (int i = 0; i < R; ++i) {
      const std::int32_t init = T == QType::q4_0 ? -8 * x.s[i * x.ldb + b] : 0;
      for (int j = 0; j < C; ++j) V::iset1(ai[i][j], init);
    }
    for (int h = 0; h < 4; ++h) {
      ireg w0[C], w1[C];
      for (int j = 0; j < C; ++j) {
        if constexpr (T == QType::q8_0) {
          V::iload(w0[j], wb + (2 * h) * 64 + j * V::W * 4);
          V::iload(w1[j], wb + (2 * h + 1) * 64 + j * V::W * 4);
        } else {
          ireg v;
          V::iload(v, wb + h * 64 + j * V::W * 4);
          V::nib_lo(w0[j], v);
          V::nib_hi(w1[j], v);
        }
      }
      for (int i = 0; i < R; ++i) {
        const std::int8_t* xg = x.q + i * x.ldq + b * kQBlock + 8 * h;
        ireg x0, x1;
        V::bcast4(x0, xg);
        V::bcast4(x1, xg + 4);
        for (int j = 0; j < C; ++j) {
          if constexpr (T == QType::q8_0) {
            V::dot_ss(ai[i][j], w0[j], x0);
            V::dot_ss(ai[i][j], w1[j], x1);
          } else {
            V::dot_us(ai[i][j], w0[j], x0);
            V::dot_us(ai[i][j], w1[j], x1);
          }
        }
      }
    }
    for (int j = 0; j < C; ++j) {
      freg dw;
      V::load(dw, wd + b * kQNr + j * V::W);
      freg mw = dw;  // Q4_1's mins (unused otherwise)
      if constexpr (T == QType::q4_1) V::load(mw, wm + b * kQNr + j * V::W);
      for (int i = 0; i < R; ++i) {
        freg s;
        V::set1(s, x.d[i * x.ldb + b]);
        V::mul(s, dw);
        V::cvt_fmadd(acc[i][j], ai[i][j], s);
        if constexpr (T == QType::q4_1) {
          freg t;
          V::set1(t, x.ds[i * x.ldb + b]);
          V::fmadd(acc[i][j], mw, t);
        }
      }
    }
  }
  for (int i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < C; ++j) {
      const int n = std::min(V::W, cols - j * V::W);
      if (n <= 0) break;
      if (accumulate) {
        freg t;
        V::load_n(t, ci + j * V::W, n);
        V::add(acc[i][j], t);
      }
      V::store_n(ci + j * V::W, acc[i][j], n);
    }
  }
}

/// kQMr rows (valid: `rows`; the activation buffer is padded to kQMr) as sub-tiles of R rows.
template <class V, QType T, int R, int C>
LMEMBED_CPU_INLINE void qkernel(const std::uint8_t* wq, const float* wd, const float* wm,
                                std::int64_t nb, const QActs& x, float* c, std::int64_t ldc,
                                bool accumulate, int rows, int cols) {
  for (int r0 = 0; r0 < rows; r0 += R) {
    QActs xr = x;
    xr.q += r0 * x.ldq;
    xr.d += r0 * x.ldb;
    xr.s += r0 * x.ldb;
    xr.ds += r0 * x.ldb;
    qtile<V, T, R, C>(wq, wd, wm, nb, xr, c + r0 * ldc, ldc, accumulate, std::min(R, rows - r0),
                      cols);
  }
}

}  // namespace qbody

#if LMEMBED_CPU_X86

#define LMEMBED_CPU_AVX512VNNI_TARGET LMEMBED_CPU_AVX512_TARGET ",avx512vnni"

namespace simd {

/// AVX2 integer primitives for the quantized kernels (8 int32 lanes = 8 columns).
struct QAvx2 : Avx2 {
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void iset1(ireg& r, std::int32_t v) {
    r = _mm256_set1_epi32(v);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void iload(ireg& r, const std::uint8_t* p) {
    r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void bcast4(ireg& r, const std::int8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    r = _mm256_set1_epi32(v);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void nib_lo(ireg& r, const ireg& v) {
    r = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void nib_hi(ireg& r, const ireg& v) {
    r = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
  }
  /// acc += per lane sum of 4 u8(u) * s8(s) products (int16 pairs: |sum| <= 2 * 255 * 127 would
  /// saturate, but u is a nibble here or |w| <= 128 against |x| <= 127: at most 32,512).
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void dot_us(ireg& acc, const ireg& u,
                                                              const ireg& s) {
    acc =
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
  /// acc += per lane sum of 4 s8(w) * s8(x): |w| times x with w's sign.
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void dot_ss(ireg& acc, const ireg& w,
                                                              const ireg& x) {
    const ireg u = _mm256_abs_epi8(w), s = _mm256_sign_epi8(x, w);
    dot_us(acc, u, s);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void mul(reg& a, const reg& b) {
    a = _mm256_mul_ps(a, b);
  }
  /// One block of qbody::quantize_rows, vectorized: the same IEEE operations (max of |x|,
  /// amax / 127, 1 / d, x * id rounded to nearest even), so the same quants bit for bit.
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static std::int32_t quantize_block(const float* x,
                                                                              std::int8_t* q,
                                                                              float& d) {
    const reg sign = _mm256_set1_ps(-0.0f);
    reg v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + 8 * i);
    reg m =
        _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                      _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    d = amax / 127.0f;
    const reg id = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
    ireg qi[4];
    for (int i = 0; i < 4; ++i) qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
    const ireg sum4 =
        _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum4), _mm256_extracti128_si256(sum4, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    // int32 -> int8 (|q| <= 127: no saturation); packs interleave 128-bit lanes, the
    // permutation restores the order.
    const ireg p =
        _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return _mm_cvtsi128_si32(s);
  }
  /// acc += float(i) * s.
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void cvt_fmadd(reg& acc, const ireg& i,
                                                                 const reg& s) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc);
  }
};

/// AVX-512BW integer primitives (16 int32 lanes = a whole panel), maddubs + madd.
struct QAvx512 : Avx512 {
  using ireg = __m512i;
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void iset1(ireg& r, std::int32_t v) {
    r = _mm512_set1_epi32(v);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void iload(ireg& r, const std::uint8_t* p) {
    r = _mm512_loadu_si512(p);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void bcast4(ireg& r, const std::int8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    r = _mm512_set1_epi32(v);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void nib_lo(ireg& r, const ireg& v) {
    r = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void nib_hi(ireg& r, const ireg& v) {
    r = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
  }
  /// acc += per lane sum of 4 u8 * s8 products (no saturation: see QAvx2::dot_us).
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void dot_us(ireg& acc, const ireg& u,
                                                                const ireg& s) {
    acc =
        _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
  }
  /// x with the sign of w (0 where w is 0 does not matter: |w| is 0 there).
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void sign(ireg& r, const ireg& x,
                                                              const ireg& w) {
    r = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void dot_ss(ireg& acc, const ireg& w,
                                                                const ireg& x) {
    ireg s;
    sign(s, x, w);
    dot_us(acc, _mm512_abs_epi8(w), s);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void mul(reg& a, const reg& b) {
    a = _mm512_mul_ps(a, b);
  }
  /// One block of qbody::quantize_rows, vectorized (same operations, same quants bit for bit).
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static std::int32_t quantize_block(const float* x,
                                                                                std::int8_t* q,
                                                                                float& d) {
    const reg a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    d = amax / 127.0f;
    const reg id = _mm512_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
    const ireg qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, id));
    const ireg qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, id));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(qb));
    return _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void cvt_fmadd(reg& acc, const ireg& i,
                                                                   const reg& s) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc);
  }
};

/// AVX-512 VNNI: the same with dpbusd (4 u8 * s8 products added into each int32 lane, exact).
struct QAvx512Vnni : QAvx512 {
  [[gnu::target(LMEMBED_CPU_AVX512VNNI_TARGET)]] static void dot_us(ireg& acc, const ireg& u,
                                                                    const ireg& s) {
    acc = _mm512_dpbusd_epi32(acc, u, s);
  }
  [[gnu::target(LMEMBED_CPU_AVX512VNNI_TARGET)]] static void dot_ss(ireg& acc, const ireg& w,
                                                                    const ireg& x) {
    ireg s;
    sign(s, x, w);
    acc = _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(w), s);
  }
};

}  // namespace simd

#endif  // LMEMBED_CPU_X86

/// The quantized kernels of one level.
struct QOps {
  const char* name;  ///< "generic", "avx2", "avx512bw", "avx512vnni"
  /// Quantizes activation rows per 32-block (see qbody::quantize_rows).
  void (*quantize_rows)(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t k,
                        std::int8_t* q, float* d, std::int32_t* s, float* ds);
  /// C[rows <= kQMr, cols <= kQNr] (=|+=) X W^T over nb blocks of one packed panel of type t.
  void (*kernel)(QType t, const std::uint8_t* wq, const float* wd, const float* wm, std::int64_t nb,
                 const QActs& x, float* c, std::int64_t ldc, bool accumulate, int rows, int cols);
};

// Per-level entry points: flattened calls of the bodies with that level's target.
#define LMEMBED_CPU_QOPS(NS, NAME, ATTR, KERNEL, QUANT)                                         \
  namespace NS {                                                                                \
  ATTR LMEMBED_CPU_FLATTEN inline void quantize_rows(const float* a, std::int64_t lda,          \
                                                     std::int64_t rows, std::int64_t k,         \
                                                     std::int8_t* q, float* d, std::int32_t* s, \
                                                     float* ds) {                               \
    QUANT(a, lda, rows, k, q, d, s, ds);                                                        \
  }                                                                                             \
  ATTR LMEMBED_CPU_FLATTEN inline void kernel(QType t, const std::uint8_t* wq, const float* wd, \
                                              const float* wm, std::int64_t nb, const QActs& x, \
                                              float* c, std::int64_t ldc, bool acc, int rows,   \
                                              int cols) {                                       \
    switch (t) {                                                                                \
      case QType::q8_0:                                                                         \
        KERNEL(QType::q8_0)(wq, wd, wm, nb, x, c, ldc, acc, rows, cols);                        \
        break;                                                                                  \
      case QType::q4_0:                                                                         \
        KERNEL(QType::q4_0)(wq, wd, wm, nb, x, c, ldc, acc, rows, cols);                        \
        break;                                                                                  \
      case QType::q4_1:                                                                         \
        KERNEL(QType::q4_1)(wq, wd, wm, nb, x, c, ldc, acc, rows, cols);                        \
        break;                                                                                  \
    }                                                                                           \
  }                                                                                             \
  /** This level's table. */                                                                    \
  inline constexpr QOps qtable{NAME, &quantize_rows, &kernel};                                  \
  }

#define LMEMBED_CPU_NO_ATTR
#define LMEMBED_CPU_QK_GENERIC(T) qbody::qkernel_generic<T>
/// Portable quantized kernels.
LMEMBED_CPU_QOPS(qgeneric, "generic", LMEMBED_CPU_NO_ATTR, LMEMBED_CPU_QK_GENERIC,
                 qbody::quantize_rows)
#if LMEMBED_CPU_X86
// Sub-tiles: AVX2 2 rows x 2 ymm (8 + 8 accumulators in 16 ymm registers would spill), AVX-512
// 8 rows x 1 zmm (16 of the 32 zmm registers hold the int32 and f32 accumulators).
#define LMEMBED_CPU_QK_AVX2(T) qbody::qkernel<simd::QAvx2, T, 2, 2>
#define LMEMBED_CPU_QK_AVX512(T) qbody::qkernel<simd::QAvx512, T, 8, 1>
#define LMEMBED_CPU_QK_VNNI(T) qbody::qkernel<simd::QAvx512Vnni, T, 8, 1>
/// AVX2 quantized kernels (maddubs).
LMEMBED_CPU_QOPS(qavx2, "avx2", [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]], LMEMBED_CPU_QK_AVX2,
                 qbody::quantize_rows_v<simd::QAvx2>)
/// AVX-512BW quantized kernels (maddubs), for AVX-512 CPUs without VNNI.
LMEMBED_CPU_QOPS(qavx512, "avx512bw", [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]],
                 LMEMBED_CPU_QK_AVX512, qbody::quantize_rows_v<simd::QAvx512>)
/// AVX-512 VNNI quantized kernels (dpbusd).
LMEMBED_CPU_QOPS(qavx512vnni, "avx512vnni", [[gnu::target(LMEMBED_CPU_AVX512VNNI_TARGET)]],
                 LMEMBED_CPU_QK_VNNI, qbody::quantize_rows_v<simd::QAvx512>)
#undef LMEMBED_CPU_QK_AVX2
#undef LMEMBED_CPU_QK_AVX512
#undef LMEMBED_CPU_QK_VNNI
#endif
#undef LMEMBED_CPU_QK_GENERIC
#undef LMEMBED_CPU_NO_ATTR
#undef LMEMBED_CPU_QOPS

/// The quantized kernel table of level `l`: at avx512, the VNNI kernels when `vnni` (callers
/// check features().avx512vnni), else the AVX-512BW ones. Like table(), any level may be
/// asked for; running one the CPU lacks is the caller's risk.
inline const QOps& qtable(Level l, bool vnni) {
#if LMEMBED_CPU_X86
  if (l == Level::avx512) return vnni ? qavx512vnni::qtable : qavx512::qtable;
  if (l == Level::avx2) return qavx2::qtable;
#endif
  (void)l;
  (void)vnni;
  return qgeneric::qtable;
}

/// The quantized kernels of the current level (VNNI where the CPU has it); same errors as ops().
inline const QOps& qops() {
  return qtable(level(), features().avx512vnni);
}

}  // namespace lmembed::cpu
