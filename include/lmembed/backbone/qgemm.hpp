// lmembed/backbone/qgemm.hpp - linear layers whose weights stay in their GGML block type.
//
// A GGUF tensor of type Q8_0, Q4_0 or Q4_1 is re-laid out once at load into a QuantWeight (the
// panel layout of lmembed/cpu/qkernels.hpp: the same int8 / uint4 values and scales, ordered for
// the kernel; no value is re-quantized) and multiplied by qgemm_nt: the activations are rounded
// per 32-value block to int8 with an f32 scale (llama.cpp's Q8_0 / Q8_1 activations), each block
// dot product is exact in int32, and the block results are summed in f32. What that rounding
// costs against the F32 product on the dequantized weights: at most d_x / 2 = max|x_block| / 254
// per activation value, i.e. |Y - Y_f32| <= sum over blocks of max|x_b| / 254 * sum_b |w| (plus
// f32 rounding); docs/backbone.md and tests/backbone/test_qgemm.cpp give the figures.
//
// Resident bytes per weight: Q4_0 20 per 32 values (file: 18), Q4_1 24 (20), Q8_0 36 (34): the
// F16 scales are kept as f32, the values as stored.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lmembed/backbone/gemm.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/cpu/qkernels.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/io/quant.hpp"

namespace lmembed::detail {

/// True when `t` has an integer GEMM kernel (Q8_0, Q4_0, Q4_1).
constexpr bool has_qkernel(io::DType t) {
  return t == io::DType::q8_0 || t == io::DType::q4_0 || t == io::DType::q4_1;
}

/// The kernel type of a GGML block type with a kernel (has_qkernel).
constexpr cpu::QType qtype_of(io::DType t) {
  return t == io::DType::q8_0   ? cpu::QType::q8_0
         : t == io::DType::q4_0 ? cpu::QType::q4_0
                                : cpu::QType::q4_1;
}

/// A weight matrix W[n, k] kept in the kernel layout of its block type: panel p (columns 16 p
/// .. 16 p + 15 of Y, i.e. rows of W) holds, per 32-value block, the packed values
/// (cpu::qblock_bytes), 16 f32 scales and for Q4_1 16 f32 mins; rows past n are zero.
struct QuantWeight {
  io::DType dtype = io::DType::q8_0;  ///< GGML type of the values
  std::int64_t n = 0;                 ///< output features (rows of W)
  std::int64_t k = 0;                 ///< input features (a multiple of 32)
  std::vector<std::uint8_t> qs;       ///< [panels][k / 32][qblock_bytes]
  std::vector<float> d;               ///< [panels][k / 32][16] scales
  std::vector<float> m;               ///< [panels][k / 32][16] mins (Q4_1), else empty

  /// The kernels' name for the type.
  cpu::QType qtype() const { return qtype_of(dtype); }
  /// 32-value blocks per row.
  std::int64_t blocks() const { return k / cpu::kQBlock; }
  /// Panels of 16 rows.
  std::int64_t panels() const { return (n + cpu::kQNr - 1) / cpu::kQNr; }
  /// Bytes held.
  std::size_t bytes() const { return qs.size() + (d.size() + m.size()) * sizeof(float); }

  /// A zeroed n x k weight of GGML type t (has_qkernel). shape_error naming `name` when k is not
  /// a multiple of 32 (a block would straddle two rows) or t has no kernel.
  static QuantWeight zeros(io::DType t, std::int64_t n, std::int64_t k, const std::string& name) {
    if (!has_qkernel(t))
      throw shape_error(name + ": no integer kernel for " + io::to_string(t) +
                        " (Q8_0, Q4_0, Q4_1 have one)");
    if (n < 0 || k <= 0 || k % cpu::kQBlock != 0)
      throw shape_error(name + ": a " + io::to_string(t) + " weight of [" + std::to_string(n) +
                        ", " + std::to_string(k) + "] needs rows of a positive multiple of " +
                        std::to_string(cpu::kQBlock) + " values");
    QuantWeight w;
    w.dtype = t;
    w.n = n;
    w.k = k;
    const auto pb = static_cast<std::size_t>(w.panels() * w.blocks());
    w.qs.assign(pb * static_cast<std::size_t>(cpu::qblock_bytes(w.qtype())), 0);
    w.d.assign(pb * cpu::kQNr, 0.0f);
    if (t == io::DType::q4_1) w.m.assign(pb * cpu::kQNr, 0.0f);
    return w;
  }

