// Steps/s of multi_layer head training on cached states (bench/train/compare_train_torch.py
// compares it with the same loop in PyTorch on the same cached tensors).
//
// usage: bench_train --cache DIR [--steps N] [--threads N] [--batch B] [--chunk N]
//                    [--latents N]
// When DIR holds no cache, one is made first: d = 896, L = 24 (Qwen2-0.5B sizes), one example
// per 3 texts (query, positive, hard negative), states drawn from N(0, 1) with a fixed seed.
// Prints one JSON line: {"steps_per_s": ..., "seconds": [...], ...}.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "lmembed/pooling/multi_layer.hpp"
#include "lmembed/train/trainer.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

int main(int argc, char** argv) {
  namespace train = lmembed::train;
  std::string dir;
  int steps = 3, threads = 2;
  std::int64_t batch = 256, chunk = 0, latents = 64, d = 896, L = 24;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--cache")
      dir = v;
    else if (k == "--steps")
      steps = std::stoi(v);
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--batch")
      batch = std::stoll(v);
    else if (k == "--chunk")
      chunk = std::stoll(v);
    else if (k == "--latents")
      latents = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (dir.empty()) {
    std::cerr << "usage: bench_train --cache DIR [--steps N] [--threads N] [--batch B]\n";
    return 2;
  }
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
  try {
    if (!std::filesystem::exists(std::filesystem::path(dir) / "index.json")) {
      // batch examples, each with its own query, positive and hard negative.
      std::vector<train::Example> ex;
      for (std::int64_t i = 0; i < batch; ++i) {
        // append, not "q" + std::string: GCC 12 misreports -Wrestrict on the latter
        const std::string id = std::to_string(i);
        ex.push_back({std::string("q").append(id),
                      std::string("p").append(id),
                      {std::string("n").append(id)},
                      {},
                      {}});
      }
      const auto data = train::CacheDataset::from_examples(ex);
      train::CacheOptions o;
      o.capture = {lmembed::CaptureLayers::all, lmembed::CaptureTokens::last};
      o.d = d;
      o.model_layers = L;
      o.model = "random-normal";
      o.progress = false;
      train::Rng rng(2024);
      std::int64_t next = 0;
      auto tokenize = [&](const train::CacheText&) {
        return train::TokenizedText{{std::int32_t(next++)}, 0};
      };
      auto capture = [&](const lmembed::TokenBatch& b) {
        lmembed::Captured c;
        c.spec = o.capture;
        c.n_seq = std::int64_t(b.size());
        c.n_layers = L;
        c.d = d;
        c.states.resize(c.n_seq * L, d);
        for (Eigen::Index i = 0; i < c.states.size(); i += 2) {  // Box-Muller
          const double u1 = (double(rng.next() >> 11) + 1.0) / 9007199254740993.0;
          const double u2 = double(rng.next() >> 11) / 9007199254740992.0;
          const double r = std::sqrt(-2 * std::log(u1));
          c.states.data()[i] = float(r * std::cos(2 * M_PI * u2));
          if (i + 1 < c.states.size()) c.states.data()[i + 1] = float(r * std::sin(2 * M_PI * u2));
        }
        return c;
      };
      train::build_cache(dir, data, tokenize, capture, o);
    }
    const auto cache = train::Cache::open(dir);
    auto cfg =
        lmembed::pooling::MultiLayerHead<float>::Config::defaults(cache.d(), cache.n_layers());
    cfg.n_latents = latents;
    lmembed::pooling::MultiLayerHead<float> head(cfg);
    head.init(1);
    train::TrainOptions opt;
    opt.steps = steps + 1;
    opt.batch = batch;
    opt.lr = 1e-4;
    opt.chunk = chunk;
    train::Trainer<lmembed::pooling::MultiLayerHead<float>> trainer(head, cache, opt);
    std::vector<double> secs;
    double loss = 0;
    for (int s = 0; s <= steps; ++s) {  // step 0 warms up (page cache, allocations)
      const auto t0 = std::chrono::steady_clock::now();
      const auto st = trainer.step();
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (s > 0) secs.push_back(dt);
      loss = st.loss;
      std::cerr << "bench_train: step " << s << " " << dt << " s, loss " << st.loss << ", "
                << st.texts << " texts\n";
    }
    std::vector<double> sorted = secs;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    std::printf(
        "{\"steps_per_s\": %.6g, \"median_s\": %.6g, \"steps\": %d, \"threads\": %d, "
        "\"batch\": %lld, \"latents\": %lld, \"loss\": %.6g}\n",
        1.0 / median, median, steps, threads, (long long)batch, (long long)latents, loss);
  } catch (const std::exception& e) {
    std::cerr << "bench_train: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
