// lmembed/cuda/device_ops.cuh - the device executor of the pooling heads and their trainer:
// HostOps' operations (head_ops.cuh) on the GPU, and the device head / trainer types.
//
// GEMMs (plain and strided-batched, any transposes) go to cuBLAS in F32 (no TF32: results stay
// within rounding of the CPU's); column sums (bias and latent gradients) are cuBLAS GEMVs with
// a ones vector, so they are deterministic; LayerNorm and softmax forward reuse kernels.cuh;
// their backward passes, GELU / GEGLU, segment means, tiled adds and the loss's row gathers
// are the kernels below, one block per row with CUB block reductions where a row is reduced.
// The per-element formulas are head_ops.cuh's LMEMBED_HD functions, shared with HostOps.
// InfoNCE is loss.cuh's info_nce_device, the norm, clipping and AdamW optim.cuh's kernels,
// and chunk uploads cuda::stream_batches (stream.cuh). Everything runs on one stream in order;
// nothing here synchronizes except sync(), download() and stream().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "lmembed/cuda/head_ops.cuh"
#include "lmembed/cuda/heads.cuh"
#include "lmembed/cuda/kernels.cuh"
#include "lmembed/cuda/loss.cuh"
#include "lmembed/cuda/optim.cuh"
#include "lmembed/cuda/runtime.cuh"
#include "lmembed/cuda/stream.cuh"
#include "lmembed/cuda/trainer.cuh"

