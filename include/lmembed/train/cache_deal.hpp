// lmembed/train/cache_deal.hpp - a cache built by several ranks: the deal of the shards to
// build (deal_shards), each rank's progress file, and rank 0's checks seen by every rank.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/train/comm.hpp"

namespace lmembed::train {

namespace detail {

inline std::string progress_name(int rank) {
  return "progress-" + std::to_string(rank) + ".json";
}

inline bool is_progress_file(const std::string& f) {
  return f.size() > 14 && f.rfind("progress-", 0) == 0 && f.ends_with(".json");
}

/// Deals the shards still to build to `ranks` ranks: largest token count first, each to the
/// least loaded rank (ties: the lower shard index, the lower rank). Same answer on every rank.
inline std::vector<int> deal_shards(const std::vector<std::int64_t>& tokens,
                                    const std::vector<char>& pending, int ranks) {
  std::vector<int> owner(tokens.size(), -1);
  std::vector<std::size_t> order;
  for (std::size_t k = 0; k < tokens.size(); ++k)
    if (pending[k]) order.push_back(k);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return tokens[a] > tokens[b]; });
  std::vector<std::int64_t> load(std::size_t(ranks), 0);
  for (std::size_t k : order) {
    const auto r = std::size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owner[k] = int(r);
    load[r] += tokens[k];
  }
  return owner;
}

/// Runs `f` on rank 0 only; if it throws, rank 0 rethrows and every other rank throws too
/// (instead of waiting forever in the next collective).
template <class F>
void on_lead_checked(Communicator& comm, F&& f) {
  std::exception_ptr err;
  if (comm.rank() == 0) {
    try {
      f();
    } catch (...) {
      err = std::current_exception();
    }
  }
  std::uint64_t failed = err ? 1 : 0;
  comm.broadcast(std::span<std::uint64_t>(&failed, 1), 0);
  if (err) std::rethrow_exception(err);
  if (failed) throw config_error("build_cache: rank 0 refused the cache folder (see its error)");
}

}  // namespace detail

}  // namespace lmembed::train
