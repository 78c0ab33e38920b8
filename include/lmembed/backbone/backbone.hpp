// lmembed/backbone/backbone.hpp - the frozen Llama / Mistral / Qwen2 decoder.
//
// Turns a packed TokenBatch into exactly the hidden states a pooling asks for (CaptureSpec).
// Inference only, built for throughput on CPU:
//  - every projection is one GEMM over all tokens of a chunk of the packed batch (no padding);
//    q|k|v and gate|up are fused into one packed weight each, residual adds are fused into the
//    o/down products (C += A W^T);
//  - attention runs per (sequence, head) on that sequence's rows only, so it never crosses
//    sequences; its scratch is O(head_dim x length) per thread (no n x n score matrix);
//  - RoPE uses one (rotate-half) kernel: GGUF llama q/k rows are un-permuted at load;
//  - all scratch is allocated once per forward call (sized for the largest chunk), never per
//    layer; memory is weights + O(chunk tokens x width) plus what the capture asks for.
// Numerics follow llama.cpp / HF: F32 everywhere, RMSNorm and pooling sums in double. Weights kept
// in Q8_0 / Q4_0 / Q4_1 (WeightFormat::stored) multiply 8-bit block-quantized activations
// instead (backbone/qgemm.hpp); WeightFormat::f32 is the exact path.
// The GEMM, RMSNorm, RoPE, attention and SwiGLU kernels run at the CPU level chosen at run time
// (lmembed/cpu/dispatch.hpp), read once per forward call.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lmembed/attention/attention.hpp"
#include "lmembed/backbone/config.hpp"
#include "lmembed/backbone/decoder.hpp"
#include "lmembed/backbone/gemm.hpp"
#include "lmembed/backbone/loader.hpp"
#include "lmembed/backbone/qgemm.hpp"
#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/cpu/dispatch.hpp"

namespace lmembed {

/// Where a forward call spent its time (benchmarks); filled when ForwardOptions::stats is set.
struct ForwardStats {
  double gemm_seconds = 0;       ///< the q|k|v, o, gate|up and down products
  double gemm_flops = 0;         ///< 2 * M * N * K summed over those products
  double attention_seconds = 0;  ///< softmax(q k^T) v per sequence and head
  double other_seconds = 0;      ///< norms, RoPE, SwiGLU, embedding lookup, capture
  std::int64_t tokens = 0;       ///< tokens run through the decoder
};

/// Options of one Backbone::forward call.
struct ForwardOptions {
  /// Sequences longer than the model's n_ctx: false -> input_error; true -> keep their first
  /// n_ctx tokens (Captured.offsets then describe the truncated sequences).
  bool truncate = false;
  /// Tokens processed together (whole sequences; one longer sequence goes alone). Bounds the
  /// scratch memory; 0 picks the default (kDefaultChunkTokens).
  std::int64_t chunk_tokens = 0;
  static constexpr std::int64_t kDefaultChunkTokens = 1024;
  /// When set, time per phase is added here (costs a clock read per phase).
  ForwardStats* stats = nullptr;
};

/// A frozen decoder-only transformer: token ids in, captured hidden states out.
class Backbone {
 public:
  Backbone() = default;

  /// Loads a .gguf file or a Hugging Face folder (config.json + model.safetensors or
  /// model.safetensors.index.json). WeightFormat::stored (the default): GGUF projections in
  /// Q8_0 / Q4_0 / Q4_1 stay in that type (integer kernels on 8-bit activations) and a
  /// quantized token embedding stays quantized; everything else, and all of it with
  /// WeightFormat::f32, is converted to F32 (F16/BF16 double in size, Q8_0 grows 3.8x). See
  /// docs/backbone.md.
  static Backbone load(const std::filesystem::path& model,
                       WeightFormat format = WeightFormat::stored) {
    auto [config, weights] = io::load_model_weights(model, format);
    return from_weights(config, std::move(weights), model.string());
  }

