// lmembed/cuda/plan.cuh - host-side planning for the CUDA backend: no CUDA headers needed.
//
// Everything the device code needs that is decided on the host lives here as plain C++: the
// model shape, the workspace layout for one batch shape (CUB's two-call convention: ask for the
// size, allocate once, run), the attention tile list over packed sequences, cuBLAS arguments
// for row-major products, the capture plan and the RoPE table. The CPU tests check all of it
// without a GPU, and the device code only follows these plans.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lmembed/backbone/config.hpp"
#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/cuda/math.cuh"

namespace lmembed::cuda {

/// Shape and hyper-parameters of a decoder backbone as the device code needs them.
struct ModelSpec {
  std::int64_t n_vocab = 0, d_model = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0,
               d_ff = 0, n_ctx = 0;
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  bool qkv_bias = false;
  RopeForm rope = RopeForm::interleaved;

  /// Width of the fused Q|K|V projection output: (n_heads + 2 n_kv_heads) * head_dim.
  std::int64_t qkv_dim() const { return (n_heads + 2 * n_kv_heads) * head_dim; }
  /// Throws config_error unless the sizes fit together and the kernels support them.
  void check() const {
    auto bad = [](const std::string& what) { throw config_error("cuda::ModelSpec: " + what); };
    if (n_vocab <= 0 || d_model <= 0 || n_layers <= 0 || n_heads <= 0 || n_kv_heads <= 0 ||
        head_dim <= 0 || d_ff <= 0)
      bad("every size must be positive");
    if (n_heads % n_kv_heads != 0)
      bad("n_heads " + std::to_string(n_heads) + " is not a multiple of n_kv_heads " +
          std::to_string(n_kv_heads));
    if (head_dim % 2 != 0) bad("head_dim must be even for RoPE, got " + std::to_string(head_dim));
    if (head_dim > 256)
      bad("head_dim " + std::to_string(head_dim) + " exceeds the attention kernel's 256");
  }
};

/// The ModelSpec of a backbone ModelConfig; the RoPE form follows the weights' q/k row layout,
/// so GGUF llama weights (interleaved pairs) are used as stored, without permutation.
inline ModelSpec to_spec(const ModelConfig& c) {
  ModelSpec m;
  m.n_vocab = c.n_vocab;
  m.d_model = c.d_model;
  m.n_layers = c.n_layers;
  m.n_heads = c.n_heads;
  m.n_kv_heads = c.n_kv_heads;
  m.head_dim = c.head_dim;
  m.d_ff = c.d_ff;
  m.n_ctx = c.n_ctx;
  m.rope_theta = c.rope_theta;
  m.rms_eps = c.rms_eps;
  m.qkv_bias = c.qkv_bias;
  m.rope = c.rope_style == RopeStyle::interleaved ? RopeForm::interleaved : RopeForm::rotate_half;
  return m;
}

/// Rounds n up to a multiple of a (a > 0).
constexpr std::size_t round_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}
/// ceil(n / d) for positive d.
constexpr std::int64_t ceil_div(std::int64_t n, std::int64_t d) {
  return (n + d - 1) / d;
}

/// Sub-allocations of one device workspace, laid out on the host. Offsets are aligned to 256
/// bytes (cudaMalloc's alignment), so each slice is as aligned as its own allocation would be.
class WorkspaceLayout {
 public:
  static constexpr std::size_t alignment = 256;

  /// Reserves `count` elements of `elem_bytes` each; returns the slice's byte offset.
  std::size_t add(std::size_t count, std::size_t elem_bytes) {
    const std::size_t off = bytes_;
    bytes_ = round_up(bytes_ + count * elem_bytes, alignment);
    return off;
  }
  /// Typed form of add().
  template <class T>
  std::size_t add(std::size_t count) {
    return add(count, sizeof(T));
  }
  /// Total bytes the workspace needs.
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_ = 0;
};

/// Arguments of cublasGemmEx for the row-major product Y[M,N] = X[M,K] * W[N,K]^T (+ beta Y),
/// W stored [out, in] like PyTorch. cuBLAS is column-major, so it computes Y^T = W X^T: the
/// row-major W is a column-major K x N matrix that is transposed (op T), X^T is column-major
/// K x M (op N) and Y^T column-major N x M.
struct GemmArgs {
  bool transa = true, transb = false;  ///< op(A) = A^T, op(B) = B
  int m = 0, n = 0, k = 0;             ///< cuBLAS m, n, k
  int lda = 0, ldb = 0, ldc = 0;       ///< leading dimensions
};

