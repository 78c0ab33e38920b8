// tests/cuda/cuda_test_util.hpp - shared by the CUDA backend's host and device tests: the
// llama.cpp goldens (data/golden/*.json), difference measures and random batches.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"

namespace cuda_test {

namespace fs = std::filesystem;
inline const fs::path kData = LMEMBED_DATA_DIR;

/// One golden file: token ids and llama.cpp's pooled final-layer states per sentence.
struct Golden {
  struct Sentence {
    std::vector<std::int32_t> ids;
    std::map<std::string, std::vector<float>> emb;  // last_causal, mean_noncausal, ...
  };
  std::vector<Sentence> sentences;
  std::int64_t n_embd = 0;
};

/// Loads data/golden/<name>.json (cached).
inline const Golden& golden(const std::string& name) {
  static std::map<std::string, Golden> cache;
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  const fs::path p = kData / "golden" / (name + ".json");
  const lmembed::ordered_json j = lmembed::json::parse(lmembed::read_text_file(p), p.string());
  Golden g;
  g.n_embd = lmembed::json::get_int(lmembed::json::at(j, "dims"), "n_embd");
  for (const auto& s : lmembed::json::get_array(j, "sentences")) {
    Golden::Sentence out;
    for (const auto& id : lmembed::json::get_array(s, "ids"))
      out.ids.push_back(static_cast<std::int32_t>(lmembed::json::as_int(id)));
    for (const auto& [k, v] : lmembed::json::get_object(s, "embeddings")) {
      std::vector<float> f;
      for (const auto& x : lmembed::json::as_array(v))
        f.push_back(static_cast<float>(lmembed::json::as_double(x)));
      out.emb[k] = std::move(f);
    }
    g.sentences.push_back(std::move(out));
  }
  return cache.emplace(name, std::move(g)).first->second;
}

/// Indices of the first n golden sentences, plus the last one (the 150-word sentence) when
/// `with_long` and it is not among them.
inline std::vector<std::size_t> golden_pick(const Golden& g, std::size_t n, bool with_long) {
  std::vector<std::size_t> idx;
  for (std::size_t i = 0; i < std::min(n, g.sentences.size()); ++i) idx.push_back(i);
  if (with_long && n < g.sentences.size()) idx.push_back(g.sentences.size() - 1);
  return idx;
}

/// The picked golden sentences as one packed batch (each its own sequence).
inline lmembed::TokenBatch golden_batch(const Golden& g, const std::vector<std::size_t>& idx) {
  lmembed::TokenBatch b;
  for (std::size_t i : idx) b.add(g.sentences[i].ids);
  return b;
}

/// max_i |a_i - b_i| / max_i |b_i| (data/golden/README.md's measure).
inline double rel_diff(const float* a, const float* b, std::size_t n) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0.0 ? num / den : num;
}

/// A batch of random ids with the given sequence lengths.
inline lmembed::TokenBatch random_batch(const std::vector<std::int64_t>& lengths,
                                        std::int64_t n_vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(n_vocab - 1));
  lmembed::TokenBatch b;
  for (std::int64_t len : lengths) {
    std::vector<std::int32_t> s(static_cast<std::size_t>(len));
    for (auto& x : s) x = id(rng);
    b.add(s);
  }
  return b;
}

}  // namespace cuda_test
