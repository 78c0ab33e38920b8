// lmembed/cuda/backbone.cuh - the frozen decoder on the GPU (the `backend::cuda` backbone).
//
// Same model, same inputs and outputs as lmembed::Backbone (CPU): a packed TokenBatch in,
// exactly the Captured states a CaptureSpec asks for out. Per layer:
//   h = rmsnorm(x) -> qkv = h Wqkv^T (one cuBLAS GEMM) -> bias + RoPE (one kernel)
//   -> flash attention over packed sequences -> x += attn Wo^T (GEMM with beta = 1)
//   -> h = rmsnorm(x) -> gu = h Wgu^T -> swiglu -> x += act Wdown^T -> capture if asked.
// All activations live in one workspace laid out by plan_backbone_workspace() for the batch
// shape; forward_async() follows CUB's two-call convention (null workspace: report its size).
// forward() keeps one workspace that only grows, so a loop over equal-sized batches allocates
// once. Weights are uploaded once (F32, or BF16 with WeightPrecision::bf16); RoPE runs in the
// weights' own pair layout (interleaved GGUF llama or rotate-half), so nothing is permuted.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "lmembed/attention/attention.hpp"
#include "lmembed/backbone/backbone.hpp"
#include "lmembed/backbone/decoder.hpp"
#include "lmembed/core/batch.hpp"
#include "lmembed/cuda/attention.cuh"
#include "lmembed/cuda/gemm.cuh"
#include "lmembed/cuda/kernels.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/runtime.cuh"

namespace lmembed::cuda {

/// How the device backbone is built.
struct DeviceOptions {
  int device = 0;                                    ///< CUDA device ordinal
  WeightPrecision precision = WeightPrecision::f32;  ///< f32 (default, CPU parity), tf32, bf16
};

/// Captured states still on the device: `states` points into the workspace (valid until the
/// next forward), rows laid out as Captured::states.
struct DeviceCaptured {
  const float* states = nullptr;
  std::int64_t rows = 0, d = 0;
};

/// A weight matrix on the device in F32 or BF16.
struct DeviceMatrix {
  DeviceBuffer<float> f32;
  DeviceBuffer<__nv_bfloat16> bf16;
  std::int64_t rows = 0, cols = 0;

  /// Uploads rows x cols row-major floats, converted to BF16 when asked.
  void upload(const float* host, std::int64_t r, std::int64_t c, bool as_bf16, cudaStream_t s) {
    rows = r;
    cols = c;
    const auto n = static_cast<std::size_t>(r * c);
    if (as_bf16) {
      std::vector<__nv_bfloat16> tmp(n);
      for (std::size_t i = 0; i < n; ++i) tmp[i] = __float2bfloat16_rn(host[i]);
      bf16.reserve(n);
      bf16.upload(std::span<const __nv_bfloat16>(tmp), s);
      LMEMBED_CUDA_CHECK(cudaStreamSynchronize(s));  // tmp dies here
    } else {
      f32.reserve(n);
      f32.upload(std::span<const float>(host, n), s);
    }
  }
};

/// The decoder on one GPU. Not thread-safe (one workspace, one stream); movable.
class DeviceBackbone {
 public:
  /// Loads a .gguf file or a Hugging Face folder (as Backbone::load) and uploads it.
  static DeviceBackbone load(const std::filesystem::path& model, const DeviceOptions& opt = {}) {
    auto [config, weights] = io::load_model_weights(model);
    return from_weights(config, weights, opt, model.string());
  }

