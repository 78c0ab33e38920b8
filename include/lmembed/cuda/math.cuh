// lmembed/cuda/math.cuh - the scalar math the CUDA kernels run, written once for host and device.
//
// Every formula a kernel applies per element (RoPE pair rotation, SiLU/GELU, the online-softmax
// update, the AdamW step, the top-k order) lives here as an LMEMBED_HD function. The kernels call
// these, and the CPU tests call the very same functions, so the math a GPU would run is checked
// on machines without one. This header needs no CUDA headers: a plain C++ compiler includes it.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
/// Marks a function callable from host and device code (empty for plain C++ compilers).
#define LMEMBED_HD __host__ __device__ __forceinline__
#else
#define LMEMBED_HD inline
#endif

namespace lmembed::cuda {

/// How rotary embedding pairs the dimensions of one head.
enum class RopeForm : std::uint8_t {
  interleaved,  ///< pairs (2i, 2i+1): llama.cpp's NORM mode, GGUF llama weights
  rotate_half,  ///< pairs (i, i + head_dim/2): NEOX mode, Hugging Face's rotate_half, qwen2
};

/// The two dimensions (within one head) that rotary pair `i` (0 <= i < head_dim/2) rotates.
struct RopePair {
  int a, b;
};

/// Dimensions of rotary pair i for the given form.
LMEMBED_HD RopePair rope_pair(RopeForm form, int i, int head_dim) {
  return form == RopeForm::interleaved ? RopePair{2 * i, 2 * i + 1} : RopePair{i, i + head_dim / 2};
}

/// Inverse frequency theta^(-2i/head_dim) of pair i, computed in double on the host; the device
/// receives the table (so host and device angles pos * inv_freq are bit-identical in float).
inline float rope_inv_freq(float theta, int i, int head_dim) {
  return static_cast<float>(
      1.0 / std::pow(static_cast<double>(theta), 2.0 * static_cast<double>(i) / head_dim));
}

/// Rotates (x_a, x_b) by angle with cos c and sin s: (x_a c - x_b s, x_a s + x_b c).
LMEMBED_HD void rope_rotate(float& xa, float& xb, float c, float s) {
  const float a = xa, b = xb;
  xa = a * c - b * s;
  xb = a * s + b * c;
}

/// SiLU(x) = x * sigmoid(x).
LMEMBED_HD float silu(float x) {
  return x / (1.0f + expf(-x));
}

/// d SiLU / dx = sigmoid(x) * (1 + x (1 - sigmoid(x))).
LMEMBED_HD float silu_grad(float x) {
  const float s = 1.0f / (1.0f + expf(-x));
  return s * (1.0f + x * (1.0f - s));
}

/// Exact (erf) GELU, PyTorch's default `gelu(approximate='none')`.
LMEMBED_HD float gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

/// d GELU / dx for the erf form: Phi(x) + x phi(x).
LMEMBED_HD float gelu_grad(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}

/// Running state of a softmax-weighted sum over a stream of scores (flash attention's online
/// softmax): m = max so far, l = sum of exp(score - m). The weighted values are kept by the
/// caller and rescaled by the factor that update()/merge() return.
struct OnlineSoftmax {
  float m = -INFINITY;
  float l = 0.0f;

  /// Takes the block maximum `block_max` of new scores; returns the factor exp(m_old - m_new)
  /// by which the caller must rescale l-weighted accumulators (0 when nothing was seen yet).
  LMEMBED_HD float rescale_to(float block_max) {
    const float m_new = block_max > m ? block_max : m;
    const float f = (m == -INFINITY) ? 0.0f : expf(m - m_new);
    l *= f;
    m = m_new;
    return f;
  }
  /// Weight of one score after rescale_to(); adds it to l.
  LMEMBED_HD float weight(float score) {
    const float p = (score == -INFINITY) ? 0.0f : expf(score - m);
    l += p;
    return p;
  }
  /// Final normalizer 1 / l (0 when no score was seen, so an empty row yields zeros).
  LMEMBED_HD float inv_sum() const { return l > 0.0f ? 1.0f / l : 0.0f; }
};

/// The coefficients of one AdamW step (decoupled weight decay, torch.optim.AdamW), derived in
/// double on the host exactly as PyTorch derives them from its Python floats, then rounded to
/// float once, so the float update below reproduces PyTorch's float32 results.
struct AdamWStep {
  float beta1 = 0.9f, beta2 = 0.999f;
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 0.001f;
  float eps = 1e-8f;
  float decay_factor = 1.0f;  ///< 1 - lr * weight_decay (applied to decayed parameters)
  float step_size = 1e-3f;    ///< lr / (1 - beta1^t)
  float sqrt_bc2 = 1.0f;      ///< sqrt(1 - beta2^t)
  float grad_scale = 1.0f;    ///< multiplies every gradient first (clipping factor)

  /// Coefficients of step t (1-based) for the given hyper-parameters.
  static AdamWStep make(double lr, double beta1, double beta2, double eps, double weight_decay,
                        std::int64_t t) {
    AdamWStep h;
    h.beta1 = static_cast<float>(beta1);
    h.beta2 = static_cast<float>(beta2);
    h.one_minus_beta1 = static_cast<float>(1.0 - beta1);
    h.one_minus_beta2 = static_cast<float>(1.0 - beta2);
    h.eps = static_cast<float>(eps);
    h.decay_factor = static_cast<float>(1.0 - lr * weight_decay);
    h.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, static_cast<double>(t))));
    h.sqrt_bc2 = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t))));
    return h;
  }
};

/// One AdamW update of one parameter element, in PyTorch's order: decay, moments, step.
LMEMBED_HD void adamw_update(float& p, float g, float& m, float& v, const AdamWStep& h,
                             bool decay) {
  g *= h.grad_scale;
  if (decay) p *= h.decay_factor;
  m = h.beta1 * m + h.one_minus_beta1 * g;
  v = h.beta2 * v + h.one_minus_beta2 * g * g;
  const float denom = sqrtf(v) / h.sqrt_bc2 + h.eps;
  p -= h.step_size * (m / denom);
}

/// Order of retrieval hits: higher score first, then lower document index (so ties break the
/// same way on CPU and GPU).
LMEMBED_HD bool ranks_before(float score_a, std::int32_t index_a, float score_b,
                             std::int32_t index_b) {
  return score_a > score_b || (score_a == score_b && index_a < index_b);
}

}  // namespace lmembed::cuda
