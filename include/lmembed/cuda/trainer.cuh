// lmembed/cuda/trainer.cuh - train::Trainer's GradCache step over an ops executor: the head
// (heads.cuh), the InfoNCE loss, gradient-norm clipping and AdamW all run in the executor's
// memory; only the batch plan, the loss value and the norm travel to the host.
//
// One step, as train::Trainer (trainer.hpp) step for step:
//   1. the next batch of train::BatchSampler (the one batch sequence of every trainer);
//   2. every distinct text embedded chunk by chunk (cache chunks streamed to the executor:
//      DeviceOps overlaps the upload of chunk i + 1 with the work on chunk i through
//      cuda::stream_batches' pinned double buffers);
//   3. InfoNCE over the whole batch and its gradient w.r.t. every embedding (the per-text sum
//      of the query / positive / negative rows, in Trainer's order: deterministic, no atomics);
//   4. the chunks again, forward then backward (GradCache); one chunk: no recomputation;
//   5. gradient norm and torch's clip coefficient in executor memory, the fused AdamW step
//      reading the coefficient there, and the learning rate of train::linear_schedule.
// Checkpoints are train::write_checkpoint / read_checkpoint's checkpoint.safetensors (the AdamW
// moments pass through a host train::AdamW), so a CPU run resumes an executor checkpoint and
// vice versa.
// ExecTrainer<Head, HostOps> runs everywhere and is tested against train::Trainer on the CPU;
// cuda::DeviceTrainer<Head> (device_ops.cuh) is ExecTrainer<Head, DeviceOps>.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/cuda/heads.cuh"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/optim.hpp"
#include "lmembed/train/random.hpp"
#include "lmembed/train/trainer.hpp"

namespace lmembed::cuda {

/// Trains `Head` (pooling::LatentHead<float> or MultiLayerHead<float>) over a train::Cache with
/// train::Trainer's options and results, the work running on executor `Ops`. The parameters
/// live in the executor; sync_head() (or save_checkpoint) copies them back into the CPU head.
/// The ops, head and cache must outlive the trainer.
template <class Head, class Ops>
class ExecTrainer {
 public:
  template <class T>
  using Buf = typename Ops::template Buf<T>;

  ExecTrainer(Ops& ops, Head& head, const train::Cache& cache, train::TrainOptions opt)
      : ops_(ops), head_(head), cache_(cache), opt_(opt), eh_(ops, head), sampler_(cache, opt) {
    train::check_training(head_, cache_, opt_);
    const std::size_t n = std::size_t(std::max<std::int64_t>(eh_.plan().n, 1));
    m_.reserve(n);
    v_.reserve(n);
    ops_.zero(m_.data(), eh_.plan().n);
    ops_.zero(v_.data(), eh_.plan().n);
    stats_.reserve(4);
  }

  std::int64_t step_count() const { return step_; }
  bool done() const { return step_ >= opt_.steps; }
  const train::TrainOptions& options() const { return opt_; }
  /// The head in executor memory.
  ExecHead<Head, Ops>& exec_head() { return eh_; }

