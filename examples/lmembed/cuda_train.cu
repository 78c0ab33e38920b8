// `lmembed train --device cuda`: fills device.hpp's `train` hook with the CUDA trainer
// (compiled by nvcc, only when the lmembed::cuda target exists; see CMakeLists.txt). The command
// is train_command.hpp's, as on the CPU; only the trainer differs: cuda::DeviceTrainer (the
// head, InfoNCE, clipping and AdamW on the GPU; same batches, loss.csv and checkpoint files, so a
// run resumes on either device; docs/cuda.md).
#include <iostream>
#include <string>
#include <type_traits>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>

#include "device.hpp"
#include "train_command.hpp"

#include "lmembed/cuda/device_ops.cuh"

namespace {

namespace tc = lmembed::cli::train_command;

int train_on_gpu(const tc::Options& options) {
  return tc::run(options, [](auto& head, const lmembed::train::Cache& cache,
                             const lmembed::train::TrainOptions& opt, const tc::Options& a) {
    using Head = std::remove_reference_t<decltype(head)>;
    lmembed::cuda::DeviceOps ops;
    lmembed::cuda::DeviceTrainer<Head> trainer(ops, head, cache, opt);
    std::cerr << "lmembed train: training the " << head.name() << " head on the GPU\n";
    return tc::train_loop(trainer, head, opt, a, true);
  });
}

[[maybe_unused]] const bool filled = [] {
  lmembed::cli::device_hooks().train = &train_on_gpu;
  return true;
}();

}  // namespace