  /// Uploads F32 host weights (q/k rows in config.rope_style, as the loaders produce).
  static DeviceBackbone from_weights(const ModelConfig& config, const ModelWeights& w,
                                     const DeviceOptions& opt = {},
                                     const std::string& source = "model") {
    config.validate(source);
    DeviceBackbone b;
    b.cfg_ = config;
    b.spec_ = to_spec(config);
    b.spec_.check();
    b.opt_ = opt;
    LMEMBED_CUDA_CHECK(cudaSetDevice(opt.device));
    b.stream_ = Stream::create();
    b.blas_ = CublasHandle::create(b.stream_.get());
    const cudaStream_t s = b.stream_.get();
    const bool bf = opt.precision == WeightPrecision::bf16;
    const auto d = config.d_model, dq = config.q_dim(), dkv = config.kv_dim(), ff = config.d_ff;
    auto need = [&](const Matrix& m, std::int64_t r, std::int64_t c, const std::string& name) {
      if (m.rows() != r || m.cols() != c)
        throw shape_error(source + ": weight " + name + " is [" + std::to_string(m.rows()) + ", " +
                          std::to_string(m.cols()) + "], expected [" + std::to_string(r) + ", " +
                          std::to_string(c) + "]");
    };
    need(w.tok_embd, config.n_vocab, d, "tok_embd");
    need(w.out_norm, 1, d, "out_norm");
    if (static_cast<std::int64_t>(w.layers.size()) != config.n_layers)
      throw shape_error(source + ": " + std::to_string(w.layers.size()) +
                        " layers of weights, config says " + std::to_string(config.n_layers));
    b.tok_embd_.upload(w.tok_embd.data(), config.n_vocab, d, bf, s);
    b.out_norm_.reserve(static_cast<std::size_t>(d));
    b.out_norm_.upload(std::span<const float>(w.out_norm.data(), static_cast<std::size_t>(d)), s);
    std::vector<float> pack;
    for (std::int64_t l = 0; l < config.n_layers; ++l) {
      const LayerWeights& lw = w.layers[static_cast<std::size_t>(l)];
      const std::string p = "layer " + std::to_string(l) + " ";
      need(lw.attn_norm, 1, d, p + "attn_norm");
      need(lw.ffn_norm, 1, d, p + "ffn_norm");
      need(lw.wq, dq, d, p + "wq");
      need(lw.wk, dkv, d, p + "wk");
      need(lw.wv, dkv, d, p + "wv");
      need(lw.wo, d, dq, p + "wo");
      need(lw.w_gate, ff, d, p + "w_gate");
      need(lw.w_up, ff, d, p + "w_up");
      need(lw.w_down, d, ff, p + "w_down");
      Layer L;
      auto upload_vec = [&](DeviceBuffer<float>& dst, const float* src, std::int64_t n) {
        dst.reserve(static_cast<std::size_t>(n));
        dst.upload(std::span<const float>(src, static_cast<std::size_t>(n)), s);
      };
      upload_vec(L.attn_norm, lw.attn_norm.data(), d);
      upload_vec(L.ffn_norm, lw.ffn_norm.data(), d);
      // Fused projections: rows [wq | wk | wv] and [w_gate | w_up].
      pack.assign(static_cast<std::size_t>((dq + 2 * dkv) * d), 0.0f);
      std::copy_n(lw.wq.data(), dq * d, pack.begin());
      std::copy_n(lw.wk.data(), dkv * d, pack.begin() + dq * d);
      std::copy_n(lw.wv.data(), dkv * d, pack.begin() + (dq + dkv) * d);
      L.wqkv.upload(pack.data(), dq + 2 * dkv, d, bf, s);
      b.stream_.synchronize();  // `pack` is reused below
      if (config.qkv_bias) {
        need(lw.bq, 1, dq, p + "bq");
        need(lw.bk, 1, dkv, p + "bk");
        need(lw.bv, 1, dkv, p + "bv");
        std::vector<float> bias(static_cast<std::size_t>(dq + 2 * dkv));
        std::copy_n(lw.bq.data(), dq, bias.begin());
        std::copy_n(lw.bk.data(), dkv, bias.begin() + dq);
        std::copy_n(lw.bv.data(), dkv, bias.begin() + dq + dkv);
        upload_vec(L.bqkv, bias.data(), dq + 2 * dkv);
        b.stream_.synchronize();
      }
      L.wo.upload(lw.wo.data(), d, dq, bf, s);
      pack.assign(static_cast<std::size_t>(2 * ff * d), 0.0f);
      std::copy_n(lw.w_gate.data(), ff * d, pack.begin());
      std::copy_n(lw.w_up.data(), ff * d, pack.begin() + ff * d);
      L.wgu.upload(pack.data(), 2 * ff, d, bf, s);
      b.stream_.synchronize();
      L.wdown.upload(lw.w_down.data(), d, ff, bf, s);
      b.layers_.push_back(std::move(L));
    }
    b.stream_.synchronize();
    return b;
  }

