// lmembed/nn/gemm.hpp - C (+)= A B^T, the product behind Linear's forward and input gradient.
//
// float runs on the backbone's packed kernel (lmembed/backbone/gemm.hpp, dispatched at run time
// to AVX-512 / AVX2 / portable), which beats Eigen's general kernel by ~25 % on this machine at
// the heads' shapes (4096 x 896 x 7168): B is packed per call, O(n k) beside the O(m n k)
// product. The attention's per-head products (strided blocks, block_nt / block_nn below) run on
// it too: Eigen's own kernel is compiled for the translation unit's ISA (SSE2 in a plain x86-64
// build). double (gradient checks) uses Eigen.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lmembed/backbone/gemm.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::nn {

inline void packed_gemm(const MatrixX<float>& a, const detail::PackedWeight& b, float* c,
                        std::int64_t ldc, bool accumulate);

/// c = a * b^T (accumulate: c += a * b^T); a [m, k], b [n, k], c [m, n] (resized unless
/// accumulating).
template <class T>
void matmul_nt(const MatrixX<T>& a, const MatrixX<T>& b, MatrixX<T>& c, bool accumulate = false) {
  if (!accumulate) c.resize(a.rows(), b.rows());
  if constexpr (std::is_same_v<T, float>) {
    if (a.rows() * b.rows() * a.cols() >= 4'000'000) {
      packed_gemm(a, detail::PackedWeight::from(b), c.data(), c.cols(), accumulate);
      return;
    }
  }
  if (accumulate)
    c.noalias() += a * b.transpose();
  else
    c.noalias() = a * b.transpose();
}

/// Packs src^T (src [k, n] row-major) as a PackedWeight of n x k: the k-major panels read rows
/// of src contiguously, so no transposed copy is made.
inline detail::PackedWeight pack_transposed(const MatrixX<float>& src) {
  const std::int64_t k = src.rows(), n = src.cols();
  detail::PackedWeight p = detail::PackedWeight::zeros(n, k);
  const std::int64_t panels = p.panels();
#pragma omp parallel for schedule(static) if (n * k > 1'000'000)
  for (std::int64_t pi = 0; pi < panels; ++pi) {
    const std::int64_t c0 = pi * detail::kNr;
    const std::int64_t cols = std::min<std::int64_t>(detail::kNr, n - c0);
    float* dst = p.data.data() + pi * k * detail::kNr;
    for (std::int64_t kk = 0; kk < k; ++kk)
      std::memcpy(dst + kk * detail::kNr, src.data() + kk * n + c0,
                  static_cast<std::size_t>(cols) * sizeof(float));
  }
  return p;
}

/// Runs gemm_nt on all OpenMP threads (one inside a parallel region).
inline void packed_gemm(const MatrixX<float>& a, const detail::PackedWeight& b, float* c,
                        std::int64_t ldc, bool accumulate) {
  thread_local detail::GemmScratch scratch;
#ifdef _OPENMP
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  const int threads = 1;
#endif
  detail::gemm_nt(a.data(), a.cols(), a.rows(), b, c, ldc, accumulate, threads, scratch);
}

/// Packs the rows of b [n, k] (row stride ldb) as a PackedWeight of n x k, reusing p's buffer
/// (the last panel's rows past n are zero).
inline void pack_nk(const float* b, std::int64_t n, std::int64_t k, std::int64_t ldb,
                    detail::PackedWeight& p) {
  p.n = n;
  p.k = k;
  p.data.resize(static_cast<std::size_t>(p.panels() * detail::kNr * k));
  if (n % detail::kNr != 0) {
    float* last = p.data.data() + (p.panels() - 1) * k * detail::kNr;
    std::memset(last, 0, static_cast<std::size_t>(k * detail::kNr) * sizeof(float));
  }
  p.pack_rows(b, n, ldb, 0);
}

