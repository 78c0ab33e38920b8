// bench_backbone - backbone throughput on data/bench/corpus256.txt, GEMM GFLOP/s, peak memory.
//
// Models: random F32 weights generated in memory (nothing is read from or written to disk),
// shaped like the peers in issue #4:
//   llama512  : llama, d 512, 8 layers, 8 heads, FFN 1408, vocab 32000
//   llama1024 : llama, d 1024, 12 layers, 16 heads / 4 KV heads, FFN 2816, vocab 32000
//   qwen896   : qwen2 (q/k/v biases), d 896, 6 layers, 14 heads / 2 KV heads, FFN 4864,
//               vocab 151936
// The corpus is tokenized with the Llama-2 SPM vocabulary (data/tokenizer/ggml-vocab-llama-spm
// .gguf) with BOS and EOS: 256 sequences, 5,903 tokens (the count; BOS alone gives
// 5,647), all encoded as one packed batch.
// Methodology as the peer figures: each (attention x pooling) is run `repeats` times,
// interleaved; the best of those runs counts, and the median over the 4 combinations is the
// headline tokens/s.
//
//   bench_backbone [--shape llama512|llama1024|qwen896|all] [--threads 2] [--repeats 3]
//                  [--chunk N] [--gemm] [--only-gemm] [--combo causal/mean]
// Prints one "RESULT ..." line per shape (parsed by bench/compare_llamacpp.py).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "lmembed/backbone/backbone.hpp"
#include "lmembed/cpu/dispatch.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

namespace {

using namespace lmembed;
using Clock = std::chrono::steady_clock;

struct BenchShape {
  const char* name;
  ModelConfig cfg;
};

ModelConfig make_config(const char* arch, std::int64_t d, std::int64_t layers, std::int64_t heads,
                        std::int64_t kv, std::int64_t ff, std::int64_t vocab) {
  ModelConfig c;
  c.arch = arch;
  c.n_vocab = vocab;
  c.d_model = d;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv;
  c.head_dim = d / heads;
  c.d_ff = ff;
  c.n_ctx = 4096;
  c.rope_theta = c.arch == std::string("qwen2") ? 1e6f : 1e4f;
  c.rms_eps = 1e-6f;
  c.qkv_bias = c.arch == std::string("qwen2");
  c.rope_style = RopeStyle::neox;
  return c;
}

std::vector<BenchShape> shapes() {
  return {{"llama512", make_config("llama", 512, 8, 8, 8, 1408, 32000)},
          {"llama1024", make_config("llama", 1024, 12, 16, 4, 2816, 32000)},
          {"qwen896", make_config("qwen2", 896, 6, 14, 2, 4864, 151936)}};
}

/// Fast uniform fill with standard deviation `sd` (uniform on +-sd*sqrt(3)); speed is all
/// that matters here, the values only have to be of realistic size.
void fill(Matrix& m, std::int64_t rows, std::int64_t cols, float sd, std::uint64_t& state,
          float center = 0.0f) {
  m.resize(rows, cols);
  const float a = sd * 1.7320508f;
  float* p = m.data();
  for (std::int64_t i = 0; i < m.size(); ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const float u = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    p[i] = center + (2.0f * u - 1.0f) * a;
  }
}

Backbone random_model(const ModelConfig& c, std::uint64_t seed) {
  std::uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
  const float sd = 0.02f;
  ModelWeights w;
  fill(w.tok_embd, c.n_vocab, c.d_model, sd, st);
  fill(w.out_norm, 1, c.d_model, 0.1f, st, 1.0f);
  w.layers.resize(c.n_layers);
  for (auto& L : w.layers) {
    fill(L.attn_norm, 1, c.d_model, 0.1f, st, 1.0f);
    fill(L.ffn_norm, 1, c.d_model, 0.1f, st, 1.0f);
    fill(L.wq, c.q_dim(), c.d_model, sd, st);
    fill(L.wk, c.kv_dim(), c.d_model, sd, st);
    fill(L.wv, c.kv_dim(), c.d_model, sd, st);
    fill(L.wo, c.d_model, c.q_dim(), sd, st);
    if (c.qkv_bias) {
      fill(L.bq, 1, c.q_dim(), sd, st);
      fill(L.bk, 1, c.kv_dim(), sd, st);
      fill(L.bv, 1, c.kv_dim(), sd, st);
    }
    fill(L.w_gate, c.d_ff, c.d_model, sd, st);
    fill(L.w_up, c.d_ff, c.d_model, sd, st);
    fill(L.w_down, c.d_model, c.d_ff, sd, st);
  }
  return Backbone::from_weights(c, std::move(w), "random");
}

double now_s() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}
long current_rss_kb() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * 4;
}
/// Resets the kernel's peak-RSS counter (Linux >= 4.0), so a later peak is the forward's own.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  return static_cast<bool>(f);
}
long vm_hwm_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// GFLOP/s of gemm_nt and of Eigen's product for C[m, n] = A[m, k] W[n, k]^T (best of reps).
void bench_gemm(std::int64_t m, std::int64_t n, std::int64_t k, int threads, int reps) {
  Matrix a, w, c(m, n);
  std::uint64_t st = 42;
  fill(a, m, k, 1.0f, st);
  fill(w, n, k, 1.0f, st);
  const auto pw = detail::PackedWeight::from(w);
  detail::GemmScratch scratch;
  const double flops = 2.0 * m * n * k;
  double best_ours = 0, best_eigen = 0;
  Eigen::setNbThreads(threads);
  for (int r = 0; r < reps; ++r) {  // interleaved
    double t0 = now_s();
    detail::gemm_nt(a.data(), k, m, pw, c.data(), n, false, threads, scratch);
    best_ours = std::max(best_ours, flops / (now_s() - t0) / 1e9);
    t0 = now_s();
    c.noalias() = a * w.transpose();
    best_eigen = std::max(best_eigen, flops / (now_s() - t0) / 1e9);
  }
  std::printf(
      "GEMM m=%-5lld n=%-5lld k=%-5lld threads=%d  lmembed %6.1f GFLOP/s   Eigen %6.1f GFLOP/s\n",
      static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k), threads,
      best_ours, best_eigen);
}

}  // namespace