namespace lmembed::cuda {

namespace head_kernels {
// Every kernel here is a template (F = float): a header-only library's non-template __global__
// functions would be defined once per translation unit and collide at link time.

/// LayerNorm backward of one row per block: dx = dx_beta dx + layernorm_grad(...), and
/// tmp = dy * xhat (summed over rows into dweight afterwards).
template <int Block>
__global__ void layernorm_bwd(const float* dy, const float* x, const float* mean, const float* rstd,
                              const float* w, std::int64_t d, float* dx, float dx_beta,
                              float* tmp) {
  const std::int64_t r = blockIdx.x;
  const float *dr = dy + r * d, *xr = x + r * d;
  const float mu = mean[r], rs = rstd[r];
  float sg = 0.0f, sgx = 0.0f;
  for (std::int64_t c = threadIdx.x; c < d; c += Block) {
    const float xh = (xr[c] - mu) * rs;
    sg += dr[c] * w[c];
    sgx += dr[c] * w[c] * xh;
    tmp[r * d + c] = dr[c] * xh;
  }
  const float mg = kernels::block_sum<Block>(sg) / static_cast<float>(d);
  const float mgx = kernels::block_sum<Block>(sgx) / static_cast<float>(d);
  for (std::int64_t c = threadIdx.x; c < d; c += Block) {
    const float xh = (xr[c] - mu) * rs;
    const float g = layernorm_grad(dr[c], w[c], xh, mg, mgx, rs);
    dx[r * d + c] = g + (dx_beta == 0.0f ? 0.0f : dx_beta * dx[r * d + c]);
  }
}

/// Softmax backward in place, one row per block: dp = softmax_grad(p, dp, p . dp, scale).
template <int Block>
__global__ void softmax_bwd(const float* p, float* dp, std::int64_t n, float scale) {
  const float* pr = p + blockIdx.x * n;
  float* dr = dp + blockIdx.x * n;
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < n; c += Block) s += pr[c] * dr[c];
  const float dot = kernels::block_sum<Block>(s);
  for (std::int64_t c = threadIdx.x; c < n; c += Block)
    dr[c] = softmax_grad(pr[c], dr[c], dot, scale);
}

/// Grid-stride loop index helpers of the flat kernels.
__device__ __forceinline__ std::int64_t flat_index() {
  return blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
}

template <class F>
__global__ void gelu_fwd(const F* x, F* y, std::int64_t n) {
  const std::int64_t i = flat_index();
  if (i < n) y[i] = gelu(x[i]);
}
template <class F>
__global__ void gelu_bwd(const F* x, const F* dy, F* dx, std::int64_t n) {
  const std::int64_t i = flat_index();
  if (i < n) dx[i] = dy[i] * gelu_grad(x[i]);
}
/// y[r, j] = value * GELU(gate) of x[r] = [value | gate] (PyTorch's chunk order).
template <class F>
__global__ void geglu_fwd(const F* x, F* y, std::int64_t rows, std::int64_t h) {
  const std::int64_t i = flat_index();
  if (i >= rows * h) return;
  const std::int64_t r = i / h, j = i % h;
  y[i] = geglu_value(x[r * 2 * h + j], x[r * 2 * h + h + j]);
}
template <class F>
__global__ void geglu_bwd(const F* x, const F* dy, F* dx, std::int64_t rows, std::int64_t h) {
  const std::int64_t i = flat_index();
  if (i >= rows * h) return;
  const std::int64_t r = i / h, j = i % h;
  float dv, dg;
  geglu_grads(x[r * 2 * h + j], x[r * 2 * h + h + j], dy[i], dv, dg);
  dx[r * 2 * h + j] = dv;
  dx[r * 2 * h + h + j] = dg;
}
/// y[s, c] = mean of x rows [off[s], off[s+1]) (+ beta y); grid (segments, column blocks),
/// rows summed in order (deterministic).
template <class F>
__global__ void segment_mean_fwd(const F* x, const std::int64_t* off, std::int64_t d, F* y,
                                 float beta) {
  const std::int64_t s = blockIdx.x,
                     c = blockIdx.y * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const std::int64_t a = off[s], b = off[s + 1];
  float acc = 0.0f;
  for (std::int64_t r = a; r < b; ++r) acc += x[r * d + c];
  const float v = acc * (1.0f / static_cast<float>(b - a));
  y[s * d + c] = v + (beta == 0.0f ? 0.0f : beta * y[s * d + c]);
}
/// dx rows of segment s = dy[s] / |s| (+ beta dx).
template <class F>
__global__ void segment_mean_bwd(const F* dy, const std::int64_t* off, std::int64_t d, F* dx,
                                 float beta) {
  const std::int64_t s = blockIdx.x,
                     c = blockIdx.y * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const std::int64_t a = off[s], b = off[s + 1];
  const float v = dy[s * d + c] * (1.0f / static_cast<float>(b - a));
  for (std::int64_t r = a; r < b; ++r)
    dx[r * d + c] = v + (beta == 0.0f ? 0.0f : beta * dx[r * d + c]);
}
/// y[i] = src[i] + tile[i % k].
template <class F>
__global__ void add_tiled(F* y, const F* src, const F* tile, std::int64_t n, std::int64_t k) {
  const std::int64_t i = flat_index();
  if (i < n) y[i] = src[i] + tile[i % k];
}
/// p[i] = v.
template <class F>
__global__ void fill(F* p, std::int64_t n, float v) {
  const std::int64_t i = flat_index();
  if (i < n) p[i] = v;
}
/// dst[i, :] = src[idx[i], :].
template <class F>
__global__ void gather_rows(const F* src, const std::int64_t* idx, std::int64_t n, std::int64_t d,
                            F* dst) {
  const std::int64_t i = flat_index();
  if (i >= n * d) return;
  const std::int64_t r = i / d, c = i % d;
  dst[i] = src[idx[r] * d + c];
}
/// dst[r, c] = sum_{j in [off[r], off[r+1])} src[idx[j], c], in order; grid (rows, col blocks).
template <class F>
__global__ void sum_rows(const F* src, const std::int64_t* off, const std::int64_t* idx,
                         std::int64_t d, F* dst) {
  const std::int64_t r = blockIdx.x,
                     c = blockIdx.y * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  float s = 0.0f;
  for (std::int64_t j = off[r]; j < off[r + 1]; ++j) s += src[idx[j] * d + c];
  dst[r * d + c] = s;
}

}  // namespace head_kernels

/// The device executor (see the file comment). Owns a stream and a cuBLAS handle bound to it;
/// not copyable. Every pointer argument is device memory unless named `host`.
class DeviceOps {
 public:
  template <class T>
  using Buf = DeviceBuffer<T>;
  static constexpr const char* name = "cuda";

