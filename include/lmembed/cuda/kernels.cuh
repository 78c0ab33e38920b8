// lmembed/cuda/kernels.cuh - the element-wise and row-reduction kernels of the CUDA backend.
//
// Each kernel has a host launcher taking device pointers and a stream; launchers check their
// arguments, pick the launch shape and check the launch. Row reductions (RMSNorm, LayerNorm,
// softmax, L2 norm) run one block per row with cub::BlockReduce and accumulate in F32. The
// per-element formulas come from math.cuh, shared with the CPU tests.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <string>

#include "lmembed/cuda/math.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/runtime.cuh"

namespace lmembed::cuda {

/// Threads per block of the row kernels (a multiple of 32; CUB reductions are sized by it).
inline constexpr int row_block = 256;
/// Threads per block of the flat element-wise kernels.
inline constexpr int flat_block = 256;

namespace kernels {

/// Reads element i of a float or bf16 array as float.
__device__ __forceinline__ float load_f(const float* p, std::int64_t i) {
  return p[i];
}
__device__ __forceinline__ float load_f(const __nv_bfloat16* p, std::int64_t i) {
  return __bfloat162float(p[i]);
}

/// Sum over the block (result valid in every thread).
template <int Block>
__device__ __forceinline__ float block_sum(float v) {
  using Reduce = cub::BlockReduce<float, Block>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float total;
  const float s = Reduce(tmp).Sum(v);
  if (threadIdx.x == 0) total = s;
  __syncthreads();
  const float r = total;
  __syncthreads();  // tmp and total may be reused by the next call
  return r;
}

/// Max over the block (result valid in every thread).
template <int Block>
__device__ __forceinline__ float block_max(float v) {
  using Reduce = cub::BlockReduce<float, Block>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float total;
  const float s = Reduce(tmp).Reduce(v, [](float a, float b) { return a > b ? a : b; });
  if (threadIdx.x == 0) total = s;
  __syncthreads();
  const float r = total;
  __syncthreads();
  return r;
}

/// out[t, :] = table[ids[t], :] (token embedding lookup).
template <class W>
__global__ void embed_gather(const std::int32_t* ids, const W* table, float* out,
                             std::int64_t n_tokens, std::int64_t d) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n_tokens * d) return;
  const std::int64_t t = i / d, c = i % d;
  out[i] = load_f(table, static_cast<std::int64_t>(ids[t]) * d + c);
}

/// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w (RMSNorm, one block per row).
template <int Block>
__global__ void rmsnorm(const float* x, const float* w, float* y, std::int64_t d, float eps) {
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float ss = 0.0f;
  for (std::int64_t c = threadIdx.x; c < d; c += Block) ss += xr[c] * xr[c];
  const float inv = rsqrtf(block_sum<Block>(ss) / static_cast<float>(d) + eps);
  for (std::int64_t c = threadIdx.x; c < d; c += Block) yr[c] = xr[c] * inv * w[c];
}

/// Adds the Q/K/V biases (when given) and rotates Q and K heads in place, for one token per
/// block. qkv rows are [Q heads | K heads | V heads], rope holds (cos, sin) per (pos, pair).
LMEMBED_KERNEL void qkv_bias_rope(float* qkv, const float* bias, const std::int32_t* positions,
                              const float* rope, int n_heads, int n_kv_heads, int head_dim,
                              RopeForm form) {
  const std::int64_t t = blockIdx.x;
  const int half = head_dim / 2;
  const int qkv_dim = (n_heads + 2 * n_kv_heads) * head_dim;
  float* row = qkv + t * qkv_dim;
  const float* cs = rope + static_cast<std::int64_t>(positions[t]) * half * 2;
  const int n_pairs = (n_heads + n_kv_heads) * half;  // Q and K heads are rotated
  for (int j = threadIdx.x; j < n_pairs; j += blockDim.x) {
    const int head = j / half, i = j % half;
    const RopePair p = rope_pair(form, i, head_dim);
    float& xa = row[head * head_dim + p.a];
    float& xb = row[head * head_dim + p.b];
    float a = xa, b = xb;
    if (bias) {
      a += bias[head * head_dim + p.a];
      b += bias[head * head_dim + p.b];
    }
    rope_rotate(a, b, cs[2 * i], cs[2 * i + 1]);
    xa = a;
    xb = b;
  }
  if (bias)
    for (int c = (n_heads + n_kv_heads) * head_dim + threadIdx.x; c < qkv_dim; c += blockDim.x)
      row[c] += bias[c];
}

