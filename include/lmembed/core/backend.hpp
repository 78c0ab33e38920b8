// lmembed/core/backend.hpp - backend policy tags: where buffers live and which kernels run.
//
// Model code is written once against these tags; Encoder<Attention, Pooling, Backend> picks
// one at compile time. The CUDA backend's kernels live in lmembed/cuda/*.cuh.
#pragma once

namespace lmembed::backend {

/// Eigen on the host CPU (OpenMP threads when available).
struct cpu {
  static constexpr const char* name = "cpu";
};

/// cuBLAS + custom kernels (lmembed/cuda/*.cuh; needs the lmembed::cuda target).
struct cuda {
  static constexpr const char* name = "cuda";
};

}  // namespace lmembed::backend
