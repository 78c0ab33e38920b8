// lmembed/pooling/common.hpp - helpers the pooling heads share: input checks and row gathering.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"

namespace lmembed::pooling::detail {

/// Throws shape_error unless `in` holds what `want` asks for, with width d.
template <class T>
void check_input(const CapturedT<T>& in, CaptureSpec want, std::int64_t d, const char* who) {
  if (in.spec != want)
    throw shape_error(std::string(who) + ": input captured as " + to_string(in.spec) +
                      ", this pooling needs " + to_string(want));
  if (in.d != d)
    throw shape_error(std::string(who) + ": input width " + std::to_string(in.d) +
                      " does not match the head's d = " + std::to_string(d));
  in.check();
}

/// For all-token captures: the token rows [offset + pool_from, end) of every sequence, gathered
/// into `rows` (packed) with per-sequence offsets `seg` into them. `src` lists each gathered
/// row's index in in.states (for scattering gradients back). input_error if a sequence has
/// no token left after pool_from.
template <class T>
void gather_pooled_tokens(const CapturedT<T>& in, MatrixX<T>& rows, std::vector<std::int64_t>& seg,
                          std::vector<std::int64_t>& src, const char* who) {
  const std::int64_t n = in.n_seq;
  if (static_cast<std::int64_t>(in.offsets.size()) != n + 1)
    throw shape_error(std::string(who) + ": " + std::to_string(in.offsets.size()) +
                      " offsets for " + std::to_string(n) + " sequences");
  if (!in.pool_from.empty() && static_cast<std::int64_t>(in.pool_from.size()) != n)
    throw shape_error(std::string(who) + ": " + std::to_string(in.pool_from.size()) +
                      " pool_from entries for " + std::to_string(n) + " sequences");
  seg.assign(1, 0);
  src.clear();
  for (std::int64_t s = 0; s < n; ++s) {
    const std::int64_t pf = in.pool_from.empty() ? 0 : in.pool_from[s];
    const std::int64_t a = in.offsets[s] + pf, b = in.offsets[s + 1];
    if (pf < 0 || b <= a)
      throw input_error(std::string(who) + ": sequence " + std::to_string(s) + " has " +
                        std::to_string(in.offsets[s + 1] - in.offsets[s]) +
                        " tokens and pool_from " + std::to_string(pf) +
                        ", leaving no token to pool");
    for (std::int64_t t = a; t < b; ++t) src.push_back(t * in.n_layers + (in.n_layers - 1));
    seg.push_back(static_cast<std::int64_t>(src.size()));
  }
  rows.resize(static_cast<Eigen::Index>(src.size()), in.d);
  for (std::size_t i = 0; i < src.size(); ++i)
    rows.row(static_cast<Eigen::Index>(i)) = in.states.row(src[i]);
}

/// Parses a size from metadata, config_error naming the key when absent or malformed.
inline std::int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key,
                             const std::string& file) {
  auto it = m.find(key);
  if (it == m.end())
    throw config_error(file + ": __metadata__ has no '" + key + "' (not an lmembed head?)");
  try {
    std::size_t pos = 0;
    long long v = std::stoll(it->second, &pos);
    if (pos != it->second.size() || v < 0) throw std::invalid_argument("bad");
    return v;
  } catch (const std::exception&) {
    throw config_error(file + ": __metadata__ '" + key + "' = '" + it->second +
                       "' is not a non-negative integer");
  }
}

}  // namespace lmembed::pooling::detail
