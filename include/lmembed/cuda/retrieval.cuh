// lmembed/cuda/retrieval.cuh - exact top-k inner-product retrieval on the GPU.
//
// The corpus streams through the device in blocks. For each (corpus block, query block) one
// cuBLAS GEMM gives the scores, a CUB stable segmented sort (one segment per query, keys =
// scores descending, values = document indices) orders them, and each query's best k of the
// block are appended to its candidate list. A final stable segmented sort of the candidates
// gives the answer. Stable sorts of indices that start ascending break equal scores by the
// smaller document index, exactly like eval::TopK on the CPU (-0.0 is folded into +0.0 first,
// since a radix sort would otherwise tell them apart). Temp storage follows CUB's two-call
// convention and is allocated once per search.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/device/device_segmented_sort.cuh>
#include <vector>

#include "lmembed/core/tensor.hpp"
#include "lmembed/cuda/gemm.cuh"
#include "lmembed/cuda/kernels.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/runtime.cuh"
#include "lmembed/eval/topk.hpp"

namespace lmembed::cuda {

namespace kernels {

/// Folds -0.0 into +0.0 and writes each score's global document index.
LMEMBED_KERNEL void prepare_scores(float* scores, std::int32_t* index, std::int64_t rows,
                               std::int64_t cols, std::int64_t first_doc) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  scores[i] = scores[i] + 0.0f;
  index[i] = static_cast<std::int32_t>(first_doc + i % cols);
}

/// Row r's first `take` sorted entries -> candidate row (q0 + r), columns [col, col + take).
LMEMBED_KERNEL void gather_best(const float* scores, const std::int32_t* index, std::int64_t cols,
                            int take, float* cand_s, std::int32_t* cand_i, std::int64_t cand_cols,
                            std::int64_t q0, std::int64_t col) {
  const std::int64_t r = blockIdx.x;
  for (int j = threadIdx.x; j < take; j += blockDim.x) {
    cand_s[(q0 + r) * cand_cols + col + j] = scores[r * cols + j];
    cand_i[(q0 + r) * cand_cols + col + j] = index[r * cols + j];
  }
}

/// offsets[i] = i * stride (segment boundaries of equal-length rows).
LMEMBED_KERNEL void row_offsets(std::int64_t* offsets, std::int64_t n, std::int64_t stride) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i <= n) offsets[i] = i * stride;
}

}  // namespace kernels

