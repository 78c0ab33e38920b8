// lmembed/cpu/kernels.hpp - the hot CPU kernels, written once, compiled for every ISA level.
//
// Each kernel is a template over a vector-primitive struct of lmembed/cpu/simd.hpp (or, for
// the elementwise loops, plain C++ the compiler vectorizes). The per-level entry points below
// wrap them in a function with that level's target attribute and `flatten`, so the body is
// compiled for AVX-512 in one, for AVX2 + FMA in another and for the translation unit's own ISA
// in the generic one: one binary carries all three, and lmembed/cpu/dispatch.hpp picks one at
// run time. (A template cannot take the target attribute from its template argument, and
// target intrinsics do not inline into a baseline template; the flattened wrapper is what
// gives each instantiation its ISA.)
//
// Numerics: the AVX-512 kernels do the arithmetic of the former -march=native kernels in the
// same order (bit-identical results). AVX2 runs the same GEMM tile as four 4 x 16 sub-tiles
// (16 ymm registers cannot hold an 8 x 32 tile): every C element still sums its k terms in the
// same order with FMA, so the GEMM is bit-identical to AVX-512 too. Generic uses separate
// multiply and add (rounded twice) and std::exp; AVX2's exp differs from AVX-512's below
// 1.6e-38 and above 1.6e38 (see simd::Avx2::exp). The elementwise loops (RMSNorm, RoPE,
// attention rows, column sums) reorder no sum; at the AVX2 / AVX-512 levels the compiler
// contracts a * b + c into FMA (GCC's default for C++, as in the former -march=native build),
// at generic on plain x86-64 it cannot: RoPE and attention differ there by rounding only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "lmembed/cpu/simd.hpp"

#if defined(__GNUC__)
/// Inlines the whole call tree of a per-level entry point, so it runs at that level's ISA.
#define LMEMBED_CPU_FLATTEN __attribute__((flatten))
/// A kernel body: inlined into each entry point even where `flatten` stops at one level
/// (clang), so the vector primitives it calls are inlined there too.
#define LMEMBED_CPU_INLINE __attribute__((always_inline)) inline
#else
#define LMEMBED_CPU_FLATTEN
#define LMEMBED_CPU_INLINE inline
#endif

namespace lmembed::cpu {

/// Rows of C (tokens) one micro-kernel call computes.
inline constexpr int kMr = 8;
/// Columns of C (output features) one micro-kernel call computes (two zmm vectors).
inline constexpr int kNr = 32;

namespace body {

/// C[R x C*V::W] (row stride ldc) = or += A * B over kc, A read from a kMr-row packed panel
/// (stride kMr per k), B from a kNr-column packed panel (stride kNr per k). rows/cols below
/// the tile write only the valid part.
template <class V, int R, int C>
LMEMBED_CPU_INLINE void micro_tile(const float* a, const float* b, std::int64_t kc, float* c,
                                   std::int64_t ldc, bool accumulate, int rows, int cols) {
  using reg = typename V::reg;
  reg acc[R][C];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < C; ++j) V::zero(acc[i][j]);
  for (std::int64_t kk = 0; kk < kc; ++kk) {
    reg bj[C];
    for (int j = 0; j < C; ++j) V::load(bj[j], b + kk * kNr + j * V::W);
    const float* ak = a + kk * kMr;
#if defined(__GNUC__) && !defined(__CUDACC__)  // nvcc's front end warns on GCC's pragma
#pragma GCC unroll 8
#endif
    for (int i = 0; i < R; ++i) {
      reg ai;
      V::set1(ai, ak[i]);
      for (int j = 0; j < C; ++j) V::fmadd(acc[i][j], ai, bj[j]);
    }
  }
  if (rows == R && cols == C * V::W) {
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      for (int j = 0; j < C; ++j) {
        if (accumulate) {
          reg t;
          V::load(t, ci + j * V::W);
          V::add(acc[i][j], t);
        }
        V::store(ci + j * V::W, acc[i][j]);
      }
    }
    return;
  }
  for (int i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < C; ++j) {
      const int n = std::min(V::W, cols - j * V::W);
      if (n <= 0) break;
      if (accumulate) {
        reg t;
        V::load_n(t, ci + j * V::W, n);
        V::add(acc[i][j], t);
      }
      V::store_n(ci + j * V::W, acc[i][j], n);
    }
  }
}