  /// Bytes of one row of W as GGML stores it.
  std::int64_t row_bytes() const { return blocks() * io::block_bytes(dtype); }

  /// Copies `rows` rows of GGML blocks of this type (row r at src + r * row_bytes()) into rows
  /// dst_row0 + perm(r) (perm null: identity), so q, k and v (or gate and up) share a weight and
  /// the q/k rows are un-permuted on the way.
  void pack_rows(const std::byte* src, std::int64_t rows, std::int64_t dst_row0,
                 const std::vector<std::int64_t>* perm = nullptr) {
    const std::int64_t nb = blocks(), bb = io::block_bytes(dtype);
    const int QB = cpu::qblock_bytes(qtype());
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t dr = dst_row0 + (perm ? (*perm)[static_cast<std::size_t>(r)] : r);
      const std::int64_t p = dr / cpu::kQNr, j = dr % cpu::kQNr;
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::byte* blk = src + r * row_bytes() + b * bb;
        const std::size_t pbi = static_cast<std::size_t>(p * nb + b);
        std::uint8_t* out = qs.data() + pbi * static_cast<std::size_t>(QB);
        d[pbi * cpu::kQNr + static_cast<std::size_t>(j)] = io::quant::detail::f16_at(blk);
        if (dtype == io::DType::q4_1)
          m[pbi * cpu::kQNr + static_cast<std::size_t>(j)] = io::quant::detail::f16_at(blk + 2);
        for (int v = 0; v < cpu::kQBlock; ++v) {
          const int g = v / 4, rr = v % 4;
          if (dtype == io::DType::q8_0) {
            out[g * 64 + 4 * j + rr] = static_cast<std::uint8_t>(blk[2 + v]);
          } else {
            const std::byte* nib = blk + (dtype == io::DType::q4_1 ? 4 : 2);
            const int byte = static_cast<int>(nib[v % 16]);
            const int u = v < 16 ? (byte & 0x0F) : (byte >> 4);
            out[(g / 2) * 64 + 4 * j + rr] |= static_cast<std::uint8_t>(u << (4 * (g % 2)));
          }
        }
      }
    }
  }

  /// The dequantized weights, [n, k] (tests): the values io::quant decodes from the same blocks,
  /// bit for bit (d * (q - 8), d * q + m, q * d in f32).
  Matrix dequantize() const {
    Matrix w(n, k);
    const std::int64_t nb = blocks();
    const int QB = cpu::qblock_bytes(qtype());
    for (std::int64_t r = 0; r < n; ++r) {
      const std::int64_t p = r / cpu::kQNr, j = r % cpu::kQNr;
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::size_t pbi = static_cast<std::size_t>(p * nb + b);
        const std::uint8_t* in = qs.data() + pbi * static_cast<std::size_t>(QB);
        const float dd = d[pbi * cpu::kQNr + static_cast<std::size_t>(j)];
        for (int v = 0; v < cpu::kQBlock; ++v) {
          const int g = v / 4, rr = v % 4;
          float& y = w(r, b * cpu::kQBlock + v);
          if (dtype == io::DType::q8_0) {
            y = static_cast<float>(static_cast<std::int8_t>(in[g * 64 + 4 * j + rr])) * dd;
          } else {
            const int u = (in[(g / 2) * 64 + 4 * j + rr] >> (4 * (g % 2))) & 0x0F;
            y = dtype == io::DType::q4_0
                    ? dd * static_cast<float>(u - 8)
                    : dd * static_cast<float>(u) + m[pbi * cpu::kQNr + static_cast<std::size_t>(j)];
          }
        }
      }
    }
    return w;
  }
};