  /// One optimizer step on the next batch (train::Trainer::step's contract and results).
  train::StepStats step() {
    if (done()) throw config_error("training is already complete");
    // 1. The batch and its distinct texts (train::BatchSampler: train::Trainer's sequence).
    const train::BatchPlan batch = sampler_.next();
    const std::vector<std::int64_t>& uniq = batch.texts;
    const std::vector<std::int64_t>& qi = batch.queries;
    const std::vector<std::int64_t>& pi = batch.positives;
    const std::vector<std::int64_t>& ni = batch.negatives;
    const std::int64_t n = std::int64_t(uniq.size()), D = eh_.dims().d;
    const std::int64_t B = std::int64_t(qi.size()), N = std::int64_t(ni.size());
    const std::int64_t chunk = opt_.chunk > 0 ? std::min(opt_.chunk, n) : n;
    const std::int64_t n_chunks = (n + chunk - 1) / chunk;
    const bool one_pass = n_chunks == 1;

    // The loss plan: rows of [queries; positives; negatives] to gather, and for every distinct
    // text the rows of [d_queries; d_cand] to sum (queries, then positives, then negatives, as
    // train::Trainer adds them).
    std::vector<std::int64_t> take;
    take.insert(take.end(), qi.begin(), qi.end());
    take.insert(take.end(), pi.begin(), pi.end());
    take.insert(take.end(), ni.begin(), ni.end());
    std::vector<std::int64_t> sum_off(std::size_t(n + 1), 0), sum_idx(take.size());
    for (auto r : take) ++sum_off[std::size_t(r + 1)];
    for (std::int64_t r = 0; r < n; ++r) sum_off[std::size_t(r + 1)] += sum_off[std::size_t(r)];
    {
      std::vector<std::int64_t> fill(sum_off.begin(), sum_off.end() - 1);
      for (std::size_t j = 0; j < take.size(); ++j)
        sum_idx[std::size_t(fill[std::size_t(take[j])]++)] = std::int64_t(j);
    }
    emb_.reserve(std::size_t(n * D));
    demb_.reserve(std::size_t(n * D));
    qc_.reserve(std::size_t((2 * B + N) * D));
    dqc_.reserve(std::size_t((2 * B + N) * D));
    take_.reserve(take.size());
    sum_off_.reserve(sum_off.size());
    sum_idx_.reserve(sum_idx.size());
    ops_.upload(take_.data(), take.data(), take.size());
    ops_.upload(sum_off_.data(), sum_off.data(), sum_off.size());
    ops_.upload(sum_idx_.data(), sum_idx.data(), sum_idx.size());

    // The chunks' sizes (for the staging buffers) and their row offsets.
    const std::int64_t per = eh_.rows_per_text();
    std::size_t max_bytes = 0;
    for (std::int64_t b = 0; b < n; b += chunk) {
      std::int64_t rows = 0;
      for (std::int64_t i = b; i < std::min(n, b + chunk); ++i)
        rows += per ? per : cache_.text_items(uniq[std::size_t(i)]);
      max_bytes = std::max(max_bytes, std::size_t(rows * D) * sizeof(float));
    }
    std::vector<std::vector<std::int64_t>> offsets(static_cast<std::size_t>(n_chunks));

    // 2-4. Embed, loss, GradCache backward: 1 or 2 n_chunks batches streamed.
    eh_.zero_grad();
    auto chunk_ids = [&](std::int64_t c) {
      const std::int64_t b = c * chunk;
      return std::span<const std::int64_t>(uniq).subspan(std::size_t(b),
                                                         std::size_t(std::min(chunk, n - b)));
    };
    auto fill = [&](std::int64_t i, std::span<std::byte> dst) -> std::size_t {
      const std::int64_t c = i % n_chunks;
      const CapturedT<float> cap = cache_.gather<float>(chunk_ids(c));
      auto& off = offsets[std::size_t(c)];
      off.clear();
      if (per) {
        for (std::int64_t s = 0; s <= cap.n_seq; ++s) off.push_back(s * per);
      } else {
        off = cap.offsets;  // pooled tokens only (the cache stores no instruction tokens)
      }
      const std::size_t bytes = std::size_t(cap.states.size()) * sizeof(float);
      if (bytes > dst.size())
        throw shape_error("cuda trainer: chunk of " + std::to_string(bytes) + " bytes");
      std::memcpy(dst.data(), cap.states.data(), bytes);
      return bytes;
    };
    auto consume = [&](std::int64_t i, const std::byte* data, std::size_t bytes) {
      const std::int64_t c = i % n_chunks, b = c * chunk;
      ChunkInput in;
      in.rows = reinterpret_cast<const float*>(data);
      in.n_rows = std::int64_t(bytes / sizeof(float)) / D;
      in.offsets = offsets[std::size_t(c)];
      eh_.forward(in, ctx_, emb_.data() + b * D);
      if (i == n_chunks - 1) loss_and_gradient(n, B, N, D);
      if (one_pass) eh_.backward(demb_.data(), ctx_, nullptr);
      if (i >= n_chunks) eh_.backward(demb_.data() + b * D, ctx_, nullptr);
    };
    ops_.stream(one_pass ? 1 : 2 * n_chunks, max_bytes, fill, consume);

    // 5. Norm and clip coefficient, schedule, fused AdamW.
    train::StepStats st;
    ops_.grad_norm(eh_.grads(), eh_.plan().n, float(opt_.clip), stats_.data() + 1);
    st.lr = train::linear_schedule(opt_.lr, step_, opt_.warmup, opt_.steps);
    const AdamWStep h = AdamWStep::make(st.lr, opt_.adamw.beta1, opt_.adamw.beta2, opt_.adamw.eps,
                                        opt_.adamw.weight_decay, step_ + 1);
    ops_.adamw(eh_.values(), eh_.grads(), m_.data(), v_.data(), eh_.plan(), h, stats_.data() + 2);
    float host[3];
    ops_.download(host, stats_.data(), 3);
    ops_.sync();
    ++step_;
    st.step = step_;
    st.loss = double(host[0]);
    st.grad_norm = double(host[1]);
    st.texts = n;
    return st;
  }