/// The kMr x kNr tile as sub-tiles of R rows x C vectors.
template <class V, int R, int C>
LMEMBED_CPU_INLINE void micro_kernel(const float* a, const float* b, std::int64_t kc, float* c,
                                     std::int64_t ldc, bool accumulate, int rows, int cols) {
  static_assert(kMr % R == 0 && kNr % (C * V::W) == 0, "sub-tiles must cover the tile");
  for (int r0 = 0; r0 < rows; r0 += R)
    for (int c0 = 0; c0 < cols; c0 += C * V::W)
      micro_tile<V, R, C>(a + r0, b + c0, kc, c + r0 * ldc + c0, ldc, accumulate,
                          std::min(R, rows - r0), std::min(C * V::W, cols - c0));
}

/// g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u (SwiGLU's elementwise step).
template <class V>
LMEMBED_CPU_INLINE void silu_mul(float* g, const float* u, std::int64_t n) {
  std::int64_t i = 0;
  if constexpr (V::kExp) {
    for (; i + V::W <= n; i += V::W) {
      typename V::reg x, y;
      V::load(x, g + i);
      V::load(y, u + i);
      V::silu_mul(x, y);
      V::store(g + i, x);
    }
  }
  for (; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

/// cdf[i] = Phi(x[i]) = (1 + erf(x[i] / sqrt 2)) / 2 and, unless pdf is null, pdf[i] =
/// phi(x[i]) = e^(-x^2/2) / sqrt(2 pi): GELU's pieces for the heads (Eigen's packet erf and exp
/// ran there before, compiled for the translation unit's ISA).
/// Phi and phi of one vector: Eigen's 13/8 rational erf (generic_fast_erf_float, which the heads
/// ran before: a few ulp on [-4, 4], +-1 beyond) in Horner form with the level's FMA, and exp.
template <class V>
LMEMBED_CPU_INLINE void gelu_parts_vec(typename V::reg& cdf, typename V::reg& pdf,
                                       const typename V::reg& x) {
  using R = typename V::reg;
  R z, z2, p, q, t;
  V::set1(t, 0.70710678118654752f);
  V::mul(z, x, t);
  V::clamp(z, z, -4.0f, 4.0f);
  V::mul(z2, z, z);
  // Horner steps acc = z2 * acc + c, written out: a lambda here would be a function of the
  // translation unit's ISA, not of this level's.
  static constexpr float kNum[] = {2.77068142495902e-08f,  -2.10102402082508e-06f,
                                   -5.69250639462346e-05f, -7.34990630326855e-04f,
                                   -2.95459980854025e-03f, -1.60960333262415e-02f};
  static constexpr float kDen[] = {-2.13374055278905e-04f, -1.68282697438203e-03f,
                                   -7.37332916720468e-03f, -1.42647390514189e-02f};
  V::set1(p, -2.72614225801306e-10f);
  for (float c : kNum) {
    V::set1(t, c);
    V::fmadd(t, z2, p);
    p = t;
  }
  V::mul(p, z, p);
  V::set1(q, -1.45660718464996e-05f);
  for (float c : kDen) {
    V::set1(t, c);
    V::fmadd(t, z2, q);
    q = t;
  }
  V::div(p, p, q);  // erf(z)
  V::set1(t, 0.5f);
  cdf = t;
  V::fmadd(cdf, p, t);  // 0.5 + 0.5 erf
  V::mul(t, x, x);
  V::set1(q, -0.5f);
  V::mul(t, t, q);
  V::exp(pdf, t);
  V::set1(q, 0.3989422804014327f);
  V::mul(pdf, pdf, q);
}

template <class V>
LMEMBED_CPU_INLINE void gelu_parts(const float* x, float* cdf, float* pdf, std::int64_t n) {
  std::int64_t i = 0;
  if constexpr (V::kExp) {
    for (; i + V::W <= n; i += V::W) {
      typename V::reg v, c, d;
      V::load(v, x + i);
      gelu_parts_vec<V>(c, d, v);
      V::store(cdf + i, c);
      if (pdf) V::store(pdf + i, d);
    }
  }
  for (; i < n; ++i) {
    cdf[i] = 0.5f * (1.0f + std::erf(x[i] * 0.70710678118654752f));
    if (pdf) pdf[i] = std::exp(-0.5f * x[i] * x[i]) * 0.3989422804014327f;
  }
}

/// x[i] = e^(x[i] - shift); returns the sum (in double, as ggml's softmax accumulates).
template <class V>
LMEMBED_CPU_INLINE double exp_shift_sum(float* x, std::int64_t n, float shift) {
  std::int64_t i = 0;
  double sum = 0.0;
  if constexpr (V::kExp) {
    typename V::reg s;
    V::set1(s, shift);
    for (; i + V::W <= n; i += V::W) {
      typename V::reg v, e;
      V::load(v, x + i);
      sum += static_cast<double>(V::exp_shift(e, v, s));
      V::store(x + i, e);
    }
  }
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

/// y = x / rms(x) * w over d values (sum of squares in double, in order, as ggml does).
template <class V>
LMEMBED_CPU_INLINE void rms_norm_row(const float* x, const float* w, float* y, std::int64_t d,
                                     float eps) {
  double ss = 0.0;
  for (std::int64_t i = 0; i < d; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
  for (std::int64_t i = 0; i < d; ++i) y[i] = x[i] * scale * w[i];
}

/// One q|k|v row: adds the bias (when non-null, `width` values), then rotates the first
/// `heads` heads of hd values by (cos, sin) in the rotate-half (NeoX) layout.
template <class V>
LMEMBED_CPU_INLINE void bias_rope_row(float* row, const float* bias, std::int64_t width,
                                      const float* cos, const float* sin, std::int64_t heads,
                                      std::int64_t hd) {
  if (bias)
    for (std::int64_t i = 0; i < width; ++i) row[i] += bias[i];
  const std::int64_t half = hd / 2;
  for (std::int64_t h = 0; h < heads; ++h) {
    float* v = row + h * hd;
    for (std::int64_t i = 0; i < half; ++i) {
      const float x0 = v[i], x1 = v[i + half];
      v[i] = x0 * cos[i] - x1 * sin[i];
      v[i + half] = x0 * sin[i] + x1 * cos[i];
    }
  }
}

/// out[hd] = softmax(scale * q . K^T) V over the first nk keys. kt is K transposed (row c
/// holds component c of every key, stride ldk); v holds key j's value at v + j * ldv; srow is
/// scratch of nk floats. Both products are unit-stride axpy loops.
template <class V>
LMEMBED_CPU_INLINE void attention_row(const float* q, const float* kt, std::int64_t ldk,
                                      const float* v, std::int64_t ldv, std::int64_t nk,
                                      std::int64_t hd, float scale, float* srow, float* out) {
  std::fill(srow, srow + nk, 0.0f);
  for (std::int64_t c = 0; c < hd; ++c) {
    const float qc = q[c] * scale;
    const float* kc = kt + c * ldk;
    for (std::int64_t j = 0; j < nk; ++j) srow[j] += qc * kc[j];
  }
  float mx = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < nk; ++j) mx = std::max(mx, srow[j]);
  const double sum = exp_shift_sum<V>(srow, nk, mx);
  const float inv = static_cast<float>(1.0 / sum);
  std::fill(out, out + hd, 0.0f);
  for (std::int64_t j = 0; j < nk; ++j) {
    const float p = srow[j] * inv;
    const float* vj = v + j * ldv;
    for (std::int64_t c = 0; c < hd; ++c) out[c] += p * vj[c];
  }
}

/// sum[j] += x[i, j] over rows i in order (row stride ld): a bias gradient, column sums of a
/// row-major matrix, vectorized along the row.
template <class V>
LMEMBED_CPU_INLINE void add_col_sums(const float* x, std::int64_t rows, std::int64_t cols,
                                     std::int64_t ld, float* sum) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * ld;
    for (std::int64_t j = 0; j < cols; ++j) sum[j] += xi[j];
  }
}

}  // namespace body

