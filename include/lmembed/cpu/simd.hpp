// lmembed/cpu/simd.hpp - the few vector primitives the dispatched kernels are written in.
//
// One struct per instruction-set level (Generic, Avx2, Avx512), all with the same static
// members, so that a kernel body (lmembed/cpu/kernels.hpp) is written once as a template over
// it. Every primitive that uses an intrinsic carries its level's target attribute, and passes
// vectors by reference, never by value: a kernel template is also compiled (never run) as a
// baseline-ISA function, and vector arguments by value between functions of different ISAs
// change the calling convention (clang refuses them; GCC at -O0 passes garbage). The
// per-level entry points in kernels.hpp are `flatten`, so at -O1 and above all of this inlines
// into straight AVX2 / AVX-512 code.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
/// 1 where the AVX2 and AVX-512 kernels are compiled (GCC or clang on x86); elsewhere only the
/// portable kernels exist (aarch64, MSVC, ...).
#define LMEMBED_CPU_X86 1
#include <immintrin.h>
#else
#define LMEMBED_CPU_X86 0
#endif

namespace lmembed::cpu::simd {

/// Portable "vector" of 16 floats as plain loops (the compiler vectorizes them for the
/// translation unit's ISA). Multiply-add is a multiply and an add, as the portable kernels
/// always were: rounded twice on baseline x86-64 (no FMA there; a TU built with FMA may
/// contract them).
struct Generic {
  static constexpr int W = 16;         ///< floats per vector
  static constexpr bool kExp = false;  ///< no vector exp: the kernels call std::exp
  struct reg {
    float v[W];
  };
  static void zero(reg& r) {
    for (float& x : r.v) x = 0.0f;
  }
  static void set1(reg& r, float s) {
    for (float& x : r.v) x = s;
  }
  static void load(reg& r, const float* p) {
    for (int i = 0; i < W; ++i) r.v[i] = p[i];
  }
  static void store(float* p, const reg& r) {
    for (int i = 0; i < W; ++i) p[i] = r.v[i];
  }
  /// Lanes [0, n) from p, the rest 0.
  static void load_n(reg& r, const float* p, int n) {
    for (int i = 0; i < W; ++i) r.v[i] = i < n ? p[i] : 0.0f;
  }
  /// Lanes [0, n) to p.
  static void store_n(float* p, const reg& r, int n) {
    for (int i = 0; i < n; ++i) p[i] = r.v[i];
  }
  static void add(reg& acc, const reg& x) {
    for (int i = 0; i < W; ++i) acc.v[i] += x.v[i];
  }
  /// acc += a * b.
  static void fmadd(reg& acc, const reg& a, const reg& b) {
    for (int i = 0; i < W; ++i) acc.v[i] += a.v[i] * b.v[i];
  }
};

#if LMEMBED_CPU_X86

#define LMEMBED_CPU_AVX2_TARGET "avx2,fma"
#define LMEMBED_CPU_AVX512_TARGET LMEMBED_CPU_AVX2_TARGET ",avx512f,avx512bw,avx512vl,avx512dq"

/// AVX2 + FMA: 8 floats per ymm, fused multiply-add.
struct Avx2 {
  static constexpr int W = 8;         ///< floats per vector
  static constexpr bool kExp = true;  ///< exp below
  using reg = __m256;
  using ireg = __m256i;
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void zero(reg& r) { r = _mm256_setzero_ps(); }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void set1(reg& r, float s) {
    r = _mm256_set1_ps(s);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void load(reg& r, const float* p) {
    r = _mm256_loadu_ps(p);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void store(float* p, const reg& r) {
    _mm256_storeu_ps(p, r);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static ireg mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void load_n(reg& r, const float* p, int n) {
    r = _mm256_maskload_ps(p, mask(n));
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void store_n(float* p, const reg& r, int n) {
    _mm256_maskstore_ps(p, mask(n), r);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void add(reg& acc, const reg& x) {
    acc = _mm256_add_ps(acc, x);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void fmadd(reg& acc, const reg& a, const reg& b) {
    acc = _mm256_fmadd_ps(a, b, acc);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void mul(reg& y, const reg& a, const reg& b) {
    y = _mm256_mul_ps(a, b);
  }
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void div(reg& y, const reg& a, const reg& b) {
    y = _mm256_div_ps(a, b);
  }
  /// y = max(min(x, hi), lo).
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void clamp(reg& y, const reg& x, float lo,
                                                             float hi) {
    y = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(hi)), _mm256_set1_ps(lo));
  }
  /// e^x (see Avx512::exp). 2^n is built in the exponent bits, so x is clamped to [-87, 88]
  /// where 2^n stays a normal float: e^x below 1.6e-38 or above 1.6e38 differs from std::exp.
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void exp(reg& y, const reg& x0) {
    const reg x = _mm256_max_ps(_mm256_min_ps(x0, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    const reg n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    reg p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const ireg e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  /// g = g / (1 + e^-g) * u.
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static void silu_mul(reg& g, const reg& u) {
    reg e;
    exp(e, _mm256_sub_ps(_mm256_setzero_ps(), g));
    g = _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
  }
  /// e = e^(x - s); returns the sum of e's lanes.
  [[gnu::target(LMEMBED_CPU_AVX2_TARGET)]] static float exp_shift(reg& e, const reg& x,
                                                                  const reg& s) {
    exp(e, _mm256_sub_ps(x, s));
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(e), _mm256_extractf128_ps(e, 1));
    const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
  }
};

/// AVX-512 F/BW/VL/DQ: 16 floats per zmm, masked partial loads and stores.
struct Avx512 {
  static constexpr int W = 16;        ///< floats per vector
  static constexpr bool kExp = true;  ///< exp below
  using reg = __m512;
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void zero(reg& r) { r = _mm512_setzero_ps(); }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void set1(reg& r, float s) {
    r = _mm512_set1_ps(s);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void load(reg& r, const float* p) {
    r = _mm512_loadu_ps(p);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void store(float* p, const reg& r) {
    _mm512_storeu_ps(p, r);
  }
  static __mmask16 mask(int n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1u);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void load_n(reg& r, const float* p, int n) {
    r = _mm512_maskz_loadu_ps(mask(n), p);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void store_n(float* p, const reg& r, int n) {
    _mm512_mask_storeu_ps(p, mask(n), r);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void add(reg& acc, const reg& x) {
    acc = _mm512_add_ps(acc, x);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void fmadd(reg& acc, const reg& a,
                                                               const reg& b) {
    acc = _mm512_fmadd_ps(a, b, acc);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void mul(reg& y, const reg& a, const reg& b) {
    y = _mm512_mul_ps(a, b);
  }
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void div(reg& y, const reg& a, const reg& b) {
    y = _mm512_div_ps(a, b);
  }
  /// y = max(min(x, hi), lo).
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void clamp(reg& y, const reg& x, float lo,
                                                               float hi) {
    y = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(hi)), _mm512_set1_ps(lo));
  }
  /// e^x for 16 floats (Cephes expf: x = n ln2 + r, degree-6 polynomial on |r| <= ln2/2, then
  /// scale by 2^n); within ~2 ulp of std::exp, and 0 / inf at the ends like it.
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void exp(reg& y, const reg& x0) {
    const reg x = _mm512_max_ps(_mm512_min_ps(x0, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-103.9f));
    const reg n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    reg r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    reg p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    y = _mm512_scalef_ps(p, n);
  }
  /// g = g / (1 + e^-g) * u.
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static void silu_mul(reg& g, const reg& u) {
    reg e;
    exp(e, _mm512_sub_ps(_mm512_setzero_ps(), g));
    g = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
  }
  /// e = e^(x - s); returns the sum of e's lanes.
  [[gnu::target(LMEMBED_CPU_AVX512_TARGET)]] static float exp_shift(reg& e, const reg& x,
                                                                    const reg& s) {
    exp(e, _mm512_sub_ps(x, s));
    return _mm512_reduce_add_ps(e);
  }
};

#endif  // LMEMBED_CPU_X86

}  // namespace lmembed::cpu::simd