  /// Copies the trained parameters into the CPU head (then head.save() writes the head file).
  void sync_head() { eh_.download_to(head_); }

  /// train::Trainer::save_checkpoint's file (train::write_checkpoint): `dir`/
  /// checkpoint.safetensors, atomically.
  void save_checkpoint(const std::filesystem::path& dir) {
    sync_head();
    train::AdamW<nn::Param<float>> carrier(head_.parameters(), opt_.adamw);
    carrier.load_state(download_moments(), step_);
    train::write_checkpoint(dir, carrier, train::checkpoint_identity(head_, opt_, cache_),
                            sampler_.position(step_));
  }

  /// Restores a checkpoint of train::Trainer (or DistributedTrainer, or this trainer) with the
  /// same head configuration, cache and options (train::read_checkpoint: config_error naming
  /// the first difference).
  void load_checkpoint(const std::filesystem::path& dir) {
    train::AdamW<nn::Param<float>> carrier(head_.parameters(), opt_.adamw);
    const train::TrainPosition pos =
        train::read_checkpoint(dir, carrier, train::checkpoint_identity(head_, opt_, cache_));
    eh_.upload_from(head_);
    const ParamPlan& plan = eh_.plan();
    const auto st = carrier.state();
    for (const ParamSlot& slot : plan.slots) {
      const Matrix& m = st.at("adamw.m." + slot.name);
      const Matrix& v = st.at("adamw.v." + slot.name);
      ops_.upload(m_.data() + slot.offset, m.data(), std::size_t(slot.numel));
      ops_.upload(v_.data() + slot.offset, v.data(), std::size_t(slot.numel));
    }
    ops_.sync();
    step_ = pos.step;
    sampler_.restore(pos);
  }

 private:
  /// Step 3: gathers [queries; positives; negatives] from the embeddings, InfoNCE, and the
  /// per-text gradient sums into demb_ (stats_[0] = loss).
  void loss_and_gradient(std::int64_t n, std::int64_t B, std::int64_t N, std::int64_t D) {
    ops_.gather_rows(emb_.data(), take_.data(), 2 * B + N, D, qc_.data());
    ops_.info_nce(qc_.data(), qc_.data() + B * D, B, N, D, float(opt_.loss.scale),
                  opt_.loss.symmetric, stats_.data(), dqc_.data(), dqc_.data() + B * D);
    ops_.sum_rows(dqc_.data(), sum_off_.data(), sum_idx_.data(), n, D, demb_.data());
  }

  /// The AdamW moments as train::AdamW::state() names them ("adamw.m.<name>", [rows, cols]).
  std::map<std::string, Matrix> download_moments() {
    std::map<std::string, Matrix> st;
    auto ps = head_.parameters();
    for (std::size_t k = 0; k < ps.size(); ++k) {
      const std::int64_t at = eh_.plan().slots[k].offset;
      Matrix m(ps[k]->value.rows(), ps[k]->value.cols()), v(m.rows(), m.cols());
      ops_.download(m.data(), m_.data() + at, std::size_t(m.size()));
      ops_.download(v.data(), v_.data() + at, std::size_t(v.size()));
      st["adamw.m." + ps[k]->name] = std::move(m);
      st["adamw.v." + ps[k]->name] = std::move(v);
    }
    ops_.sync();
    return st;
  }

  Ops& ops_;
  Head& head_;
  const train::Cache& cache_;
  train::TrainOptions opt_;
  ExecHead<Head, Ops> eh_;
  typename ExecHead<Head, Ops>::Context ctx_;
  Buf<float> m_, v_, emb_, demb_, qc_, dqc_, stats_;  ///< stats_: loss, norm, clip coefficient
  Buf<std::int64_t> take_, sum_off_, sum_idx_;
  train::BatchSampler sampler_;
  std::int64_t step_ = 0;
};

}  // namespace lmembed::cuda