/// Exact top-k of every query row over the corpus rows by inner product, on the current device;
/// best first, ties to the smaller document index (as eval::search_topk).
inline std::vector<std::vector<eval::Hit>> search_topk(const Matrix& queries, const Matrix& corpus,
                                                       std::int64_t k,
                                                       std::int64_t query_block = 1024,
                                                       std::int64_t corpus_block = 32768) {
  if (queries.cols() != corpus.cols())
    throw shape_error("cuda::search_topk: queries are [" + std::to_string(queries.rows()) + ", " +
                      std::to_string(queries.cols()) + "], corpus is [" +
                      std::to_string(corpus.rows()) + ", " + std::to_string(corpus.cols()) + "]");
  const TopKPlan p = plan_topk(queries.rows(), corpus.rows(), k, query_block, corpus_block);
  std::vector<std::vector<eval::Hit>> out(static_cast<std::size_t>(p.n_queries));
  if (p.n_queries == 0 || p.n_docs == 0) return out;
  const std::int64_t d = queries.cols(), qb = p.query_block, cb = p.corpus_block;
  Stream stream = Stream::create();
  CublasHandle blas = CublasHandle::create(stream.get());
  const cudaStream_t s = stream.get();

  DeviceBuffer<float> dq(static_cast<std::size_t>(p.n_queries * d)),
      dc(static_cast<std::size_t>(cb * d)), scores(static_cast<std::size_t>(qb * cb)),
      sorted(static_cast<std::size_t>(qb * cb)),
      cand_s(static_cast<std::size_t>(p.n_queries * p.cand_cols)),
      cand_sorted(static_cast<std::size_t>(p.n_queries * p.cand_cols));
  DeviceBuffer<std::int32_t> index(static_cast<std::size_t>(qb * cb)),
      index_sorted(static_cast<std::size_t>(qb * cb)),
      cand_i(static_cast<std::size_t>(p.n_queries * p.cand_cols)),
      cand_i_sorted(static_cast<std::size_t>(p.n_queries * p.cand_cols));
  const std::int64_t max_rows = std::max(qb, p.n_queries);
  DeviceBuffer<std::int64_t> offsets(static_cast<std::size_t>(max_rows + 1));
  dq.upload(std::span<const float>(queries.data(), static_cast<std::size_t>(queries.size())), s);

  // CUB two-call convention: size the temp storage for the largest sorts, allocate once.
  std::size_t tmp_block = 0, tmp_final = 0;
  LMEMBED_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairsDescending(
      nullptr, tmp_block, scores.data(), sorted.data(), index.data(), index_sorted.data(),
      static_cast<int>(qb * cb), static_cast<int>(qb), offsets.data(), offsets.data() + 1, s));
  LMEMBED_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairsDescending(
      nullptr, tmp_final, cand_s.data(), cand_sorted.data(), cand_i.data(), cand_i_sorted.data(),
      static_cast<int>(p.n_queries * p.cand_cols), static_cast<int>(p.n_queries), offsets.data(),
      offsets.data() + 1, s));
  DeviceBuffer<std::byte> tmp(std::max(tmp_block, tmp_final));

  std::int64_t col = 0;
  for (std::int64_t b = 0; b < p.n_corpus_blocks; ++b) {
    const std::int64_t c0 = b * cb, cn = std::min(cb, p.n_docs - c0);
    const std::int64_t take = std::min(p.take, cn);
    dc.upload(std::span<const float>(corpus.data() + c0 * d, static_cast<std::size_t>(cn * d)), s);
    kernels::row_offsets<<<detail::flat_grid(qb + 1), flat_block, 0, s>>>(offsets.data(), qb, cn);
    LMEMBED_CUDA_CHECK_LAUNCH("row_offsets");
    for (std::int64_t q0 = 0; q0 < p.n_queries; q0 += qb) {
      const std::int64_t qn = std::min(qb, p.n_queries - q0);
      gemm_xwt_f32(blas.get(), dq.data() + q0 * d, dc.data(), scores.data(), qn, cn, d, 1.0f, 0.0f);
      kernels::prepare_scores<<<detail::flat_grid(qn * cn), flat_block, 0, s>>>(
          scores.data(), index.data(), qn, cn, c0);
      LMEMBED_CUDA_CHECK_LAUNCH("prepare_scores");
      std::size_t bytes = tmp.size();
      LMEMBED_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairsDescending(
          tmp.data(), bytes, scores.data(), sorted.data(), index.data(), index_sorted.data(),
          static_cast<int>(qn * cn), static_cast<int>(qn), offsets.data(), offsets.data() + 1, s));
      kernels::gather_best<<<static_cast<unsigned>(qn), 128, 0, s>>>(
          sorted.data(), index_sorted.data(), cn, static_cast<int>(take), cand_s.data(),
          cand_i.data(), p.cand_cols, q0, col);
      LMEMBED_CUDA_CHECK_LAUNCH("gather_best");
    }
    col += take;
  }
  kernels::row_offsets<<<detail::flat_grid(p.n_queries + 1), flat_block, 0, s>>>(
      offsets.data(), p.n_queries, p.cand_cols);
  LMEMBED_CUDA_CHECK_LAUNCH("row_offsets");
  std::size_t bytes = tmp.size();
  LMEMBED_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairsDescending(
      tmp.data(), bytes, cand_s.data(), cand_sorted.data(), cand_i.data(), cand_i_sorted.data(),
      static_cast<int>(p.n_queries * p.cand_cols), static_cast<int>(p.n_queries), offsets.data(),
      offsets.data() + 1, s));
  std::vector<float> hs(static_cast<std::size_t>(p.n_queries * p.cand_cols));
  std::vector<std::int32_t> hi(hs.size());
  cand_sorted.download(std::span<float>(hs), s);
  cand_i_sorted.download(std::span<std::int32_t>(hi), s);
  stream.synchronize();
  const std::int64_t keep = std::min(p.k, p.cand_cols);
  for (std::int64_t q = 0; q < p.n_queries; ++q) {
    auto& hits = out[static_cast<std::size_t>(q)];
    hits.resize(static_cast<std::size_t>(keep));
    for (std::int64_t j = 0; j < keep; ++j)
      hits[static_cast<std::size_t>(j)] = {hi[q * p.cand_cols + j], hs[q * p.cand_cols + j]};
  }
  return out;
}

}  // namespace lmembed::cuda
