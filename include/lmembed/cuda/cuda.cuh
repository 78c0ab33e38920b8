// lmembed/cuda/cuda.cuh - everything of the CUDA backend (include from a .cu file, compile
// with nvcc, link lmembed::cuda). See docs/cuda.md.
#pragma once

#include "lmembed/cuda/attention.cuh"
#include "lmembed/cuda/backbone.cuh"
#include "lmembed/cuda/encoder.cuh"
#include "lmembed/cuda/gemm.cuh"
#include "lmembed/cuda/kernels.cuh"
#include "lmembed/cuda/loss.cuh"
#include "lmembed/cuda/math.cuh"
#include "lmembed/cuda/optim.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/retrieval.cuh"
#include "lmembed/cuda/runtime.cuh"
#include "lmembed/cuda/stream.cuh"
