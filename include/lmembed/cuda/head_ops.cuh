// lmembed/cuda/head_ops.cuh - the building blocks of the trainable pooling heads, as an "ops"
// executor: the per-element math shared by host and device, and the host executor.
//
// The latent and multi_layer heads are written ONCE (heads.cuh) as a composition of a few
// operations on row-major float buffers: GEMM (optionally strided-batched), LayerNorm forward /
// backward, softmax forward / backward, GELU and GEGLU forward / backward, segment means and
// their backward, tiled (broadcast) adds, column sums; the trainer (trainer.cuh) adds InfoNCE,
// row gathers, gradient norm and AdamW. Two executors provide them with the same signatures:
//   HostOps   (this file)      plain loops on host memory - the CPU mirror, runs everywhere;
//   DeviceOps (device_ops.cuh) cuBLAS for the GEMMs, kernels with CUB block reductions.
// The formula each applies per element lives below as an LMEMBED_HD function (math.cuh style),
// compiled into the kernels and into HostOps alike. So the CPU tests, which run the host
// executor's composition against pooling::LatentHead / MultiLayerHead (themselves checked
// against PyTorch), verify the device algorithm up to the executor's reductions; the device
// tests then compare DeviceOps with HostOps. Plain C++ (no CUDA headers).
//
// Conventions of every op: pointers are executor memory (host for HostOps, device for
// DeviceOps), matrices are row-major with the given leading dimension (row stride), sizes are
// int64, and "beta" follows BLAS (0: overwrite, never reading the old contents; 1: accumulate).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/cuda/math.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/train/loss.hpp"

namespace lmembed::cuda {

// ---- per-element math, shared by the kernels and HostOps ----------------------------------

/// LayerNorm input gradient of one element: rstd * (g - mean(g) - xhat * mean(g xhat)), with
/// g = dy * weight and the two row means given (PyTorch's formula, as nn::LayerNorm).
LMEMBED_HD float layernorm_grad(float dy, float w, float xhat, float mean_g, float mean_gx,
                                float rstd) {
  return ((dy * w - mean_g) - xhat * mean_gx) * rstd;
}

/// Softmax backward of one element, with the row's dot = sum_j p_j dp_j and the score scale
/// that was applied before the softmax: dS = p (dp - dot) scale.
LMEMBED_HD float softmax_grad(float p, float dp, float dot, float scale) {
  return p * (dp - dot) * scale;
}

/// GEGLU of one (value, gate) pair, PyTorch's x.chunk(2) order: value * GELU(gate).
LMEMBED_HD float geglu_value(float value, float gate) {
  return value * gelu(gate);
}

/// GEGLU backward of one pair: d value = dy GELU(gate), d gate = dy value GELU'(gate).
LMEMBED_HD void geglu_grads(float value, float gate, float dy, float& d_value, float& d_gate) {
  d_value = dy * gelu(gate);
  d_gate = dy * value * gelu_grad(gate);
}

/// LayerNorm's epsilon in every head (PyTorch's default).
inline constexpr float head_ln_eps = 1e-5f;

/// cuBLAS arguments for the row-major product C[M,N] = op(A) op(B) with op(A) [M, K] (A stored
/// [K, M] when ta) and op(B) [K, N] (B stored [N, K] when tb), row strides lda, ldb, ldc.
/// cuBLAS is column-major, where the row-major C is C^T = op(B)^T op(A)^T: so B is cuBLAS's
/// first operand (transposed when tb), A its second (transposed when ta), m = N, n = M.
/// shape_error when a size exceeds cuBLAS's int range. (DeviceOps::gemm calls cuBLAS with these;
/// the CPU tests check them with plan.cuh's column-major reference.)
inline GemmArgs rowmajor_gemm_args(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K,
                                   std::int64_t lda, std::int64_t ldb, std::int64_t ldc) {
  for (std::int64_t v : {M, N, K, lda, ldb, ldc})
    if (v <= 0 || v > 0x7fffffff)
      throw shape_error("cuda gemm: size " + std::to_string(v) +
                        " is empty or exceeds cuBLAS's int range");
  GemmArgs g;
  g.transa = tb;
  g.transb = ta;
  g.m = int(N);
  g.n = int(M);
  g.k = int(K);
  g.lda = int(ldb);
  g.ldb = int(lda);
  g.ldc = int(ldc);
  return g;
}

// ---- the host executor --------------------------------------------------------------------

/// Host memory with DeviceBuffer's interface (reserve only grows; contents undefined after).
template <class T>
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(std::size_t n) { reserve(n); }
  /// Ensures room for n elements.
  void reserve(std::size_t n) {
    if (n > v_.size()) v_.resize(n);
  }
  T* data() noexcept { return v_.data(); }
  const T* data() const noexcept { return v_.data(); }
  std::size_t size() const noexcept { return v_.size(); }

