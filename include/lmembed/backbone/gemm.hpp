// lmembed/backbone/gemm.hpp - the F32 matrix product every linear layer of the backbone uses.
//
// All projections of a frozen decoder are Y[M, N] (+)= X[M, K] * W[N, K]^T, with W fixed and
// X the activations of every token of a packed batch. W is therefore packed ONCE at load into
// panels of kNr output columns (k-major inside a panel), so that the micro-kernel reads it as
// one contiguous stream, and only X is packed per call (O(M*K), negligible beside the
// O(M*N*K) product). Eigen's general kernel reaches ~233 GFLOP/s on this machine's 2 cores; the
// AVX-512 micro-kernel below keeps an 8 x 32 tile of C in 16 zmm registers (A broadcast from
// the packed panel, two zmm loads of W per k) and matches OpenBLAS's sgemm per core here.
// Block sizes were tuned on this machine (Zen 4, 32 KiB L1, 1 MiB L2): 8x32 with kc 512 and
// mc 256 beat 12x32, 14x32, 10x32 and 6x32 tiles and kc 128..768 (bench/backbone, --gemm). The
// micro-kernel is chosen at run time (lmembed/cpu/dispatch.hpp): AVX-512, AVX2 + FMA or portable,
// all on the same packed layout, whatever flags the translation unit was compiled with.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/cpu/dispatch.hpp"

namespace lmembed::detail {

/// Rows of C (tokens) one micro-kernel call computes.
inline constexpr int kMr = cpu::kMr;
/// Columns of C (output features) one micro-kernel call computes: two 16-float vectors.
inline constexpr int kNr = cpu::kNr;
/// Depth of one block of the product: a packed X micro-panel (kMr x kKc floats = 16 KiB) stays
/// in L1 while a W micro-panel (kKc x kNr = 64 KiB) streams from L2.
inline constexpr int kKc = 512;
/// Rows of X packed at once (kMc x kKc floats = 512 KiB, kept in the 1 MiB L2).
inline constexpr int kMc = 256;

/// 64-byte aligned float buffer (std::vector gives no alignment guarantee for zmm loads).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { resize(n); }
  /// Grows (never shrinks) to at least n floats; contents are not kept.
  void resize(std::size_t n) {
    if (n <= cap_) {
      size_ = n;
      return;
    }
    ptr_.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})));
    cap_ = size_ = n;
  }
  float* data() noexcept { return ptr_.get(); }
  const float* data() const noexcept { return ptr_.get(); }
  std::size_t size() const noexcept { return size_; }
  /// Bytes held (for memory accounting).
  std::size_t bytes() const noexcept { return cap_ * sizeof(float); }

 private:
  struct Free {
    void operator()(float* p) const noexcept { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], Free> ptr_;
  std::size_t cap_ = 0, size_ = 0;
};

/// A weight matrix W[n, k] (PyTorch's [out, in]) packed for gemm_nt: panel p holds, for each
/// k, the kNr values W[p*kNr + j, k] (j < kNr), zero-padded past row n.
struct PackedWeight {
  std::int64_t n = 0;  ///< output features (rows of W)
  std::int64_t k = 0;  ///< input features (columns of W)
  AlignedBuffer data;

  std::int64_t panels() const { return (n + kNr - 1) / kNr; }
  /// Bytes held.
  std::size_t bytes() const { return data.bytes(); }

  /// Packs rows [row0, row0 + rows) of a row-major matrix as rows [dst_row0, ...) of this
  /// packed weight (so q, k and v, or gate and up, can share one product).
  void pack_rows(const float* w, std::int64_t rows, std::int64_t ld, std::int64_t dst_row0) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t dr = dst_row0 + r;
      float* panel = data.data() + (dr / kNr) * k * kNr + dr % kNr;
      const float* src = w + r * ld;
      for (std::int64_t c = 0; c < k; ++c) panel[c * kNr] = src[c];
    }
  }
  /// Allocates a zeroed packed matrix of n x k.
  static PackedWeight zeros(std::int64_t n, std::int64_t k) {
    PackedWeight p;
    p.n = n;
    p.k = k;
    const std::size_t total = static_cast<std::size_t>(p.panels() * kNr * k);
    p.data.resize(total);
    std::memset(p.data.data(), 0, total * sizeof(float));
    return p;
  }
  /// Packs a whole row-major matrix.
  static PackedWeight from(const Matrix& w) {
    PackedWeight p = zeros(w.rows(), w.cols());
    p.pack_rows(w.data(), w.rows(), w.cols(), 0);
    return p;
  }
  /// Unpacks (tests and debugging).
  Matrix unpack() const {
    Matrix w(n, k);
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < k; ++c)
        w(r, c) = data.data()[(r / kNr) * k * kNr + c * kNr + r % kNr];
    return w;
  }
};

