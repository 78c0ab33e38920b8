// lmembed/train/optim.hpp - AdamW, the learning-rate schedule and gradient-norm clipping.
//
// Written to follow PyTorch's torch.optim.AdamW, get_linear_schedule_with_warmup and
// torch.nn.utils.clip_grad_norm_ operation for operation, so that a run here and the same run in
// PyTorch agree to rounding (tests/train checks it) and the paper's hyper-parameters carry over.
// Templated on the parameter type (nn::Param<T>: name, value, grad, decay).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::train {

/// Hyper-parameters of AdamW (PyTorch's defaults except weight_decay, which is HF Trainer's).
struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< decoupled; never applied to parameters with decay == false
};

/// AdamW with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW (amsgrad off).
template <class P>
class AdamW {
 public:
  using Scalar = typename decltype(P::value)::Scalar;

  AdamW(std::vector<P*> params, AdamWOptions opt = {}) : params_(std::move(params)), opt_(opt) {
    for (P* p : params_) {
      m_.push_back(MatrixX<Scalar>::Zero(p->value.rows(), p->value.cols()));
      v_.push_back(MatrixX<Scalar>::Zero(p->value.rows(), p->value.cols()));
    }
  }

  /// One update with learning rate lr, from the gradients now in the parameters.
  void step(double lr) {
    ++t_;
    const Scalar b1 = Scalar(opt_.beta1), b2 = Scalar(opt_.beta2);
    const double bc1 = 1.0 - std::pow(opt_.beta1, double(t_));
    const double bc2 = 1.0 - std::pow(opt_.beta2, double(t_));
    const Scalar step_size = Scalar(lr / bc1);
    const Scalar bc2_sqrt = Scalar(std::sqrt(bc2));
    const Scalar eps = Scalar(opt_.eps);
    for (std::size_t k = 0; k < params_.size(); ++k) {
      P& p = *params_[k];
      if (p.grad.rows() != p.value.rows() || p.grad.cols() != p.value.cols())
        throw shape_error("AdamW: parameter '" + p.name + "' has value [" +
                          std::to_string(p.value.rows()) + ", " + std::to_string(p.value.cols()) +
                          "] but grad [" + std::to_string(p.grad.rows()) + ", " +
                          std::to_string(p.grad.cols()) + "]");
      if (p.decay && opt_.weight_decay != 0.0) p.value *= Scalar(1.0 - lr * opt_.weight_decay);
      auto m = m_[k].array();
      auto v = v_[k].array();
      const auto g = p.grad.array();
      m = b1 * m + (Scalar(1) - b1) * g;
      v = b2 * v + (Scalar(1) - b2) * g * g;
      p.value.array() -= step_size * m / (v.sqrt() / bc2_sqrt + eps);
    }
  }

  /// Number of steps taken.
  std::int64_t steps() const { return t_; }
  const std::vector<P*>& parameters() const { return params_; }

  /// State for a checkpoint: "adamw.m.<name>" and "adamw.v.<name>" -> matrix.
  std::map<std::string, MatrixX<Scalar>> state() const {
    std::map<std::string, MatrixX<Scalar>> s;
    for (std::size_t k = 0; k < params_.size(); ++k) {
      s["adamw.m." + params_[k]->name] = m_[k];
      s["adamw.v." + params_[k]->name] = v_[k];
    }
    return s;
  }
  /// Restores state(); `steps` is the step count saved with it. config_error on a missing or
  /// mis-shaped entry.
  void load_state(const std::map<std::string, MatrixX<Scalar>>& s, std::int64_t steps) {
    for (std::size_t k = 0; k < params_.size(); ++k) {
      for (auto* dst : {&m_[k], &v_[k]}) {
        const std::string key = (dst == &m_[k] ? "adamw.m." : "adamw.v.") + params_[k]->name;
        auto it = s.find(key);
        if (it == s.end()) throw config_error("AdamW state: missing key '" + key + "'");
        if (it->second.rows() != dst->rows() || it->second.cols() != dst->cols())
          throw shape_error("AdamW state '" + key + "' is [" + std::to_string(it->second.rows()) +
                            ", " + std::to_string(it->second.cols()) + "], parameter is [" +
                            std::to_string(dst->rows()) + ", " + std::to_string(dst->cols()) + "]");
        *dst = it->second;
      }
    }
    t_ = steps;
  }

 private:
  std::vector<P*> params_;
  AdamWOptions opt_;
  std::vector<MatrixX<Scalar>> m_, v_;
  std::int64_t t_ = 0;
};

/// Linear warmup then linear decay to zero, as Hugging Face's get_linear_schedule_with_warmup:
/// the learning rate of optimizer step `step` (0-based) is
///   base * step / warmup                              while step < warmup,
///   base * max(0, (total - step) / (total - warmup))  after.
/// (So with warmup > 0 the very first step has rate 0, exactly as in HF's Trainer.)
inline double linear_schedule(double base, std::int64_t step, std::int64_t warmup,
                              std::int64_t total) {
  if (step < warmup) return base * double(step) / double(std::max<std::int64_t>(1, warmup));
  const double rest = double(total - step) / double(std::max<std::int64_t>(1, total - warmup));
  return base * std::max(0.0, rest);
}

/// Scales all gradients so that their global L2 norm is at most max_norm, as
/// torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), applied when < 1).
/// Returns the norm before clipping. max_norm <= 0 only measures.
template <class P>
double clip_grad_norm(const std::vector<P*>& params, double max_norm) {
  double sq = 0;
  for (const P* p : params) {
    const double n = double(p->grad.norm());
    sq += n * n;
  }
  const double norm = std::sqrt(sq);
  if (max_norm > 0) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
      for (P* p : params) p->grad *= static_cast<typename decltype(P::grad)::Scalar>(coef);
  }
  return norm;
}

}  // namespace lmembed::train
