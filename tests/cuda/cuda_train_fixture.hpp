// tests/cuda/cuda_train_fixture.hpp - caches and heads shared by the CUDA training tests
// (cuda_head_host_test.cpp on the CPU, cuda_head_device_test.cu on a GPU): small caches built
// with tests/train's deterministic fake backbone, for the multi_layer and the latent heads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../train/common.hpp"
#include "../train/fake_backbone.hpp"
#include "lmembed/pooling/latent.hpp"
#include "lmembed/pooling/multi_layer.hpp"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/trainer.hpp"

namespace cuda_train_test {

using namespace lmembed;

inline constexpr std::int64_t kD = 8, kL = 3;

/// Queries and positives that share a word, negatives sharing the query's other word (two per
/// example, so max_negatives = 1 samples through the trainer's Rng).
inline std::vector<train::Example> pair_examples(int n) {
  const char* words[] = {"apple", "river", "stone", "cloud", "green", "quiet", "sharp",
                         "bread", "light", "north", "metal", "dance", "ocean", "tiger"};
  std::vector<train::Example> ex;
  for (int i = 0; i < n; ++i) {
    train::Example e;
    const std::string a = words[i % 14], b = words[(i * 5 + 3) % 14];
    e.query = a + " " + b + " " + std::to_string(i);
    e.positive = a + " thing " + std::to_string(i % 9);
    e.negatives.push_back(b + " other " + std::to_string(i % 4));
    e.negatives.push_back(b + " else " + std::to_string(i % 5));
    ex.push_back(e);
  }
  return ex;
}

/// A finished cache of `n_examples` pair examples captured as `spec` (width kD, kL layers).
struct CacheFixture {
  lmembed_test::TempDir dir;
  train::Cache cache;
  CacheFixture(CaptureSpec spec, int n_examples, const std::string& name)
      : dir(name), cache(make(dir.path, spec, n_examples)) {}
  static train::Cache make(const std::filesystem::path& p, CaptureSpec spec, int n) {
    train::CacheOptions o;
    o.capture = spec;
    o.d = kD;
    o.model_layers = kL;
    o.progress = false;
    train::build_cache(
        p, train::CacheDataset::from_examples(pair_examples(n)), lmembed_test::fake_tokenize,
        [&](const TokenBatch& b) { return lmembed_test::fake_capture(b, spec, kD, kL); }, o);
    return train::Cache::open(p);
  }
};

/// A small multi_layer head (inner 12 != d) over kL layers.
inline pooling::MultiLayerHead<float> small_multi_layer(std::uint64_t seed) {
  auto c = pooling::MultiLayerHead<float>::Config::defaults(kD, kL);
  c.n_latents = 5;
  c.heads = 3;
  c.head_dim = 4;
  c.ff_mult = 2;
  pooling::MultiLayerHead<float> h(c);
  h.init(seed);
  return h;
}

/// A small latent head (inner 12 != d).
inline pooling::LatentHead<float> small_latent(std::uint64_t seed) {
  pooling::LatentHead<float>::Config c;
  c.d = kD;
  c.n_latents = 6;
  c.heads = 3;
  c.head_dim = 4;
  c.mlp_mult = 2;
  pooling::LatentHead<float> h(c);
  h.init(seed);
  return h;
}

/// Options of the comparison runs: GradCache chunks, warmup, decay, clipping, sampled
/// negatives.
inline train::TrainOptions options(std::int64_t steps, std::int64_t chunk) {
  train::TrainOptions o;
  o.steps = steps;
  o.batch = 12;
  o.lr = 3e-3;
  o.warmup = 3;
  o.chunk = chunk;
  o.seed = 5;
  o.clip = 0.5;
  o.max_negatives = 1;
  o.adamw.weight_decay = 0.01;
  return o;
}

/// max_i |a_i - b_i| / max_i |b_i| over every parameter of two heads.
template <class Head>
double weights_rel_diff(Head& a, Head& b) {
  double num = 0, den = 0;
  auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t k = 0; k < pa.size(); ++k) {
    num = std::max(num, double((pa[k]->value - pb[k]->value).cwiseAbs().maxCoeff()));
    den = std::max(den, double(pb[k]->value.cwiseAbs().maxCoeff()));
  }
  return num / den;
}

}  // namespace cuda_train_test
