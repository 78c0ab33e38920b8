// `lmembed train`: train a pooling head over a cache made by `lmembed cache`
// (InfoNCE with in-batch and hard negatives, GradCache, AdamW, crash-safe checkpoints).
// The command itself (options, head, loop, files) is train_command.hpp, shared with the GPU:
// `--device cpu` (default) trains with train::DistributedTrainer (exactly train::Trainer in one
// process; data-parallel under mpirun), `--device cuda` hands the arguments to the hook that
// cuda_train.cu fills when the tool is built with the CUDA backend (device.hpp).
#include <iostream>
#include <string>
#include <type_traits>

#include "cli.hpp"
#include "device.hpp"
#include "lmembed/train/distributed.hpp"
#include "train_command.hpp"

namespace {

namespace train = lmembed::train;
namespace tc = lmembed::cli::train_command;
using lmembed::cli::Device;

void add_options(CLI::App& app, tc::Options& o) {
  namespace cli = lmembed::cli;
  app.description(
      "Trains the pooling head on the cached states with InfoNCE (cosine x scale, every\n"
      "positive of the batch and every hard negative), AdamW, linear warmup then decay.\n"
      "Writes the head to --out and loss.csv beside it; needs --cache, --pooling and --out.\n"
      "--steps 0 writes the initialized, untrained head (seeded by --seed and --init-seed): a\n"
      "baseline to evaluate against.");
  app.footer(
      "--chunk: larger batches are embedded and back-propagated chunk by chunk (GradCache);\n"
      "every query still sees every candidate. The same seed and thread count give\n"
      "bitwise-identical runs. --device cuda trains on the GPU with the same batches, loss,\n"
      "optimizer and checkpoint files as on the CPU (a run resumes on either device).");
  cli::option(app, "--cache DIR", o.cache, "the cache (lmembed cache)");
  cli::option(app, "--pooling P", o.pooling,
              "latent | multi_layer | multi_layer_mean | multi_layer_tokens | multi_layer_eos");
  cli::option(app, "--out HEAD.safetensors", o.out, "the trained head");
  cli::option(app, "--steps N", o.steps, "optimizer steps (default 100)");
  cli::option(app, "--batch B", o.batch, "examples per step (default 32)");
  cli::option(app, "--lr LR", o.lr, "peak learning rate (default 1e-4)");
  cli::option(app, "--warmup W", o.warmup, "linear warmup steps (default 0)");
  cli::option(app, "--seed S", o.seed, "batches and head initialization (default 42)");
  cli::option(app, "--init-seed S", o.init_seed,
              "mixed into the head's initialization (default 0)");
  cli::option(app, "--latents N", o.latents, "latents of the head (default: the head's own)");
  cli::option(app, "--heads N", o.heads, "attention heads of the head (default: the head's own)");
  cli::option(app, "--head-dim N", o.head_dim, "width of an attention head (default: d / heads)");
  cli::option(app, "--ff-mult N", o.ff_mult, "MLP width multiplier (default: the head's own)");
  cli::option(app, "--weight-decay WD", o.weight_decay, "AdamW weight decay (default 0)");
  cli::option(app, "--clip C", o.clip, "gradient-norm clipping (default 1)");
  cli::option(app, "--scale S", o.scale, "cosine scale, 1 / temperature (default 20)");
  cli::flag(app, "--symmetric", o.symmetric, "also the loss of the positives against the queries");
  cli::flag(app, "--no-hard-negatives", o.no_hard_negatives, "in-batch negatives only");
  cli::option(app, "--max-negatives K", o.max_negatives, "hard negatives per example (default 1)");
  cli::option(app, "--chunk N", o.chunk, "texts per head pass (default 256; GradCache)");
  cli::option(app, "--threads N", o.threads, "threads (default: all)");
  cli::option(app, "--checkpoint-every N", o.checkpoint_every,
              "checkpoint every N steps (default steps/10)");
  cli::option(app, "--checkpoint-dir DIR", o.checkpoint_dir,
              "where checkpoints go (default OUT_STEM.ckpt beside --out)");
  cli::option(app, "--resume DIR", o.resume, "continue from the checkpoint in DIR");
  cli::option(app, "--device D", o.device, "cpu (default) or cuda: train on the GPU");
}

int run_train(const tc::Options& options) {
  if (tc::device_of(options) == Device::cuda) {
    auto& hooks = lmembed::cli::device_hooks();
    if (!hooks.train)
      throw lmembed::config_error(
          "--device cuda: this lmembed was built without CUDA (configure with -DLMEMBED_CUDA=ON)");
    lmembed::cli::require_device(Device::cuda);
    if (train::world().size() > 1)
      throw lmembed::config_error(
          "--device cuda trains on one GPU in one process: run it without mpirun");
    return hooks.train(options);
  }
  return tc::run(options, [](auto& head, const train::Cache& cache, const train::TrainOptions& opt,
                             const tc::Options& a) {
    // Under mpirun each rank trains on its slice of every global batch with the full negative
    // pool (docs/distributed.md); in one process this is exactly train::Trainer.
    using Head = std::remove_reference_t<decltype(head)>;
    train::Communicator& comm = train::world();
    train::DistributedTrainer<Head> trainer(head, cache, opt, comm);
    return tc::train_loop(trainer, head, opt, a, comm.rank() == 0);
  });
}

/// Under mpirun a failing rank must take the job down, or the others wait in a collective.
int run_train_any_rank(const tc::Options& options) {
  try {
    return run_train(options);
  } catch (const std::exception& e) {
    if (train::world().size() > 1) {
      std::cerr << "lmembed train: rank " << train::world().rank() << ": error: " << e.what()
                << "\n";
      train::world().abort(1);
    }
    throw;
  }
}

const lmembed::cli::Register<tc::Options> reg{
    "train", "Train a pooling head on a cache (InfoNCE, AdamW)", &add_options, &run_train_any_rank};

}  // namespace