  /// The model's hyper-parameters.
  const ModelConfig& config() const noexcept { return cfg_; }
  /// The device-side shape.
  const ModelSpec& spec() const noexcept { return spec_; }
  /// The stream all work is queued on.
  cudaStream_t stream() const noexcept { return stream_.get(); }

  /// Two-call forward (CUB convention). With workspace == nullptr only sets `bytes` to what
  /// this batch shape needs. Otherwise runs the forward asynchronously on stream() using
  /// `workspace` (at least `bytes` bytes, device memory) and returns where the captured
  /// states are. `batch` must already be truncated to n_ctx if that is wanted.
  DeviceCaptured forward_async(void* workspace, std::size_t& bytes, const TokenBatch& batch,
                               bool causal, CaptureSpec spec) {
    const CapturePlan cap = plan_capture(batch, spec, spec_);
    const std::vector<AttentionTile> tiles = attention_tiles(batch.offsets);
    std::int64_t max_len = 0;
    for (std::size_t s = 0; s < batch.size(); ++s) max_len = std::max(max_len, batch.length(s));
    const BackboneWorkspace ws = plan_backbone_workspace(
        spec_, batch.n_tokens(), static_cast<std::int64_t>(batch.size()), max_len,
        static_cast<std::int64_t>(tiles.size()), cap.rows(), opt_.precision);
    if (workspace == nullptr) {
      bytes = ws.bytes;
      return {};
    }
    if (bytes < ws.bytes)
      throw shape_error("cuda::DeviceBackbone::forward_async: workspace of " +
                        std::to_string(bytes) + " bytes, this batch needs " +
                        std::to_string(ws.bytes));
    LMEMBED_CUDA_CHECK(cudaSetDevice(opt_.device));
    auto* base = static_cast<std::byte*>(workspace);
    auto at = [&](std::size_t off) { return base + off; };
    upload_inputs(batch, tiles, max_len, ws, base);
    run(batch.n_tokens(), ws, cap, causal, base);
    return {reinterpret_cast<const float*>(at(ws.captured)), cap.rows(), spec_.d_model};
  }

  /// Runs the decoder and returns exactly what `spec` asks for, as Backbone::forward does
  /// (same validation, same Captured layout). Blocks until the result is on the host.
  Captured forward(const TokenBatch& batch, AttentionKind kind, CaptureSpec spec,
                   const ForwardOptions& options = {}) {
    bool cut = false;
    for (std::size_t s = 0; s < batch.size(); ++s) cut |= batch.length(s) > cfg_.n_ctx;
    const TokenBatch truncated =
        options.truncate && cut ? truncate_batch(batch, cfg_.n_ctx) : TokenBatch{};
    const TokenBatch& b = options.truncate && cut ? truncated : batch;
    const bool causal = kind == AttentionKind::causal;
    std::size_t bytes = 0;
    forward_async(nullptr, bytes, b, causal, spec);
    workspace_.reserve(bytes);  // grows only for a larger batch shape
    std::size_t have = workspace_.bytes();
    const DeviceCaptured dc = forward_async(workspace_.data(), have, b, causal, spec);
    Captured out;
    out.spec = spec;
    out.n_seq = static_cast<std::int64_t>(b.size());
    out.n_layers = spec.layers == CaptureLayers::all ? cfg_.n_layers : 1;
    out.d = cfg_.d_model;
    out.offsets = b.offsets;
    out.pool_from = b.pool_from;
    out.states.resize(dc.rows, dc.d);
    LMEMBED_CUDA_CHECK(cudaMemcpyAsync(out.states.data(), dc.states,
                                       sizeof(float) * static_cast<std::size_t>(dc.rows * dc.d),
                                       cudaMemcpyDeviceToHost, stream_.get()));
    stream_.synchronize();
    out.check();
    return out;
  }