 private:
  std::vector<T> v_;
};

/// The host executor: every op as plain loops, float arithmetic in the device kernels' order
/// where it matters (per-element math above; row sums accumulate in float).
class HostOps {
 public:
  template <class T>
  using Buf = HostBuffer<T>;

  /// Human-readable name (for messages and benchmarks).
  static constexpr const char* name = "host";

  // -- memory
  /// dst[0, n) = host[0, n) (executor memory <- host memory).
  template <class T>
  void upload(T* dst, const T* host, std::size_t n) {
    if (n) std::memcpy(dst, host, n * sizeof(T));
  }
  /// host[0, n) = src[0, n).
  template <class T>
  void download(T* host, const T* src, std::size_t n) {
    if (n) std::memcpy(host, src, n * sizeof(T));
  }
  /// dst = src (n elements, executor memory).
  void copy(float* dst, const float* src, std::int64_t n) {
    if (n > 0) std::memmove(dst, src, std::size_t(n) * sizeof(float));
  }
  /// p[0, n) = 0.
  void zero(float* p, std::int64_t n) {
    if (n > 0) std::memset(p, 0, std::size_t(n) * sizeof(float));
  }
  /// Waits for queued work (nothing to wait for on the host).
  void sync() {}

  // -- products
  /// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for b < batch, row-major: op(A) is [M, K]
  /// (A stored [K, M] when ta), op(B) is [K, N] (B stored [N, K] when tb); the batch strides
  /// sA, sB, sC are in elements (0: the same matrix for every b).
  void gemm(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
            const float* A, std::int64_t lda, std::int64_t sA, const float* B, std::int64_t ldb,
            std::int64_t sB, float beta, float* C, std::int64_t ldc, std::int64_t sC,
            std::int64_t batch = 1) {
    std::vector<float> acc(static_cast<std::size_t>(N));
    for (std::int64_t b = 0; b < batch; ++b) {
      const float* a = A + b * sA;
      const float* bb = B + b * sB;
      float* c = C + b * sC;
      for (std::int64_t i = 0; i < M; ++i) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (std::int64_t k = 0; k < K; ++k) {
          const float aik = ta ? a[k * lda + i] : a[i * lda + k];
          if (tb)
            for (std::int64_t j = 0; j < N; ++j) acc[std::size_t(j)] += aik * bb[j * ldb + k];
          else
            for (std::int64_t j = 0; j < N; ++j) acc[std::size_t(j)] += aik * bb[k * ldb + j];
        }
        for (std::int64_t j = 0; j < N; ++j)
          c[i * ldc + j] =
              alpha * acc[std::size_t(j)] + (beta == 0.0f ? 0.0f : beta * c[i * ldc + j]);
      }
    }
  }
  /// y[c] = sum_r x[r, c] + beta y[c] for x [rows, cols] (bias gradients, sums over segments).
  void colsum(const float* x, std::int64_t rows, std::int64_t cols, float* y, float beta) {
    for (std::int64_t c = 0; c < cols; ++c) {
      float s = 0.0f;
      for (std::int64_t r = 0; r < rows; ++r) s += x[r * cols + c];
      y[c] = s + (beta == 0.0f ? 0.0f : beta * y[c]);
    }
  }

  // -- row operations
  /// y = (x - mean) rstd w + b per row of x [rows, d] (biased variance, eps); saves mean and
  /// rstd per row.
  void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean,
                     float* rstd, std::int64_t rows, std::int64_t d, float eps) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * d;
      float s = 0.0f;
      for (std::int64_t c = 0; c < d; ++c) s += xr[c];
      const float mu = s / float(d);
      float v = 0.0f;
      for (std::int64_t c = 0; c < d; ++c) v += (xr[c] - mu) * (xr[c] - mu);
      const float rs = 1.0f / std::sqrt(v / float(d) + eps);
      for (std::int64_t c = 0; c < d; ++c) y[r * d + c] = (xr[c] - mu) * rs * w[c] + b[c];
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
  /// LayerNorm backward: dx = dx_beta dx + layernorm_grad(...) per row; dw += sum_r dy xhat,
  /// db += sum_r dy. `tmp` is scratch of rows * d floats (the device executor's column sums).
  void layernorm_bwd(const float* dy, const float* x, const float* mean, const float* rstd,
                     const float* w, std::int64_t rows, std::int64_t d, float* dx, float dx_beta,
                     float* dw, float* db, float* tmp) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float *dr = dy + r * d, *xr = x + r * d;
      float sg = 0.0f, sgx = 0.0f;
      for (std::int64_t c = 0; c < d; ++c) {
        const float xh = (xr[c] - mean[r]) * rstd[r];
        sg += dr[c] * w[c];
        sgx += dr[c] * w[c] * xh;
        tmp[r * d + c] = dr[c] * xh;
      }
      const float mg = sg / float(d), mgx = sgx / float(d);
      for (std::int64_t c = 0; c < d; ++c) {
        const float xh = (xr[c] - mean[r]) * rstd[r];
        const float g = layernorm_grad(dr[c], w[c], xh, mg, mgx, rstd[r]);
        dx[r * d + c] = g + (dx_beta == 0.0f ? 0.0f : dx_beta * dx[r * d + c]);
      }
    }
    colsum(tmp, rows, d, dw, 1.0f);
    colsum(dy, rows, d, db, 1.0f);
  }
  /// Softmax of scale * x over each row of x [rows, n], in place (max-subtracted).
  void softmax_fwd(float* x, std::int64_t rows, std::int64_t n, float scale) {
    for (std::int64_t r = 0; r < rows; ++r) {
      float* xr = x + r * n;
      float m = -INFINITY;
      for (std::int64_t c = 0; c < n; ++c) m = std::max(m, xr[c] * scale);
      float s = 0.0f;
      for (std::int64_t c = 0; c < n; ++c) {
        xr[c] = std::exp(xr[c] * scale - m);
        s += xr[c];
      }
      const float inv = 1.0f / s;
      for (std::int64_t c = 0; c < n; ++c) xr[c] *= inv;
    }
  }
  /// Softmax backward in place: dp becomes dS = softmax_grad(p, dp, rowdot, scale).
  void softmax_bwd(const float* p, float* dp, std::int64_t rows, std::int64_t n, float scale) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* pr = p + r * n;
      float* dr = dp + r * n;
      float dot = 0.0f;
      for (std::int64_t c = 0; c < n; ++c) dot += pr[c] * dr[c];
      for (std::int64_t c = 0; c < n; ++c) dr[c] = softmax_grad(pr[c], dr[c], dot, scale);
    }
  }

  // -- element-wise
  /// y = GELU(x), n elements.
  void gelu_fwd(const float* x, float* y, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) y[i] = gelu(x[i]);
  }
  /// dx = dy GELU'(x).
  void gelu_bwd(const float* x, const float* dy, float* dx, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i] * gelu_grad(x[i]);
  }
  /// y [rows, h] = value * GELU(gate) for x [rows, 2h] = [value | gate].
  void geglu_fwd(const float* x, float* y, std::int64_t rows, std::int64_t h) {
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < h; ++j)
        y[r * h + j] = geglu_value(x[r * 2 * h + j], x[r * 2 * h + h + j]);
  }
  /// dx [rows, 2h] from dy [rows, h].
  void geglu_bwd(const float* x, const float* dy, float* dx, std::int64_t rows, std::int64_t h) {
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < h; ++j)
        geglu_grads(x[r * 2 * h + j], x[r * 2 * h + h + j], dy[r * h + j], dx[r * 2 * h + j],
                    dx[r * 2 * h + h + j]);
  }
  /// y[s] = mean of x rows [off[s], off[s+1]) (+ beta y[s]), x [*, d], s < n_seg.
  void segment_mean_fwd(const float* x, const std::int64_t* off, std::int64_t n_seg, std::int64_t d,
                        float* y, float beta) {
    for (std::int64_t s = 0; s < n_seg; ++s) {
      const float inv = 1.0f / float(off[s + 1] - off[s]);
      for (std::int64_t c = 0; c < d; ++c) {
        float acc = 0.0f;
        for (std::int64_t r = off[s]; r < off[s + 1]; ++r) acc += x[r * d + c];
        y[s * d + c] = acc * inv + (beta == 0.0f ? 0.0f : beta * y[s * d + c]);
      }
    }
  }
  /// dx rows of segment s = dy[s] / |s| (+ beta dx).
  void segment_mean_bwd(const float* dy, const std::int64_t* off, std::int64_t n_seg,
                        std::int64_t d, float* dx, float beta) {
    for (std::int64_t s = 0; s < n_seg; ++s) {
      const float inv = 1.0f / float(off[s + 1] - off[s]);
      for (std::int64_t r = off[s]; r < off[s + 1]; ++r)
        for (std::int64_t c = 0; c < d; ++c)
          dx[r * d + c] = dy[s * d + c] * inv + (beta == 0.0f ? 0.0f : beta * dx[r * d + c]);
    }
  }
  /// y[b k + i] = (x ? x : y)[b k + i] + tile[i] for b < blocks, i < k (bias rows, layer
  /// embedding and latents repeated per text).
  void add_tiled(float* y, const float* x, const float* tile, std::int64_t blocks, std::int64_t k) {
    const float* src = x ? x : y;
    for (std::int64_t b = 0; b < blocks; ++b)
      for (std::int64_t i = 0; i < k; ++i) y[b * k + i] = src[b * k + i] + tile[i];
  }
  /// y += x (n elements).
  void add(float* y, const float* x, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) y[i] += x[i];
  }

  // -- training
  /// dst[i] = src[idx[i]] (rows of width d), i < n.
  void gather_rows(const float* src, const std::int64_t* idx, std::int64_t n, std::int64_t d,
                   float* dst) {
    for (std::int64_t i = 0; i < n; ++i)
      std::memcpy(dst + i * d, src + idx[i] * d, std::size_t(d) * sizeof(float));
  }
  /// dst[r] = sum over j in [off[r], off[r+1]) of src[idx[j]] in that order, r < n (the
  /// deterministic scatter-add of the loss gradients back to the distinct texts).
  void sum_rows(const float* src, const std::int64_t* off, const std::int64_t* idx, std::int64_t n,
                std::int64_t d, float* dst) {
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < d; ++c) {
        float s = 0.0f;
        for (std::int64_t j = off[r]; j < off[r + 1]; ++j) s += src[idx[j] * d + c];
        dst[r * d + c] = s;
      }
  }
  /// InfoNCE (train::info_nce): queries [B, D], cand [B + N, D] = positives then negatives.
  /// Writes loss[0], d_queries [B, D], d_cand [B + N, D].
  void info_nce(const float* queries, const float* cand, std::int64_t B, std::int64_t N,
                std::int64_t D, float scale, bool symmetric, float* loss, float* d_queries,
                float* d_cand) {
    using M = Eigen::Map<const Matrix>;
    train::InfoNceOptions o;
    o.scale = scale;
    o.symmetric = symmetric;
    o.hard_negatives = true;
    const Matrix q = M(queries, B, D), p = M(cand, B, D), n = M(cand + B * D, N, D);
    const auto r = train::info_nce<float>(q, p, n, o);
    loss[0] = r.loss;
    std::memcpy(d_queries, r.d_queries.data(), std::size_t(B * D) * sizeof(float));
    std::memcpy(d_cand, r.d_positives.data(), std::size_t(B * D) * sizeof(float));
    if (N) std::memcpy(d_cand + B * D, r.d_negatives.data(), std::size_t(N * D) * sizeof(float));
  }
  /// out[0] = ||g||, out[1] = torch's clip coefficient (optim.cuh's finish_norm, on the host).
  void grad_norm(const float* g, std::int64_t n, float max_norm, float* out) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += double(g[i]) * g[i];
    const double norm = std::sqrt(s);
    double coef = 1.0;
    if (max_norm > 0.0f) coef = std::min(1.0, double(max_norm) / (norm + 1e-6));
    out[0] = float(norm);
    out[1] = float(coef);
  }
  /// One AdamW step over the arena (math.cuh's adamw_update; [0, n_decay) decayed), every
  /// gradient scaled by *grad_scale.
  void adamw(float* p, const float* g, float* m, float* v, const ParamPlan& plan, AdamWStep h,
             const float* grad_scale) {
    if (grad_scale) h.grad_scale *= *grad_scale;
    for (std::int64_t i = 0; i < plan.n; ++i)
      adamw_update(p[i], g[i], m[i], v[i], h, i < plan.n_decay);
  }
  /// Runs fill(i, span) then consume(i, data, bytes) for i < n (the device executor overlaps
  /// the upload of batch i + 1 with the work on batch i; cuda::stream_batches).
  template <class Fill, class Consume>
  void stream(std::int64_t n, std::size_t max_bytes, Fill&& fill, Consume&& consume) {
    std::vector<std::byte> buf(max_bytes);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::size_t bytes = fill(i, std::span<std::byte>(buf.data(), buf.size()));
      if (bytes > max_bytes)
        throw shape_error("HostOps::stream: batch " + std::to_string(i) + " has " +
                          std::to_string(bytes) + " bytes, more than the " +
                          std::to_string(max_bytes) + " reserved");
      consume(i, static_cast<const std::byte*>(buf.data()), bytes);
    }
  }
};

}  // namespace lmembed::cuda