/// out[t, j] = silu(gu[t, j]) * gu[t, d_ff + j]: SwiGLU over the fused gate|up projection.
LMEMBED_KERNEL void swiglu(const float* gu, float* out, std::int64_t n_tokens, std::int64_t d_ff) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n_tokens * d_ff) return;
  const std::int64_t t = i / d_ff, j = i % d_ff;
  out[i] = silu(gu[t * 2 * d_ff + j]) * gu[t * 2 * d_ff + d_ff + j];
}

/// out[t, j] = x[t, j] * gelu(x[t, n + j]): GEGLU over a fused [value | gate] projection, the
/// order of nn::geglu_forward and PyTorch's x.chunk(2, -1).
LMEMBED_KERNEL void geglu(const float* x, float* out, std::int64_t rows, std::int64_t n) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * n) return;
  const std::int64_t t = i / n, j = i % n;
  out[i] = x[t * 2 * n + j] * gelu(x[t * 2 * n + n + j]);
}

/// y[i] = gelu(x[i]).
LMEMBED_KERNEL void gelu_inplace(float* x, std::int64_t n) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = gelu(x[i]);
}

/// y[i] += x[i] (residual add).
LMEMBED_KERNEL void add_inplace(float* y, const float* x, std::int64_t n) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] += x[i];
}

/// y[i] = bf16(x[i]) (round to nearest even), the activation staging of the BF16 GEMMs.
LMEMBED_KERNEL void to_bf16(const float* x, __nv_bfloat16* y, std::int64_t n) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

/// Copies the captured states of one layer into its Captured slot; one block per item.
/// tokens last: the last token of each sequence; mean: the mean over [pool_from, end) of each
/// sequence; all: every token.
template <int Block>
__global__ void capture(const float* x, float* out, const std::int64_t* offsets,
                        const std::int32_t* pool_from, std::int64_t d, std::int64_t n_layers_out,
                        std::int64_t slot, CaptureTokens tokens) {
  const std::int64_t item = blockIdx.x;
  float* dst = out + (item * n_layers_out + slot) * d;
  if (tokens == CaptureTokens::all) {
    for (std::int64_t c = threadIdx.x; c < d; c += Block) dst[c] = x[item * d + c];
    return;
  }
  const std::int64_t end = offsets[item + 1];
  if (tokens == CaptureTokens::last) {
    for (std::int64_t c = threadIdx.x; c < d; c += Block) dst[c] = x[(end - 1) * d + c];
    return;
  }
  const std::int64_t begin = offsets[item] + (pool_from ? pool_from[item] : 0);
  // Summed in double and divided once, as the CPU backbone does, so long sequences agree.
  const double n = static_cast<double>(end - begin);
  for (std::int64_t c = threadIdx.x; c < d; c += Block) {
    double s = 0.0;
    for (std::int64_t t = begin; t < end; ++t) s += x[t * d + c];
    dst[c] = static_cast<float>(s / n);
  }
}

/// LayerNorm over each row: y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance,
/// as PyTorch); saves mean and rstd per row for the backward pass when given.
template <int Block>
__global__ void layernorm(const float* x, const float* gamma, const float* beta, float* y,
                          float* mean_out, float* rstd_out, std::int64_t d, float eps) {
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < d; c += Block) s += xr[c];
  const float mean = block_sum<Block>(s) / static_cast<float>(d);
  float v = 0.0f;  // two passes: no cancellation for rows far from zero mean
  for (std::int64_t c = threadIdx.x; c < d; c += Block) v += (xr[c] - mean) * (xr[c] - mean);
  const float rstd = rsqrtf(block_sum<Block>(v) / static_cast<float>(d) + eps);
  for (std::int64_t c = threadIdx.x; c < d; c += Block)
    yr[c] = (xr[c] - mean) * rstd * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[blockIdx.x] = mean;
    if (rstd_out) rstd_out[blockIdx.x] = rstd;
  }
}

