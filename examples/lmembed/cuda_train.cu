// `lmembed train --device cuda`: fills device.hpp's `train` hook with the CUDA trainer
// (compiled by nvcc, only when the lmembed::cuda target exists; see CMakeLists.txt). The command
// is train_command.hpp's, as on the CPU; only the trainer differs: cuda::DeviceTrainer (the
// head, InfoNCE, clipping and AdamW on the GPU; same batches, loss.csv and checkpoint files, so a
// run resumes on either device; docs/cuda.md).
#include <iostream>
#include <span>
#include <string>
#include <type_traits>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>

#include "device.hpp"
#include "train_command.hpp"

// kernels.cuh, optim.cuh and retrieval.cuh define some non-template __global__ functions in
// headers; cuda_device.cu, linked into the same tool, includes them too, so their host stubs
// would be defined twice. Until those kernels get internal linkage (static) or become
// templates there, this TU gives its copies internal linkage (system headers above keep theirs).
#pragma push_macro("__global__")
#undef __global__
#define __global__ static __location__(global)
#include "lmembed/cuda/device_ops.cuh"
#pragma pop_macro("__global__")

namespace {

namespace tc = lmembed::cli::train_command;

int train_on_gpu(std::span<const std::string> argv) {
  return tc::run(argv, [](auto& head, const lmembed::train::Cache& cache,
                          const lmembed::train::TrainOptions& opt, const lmembed::cli::Args& a) {
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
