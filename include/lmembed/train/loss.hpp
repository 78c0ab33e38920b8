// lmembed/train/loss.hpp - the contrastive loss the pooling heads are trained with.
//
// InfoNCE on cosine similarity times a scale (20, i.e. temperature 0.05): each query is scored
// against every positive of the batch (in-batch negatives) and every hard negative of the batch,
// and the cross-entropy picks its own positive - the paper's HardNegativeNLLLoss (llm2vec).
// The loss returns its gradients with respect to the raw (unnormalised) embeddings, so that the
// caller can back-propagate through the head chunk by chunk (GradCache, see trainer.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::train {

/// Options of info_nce().
struct InfoNceOptions {
  double scale = 20.0;         ///< cosine similarities are multiplied by this (1 / temperature)
  bool symmetric = false;      ///< also score each positive against every query (doc -> query)
  bool hard_negatives = true;  ///< false: ignore the negatives (in-batch negatives only)
};

/// Loss value and its gradients with respect to the three embedding matrices.
template <class T>
struct InfoNceResult {
  T loss = 0;
  MatrixX<T> d_queries;    ///< [B, D]
  MatrixX<T> d_positives;  ///< [B, D]
  MatrixX<T> d_negatives;  ///< [N, D] (zeros when hard negatives are off)
};

namespace detail {

/// Row-wise L2 normalisation as torch.nn.functional.normalize (norm clamped at 1e-12);
/// returns the normalised rows and writes the clamped norms.
template <class T>
MatrixX<T> normalize_rows(const MatrixX<T>& x, VectorX<T>& norms) {
  norms = x.rowwise().norm();
  MatrixX<T> out(x.rows(), x.cols());
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    norms(i) = std::max(norms(i), T(1e-12));
    out.row(i) = x.row(i) / norms(i);
  }
  return out;
}

/// Back-propagates through normalize_rows: d x = (d xhat - xhat (xhat . d xhat)) / |x|.
/// (When the norm was clamped the exact gradient is d xhat / eps; such rows are zero vectors,
/// where every direction is as good as any other.)
template <class T>
MatrixX<T> normalize_rows_backward(const MatrixX<T>& xhat, const VectorX<T>& norms,
                                   const MatrixX<T>& d_xhat) {
  MatrixX<T> dx(xhat.rows(), xhat.cols());
  for (Eigen::Index i = 0; i < xhat.rows(); ++i) {
    const T dot = xhat.row(i).dot(d_xhat.row(i));
    dx.row(i) = (d_xhat.row(i) - dot * xhat.row(i)) / norms(i);
  }
  return dx;
}

/// Cross-entropy of each row of `s` against target column `target(i) = i`, averaged over rows
/// (scaled by `weight`); adds weight * (softmax - onehot) / rows to `ds` and returns the loss.
template <class T, class S, class DS>
T cross_entropy_diag(const S& s, DS&& ds, T weight) {
  const Eigen::Index rows = s.rows();
  T total = 0;
  for (Eigen::Index i = 0; i < rows; ++i) {
    const T mx = s.row(i).maxCoeff();
    T sum = 0;
    for (Eigen::Index j = 0; j < s.cols(); ++j) sum += std::exp(s(i, j) - mx);
    const T lse = mx + std::log(sum);
    total += lse - s(i, i);
    const T w = weight / T(rows);
    for (Eigen::Index j = 0; j < s.cols(); ++j) ds(i, j) += w * std::exp(s(i, j) - lse);
    ds(i, i) -= w;
  }
  return weight * total / T(rows);
}

}  // namespace detail

/// InfoNCE with in-batch and hard negatives.
///
/// queries and positives are [B, D] (row i of each is a pair); negatives is [N, D] with the hard
/// negatives of the whole batch, any number (N = 0 allowed). Every query is scored against the
/// B positives and the N negatives: s = scale * cos(q_i, c_j), loss = mean_i CE(s_i, i).
/// symmetric adds the document -> query direction on the positive block (each positive against
/// every query) and averages both, as sentence-transformers' MultipleNegativesSymmetricRanking.
template <class T>
InfoNceResult<T> info_nce(const MatrixX<T>& queries, const MatrixX<T>& positives,
                          const MatrixX<T>& negatives, const InfoNceOptions& opt = {}) {
  const Eigen::Index B = queries.rows(), D = queries.cols();
  if (positives.rows() != B || positives.cols() != D)
    throw shape_error("info_nce: queries are [" + std::to_string(B) + ", " + std::to_string(D) +
                      "] but positives are [" + std::to_string(positives.rows()) + ", " +
                      std::to_string(positives.cols()) + "]");
  if (negatives.rows() > 0 && negatives.cols() != D)
    throw shape_error("info_nce: queries are [" + std::to_string(B) + ", " + std::to_string(D) +
                      "] but negatives are [" + std::to_string(negatives.rows()) + ", " +
                      std::to_string(negatives.cols()) + "]");
  if (B == 0) throw input_error("info_nce: empty batch");
  const Eigen::Index N = opt.hard_negatives ? negatives.rows() : 0;
  const T scale = static_cast<T>(opt.scale);

  VectorX<T> nq, nc;
  const MatrixX<T> qh = detail::normalize_rows(queries, nq);
  MatrixX<T> cand(B + N, D);  // candidates: the positives, then the hard negatives
  cand.topRows(B) = positives;
  if (N) cand.bottomRows(N) = negatives;
  const MatrixX<T> ch = detail::normalize_rows(cand, nc);

  MatrixX<T> s = scale * (qh * ch.transpose());  // [B, B + N]
  MatrixX<T> ds = MatrixX<T>::Zero(B, B + N);
  InfoNceResult<T> r;
  const T w = opt.symmetric ? T(0.5) : T(1);
  r.loss = detail::cross_entropy_diag(s, ds, w);
  if (opt.symmetric) {
    // doc -> query: row j of s[:, :B]^T scores positive j against every query.
    MatrixX<T> st = s.leftCols(B).transpose();
    MatrixX<T> dst = MatrixX<T>::Zero(B, B);
    r.loss += detail::cross_entropy_diag(st, dst, w);
    ds.leftCols(B) += dst.transpose();
  }
  ds *= scale;
  const MatrixX<T> d_qh = ds * ch;              // [B, D]
  const MatrixX<T> d_ch = ds.transpose() * qh;  // [B + N, D]
  r.d_queries = detail::normalize_rows_backward(qh, nq, d_qh);
  const MatrixX<T> d_cand = detail::normalize_rows_backward(ch, nc, d_ch);
  r.d_positives = d_cand.topRows(B);
  r.d_negatives = MatrixX<T>::Zero(negatives.rows(), D);
  if (N) r.d_negatives = d_cand.bottomRows(N);
  return r;
}

}  // namespace lmembed::train