  /// A new non-blocking stream and its cuBLAS handle on the current device.
  DeviceOps() : stream_(Stream::create()), blas_(CublasHandle::create(stream_.get())) {
    // F32 products exactly (no TF32 tensor cores), like PyTorch's default for float32 matmul.
    LMEMBED_CUBLAS_CHECK(cublasSetMathMode(blas_.get(), CUBLAS_DEFAULT_MATH));
  }
  DeviceOps(const DeviceOps&) = delete;
  DeviceOps& operator=(const DeviceOps&) = delete;

  cudaStream_t stream() const { return stream_.get(); }
  cublasHandle_t blas() const { return blas_.get(); }

  // -- memory (async on the stream; download and sync wait)
  template <class T>
  void upload(T* dst, const T* host, std::size_t n) {
    if (n)
      LMEMBED_CUDA_CHECK(
          cudaMemcpyAsync(dst, host, n * sizeof(T), cudaMemcpyHostToDevice, stream_.get()));
  }
  template <class T>
  void download(T* host, const T* src, std::size_t n) {
    if (n)
      LMEMBED_CUDA_CHECK(
          cudaMemcpyAsync(host, src, n * sizeof(T), cudaMemcpyDeviceToHost, stream_.get()));
    sync();
  }
  void copy(float* dst, const float* src, std::int64_t n) {
    if (n > 0)
      LMEMBED_CUDA_CHECK(cudaMemcpyAsync(dst, src, std::size_t(n) * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream_.get()));
  }
  void zero(float* p, std::int64_t n) {
    if (n > 0)
      LMEMBED_CUDA_CHECK(cudaMemsetAsync(p, 0, std::size_t(n) * sizeof(float), stream_.get()));
  }
  void sync() { stream_.synchronize(); }

