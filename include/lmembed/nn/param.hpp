// lmembed/nn/param.hpp - trainable parameters: value + gradient + stable dotted name.
//
// Modules own their Param objects and hand out pointers (a ParamList) in a fixed order, so
// optimizers, checkpoints and safetensors files address parameters by name, the way a PyTorch
// state dict does. No tape: every module has an explicit backward that accumulates into grad.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::nn {

/// One trainable tensor. 1-D parameters (biases, norm weights) are stored as 1 x n matrices and
/// keep their true shape {n} in `shape` (the shape written to files).
template <class T>
struct Param {
  std::string name;   ///< stable dotted name, e.g. "cross_attend_blocks.0.fn.to_q.weight"
  Shape shape;        ///< outermost-first, as in a PyTorch state dict
  MatrixX<T> value;   ///< rows x cols view of `shape` (1-D: 1 x n)
  MatrixX<T> grad;    ///< same size as value; backward passes accumulate into it
  bool decay = true;  ///< weight decay applies (false for biases, norms, latents' norms)

  Param() = default;
  /// Zero-initialized parameter of the given shape (1-D or 2-D).
  Param(std::string name_, Shape shape_, bool decay_ = true)
      : name(std::move(name_)), shape(std::move(shape_)), decay(decay_) {
    if (shape.empty() || shape.size() > 2)
      throw shape_error("Param " + name + ": only 1-D and 2-D parameters, got " + to_string(shape));
    const std::int64_t r = shape.size() == 1 ? 1 : shape[0];
    const std::int64_t c = shape.back();
    value.setZero(r, c);
    grad.setZero(r, c);
  }

  /// Number of scalars.
  std::int64_t numel() const noexcept { return value.size(); }
  /// Sets grad to zero (keeps its allocation).
  void zero_grad() { grad.setZero(value.rows(), value.cols()); }
};

/// The parameters of a module, in its fixed order.
template <class T>
using ParamList = std::vector<Param<T>*>;

/// Zeroes every gradient of a list.
template <class T>
void zero_grad(const ParamList<T>& params) {
  for (Param<T>* p : params) p->zero_grad();
}

/// Total number of scalars of a list.
template <class T>
std::int64_t count_params(const ParamList<T>& params) {
  std::int64_t n = 0;
  for (const Param<T>* p : params) n += p->numel();
  return n;
}

/// The parameter called `name`, or nullptr.
template <class T>
Param<T>* find_param(const ParamList<T>& params, std::string_view name) {
  for (Param<T>* p : params)
    if (p->name == name) return p;
  return nullptr;
}

}  // namespace lmembed::nn
