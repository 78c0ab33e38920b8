// lmembed/io/safetensors.hpp - safetensors reader (memory-mapped) and atomic writer.
//
// Layout: uint64 little-endian header length N, N bytes of JSON header, then the data buffer.
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end)} relative to the
// data buffer, plus an optional "__metadata__" object of string -> string. The reader checks
// every offset against the file size and rejects overlaps, so hostile files raise format_error.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/io/tensor_view.hpp"

namespace lmembed::io {

/// A safetensors file: tensors by name (views into the memory map) and `__metadata__`.
/// Move-only; views stay valid while the object lives.
class SafetensorsFile {
 public:
  /// Headers larger than this are refused (the reference implementation's limit).
  static constexpr std::uint64_t max_header_bytes = 100'000'000;

  /// Maps and parses `path`; io_error when unreadable, format_error when not valid.
  static SafetensorsFile open(const std::filesystem::path& path) {
    SafetensorsFile f;
    f.map_ = MappedFile::open(path);
    f.path_ = path;
    f.bytes_ = f.map_.bytes();
    f.parse();
    return f;
  }
  /// Parses safetensors bytes held in memory (fuzzers, tests); `name` is used in messages.
  static SafetensorsFile from_bytes(std::vector<std::byte> bytes,
                                    const std::filesystem::path& name = "<memory>") {
    SafetensorsFile f;
    f.buf_ = std::move(bytes);
    f.path_ = name;
    f.bytes_ = std::span<const std::byte>(f.buf_.data(), f.buf_.size());
    f.parse();
    return f;
  }

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  /// The file's path.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// All tensors in header order.
  const std::vector<TensorView>& tensors() const noexcept { return tensors_; }
  /// The tensor `name`, or nullptr.
  const TensorView* find_tensor(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The tensor `name` (format_error naming tensor and file when absent).
  const TensorView& tensor(std::string_view name) const {
    if (const TensorView* t = find_tensor(name)) return *t;
    throw format_error(path_, format_error::npos,
                       "no tensor named '" + std::string(name) + "' in this safetensors file");
  }
  /// The `__metadata__` entries (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

 private:
  SafetensorsFile() = default;

  [[noreturn]] void fail(std::uint64_t at, const std::string& what) const {
    throw format_error(path_, at, what);
  }
  // Byte offset of a header key, for messages (the JSON value does not keep positions).
  std::uint64_t key_offset(std::string_view header, const std::string& key) const {
    const std::string needle = json::dump(key);
    const auto p = header.find(needle);
    return 8 + (p == std::string_view::npos ? 0 : p);
  }

  // A bad header length usually means another kind of file was given: say which, from its magic.
  std::string not_safetensors() const {
    const auto* b = reinterpret_cast<const unsigned char*>(bytes_.data());
    const std::string_view head(reinterpret_cast<const char*>(b), 6);
    const char* kind = head.substr(0, 4) == "GGUF"    ? "a GGUF file (a model, not a head)"
                       : head == "\x93NUMPY"          ? "an .npy array"
                       : head.substr(0, 2) == "PK"    ? "a zip archive (a PyTorch .pt/.bin?)"
                       : b[0] == '{' || b[0] == '['   ? "JSON text"
                       : head.substr(0, 5) == "<?xml" ? "XML text"
                                                      : nullptr;
    return kind ? std::string("not a safetensors file: it looks like ") + kind + "; " : "";
  }

  void parse() {
    const std::uint64_t size = bytes_.size();
    if (size < 8)
      fail(0, "truncated: " + std::to_string(size) + " bytes, too short for the header length");
    std::uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), 8);
    if (n > size - 8)
      fail(0, not_safetensors() + "header length " + std::to_string(n) +
                  " runs past the end of the file (" + std::to_string(size) + " bytes)");
    if (n > max_header_bytes)
      fail(0, not_safetensors() + "header length " + std::to_string(n) + " exceeds the limit of " +
                  std::to_string(max_header_bytes) + " bytes");
    if (n < 2) fail(8, "header of " + std::to_string(n) + " bytes cannot hold a JSON object");
    const std::string_view header(reinterpret_cast<const char*>(bytes_.data() + 8),
                                  static_cast<std::size_t>(n));
    ordered_json h;
    try {
      h = json::parse(header, path_.string() + " (header)");
    } catch (const format_error& e) {
      fail(8 + e.offset(), std::string("header is not valid JSON: ") + e.what());
    }
    if (!h.is_object())
      fail(8, std::string("header must be a JSON object, got ") + json::type_name(h));
    const std::uint64_t data_start = 8 + n;
    const std::uint64_t data_size = size - data_start;
    struct Range {
      std::uint64_t begin, end;
      std::size_t index;
    };
    std::vector<Range> ranges;
    for (const auto& [name, entry] : json::as_object(h)) {
      const std::uint64_t at = key_offset(header, name);
      if (name == "__metadata__") {
        if (!entry.is_object()) fail(at, "__metadata__ must be an object");
        for (const auto& [k, v] : json::as_object(entry)) {
          if (!v.is_string())
            fail(at,
                 "__metadata__ value of '" + k + "' must be a string, got " + json::type_name(v));
          metadata_.emplace(k, v.get_ref<const std::string&>());
        }
        continue;
      }
      const std::string what = "tensor '" + name + "'";
      if (!entry.is_object()) fail(at, what + ": entry must be an object");
      const ordered_json* dt = json::find(entry, "dtype");
      const ordered_json* sh = json::find(entry, "shape");
      const ordered_json* off = json::find(entry, "data_offsets");
      if (!dt || !dt->is_string()) fail(at, what + ": missing or non-string 'dtype'");
      if (!sh || !sh->is_array()) fail(at, what + ": missing or non-array 'shape'");
      if (!off || !off->is_array() || off->size() != 2)
        fail(at, what + ": 'data_offsets' must be an array [begin, end]");
      TensorView t;
      t.name = name;
      const std::string& dtype = dt->get_ref<const std::string&>();
      const auto d = try_parse_dtype(dtype);
      if (!d || is_quantized(*d)) fail(at, what + ": unknown dtype '" + dtype + "'");
      t.dtype = *d;
      for (const auto& dim : *sh) {
        if (!json::is_integer(dim) || json::as_int(dim) < 0)
          fail(at, what + ": shape entries must be non-negative integers");
        t.shape.push_back(json::as_int(dim));
      }
      const std::int64_t numel = checked_numel(t.shape);
      if (numel < 0) fail(at, what + ": shape " + json::dump(*sh) + " overflows the element count");
      const auto bytes = byte_size(t.dtype, numel);
      if (!bytes) fail(at, what + ": byte size of shape " + json::dump(*sh) + " overflows");
      const auto& o = *off;
      if (!json::is_integer(o[0]) || !json::is_integer(o[1]) || json::as_int(o[0]) < 0 ||
          json::as_int(o[1]) < 0)
        fail(at, what + ": data_offsets must be non-negative integers");
      const auto begin = static_cast<std::uint64_t>(json::as_int(o[0]));
      const auto end = static_cast<std::uint64_t>(json::as_int(o[1]));
      if (end < begin)
        fail(at, what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     "] end before they begin");
      if (end > data_size)
        fail(data_start + begin, what + ": data_offsets [" + std::to_string(begin) + ", " +
                                     std::to_string(end) + "] run past the end of the file (" +
                                     std::to_string(data_size) + " data bytes)");
      if (end - begin != static_cast<std::uint64_t>(*bytes))
        fail(at, what + ": " + to_string(t.dtype) + " shape " + lmembed::to_string(t.shape) +
                     " needs " + std::to_string(*bytes) + " bytes, data_offsets span " +
                     std::to_string(end - begin));
      t.data = bytes_.subspan(static_cast<std::size_t>(data_start + begin),
                              static_cast<std::size_t>(end - begin));
      ranges.push_back({begin, end, tensors_.size()});
      index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    std::sort(ranges.begin(), ranges.end(),
              [](const Range& a, const Range& b) { return a.begin < b.begin; });
    const Range* prev = nullptr;
    for (const Range& r : ranges) {
      if (r.end == r.begin) continue;
      if (prev && prev->end > r.begin)
        fail(data_start + r.begin, "tensor '" + tensors_[r.index].name + "' overlaps tensor '" +
                                       tensors_[prev->index].name + "'");
      prev = &r;
    }
  }