/// The dispatched kernels of one ISA level (see the bodies above for what each computes).
struct Ops {
  /// C tile (kMr x kNr, row stride ldc) = or += packed A panel * packed B panel over kc.
  void (*micro_kernel)(const float* a, const float* b, std::int64_t kc, float* c, std::int64_t ldc,
                       bool accumulate, int rows, int cols);
  /// g = silu(g) * u.
  void (*silu_mul)(float* g, const float* u, std::int64_t n);
  /// x = e^(x - shift), returns the sum in double.
  double (*exp_shift_sum)(float* x, std::int64_t n, float shift);
  /// y = x / rms(x) * w.
  void (*rms_norm_row)(const float* x, const float* w, float* y, std::int64_t d, float eps);
  /// bias add and rotary embedding of one q|k|v row.
  void (*bias_rope_row)(float* row, const float* bias, std::int64_t width, const float* cos,
                        const float* sin, std::int64_t heads, std::int64_t hd);
  /// one query row of softmax attention.
  void (*attention_row)(const float* q, const float* kt, std::int64_t ldk, const float* v,
                        std::int64_t ldv, std::int64_t nk, std::int64_t hd, float scale,
                        float* srow, float* out);
  /// sum[j] += column j of x (rows x cols, row stride ld).
  void (*add_col_sums)(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                       float* sum);
  /// cdf = Phi(x), and pdf = phi(x) unless pdf is null (GELU's pieces).
  void (*gelu_parts)(const float* x, float* cdf, float* pdf, std::int64_t n);
};

