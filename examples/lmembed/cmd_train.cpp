// `lmembed train`: train a pooling head over a cache made by `lmembed cache`
// (InfoNCE with in-batch and hard negatives, GradCache, AdamW, crash-safe checkpoints).
// The command itself (options, head, loop, files) is train_command.hpp, shared with the GPU:
// `--device cpu` (default) trains with train::DistributedTrainer (exactly train::Trainer in one
// process; data-parallel under mpirun), `--device cuda` hands the arguments to the hook that
// cuda_train.cu fills when the tool is built with the CUDA backend (device.hpp).
#include <iostream>
#include <span>
#include <string>
#include <type_traits>

#include "command.hpp"
#include "device.hpp"
#include "lmembed/train/distributed.hpp"
#include "train_command.hpp"

namespace {

namespace train = lmembed::train;
namespace tc = lmembed::cli::train_command;
using lmembed::cli::Args;
using lmembed::cli::Device;

int run_train(std::span<const std::string> argv) {
  if (const Args a = tc::parse_args(argv); !a.help() && tc::device_of(a) == Device::cuda) {
    auto& hooks = lmembed::cli::device_hooks();
    if (!hooks.train)
      throw lmembed::config_error(
          "--device cuda: this lmembed was built without CUDA (configure with -DLMEMBED_CUDA=ON)");
    lmembed::cli::require_device(Device::cuda);
    if (train::world().size() > 1)
      throw lmembed::config_error(
          "--device cuda trains on one GPU in one process: run it without mpirun");
    return hooks.train(argv);
  }
  return tc::run(argv, [](auto& head, const train::Cache& cache, const train::TrainOptions& opt,
                          const Args& a) {
    // Under mpirun each rank trains on its slice of every global batch with the full negative
    // pool (docs/distributed.md); in one process this is exactly train::Trainer.
    using Head = std::remove_reference_t<decltype(head)>;
    train::Communicator& comm = train::world();
    train::DistributedTrainer<Head> trainer(head, cache, opt, comm);
    return tc::train_loop(trainer, head, opt, a, comm.rank() == 0);
  });
}

/// Under mpirun a failing rank must take the job down, or the others wait in a collective.
int run_train_any_rank(std::span<const std::string> argv) {
  try {
    return run_train(argv);
  } catch (const std::exception& e) {
    if (train::world().size() > 1) {
      std::cerr << "lmembed train: rank " << train::world().rank() << ": error: " << e.what()
                << "\n";
      train::world().abort(1);
    }
    throw;
  }
}

const lmembed::cli::Register reg{"train", "Train a pooling head on a cache (InfoNCE, AdamW)",
                                 &run_train_any_rank};

}  // namespace