  /// Compile-time attention policy form of forward().
  template <class Attention>
  Captured forward(const TokenBatch& batch, CaptureSpec spec, const ForwardOptions& options = {}) {
    return forward(batch, attention_kind_of<Attention>(), spec, options);
  }

  /// Bytes of device memory held by the weights.
  std::size_t weight_bytes() const {
    auto mb = [](const DeviceMatrix& m) { return m.f32.bytes() + m.bf16.bytes(); };
    std::size_t n = mb(tok_embd_) + out_norm_.bytes();
    for (const Layer& L : layers_)
      n += mb(L.wqkv) + mb(L.wo) + mb(L.wgu) + mb(L.wdown) + L.bqkv.bytes() + L.attn_norm.bytes() +
           L.ffn_norm.bytes();
    return n;
  }

 private:
  struct Layer {
    DeviceBuffer<float> attn_norm, ffn_norm, bqkv;
    DeviceMatrix wqkv, wo, wgu, wdown;
  };

  /// Copies ids, positions, offsets, pool_from, tiles and the RoPE table into the workspace
  /// through one pinned staging buffer (one async copy per array, no pageable transfers).
  void upload_inputs(const TokenBatch& batch, const std::vector<AttentionTile>& tiles,
                     std::int64_t max_len, const BackboneWorkspace& ws, std::byte* base) {
    const std::vector<std::int32_t> pos = token_positions(batch);
    const std::vector<float> rope = rope_table(spec_.rope_theta, spec_.head_dim, max_len);
    std::vector<std::int32_t> pool(batch.size(), 0);
    if (!batch.pool_from.empty())
      std::copy(batch.pool_from.begin(), batch.pool_from.end(), pool.begin());
    struct Part {
      const void* src;
      std::size_t bytes, off;
    };
    const Part parts[] = {
        {batch.ids.data(), batch.ids.size() * sizeof(std::int32_t), ws.ids},
        {pos.data(), pos.size() * sizeof(std::int32_t), ws.positions},
        {batch.offsets.data(), batch.offsets.size() * sizeof(std::int64_t), ws.offsets},
        {pool.data(), pool.size() * sizeof(std::int32_t), ws.pool_from},
        {tiles.data(), tiles.size() * sizeof(AttentionTile), ws.tiles},
        {rope.data(), rope.size() * sizeof(float), ws.rope},
    };
    std::size_t total = 0;
    for (const Part& p : parts) total += round_up(p.bytes, WorkspaceLayout::alignment);
    stream_.synchronize();  // the previous forward's copies out of staging_ are done
    staging_.reserve(total);
    std::size_t at = 0;
    for (const Part& p : parts) {
      if (p.bytes == 0) continue;
      std::memcpy(staging_.data() + at, p.src, p.bytes);
      LMEMBED_CUDA_CHECK(cudaMemcpyAsync(base + p.off, staging_.data() + at, p.bytes,
                                         cudaMemcpyHostToDevice, stream_.get()));
      at += round_up(p.bytes, WorkspaceLayout::alignment);
    }
  }

  /// Y[T, N] (+)= X[T, K] W^T in the configured precision (beta = 1 fuses a residual add).
  void project(const float* X, const DeviceMatrix& W, float* Y, std::int64_t T, float beta,
               __nv_bfloat16* staging) {
    if (opt_.precision == WeightPrecision::bf16) {
      launch_to_bf16(X, staging, T * W.cols, stream_.get());
      gemm_xwt_bf16(blas_.get(), staging, W.bf16.data(), Y, T, W.rows, W.cols, 1.0f, beta);
    } else {
      gemm_xwt_f32(blas_.get(), X, W.f32.data(), Y, T, W.rows, W.cols, 1.0f, beta,
                   opt_.precision == WeightPrecision::tf32);
    }
  }

  /// The CUDA executor of run_decoder() (backbone/decoder.hpp): every activation is a region of
  /// the workspace planned by plan_backbone_workspace(), every op one kernel launch or cuBLAS
  /// call queued on the backbone's stream.
  struct Exec {
    DeviceBackbone& bb;
    const BackboneWorkspace& ws;
    const CapturePlan& cap;
    bool causal;
    std::byte* base;
    std::int64_t T;