/// Softmax over each row, in place, scaled by `scale` first (max-subtracted, F32).
template <int Block>
__global__ void softmax_rows(float* x, std::int64_t n, float scale) {
  float* r = x + blockIdx.x * n;
  float m = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < n; c += Block) m = fmaxf(m, r[c] * scale);
  m = block_max<Block>(m);
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < n; c += Block) {
    const float e = expf(r[c] * scale - m);
    r[c] = e;
    s += e;
  }
  const float inv = 1.0f / block_sum<Block>(s);
  for (std::int64_t c = threadIdx.x; c < n; c += Block) r[c] *= inv;
}

/// Scales each row to unit L2 norm in place (rows of norm 0 stay 0, as on the CPU);
/// stores the norm per row when `norms` is given (the backward pass needs it).
template <int Block>
__global__ void l2_normalize_rows(float* x, float* norms, std::int64_t n) {
  float* r = x + blockIdx.x * n;
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < n; c += Block) s += r[c] * r[c];
  const float norm = sqrtf(block_sum<Block>(s));
  const float inv = norm > 0.0f ? 1.0f / norm : 0.0f;
  for (std::int64_t c = threadIdx.x; c < n; c += Block) r[c] *= inv;
  if (norms && threadIdx.x == 0) norms[blockIdx.x] = norm;
}

}  // namespace kernels

namespace detail {
/// Blocks for n elements at flat_block threads each; throws when the grid would overflow.
inline unsigned flat_grid(std::int64_t n) {
  const std::int64_t g = ceil_div(n, flat_block);
  if (g > 0x7fffffff) throw shape_error("cuda: " + std::to_string(n) + " elements exceed a grid");
  return static_cast<unsigned>(g);
}
/// Rows as a grid size (one block per row).
inline unsigned row_grid(std::int64_t rows) {
  if (rows <= 0 || rows > 0x7fffffff)
    throw shape_error("cuda: " + std::to_string(rows) + " rows do not fit a grid");
  return static_cast<unsigned>(rows);
}
}  // namespace detail

/// Launches kernels::embed_gather (ids checked on the host beforehand).
template <class W>
void launch_embed(const std::int32_t* ids, const W* table, float* out, std::int64_t n_tokens,
                  std::int64_t d, cudaStream_t s) {
  if (n_tokens * d == 0) return;
  kernels::embed_gather<<<detail::flat_grid(n_tokens * d), flat_block, 0, s>>>(ids, table, out,
                                                                               n_tokens, d);
  LMEMBED_CUDA_CHECK_LAUNCH("embed_gather");
}

/// Launches kernels::rmsnorm over `rows` rows of width d (y may alias x).
inline void launch_rmsnorm(const float* x, const float* w, float* y, std::int64_t rows,
                           std::int64_t d, float eps, cudaStream_t s) {
  kernels::rmsnorm<row_block><<<detail::row_grid(rows), row_block, 0, s>>>(x, w, y, d, eps);
  LMEMBED_CUDA_CHECK_LAUNCH("rmsnorm");
}

/// Launches kernels::qkv_bias_rope over n_tokens rows of the fused QKV buffer.
inline void launch_qkv_bias_rope(float* qkv, const float* bias, const std::int32_t* positions,
                                 const float* rope, std::int64_t n_tokens, const ModelSpec& m,
                                 cudaStream_t s) {
  kernels::qkv_bias_rope<<<detail::row_grid(n_tokens), 128, 0, s>>>(
      qkv, bias, positions, rope, static_cast<int>(m.n_heads), static_cast<int>(m.n_kv_heads),
      static_cast<int>(m.head_dim), m.rope);
  LMEMBED_CUDA_CHECK_LAUNCH("qkv_bias_rope");
}

