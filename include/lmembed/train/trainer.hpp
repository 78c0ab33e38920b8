// lmembed/train/trainer.hpp - training a pooling head over a cache, with GradCache and
// crash-safe checkpoints.
//
// One step:
//   1. take the next `batch` examples of a seeded per-epoch permutation; collect the distinct
//      texts of their queries, positives and hard negatives;
//   2. embed every distinct text with the head, `chunk` texts at a time, keeping no activations;
//   3. compute the InfoNCE loss over the whole batch and its gradient with respect to every
//      embedding (a [n, d] matrix - small);
//   4. run the head again chunk by chunk, now keeping activations, and back-propagate each
//      chunk's slice of that gradient (GradCache, Gao et al. 2021);
//   5. clip the gradient norm, AdamW with the scheduled learning rate.
// Every query thus sees every candidate of the batch however large the batch, while memory
// holds the activations of one chunk only. Plain gradient accumulation (as in the paper's own
// trainer) is different: each micro-batch's queries see only that micro-batch's candidates, so
// accumulation does not enlarge the negative pool. When all texts fit in one chunk, step 2 keeps
// its activations and step 4 does not recompute.
//
// Determinism: all randomness comes from train::Rng seeded by `seed`; Eigen's products split
// work by output blocks, so a run with the same seed and thread count is bitwise reproducible,
// and a run resumed from a checkpoint continues bit for bit.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/io/safetensors.hpp"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/loss.hpp"
#include "lmembed/train/optim.hpp"
#include "lmembed/train/random.hpp"

namespace lmembed::train {

/// Options of a training run.
struct TrainOptions {
  std::int64_t steps = 100;        ///< optimizer steps
  std::int64_t batch = 32;         ///< examples per step
  double lr = 1e-4;                ///< peak learning rate
  std::int64_t warmup = 0;         ///< linear warmup steps, then linear decay to 0
  double clip = 1.0;               ///< gradient-norm clipping (<= 0: off)
  std::uint64_t seed = 42;         ///< data order and negative sampling
  std::int64_t max_negatives = 1;  ///< hard negatives per example per step (sampled if more)
  std::int64_t chunk = 256;        ///< texts per head pass (GradCache chunk); 0: all at once
  InfoNceOptions loss;             ///< scale, symmetric, hard negatives on/off
  AdamWOptions adamw;              ///< betas, eps, weight decay
};

/// What one step did.
struct StepStats {
  std::int64_t step = 0;  ///< steps done after this one
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;    ///< before clipping
  std::int64_t texts = 0;  ///< distinct texts embedded
};

/// What a checkpoint must agree on to be resumed (train::Trainer and DistributedTrainer share it,
/// so their checkpoints are interchangeable).
template <class Head>
std::map<std::string, std::string> checkpoint_identity(const Head& head, const TrainOptions& opt,
                                                       const Cache& cache) {
  auto num = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return std::string(buf);
  };
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : head.metadata()) m["head." + k] = v;
  m["train.steps"] = std::to_string(opt.steps);
  m["train.batch"] = std::to_string(opt.batch);
  m["train.lr"] = num(opt.lr);
  m["train.warmup"] = std::to_string(opt.warmup);
  m["train.clip"] = num(opt.clip);
  m["train.seed"] = std::to_string(opt.seed);
  m["train.max_negatives"] = std::to_string(opt.max_negatives);
  m["train.scale"] = num(opt.loss.scale);
  m["train.symmetric"] = opt.loss.symmetric ? "1" : "0";
  m["train.hard_negatives"] = opt.loss.hard_negatives ? "1" : "0";
  m["train.weight_decay"] = num(opt.adamw.weight_decay);
  m["cache.n_texts"] = std::to_string(cache.n_texts());
  m["cache.capture"] = to_string(cache.capture());
  m["cache.model"] = cache.model();
  return m;
}

/// Where a run stands besides its weights: what a checkpoint stores in its metadata.
struct TrainPosition {
  std::int64_t step = 0, epoch = 0, cursor = 0;  ///< steps done, epoch, next example of it
  std::string rng;                               ///< Rng::state() of the negative sampling
};