/// Packs rows [m0, m0 + mc) and columns [k0, k0 + kc) of row-major A into micro-panels of kMr
/// rows, k-major: dst[(panel * kc + kk) * kMr + i]; rows past mc are zero.
inline void pack_a(const float* a, std::int64_t lda, std::int64_t m0, std::int64_t mc,
                   std::int64_t k0, std::int64_t kc, float* dst) {
  for (std::int64_t p = 0; p < mc; p += kMr) {
    const std::int64_t rows = std::min<std::int64_t>(kMr, mc - p);
    float* out = dst + (p / kMr) * kc * kMr;
    for (std::int64_t i = 0; i < rows; ++i) {
      const float* src = a + (m0 + p + i) * lda + k0;
      for (std::int64_t kk = 0; kk < kc; ++kk) out[kk * kMr + i] = src[kk];
    }
    for (std::int64_t i = rows; i < kMr; ++i)
      for (std::int64_t kk = 0; kk < kc; ++kk) out[kk * kMr + i] = 0.0f;
  }
}

/// Per-thread scratch for gemm_nt (packed A blocks).
struct GemmScratch {
  std::vector<AlignedBuffer> per_thread;
};

/// C[m, n] (row stride ldc) = A[m, k] (row stride lda) * W^T, or += when accumulate.
/// Runs on `threads` OpenMP threads. The product is cut into tasks of (kMc rows of A, a group
/// of W panels) handed out dynamically: on a shared machine a descheduled thread then delays
/// one small task, not half of the product. Each task packs the A rows it needs itself (no
/// barrier inside the product; the repacking costs ~1/(64 x panels per task) of the work).
inline void gemm_nt(const float* a, std::int64_t lda, std::int64_t m, const PackedWeight& w,
                    float* c, std::int64_t ldc, bool accumulate, int threads,
                    GemmScratch& scratch) {
  const std::int64_t k = w.k, n = w.n, panels = w.panels();
  if (m == 0 || n == 0) return;
  const auto micro_kernel = cpu::ops().micro_kernel;  // this CPU's level, read once per product
  if (k == 0) {
    if (!accumulate)
      for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  // Small products are faster on one thread than the fork/join costs.
  int nt = std::max(1, threads);
  if (static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) < 2e6) nt = 1;
  const std::int64_t m_blocks = (m + kMc - 1) / kMc;
  // About 8 tasks per thread, at least 2 panels (64 columns) each.
  const std::int64_t want = std::max<std::int64_t>(1, 8 * nt / m_blocks);
  const std::int64_t group = std::max<std::int64_t>(2, (panels + want - 1) / want);
  const std::int64_t groups = (panels + group - 1) / group;
  const std::int64_t tasks = m_blocks * groups;
  if (tasks < nt) nt = static_cast<int>(tasks);
  if (static_cast<int>(scratch.per_thread.size()) < nt) scratch.per_thread.resize(nt);
  const std::size_t a_block = static_cast<std::size_t>(((kMc + kMr - 1) / kMr) * kMr * kKc);
  for (int t = 0; t < nt; ++t) scratch.per_thread[t].resize(a_block);

  auto task = [&](std::int64_t id, float* pa) {
    const std::int64_t m0 = (id / groups) * kMc, g = id % groups;
    const std::int64_t mc = std::min<std::int64_t>(kMc, m - m0);
    const std::int64_t p_begin = g * group, p_end = std::min(panels, p_begin + group);
    for (std::int64_t k0 = 0; k0 < k; k0 += kKc) {
      const std::int64_t kc = std::min<std::int64_t>(kKc, k - k0);
      pack_a(a, lda, m0, mc, k0, kc, pa);
      const bool acc = accumulate || k0 > 0;
      for (std::int64_t p = p_begin; p < p_end; ++p) {
        const float* pb = w.data.data() + (p * k + k0) * kNr;
        const int cols = static_cast<int>(std::min<std::int64_t>(kNr, n - p * kNr));
        for (std::int64_t i = 0; i < mc; i += kMr) {
          const int rows = static_cast<int>(std::min<std::int64_t>(kMr, mc - i));
          micro_kernel(pa + (i / kMr) * kc * kMr, pb, kc, c + (m0 + i) * ldc + p * kNr, ldc, acc,
                       rows, cols);
        }
      }
    }
  };
#ifdef _OPENMP
  if (nt > 1) {
    std::atomic<std::int64_t> next{0};
#pragma omp parallel num_threads(nt)
    {
      float* pa = scratch.per_thread[omp_get_thread_num()].data();
      for (std::int64_t id = next++; id < tasks; id = next++) task(id, pa);
    }
    return;
  }
#endif
  for (std::int64_t id = 0; id < tasks; ++id) task(id, scratch.per_thread[0].data());
}

/// g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u: SwiGLU's elementwise step, vectorized at the
/// run-time CPU level (scalar std::exp would cost ~10 % of a forward pass).
inline void silu_mul(float* g, const float* u, std::int64_t n) {
  cpu::ops().silu_mul(g, u, n);
}

/// x[i] = e^(x[i] - shift); returns the sum (in double, as ggml's softmax accumulates).
inline double exp_shift_sum(float* x, std::int64_t n, float shift) {
  return cpu::ops().exp_shift_sum(x, n, shift);
}

}  // namespace lmembed::detail
