// lmembed/nn/attention.hpp - multi-head cross-attention without biases, over packed segments.
//
// Queries come from one set of rows (xq), keys and values from another (xc). Rows are grouped
// into segments (one per text) and attention never crosses segments. Either side may be
// *shared*: the same rows serve every segment (the multi_layer head's latents are shared
// queries; the latent head's latent array is a shared key/value set). Shared rows are projected
// once, not once per text as a broadcast PyTorch module does.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "lmembed/nn/linear.hpp"

namespace lmembed::nn {

/// How query rows, key/value rows and output rows are grouped into segments.
/// An empty offsets vector means "shared": all rows of that side serve every segment.
struct AttentionLayout {
  std::int64_t n_segments = 1;
  std::vector<std::int64_t> q_offsets;   ///< n_segments + 1 entries, or empty (shared queries)
  std::vector<std::int64_t> kv_offsets;  ///< n_segments + 1 entries, or empty (shared keys)

  /// Query rows [begin, end) of segment s, given the number of query rows.
  std::pair<std::int64_t, std::int64_t> q_range(std::int64_t s, std::int64_t q_rows) const {
    return q_offsets.empty()
               ? std::pair<std::int64_t, std::int64_t>{0, q_rows}
               : std::pair<std::int64_t, std::int64_t>{q_offsets[s], q_offsets[s + 1]};
  }
  /// Key/value rows [begin, end) of segment s.
  std::pair<std::int64_t, std::int64_t> kv_range(std::int64_t s, std::int64_t kv_rows) const {
    return kv_offsets.empty()
               ? std::pair<std::int64_t, std::int64_t>{0, kv_rows}
               : std::pair<std::int64_t, std::int64_t>{kv_offsets[s], kv_offsets[s + 1]};
  }
  /// First output row of segment s (outputs are segment-major).
  std::int64_t out_begin(std::int64_t s, std::int64_t q_rows) const {
    return q_offsets.empty() ? s * q_rows : q_offsets[s];
  }
  /// Number of output rows.
  std::int64_t out_rows(std::int64_t q_rows) const {
    return q_offsets.empty() ? n_segments * q_rows : q_offsets.back();
  }
};

/// softmax(Q K^T / sqrt(head_dim)) V per head, then to_out; q = to_q(xq), [k | v] = to_kv(xc).
/// Parameter names follow lucidrains-style PyTorch modules: <prefix>.to_q.weight [inner, q_in],
/// <prefix>.to_kv.weight [2 inner, kv_in] (keys first, then values), <prefix>.to_out.weight
/// [out, inner], with inner = heads * head_dim. No biases.
template <class T>
struct CrossAttention {
  Linear<T> to_q, to_kv, to_out;
  std::int64_t heads = 1, head_dim = 1;

  /// What backward needs.
  struct Context {
    MatrixX<T> q, kv, o;        ///< projected queries, keys|values, concatenated head outputs
    std::vector<MatrixX<T>> p;  ///< attention probabilities per (segment, head)
  };

  CrossAttention() = default;
  CrossAttention(const std::string& prefix, std::int64_t q_in, std::int64_t kv_in, std::int64_t out,
                 std::int64_t heads_, std::int64_t head_dim_)
      : to_q(prefix + ".to_q", q_in, heads_ * head_dim_, false),
        to_kv(prefix + ".to_kv", kv_in, 2 * heads_ * head_dim_, false),
        to_out(prefix + ".to_out", heads_ * head_dim_, out, false),
        heads(heads_),
        head_dim(head_dim_) {}

  std::int64_t inner() const { return heads * head_dim; }
  void init(Rng& rng) {
    to_q.init(rng);
    to_kv.init(rng);
    to_out.init(rng);
  }