/// Writes `dir`/checkpoint.safetensors atomically: the weights of `optim`'s parameters
/// ("param.<name>"), its moments, and in the metadata `identity` and `pos`. One file, so a
/// crash leaves the previous checkpoint or this one. The one format of train::Trainer,
/// DistributedTrainer and the CUDA trainer, so each resumes the others' checkpoints.
template <class Optim>
void write_checkpoint(const std::filesystem::path& dir, const Optim& optim,
                      const std::map<std::string, std::string>& identity,
                      const TrainPosition& pos) {
  std::filesystem::create_directories(dir);
  io::SafetensorsWriter w;
  for (const auto* p : optim.parameters()) w.add("param." + p->name, p->value, p->shape);
  for (const auto& [k, m] : optim.state()) w.add(k, m);
  for (const auto& [k, v] : identity) w.set_metadata(k, v);
  w.set_metadata("step", std::to_string(pos.step));
  w.set_metadata("epoch", std::to_string(pos.epoch));
  w.set_metadata("cursor", std::to_string(pos.cursor));
  w.set_metadata("rng", pos.rng);
  w.write(dir / "checkpoint.safetensors");
}

/// Reads a checkpoint written by write_checkpoint into `optim` (weights and moments) and
/// returns its position. config_error naming the first entry of `identity` that differs (a
/// checkpoint of another head, cache or options), shape_error naming a tensor of other size.
template <class Optim>
TrainPosition read_checkpoint(const std::filesystem::path& dir, Optim& optim,
                              const std::map<std::string, std::string>& identity) {
  const auto file = dir / "checkpoint.safetensors";
  if (!std::filesystem::exists(file))
    throw config_error(dir.string() + " holds no checkpoint.safetensors");
  const auto f = io::SafetensorsFile::open(file);
  const auto& meta = f.metadata();
  for (const auto& [k, v] : identity) {
    auto it = meta.find(k);
    if (it == meta.end() || it->second != v)
      throw config_error(file.string() + ": '" + k + "' is " +
                         (it == meta.end() ? std::string("absent") : "'" + it->second + "'") +
                         ", this run has '" + v + "' (resume with the same cache and options)");
  }
  auto meta_str = [&](const std::string& k) -> const std::string& {
    auto it = meta.find(k);
    if (it == meta.end()) throw config_error(file.string() + ": metadata lacks '" + k + "'");
    return it->second;
  };
  auto meta_int = [&](const std::string& k) -> std::int64_t {
    const std::string& v = meta_str(k);
    try {
      return std::stoll(v);
    } catch (const std::exception&) {
      throw config_error(file.string() + ": metadata '" + k + "' is not an integer");
    }
  };
  auto read = [&](const std::string& name, auto& dst) {
    const io::TensorView& t = f.tensor(name);
    using S = typename std::decay_t<decltype(dst)>::Scalar;
    if (t.dtype != io::DType::f32 || !std::is_same_v<S, float> || t.numel() != dst.size())
      throw shape_error(file.string() + ": tensor '" + name + "' is " + io::to_string(t.dtype) +
                        " " + to_string(t.shape) + ", expected F32 with " +
                        std::to_string(dst.size()) + " values");
    std::memcpy(dst.data(), t.data.data(), t.data.size());
  };
  for (auto* p : optim.parameters()) read("param." + p->name, p->value);
  auto st = optim.state();
  for (auto& [k, m] : st) read(k, m);
  TrainPosition pos;
  pos.step = meta_int("step");
  optim.load_state(st, pos.step);
  pos.epoch = meta_int("epoch");
  pos.cursor = meta_int("cursor");
  pos.rng = meta_str("rng");
  return pos;
}

/// The example order of one epoch: a permutation that depends on seed and epoch only, so a
/// resumed run (and every rank of a distributed one) draws the same batches.
inline std::vector<std::int64_t> epoch_order(std::size_t n, std::uint64_t seed,
                                             std::int64_t epoch) {
  std::vector<std::int64_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = std::int64_t(i);
  Rng r(seed * 0x9e3779b97f4a7c15ULL + std::uint64_t(epoch) + 1);
  r.shuffle(order);
  return order;
}

/// What every trainer checks before its first step (config_error naming the problem): at least
/// one step of at least one example, a cache with examples, and a head that consumes what the
/// cache holds.
template <class Head>
void check_training(const Head& head, const Cache& cache, const TrainOptions& opt) {
  if (opt.batch < 1) throw config_error("batch must be at least 1");
  if (opt.steps < 1) throw config_error("steps must be at least 1");
  if (cache.dataset().examples.empty()) throw config_error("the cache holds no examples");
  if (head.capture() != cache.capture())
    throw config_error(std::string("the ") + head.name() + " head consumes " +
                       to_string(head.capture()) + " but the cache at " + cache.dir().string() +
                       " holds " + to_string(cache.capture()));
}

