// lmembed/cuda/loss.cuh - InfoNCE with in-batch and hard negatives on the device.
//
// The same loss as train::info_nce (loss.hpp), step for step: rows L2-normalized with the norm
// clamped at 1e-12 (torch.nn.functional.normalize), s = scale * qhat chat^T over the candidates
// [positives; hard negatives], cross-entropy of each query against its own positive
// (optionally also each positive against every query), and the gradients with respect to the
// raw embeddings, so the caller back-propagates through the head chunk by chunk (GradCache).
// Two cuBLAS GEMMs carry the gradient back through the scores; row reductions use CUB. The loss
// is summed per row and then by one block in a fixed order (deterministic).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>

#include "lmembed/cuda/gemm.cuh"
#include "lmembed/cuda/kernels.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/runtime.cuh"

namespace lmembed::cuda {

namespace kernels {

/// y = x / max(|x|, 1e-12) per row; norms (clamped) saved for the backward pass.
template <int Block>
__global__ void normalize_rows_clamped(const float* x, float* y, float* norms, std::int64_t d) {
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < d; c += Block) s += xr[c] * xr[c];
  const float n = fmaxf(sqrtf(block_sum<Block>(s)), 1e-12f);
  for (std::int64_t c = threadIdx.x; c < d; c += Block) yr[c] = xr[c] / n;
  if (threadIdx.x == 0) norms[blockIdx.x] = n;
}

/// dx = (d - xhat (xhat . d)) / norm per row (back through normalize_rows_clamped).
template <int Block>
__global__ void normalize_rows_backward(const float* xhat, const float* norms, const float* d,
                                        float* dx, std::int64_t n) {
  const float* xr = xhat + blockIdx.x * n;
  const float* dr = d + blockIdx.x * n;
  float* o = dx + blockIdx.x * n;
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < n; c += Block) s += xr[c] * dr[c];
  const float dot = block_sum<Block>(s);
  const float inv = 1.0f / norms[blockIdx.x];
  for (std::int64_t c = threadIdx.x; c < n; c += Block) o[c] = (dr[c] - dot * xr[c]) * inv;
}

/// Cross-entropy of row i of s (row stride ld, n entries, element (i, j) at s[i*ld + j*step]
/// for rows, transposed access when `by_column`) against target i. Writes loss_i * weight to
/// row_loss[i] and adds weight/rows * (softmax - onehot) to ds at the same positions.
template <int Block>
__global__ void cross_entropy_diag(const float* s, float* ds, float* row_loss, std::int64_t rows,
                                   std::int64_t n, std::int64_t ld, bool by_column, float weight) {
  const std::int64_t i = blockIdx.x;
  auto at = [&](std::int64_t j) { return by_column ? j * ld + i : i * ld + j; };
  float mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < n; j += Block) mx = fmaxf(mx, s[at(j)]);
  mx = block_max<Block>(mx);
  float sum = 0.0f;
  for (std::int64_t j = threadIdx.x; j < n; j += Block) sum += expf(s[at(j)] - mx);
  const float lse = mx + logf(block_sum<Block>(sum));
  const float w = weight / static_cast<float>(rows);
  for (std::int64_t j = threadIdx.x; j < n; j += Block)
    ds[at(j)] += w * expf(s[at(j)] - lse) - (j == i ? w : 0.0f);
  if (threadIdx.x == 0) row_loss[i] += weight * (lse - s[at(i)]);
}

/// out[0] = sum(v[0, n)) / n, in a fixed order (one block).
template <int Block>
__global__ void mean_of(const float* v, std::int64_t n, float* out) {
  using Reduce = cub::BlockReduce<double, Block>;
  __shared__ typename Reduce::TempStorage tmp;
  double s = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += Block) s += v[i];
  const double t = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) out[0] = static_cast<float>(t / static_cast<double>(n));
}

}  // namespace kernels

/// Byte offsets of the InfoNCE scratch for B queries, C = B + N candidates of width D.
struct InfoNceWorkspace {
  std::size_t qh = 0, ch = 0, nq = 0, nc = 0, s = 0, ds = 0, row_loss = 0, d_qh = 0, d_ch = 0;
  std::size_t bytes = 0;
};

