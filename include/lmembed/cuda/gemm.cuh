// lmembed/cuda/gemm.cuh - row-major matrix products through cuBLAS with F32 accumulation.
//
// The backbone stores weights [out, in] like PyTorch, so every projection is Y = X W^T;
// gemm_xwt() (plan.cuh) turns that into cuBLAS's column-major arguments. beta = 1 makes the
// residual add part of the GEMM epilogue (Y += X W^T), which saves a pass over the stream.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>

#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/runtime.cuh"

namespace lmembed::cuda {

/// Y[M,N] = alpha X[M,K] W[N,K]^T + beta Y, all F32 row-major; tf32 = use TF32 tensor cores.
inline void gemm_xwt_f32(cublasHandle_t h, const float* X, const float* W, float* Y, std::int64_t M,
                         std::int64_t N, std::int64_t K, float alpha, float beta,
                         bool tf32 = false) {
  const GemmArgs g = gemm_xwt(M, N, K);
  LMEMBED_CUBLAS_CHECK(cublasGemmEx(
      h, g.transa ? CUBLAS_OP_T : CUBLAS_OP_N, g.transb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k,
      &alpha, W, CUDA_R_32F, g.lda, X, CUDA_R_32F, g.ldb, &beta, Y, CUDA_R_32F, g.ldc,
      tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/// Y[M,N] (F32) = alpha X[M,K] W[N,K]^T + beta Y with BF16 X and W, F32 accumulation.
inline void gemm_xwt_bf16(cublasHandle_t h, const __nv_bfloat16* X, const __nv_bfloat16* W,
                          float* Y, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                          float beta) {
  const GemmArgs g = gemm_xwt(M, N, K);
  LMEMBED_CUBLAS_CHECK(cublasGemmEx(h, g.transa ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    g.transb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &alpha, W,
                                    CUDA_R_16BF, g.lda, X, CUDA_R_16BF, g.ldb, &beta, Y, CUDA_R_32F,
                                    g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/// Y[M,N] = alpha X[M,K] W[K,N] + beta Y (F32 row-major; W stored [in, out]).
inline void gemm_xw_f32(cublasHandle_t h, const float* X, const float* W, float* Y, std::int64_t M,
                        std::int64_t N, std::int64_t K, float alpha, float beta) {
  const GemmArgs g = gemm_xw(M, N, K);
  LMEMBED_CUBLAS_CHECK(cublasGemmEx(h, g.transa ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    g.transb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &alpha, W,
                                    CUDA_R_32F, g.lda, X, CUDA_R_32F, g.ldb, &beta, Y, CUDA_R_32F,
                                    g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/// Y[M,N] = alpha A[K,M]^T B[K,N] + beta Y (F32 row-major), e.g. dW = dY^T X.
inline void gemm_xtw_f32(cublasHandle_t h, const float* A, const float* B, float* Y, std::int64_t M,
                         std::int64_t N, std::int64_t K, float alpha, float beta) {
  const GemmArgs g = gemm_xtw(M, N, K);
  LMEMBED_CUBLAS_CHECK(cublasGemmEx(h, g.transa ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    g.transb ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &alpha, B,
                                    CUDA_R_32F, g.lda, A, CUDA_R_32F, g.ldb, &beta, Y, CUDA_R_32F,
                                    g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace lmembed::cuda
