// lmembed/cuda/attention.cuh - flash-style attention over packed variable-length sequences.
//
// One block per (query tile, head): the tile's queries (attention_tile_q rows) sit in shared
// memory, K and V stream through shared memory attention_tile_k keys at a time, and each query
// keeps an online softmax (OnlineSoftmax in math.cuh) plus its output accumulator in registers.
// No T x T score matrix exists, per head or otherwise. Sequences never see each other: a tile
// only visits keys of its own sequence, and causal tiles stop at their last query's key.
// Grouped-query attention maps query head h to KV head h / (n_heads / n_kv_heads).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "lmembed/cuda/math.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/runtime.cuh"

namespace lmembed::cuda {

/// Where Q, K and V live in a packed row-major buffer: element (token t, head h, dim c) of Q is
/// q[t * row_stride + h * head_dim + c] (likewise K and V with KV heads).
struct QkvView {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  std::int64_t row_stride = 0;
};

namespace kernels {

/// Warps per attention block; each warp owns attention_tile_q / attn_warps query rows.
inline constexpr int attn_warps = 4;

/// Flash attention forward. NC = ceil(head_dim / 32) rounded to the instantiated size: lane
/// owns output dims lane, lane + 32, ... . out is [n_tokens, n_heads * head_dim].
template <int NC>
__global__ void __launch_bounds__(attn_warps * 32)
    flash_attention(QkvView qkv, float* out, const AttentionTile* tiles,
                    const std::int64_t* offsets, int n_heads, int n_kv_heads, int head_dim,
                    float scale, bool causal) {
  constexpr int BQ = attention_tile_q, BK = attention_tile_k;
  constexpr int RPW = BQ / attn_warps;  // query rows per warp
  extern __shared__ float smem[];
  const int ld = head_dim + 1;  // padded row: lane-indexed K rows hit distinct banks
  float* Qs = smem;
  float* Ks = Qs + BQ * ld;
  float* Vs = Ks + BK * ld;

  const AttentionTile tile = tiles[blockIdx.x];
  const int h = blockIdx.y;
  const int kvh = h / (n_heads / n_kv_heads);
  const std::int64_t seq_begin = offsets[tile.seq];
  const std::int64_t len = offsets[tile.seq + 1] - seq_begin;
  const std::int64_t q_end = min(len, static_cast<std::int64_t>(tile.q_begin) + BQ);
  const std::int64_t kv_end = causal ? q_end : len;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int i = threadIdx.x; i < BQ * head_dim; i += blockDim.x) {
    const int r = i / head_dim, c = i % head_dim;
    const std::int64_t qi = tile.q_begin + r;
    Qs[r * ld + c] = qi < len ? qkv.q[(seq_begin + qi) * qkv.row_stride + h * head_dim + c] : 0.0f;
  }

  OnlineSoftmax st[RPW];
  float acc[RPW][NC];
#pragma unroll
  for (int r = 0; r < RPW; ++r)
#pragma unroll
    for (int u = 0; u < NC; ++u) acc[r][u] = 0.0f;