/// How every CPU trainer ends a step once the head's gradients are complete: clip them to
/// opt.clip, take the AdamW step at the scheduled learning rate and count the step. Returns
/// step, lr and grad_norm (before clipping) of the StepStats.
template <class Optim>
StepStats optimizer_step(Optim& optim, const TrainOptions& opt, std::int64_t& step) {
  StepStats st;
  st.grad_norm = clip_grad_norm(optim.parameters(), opt.clip);
  st.lr = linear_schedule(opt.lr, step, opt.warmup, opt.steps);
  optim.step(st.lr);
  st.step = ++step;
  return st;
}

/// One batch as the loss sees it: the distinct cache texts to embed (in order of first
/// appearance) and, for every query, positive and sampled hard negative, its row among them.
struct BatchPlan {
  std::vector<std::int64_t> texts;
  std::vector<std::int64_t> queries, positives, negatives;
};

/// The batch sequence of a run: examples in the epoch permutation (epoch_order), hard negatives
/// sampled with one Rng. Every trainer (CPU, distributed, CUDA) and every rank draws its batches
/// here, so all of them see the same sequence and resume it from a TrainPosition.
class BatchSampler {
 public:
  BatchSampler(const Cache& cache, const TrainOptions& opt)
      : cache_(cache), opt_(opt), rng_(opt.seed) {
    new_epoch(0);
  }

  /// The next batch of opt.batch examples (wrapping into the next epoch).
  BatchPlan next() {
    BatchPlan b;
    std::unordered_map<std::int64_t, std::int64_t> row_of;
    auto row = [&](std::int64_t text) {
      auto [it, fresh] = row_of.try_emplace(text, std::int64_t(b.texts.size()));
      if (fresh) b.texts.push_back(text);
      return it->second;
    };
    const auto& examples = cache_.dataset().examples;
    for (std::int64_t i = 0; i < opt_.batch; ++i) {
      if (cursor_ >= std::int64_t(order_.size())) new_epoch(epoch_ + 1);
      const CacheExample& c = examples[std::size_t(order_[std::size_t(cursor_++)])];
      b.queries.push_back(row(c.query));
      b.positives.push_back(row(c.positive));
      if (!opt_.loss.hard_negatives || opt_.max_negatives <= 0 || c.negatives.empty()) continue;
      if (std::int64_t(c.negatives.size()) <= opt_.max_negatives) {
        for (auto n : c.negatives) b.negatives.push_back(row(n));
      } else {  // a partial Fisher-Yates: max_negatives distinct negatives, uniformly
        std::vector<std::int64_t> pick = c.negatives;
        for (std::int64_t k = 0; k < opt_.max_negatives; ++k)
          std::swap(pick[std::size_t(k)],
                    pick[std::size_t(k + std::int64_t(rng_.below(pick.size() - std::size_t(k))))]);
        for (std::int64_t k = 0; k < opt_.max_negatives; ++k)
          b.negatives.push_back(row(pick[std::size_t(k)]));
      }
    }
    return b;
  }

  /// Where the sequence stands, for a checkpoint taken after `step` steps.
  TrainPosition position(std::int64_t step) const { return {step, epoch_, cursor_, rng_.state()}; }
  /// Continues the sequence from a checkpoint's position.
  void restore(const TrainPosition& pos) {
    new_epoch(pos.epoch);
    cursor_ = pos.cursor;
    rng_.set_state(pos.rng);
  }

 private:
  void new_epoch(std::int64_t epoch) {
    epoch_ = epoch;
    order_ = epoch_order(cache_.dataset().examples.size(), opt_.seed, epoch_);
    cursor_ = 0;
  }

  const Cache& cache_;
  TrainOptions opt_;
  Rng rng_;
  std::int64_t epoch_ = 0, cursor_ = 0;
  std::vector<std::int64_t> order_;
};

/// The loss of a batch and its gradient with respect to the embeddings of the batch's distinct
/// texts (`emb`: one row per BatchPlan::texts entry; a text used twice gets both gradients).
template <class Scalar>
std::pair<Scalar, MatrixX<Scalar>> batch_loss(const MatrixX<Scalar>& emb, const BatchPlan& b,
                                              const InfoNceOptions& opt) {
  auto take = [&](const std::vector<std::int64_t>& idx) {
    MatrixX<Scalar> m(std::int64_t(idx.size()), emb.cols());
    for (std::size_t i = 0; i < idx.size(); ++i) m.row(Eigen::Index(i)) = emb.row(idx[i]);
    return m;
  };
  const MatrixX<Scalar> q = take(b.queries), p = take(b.positives);
  const MatrixX<Scalar> negs =
      b.negatives.empty() ? MatrixX<Scalar>(0, emb.cols()) : take(b.negatives);
  const InfoNceResult<Scalar> r = info_nce<Scalar>(q, p, negs, opt);
  MatrixX<Scalar> d_emb = MatrixX<Scalar>::Zero(emb.rows(), emb.cols());
  for (std::size_t i = 0; i < b.queries.size(); ++i)
    d_emb.row(b.queries[i]) += r.d_queries.row(Eigen::Index(i));
  for (std::size_t i = 0; i < b.positives.size(); ++i)
    d_emb.row(b.positives[i]) += r.d_positives.row(Eigen::Index(i));
  for (std::size_t i = 0; i < b.negatives.size(); ++i)
    d_emb.row(b.negatives[i]) += r.d_negatives.row(Eigen::Index(i));
  return {r.loss, std::move(d_emb)};
}

