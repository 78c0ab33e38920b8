// lmembed/nn/gemm.hpp - C (+)= A B^T, the product behind Linear's forward and input gradient.
//
// float runs on the backbone's packed AVX-512 kernel (lmembed/backbone/gemm.hpp), which beats
// Eigen's general kernel by ~25 % on this machine at the heads' shapes (4096 x 896 x 7168):
// B is packed per call, O(n k) beside the O(m n k) product. double (gradient checks) uses Eigen.
#pragma once

#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lmembed/backbone/gemm.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::nn {

/// c = a * b^T (accumulate: c += a * b^T); a [m, k], b [n, k], c [m, n] (resized unless
/// accumulating).
template <class T>
void matmul_nt(const MatrixX<T>& a, const MatrixX<T>& b, MatrixX<T>& c, bool accumulate = false) {
  if (!accumulate) c.resize(a.rows(), b.rows());
  if constexpr (std::is_same_v<T, float>) {
    if (a.rows() * b.rows() * a.cols() >= 4'000'000) {
      thread_local detail::GemmScratch scratch;
      const detail::PackedWeight pb = detail::PackedWeight::from(b);
#ifdef _OPENMP
      const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#else
      const int threads = 1;
#endif
      detail::gemm_nt(a.data(), a.cols(), a.rows(), pb, c.data(), c.cols(), accumulate, threads,
                      scratch);
      return;
    }
  }
  if (accumulate)
    c.noalias() += a * b.transpose();
  else
    c.noalias() = a * b.transpose();
}

}  // namespace lmembed::nn