/// GemmArgs for Y[M,N] = X[M,K] W[N,K]^T with dense row-major operands.
inline GemmArgs gemm_xwt(std::int64_t M, std::int64_t N, std::int64_t K) {
  if (M <= 0 || N <= 0 || K <= 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    throw shape_error("cuda::gemm_xwt: sizes [" + std::to_string(M) + ", " + std::to_string(K) +
                      "] x [" + std::to_string(N) + ", " + std::to_string(K) +
                      "]^T are empty or exceed cuBLAS's int range");
  GemmArgs g;
  g.transa = true;
  g.transb = false;
  g.m = static_cast<int>(N);
  g.n = static_cast<int>(M);
  g.k = static_cast<int>(K);
  g.lda = static_cast<int>(K);
  g.ldb = static_cast<int>(K);
  g.ldc = static_cast<int>(N);
  return g;
}

/// GemmArgs for Y[M,N] = X[M,K] W[K,N] (W stored [in, out], as the heads' weights may be).
inline GemmArgs gemm_xw(std::int64_t M, std::int64_t N, std::int64_t K) {
  GemmArgs g = gemm_xwt(M, N, K);
  g.transa = false;
  g.lda = static_cast<int>(N);
  return g;
}

/// GemmArgs for Y[M,N] = A[K,M]^T B[K,N] (both row-major; e.g. the weight gradient
/// dW = dY^T X, or the candidates' gradient in InfoNCE). Column-major: Y^T = B^T A, where the
/// row-major B is column-major N x K (op N) and the row-major A column-major M x K (op T).
inline GemmArgs gemm_xtw(std::int64_t M, std::int64_t N, std::int64_t K) {
  GemmArgs g = gemm_xwt(M, N, K);  // same size checks
  g.transa = false;                // A' = B (col-major N x K, ld N)
  g.transb = true;                 // B' = A (col-major M x K, ld M), transposed
  g.lda = static_cast<int>(N);
  g.ldb = static_cast<int>(M);
  return g;
}

/// Column-major reference of what cuBLAS computes for GemmArgs (C = alpha op(A) op(B) + beta C),
/// used by the CPU tests to prove the argument mapping; never used on the hot path.
inline void gemm_colmajor_reference(const GemmArgs& g, float alpha, const float* A, const float* B,
                                    float beta, float* C) {
  for (int j = 0; j < g.n; ++j)
    for (int i = 0; i < g.m; ++i) {
      double acc = 0.0;
      for (int p = 0; p < g.k; ++p) {
        const float a = g.transa ? A[p + static_cast<std::size_t>(i) * g.lda]
                                 : A[i + static_cast<std::size_t>(p) * g.lda];
        const float b = g.transb ? B[j + static_cast<std::size_t>(p) * g.ldb]
                                 : B[p + static_cast<std::size_t>(j) * g.ldb];
        acc += static_cast<double>(a) * b;
      }
      float& c = C[i + static_cast<std::size_t>(j) * g.ldc];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : beta * c));
    }
}

/// Query rows per attention tile (one CUDA block), and keys per shared-memory K/V tile.
inline constexpr int attention_tile_q = 32;
inline constexpr int attention_tile_k = 32;

/// One query tile of the packed-varlen attention: sequence `seq`, query rows
/// [q_begin, q_begin + attention_tile_q) of that sequence (clipped to its length).
struct AttentionTile {
  std::int32_t seq;
  std::int32_t q_begin;
};

/// The tile list: every sequence cut into query tiles; the kernel runs one block per
/// (tile, head). Longest sequences first, so the longest blocks start earliest.
inline std::vector<AttentionTile> attention_tiles(std::span<const std::int64_t> offsets) {
  std::vector<AttentionTile> tiles;
  if (offsets.size() < 2) return tiles;
  std::vector<std::int32_t> order(offsets.size() - 1);
  for (std::size_t s = 0; s < order.size(); ++s) order[s] = static_cast<std::int32_t>(s);
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    return offsets[a + 1] - offsets[a] > offsets[b + 1] - offsets[b];
  });
  for (std::int32_t s : order) {
    const std::int64_t len = offsets[s + 1] - offsets[s];
    for (std::int64_t q = 0; q < len; q += attention_tile_q)
      tiles.push_back({s, static_cast<std::int32_t>(q)});
  }
  return tiles;
}

