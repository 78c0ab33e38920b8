// lmembed/train/distributed.hpp - data-parallel head training over a Communicator (MPI today).
//
// Every rank holds the whole (small) cache index and a replica of the head and its AdamW state.
// One step of the global batch (see docs/distributed.md for the gradient argument):
//   1. every rank draws the same global batch (same seed, same permutation and negative
//      sampling as train::Trainer) and lists its distinct texts, n of them;
//   2. rank r embeds its contiguous slice [n r / R, n (r + 1) / R) of those texts, `chunk` texts
//      at a time, keeping no activations (GradCache);
//   3. all-gather of the slices' embeddings: every rank has all n rows, so every query is scored
//      against the global pool of positives and hard negatives;
//   4. every rank computes the global InfoNCE loss and its gradient with respect to all n
//      embeddings (a small [n, d] computation, redundant on each rank) and keeps the rows of its
//      own slice: that is exactly d(global loss)/d(own embeddings), which a plain all-gather
//      (no gradient through the gathered copies) would get wrong;
//   5. rank r back-propagates its rows through the head chunk by chunk (GradCache's second pass)
//      and the head gradients are summed over ranks (one all-reduce of all parameters);
//   6. clipping, schedule and AdamW run identically on every rank, so the replicas stay
//      bit-identical (checked by a weights checksum every step in debug builds, on demand
//      otherwise).
// With a SingleProcess communicator this is train::Trainer's step, bit for bit; on R ranks it
// differs only by the order in which the all-reduce adds the ranks' partial gradients.
// Only rank 0 writes checkpoints (atomically, train::Trainer's format); every rank reads them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
#include "lmembed/io/safetensors.hpp"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/comm.hpp"
#include "lmembed/train/loss.hpp"
#include "lmembed/train/optim.hpp"
#include "lmembed/train/random.hpp"
#include "lmembed/train/trainer.hpp"
#include "lmembed/train/world.hpp"

namespace lmembed::train {

/// What one distributed step did, beyond StepStats.
struct DistributedStepStats : StepStats {
  std::int64_t local_texts = 0;  ///< texts this rank embedded
  std::int64_t comm_bytes = 0;   ///< payload bytes this rank's collectives moved this step
};

/// Data-parallel train::Trainer: same options, same results (see the header comment), the
/// global batch split over the ranks of `comm`. The head, cache and communicator must outlive it.
template <class Head>
class DistributedTrainer {
 public:
  using Scalar = float;
  using P =
      std::remove_pointer_t<typename decltype(std::declval<Head&>().parameters())::value_type>;

  DistributedTrainer(Head& head, const Cache& cache, TrainOptions opt, Communicator& comm)
      : head_(head),
        cache_(cache),
        opt_(opt),
        comm_(comm),
        optim_(head.parameters(), opt.adamw),
        sampler_(cache, opt) {
    check_training(head_, cache_, opt_);
    // Replicas start identical: rank 0's initial weights win.
    broadcast_weights();
  }

  std::int64_t step_count() const { return step_; }
  bool done() const { return step_ >= opt_.steps; }
  const TrainOptions& options() const { return opt_; }
  Communicator& comm() const { return comm_; }

  /// One optimizer step on the next global batch (a collective: every rank calls it).
  DistributedStepStats step() {
    if (done()) throw config_error("training is already complete");
    const std::int64_t bytes0 = comm_.stats().total();
    // 1. The global batch and its distinct texts (identical on every rank).
    const BatchPlan batch = sampler_.next();
    const std::vector<std::int64_t>& uniq = batch.texts;
    const std::int64_t n = std::int64_t(uniq.size());
    const std::int64_t R = comm_.size(), me = comm_.rank();
    std::vector<std::int64_t> counts(static_cast<std::size_t>(R));
    for (std::int64_t r = 0; r < R; ++r)
      counts[std::size_t(r)] = slice_begin(n, r + 1) - slice_begin(n, r);
    const std::int64_t lo = slice_begin(n, me), m = counts[std::size_t(me)];
    const std::span<const std::int64_t> mine =
        std::span<const std::int64_t>(uniq).subspan(std::size_t(lo), std::size_t(m));
    const std::int64_t chunk = opt_.chunk > 0 ? std::min(opt_.chunk, std::max<std::int64_t>(m, 1))
                                              : std::max<std::int64_t>(m, 1);
    const bool one_pass = chunk >= m;
    const std::int64_t D = head_.dim();

    // 2. Embed this rank's slice.
    head_.zero_grad();
    MatrixX<Scalar> local(m, D);
    typename Head::Context ctx;
    if (m > 0) {
      if (one_pass) {
        local = head_.forward(cache_.gather<Scalar>(mine), ctx);
      } else {
        for (std::int64_t b = 0; b < m; b += chunk) {
          const std::int64_t k = std::min(chunk, m - b);
          local.middleRows(b, k) =
              head_.forward(cache_.gather<Scalar>(mine.subspan(std::size_t(b), std::size_t(k))));
        }
      }
    }

    // 3. All-gather: rows are contiguous per rank in rank order, so the result is [n, D] in the
    //    order of `uniq` (row-major matrices: a rank's rows are one block of floats).
    std::vector<std::int64_t> fcounts(counts.size());
    for (std::size_t r = 0; r < counts.size(); ++r) fcounts[r] = counts[r] * D;
    const std::vector<Scalar> all = comm_.allgatherv<Scalar>(
        std::span<const Scalar>(local.data(), std::size_t(local.size())), fcounts);
    const MatrixX<Scalar> emb = Eigen::Map<const MatrixX<Scalar>>(all.data(), n, D);

    // 4. Global loss; gradient w.r.t. every embedding, of which this rank keeps its rows.
    const auto [loss, d_emb] = batch_loss(emb, batch, opt_.loss);

    // 5. Back-propagate this rank's rows, then sum the head gradients over ranks.
    if (m > 0) {
      if (one_pass) {
        head_.backward(MatrixX<Scalar>(d_emb.middleRows(lo, m)), ctx);
      } else {
        for (std::int64_t b = 0; b < m; b += chunk) {
          const std::int64_t k = std::min(chunk, m - b);
          typename Head::Context c;
          head_.forward(cache_.gather<Scalar>(mine.subspan(std::size_t(b), std::size_t(k))), c);
          head_.backward(MatrixX<Scalar>(d_emb.middleRows(lo + b, k)), c);
        }
      }
    }
    if (R > 1) allreduce_grads();

    // 6. Clip, schedule, update - identical on every rank.
    DistributedStepStats st;
    static_cast<StepStats&>(st) = optimizer_step(optim_, opt_, step_);
    st.loss = double(loss);
    st.texts = n;
    st.local_texts = m;
#ifndef NDEBUG
    verify_replicas();
#endif
    st.comm_bytes = comm_.stats().total() - bytes0;
    return st;
  }

