// lmembed/train/cache_format.hpp - the files of a cache folder: the shard header and names,
// the checksums of texts.jsonl / examples.jsonl, and the rendering of index.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "lmembed/core/json_util.hpp"
#include "lmembed/train/random.hpp"

namespace lmembed::train {

namespace detail {

inline constexpr char shard_magic[8] = {'L', 'M', 'E', 'C', 'S', 'H', 'D', '1'};
inline constexpr std::size_t shard_header_bytes = 64;

/// The fixed header of a shard file.
struct ShardHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t dtype;  ///< 0 f32, 1 f16
  std::int64_t first_text, n_texts, n_items, n_layers, d;
  std::int64_t reserved;
};
static_assert(sizeof(ShardHeader) == shard_header_bytes);

inline std::size_t align64(std::size_t n) {
  return (n + 63) / 64 * 64;
}

inline std::string shard_name(std::int64_t k) {
  std::string n = std::to_string(k);
  return "shard-" + std::string(n.size() < 5 ? 5 - n.size() : 0, '0') + n + ".bin";
}

inline std::uint64_t checksum_of(std::string_view s) {
  return checksum64(std::as_bytes(std::span<const char>(s.data(), s.size())));
}

/// A pretty single-line-per-shard rendering of the index (readable and diffable).
inline std::string dump_index(const ordered_json& index) {
  return json::dump(index, 1) + "\n";
}

}  // namespace detail

}  // namespace lmembed::train