/// Activations quantized for qgemm_nt, rows padded to a multiple of cpu::kQMr (zero rows).
struct QuantActs {
  std::vector<std::int8_t> q;   ///< [rows][k]
  std::vector<float> d, ds;     ///< [rows][k / 32]
  std::vector<std::int32_t> s;  ///< [rows][k / 32]
  std::int64_t rows = 0, k = 0;

  /// Quantizes x[m, k] (row stride lda) with `ops` (per-block int8, see cpu::QOps).
  void quantize(const float* x, std::int64_t lda, std::int64_t m, std::int64_t kk,
                const cpu::QOps& ops, int threads) {
    k = kk;
    rows = (m + cpu::kQMr - 1) / cpu::kQMr * cpu::kQMr;
    const std::int64_t nb = k / cpu::kQBlock;
    const auto nq = static_cast<std::size_t>(rows * k), ns = static_cast<std::size_t>(rows * nb);
    if (q.size() < nq) q.resize(nq);
    if (d.size() < ns) {
      d.resize(ns);
      ds.resize(ns);
      s.resize(ns);
    }
    // Padding rows: zero values and scales, so a kernel may compute them (never stored).
    std::fill(q.begin() + m * k, q.begin() + rows * k, std::int8_t{0});
    std::fill(d.begin() + m * nb, d.begin() + rows * nb, 0.0f);
    std::fill(ds.begin() + m * nb, ds.begin() + rows * nb, 0.0f);
    std::fill(s.begin() + m * nb, s.begin() + rows * nb, 0);
    auto part = [&](std::int64_t r0, std::int64_t r1) {
      ops.quantize_rows(x + r0 * lda, lda, r1 - r0, k, q.data() + r0 * k, d.data() + r0 * nb,
                        s.data() + r0 * nb, ds.data() + r0 * nb);
    };
#ifdef _OPENMP
    if (threads > 1 && static_cast<double>(m) * static_cast<double>(k) > 1e5) {
      const std::int64_t per = (m + threads - 1) / threads;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
      for (int t = 0; t < threads; ++t) {
        const std::int64_t r0 = std::min<std::int64_t>(m, t * per);
        part(r0, std::min<std::int64_t>(m, r0 + per));
      }
      return;
    }
#endif
    (void)threads;
    part(0, m);
  }

  /// The kernels' view of rows [r0, ...).
  cpu::QActs view(std::int64_t r0, std::int64_t b0) const {
    const std::int64_t nb = k / cpu::kQBlock;
    cpu::QActs a;
    a.q = q.data() + r0 * k + b0 * cpu::kQBlock;
    a.d = d.data() + r0 * nb + b0;
    a.s = s.data() + r0 * nb + b0;
    a.ds = ds.data() + r0 * nb + b0;
    a.ldq = k;
    a.ldb = nb;
    return a;
  }
};

/// Blocks of depth per kernel call: 32 blocks = 1,024 values (8 activation rows = 8 KiB and a
/// Q4 panel = 8 KiB stay in L1 while the panel is reused by every row block of a task).
inline constexpr std::int64_t kQKcBlocks = 32;