/// Keys [0, kv_end) a query tile must visit: the whole sequence when bidirectional, up to the
/// tile's last query when causal (later key tiles are fully masked and skipped).
inline std::int64_t attention_kv_end(std::int64_t seq_len, std::int64_t q_begin, bool causal) {
  return causal ? std::min(seq_len, q_begin + attention_tile_q) : seq_len;
}

/// Shared memory (bytes) of the attention kernel for one head size: Q tile, K and V tiles,
/// each row padded by one float against bank conflicts.
inline std::size_t attention_smem_bytes(std::int64_t head_dim) {
  return sizeof(float) * static_cast<std::size_t>(head_dim + 1) *
         (attention_tile_q + 2 * attention_tile_k);
}

/// Which layers the backbone copies into Captured, and where.
struct CapturePlan {
  CaptureSpec spec{};
  std::int64_t n_layers_out = 1;  ///< layers per item in Captured (1 or L)
  std::int64_t n_items = 0;       ///< sequences, or tokens when spec.tokens == all
  std::int64_t rows() const { return n_items * n_layers_out; }
  /// Captured slot of model layer l (1-based, L = after the final norm), or -1 if not captured.
  std::int64_t slot(std::int64_t layer, std::int64_t n_layers) const {
    if (spec.layers == CaptureLayers::all) return layer - 1;
    return layer == n_layers ? 0 : -1;
  }
};

/// Validates the batch for the device forward and plans its capture. Throws input_error on an
/// empty batch, an empty sequence, a token id out of range, a sequence longer than n_ctx (the
/// caller truncates first when asked to) or, for mean capture, a pool_from past the end.
inline CapturePlan plan_capture(const TokenBatch& batch, CaptureSpec spec, const ModelSpec& m) {
  if (batch.size() == 0) throw input_error("cuda forward: the batch holds no sequence");
  if (batch.offsets.front() != 0 || batch.offsets.back() != batch.n_tokens())
    throw input_error("cuda forward: batch offsets do not cover the ids");
  if (!batch.pool_from.empty() && batch.pool_from.size() != batch.size())
    throw input_error("cuda forward: pool_from has " + std::to_string(batch.pool_from.size()) +
                      " entries for " + std::to_string(batch.size()) + " sequences");
  for (std::size_t s = 0; s < batch.size(); ++s) {
    const std::int64_t len = batch.length(s);
    if (len <= 0) throw input_error("cuda forward: sequence " + std::to_string(s) + " is empty");
    if (m.n_ctx > 0 && len > m.n_ctx)  // same rule and wording as the CPU backbone
      throw input_error("cuda forward: sequence " + std::to_string(s) + " has " +
                        std::to_string(len) + " tokens, more than n_ctx " +
                        std::to_string(m.n_ctx));
    if (spec.tokens == CaptureTokens::mean &&
        (batch.pool_start(s) < 0 || batch.pool_start(s) >= len))
      throw input_error("cuda forward: pool_from " + std::to_string(batch.pool_start(s)) +
                        " of sequence " + std::to_string(s) + " is outside its " +
                        std::to_string(len) + " tokens");
  }
  for (std::size_t t = 0; t < batch.ids.size(); ++t)
    if (batch.ids[t] < 0 || batch.ids[t] >= m.n_vocab)
      throw input_error("cuda forward: token " + std::to_string(t) + " has id " +
                        std::to_string(batch.ids[t]) + ", outside the vocabulary of " +
                        std::to_string(m.n_vocab));
  CapturePlan p;
  p.spec = spec;
  p.n_layers_out = spec.layers == CaptureLayers::all ? m.n_layers : 1;
  p.n_items = spec.tokens == CaptureTokens::all ? batch.n_tokens()
                                                : static_cast<std::int64_t>(batch.size());
  return p;
}

