// lmembed/cuda/optim.cuh - the optimizer on the device: flat parameter arena, gradient norm and
// clipping without a host round trip, and one fused AdamW kernel for every parameter.
//
// Parameters, gradients and both moments each live in one flat device array, laid out by
// plan_params() with every weight-decayed parameter first, so one kernel updates all of them
// and knows an element's decay flag from its index alone (i < n_decay). The clipping
// coefficient is computed on the device and read by the AdamW kernel from device memory, so a
// training step never waits for the host. Reductions are two-stage with a fixed grid (partial
// sums per block, then one block in a fixed order): the same inputs give the same norm, bit for
// bit, run after run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <string>
#include <vector>

#include "lmembed/cuda/math.cuh"
#include "lmembed/cuda/plan.cuh"
#include "lmembed/cuda/runtime.cuh"

namespace lmembed::cuda {

/// Blocks of the first reduction stage (fixed, so results do not depend on the input size).
inline constexpr int norm_blocks = 512;
/// Threads per block of the optimizer kernels.
inline constexpr int optim_block = 256;

namespace kernels {

/// partial[b] = sum over this block's grid-stride share of x[i]^2 (in double).
template <int Block>
__global__ void sum_squares_partial(const float* x, std::int64_t n, double* partial) {
  using Reduce = cub::BlockReduce<double, Block>;
  __shared__ typename Reduce::TempStorage tmp;
  double s = 0.0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(Block) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * Block)
    s += static_cast<double>(x[i]) * x[i];
  const double t = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = t;
}

/// out[0] = norm = sqrt(sum of partials); out[1] = clip coefficient as
/// torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6) when that is < 1, else 1
/// (max_norm <= 0: 1, measure only).
template <int Block>
__global__ void finish_norm(const double* partial, int n_partial, float max_norm, float* out) {
  using Reduce = cub::BlockReduce<double, Block>;
  __shared__ typename Reduce::TempStorage tmp;
  double s = 0.0;
  for (int i = threadIdx.x; i < n_partial; i += Block) s += partial[i];
  const double total = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) {
    const double norm = sqrt(total);
    double coef = 1.0;
    if (max_norm > 0.0f) {
      const double c = static_cast<double>(max_norm) / (norm + 1e-6);
      if (c < 1.0) coef = c;
    }
    out[0] = static_cast<float>(norm);
    out[1] = static_cast<float>(coef);
  }
}

/// One AdamW step over the whole arena; elements [0, n_decay) are weight-decayed. The gradient
/// scale is h.grad_scale times *grad_scale (the device-side clip coefficient) when given.
LMEMBED_KERNEL void adamw(float* p, const float* g, float* m, float* v, std::int64_t n,
                      std::int64_t n_decay, AdamWStep h, const float* grad_scale) {
  if (grad_scale) h.grad_scale *= *grad_scale;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_update(pi, g[i], mi, vi, h, i < n_decay);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace kernels

/// Scratch bytes launch_grad_norm() needs (CUB two-call style: size first, then run).
inline std::size_t norm_scratch_bytes() {
  return norm_blocks * sizeof(double);
}

/// Computes the gradient norm of g[0, n) and the clip coefficient into out[0], out[1] (device
/// floats), all on stream s; `scratch` holds norm_scratch_bytes().
inline void launch_grad_norm(const float* g, std::int64_t n, float max_norm, void* scratch,
                             float* out, cudaStream_t s) {
  auto* partial = static_cast<double*>(scratch);
  kernels::sum_squares_partial<optim_block><<<norm_blocks, optim_block, 0, s>>>(g, n, partial);
  LMEMBED_CUDA_CHECK_LAUNCH("sum_squares_partial");
  kernels::finish_norm<optim_block><<<1, optim_block, 0, s>>>(partial, norm_blocks, max_norm, out);
  LMEMBED_CUDA_CHECK_LAUNCH("finish_norm");
}

/// One fused AdamW step over the arena (grad_scale: device pointer to the clip coefficient, or
/// null).
inline void launch_adamw(float* p, const float* g, float* m, float* v, const ParamPlan& plan,
                         const AdamWStep& h, const float* grad_scale, cudaStream_t s) {
  if (plan.n == 0) return;
  const std::int64_t blocks = std::min<std::int64_t>(ceil_div(plan.n, optim_block), 65535);
  kernels::adamw<<<static_cast<unsigned>(blocks), optim_block, 0, s>>>(p, g, m, v, plan.n,
                                                                       plan.n_decay, h, grad_scale);
  LMEMBED_CUDA_CHECK_LAUNCH("adamw");
}

}  // namespace lmembed::cuda