/// C[m, n] (row stride ldc) = A[m, k] (row stride lda) * W^T, or += when accumulate, with A
/// quantized per block to int8 (into `acts`) and W's integer values. `ops` null: the current
/// level's kernels (cpu::qops()). Tasks as gemm_nt's: kMc rows x a group of panels, dynamic.
inline void qgemm_nt(const float* a, std::int64_t lda, std::int64_t m, const QuantWeight& w,
                     float* c, std::int64_t ldc, bool accumulate, int threads, QuantActs& acts,
                     const cpu::QOps* ops = nullptr) {
  const std::int64_t n = w.n, k = w.k, nb = w.blocks(), panels = w.panels();
  if (m == 0 || n == 0) return;
  const cpu::QOps& K = ops ? *ops : cpu::qops();  // outside the parallel region: may throw
  int nt = std::max(1, threads);
  if (static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) < 2e6) nt = 1;
  acts.quantize(a, lda, m, k, K, nt);
  const std::int64_t m_blocks = (m + kMc - 1) / kMc;
  const std::int64_t want = std::max<std::int64_t>(1, 8 * nt / m_blocks);
  const std::int64_t group = std::max<std::int64_t>(4, (panels + want - 1) / want);
  const std::int64_t groups = (panels + group - 1) / group;
  const std::int64_t tasks = m_blocks * groups;
  if (tasks < nt) nt = static_cast<int>(tasks);
  const int QB = cpu::qblock_bytes(w.qtype());
  const cpu::QType qt = w.qtype();

  auto task = [&](std::int64_t id) {
    const std::int64_t m0 = (id / groups) * kMc, g = id % groups;
    const std::int64_t mc = std::min<std::int64_t>(kMc, m - m0);
    const std::int64_t p_begin = g * group, p_end = std::min(panels, p_begin + group);
    for (std::int64_t b0 = 0; b0 < nb; b0 += kQKcBlocks) {
      const std::int64_t nbc = std::min<std::int64_t>(kQKcBlocks, nb - b0);
      const bool acc = accumulate || b0 > 0;
      for (std::int64_t p = p_begin; p < p_end; ++p) {
        const std::size_t pb = static_cast<std::size_t>(p * nb + b0);
        const std::uint8_t* wq = w.qs.data() + pb * static_cast<std::size_t>(QB);
        const float* wd = w.d.data() + pb * cpu::kQNr;
        const float* wm = w.m.empty() ? nullptr : w.m.data() + pb * cpu::kQNr;
        const int cols = static_cast<int>(std::min<std::int64_t>(cpu::kQNr, n - p * cpu::kQNr));
        for (std::int64_t i = 0; i < mc; i += cpu::kQMr) {
          const int rows = static_cast<int>(std::min<std::int64_t>(cpu::kQMr, mc - i));
          K.kernel(qt, wq, wd, wm, nbc, acts.view(m0 + i, b0), c + (m0 + i) * ldc + p * cpu::kQNr,
                   ldc, acc, rows, cols);
        }
      }
    }
  };
#ifdef _OPENMP
  if (nt > 1) {
    std::atomic<std::int64_t> next{0};
#pragma omp parallel num_threads(nt)
    for (std::int64_t id = next++; id < tasks; id = next++) task(id);
    return;
  }
#endif
  for (std::int64_t id = 0; id < tasks; ++id) task(id);
}

/// A projection's weight: F32 panels (PackedWeight) or kept in its block type (QuantWeight).
struct LinearWeight {
  PackedWeight f32;  ///< used when !quantized()
  QuantWeight q;     ///< used when quantized()
  bool is_q = false;

  bool quantized() const { return is_q; }
  std::int64_t n() const { return is_q ? q.n : f32.n; }
  std::int64_t k() const { return is_q ? q.k : f32.k; }
  /// Bytes held.
  std::size_t bytes() const { return is_q ? q.bytes() : f32.bytes(); }
};

/// Scratch of linear_nt: F32 packing and quantized activations.
struct LinearScratch {
  GemmScratch f32;
  QuantActs acts;
};

/// C (+)= A W^T with W's own kernel (gemm_nt or qgemm_nt).
inline void linear_nt(const float* a, std::int64_t lda, std::int64_t m, const LinearWeight& w,
                      float* c, std::int64_t ldc, bool accumulate, int threads,
                      LinearScratch& scratch) {
  if (w.quantized())
    qgemm_nt(a, lda, m, w.q, c, ldc, accumulate, threads, scratch.acts);
  else
    gemm_nt(a, lda, m, w.f32, c, ldc, accumulate, threads, scratch.f32);
}

}  // namespace lmembed::detail
