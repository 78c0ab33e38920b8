// lmembed/train/cache_reader.hpp - train::Cache: a finished cache folder opened (checked against
// index.json), its shards memory-mapped, and its rows gathered for training.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/train/cache_capture.hpp"
#include "lmembed/train/cache_dataset.hpp"
#include "lmembed/train/cache_format.hpp"
#include "lmembed/train/random.hpp"

namespace lmembed::train {

/// A finished cache folder, memory-mapped for training.
class Cache {
 public:
  /// Opens `dir`; config_error when it is not a complete cache, format_error when a shard's
  /// header disagrees with the index. With verify, every shard's checksum is checked too.
  static Cache open(const std::filesystem::path& dir, bool verify = false) {
    Cache c;
    c.dir_ = dir;
    const auto index_path = dir / "index.json";
    if (!std::filesystem::exists(index_path))
      throw config_error(dir.string() + " is not an lmembed cache (no index.json)");
    const std::string src = index_path.string();
    const ordered_json idx = json::parse(read_text_file(index_path), src);
    const ordered_json* format = json::find(idx, "format");
    if (!format || !format->is_string() || format->get_ref<const std::string&>() != "lmembed-cache")
      throw config_error(index_path.string() + ": not an lmembed cache index");
    if (!json::get_bool(idx, "complete", src))
      throw config_error(dir.string() +
                         " is an unfinished cache: rerun lmembed cache with the same options");
    c.spec_ = parse_capture(json::get_string(idx, "capture", src));
    c.dtype_ = io::parse_dtype(json::get_string(idx, "dtype", src));
    c.d_ = json::get_int(idx, "d", src);
    c.n_layers_ = json::get_int(idx, "n_layers", src);
    c.model_layers_ = json::get_int(idx, "model_layers", src);
    c.model_ = json::get_string(idx, "model", src);
    c.attention_ = json::get_string(idx, "attention", src);
    const std::int64_t n = json::get_int(idx, "n_texts", src);

    const std::string texts = read_text_file(dir / "texts.jsonl");
    if (to_hex(detail::checksum_of(texts)) != json::get_string(idx, "texts_checksum", src))
      throw format_error(dir / "texts.jsonl", format_error::npos, "checksum differs from index");
    std::size_t pos = 0;
    const std::string texts_src = (dir / "texts.jsonl").string();
    while (pos < texts.size()) {
      std::size_t end = texts.find('\n', pos);
      if (end == std::string::npos) end = texts.size();
      const ordered_json v = json::parse(std::string_view(texts).substr(pos, end - pos), texts_src);
      c.data_.texts.push_back(
          {json::get_string(v, "instruction", texts_src), json::get_string(v, "text", texts_src)});
      pos = end + 1;
    }
    if (std::int64_t(c.data_.texts.size()) != n)
      throw format_error(
          dir / "texts.jsonl", format_error::npos,
          std::to_string(c.data_.texts.size()) + " texts, index says " + std::to_string(n));
    const std::string ex = read_text_file(dir / "examples.jsonl");
    if (to_hex(detail::checksum_of(ex)) != json::get_string(idx, "examples_checksum", src))
      throw format_error(dir / "examples.jsonl", format_error::npos, "checksum differs from index");
    c.data_.examples = detail::parse_examples_jsonl(ex, dir / "examples.jsonl", n);

    c.where_.resize(std::size_t(n));
    for (const auto& s : json::get_array(idx, "shards", src)) {
      Shard sh;
      const auto path = dir / json::get_string(s, "file", src);
      sh.file = MappedFile::open(path);
      const auto b = sh.file.bytes();
      if (verify && to_hex(checksum64(b)) != json::get_string(s, "checksum", src))
        throw format_error(path, format_error::npos, "checksum differs from index.json");
      detail::ShardHeader h;
      if (b.size() < sizeof h) throw format_error(path, 0, "shorter than a shard header");
      std::memcpy(&h, b.data(), sizeof h);
      const std::size_t elem = h.dtype == 1 ? 2 : 4;
      if (std::memcmp(h.magic, detail::shard_magic, 8) != 0 || h.version != 1)
        throw format_error(path, 0, "not an lmembed cache shard");
      if (h.first_text != json::get_int(s, "first_text", src) ||
          h.n_texts != json::get_int(s, "n_texts", src) || h.n_layers != c.n_layers_ ||
          h.d != c.d_ || elem != (c.dtype_ == io::DType::f16 ? 2 : 4) || h.n_texts < 0 ||
          h.first_text < 0 || h.first_text + h.n_texts > n)
        throw format_error(path, 0, "header disagrees with index.json");
      const std::size_t off_bytes = detail::align64(std::size_t(h.n_texts + 1) * 8 + h.n_texts * 4);
      const std::size_t need =
          detail::shard_header_bytes + off_bytes + std::size_t(h.n_items * h.n_layers * h.d) * elem;
      if (b.size() != need)
        throw format_error(
            path, format_error::npos,
            "size " + std::to_string(b.size()) + " bytes, expected " + std::to_string(need));
      sh.item_off = reinterpret_cast<const std::int64_t*>(b.data() + detail::shard_header_bytes);
      sh.pool_from = reinterpret_cast<const std::int32_t*>(sh.item_off + h.n_texts + 1);
      sh.rows = b.data() + detail::shard_header_bytes + off_bytes;
      sh.first = h.first_text;
      if (sh.item_off[0] != 0 || sh.item_off[h.n_texts] != h.n_items)
        throw format_error(path, detail::shard_header_bytes, "row offsets are inconsistent");
      for (std::int64_t j = 0; j < h.n_texts; ++j) {
        if (sh.item_off[j + 1] <= sh.item_off[j])
          throw format_error(path, detail::shard_header_bytes, "row offsets are inconsistent");
        c.where_[std::size_t(h.first_text + j)] = {std::int32_t(c.shards_.size()), std::int32_t(j)};
      }
      c.shards_.push_back(std::move(sh));
    }
    return c;
  }