int main(int argc, char** argv) {
  std::string only = "all";
  int threads = 2, repeats = 3;
  std::int64_t chunk = 0;
  bool gemm = false, only_gemm = false;
  std::string only_combo;  // e.g. "causal/mean": that combination alone, no warm-up run
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--shape")
      only = next();
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--repeats")
      repeats = std::stoi(next());
    else if (a == "--chunk")
      chunk = std::stoll(next());
    else if (a == "--gemm")
      gemm = true;
    else if (a == "--combo")
      only_combo = next();
    else if (a == "--only-gemm")
      gemm = only_gemm = true;
    else {
      std::fprintf(
          stderr,
          "usage: bench_backbone [--shape llama512|llama1024|qwen896|all] [--threads N]"
          " [--repeats N] [--chunk TOKENS] [--gemm] [--only-gemm] [--combo causal/mean]\n");
      return 2;
    }
  }
  const std::string data = LMEMBED_DATA_DIR;
  if (gemm) {
    for (auto [m, n, k] : {std::tuple<int, int, int>{2048, 2048, 2048},
                           {1024, 1536, 512},   // llama512 q|k|v
                           {1024, 2816, 512},   // llama512 gate|up
                           {1024, 512, 1408},   // llama512 down
                           {1024, 5632, 1024},  // llama1024 gate|up
                           {1024, 1024, 2816},  // llama1024 down
                           {1024, 9728, 896},   // qwen896 gate|up
                           {1024, 896, 4864}})  // qwen896 down
      bench_gemm(m, n, k, threads, 5);
    if (only_gemm) return 0;
  }

  // Corpus -> one packed batch.
  const Tokenizer tok = Tokenizer::load(data + "/tokenizer/ggml-vocab-llama-spm.gguf");
  // BOS and EOS: 5,903 tokens, the count issue #4 gives for the peers' runs (BOS alone: 5,647).
  EncodeOptions eos;
  eos.add_eos = true;
  std::ifstream in(data + "/bench/corpus256.txt");
  TokenBatch batch;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) batch.add(tok.encode(line, eos));
  std::printf("cpu: %s\n", cpu::describe().c_str());  // the run-time dispatch level
  std::printf("corpus: %zu sequences, %lld tokens (Llama-2 SPM, BOS and EOS added); threads %d\n",
              batch.size(), static_cast<long long>(batch.n_tokens()), threads);

  for (const BenchShape& sh : shapes()) {
    if (only != "all" && only != sh.name) continue;
    const long rss0 = current_rss_kb();
    Backbone bb = random_model(sh.cfg, 1234);
    bb.set_threads(threads);
    const long rss_loaded = current_rss_kb();
    const bool can_reset = reset_peak_rss();
    ForwardOptions opt;
    opt.chunk_tokens = chunk;
    struct Combo {
      AttentionKind att;
      CaptureSpec spec;
      const char* name;
    };
    const Combo combos[] = {
        {AttentionKind::causal, {CaptureLayers::last, CaptureTokens::last}, "causal/last"},
        {AttentionKind::causal, {CaptureLayers::last, CaptureTokens::mean}, "causal/mean"},
        {AttentionKind::bidirectional, {CaptureLayers::last, CaptureTokens::last}, "bidir/last"},
        {AttentionKind::bidirectional, {CaptureLayers::last, CaptureTokens::mean}, "bidir/mean"}};
    std::vector<double> best(4, 0.0);
    ForwardStats stats;
    if (only_combo.empty())
      (void)bb.forward(batch, AttentionKind::causal, {}, opt);  // warm-up (page faults, caches)
    for (int r = 0; r < repeats; ++r)
      for (int c = 0; c < 4; ++c) {
        if (!only_combo.empty() && only_combo != combos[c].name) continue;
        ForwardStats st;
        opt.stats = &st;
        const double t0 = now_s();
        const Captured out = bb.forward(batch, combos[c].att, combos[c].spec, opt);
        const double dt = now_s() - t0;
        const double tps = static_cast<double>(batch.n_tokens()) / dt;
        best[c] = std::max(best[c], tps);
        if (r == repeats - 1) stats = st;
        std::printf(
            "  %-9s run %d %-12s %8.1f tok/s  (%.3f s; gemm %.3f s at %.1f GFLOP/s, "
            "attention %.3f s, other %.3f s)\n",
            sh.name, r, combos[c].name, tps, dt, st.gemm_seconds,
            st.gemm_flops / st.gemm_seconds / 1e9, st.attention_seconds, st.other_seconds);
      }
    const long peak_forward = can_reset ? vm_hwm_kb() : -1;
    std::vector<double> ran;  // the combinations that ran (all 4 unless --combo)
    for (double b : best)
      if (b > 0) ran.push_back(b);
    const double med = median(ran);
    const double weights_mb = static_cast<double>(bb.weight_bytes()) / (1 << 20);
    std::printf(
        "RESULT shape=%s tok_per_s=%.1f best_causal_last=%.1f best_causal_mean=%.1f "
        "best_bidir_last=%.1f best_bidir_mean=%.1f gemm_gflops=%.1f gemm_share=%.2f "
        "weights_mib=%.1f rss_after_load_mib=%.1f peak_rss_forward_mib=%.1f "
        "peak_rss_process_mib=%.1f threads=%d\n",
        sh.name, med, best[0], best[1], best[2], best[3],
        stats.gemm_flops / stats.gemm_seconds / 1e9,
        stats.gemm_seconds / (stats.gemm_seconds + stats.attention_seconds + stats.other_seconds),
        weights_mb, (rss_loaded - rss0) / 1024.0, peak_forward / 1024.0, peak_rss_kb() / 1024.0,
        threads);
    std::fflush(stdout);
  }
  return 0;
}