  /// Builds a backbone from weights (q/k rows in config.rope_style): F32 matrices, or for the
  /// projections and the token embedding blocks kept in their stored type (LayerWeights::stored,
  /// ModelWeights::tok_embd_stored). `source` names the origin in error messages. The unpacked
  /// weights are released after packing.
  static Backbone from_weights(const ModelConfig& config, ModelWeights weights,
                               const std::string& source = "model") {
    config.validate(source);
    Backbone b;
    b.cfg_ = config;
    const auto d = config.d_model, dq = config.q_dim(), dkv = config.kv_dim(), ff = config.d_ff;
    auto check = [&](const Matrix& m, std::int64_t r, std::int64_t c, const std::string& name) {
      if (m.rows() != r || m.cols() != c)
        throw shape_error(source + ": weight " + name + " is [" + std::to_string(m.rows()) + ", " +
                          std::to_string(m.cols()) + "], expected [" + std::to_string(r) + ", " +
                          std::to_string(c) + "]");
    };
    // A projection: its stored blocks when set, else the F32 matrix.
    auto check_proj = [&](const Matrix& m, const BlockRows& q, std::int64_t r, std::int64_t c,
                          const std::string& name) {
      if (q.empty()) return check(m, r, c, name);
      if (!io::is_quantized(q.dtype))
        throw shape_error(source + ": stored weight " + name + " must be a GGML block type, not " +
                          std::string(io::to_string(q.dtype)));
      if (q.rows != r || q.cols != c ||
          q.bytes.size() != static_cast<std::size_t>(q.rows * q.row_bytes()))
        throw shape_error(source + ": weight " + name + " (" + io::to_string(q.dtype) + ") is [" +
                          std::to_string(q.rows) + ", " + std::to_string(q.cols) + "] in " +
                          std::to_string(q.bytes.size()) + " bytes, expected [" +
                          std::to_string(r) + ", " + std::to_string(c) + "]");
    };
    if (weights.tok_embd_stored.empty()) {
      check(weights.tok_embd, config.n_vocab, d, "tok_embd");
    } else {
      check_proj(weights.tok_embd, weights.tok_embd_stored, config.n_vocab, d, "tok_embd");
    }
    check(weights.out_norm, 1, d, "out_norm");
    if (static_cast<std::int64_t>(weights.layers.size()) != config.n_layers)
      throw shape_error(source + ": " + std::to_string(weights.layers.size()) +
                        " layers of weights, config says " + std::to_string(config.n_layers));
    b.tok_embd_ = std::move(weights.tok_embd);
    b.tok_embd_stored_ = std::move(weights.tok_embd_stored);
    b.out_norm_.assign(weights.out_norm.data(), weights.out_norm.data() + d);
    const bool permute = config.rope_style == RopeStyle::interleaved;
    const std::vector<std::int64_t> perm_q =
        permute ? detail::interleaved_to_neox_rows(config.n_heads, config.head_dim)
                : std::vector<std::int64_t>{};
    const std::vector<std::int64_t> perm_k =
        permute ? detail::interleaved_to_neox_rows(config.n_kv_heads, config.head_dim)
                : std::vector<std::int64_t>{};
    for (std::int64_t l = 0; l < config.n_layers; ++l) {
      LayerWeights& w = weights.layers[l];
      LayerWeights::Stored& st = w.stored;
      const std::string p = "layer " + std::to_string(l) + " ";
      check(w.attn_norm, 1, d, p + "attn_norm");
      check(w.ffn_norm, 1, d, p + "ffn_norm");
      check_proj(w.wq, st.wq, dq, d, p + "wq");
      check_proj(w.wk, st.wk, dkv, d, p + "wk");
      check_proj(w.wv, st.wv, dkv, d, p + "wv");
      check_proj(w.wo, st.wo, d, dq, p + "wo");
      check_proj(w.w_gate, st.w_gate, ff, d, p + "w_gate");
      check_proj(w.w_up, st.w_up, ff, d, p + "w_up");
      check_proj(w.w_down, st.w_down, d, ff, p + "w_down");
      if (config.qkv_bias) {
        check(w.bq, 1, dq, p + "bq");
        check(w.bk, 1, dkv, p + "bk");
        check(w.bv, 1, dkv, p + "bv");
      }
      if (permute) {
        // F32 rows are permuted here; stored rows on packing (the same row map).
        if (st.wq.empty())
          w.wq = detail::interleaved_to_neox(w.wq, config.n_heads, config.head_dim);
        if (st.wk.empty())
          w.wk = detail::interleaved_to_neox(w.wk, config.n_kv_heads, config.head_dim);
        if (config.qkv_bias) {
          w.bq = detail::interleaved_to_neox(w.bq, config.n_heads, config.head_dim);
          w.bk = detail::interleaved_to_neox(w.bk, config.n_kv_heads, config.head_dim);
        }
      }
      Layer L;
      L.attn_norm.assign(w.attn_norm.data(), w.attn_norm.data() + d);
      L.ffn_norm.assign(w.ffn_norm.data(), w.ffn_norm.data() + d);
      const std::vector<std::int64_t>* pq = permute ? &perm_q : nullptr;
      const std::vector<std::int64_t>* pk = permute ? &perm_k : nullptr;
      L.wqkv = fuse({{&w.wq, &st.wq, pq}, {&w.wk, &st.wk, pk}, {&w.wv, &st.wv, nullptr}}, d,
                    source + ": " + p + "q|k|v");
      if (config.qkv_bias) {
        L.bqkv.resize(dq + 2 * dkv);
        std::copy_n(w.bq.data(), dq, L.bqkv.begin());
        std::copy_n(w.bk.data(), dkv, L.bqkv.begin() + dq);
        std::copy_n(w.bv.data(), dkv, L.bqkv.begin() + dq + dkv);
      }
      L.wo = fuse({{&w.wo, &st.wo, nullptr}}, dq, source + ": " + p + "wo");
      L.wgu = fuse({{&w.w_gate, &st.w_gate, nullptr}, {&w.w_up, &st.w_up, nullptr}}, d,
                   source + ": " + p + "gate|up");
      L.wdown = fuse({{&w.w_down, &st.w_down, nullptr}}, ff, source + ": " + p + "w_down");
      w = LayerWeights{};  // release the unpacked copy now: peak stays ~ one layer above
      b.layers_.push_back(std::move(L));
    }
    return b;
  }

