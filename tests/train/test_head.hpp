// A small trainable head for trainer tests (independent of the pooling engineer's heads):
// y = (mean over layers of x) W^T + b, consuming all_layers.last_token.
#pragma once

#include <map>
#include <string>

#include "lmembed/core/batch.hpp"
#include "lmembed/nn/param.hpp"
#include "lmembed/train/random.hpp"

namespace lmembed_test {

template <class T>
class TestHead {
 public:
  struct Context {
    lmembed::MatrixX<T> xm;
  };
  TestHead(std::int64_t d, std::int64_t L, std::int64_t out)
      : d_(d), L_(L), w_("w", {out, d}), b_("b", {out}, false) {}

  const char* name() const { return "test_linear"; }
  lmembed::CaptureSpec capture() const {
    return {lmembed::CaptureLayers::all, lmembed::CaptureTokens::last};
  }
  void init(std::uint64_t seed) {
    lmembed::train::Rng r(seed);
    for (Eigen::Index i = 0; i < w_.value.size(); ++i)
      w_.value.data()[i] = T(double(r.below(2001)) / 1000.0 - 1.0) / T(std::sqrt(double(d_)));
    b_.value.setZero();
  }
  lmembed::MatrixX<T> forward(const lmembed::CapturedT<T>& in, Context& ctx) const {
    ctx.xm.resize(in.n_seq, d_);
    for (std::int64_t s = 0; s < in.n_seq; ++s)
      ctx.xm.row(s) = in.states.middleRows(s * L_, L_).colwise().mean();
    lmembed::MatrixX<T> y = ctx.xm * w_.value.transpose();
    y.rowwise() += b_.value.row(0);
    return y;
  }
  lmembed::MatrixX<T> forward(const lmembed::CapturedT<T>& in) const {
    Context c;
    return forward(in, c);
  }
  lmembed::MatrixX<T> backward(const lmembed::MatrixX<T>& dy, const Context& ctx) {
    w_.grad += dy.transpose() * ctx.xm;
    b_.grad += dy.colwise().sum();
    return {};
  }
  lmembed::nn::ParamList<T> parameters() { return {&w_, &b_}; }
  void zero_grad() {
    w_.zero_grad();
    b_.zero_grad();
  }
  std::map<std::string, std::string> metadata() const {
    return {{"pooling", name()}, {"d", std::to_string(d_)}};
  }

 private:
  std::int64_t d_, L_;
  lmembed::nn::Param<T> w_, b_;
};

}  // namespace lmembed_test