/// The batch with every sequence cut to its first n_ctx tokens (ForwardOptions::truncate).
inline TokenBatch truncate_batch(const TokenBatch& batch, std::int64_t n_ctx) {
  TokenBatch out;
  out.ids.reserve(batch.ids.size());
  for (std::size_t s = 0; s < batch.size(); ++s) {
    const auto seq = batch.sequence(s);
    out.ids.insert(
        out.ids.end(), seq.begin(),
        seq.begin() + std::min<std::int64_t>(n_ctx, static_cast<std::int64_t>(seq.size())));
    out.offsets.push_back(static_cast<std::int64_t>(out.ids.size()));
  }
  out.pool_from = batch.pool_from;
  return out;
}

/// Per-token position within its own sequence (positions restart at 0 for each sequence).
inline std::vector<std::int32_t> token_positions(const TokenBatch& batch) {
  std::vector<std::int32_t> pos(batch.ids.size());
  for (std::size_t s = 0; s < batch.size(); ++s)
    for (std::int64_t t = batch.offsets[s]; t < batch.offsets[s + 1]; ++t)
      pos[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t - batch.offsets[s]);
  return pos;
}

/// RoPE table for positions [0, n_pos): entry [pos * (head_dim/2) + i] holds (cos, sin) of
/// pos * theta^(-2i/head_dim), computed in double and rounded once to float.
inline std::vector<float> rope_table(float theta, std::int64_t head_dim, std::int64_t n_pos) {
  const std::int64_t half = head_dim / 2;
  std::vector<float> t(static_cast<std::size_t>(n_pos * half * 2));
  for (std::int64_t p = 0; p < n_pos; ++p)
    for (std::int64_t i = 0; i < half; ++i) {
      const double ang = static_cast<double>(p) *
                         std::pow(static_cast<double>(theta),
                                  -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      t[static_cast<std::size_t>((p * half + i) * 2)] = static_cast<float>(std::cos(ang));
      t[static_cast<std::size_t>((p * half + i) * 2 + 1)] = static_cast<float>(std::sin(ang));
    }
  return t;
}

/// Weight storage precision on the device; the GEMMs accumulate in F32 either way.
enum class WeightPrecision : std::uint8_t {
  f32,   ///< F32 weights and activations, F32 compute (parity with the CPU, the default)
  tf32,  ///< F32 storage, TF32 tensor-core compute
  bf16,  ///< BF16 weights; activations rounded to BF16 before each GEMM; F32 accumulation
};

/// Byte offsets of every buffer the device backbone forward uses for one batch shape.
struct BackboneWorkspace {
  std::size_t x = 0, h = 0, qkv = 0, attn = 0, gate_up = 0, act = 0, staging = 0;
  std::size_t ids = 0, positions = 0, offsets = 0, pool_from = 0, tiles = 0, rope = 0, captured = 0;
  std::int64_t n_tokens = 0, n_seq = 0, n_tiles = 0, max_len = 0;
  std::size_t bytes = 0;  ///< total size of the workspace
};

/// Lays out the workspace of a device forward over a batch of `n_tokens` tokens in `n_seq`
/// sequences, the longest `max_len` long, split into `n_tiles` attention tiles, capturing
/// `captured_rows` rows of d_model. The buffers are reused by every layer, so the size does
/// not grow with n_layers.
inline BackboneWorkspace plan_backbone_workspace(const ModelSpec& m, std::int64_t n_tokens,
                                                 std::int64_t n_seq, std::int64_t max_len,
                                                 std::int64_t n_tiles, std::int64_t captured_rows,
                                                 WeightPrecision precision) {
  const auto T = static_cast<std::size_t>(n_tokens);
  WorkspaceLayout L;
  BackboneWorkspace w;
  w.n_tokens = n_tokens;
  w.n_seq = n_seq;
  w.n_tiles = n_tiles;
  w.max_len = max_len;
  w.x = L.add<float>(T * static_cast<std::size_t>(m.d_model));
  w.h = L.add<float>(T * static_cast<std::size_t>(m.d_model));
  w.qkv = L.add<float>(T * static_cast<std::size_t>(m.qkv_dim()));
  w.attn = L.add<float>(T * static_cast<std::size_t>(m.n_heads * m.head_dim));
  w.gate_up = L.add<float>(T * static_cast<std::size_t>(2 * m.d_ff));
  w.act = L.add<float>(T * static_cast<std::size_t>(m.d_ff));
  // BF16 copies of a GEMM's activation input: as wide as the widest GEMM input.
  const std::int64_t widest = std::max({m.d_model, m.d_ff, m.n_heads * m.head_dim});
  w.staging =
      L.add(precision == WeightPrecision::bf16 ? T * static_cast<std::size_t>(widest) : 0, 2);
  w.ids = L.add<std::int32_t>(T);
  w.positions = L.add<std::int32_t>(T);
  w.offsets = L.add<std::int64_t>(static_cast<std::size_t>(n_seq + 1));
  w.pool_from = L.add<std::int32_t>(static_cast<std::size_t>(n_seq));
  w.tiles = L.add<AttentionTile>(static_cast<std::size_t>(n_tiles));
  w.rope = L.add<float>(static_cast<std::size_t>(max_len * m.head_dim));
  w.captured = L.add<float>(static_cast<std::size_t>(captured_rows * m.d_model));
  w.bytes = L.bytes();
  return w;
}

/// One parameter tensor in the flat arena.
struct ParamSlot {
  std::string name;
  std::int64_t numel = 0;
  bool decay = true;
  std::int64_t offset = 0;  ///< first element in the arena (set by plan_params)
};

/// Arena layout: decayed parameters first (in the given order), then the others.
struct ParamPlan {
  std::vector<ParamSlot> slots;  ///< in the caller's order, offsets filled
  std::int64_t n = 0;            ///< total elements
  std::int64_t n_decay = 0;      ///< elements [0, n_decay) are weight-decayed
};

/// Lays out the arena for parameters given as (name, numel, decay), in the caller's order.
inline ParamPlan plan_params(std::vector<ParamSlot> slots) {
  ParamPlan p;
  std::int64_t at = 0;
  for (int pass = 0; pass < 2; ++pass)
    for (ParamSlot& s : slots) {
      if (s.numel < 0)
        throw shape_error("cuda::plan_params: parameter '" + s.name + "' has " +
                          std::to_string(s.numel) + " elements");
      if (s.decay != (pass == 0)) continue;
      s.offset = at;
      at += s.numel;
      if (pass == 0) p.n_decay = at;
    }
  p.n = at;
  p.slots = std::move(slots);
  return p;
}

/// Sizes of one search: how the queries and the corpus are blocked and how many candidates
/// each query keeps. Pure host logic (tested on the CPU).
struct TopKPlan {
  std::int64_t n_queries = 0, n_docs = 0, k = 0;
  std::int64_t query_block = 0, corpus_block = 0;
  std::int64_t n_corpus_blocks = 0;
  std::int64_t take = 0;       ///< candidates kept per query per corpus block: min(k, block)
  std::int64_t cand_cols = 0;  ///< candidate columns per query
};

/// Plans a search of n_queries over n_docs for the best k (query/corpus blocks bound the score
/// buffer to query_block x corpus_block floats).
inline TopKPlan plan_topk(std::int64_t n_queries, std::int64_t n_docs, std::int64_t k,
                          std::int64_t query_block = 1024, std::int64_t corpus_block = 32768) {
  if (k < 1) throw config_error("cuda top-k: k must be >= 1, got " + std::to_string(k));
  if (n_docs >= (std::int64_t{1} << 31))
    throw shape_error("cuda top-k: " + std::to_string(n_docs) + " documents exceed int32 indices");
  TopKPlan p;
  p.n_queries = n_queries;
  p.n_docs = n_docs;
  p.k = k;
  p.query_block =
      std::max<std::int64_t>(1, std::min(query_block, std::max<std::int64_t>(1, n_queries)));
  p.corpus_block =
      std::max<std::int64_t>(1, std::min(corpus_block, std::max<std::int64_t>(1, n_docs)));
  p.n_corpus_blocks = ceil_div(n_docs, p.corpus_block);
  p.take = std::min(k, p.corpus_block);
  p.cand_cols = 0;
  for (std::int64_t b = 0; b < p.n_corpus_blocks; ++b)
    p.cand_cols += std::min(p.take, std::min(p.corpus_block, n_docs - b * p.corpus_block));
  // CUB's segmented sort counts items in int.
  if (p.n_queries * p.cand_cols > INT32_MAX || p.query_block * p.corpus_block > INT32_MAX)
    throw shape_error("cuda top-k: " + std::to_string(n_queries) + " queries x " +
                      std::to_string(p.cand_cols) +
                      " candidates exceed one sort; search fewer queries at a time");
  return p;
}

}  // namespace lmembed::cuda