  /// The model's hyper-parameters.
  const ModelConfig& config() const noexcept { return cfg_; }

  /// Threads used by forward (OpenMP); n < 1 means all the runtime offers.
  void set_threads(int n) {
#ifdef _OPENMP
    threads_ = n < 1 ? omp_get_max_threads() : n;
#else
    threads_ = 1;
    (void)n;
#endif
  }
  /// Threads forward uses.
  int threads() const noexcept {
    return threads_;
  }

  /// Bytes of weights held (packed; F32 or in their stored type).
  std::size_t weight_bytes() const {
    std::size_t n =
        static_cast<std::size_t>(tok_embd_.size()) * sizeof(float) + tok_embd_stored_.bytes.size();
    for (const Layer& L : layers_)
      n += L.wqkv.bytes() + L.wo.bytes() + L.wgu.bytes() + L.wdown.bytes() +
           (L.bqkv.size() + L.attn_norm.size() + L.ffn_norm.size()) * sizeof(float);
    return n;
  }

  /// Runs the decoder over every sequence of `batch` with the compile-time attention policy and
  /// returns exactly what `spec` asks for (see core/batch.hpp for the row layout).
  /// input_error for an empty sequence, a token id out of range, a sequence longer than n_ctx
  /// (unless options.truncate) or a pool_from past the end of its sequence (mean capture).
  template <class Attention>
  Captured forward(const TokenBatch& batch, CaptureSpec spec,
                   const ForwardOptions& options = {}) const {
    return run(batch, spec, options, Attention::is_causal);
  }

  /// Run-time attention choice (the CLI's --attention).
  Captured forward(const TokenBatch& batch, AttentionKind kind, CaptureSpec spec,
                   const ForwardOptions& options = {}) const {
    return kind == AttentionKind::causal ? forward<attention::causal>(batch, spec, options)
                                         : forward<attention::bidirectional>(batch, spec, options);
  }

 private:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm, bqkv;
    detail::LinearWeight wqkv, wo, wgu, wdown;
  };

  /// One part of a fused weight: F32 rows, or the same rows in a stored block type; `perm` maps
  /// source rows to their place within the part (q/k un-permutation; null: identity).
  struct Part {
    const Matrix* f32;
    const BlockRows* stored;
    const std::vector<std::int64_t>* perm;
  };

