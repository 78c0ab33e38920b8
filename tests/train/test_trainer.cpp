// The trainer: GradCache chunking gives the full-batch gradient, runs are bitwise reproducible,
// a resumed run continues bit for bit, and the loss falls on a learnable problem.
#include <gtest/gtest.h>

#include "common.hpp"
#include "fake_backbone.hpp"
#include "lmembed/train/trainer.hpp"
#include "test_head.hpp"

using namespace lmembed;
using namespace lmembed_test;

namespace {

constexpr std::int64_t kTrainD = 8, kTrainL = 3;

/// Queries and positives that share a word (so a head can learn to pair them), with a
/// contradicting negative that shares the query's other word.
std::vector<train::Example> pair_examples(int n) {
  const char* words[] = {"apple", "river", "stone", "cloud", "green", "quiet", "sharp",
                         "bread", "light", "north", "metal", "dance", "ocean", "tiger"};
  std::vector<train::Example> ex;
  for (int i = 0; i < n; ++i) {
    train::Example e;
    const std::string a = words[i % 14], b = words[(i * 5 + 3) % 14];
    e.query = a + " " + b + " " + std::to_string(i);
    e.positive = a + " thing " + std::to_string(i % 9);
    e.negatives.push_back(b + " other " + std::to_string(i % 4));
    ex.push_back(e);
  }
  return ex;
}

struct Fixture {
  TempDir dir{"trainer"};
  train::Cache cache;
  Fixture() : cache(make(dir.path)) {}
  static train::Cache make(const fs::path& p) {
    const CaptureSpec spec{CaptureLayers::all, CaptureTokens::last};
    train::CacheOptions o;
    o.capture = spec;
    o.d = kTrainD;
    o.model_layers = kTrainL;
    o.progress = false;
    train::build_cache(
        p, train::CacheDataset::from_examples(pair_examples(120)), fake_tokenize,
        [&](const TokenBatch& b) { return fake_capture(b, spec, kTrainD, kTrainL); }, o);
    return train::Cache::open(p);
  }
};

train::TrainOptions opts(std::int64_t chunk) {
  train::TrainOptions o;
  o.steps = 12;
  o.batch = 16;
  o.lr = 1e-2;
  o.warmup = 2;
  o.chunk = chunk;
  o.seed = 5;
  o.adamw.weight_decay = 0.01;
  return o;
}

std::vector<Matrix> weights(TestHead<float>& h) {
  std::vector<Matrix> w;
  for (auto* p : h.parameters()) w.push_back(p->value);
  return w;
}

}  // namespace

TEST(Trainer, GradCacheChunksGiveTheFullBatchGradient) {
  Fixture f;
  TestHead<float> a(kTrainD, kTrainL, 5), b(kTrainD, kTrainL, 5);
  a.init(1);
  b.init(1);
  train::Trainer<TestHead<float>> ta(a, f.cache, opts(0)), tb(b, f.cache, opts(7));
  const auto sa = ta.step();
  const auto sb = tb.step();
  EXPECT_NEAR(sa.loss, sb.loss, 1e-6 * sa.loss);
  EXPECT_NEAR(sa.grad_norm, sb.grad_norm, 1e-5 * sa.grad_norm);
  EXPECT_GT(sa.texts, 16);  // queries, positives and negatives
  for (std::size_t k = 0; k < 2; ++k)
    EXPECT_LE(rel_err(a.parameters()[k]->grad, b.parameters()[k]->grad.cast<double>()), 1e-5);
}

TEST(Trainer, SameSeedSameBitsAndResumeContinuesBitForBit) {
  Fixture f;
  TestHead<float> a(kTrainD, kTrainL, 5), b(kTrainD, kTrainL, 5), c(kTrainD, kTrainL, 5);
  for (auto* h : {&a, &b, &c}) h->init(3);
  train::Trainer<TestHead<float>> ta(a, f.cache, opts(5));
  train::Trainer<TestHead<float>> tb(b, f.cache, opts(5));
  std::vector<double> la, lb;
  while (!ta.done()) la.push_back(ta.step().loss);
  while (!tb.done()) lb.push_back(tb.step().loss);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(weights(a), weights(b));
  // Interrupted run: 5 steps, checkpoint, a fresh trainer (and head) resumes.
  TempDir ck("ckpt");
  {
    train::Trainer<TestHead<float>> t1(c, f.cache, opts(5));
    for (int i = 0; i < 5; ++i) t1.step();
    t1.save_checkpoint(ck.path);
    t1.step();  // progress after the checkpoint is lost, as in a crash
  }
  TestHead<float> d(kTrainD, kTrainL, 5);
  d.init(99);  // different weights: the checkpoint must overwrite them
  train::Trainer<TestHead<float>> t2(d, f.cache, opts(5));
  t2.load_checkpoint(ck.path);
  EXPECT_EQ(t2.step_count(), 5);
  std::vector<double> lc;
  while (!t2.done()) lc.push_back(t2.step().loss);
  EXPECT_EQ(lc, std::vector<double>(la.begin() + 5, la.end()));
  EXPECT_EQ(weights(d), weights(a));
  // Other options refuse the checkpoint.
  auto o = opts(5);
  o.seed = 6;
  train::Trainer<TestHead<float>> t3(d, f.cache, o);
  EXPECT_THROW(t3.load_checkpoint(ck.path), config_error);
}

TEST(Trainer, LossFallsOnALearnableProblem) {
  Fixture f;
  TestHead<float> h(kTrainD, kTrainL, 8);
  h.init(11);
  auto o = opts(0);
  o.steps = 150;
  o.batch = 24;
  o.lr = 3e-2;
  o.loss.scale = 5;
  train::Trainer<TestHead<float>> t(h, f.cache, o);
  double first = 0, last = 0;
  for (int i = 0; i < 150; ++i) {
    const double l = t.step().loss;
    if (i < 10) first += l / 10;
    if (i >= 140) last += l / 10;
  }
  EXPECT_LT(last, 0.9 * first) << first << " -> " << last;
}

TEST(Trainer, RefusesAHeadThatConsumesSomethingElse) {
  const CaptureSpec spec{CaptureLayers::last, CaptureTokens::all};
  TempDir dir("trainer");
  train::CacheOptions o;
  o.capture = spec;
  o.d = kTrainD;
  o.model_layers = kTrainL;
  o.progress = false;
  train::build_cache(
      dir.path, train::CacheDataset::from_examples(pair_examples(10)), fake_tokenize,
      [&](const TokenBatch& b) { return fake_capture(b, spec, kTrainD, kTrainL); }, o);
  const auto cache = train::Cache::open(dir.path);
  TestHead<float> h(kTrainD, kTrainL, 4);
  EXPECT_THROW(train::Trainer<TestHead<float>>(h, cache, opts(0)), config_error);
}