  for (std::int64_t k0 = 0; k0 < kv_end; k0 += BK) {
    __syncthreads();  // previous tile fully consumed (and Q tile written, first time)
    for (int i = threadIdx.x; i < BK * head_dim; i += blockDim.x) {
      const int r = i / head_dim, c = i % head_dim;
      const std::int64_t kj = k0 + r;
      const bool ok = kj < kv_end;
      const std::int64_t base = (seq_begin + kj) * qkv.row_stride + kvh * head_dim + c;
      Ks[r * ld + c] = ok ? qkv.k[base] : 0.0f;
      Vs[r * ld + c] = ok ? qkv.v[base] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
      const int r = warp * RPW + rr;
      const std::int64_t qi = tile.q_begin + r;
      if (qi >= len) continue;  // warp-uniform
      const std::int64_t kj = k0 + lane;
      const bool visible = kj < kv_end && (!causal || kj <= qi);
      float s = -INFINITY;
      if (visible) {
        float dot = 0.0f;
        for (int c = 0; c < head_dim; ++c) dot += Qs[r * ld + c] * Ks[lane * ld + c];
        s = dot * scale;
      }
      float m = s;
#pragma unroll
      for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      if (m == -INFINITY) continue;  // every key of this tile is masked for this query
      const float f = st[rr].rescale_to(m);
      const float p = visible ? expf(s - st[rr].m) : 0.0f;
      float psum = p;
#pragma unroll
      for (int o = 16; o > 0; o /= 2) psum += __shfl_xor_sync(0xffffffffu, psum, o);
      st[rr].l += psum;
#pragma unroll
      for (int u = 0; u < NC; ++u) acc[rr][u] *= f;
      for (int j = 0; j < BK; ++j) {
        const float pj = __shfl_sync(0xffffffffu, p, j);
        if (pj == 0.0f) continue;  // warp-uniform: masked or underflowed key
#pragma unroll
        for (int u = 0; u < NC; ++u) {
          const int c = lane + 32 * u;
          if (c < head_dim) acc[rr][u] += pj * Vs[j * ld + c];
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < RPW; ++rr) {
    const int r = warp * RPW + rr;
    const std::int64_t qi = tile.q_begin + r;
    if (qi >= len) continue;
    const float inv = st[rr].inv_sum();
    float* o = out + (seq_begin + qi) * static_cast<std::int64_t>(n_heads) * head_dim +
               static_cast<std::int64_t>(h) * head_dim;
#pragma unroll
    for (int u = 0; u < NC; ++u) {
      const int c = lane + 32 * u;
      if (c < head_dim) o[c] = acc[rr][u] * inv;
    }
  }
}

}  // namespace kernels

/// Output-register chunks (32 dims each) the attention kernel is instantiated with for a head
/// size: 2 up to 64, 4 up to 128, 8 up to 256 (0 = unsupported).
inline int attention_chunks(std::int64_t head_dim) {
  return head_dim <= 64 ? 2 : head_dim <= 128 ? 4 : head_dim <= 256 ? 8 : 0;
}

namespace detail {
template <int NC>
void launch_flash(dim3 grid, std::size_t smem, cudaStream_t s, const QkvView& qkv, float* out,
                  const AttentionTile* tiles, const std::int64_t* offsets, int nh, int nkv, int hd,
                  float scale, bool causal) {
  if (smem > 48 * 1024)  // opt in to large dynamic shared memory (sm_80+: up to 163 KiB)
    LMEMBED_CUDA_CHECK(cudaFuncSetAttribute(kernels::flash_attention<NC>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  kernels::flash_attention<NC><<<grid, kernels::attn_warps * 32, smem, s>>>(
      qkv, out, tiles, offsets, nh, nkv, hd, scale, causal);
  LMEMBED_CUDA_CHECK_LAUNCH("flash_attention");
}
}  // namespace detail

/// Attention of every query over the keys of its own sequence. `tiles` (device) is the list
/// from attention_tiles(), `offsets` (device) the batch's sequence offsets; out is
/// [n_tokens, n_heads * head_dim]. Scores are scaled by 1/sqrt(head_dim).
inline void launch_attention(const QkvView& qkv, float* out, const AttentionTile* tiles,
                             std::int64_t n_tiles, const std::int64_t* offsets, const ModelSpec& m,
                             bool causal, cudaStream_t s) {
  if (n_tiles == 0) return;
  const int nc = attention_chunks(m.head_dim);
  if (nc == 0 || m.n_heads % m.n_kv_heads != 0)
    throw config_error("cuda attention: head_dim " + std::to_string(m.head_dim) + " or heads " +
                       std::to_string(m.n_heads) + "/" + std::to_string(m.n_kv_heads) +
                       " unsupported");
  if (n_tiles > 0x7fffffff || m.n_heads > 65535)
    throw shape_error("cuda attention: grid [" + std::to_string(n_tiles) + ", " +
                      std::to_string(m.n_heads) + "] too large");
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(m.n_heads));
  const std::size_t smem = attention_smem_bytes(m.head_dim);
  const float scale = 1.0f / std::sqrt(static_cast<float>(m.head_dim));
  const int nh = static_cast<int>(m.n_heads), nkv = static_cast<int>(m.n_kv_heads),
            hd = static_cast<int>(m.head_dim);
  switch (nc) {
    case 2:
      detail::launch_flash<2>(grid, smem, s, qkv, out, tiles, offsets, nh, nkv, hd, scale, causal);
      break;
    case 4:
      detail::launch_flash<4>(grid, smem, s, qkv, out, tiles, offsets, nh, nkv, hd, scale, causal);
      break;
    default:
      detail::launch_flash<8>(grid, smem, s, qkv, out, tiles, offsets, nh, nkv, hd, scale, causal);
      break;
  }
}

}  // namespace lmembed::cuda