  MappedFile map_;
  std::vector<std::byte> buf_;
  std::span<const std::byte> bytes_;
  std::filesystem::path path_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

/// Collects tensors and metadata, then writes one safetensors file atomically.
class SafetensorsWriter {
 public:
  /// Adds a tensor from raw little-endian bytes (copied). config_error on a duplicate or
  /// reserved name, shape_error when the bytes do not match dtype and shape.
  void add(std::string name, DType dtype, Shape shape, std::span<const std::byte> data) {
    if (name == "__metadata__") throw config_error("safetensors: '__metadata__' is reserved");
    for (const auto& e : entries_)
      if (e.name == name) throw config_error("safetensors: duplicate tensor name '" + name + "'");
    if (is_quantized(dtype))
      throw config_error(std::string("safetensors cannot store ") + to_string(dtype) + " ('" +
                         name + "')");
    TensorView probe{name, dtype, shape, {}};
    const auto need = byte_size(dtype, probe.numel());
    if (!need || static_cast<std::uint64_t>(*need) != data.size())
      throw shape_error("safetensors: tensor '" + name + "' " + to_string(dtype) + " " +
                        lmembed::to_string(shape) + " needs " +
                        (need ? std::to_string(*need) : std::string("an invalid number of")) +
                        " bytes, got " + std::to_string(data.size()));
    entries_.push_back({std::move(name), dtype, std::move(shape),
                        std::vector<std::byte>(data.begin(), data.end())});
  }
  /// Adds a matrix (F32 for float, F64 for double). `shape` defaults to [rows, cols]; any shape
  /// with the same element count may be given (e.g. [n] for a 1 x n vector).
  template <class T>
  void add(std::string name, const MatrixX<T>& m, Shape shape = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "SafetensorsWriter::add: float or double matrices");
    if (shape.empty()) shape = {m.rows(), m.cols()};
    add(std::move(name), std::is_same_v<T, float> ? DType::f32 : DType::f64, std::move(shape),
        std::as_bytes(std::span<const T>(m.data(), static_cast<std::size_t>(m.size()))));
  }
  /// Sets a `__metadata__` entry.
  void set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }
  /// Writes the file atomically (temp + fsync + rename); io_error on failure.
  void write(const std::filesystem::path& path) const {
    // Names are unique (add() checks), so members are appended without a search.
    ordered_json h = ordered_json::object();
    if (!metadata_.empty()) {
      ordered_json m = ordered_json::object();
      for (const auto& [k, v] : metadata_) json::append(m, k, v);
      json::append(h, "__metadata__", std::move(m));
    }
    std::uint64_t offset = 0;
    for (const auto& e : entries_) {
      ordered_json t = ordered_json::object();
      t["dtype"] = to_string(e.dtype);
      ordered_json shape = ordered_json::array();
      for (auto d : e.shape) shape.push_back(static_cast<std::int64_t>(d));
      t["shape"] = std::move(shape);
      const std::uint64_t begin = offset;
      offset += e.data.size();
      t["data_offsets"] = {begin, offset};
      json::append(h, e.name, std::move(t));
    }
    std::string header = json::dump(h);
    header.append((8 - header.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
    std::vector<std::byte> out(8 + header.size() + offset);
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, header.data(), header.size());
    std::size_t pos = 8 + header.size();
    for (const auto& e : entries_) {
      if (!e.data.empty()) std::memcpy(out.data() + pos, e.data.data(), e.data.size());
      pos += e.data.size();
    }
    write_file_atomic(path, std::span<const std::byte>(out));
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<std::byte> data;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace lmembed::io