  // -- products
  /// HostOps::gemm's contract on cuBLAS: row-major C = op(A) op(B) is column-major
  /// C^T = op(B)^T op(A)^T, so B is cuBLAS's first operand.
  void gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
            const float* A, std::int64_t lda, std::int64_t sA, const float* B, std::int64_t ldb,
            std::int64_t sB, float beta, float* C, std::int64_t ldc, std::int64_t sC,
            std::int64_t batch = 1) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) {  // an empty sum: C = beta C
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t i = 0; i < M; ++i) scale_row(C + b * sC + i * ldc, N, beta);
      return;
    }
    if (batch > INT_MAX)
      throw shape_error("cuda gemm: batch " + std::to_string(batch) +
                        " exceeds cuBLAS's int range");
    const GemmArgs g = rowmajor_gemm_args(ta, tb, M, N, K, lda, ldb, ldc);
    LMEMBED_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        blas_.get(), g.transa ? CUBLAS_OP_T : CUBLAS_OP_N, g.transb ? CUBLAS_OP_T : CUBLAS_OP_N,
        g.m, g.n, g.k, &alpha, B, CUDA_R_32F, g.lda, static_cast<long long>(sB), A, CUDA_R_32F,
        g.ldb, static_cast<long long>(sA), &beta, C, CUDA_R_32F, g.ldc, static_cast<long long>(sC),
        int(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  /// y = beta y + sum over rows of x [rows, cols]: a GEMV with a ones vector (deterministic).
  void colsum(const float* x, std::int64_t rows, std::int64_t cols, float* y, float beta) {
    if (cols <= 0) return;
    if (rows <= 0) {
      scale_row(y, cols, beta);
      return;
    }
    if (rows > INT_MAX || cols > INT_MAX)
      throw shape_error("cuda colsum: [" + std::to_string(rows) + ", " + std::to_string(cols) +
                        "] exceeds cuBLAS's int range");
    if (std::int64_t(ones_.size()) < rows) {
      ones_.reserve(std::size_t(rows));
      head_kernels::fill<<<detail::flat_grid(rows), flat_block, 0, stream_.get()>>>(ones_.data(),
                                                                                    rows, 1.0f);
      LMEMBED_CUDA_CHECK_LAUNCH("fill");
    }
    const float one = 1.0f;
    LMEMBED_CUBLAS_CHECK(cublasSgemv(blas_.get(), CUBLAS_OP_N, int(cols), int(rows), &one, x,
                                     int(cols), ones_.data(), 1, &beta, y, 1));
  }

  // -- row operations
  void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean,
                     float* rstd, std::int64_t rows, std::int64_t d, float eps) {
    launch_layernorm(x, w, b, y, mean, rstd, rows, d, eps, stream_.get());
  }
  void layernorm_bwd(const float* dy, const float* x, const float* mean, const float* rstd,
                     const float* w, std::int64_t rows, std::int64_t d, float* dx, float dx_beta,
                     float* dw, float* db, float* tmp) {
    head_kernels::layernorm_bwd<row_block><<<detail::row_grid(rows), row_block, 0, stream_.get()>>>(
        dy, x, mean, rstd, w, d, dx, dx_beta, tmp);
    LMEMBED_CUDA_CHECK_LAUNCH("layernorm_bwd");
    colsum(tmp, rows, d, dw, 1.0f);
    colsum(dy, rows, d, db, 1.0f);
  }
  void softmax_fwd(float* x, std::int64_t rows, std::int64_t n, float scale) {
    launch_softmax(x, rows, n, scale, stream_.get());
  }
  void softmax_bwd(const float* p, float* dp, std::int64_t rows, std::int64_t n, float scale) {
    head_kernels::softmax_bwd<row_block>
        <<<detail::row_grid(rows), row_block, 0, stream_.get()>>>(p, dp, n, scale);
    LMEMBED_CUDA_CHECK_LAUNCH("softmax_bwd");
  }

  // -- element-wise
  void gelu_fwd(const float* x, float* y, std::int64_t n) {
    if (n <= 0) return;
    head_kernels::gelu_fwd<<<detail::flat_grid(n), flat_block, 0, stream_.get()>>>(x, y, n);
    LMEMBED_CUDA_CHECK_LAUNCH("gelu_fwd");
  }
  void gelu_bwd(const float* x, const float* dy, float* dx, std::int64_t n) {
    if (n <= 0) return;
    head_kernels::gelu_bwd<<<detail::flat_grid(n), flat_block, 0, stream_.get()>>>(x, dy, dx, n);
    LMEMBED_CUDA_CHECK_LAUNCH("gelu_bwd");
  }
  void geglu_fwd(const float* x, float* y, std::int64_t rows, std::int64_t h) {
    if (rows * h <= 0) return;
    head_kernels::geglu_fwd<<<detail::flat_grid(rows * h), flat_block, 0, stream_.get()>>>(x, y,
                                                                                           rows, h);
    LMEMBED_CUDA_CHECK_LAUNCH("geglu_fwd");
  }
  void geglu_bwd(const float* x, const float* dy, float* dx, std::int64_t rows, std::int64_t h) {
    if (rows * h <= 0) return;
    head_kernels::geglu_bwd<<<detail::flat_grid(rows * h), flat_block, 0, stream_.get()>>>(
        x, dy, dx, rows, h);
    LMEMBED_CUDA_CHECK_LAUNCH("geglu_bwd");
  }
  void segment_mean_fwd(const float* x, const std::int64_t* off, std::int64_t n_seg, std::int64_t d,
                        float* y, float beta) {
    if (n_seg <= 0 || d <= 0) return;
    head_kernels::segment_mean_fwd<<<seg_grid(n_seg, d), flat_block, 0, stream_.get()>>>(x, off, d,
                                                                                         y, beta);
    LMEMBED_CUDA_CHECK_LAUNCH("segment_mean_fwd");
  }
  void segment_mean_bwd(const float* dy, const std::int64_t* off, std::int64_t n_seg,
                        std::int64_t d, float* dx, float beta) {
    if (n_seg <= 0 || d <= 0) return;
    head_kernels::segment_mean_bwd<<<seg_grid(n_seg, d), flat_block, 0, stream_.get()>>>(dy, off, d,
                                                                                         dx, beta);
    LMEMBED_CUDA_CHECK_LAUNCH("segment_mean_bwd");
  }
  void add_tiled(float* y, const float* x, const float* tile, std::int64_t blocks, std::int64_t k) {
    const std::int64_t n = blocks * k;
    if (n <= 0) return;
    head_kernels::add_tiled<<<detail::flat_grid(n), flat_block, 0, stream_.get()>>>(y, x ? x : y,
                                                                                    tile, n, k);
    LMEMBED_CUDA_CHECK_LAUNCH("add_tiled");
  }
  void add(float* y, const float* x, std::int64_t n) {
    if (n > 0) launch_add(y, x, n, stream_.get());
  }

  // -- training
  void gather_rows(const float* src, const std::int64_t* idx, std::int64_t n, std::int64_t d,
                   float* dst) {
    if (n * d <= 0) return;
    head_kernels::gather_rows<<<detail::flat_grid(n * d), flat_block, 0, stream_.get()>>>(
        src, idx, n, d, dst);
    LMEMBED_CUDA_CHECK_LAUNCH("gather_rows");
  }
  void sum_rows(const float* src, const std::int64_t* off, const std::int64_t* idx, std::int64_t n,
                std::int64_t d, float* dst) {
    if (n <= 0 || d <= 0) return;
    head_kernels::sum_rows<<<seg_grid(n, d), flat_block, 0, stream_.get()>>>(src, off, idx, d, dst);
    LMEMBED_CUDA_CHECK_LAUNCH("sum_rows");
  }
  void info_nce(const float* queries, const float* cand, std::int64_t B, std::int64_t N,
                std::int64_t D, float scale, bool symmetric, float* loss, float* d_queries,
                float* d_cand) {
    std::size_t bytes = 0;
    info_nce_device(nullptr, bytes, blas_.get(), queries, cand, B, N, D, scale, symmetric, loss,
                    d_queries, d_cand, stream_.get());
    nce_ws_.reserve(bytes);
    bytes = nce_ws_.size();
    info_nce_device(nce_ws_.data(), bytes, blas_.get(), queries, cand, B, N, D, scale, symmetric,
                    loss, d_queries, d_cand, stream_.get());
  }
  void grad_norm(const float* g, std::int64_t n, float max_norm, float* out) {
    norm_ws_.reserve(norm_scratch_bytes());
    launch_grad_norm(g, n, max_norm, norm_ws_.data(), out, stream_.get());
  }
  void adamw(float* p, const float* g, float* m, float* v, const ParamPlan& plan,
             const AdamWStep& h, const float* grad_scale) {
    launch_adamw(p, g, m, v, plan, h, grad_scale, stream_.get());
  }
  /// cuda::stream_batches on this executor's stream: batch i + 1 is filled (pinned) and
  /// uploaded (second stream) while the kernels of batch i run.
  template <class Fill, class Consume>
  void stream(std::int64_t n, std::size_t max_bytes, Fill&& fill, Consume&& consume) {
    stream_batches(
        n, std::max<std::size_t>(max_bytes, 1), fill,
        [&](std::int64_t i, const std::byte* data, std::size_t bytes, cudaStream_t) {
          consume(i, data, bytes);
        },
        stream_.get());
  }

 private:
  /// p[0, n) *= beta (0: zero).
  void scale_row(float* p, std::int64_t n, float beta) {
    if (n <= 0 || beta == 1.0f) return;
    if (beta == 0.0f) {
      zero(p, n);
      return;
    }
    LMEMBED_CUBLAS_CHECK(cublasSscal(blas_.get(), int(n), &beta, p, 1));
  }
  /// One block row per segment, column blocks of flat_block.
  static dim3 seg_grid(std::int64_t n_seg, std::int64_t d) {
    const std::int64_t cb = ceil_div(d, flat_block);
    if (n_seg > 0x7fffffff || cb > 65535)
      throw shape_error("cuda: " + std::to_string(n_seg) + " segments of width " +
                        std::to_string(d) + " do not fit a grid");
    return dim3(unsigned(n_seg), unsigned(cb));
  }

  Stream stream_;
  CublasHandle blas_;
  DeviceBuffer<float> ones_;
  DeviceBuffer<std::byte> nce_ws_, norm_ws_;
};

/// A pooling head on the GPU (parameters uploaded from / downloaded into the CPU head object).
template <class Head>
using DeviceHead = ExecHead<Head, DeviceOps>;

/// train::Trainer on the GPU: same options, same batches, same checkpoint files.
template <class Head>
using DeviceTrainer = ExecTrainer<Head, DeviceOps>;

}  // namespace lmembed::cuda