  CaptureSpec capture() const { return spec_; }
  io::DType dtype() const { return dtype_; }
  std::int64_t d() const { return d_; }
  /// Captured layers per item (L for all_layers, 1 for last_layer).
  std::int64_t n_layers() const { return n_layers_; }
  std::int64_t model_layers() const { return model_layers_; }
  const std::string& model() const { return model_; }
  const std::string& attention() const { return attention_; }
  std::int64_t n_texts() const { return std::int64_t(data_.texts.size()); }
  const CacheDataset& dataset() const { return data_; }
  const std::filesystem::path& dir() const { return dir_; }

  /// The stored states of texts `ids` as the backbone would capture them for a batch of those
  /// texts (with tokens == all: only the pooled tokens, so pool_from is empty).
  template <class T = float>
  CapturedT<T> gather(std::span<const std::int64_t> ids) const {
    CapturedT<T> c;
    c.spec = spec_;
    c.n_seq = std::int64_t(ids.size());
    c.n_layers = n_layers_;
    c.d = d_;
    std::int64_t items = 0;
    for (auto id : ids) items += text_items(id);
    if (spec_.tokens == CaptureTokens::all) c.offsets.reserve(ids.size() + 1);
    if (spec_.tokens == CaptureTokens::all) c.offsets.push_back(0);
    c.states.resize(items * n_layers_, d_);
    std::int64_t row = 0;
    for (auto id : ids) {
      const auto [s, j] = where_[std::size_t(id)];
      const Shard& sh = shards_[std::size_t(s)];
      const std::int64_t it = sh.item_off[j + 1] - sh.item_off[j];
      const std::int64_t cnt = it * n_layers_ * d_;
      const std::int64_t src = sh.item_off[j] * n_layers_ * d_;
      T* dst = c.states.data() + row * d_;
      if (dtype_ == io::DType::f16) {
        const auto* h = reinterpret_cast<const std::uint16_t*>(sh.rows) + src;
        for (std::int64_t e = 0; e < cnt; ++e) dst[e] = T(io::half_to_float(h[e]));
      } else {
        const auto* f = reinterpret_cast<const float*>(sh.rows) + src;
        for (std::int64_t e = 0; e < cnt; ++e) dst[e] = T(f[e]);
      }
      row += it * n_layers_;
      if (spec_.tokens == CaptureTokens::all) c.offsets.push_back(c.offsets.back() + it);
    }
    return c;
  }

  /// Items (1, or pooled tokens) stored for text `id`; input_error when out of range.
  std::int64_t text_items(std::int64_t id) const {
    if (id < 0 || id >= n_texts())
      throw input_error("cache text id " + std::to_string(id) + " out of range [0, " +
                        std::to_string(n_texts()) + ")");
    const auto [s, j] = where_[std::size_t(id)];
    const Shard& sh = shards_[std::size_t(s)];
    return sh.item_off[j + 1] - sh.item_off[j];
  }
  /// The instruction-token count recorded for text `id` (what mean pooling left out).
  std::int32_t pool_from(std::int64_t id) const {
    text_items(id);
    const auto [s, j] = where_[std::size_t(id)];
    return shards_[std::size_t(s)].pool_from[j];
  }

 private:
  struct Shard {
    MappedFile file;
    const std::int64_t* item_off = nullptr;
    const std::int32_t* pool_from = nullptr;
    const std::byte* rows = nullptr;
    std::int64_t first = 0;
  };
  std::filesystem::path dir_;
  CaptureSpec spec_{};
  io::DType dtype_ = io::DType::f32;
  std::int64_t d_ = 0, n_layers_ = 1, model_layers_ = 0;
  std::string model_, attention_;
  CacheDataset data_;
  std::vector<Shard> shards_;
  std::vector<std::pair<std::int32_t, std::int32_t>> where_;
};

}  // namespace lmembed::train