  /// Checksum of the head's weights (bytes of every parameter, in order).
  std::uint64_t weights_checksum() const {
    std::vector<std::byte> bytes;
    for (const P* p : optim_.parameters()) {
      const auto* b = reinterpret_cast<const std::byte*>(p->value.data());
      bytes.insert(bytes.end(), b, b + p->value.size() * std::int64_t(sizeof(Scalar)));
    }
    return checksum64(bytes);
  }

  /// Collective: throws io_error on every rank when some rank's weights differ from rank 0's.
  void verify_replicas() {
    const auto sums = comm_.allgather_one<std::uint64_t>(weights_checksum());
    for (std::size_t r = 1; r < sums.size(); ++r)
      if (sums[r] != sums[0])
        throw io_error("distributed training: the weights of rank " + std::to_string(r) +
                       " differ from rank 0's after step " + std::to_string(step_) +
                       " (replicas diverged)");
  }

  /// Collective: rank 0 writes `dir`/checkpoint.safetensors atomically (train::Trainer's
  /// format and keys, so either trainer resumes it); the others wait until it is written.
  void save_checkpoint(const std::filesystem::path& dir) {
    if (comm_.rank() == 0) write_checkpoint(dir, optim_, identity(), sampler_.position(step_));
    comm_.barrier();
  }

  /// Every rank reads the checkpoint (config_error naming the first option that differs).
  void load_checkpoint(const std::filesystem::path& dir) {
    const TrainPosition pos = read_checkpoint(dir, optim_, identity());
    step_ = pos.step;
    sampler_.restore(pos);
    verify_replicas();
  }

 private:
  /// First text of rank r's slice of n texts (balanced: sizes differ by at most one).
  std::int64_t slice_begin(std::int64_t n, std::int64_t r) const {
    return n * r / std::int64_t(comm_.size());
  }

  /// Sums every parameter's gradient over ranks in one collective.
  void allreduce_grads() {
    std::int64_t total = 0;
    for (const P* p : optim_.parameters()) total += p->grad.size();
    grad_buf_.resize(std::size_t(total));
    std::int64_t off = 0;
    for (const P* p : optim_.parameters()) {
      std::memcpy(grad_buf_.data() + off, p->grad.data(),
                  std::size_t(p->grad.size()) * sizeof(Scalar));
      off += p->grad.size();
    }
    comm_.allreduce_sum<Scalar>(grad_buf_);
    off = 0;
    for (P* p : optim_.parameters()) {
      std::memcpy(p->grad.data(), grad_buf_.data() + off,
                  std::size_t(p->grad.size()) * sizeof(Scalar));
      off += p->grad.size();
    }
  }

  /// Rank 0's weights to every rank.
  void broadcast_weights() {
    if (comm_.size() == 1) return;
    for (P* p : optim_.parameters())
      comm_.broadcast<Scalar>(std::span<Scalar>(p->value.data(), std::size_t(p->value.size())));
    comm_.reset_stats();
  }

  /// What a checkpoint must agree on (the same keys as train::Trainer's).
  std::map<std::string, std::string> identity() const {
    return checkpoint_identity(head_, opt_, cache_);
  }

  Head& head_;
  const Cache& cache_;
  TrainOptions opt_;
  Communicator& comm_;
  AdamW<P> optim_;
  BatchSampler sampler_;  // train::Trainer's batch sequence, identical on every rank
  std::int64_t step_ = 0;
  std::vector<Scalar> grad_buf_;
};

}  // namespace lmembed::train
