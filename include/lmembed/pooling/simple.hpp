// lmembed/pooling/simple.hpp - the parameter-free poolings: eos and mean.
//
// Both accept what their policy captures (the backbone already took the last token or the
// mean) and also an all-token last-layer capture, so a cache of all tokens can feed them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/nn/reduce.hpp"
#include "lmembed/pooling/common.hpp"
#include "lmembed/pooling/policy.hpp"

namespace lmembed::pooling {

/// eos pooling: the last token of each text's last layer, [n_seq, d].
template <class T>
MatrixX<T> eos_forward(const CapturedT<T>& in) {
  in.check();
  if (in.spec == eos::capture) return in.states;
  if (in.spec == CaptureSpec{CaptureLayers::last, CaptureTokens::all}) {
    MatrixX<T> y(in.n_seq, in.d);
    for (std::int64_t s = 0; s < in.n_seq; ++s) {
      if (in.offsets[s + 1] <= in.offsets[s])
        throw input_error("eos pooling: sequence " + std::to_string(s) + " is empty");
      y.row(s) = in.states.row(in.offsets[s + 1] - 1);
    }
    return y;
  }
  throw shape_error("eos pooling: input captured as " + to_string(in.spec) + ", needs " +
                    to_string(eos::capture) + " or last_layer.all_tokens");
}

/// mean pooling: the mean of each text's last layer over tokens [pool_from, end), [n_seq, d].
template <class T>
MatrixX<T> mean_forward(const CapturedT<T>& in) {
  in.check();
  if (in.spec == mean::capture) return in.states;
  if (in.spec == CaptureSpec{CaptureLayers::last, CaptureTokens::all}) {
    MatrixX<T> rows;
    std::vector<std::int64_t> seg, src;
    detail::gather_pooled_tokens(in, rows, seg, src, "mean pooling");
    MatrixX<T> y;
    nn::segment_mean_forward(rows, seg, y);
    return y;
  }
  throw shape_error("mean pooling: input captured as " + to_string(in.spec) + ", needs " +
                    to_string(mean::capture) + " or last_layer.all_tokens");
}

/// The indices of the sequences of `batch` whose last token is not `eos_id` (eos pooling then
/// pools some other token; peers do so silently, the Encoder reports it).
inline std::vector<std::size_t> sequences_without_eos(const TokenBatch& batch,
                                                      std::int32_t eos_id) {
  std::vector<std::size_t> bad;
  for (std::size_t s = 0; s < batch.size(); ++s)
    if (batch.length(s) == 0 || batch.sequence(s).back() != eos_id) bad.push_back(s);
  return bad;
}

}  // namespace lmembed::pooling