/// Packs b^T for b [k, n] (row stride ldb) as a PackedWeight of n x k, reusing p's buffer.
inline void pack_kn(const float* b, std::int64_t k, std::int64_t n, std::int64_t ldb,
                    detail::PackedWeight& p) {
  p.n = n;
  p.k = k;
  p.data.resize(static_cast<std::size_t>(p.panels() * detail::kNr * k));
  for (std::int64_t pi = 0; pi < p.panels(); ++pi) {
    const std::int64_t c0 = pi * detail::kNr;
    const std::int64_t cols = std::min<std::int64_t>(detail::kNr, n - c0);
    float* dst = p.data.data() + pi * k * detail::kNr;
    for (std::int64_t kk = 0; kk < k; ++kk) {
      std::memcpy(dst + kk * detail::kNr, b + kk * ldb + c0,
                  static_cast<std::size_t>(cols) * sizeof(float));
      std::fill(dst + kk * detail::kNr + cols, dst + (kk + 1) * detail::kNr, 0.0f);
    }
  }
}

/// c (+)= a * b^T for row-major blocks (a [m, k], b [n, k], c [m, n], any row strides), on
/// the calling thread: float on the dispatched kernel (b packed per call), other types Eigen.
template <class A, class B, class C>
void block_nt(const A& a, const B& b, C&& c, bool accumulate) {
  using T = typename A::Scalar;
  if constexpr (std::is_same_v<T, float>) {
    thread_local detail::PackedWeight pw;
    thread_local detail::GemmScratch scratch;
    pack_nk(b.data(), b.rows(), b.cols(), b.outerStride(), pw);
    detail::gemm_nt(a.data(), a.outerStride(), a.rows(), pw, c.data(), c.outerStride(), accumulate,
                    1, scratch);
  } else if (accumulate) {
    c.noalias() += a * b.transpose();
  } else {
    c.noalias() = a * b.transpose();
  }
}

/// c (+)= a * b for row-major blocks (a [m, k], b [k, n], c [m, n]); as block_nt.
template <class A, class B, class C>
void block_nn(const A& a, const B& b, C&& c, bool accumulate) {
  using T = typename A::Scalar;
  if constexpr (std::is_same_v<T, float>) {
    thread_local detail::PackedWeight pw;
    thread_local detail::GemmScratch scratch;
    pack_kn(b.data(), b.rows(), b.cols(), b.outerStride(), pw);
    detail::gemm_nt(a.data(), a.outerStride(), a.rows(), pw, c.data(), c.outerStride(), accumulate,
                    1, scratch);
  } else if (accumulate) {
    c.noalias() += a * b;
  } else {
    c.noalias() = a * b;
  }
}

/// c = a * b (a [m, k], b [k, n]).
template <class T>
void matmul_nn(const MatrixX<T>& a, const MatrixX<T>& b, MatrixX<T>& c) {
  c.resize(a.rows(), b.cols());
  if constexpr (std::is_same_v<T, float>) {
    if (a.rows() * b.cols() * a.cols() >= 4'000'000) {
      packed_gemm(a, pack_transposed(b), c.data(), c.cols(), false);
      return;
    }
  }
  c.noalias() = a * b;
}

/// c += a^T * b (a [m, p], b [m, q], c [p, q]) - a weight gradient dW += dy^T x.
/// float computes c^T = b^T a with b^T copied (the smaller side) and a packed from its rows.
template <class T>
void matmul_tn_accumulate(const MatrixX<T>& a, const MatrixX<T>& b, MatrixX<T>& c) {
  if constexpr (std::is_same_v<T, float>) {
    if (a.rows() * a.cols() * b.cols() >= 4'000'000) {
      const MatrixX<float> bt = b.transpose();  // [q, m]
      MatrixX<float> ct(b.cols(), a.cols());    // [q, p]
      packed_gemm(bt, pack_transposed(a), ct.data(), ct.cols(), false);
      c += ct.transpose();
      return;
    }
  }
  c.noalias() += a.transpose() * b;
}

}  // namespace lmembed::nn