/// Trains `Head` (a pooling head class: forward/backward/parameters/zero_grad, nested Context)
/// on the examples of a Cache. The head must outlive the trainer and must not move.
template <class Head>
class Trainer {
 public:
  using Scalar = float;
  using P =
      std::remove_pointer_t<typename decltype(std::declval<Head&>().parameters())::value_type>;

  Trainer(Head& head, const Cache& cache, TrainOptions opt)
      : head_(head),
        cache_(cache),
        opt_(opt),
        optim_(head.parameters(), opt.adamw),
        sampler_(cache, opt) {
    check_training(head_, cache_, opt_);
  }

  /// Steps done so far.
  std::int64_t step_count() const { return step_; }
  bool done() const { return step_ >= opt_.steps; }
  const TrainOptions& options() const { return opt_; }

  /// One optimizer step on the next batch.
  StepStats step() {
    if (done()) throw config_error("training is already complete");
    // 1. The batch and its distinct texts.
    const BatchPlan batch = sampler_.next();
    const std::vector<std::int64_t>& uniq = batch.texts;
    const std::int64_t n = std::int64_t(uniq.size());
    const std::int64_t chunk = opt_.chunk > 0 ? std::min(opt_.chunk, n) : n;
    const bool one_pass = chunk >= n;

    // 2. Embed every distinct text (no activations kept unless one chunk holds them all).
    head_.zero_grad();
    MatrixX<Scalar> emb;
    typename Head::Context ctx;
    if (one_pass) {
      emb = head_.forward(cache_.gather<Scalar>(uniq), ctx);
    } else {
      for (std::int64_t b = 0; b < n; b += chunk) {
        const std::int64_t m = std::min(chunk, n - b);
        const MatrixX<Scalar> e = head_.forward(cache_.gather<Scalar>(
            std::span<const std::int64_t>(uniq).subspan(std::size_t(b), std::size_t(m))));
        if (b == 0) emb.resize(n, e.cols());
        emb.middleRows(b, m) = e;
      }
    }

    // 3. Loss over the whole batch, gradient w.r.t. every embedding.
    const auto [loss, d_emb] = batch_loss(emb, batch, opt_.loss);

    // 4. Back-propagate through the head, chunk by chunk.
    if (one_pass) {
      head_.backward(d_emb, ctx);
    } else {
      for (std::int64_t b = 0; b < n; b += chunk) {
        const std::int64_t m = std::min(chunk, n - b);
        typename Head::Context c;
        head_.forward(cache_.gather<Scalar>(std::span<const std::int64_t>(uniq).subspan(
                          std::size_t(b), std::size_t(m))),
                      c);
        head_.backward(MatrixX<Scalar>(d_emb.middleRows(b, m)), c);
      }
    }

    // 5. Clip, schedule, update.
    StepStats st = optimizer_step(optim_, opt_, step_);
    st.loss = double(loss);
    st.texts = n;
    return st;
  }

  /// Writes `dir`/checkpoint.safetensors atomically (write_checkpoint: weights, AdamW moments,
  /// step, data position, RNG state, options and the head's own metadata).
  void save_checkpoint(const std::filesystem::path& dir) const {
    write_checkpoint(dir, optim_, identity(), sampler_.position(step_));
  }

  /// Restores a checkpoint written by save_checkpoint with the same head configuration, cache
  /// and options (config_error naming the first difference).
  void load_checkpoint(const std::filesystem::path& dir) {
    const TrainPosition pos = read_checkpoint(dir, optim_, identity());
    step_ = pos.step;
    sampler_.restore(pos);
  }

 private:
  /// What a checkpoint must agree on to be resumed by this trainer.
  std::map<std::string, std::string> identity() const {
    return checkpoint_identity(head_, opt_, cache_);
  }

  Head& head_;
  const Cache& cache_;
  TrainOptions opt_;
  AdamW<P> optim_;
  BatchSampler sampler_;
  std::int64_t step_ = 0;
};

}  // namespace lmembed::train