  /// Packs parts (stacked rows, k columns each) into one weight. All parts stored in one block
  /// type with an integer kernel: a QuantWeight. Otherwise F32: a stored part of a different
  /// type (a file mixing e.g. Q4_1 q and Q8_0 v) is dequantized exactly and permuted like the
  /// F32 path, because one product runs one kernel.
  static detail::LinearWeight fuse(std::vector<Part> parts, std::int64_t k,
                                   const std::string& name) {
    detail::LinearWeight out;
    std::int64_t rows = 0;
    bool all_q = true;
    for (const Part& pt : parts) {
      const bool q = !pt.stored->empty();
      rows += q ? pt.stored->rows : pt.f32->rows();
      all_q = all_q && q && detail::has_qkernel(pt.stored->dtype) &&
              pt.stored->dtype == parts.front().stored->dtype;
    }
    if (all_q) {
      out.is_q = true;
      out.q = detail::QuantWeight::zeros(parts.front().stored->dtype, rows, k, name);
      std::int64_t at = 0;
      for (const Part& pt : parts) {
        out.q.pack_rows(pt.stored->bytes.data(), pt.stored->rows, at, pt.perm);
        at += pt.stored->rows;
      }
      return out;
    }
    out.f32 = detail::PackedWeight::zeros(rows, k);
    std::int64_t at = 0;
    for (const Part& pt : parts) {
      if (!pt.stored->empty()) {
        const BlockRows& q = *pt.stored;
        Matrix m(q.rows, q.cols);
        for (std::int64_t r = 0; r < q.rows; ++r)
          io::quant::dequantize_row(q.dtype, q.bytes.data() + r * q.row_bytes(), q.cols,
                                    m.data() + r * q.cols);
        if (pt.perm) {
          Matrix moved(q.rows, q.cols);
          for (std::int64_t r = 0; r < q.rows; ++r)
            moved.row((*pt.perm)[static_cast<std::size_t>(r)]) = m.row(r);
          m = std::move(moved);
        }
        out.f32.pack_rows(m.data(), m.rows(), k, at);
        at += m.rows();
      } else {
        out.f32.pack_rows(pt.f32->data(), pt.f32->rows(), k, at);
        at += pt.f32->rows();
      }
    }
    return out;
  }

  /// Scratch for one forward call, sized for its largest chunk and reused by every layer.
  struct Workspace {
    Matrix x, h, qkv, attn, gu;                  // [T,d] [T,d] [T,dq+2dkv] [T,dq] [T,2ff]
    std::vector<float> rope_cos, rope_sin;       // [max_len, head_dim/2]
    std::vector<std::vector<float>> scores, kt;  // per thread: [max_len], [head_dim, max_len]
    detail::LinearScratch gemm;
    std::vector<std::int32_t> pos;  // position of each chunk token in its sequence
    const cpu::Ops* ops = nullptr;  // the run-time CPU level's kernels
  };

  /// One sequence after validation: where its ids start and how many are used.
  struct Seq {
    std::int64_t begin = 0, length = 0;
  };