  /// y [out_rows, out] for queries xq [*, q_in] and context xc [*, kv_in].
  void forward(const MatrixX<T>& xq, const MatrixX<T>& xc, const AttentionLayout& lay,
               MatrixX<T>& y, Context& ctx) const {
    check_layout(xq.rows(), xc.rows(), lay);
    to_q.forward(xq, ctx.q);
    to_kv.forward(xc, ctx.kv);
    const std::int64_t nqr = xq.rows(), nkr = xc.rows(), in = inner();
    ctx.o.setZero(lay.out_rows(nqr), in);
    ctx.p.assign(static_cast<std::size_t>(lay.n_segments * heads), MatrixX<T>());
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(head_dim)));
    const std::int64_t hd = head_dim;
    // Heads write disjoint columns, so they run in parallel; segments run in order. Small
    // problems stay on one thread (a parallel region costs more than they do).
    const bool par = work(lay, nqr, nkr) > 2'000'000;
#pragma omp parallel for schedule(dynamic) if (par)
    for (std::int64_t h = 0; h < heads; ++h) {
      for (std::int64_t s = 0; s < lay.n_segments; ++s) {
        const auto [qa, qb] = lay.q_range(s, nqr);
        const auto [ka, kb] = lay.kv_range(s, nkr);
        MatrixX<T>& p = ctx.p[static_cast<std::size_t>(s * heads + h)];
        p.resize(qb - qa, kb - ka);
        // The products on the dispatched GEMM kernel for float (nn/gemm.hpp).
        block_nt(ctx.q.block(qa, h * hd, qb - qa, hd), ctx.kv.block(ka, h * hd, kb - ka, hd), p,
                 false);
        for (Eigen::Index i = 0; i < p.rows(); ++i) {
          auto r = p.row(i);
          const T m = r.maxCoeff();
          if constexpr (std::is_same_v<T, float>) {
            // e^(x scale - m scale) with the run-time level's vector exp.
            r *= scale;
            const double sum = ::lmembed::detail::exp_shift_sum(r.data(), r.size(), m * scale);
            r *= static_cast<float>(1.0 / sum);
          } else {
            r = ((r.array() - m) * scale).exp();
            r /= r.sum();
          }
        }
        block_nn(p, ctx.kv.block(ka, in + h * hd, kb - ka, hd),
                 ctx.o.block(lay.out_begin(s, nqr), h * hd, qb - qa, hd), false);
      }
    }
    to_out.forward(ctx.o, y);
  }

  /// Accumulates the three weights' gradients; writes dxq / dxc when non-null.
  void backward(const MatrixX<T>& xq, const MatrixX<T>& xc, const AttentionLayout& lay,
                const MatrixX<T>& dy, const Context& ctx, MatrixX<T>* dxq, MatrixX<T>* dxc) {
    MatrixX<T> d_o;
    to_out.backward(ctx.o, dy, &d_o);
    const std::int64_t nqr = xq.rows(), nkr = xc.rows(), in = inner(), hd = head_dim;
    MatrixX<T> dq = MatrixX<T>::Zero(ctx.q.rows(), ctx.q.cols());
    MatrixX<T> dkv = MatrixX<T>::Zero(ctx.kv.rows(), ctx.kv.cols());
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(head_dim)));
    const bool par = work(lay, nqr, nkr) > 2'000'000;
#pragma omp parallel for schedule(dynamic) if (par)
    for (std::int64_t h = 0; h < heads; ++h) {
      MatrixX<T> dp, pt;  // pt: a transposed copy (the products take row-major blocks)
      for (std::int64_t s = 0; s < lay.n_segments; ++s) {
        const auto [qa, qb] = lay.q_range(s, nqr);
        const auto [ka, kb] = lay.kv_range(s, nkr);
        const MatrixX<T>& p = ctx.p[static_cast<std::size_t>(s * heads + h)];
        const auto dO = d_o.block(lay.out_begin(s, nqr), h * hd, qb - qa, hd);
        dp.resize(qb - qa, kb - ka);
        block_nt(dO, ctx.kv.block(ka, in + h * hd, kb - ka, hd), dp, false);
        pt = p.transpose();
        block_nn(pt, dO, dkv.block(ka, in + h * hd, kb - ka, hd), true);
        // softmax backward: dS = P * (dP - rowsum(P * dP)), then the 1/sqrt(hd) scale.
        for (Eigen::Index i = 0; i < dp.rows(); ++i) {
          const T dot = p.row(i).dot(dp.row(i));
          dp.row(i) = (p.row(i).array() * (dp.row(i).array() - dot) * scale).matrix();
        }
        block_nn(dp, ctx.kv.block(ka, h * hd, kb - ka, hd), dq.block(qa, h * hd, qb - qa, hd),
                 true);
        pt = dp.transpose();
        block_nn(pt, ctx.q.block(qa, h * hd, qb - qa, hd), dkv.block(ka, h * hd, kb - ka, hd),
                 true);
      }
    }
    to_q.backward(xq, dq, dxq);
    to_kv.backward(xc, dkv, dxc);
  }

  /// to_q, to_kv, to_out.
  ParamList<T> parameters() {
    return {&to_q.weight, &to_kv.weight, &to_out.weight};
  }

 private:
  /// Multiply-adds of the score and value products, roughly.
  std::int64_t work(const AttentionLayout& lay, std::int64_t q_rows, std::int64_t kv_rows) const {
    const std::int64_t q = lay.q_offsets.empty() ? lay.n_segments * q_rows : q_rows;
    const std::int64_t k = lay.kv_offsets.empty() ? kv_rows
                                                  : (kv_rows + lay.n_segments - 1) /
                                                        std::max<std::int64_t>(1, lay.n_segments);
    return 2 * q * k * inner();
  }
  void check_layout(std::int64_t q_rows, std::int64_t kv_rows, const AttentionLayout& lay) const {
    auto bad = [](const std::string& what) { throw shape_error("CrossAttention: " + what); };
    if (lay.n_segments < 0) bad("negative segment count");
    for (const auto* off : {&lay.q_offsets, &lay.kv_offsets}) {
      if (off->empty()) continue;
      const std::int64_t rows = off == &lay.q_offsets ? q_rows : kv_rows;
      if (static_cast<std::int64_t>(off->size()) != lay.n_segments + 1 || off->front() != 0 ||
          off->back() != rows)
        bad("offsets do not cover [0, " + std::to_string(rows) + ") in " +
            std::to_string(lay.n_segments) + " segments");
      for (std::size_t i = 0; i + 1 < off->size(); ++i)
        if ((*off)[i + 1] <= (*off)[i])
          bad("segment " + std::to_string(i) + " is empty (every text needs a key and a query)");
    }
    if (lay.q_offsets.empty() && q_rows == 0) bad("no query rows");
    if (lay.kv_offsets.empty() && kv_rows == 0) bad("no key/value rows");
  }
};

}  // namespace lmembed::nn