/// Launches kernels::swiglu: out[T, d_ff] from gu[T, 2 d_ff].
inline void launch_swiglu(const float* gu, float* out, std::int64_t n_tokens, std::int64_t d_ff,
                          cudaStream_t s) {
  kernels::swiglu<<<detail::flat_grid(n_tokens * d_ff), flat_block, 0, s>>>(gu, out, n_tokens,
                                                                            d_ff);
  LMEMBED_CUDA_CHECK_LAUNCH("swiglu");
}

/// Launches kernels::geglu: out[rows, n] from x[rows, 2n].
inline void launch_geglu(const float* x, float* out, std::int64_t rows, std::int64_t n,
                         cudaStream_t s) {
  kernels::geglu<<<detail::flat_grid(rows * n), flat_block, 0, s>>>(x, out, rows, n);
  LMEMBED_CUDA_CHECK_LAUNCH("geglu");
}

/// Launches kernels::gelu_inplace over n elements.
inline void launch_gelu(float* x, std::int64_t n, cudaStream_t s) {
  kernels::gelu_inplace<<<detail::flat_grid(n), flat_block, 0, s>>>(x, n);
  LMEMBED_CUDA_CHECK_LAUNCH("gelu");
}

/// Launches kernels::add_inplace: y += x over n elements.
inline void launch_add(float* y, const float* x, std::int64_t n, cudaStream_t s) {
  kernels::add_inplace<<<detail::flat_grid(n), flat_block, 0, s>>>(y, x, n);
  LMEMBED_CUDA_CHECK_LAUNCH("add_inplace");
}

/// Launches kernels::to_bf16 over n elements.
inline void launch_to_bf16(const float* x, __nv_bfloat16* y, std::int64_t n, cudaStream_t s) {
  kernels::to_bf16<<<detail::flat_grid(n), flat_block, 0, s>>>(x, y, n);
  LMEMBED_CUDA_CHECK_LAUNCH("to_bf16");
}

/// Launches kernels::capture for one layer slot of a CapturePlan.
inline void launch_capture(const float* x, float* out, const std::int64_t* offsets,
                           const std::int32_t* pool_from, std::int64_t d, const CapturePlan& p,
                           std::int64_t slot, cudaStream_t s) {
  kernels::capture<row_block><<<detail::row_grid(p.n_items), row_block, 0, s>>>(
      x, out, offsets, pool_from, d, p.n_layers_out, slot, p.spec.tokens);
  LMEMBED_CUDA_CHECK_LAUNCH("capture");
}

/// Launches kernels::layernorm (gamma/beta/mean/rstd may be null).
inline void launch_layernorm(const float* x, const float* gamma, const float* beta, float* y,
                             float* mean, float* rstd, std::int64_t rows, std::int64_t d, float eps,
                             cudaStream_t s) {
  kernels::layernorm<row_block>
      <<<detail::row_grid(rows), row_block, 0, s>>>(x, gamma, beta, y, mean, rstd, d, eps);
  LMEMBED_CUDA_CHECK_LAUNCH("layernorm");
}

/// Launches kernels::softmax_rows (in place, logits scaled by `scale`).
inline void launch_softmax(float* x, std::int64_t rows, std::int64_t n, float scale,
                           cudaStream_t s) {
  kernels::softmax_rows<row_block><<<detail::row_grid(rows), row_block, 0, s>>>(x, n, scale);
  LMEMBED_CUDA_CHECK_LAUNCH("softmax_rows");
}

/// Launches kernels::l2_normalize_rows (in place; norms may be null).
inline void launch_l2_normalize(float* x, float* norms, std::int64_t rows, std::int64_t n,
                                cudaStream_t s) {
  kernels::l2_normalize_rows<row_block><<<detail::row_grid(rows), row_block, 0, s>>>(x, norms, n);
  LMEMBED_CUDA_CHECK_LAUNCH("l2_normalize_rows");
}

}  // namespace lmembed::cuda
