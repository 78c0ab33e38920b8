// lmembed/backbone/decoder.hpp - the Llama / Mistral / Qwen2 decoder, written once.
//
// run_decoder() is the transformer: token embedding, then per layer
//   h = RMSNorm(x) -> qkv = h Wqkv^T -> bias + RoPE -> attn = attention(qkv) -> x += attn Wo^T
//   -> h = RMSNorm(x) -> gu = h Wgu^T -> act = SwiGLU(gu) -> x += act Wdown^T -> capture,
// then the final RMSNorm and capture. Where buffers live and which kernels run is the
// executor's business (a small policy object, in the spirit of CUB's and CUTLASS's): the CPU
// backbone's (backbone.hpp: run-time dispatched SIMD kernels, F32 or block-quantized GEMMs),
// the CUDA backbone's (cuda/backbone.cuh: cuBLAS + kernels) and the host mirror of the CUDA
// algorithm that tests it without a GPU (cuda/reference.cuh). See docs/architecture.md.
#pragma once

#include <concepts>
#include <cstdint>

namespace lmembed {

/// The activation buffers of one decoder pass; an executor maps each to its own memory.
enum class Act : std::uint8_t {
  x,        ///< the residual stream [T, d]
  h,        ///< the normalized stream [T, d]
  qkv,      ///< fused q | k | v projections [T, dq + 2 dkv]
  attn,     ///< attention output [T, dq]
  gate_up,  ///< fused gate | up projections [T, 2 d_ff]
  act,      ///< SwiGLU(gate, up) [T, d_ff] (an executor may keep it inside gate_up)
};

/// What run_decoder() asks of an executor `E` (all calls act on the current chunk of tokens):
///   embed(Act)                       the token embeddings of the chunk's ids
///   n_layers(), layer(l)             the weights of layer l: attn_norm, ffn_norm, wqkv, wo,
///                                    wgu, wdown in the executor's own types (+ qkv bias)
///   out_norm()                       the final RMSNorm weight
///   rms_norm(src, weight, dst)       dst = src / rms(src) * weight, row by row
///   linear(src, W, dst, accumulate)  dst (+)= src W^T (accumulate fuses the residual add)
///   bias_rope(Act, layer)            adds the q|k|v bias, rotates q and k (RoPE)
///   attention(qkv, attn, last)       per sequence and head, never across sequences; `last` is
///                                    true on the last layer, where an executor that only
///                                    captures last tokens may keep just those rows from here
///   swiglu(gate_up, act)             act = SiLU(gate) * up
///   capture(Act, l)                  records the state after layer l (0 < l <= n_layers; l ==
///                                    n_layers is the final normalized state) when the
///                                    executor's CaptureSpec asks for it
template <class E>
concept DecoderExecutor = requires(E& e, std::int64_t l) {
  e.embed(Act::x);
  { e.n_layers() } -> std::convertible_to<std::int64_t>;
  e.layer(l);
  e.out_norm();
  e.rms_norm(Act::x, e.layer(l).attn_norm, Act::h);
  e.linear(Act::h, e.layer(l).wqkv, Act::qkv, false);
  e.bias_rope(Act::qkv, e.layer(l));
  e.attention(Act::qkv, Act::attn, false);
  e.swiglu(Act::gate_up, Act::act);
  e.capture(Act::x, l);
};

/// The decoder over one chunk of packed sequences (see the file comment).
template <DecoderExecutor E>
void run_decoder(E& ex) {
  const std::int64_t n_layers = ex.n_layers();
  ex.embed(Act::x);
  for (std::int64_t l = 0; l < n_layers; ++l) {
    const auto& L = ex.layer(l);
    // --- attention block
    ex.rms_norm(Act::x, L.attn_norm, Act::h);
    ex.linear(Act::h, L.wqkv, Act::qkv, false);
    ex.bias_rope(Act::qkv, L);
    ex.attention(Act::qkv, Act::attn, l + 1 == n_layers);
    ex.linear(Act::attn, L.wo, Act::x, true);
    // --- SwiGLU MLP
    ex.rms_norm(Act::x, L.ffn_norm, Act::h);
    ex.linear(Act::h, L.wgu, Act::gate_up, false);
    ex.swiglu(Act::gate_up, Act::act);
    ex.linear(Act::act, L.wdown, Act::x, true);
    if (l + 1 < n_layers) ex.capture(Act::x, l + 1);
  }
  ex.rms_norm(Act::x, ex.out_norm(), Act::h);
  ex.capture(Act::h, n_layers);
}

}  // namespace lmembed