  Captured run(const TokenBatch& batch, CaptureSpec spec, const ForwardOptions& opt,
               bool causal) const {
    const std::int64_t n_seq = static_cast<std::int64_t>(batch.size());
    if (batch.offsets.empty() || batch.offsets.front() != 0 ||
        batch.offsets.back() != batch.n_tokens())
      throw input_error("TokenBatch: offsets must start at 0 and end at ids.size() (" +
                        std::to_string(batch.n_tokens()) + ")");
    if (!batch.pool_from.empty() && static_cast<std::int64_t>(batch.pool_from.size()) != n_seq)
      throw input_error("TokenBatch: pool_from has " + std::to_string(batch.pool_from.size()) +
                        " entries for " + std::to_string(n_seq) + " sequences");
    // Validate every input before any work, so a bad batch fails fast and cleanly.
    std::vector<Seq> seqs(n_seq);
    std::int64_t max_len = 0;
    for (std::int64_t s = 0; s < n_seq; ++s) {
      const std::int64_t b = batch.offsets[s], e = batch.offsets[s + 1];
      if (e < b) throw input_error("TokenBatch: offsets decrease at sequence " + std::to_string(s));
      std::int64_t len = e - b;
      if (len == 0) throw input_error("sequence " + std::to_string(s) + " is empty");
      if (len > cfg_.n_ctx) {
        if (!opt.truncate)
          throw input_error("sequence " + std::to_string(s) + " has " + std::to_string(len) +
                            " tokens, more than the model's context length " +
                            std::to_string(cfg_.n_ctx) +
                            " (ForwardOptions::truncate keeps the first n_ctx tokens)");
        len = cfg_.n_ctx;
      }
      for (std::int64_t i = b; i < b + len; ++i) {
        const std::int32_t id = batch.ids[i];
        if (id < 0 || id >= cfg_.n_vocab)
          throw input_error("sequence " + std::to_string(s) + ", token " + std::to_string(i - b) +
                            ": id " + std::to_string(id) + " is out of range [0, " +
                            std::to_string(cfg_.n_vocab) + ")");
      }
      if (spec.tokens == CaptureTokens::mean) {
        const std::int64_t pf = batch.pool_start(s);
        if (pf < 0 || pf >= len)
          throw input_error("sequence " + std::to_string(s) + ": pool_from " + std::to_string(pf) +
                            " leaves no token to average (length " + std::to_string(len) + ")");
      }
      seqs[s] = {b, len};
      max_len = std::max(max_len, len);
    }

    Captured out;
    out.spec = spec;
    out.n_seq = n_seq;
    out.n_layers = spec.layers == CaptureLayers::all ? cfg_.n_layers : 1;
    out.d = cfg_.d_model;
    out.offsets.assign(1, 0);
    for (const Seq& q : seqs) out.offsets.push_back(out.offsets.back() + q.length);
    if (!batch.pool_from.empty()) out.pool_from = batch.pool_from;
    const std::int64_t items = spec.tokens == CaptureTokens::all ? out.offsets.back() : n_seq;
    out.states.setZero(items * out.n_layers, cfg_.d_model);
    if (n_seq == 0) return out;

    // Chunks of whole sequences, at most chunk_tokens tokens each (a longer sequence alone).
    const std::int64_t limit =
        opt.chunk_tokens > 0 ? opt.chunk_tokens : ForwardOptions::kDefaultChunkTokens;
    std::vector<std::pair<std::int64_t, std::int64_t>> chunks;  // [first seq, end seq)
    std::int64_t largest = 0;
    for (std::int64_t s = 0; s < n_seq;) {
      std::int64_t e = s, tokens = 0;
      while (e < n_seq && (e == s || tokens + seqs[e].length <= limit)) tokens += seqs[e++].length;
      chunks.emplace_back(s, e);
      largest = std::max(largest, tokens);
      s = e;
    }

    Workspace ws;
    ws.ops = &cpu::ops();  // outside parallel regions: a bad LMEMBED_CPU throws here
    const std::int64_t d = cfg_.d_model, w3 = cfg_.q_dim() + 2 * cfg_.kv_dim();
    ws.x.resize(largest, d);
    ws.h.resize(largest, d);
    ws.qkv.resize(largest, w3);
    ws.attn.resize(largest, cfg_.q_dim());
    ws.gu.resize(largest, 2 * cfg_.d_ff);
    ws.pos.resize(largest);
    ws.scores.assign(std::max(1, threads_), std::vector<float>(max_len));
    ws.kt.assign(std::max(1, threads_), std::vector<float>(max_len * cfg_.head_dim));
    init_rope(ws, max_len);

    for (const auto& [s0, s1] : chunks)
      run_chunk(batch, seqs, s0, s1, spec, causal, ws, out, opt.stats);
    return out;
  }

  /// cos/sin of position p times theta^(-2i/head_dim), computed in double (like the float64
  /// reference the goldens were checked against).
  void init_rope(Workspace& ws, std::int64_t max_len) const {
    const std::int64_t half = cfg_.head_dim / 2;
    ws.rope_cos.resize(max_len * half);
    ws.rope_sin.resize(max_len * half);
    for (std::int64_t i = 0; i < half; ++i) {
      const double inv =
          std::pow(static_cast<double>(cfg_.rope_theta),
                   -2.0 * static_cast<double>(i) / static_cast<double>(cfg_.head_dim));
      for (std::int64_t p = 0; p < max_len; ++p) {
        const double a = static_cast<double>(p) * inv;
        ws.rope_cos[p * half + i] = static_cast<float>(std::cos(a));
        ws.rope_sin[p * half + i] = static_cast<float>(std::sin(a));
      }
    }
  }

  /// Below this many (roughly) floating-point operations a parallel region costs more than it
  /// saves (fork/join and barrier waits, worse on a loaded machine).
  static constexpr double kParallelWork = 1 << 16;