    float* buf(std::size_t off) const { return reinterpret_cast<float*>(base + off); }
    template <class U>
    const U* at(std::size_t off) const {
      return reinterpret_cast<const U*>(base + off);
    }
    float* view(Act a) const {
      switch (a) {
        case Act::x:
          return buf(ws.x);
        case Act::h:
          return buf(ws.h);
        case Act::qkv:
          return buf(ws.qkv);
        case Act::attn:
          return buf(ws.attn);
        case Act::gate_up:
          return buf(ws.gate_up);
        case Act::act:
          return buf(ws.act);
      }
      return nullptr;
    }
    cudaStream_t stream() const { return bb.stream_.get(); }
    auto* staging() const { return reinterpret_cast<__nv_bfloat16*>(base + ws.staging); }

    std::int64_t n_layers() const { return bb.spec_.n_layers; }
    const Layer& layer(std::int64_t l) const { return bb.layers_[static_cast<std::size_t>(l)]; }
    const DeviceBuffer<float>& out_norm() const { return bb.out_norm_; }

    void embed(Act dst) {
      const auto* ids = at<std::int32_t>(ws.ids);
      if (bb.opt_.precision == WeightPrecision::bf16)
        launch_embed(ids, bb.tok_embd_.bf16.data(), view(dst), T, bb.spec_.d_model, stream());
      else
        launch_embed(ids, bb.tok_embd_.f32.data(), view(dst), T, bb.spec_.d_model, stream());
    }
    void rms_norm(Act src, const DeviceBuffer<float>& w, Act dst) {
      launch_rmsnorm(view(src), w.data(), view(dst), T, bb.spec_.d_model, bb.spec_.rms_eps,
                     stream());
    }
    void linear(Act src, const DeviceMatrix& W, Act dst, bool accumulate) {
      bb.project(view(src), W, view(dst), T, accumulate ? 1.0f : 0.0f, staging());
    }
    void bias_rope(Act a, const Layer& L) {
      launch_qkv_bias_rope(view(a), bb.spec_.qkv_bias ? L.bqkv.data() : nullptr,
                           at<std::int32_t>(ws.positions), buf(ws.rope), T, bb.spec_, stream());
    }
    void attention(Act src, Act dst, bool /*last layer: every row is kept*/) {
      const ModelSpec& m = bb.spec_;
      float* qkv = view(src);
      const QkvView v{qkv, qkv + m.n_heads * m.head_dim,
                      qkv + (m.n_heads + m.n_kv_heads) * m.head_dim, m.qkv_dim()};
      launch_attention(v, view(dst), at<AttentionTile>(ws.tiles), ws.n_tiles,
                       at<std::int64_t>(ws.offsets), m, causal, stream());
    }
    void swiglu(Act gate_up, Act act) {
      launch_swiglu(view(gate_up), view(act), T, bb.spec_.d_ff, stream());
    }
    void capture(Act a, std::int64_t l) {
      const std::int64_t slot = cap.slot(l, bb.spec_.n_layers);
      if (slot < 0) return;
      launch_capture(view(a), buf(ws.captured), at<std::int64_t>(ws.offsets),
                     at<std::int32_t>(ws.pool_from), bb.spec_.d_model, cap, slot, stream());
    }
  };

  /// The decoder over a prepared workspace.
  void run(std::int64_t T, const BackboneWorkspace& ws, const CapturePlan& cap, bool causal,
           std::byte* base) {
    Exec ex{*this, ws, cap, causal, base, T};
    run_decoder(ex);
  }

  ModelConfig cfg_;
  ModelSpec spec_;
  DeviceOptions opt_;
  Stream stream_;
  CublasHandle blas_;
  DeviceMatrix tok_embd_;
  DeviceBuffer<float> out_norm_;
  std::vector<Layer> layers_;
  DeviceBuffer<std::byte> workspace_;
  PinnedBuffer<std::byte> staging_;
};

}  // namespace lmembed::cuda