/// Lays out the scratch of info_nce_device().
inline InfoNceWorkspace plan_info_nce(std::int64_t B, std::int64_t C, std::int64_t D) {
  WorkspaceLayout L;
  InfoNceWorkspace w;
  const auto b = static_cast<std::size_t>(B), c = static_cast<std::size_t>(C),
             d = static_cast<std::size_t>(D);
  w.qh = L.add<float>(b * d);
  w.ch = L.add<float>(c * d);
  w.nq = L.add<float>(b);
  w.nc = L.add<float>(c);
  w.s = L.add<float>(b * c);
  w.ds = L.add<float>(b * c);
  w.row_loss = L.add<float>(b);
  w.d_qh = L.add<float>(b * d);
  w.d_ch = L.add<float>(c * d);
  w.bytes = L.bytes();
  return w;
}

/// InfoNCE on the device (see the file comment). queries [B, D]; cand [B + N, D] = positives
/// then hard negatives (N may be 0). Writes the mean loss to loss[0] and the gradients
/// d_queries [B, D], d_cand [B + N, D]. Two-call: workspace == nullptr sets `bytes` only.
/// `blas` must be bound to stream s (the GEMMs and kernels share one stream order).
inline void info_nce_device(void* workspace, std::size_t& bytes, cublasHandle_t blas,
                            const float* queries, const float* cand, std::int64_t B, std::int64_t N,
                            std::int64_t D, float scale, bool symmetric, float* loss,
                            float* d_queries, float* d_cand, cudaStream_t s) {
  if (B <= 0 || D <= 0 || N < 0)
    throw input_error("cuda info_nce: batch of " + std::to_string(B) + " pairs, " +
                      std::to_string(N) + " negatives, width " + std::to_string(D));
  const std::int64_t C = B + N;
  const InfoNceWorkspace w = plan_info_nce(B, C, D);
  if (workspace == nullptr) {
    bytes = w.bytes;
    return;
  }
  if (bytes < w.bytes)
    throw shape_error("cuda info_nce: workspace of " + std::to_string(bytes) + " bytes, needs " +
                      std::to_string(w.bytes));
  auto* base = static_cast<std::byte*>(workspace);
  auto f = [&](std::size_t off) { return reinterpret_cast<float*>(base + off); };
  float *qh = f(w.qh), *ch = f(w.ch), *nq = f(w.nq), *nc = f(w.nc), *sc = f(w.s), *ds = f(w.ds),
        *rl = f(w.row_loss), *d_qh = f(w.d_qh), *d_ch = f(w.d_ch);
  kernels::normalize_rows_clamped<row_block>
      <<<detail::row_grid(B), row_block, 0, s>>>(queries, qh, nq, D);
  kernels::normalize_rows_clamped<row_block>
      <<<detail::row_grid(C), row_block, 0, s>>>(cand, ch, nc, D);
  LMEMBED_CUDA_CHECK_LAUNCH("normalize_rows_clamped");
  gemm_xwt_f32(blas, qh, ch, sc, B, C, D, scale, 0.0f);  // s = scale qhat chat^T  [B, C]
  LMEMBED_CUDA_CHECK(cudaMemsetAsync(ds, 0, sizeof(float) * static_cast<std::size_t>(B * C), s));
  LMEMBED_CUDA_CHECK(cudaMemsetAsync(rl, 0, sizeof(float) * static_cast<std::size_t>(B), s));
  const float wgt = symmetric ? 0.5f : 1.0f;
  kernels::cross_entropy_diag<row_block>
      <<<detail::row_grid(B), row_block, 0, s>>>(sc, ds, rl, B, C, C, false, wgt);
  if (symmetric)  // positive j against every query: column j of the first B columns
    kernels::cross_entropy_diag<row_block>
        <<<detail::row_grid(B), row_block, 0, s>>>(sc, ds, rl, B, B, C, true, wgt);
  LMEMBED_CUDA_CHECK_LAUNCH("cross_entropy_diag");
  kernels::mean_of<row_block><<<1, row_block, 0, s>>>(rl, B, loss);
  LMEMBED_CUDA_CHECK_LAUNCH("mean_of");
  // d qhat = scale ds chat [B, D];  d chat = scale ds^T qhat [C, D]
  gemm_xw_f32(blas, ds, ch, d_qh, B, D, C, scale, 0.0f);
  gemm_xtw_f32(blas, ds, qh, d_ch, C, D, B, scale, 0.0f);
  kernels::normalize_rows_backward<row_block>
      <<<detail::row_grid(B), row_block, 0, s>>>(qh, nq, d_qh, d_queries, D);
  kernels::normalize_rows_backward<row_block>
      <<<detail::row_grid(C), row_block, 0, s>>>(ch, nc, d_ch, d_cand, D);
  LMEMBED_CUDA_CHECK_LAUNCH("normalize_rows_backward");
}

}  // namespace lmembed::cuda