// The entry points of one level: each a flattened call of the body with that level's target.
// (A macro only lists the wrappers; the kernels themselves are the templates above.)
#define LMEMBED_CPU_LEVEL_OPS(NS, ATTR, V, R, C)                                                 \
  namespace NS {                                                                                 \
  ATTR LMEMBED_CPU_FLATTEN inline void micro_kernel(const float* a, const float* b,              \
                                                    std::int64_t kc, float* c, std::int64_t ldc, \
                                                    bool acc, int rows, int cols) {              \
    body::micro_kernel<V, R, C>(a, b, kc, c, ldc, acc, rows, cols);                              \
  }                                                                                              \
  ATTR LMEMBED_CPU_FLATTEN inline void silu_mul(float* g, const float* u, std::int64_t n) {      \
    body::silu_mul<V>(g, u, n);                                                                  \
  }                                                                                              \
  ATTR LMEMBED_CPU_FLATTEN inline double exp_shift_sum(float* x, std::int64_t n, float s) {      \
    return body::exp_shift_sum<V>(x, n, s);                                                      \
  }                                                                                              \
  ATTR LMEMBED_CPU_FLATTEN inline void rms_norm_row(const float* x, const float* w, float* y,    \
                                                    std::int64_t d, float eps) {                 \
    body::rms_norm_row<V>(x, w, y, d, eps);                                                      \
  }                                                                                              \
  ATTR LMEMBED_CPU_FLATTEN inline void bias_rope_row(float* row, const float* bias,              \
                                                     std::int64_t width, const float* cs,        \
                                                     const float* sn, std::int64_t heads,        \
                                                     std::int64_t hd) {                          \
    body::bias_rope_row<V>(row, bias, width, cs, sn, heads, hd);                                 \
  }                                                                                              \
  ATTR LMEMBED_CPU_FLATTEN inline void attention_row(const float* q, const float* kt,            \
                                                     std::int64_t ldk, const float* v,           \
                                                     std::int64_t ldv, std::int64_t nk,          \
                                                     std::int64_t hd, float scale, float* srow,  \
                                                     float* out) {                               \
    body::attention_row<V>(q, kt, ldk, v, ldv, nk, hd, scale, srow, out);                        \
  }                                                                                              \
  ATTR LMEMBED_CPU_FLATTEN inline void add_col_sums(const float* x, std::int64_t rows,           \
                                                    std::int64_t cols, std::int64_t ld,          \
                                                    float* sum) {                                \
    body::add_col_sums<V>(x, rows, cols, ld, sum);                                               \
  }                                                                                              \
  ATTR LMEMBED_CPU_FLATTEN inline void gelu_parts(const float* x, float* cdf, float* pdf,        \
                                                  std::int64_t n) {                              \
    body::gelu_parts<V>(x, cdf, pdf, n);                                                         \
  }                                                                                              \
  /** This level's table. */                                                                     \
  inline constexpr Ops table{&micro_kernel,  &silu_mul,      &exp_shift_sum, &rms_norm_row,      \
                             &bias_rope_row, &attention_row, &add_col_sums,  &gelu_parts};       \
  }

#define LMEMBED_CPU_NO_ATTR
/// Portable kernels, compiled for the translation unit's ISA (SSE2 on plain x86-64).
LMEMBED_CPU_LEVEL_OPS(generic, LMEMBED_CPU_NO_ATTR, simd::Generic, 8, 2)
#if LMEMBED_CPU_X86
/// AVX2 + FMA kernels (4 x 16 GEMM sub-tiles: 8 ymm accumulators).
LMEMBED_CPU_LEVEL_OPS(avx2, [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]], simd::Avx2, 4, 2)
/// AVX-512 kernels (one 8 x 32 tile: 16 zmm accumulators).
LMEMBED_CPU_LEVEL_OPS(avx512, [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]], simd::Avx512, 8, 2)
#endif
#undef LMEMBED_CPU_NO_ATTR
#undef LMEMBED_CPU_LEVEL_OPS

}  // namespace lmembed::cpu