  /// Runs fn(i) for i in [0, n) on threads_ threads when n * work_per_item is worth it.
  template <class Fn>
  void parallel_for(std::int64_t n, double work_per_item, Fn&& fn, bool dynamic = false) const {
#ifdef _OPENMP
    if (threads_ > 1 && n > 1 && static_cast<double>(n) * work_per_item >= kParallelWork) {
      if (dynamic) {
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
        for (std::int64_t i = 0; i < n; ++i) fn(i);
      } else {
        // Chunks of 16 rows handed out dynamically: a descheduled thread (shared machine)
        // then holds up 16 rows, not half of them.
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 16)
        for (std::int64_t i = 0; i < n; ++i) fn(i);
      }
      return;
    }
#endif
    (void)dynamic;
    (void)work_per_item;
    for (std::int64_t i = 0; i < n; ++i) fn(i);
  }

  static int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
  }

  /// The CPU executor of run_decoder() (backbone/decoder.hpp) for one chunk of whole
  /// sequences: the Workspace's matrices, the run-time CPU level's kernels, OpenMP over rows or
  /// (sequence, head) jobs, and the backbone's packed weights (F32 or stored block types).
  struct ChunkExec {
    const Backbone& bb;
    const TokenBatch& batch;
    const std::vector<Seq>& seqs;
    std::int64_t s0, s1;
    CaptureSpec spec;
    bool causal;
    Workspace& ws;
    Captured& out;
    ForwardStats* stats;
    std::vector<std::int64_t> row0;  // chunk-local row of each sequence's first token
    // Rows in flight: every token, until the last layer of a last-token-only capture, where
    // only each sequence's last row goes on past attention (see attention()).
    std::int64_t T = 0;
    bool last_only = false;
    // Phase timing for benchmarks: lap(bucket) charges the time since the previous lap.
    using Clock = std::chrono::steady_clock;
    Clock::time_point last{};

    ChunkExec(const Backbone& b, const TokenBatch& tb, const std::vector<Seq>& sq, std::int64_t a,
              std::int64_t z, CaptureSpec sp, bool c, Workspace& w, Captured& o, ForwardStats* st)
        : bb(b),
          batch(tb),
          seqs(sq),
          s0(a),
          s1(z),
          spec(sp),
          causal(c),
          ws(w),
          out(o),
          stats(st),
          row0(static_cast<std::size_t>(z - a + 1), 0) {
      for (std::int64_t s = s0; s < s1; ++s) row0[s - s0 + 1] = row0[s - s0] + seqs[s].length;
      T = row0.back();
      last_only = spec.layers == CaptureLayers::last && spec.tokens == CaptureTokens::last;
      if (stats) {
        last = Clock::now();
        stats->tokens += T;
      }
    }

    void lap(double ForwardStats::*bucket) {
      if (!stats) return;
      const Clock::time_point now = Clock::now();
      stats->*bucket += std::chrono::duration<double>(now - last).count();
      last = now;
    }
    /// Row-major storage of an activation and its row stride.
    std::pair<float*, std::int64_t> view(Act a) const {
      const ModelConfig& c = bb.cfg_;
      switch (a) {
        case Act::x:
          return {ws.x.data(), c.d_model};
        case Act::h:
          return {ws.h.data(), c.d_model};
        case Act::qkv:
          return {ws.qkv.data(), c.q_dim() + 2 * c.kv_dim()};
        case Act::attn:
          return {ws.attn.data(), c.q_dim()};
        case Act::gate_up:
        case Act::act:  // SwiGLU writes its result over the gate half (row stride 2 d_ff)
          return {ws.gu.data(), 2 * c.d_ff};
      }
      return {nullptr, 0};
    }

    std::int64_t n_layers() const { return bb.cfg_.n_layers; }
    const Layer& layer(std::int64_t l) const { return bb.layers_[static_cast<std::size_t>(l)]; }
    const std::vector<float>& out_norm() const { return bb.out_norm_; }

    /// Embedding lookup (stored embeddings decoded exactly as the F32 path decodes them at
    /// load) and each token's position in its sequence.
    void embed(Act dst) {
      const std::int64_t d = bb.cfg_.d_model;
      float* x = view(dst).first;
      for (std::int64_t s = s0; s < s1; ++s)
        for (std::int64_t i = 0; i < seqs[s].length; ++i) {
          const std::int64_t r = row0[s - s0] + i;
          ws.pos[r] = static_cast<std::int32_t>(i);
          const std::int64_t id = batch.ids[seqs[s].begin + i];
          if (bb.tok_embd_stored_.empty()) {
            std::memcpy(x + r * d, bb.tok_embd_.data() + id * d, sizeof(float) * d);
          } else {
            const BlockRows& e = bb.tok_embd_stored_;
            io::quant::dequantize_row(e.dtype, e.bytes.data() + id * e.row_bytes(), d, x + r * d);
          }
        }
    }

    /// dst row = src row / rms(src row) * weight (sum of squares in double, as ggml does).
    void rms_norm(Act src, const std::vector<float>& w, Act dst) {
      const std::int64_t d = bb.cfg_.d_model;
      const float eps = bb.cfg_.rms_eps;
      const float* a = view(src).first;
      float* y = view(dst).first;
      const cpu::Ops& K = *ws.ops;
      bb.parallel_for(T, 3.0 * static_cast<double>(d), [&](std::int64_t t) {
        K.rms_norm_row(a + t * d, w.data(), y + t * d, d, eps);
      });
    }

    void linear(Act src, const detail::LinearWeight& w, Act dst, bool accumulate) {
      lap(&ForwardStats::other_seconds);
      const auto [a, lda] = view(src);
      const auto [c, ldc] = view(dst);
      detail::linear_nt(a, lda, T, w, c, ldc, accumulate, bb.threads_, ws.gemm);
      if (stats) stats->gemm_flops += 2.0 * static_cast<double>(T) * w.n() * w.k();
      lap(&ForwardStats::gemm_seconds);
    }

    /// Bias and rotary embedding in one pass (q and k heads share the table).
    void bias_rope(Act a, const Layer& L) {
      const ModelConfig& c = bb.cfg_;
      const std::int64_t half = c.head_dim / 2;
      const auto [qkv, w3] = view(a);
      const cpu::Ops& K = *ws.ops;
      bb.parallel_for(T, static_cast<double>(w3 + 3 * (c.q_dim() + c.kv_dim())),
                      [&](std::int64_t t) {
                        K.bias_rope_row(qkv + t * w3, L.bqkv.empty() ? nullptr : L.bqkv.data(), w3,
                                        ws.rope_cos.data() + ws.pos[t] * half,
                                        ws.rope_sin.data() + ws.pos[t] * half,
                                        c.n_heads + c.n_kv_heads, c.head_dim);
                      });
      lap(&ForwardStats::other_seconds);
    }

    /// Attention per (sequence, head): K is transposed once into per-thread scratch so that
    /// both products (q.K^T and p.V) are unit-stride axpy loops the compiler vectorizes.
    /// Last layer of a last-token capture: every token's k and v are still needed, but only
    /// each sequence's last query. Attention then runs for that query alone and writes compact
    /// rows 0..n_seq-1, the residual rows are compacted likewise, and the o-projection, MLP and
    /// final norm run on n_seq rows instead of T (saves ~1/n_layers of the work).
    void attention(Act src, Act dst, bool last_layer) {
      const ModelConfig& c = bb.cfg_;
      const std::int64_t dq = c.q_dim(), dkv = c.kv_dim(), hd = c.head_dim;
      const std::int64_t group = c.n_heads / c.n_kv_heads, n_seq_chunk = s1 - s0;
      const bool compact = last_only && last_layer;
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      const auto [qkv, w3] = view(src);
      float* attn = view(dst).first;
      const cpu::Ops& K = *ws.ops;
      bb.parallel_for(
          n_seq_chunk * c.n_heads,
          4.0 * static_cast<double>(hd) * static_cast<double>(T) * static_cast<double>(T) /
              static_cast<double>(n_seq_chunk),
          [&](std::int64_t job) {
            const std::int64_t sl = job / c.n_heads, h = job % c.n_heads, g = h / group;
            const std::int64_t n = seqs[s0 + sl].length, r0 = row0[sl];
            const float* base = qkv + r0 * w3;
            float* kt = ws.kt[thread_id()].data();        // [hd, n]
            float* srow = ws.scores[thread_id()].data();  // [n]
            for (std::int64_t j = 0; j < n; ++j) {
              const float* kj = base + j * w3 + dq + g * hd;
              for (std::int64_t col = 0; col < hd; ++col) kt[col * n + j] = kj[col];
            }
            for (std::int64_t i = compact ? n - 1 : 0; i < n; ++i)
              K.attention_row(base + i * w3 + h * hd, kt, n, base + dq + dkv + g * hd, w3,
                              causal ? i + 1 : n, hd, scale, srow,
                              attn + (compact ? sl : r0 + i) * dq + h * hd);
          },
          true);
      lap(&ForwardStats::attention_seconds);
      if (compact) {
        // Row of sequence sl's last token -> row sl; sources never precede their targets.
        const std::int64_t d = c.d_model;
        float* x = view(Act::x).first;
        for (std::int64_t sl = 0; sl < n_seq_chunk; ++sl)
          if (row0[sl + 1] - 1 != sl)
            std::memcpy(x + sl * d, x + (row0[sl + 1] - 1) * d, sizeof(float) * d);
        T = n_seq_chunk;
      }
    }

    /// SiLU(gate) * up, written over the gate half of each row.
    void swiglu(Act gate_up, Act /*act: the same storage*/) {
      const std::int64_t ff = bb.cfg_.d_ff;
      float* gu = view(gate_up).first;
      const cpu::Ops& K = *ws.ops;
      bb.parallel_for(T, 20.0 * static_cast<double>(ff), [&](std::int64_t t) {
        float* g = gu + t * 2 * ff;
        K.silu_mul(g, g + ff, ff);
      });
    }

    /// State after layer l into `out` when the spec asks for it (l == n_layers: the final
    /// normalized state).
    void capture(Act a, std::int64_t l) {
      const std::int64_t d = bb.cfg_.d_model, L = bb.cfg_.n_layers;
      const float* src = view(a).first;
      if (l < L) {
        if (spec.layers == CaptureLayers::all)
          bb.capture(src, batch, seqs, s0, s1, row0, l - 1, spec, out);
        return;
      }
      if (last_only) {  // compact rows 0..n_seq-1 (see attention())
        for (std::int64_t s = s0; s < s1; ++s)
          std::memcpy(out.states.data() + s * d, src + (s - s0) * d, sizeof(float) * d);
      } else {
        bb.capture(src, batch, seqs, s0, s1, row0, out.n_layers - 1, spec, out);
      }
      lap(&ForwardStats::other_seconds);
    }
  };

  void run_chunk(const TokenBatch& batch, const std::vector<Seq>& seqs, std::int64_t s0,
                 std::int64_t s1, CaptureSpec spec, bool causal, Workspace& ws, Captured& out,
                 ForwardStats* stats) const {
    ChunkExec ex(*this, batch, seqs, s0, s1, spec, causal, ws, out, stats);
    run_decoder(ex);
  }

  /// Copies (or averages) the rows `spec` asks for from a chunk's states into `out`.
  void capture(const float* src, const TokenBatch& batch, const std::vector<Seq>& seqs,
               std::int64_t s0, std::int64_t s1, const std::vector<std::int64_t>& row0,
               std::int64_t layer, CaptureSpec spec, Captured& out) const {
    const std::int64_t d = cfg_.d_model, nl = out.n_layers;
    for (std::int64_t s = s0; s < s1; ++s) {
      const std::int64_t r0 = row0[s - s0], n = seqs[s].length;
      switch (spec.tokens) {
        case CaptureTokens::last:
          std::memcpy(out.states.data() + (s * nl + layer) * d, src + (r0 + n - 1) * d,
                      sizeof(float) * d);
          break;
        case CaptureTokens::all:
          for (std::int64_t i = 0; i < n; ++i)
            std::memcpy(out.states.data() + ((out.offsets[s] + i) * nl + layer) * d,
                        src + (r0 + i) * d, sizeof(float) * d);
          break;
        case CaptureTokens::mean: {
          const std::int64_t from = batch.pool_start(static_cast<std::size_t>(s));
          std::vector<double> acc(d, 0.0);
          for (std::int64_t i = from; i < n; ++i) {
            const float* x = src + (r0 + i) * d;
            for (std::int64_t j = 0; j < d; ++j) acc[j] += x[j];
          }
          float* o = out.states.data() + (s * nl + layer) * d;
          for (std::int64_t j = 0; j < d; ++j)
            o[j] = static_cast<float>(acc[j] / static_cast<double>(n - from));
          break;
        }
      }
    }
  }

  ModelConfig cfg_;
  Matrix tok_embd_;
  BlockRows tok_embd_stored_;  // a quantized embedding kept as stored (tok_embd_ then empty)
  std::vector<float> out_norm_;
  std::vector<Layer> layers_;
#ifdef _OPENMP
  int threads_ = omp_get_max_threads();
#else
  int threads_ = 1;
#endif
};

}  // namespace lmembed
