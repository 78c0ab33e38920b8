// cuda_backbone_bench - tokens/s of lmembed::cuda::DeviceBackbone on random-weight models.
//
//   cuda_backbone_bench --shape qwen2-0.5b|mistral-7b-slice --precision f32|tf32|bf16
//                       [--texts 4096] [--batch-tokens 16384] [--repeats 3]
//                       [--attention causal|bidirectional]
// Prints one JSON line: shape, precision, texts, tokens, median seconds, tokens/s, GPU name.
// The sentence lengths are the deterministic list lengths(i) = 16 + (37 i mod 48) tokens (the
// same formula as compare_transformers.py), ids random; weights are random (normal-ish, std
// 0.02; norms 1), so no download is needed and speed does not depend on the values.
// Capture is last layer / mean over tokens: the whole last layer is needed, as for HF's
// last_hidden_state.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "lmembed/cuda/backbone.cuh"

namespace {

using namespace lmembed;
// lmembed::cuda, spelled out: CCCL (CUB, libcu++) has a global ::cuda namespace too.
namespace lc = lmembed::cuda;

/// Fast deterministic fill: splitmix64 -> uniform(-a, a) with the std of normal(0, 0.02).
void fill(Matrix& m, std::uint64_t seed, float std_dev) {
  const float a = std_dev * 1.7320508f;  // uniform(-a, a) has std a / sqrt(3)
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    m.data()[i] = a * (static_cast<float>(z >> 40) / 8388608.0f - 1.0f);
  }
}

ModelConfig shape(const std::string& name) {
  ModelConfig c;
  c.rope_style = RopeStyle::neox;
  if (name == "qwen2-0.5b") {
    c.arch = "qwen2";
    c.n_vocab = 151936, c.d_model = 896, c.n_layers = 24, c.n_heads = 14, c.n_kv_heads = 2;
    c.head_dim = 64, c.d_ff = 4864, c.n_ctx = 32768, c.rope_theta = 1e6f, c.rms_eps = 1e-6f;
    c.qkv_bias = true;
  } else if (name == "mistral-7b-slice") {
    c.arch = "llama";
    c.n_vocab = 32000, c.d_model = 4096, c.n_layers = 4, c.n_heads = 32, c.n_kv_heads = 8;
    c.head_dim = 128, c.d_ff = 14336, c.n_ctx = 32768, c.rope_theta = 1e6f, c.rms_eps = 1e-5f;
  } else {
    throw config_error("unknown --shape '" + name + "' (qwen2-0.5b, mistral-7b-slice)");
  }
  return c;
}

ModelWeights random_weights(const ModelConfig& c) {
  ModelWeights w;
  std::uint64_t seed = 1;
  auto mat = [&](std::int64_t r, std::int64_t k) {
    Matrix m(r, k);
    fill(m, seed++, 0.02f);
    return m;
  };
  auto ones = [](std::int64_t n) { return Matrix(Matrix::Ones(1, n)); };
  w.tok_embd = mat(c.n_vocab, c.d_model);
  w.out_norm = ones(c.d_model);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights L;
    L.attn_norm = ones(c.d_model);
    L.ffn_norm = ones(c.d_model);
    L.wq = mat(c.q_dim(), c.d_model);
    L.wk = mat(c.kv_dim(), c.d_model);
    L.wv = mat(c.kv_dim(), c.d_model);
    L.wo = mat(c.d_model, c.q_dim());
    if (c.qkv_bias) {
      L.bq = mat(1, c.q_dim());
      L.bk = mat(1, c.kv_dim());
      L.bv = mat(1, c.kv_dim());
    }
    L.w_gate = mat(c.d_ff, c.d_model);
    L.w_up = mat(c.d_ff, c.d_model);
    L.w_down = mat(c.d_model, c.d_ff);
    w.layers.push_back(std::move(L));
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string shape_name = "qwen2-0.5b", precision = "f32", attention = "causal";
  std::int64_t n_texts = 4096, batch_tokens = 16384;
  int repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape")
      shape_name = v;
    else if (k == "--precision")
      precision = v;
    else if (k == "--attention")
      attention = v;
    else if (k == "--texts")
      n_texts = std::stoll(v);
    else if (k == "--batch-tokens")
      batch_tokens = std::stoll(v);
    else if (k == "--repeats")
      repeats = std::stoi(v);
    else
      throw config_error("unknown option " + k);
  }
  const ModelConfig cfg = shape(shape_name);
  lc::DeviceOptions opt;
  opt.precision = precision == "bf16"   ? lc::WeightPrecision::bf16
                  : precision == "tf32" ? lc::WeightPrecision::tf32
                                        : lc::WeightPrecision::f32;
  if (lc::device_count() == 0) {
    std::fprintf(stderr, "cuda_backbone_bench: no CUDA device (%s)\n",
                 lc::no_device_reason().c_str());
    return 77;
  }
  std::fprintf(stderr, "cuda_backbone_bench: generating %s weights...\n", shape_name.c_str());
  lc::DeviceBackbone dev = [&] {
    const ModelWeights w = random_weights(cfg);
    return lc::DeviceBackbone::from_weights(cfg, w, opt, shape_name);
  }();
  // The sentences, cut into batches of at most batch_tokens tokens.
  std::vector<TokenBatch> batches(1);
  std::int64_t total = 0;
  std::uint64_t rng = 12345;
  for (std::int64_t i = 0; i < n_texts; ++i) {
    const std::int64_t len = 16 + (37 * i) % 48;
    if (batches.back().n_tokens() + len > batch_tokens) batches.emplace_back();
    std::vector<std::int32_t> ids(static_cast<std::size_t>(len));
    for (auto& id : ids) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      id = static_cast<std::int32_t>((rng >> 33) % static_cast<std::uint64_t>(cfg.n_vocab));
    }
    batches.back().add(ids);
    total += len;
  }
  const AttentionKind kind = parse_attention(attention);
  const CaptureSpec spec{CaptureLayers::last, CaptureTokens::mean};
  for (const TokenBatch& b : batches) (void)dev.forward(b, kind, spec);  // warm-up, sizes ws
  std::vector<double> secs;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const TokenBatch& b : batches) (void)dev.forward(b, kind, spec);
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  const double med = secs[secs.size() / 2];
  cudaDeviceProp prop{};
  LMEMBED_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf(
      "{\"impl\": \"lmembed\", \"shape\": \"%s\", \"precision\": \"%s\", \"attention\": \"%s\", "
      "\"texts\": %lld, \"tokens\": %lld, \"seconds\": %.6f, \"tokens_per_s\": %.1f, "
      "\"gpu\": \"%s\"}\n",
      shape_name.c_str(), precision.c_str(), attention.c_str(), static_cast<long long>(n_texts),
      static_cast<long long>(total), med, static_cast<double>(total) / med, prop.name);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "cuda_backbone_bench: %s\n", e.what());
  return 1;
}
