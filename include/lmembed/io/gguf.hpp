// lmembed/io/gguf.hpp - GGUF (v2, v3) reader: metadata, tensor infos, zero-copy tensor views.
//
// The file is memory-mapped and trusted for nothing: every count, length and offset is checked
// against the bytes that remain before it is used (overflow-safe), so a hostile file raises a
// format_error naming the file, the byte offset and what is wrong, never a crash. Quantized
// tensors (Q4_0 ... Q6_K, lmembed/io/quant.hpp) must hold whole blocks per row, and every
// block's F16 scales must be finite: checked here, at open, for every tensor.
// Tensor shapes are reported outermost-first, i.e. reversed from GGUF's ne[] order, so that
// token_embd.weight of a model with vocabulary V and width D has shape [V, D] and matrices are
// [out, in] like PyTorch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/io/quant.hpp"
#include "lmembed/io/tensor_view.hpp"

namespace lmembed::io {

/// GGUF metadata value types, with GGUF's numeric codes.
enum class GgufType : std::uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12
};

/// GGUF's name of a metadata value type ("UINT32", "STRING", ...).
inline const char* to_string(GgufType t) noexcept {
  switch (t) {
    case GgufType::u8:
      return "UINT8";
    case GgufType::i8:
      return "INT8";
    case GgufType::u16:
      return "UINT16";
    case GgufType::i16:
      return "INT16";
    case GgufType::u32:
      return "UINT32";
    case GgufType::i32:
      return "INT32";
    case GgufType::f32:
      return "FLOAT32";
    case GgufType::boolean:
      return "BOOL";
    case GgufType::string:
      return "STRING";
    case GgufType::array:
      return "ARRAY";
    case GgufType::u64:
      return "UINT64";
    case GgufType::i64:
      return "INT64";
    case GgufType::f64:
      return "FLOAT64";
  }
  return "?";
}

/// One metadata value: a scalar, a string or an array (possibly of strings or of arrays).
class GgufValue {
 public:
  GgufValue() = default;
  /// A scalar or string value of GGUF type `t`.
  template <class V>
  GgufValue(GgufType t, V v) : type_(t), v_(std::move(v)) {}
  /// An array of elements of type `elem`.
  static GgufValue make_array(GgufType elem, std::vector<GgufValue> items) {
    GgufValue a;
    a.type_ = GgufType::array;
    a.elem_ = elem;
    a.v_ = std::move(items);
    return a;
  }

  /// The value's GGUF type.
  GgufType type() const noexcept { return type_; }
  /// The element type of an array (meaningless for other types).
  GgufType array_type() const noexcept { return elem_; }
  bool is_array() const noexcept { return type_ == GgufType::array; }
  bool is_string() const noexcept { return type_ == GgufType::string; }
  bool is_bool() const noexcept { return type_ == GgufType::boolean; }
  /// Any integer type.
  bool is_integer() const noexcept {
    return std::holds_alternative<std::uint64_t>(v_) || std::holds_alternative<std::int64_t>(v_);
  }
  /// FLOAT32 or FLOAT64.
  bool is_float() const noexcept { return std::holds_alternative<double>(v_); }
  /// Number of array elements (0 for non-arrays).
  std::size_t size() const noexcept { return is_array() ? items().size() : 0; }
  /// The array's elements (config_error unless an array).
  const std::vector<GgufValue>& array() const {
    if (!is_array())
      throw config_error(std::string("GGUF value is ") + to_string(type_) + ", not an array");
    return items();
  }
  /// Element i of an array (config_error when out of range or not an array).
  const GgufValue& operator[](std::size_t i) const {
    const auto& a = array();
    if (i >= a.size())
      throw config_error("GGUF array index " + std::to_string(i) + " out of range (size " +
                         std::to_string(a.size()) + ")");
    return a[i];
  }

  /// The value converted to T (config_error when the types are not compatible or the value is
  /// out of T's range). T: bool, any integer, float, double, std::string, std::vector of those.
  template <class T>
  T as() const {
    if constexpr (std::is_same_v<T, bool>) {
      if (const bool* b = std::get_if<bool>(&v_)) return *b;
      throw mismatch("bool");
    } else if constexpr (std::is_integral_v<T>) {
      if (const auto* u = std::get_if<std::uint64_t>(&v_)) {
        if (std::in_range<T>(*u)) return static_cast<T>(*u);
        throw config_error("GGUF value " + std::to_string(*u) + " out of range");
      }
      if (const auto* s = std::get_if<std::int64_t>(&v_)) {
        if (std::in_range<T>(*s)) return static_cast<T>(*s);
        throw config_error("GGUF value " + std::to_string(*s) + " out of range");
      }
      if (const auto* d = std::get_if<double>(&v_)) {
        // An integral float in range converts (some writers store counts as floats).
        if (std::isfinite(*d) && std::trunc(*d) == *d && *d >= -9223372036854775808.0 &&
            *d < 9223372036854775808.0 && std::in_range<T>(static_cast<std::int64_t>(*d)))
          return static_cast<T>(static_cast<std::int64_t>(*d));
      }
      throw mismatch("integer");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (const auto* d = std::get_if<double>(&v_)) return static_cast<T>(*d);
      if (const auto* u = std::get_if<std::uint64_t>(&v_)) return static_cast<T>(*u);
      if (const auto* s = std::get_if<std::int64_t>(&v_)) return static_cast<T>(*s);
      throw mismatch("number");
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (const auto* s = std::get_if<std::string>(&v_)) return *s;
      throw mismatch("string");
    } else if constexpr (is_vector<T>::value) {
      if (!is_array()) throw mismatch("array");
      T out;
      out.reserve(items().size());
      for (const auto& e : items()) out.push_back(e.template as<typename T::value_type>());
      return out;
    } else {
      static_assert(sizeof(T) == 0, "GgufValue::as<T>: unsupported T");
    }
  }

  /// A short human-readable rendering (arrays show their first elements).
  std::string to_display() const {
    if (const auto* u = std::get_if<std::uint64_t>(&v_)) return std::to_string(*u);
    if (const auto* s = std::get_if<std::int64_t>(&v_)) return std::to_string(*s);
    if (const auto* d = std::get_if<double>(&v_)) return std::to_string(*d);
    if (const auto* b = std::get_if<bool>(&v_)) return *b ? "true" : "false";
    if (const auto* s = std::get_if<std::string>(&v_)) return "\"" + *s + "\"";
    std::string out =
        std::string("[") + to_string(elem_) + " x " + std::to_string(items().size()) + ":";
    for (std::size_t i = 0; i < items().size() && i < 4; ++i) out += " " + items()[i].to_display();
    return out + (items().size() > 4 ? " ...]" : "]");
  }

 private:
  template <class X>
  struct is_vector : std::false_type {};
  template <class X, class A>
  struct is_vector<std::vector<X, A>> : std::true_type {};

  const std::vector<GgufValue>& items() const { return std::get<std::vector<GgufValue>>(v_); }
  config_error mismatch(const char* want) const {
    return config_error(std::string("GGUF value of type ") + to_string(type_) +
                        (is_array() ? std::string(" of ") + to_string(elem_) : std::string()) +
                        " cannot be read as " + want);
  }

  GgufType type_ = GgufType::u8;
  GgufType elem_ = GgufType::u8;
  std::variant<std::monostate, std::uint64_t, std::int64_t, double, bool, std::string,
               std::vector<GgufValue>>
      v_;
};

namespace detail {

/// GGML tensor type codes (ggml.h's enum ggml_type, gguf-py's GGMLQuantizationType) that
/// lmembed reads, and names for the ones it does not.
inline std::optional<DType> ggml_dtype(std::uint32_t t) noexcept {
  switch (t) {
    case 0:
      return DType::f32;
    case 1:
      return DType::f16;
    case 2:
      return DType::q4_0;
    case 3:
      return DType::q4_1;
    case 6:
      return DType::q5_0;
    case 7:
      return DType::q5_1;
    case 8:
      return DType::q8_0;
    case 10:
      return DType::q2_k;
    case 11:
      return DType::q3_k;
    case 12:
      return DType::q4_k;
    case 13:
      return DType::q5_k;
    case 14:
      return DType::q6_k;
    case 24:
      return DType::i8;
    case 25:
      return DType::i16;
    case 26:
      return DType::i32;
    case 27:
      return DType::i64;
    case 28:
      return DType::f64;
    case 30:
      return DType::bf16;
    default:
      return std::nullopt;
  }
}
inline const char* ggml_type_name(std::uint32_t t) noexcept {
  static const char* names[] = {"F32",     "F16",      "Q4_0",     "Q4_1",     "Q4_2",    "Q4_3",
                                "Q5_0",    "Q5_1",     "Q8_0",     "Q8_1",     "Q2_K",    "Q3_K",
                                "Q4_K",    "Q5_K",     "Q6_K",     "Q8_K",     "IQ2_XXS", "IQ2_XS",
                                "IQ3_XXS", "IQ1_S",    "IQ4_NL",   "IQ3_S",    "IQ2_S",   "IQ4_XS",
                                "I8",      "I16",      "I32",      "I64",      "F64",     "IQ1_M",
                                "BF16",    "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",   "TQ2_0"};
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : nullptr;
}

/// Bounds-checked little-endian cursor over a byte span; every failure is a format_error.
class ByteReader {
 public:
  ByteReader(std::span<const std::byte> b, const std::filesystem::path& file)
      : b_(b), file_(file) {}
  std::uint64_t pos() const noexcept { return pos_; }
  std::uint64_t remaining() const noexcept { return b_.size() - pos_; }
  std::uint64_t size() const noexcept { return b_.size(); }
  [[noreturn]] void fail(std::uint64_t at, const std::string& what) const {
    throw format_error(file_, at, what);
  }
  void need(std::uint64_t n, const char* what) const {
    if (n > remaining())
      fail(pos_, std::string("truncated: ") + what + " needs " + std::to_string(n) +
                     " bytes, only " + std::to_string(remaining()) + " remain (file is " +
                     std::to_string(b_.size()) + " bytes)");
  }
  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  /// A GGUF string: uint64 length then bytes.
  std::string read_string(const std::string& what) {
    const std::uint64_t at = pos_;
    const auto len = read<std::uint64_t>("string length");
    if (len > remaining())
      fail(at, what + ": string length " + std::to_string(len) + " exceeds the " +
                   std::to_string(remaining()) + " bytes left in the file");
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<std::size_t>(len));
    pos_ += len;
    return s;
  }

 private:
  std::span<const std::byte> b_;
  const std::filesystem::path& file_;
  std::uint64_t pos_ = 0;
};

}  // namespace detail

/// A GGUF file (versions 2 and 3): metadata by key, tensors by name. Move-only; the tensor
/// views point into the file's memory map and stay valid while the GgufFile lives.
class GgufFile {
 public:
  /// Nested metadata arrays deeper than this are refused (protects the stack).
  static constexpr int max_array_depth = 16;
  /// Metadata array elements in all (real vocabularies hold under 2M); each element costs
  /// ~56 bytes in memory, so this bounds what a hostile file can make us allocate.
  static constexpr std::uint64_t max_array_elements = std::uint64_t{1} << 24;

  /// Maps and parses `path`; io_error when it cannot be read, format_error when it is not a
  /// valid GGUF v2/v3 file.
  static GgufFile open(const std::filesystem::path& path) {
    GgufFile f;
    f.map_ = MappedFile::open(path);
    f.path_ = path;
    f.bytes_ = f.map_.bytes();
    f.parse();
    return f;
  }
  /// Parses GGUF bytes held in memory (fuzzers, tests); `name` is used in error messages.
  static GgufFile from_bytes(std::vector<std::byte> bytes,
                             const std::filesystem::path& name = "<memory>") {
    GgufFile f;
    f.buf_ = std::move(bytes);
    f.path_ = name;
    f.bytes_ = std::span<const std::byte>(f.buf_.data(), f.buf_.size());
    f.parse();
    return f;
  }

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  /// The GGUF version (2 or 3).
  std::uint32_t version() const noexcept { return version_; }
  /// The file's path.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// The tensor data alignment (general.alignment, default 32).
  std::uint64_t alignment() const noexcept { return alignment_; }
  /// File offset where tensor data starts.
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  /// The whole file's bytes.
  std::span<const std::byte> bytes() const noexcept { return bytes_; }

  /// Whether metadata key `key` exists.
  bool has(std::string_view key) const { return index_.find(key) != index_.end(); }
  /// The metadata value `key`, or nullptr.
  const GgufValue* find(std::string_view key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &kv_[it->second].second;
  }
  /// The metadata value `key` (config_error naming key and file when absent).
  const GgufValue& get(std::string_view key) const {
    if (const GgufValue* v = find(key)) return *v;
    throw config_error(path_.string() + ": GGUF metadata key '" + std::string(key) +
                       "' is missing");
  }
  /// The metadata value `key` converted to T (see GgufValue::as); config_error naming key and
  /// file when absent or incompatible.
  template <class T>
  T get_as(std::string_view key) const {
    const GgufValue& v = get(key);
    try {
      return v.template as<T>();
    } catch (const config_error& e) {
      throw config_error(path_.string() + ": GGUF metadata key '" + std::string(key) +
                         "': " + e.what());
    }
  }
  /// get_as<T>(key), or `fallback` when the key is absent (config_error when it is present but
  /// incompatible).
  template <class T>
  T get_or(std::string_view key, T fallback) const {
    return has(key) ? get_as<T>(key) : fallback;
  }
  /// All metadata keys in file order.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    out.reserve(kv_.size());
    for (const auto& kv : kv_) out.push_back(kv.first);
    return out;
  }

  /// All tensors in file order.
  const std::vector<TensorView>& tensors() const noexcept { return tensors_; }
  /// The tensor `name`, or nullptr.
  const TensorView* find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The tensor `name` (format_error naming tensor and file when absent).
  const TensorView& tensor(std::string_view name) const {
    if (const TensorView* t = find_tensor(name)) return *t;
    throw format_error(path_, format_error::npos,
                       "no tensor named '" + std::string(name) + "' in this GGUF file");
  }

 private:
  GgufFile() = default;

  GgufValue read_value(detail::ByteReader& r, GgufType type, int depth, const std::string& key) {
    const std::uint64_t at = r.pos();
    switch (type) {
      case GgufType::u8:
        return {type, std::uint64_t{r.read<std::uint8_t>("UINT8 value")}};
      case GgufType::i8:
        return {type, std::int64_t{r.read<std::int8_t>("INT8 value")}};
      case GgufType::u16:
        return {type, std::uint64_t{r.read<std::uint16_t>("UINT16 value")}};
      case GgufType::i16:
        return {type, std::int64_t{r.read<std::int16_t>("INT16 value")}};
      case GgufType::u32:
        return {type, std::uint64_t{r.read<std::uint32_t>("UINT32 value")}};
      case GgufType::i32:
        return {type, std::int64_t{r.read<std::int32_t>("INT32 value")}};
      case GgufType::u64:
        return {type, r.read<std::uint64_t>("UINT64 value")};
      case GgufType::i64:
        return {type, r.read<std::int64_t>("INT64 value")};
      case GgufType::f32:
        return {type, double{r.read<float>("FLOAT32 value")}};
      case GgufType::f64:
        return {type, r.read<double>("FLOAT64 value")};
      case GgufType::boolean: {
        const auto b = r.read<std::uint8_t>("BOOL value");
        if (b > 1)
          r.fail(at, "key '" + key + "': BOOL value " + std::to_string(b) + " is not 0 or 1");
        return {type, b == 1};
      }
      case GgufType::string:
        return {type, r.read_string("key '" + key + "'")};
      case GgufType::array: {
        if (depth >= max_array_depth)
          r.fail(at,
                 "key '" + key + "': arrays nested deeper than " + std::to_string(max_array_depth));
        const std::uint64_t type_at = r.pos();
        const auto raw = r.read<std::uint32_t>("array element type");
        if (raw > 12)
          r.fail(type_at, "key '" + key + "': unknown array element type " + std::to_string(raw));
        const auto elem = static_cast<GgufType>(raw);
        const std::uint64_t count_at = r.pos();
        const auto count = r.read<std::uint64_t>("array length");
        const std::uint64_t min_size = min_value_size(elem);
        if (count > r.remaining() / min_size)
          r.fail(count_at, "key '" + key + "': array length " + std::to_string(count) + " of " +
                               to_string(elem) + " cannot fit in the " +
                               std::to_string(r.remaining()) + " bytes left in the file");
        if (count > max_array_elements - array_elements_)
          r.fail(count_at, "key '" + key + "': array length " + std::to_string(count) +
                               " exceeds the limit of " + std::to_string(max_array_elements) +
                               " metadata array elements in all");
        array_elements_ += count;
        std::vector<GgufValue> items;
        items.reserve(static_cast<std::size_t>(count));
        for (std::uint64_t i = 0; i < count; ++i)
          items.push_back(read_value(r, elem, depth + 1, key));
        return GgufValue::make_array(elem, std::move(items));
      }
    }
    r.fail(at, "key '" + key + "': unknown value type " +
                   std::to_string(static_cast<std::uint32_t>(type)));
  }
  static std::uint64_t min_value_size(GgufType t) noexcept {
    switch (t) {
      case GgufType::u8:
      case GgufType::i8:
      case GgufType::boolean:
        return 1;
      case GgufType::u16:
      case GgufType::i16:
        return 2;
      case GgufType::u32:
      case GgufType::i32:
      case GgufType::f32:
        return 4;
      case GgufType::u64:
      case GgufType::i64:
      case GgufType::f64:
        return 8;
      case GgufType::string:
        return 8;
      case GgufType::array:
        return 12;
    }
    return 1;
  }

  void parse() {
    detail::ByteReader r(bytes_, path_);
    if (r.size() < 4)
      r.fail(0, "truncated: " + std::to_string(r.size()) + " bytes, too short for the GGUF magic");
    if (std::memcmp(bytes_.data(), "GGUF", 4) != 0) {
      std::string got;
      for (int i = 0; i < 4; ++i) {
        const auto c = static_cast<unsigned char>(bytes_[static_cast<std::size_t>(i)]);
        got += (c >= 0x20 && c < 0x7f) ? std::string(1, static_cast<char>(c)) : "?";
      }
      r.fail(0, "wrong magic '" + got + "', expected 'GGUF' (not a GGUF file)");
    }
    r.read<std::uint32_t>("magic");
    const std::uint64_t version_at = r.pos();
    version_ = r.read<std::uint32_t>("version");
    if (version_ != 2 && version_ != 3) {
      if (version_ == 1) r.fail(version_at, "GGUF version 1 is not supported (only 2 and 3)");
      if ((version_ & 0xFFFFu) == 0 && version_ != 0)
        r.fail(version_at, "unknown GGUF version " + std::to_string(version_) +
                               " (a big-endian GGUF file? only little-endian v2/v3 is supported)");
      r.fail(version_at, "unknown GGUF version " + std::to_string(version_) + " (only 2 and 3)");
    }
    const std::uint64_t nt_at = r.pos();
    const auto n_tensors = r.read<std::uint64_t>("tensor count");
    const std::uint64_t nkv_at = r.pos();
    const auto n_kv = r.read<std::uint64_t>("metadata count");
    // Smallest encodings: a tensor info is 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type)
    // + 8 (offset) bytes; a key-value pair 8 (key length) + 4 (type) + 1 (value) bytes.
    if (n_tensors > r.remaining() / 32)
      r.fail(nt_at, "tensor count " + std::to_string(n_tensors) +
                        " is larger than the file could hold (" + std::to_string(r.size()) +
                        " bytes)");
    if (n_kv > r.remaining() / 13)
      r.fail(nkv_at, "metadata count " + std::to_string(n_kv) +
                         " is larger than the file could hold (" + std::to_string(r.size()) +
                         " bytes)");
    kv_.reserve(static_cast<std::size_t>(n_kv));
    std::uint64_t alignment_at = 0;
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      const std::uint64_t key_at = r.pos();
      std::string key = r.read_string("metadata key #" + std::to_string(i));
      if (index_.count(key)) r.fail(key_at, "duplicate metadata key '" + key + "'");
      const std::uint64_t type_at = r.pos();
      const auto raw = r.read<std::uint32_t>("metadata value type");
      if (raw > 12)
        r.fail(type_at, "key '" + key + "': unknown metadata value type " + std::to_string(raw));
      const std::uint64_t value_at = r.pos();
      GgufValue v = read_value(r, static_cast<GgufType>(raw), 0, key);
      if (key == "general.alignment") alignment_at = value_at;
      index_.emplace(key, kv_.size());
      kv_.emplace_back(std::move(key), std::move(v));
    }
    if (const GgufValue* a = find("general.alignment")) {
      if (a->type() != GgufType::u32)
        r.fail(alignment_at,
               std::string("general.alignment must be UINT32, got ") + to_string(a->type()));
      const auto al = a->as<std::uint64_t>();
      if (al == 0 || (al & (al - 1)) != 0)
        r.fail(alignment_at, "general.alignment " + std::to_string(al) + " is not a power of two");
      alignment_ = al;
    }
    const std::uint64_t infos_at = r.pos();
    if (n_tensors > r.remaining() / 32)
      r.fail(infos_at, "tensor count " + std::to_string(n_tensors) + " (declared at offset " +
                           std::to_string(nt_at) + ") cannot fit in the " +
                           std::to_string(r.remaining()) + " bytes after the metadata");
    struct Info {
      std::uint64_t at, offset_at, offset, bytes;
    };
    std::vector<Info> infos;
    infos.reserve(static_cast<std::size_t>(n_tensors));
    tensors_.reserve(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      const std::uint64_t at = r.pos();
      TensorView t;
      t.name = r.read_string("tensor #" + std::to_string(i) + " name");
      if (tensor_index_.count(t.name)) r.fail(at, "duplicate tensor name '" + t.name + "'");
      const std::uint64_t nd_at = r.pos();
      const auto n_dims = r.read<std::uint32_t>("tensor dimension count");
      if (n_dims < 1 || n_dims > 4)
        r.fail(nd_at, "tensor '" + t.name + "' has " + std::to_string(n_dims) +
                          " dimensions (GGUF allows 1 to 4)");
      std::vector<std::int64_t> ne(n_dims);
      // Zero dimensions are allowed, but the product of the others must still fit int64.
      std::int64_t nonzero = 1;
      bool any_zero = false;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const std::uint64_t d_at = r.pos();
        const auto v = r.read<std::uint64_t>("tensor dimension");
        if (v == 0) any_zero = true;
        if (v > static_cast<std::uint64_t>(INT64_MAX) ||
            (v != 0 && __builtin_mul_overflow(nonzero, static_cast<std::int64_t>(v), &nonzero)))
          r.fail(d_at, "tensor '" + t.name + "': dimension " + std::to_string(v) +
                           " makes the element count overflow");
        ne[d] = static_cast<std::int64_t>(v);
      }
      const std::int64_t numel = any_zero ? 0 : nonzero;
      const std::uint64_t type_at = r.pos();
      const auto raw_type = r.read<std::uint32_t>("tensor type");
      const auto dt = detail::ggml_dtype(raw_type);
      if (!dt) {
        const char* nm = detail::ggml_type_name(raw_type);
        r.fail(type_at, "tensor '" + t.name + "': " +
                            (nm ? std::string("unsupported tensor type ") + nm + " (" +
                                      std::to_string(raw_type) + ")"
                                : "unknown tensor type " + std::to_string(raw_type)));
      }
      t.dtype = *dt;
      if (ne[0] % block_size(t.dtype) != 0)
        r.fail(type_at, "tensor '" + t.name + "': row length " + std::to_string(ne[0]) +
                            " is not a multiple of the " + to_string(t.dtype) + " block size " +
                            std::to_string(block_size(t.dtype)));
      const auto bytes = byte_size(t.dtype, numel);
      if (!bytes) r.fail(type_at, "tensor '" + t.name + "': byte size overflows");
      const std::uint64_t offset_at = r.pos();
      const auto offset = r.read<std::uint64_t>("tensor offset");
      if (offset % alignment_ != 0)
        r.fail(offset_at, "tensor '" + t.name + "': data offset " + std::to_string(offset) +
                              " is not a multiple of the alignment " + std::to_string(alignment_));
      t.shape.assign(ne.rbegin(), ne.rend());
      infos.push_back({at, offset_at, offset, static_cast<std::uint64_t>(*bytes)});
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
    // Tensor data starts at the next multiple of the alignment.
    const std::uint64_t pos = r.pos();
    const std::uint64_t pad = (alignment_ - pos % alignment_) % alignment_;
    data_offset_ = pos + pad;
    const std::uint64_t size = r.size();
    if (n_tensors > 0 && data_offset_ > size)
      r.fail(pos, "truncated: tensor data should start at offset " + std::to_string(data_offset_) +
                      " but the file is " + std::to_string(size) + " bytes");
    const std::uint64_t data_size = n_tensors > 0 ? size - data_offset_ : 0;
    for (std::size_t i = 0; i < infos.size(); ++i) {
      const Info& in = infos[i];
      if (in.offset > data_size || in.bytes > data_size - in.offset)
        r.fail(in.offset_at, "tensor '" + tensors_[i].name + "': data [" +
                                 std::to_string(in.offset) + ", +" + std::to_string(in.bytes) +
                                 ") lies past the end of the file (" + std::to_string(data_size) +
                                 " data bytes from offset " + std::to_string(data_offset_) + ")");
      tensors_[i].data = bytes_.subspan(static_cast<std::size_t>(data_offset_ + in.offset),
                                        static_cast<std::size_t>(in.bytes));
    }
    // Quantized blocks with a NaN/Inf scale would decode to garbage: refuse them now, where the
    // file offset is known, rather than in every consumer.
    for (std::size_t i = 0; i < infos.size(); ++i) {
      const TensorView& t = tensors_[i];
      if (!is_quantized(t.dtype)) continue;
      const std::int64_t n_blocks = t.numel() / block_size(t.dtype);
      if (const auto bad = quant::first_bad_scale(t.dtype, t.data.data(), n_blocks)) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%04x", static_cast<unsigned>(bad->bits));
        r.fail(data_offset_ + infos[i].offset + bad->offset,
               "tensor '" + t.name + "': " + to_string(t.dtype) + " block " +
                   std::to_string(bad->block) + " of " + std::to_string(n_blocks) +
                   " has a non-finite scale " + bad->field + " (F16 " + hex +
                   ((bad->bits & 0x03FFu) ? ", NaN)" : ", infinity)"));
      }
    }
    // No two tensors may share bytes.
    std::vector<std::size_t> order(infos.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return infos[a].offset < infos[b].offset; });
    std::optional<std::size_t> prev;
    for (std::size_t k : order) {
      if (infos[k].bytes == 0) continue;
      if (prev && infos[*prev].offset + infos[*prev].bytes > infos[k].offset)
        r.fail(infos[k].offset_at,
               "tensor '" + tensors_[k].name + "': data at offset " +
                   std::to_string(infos[k].offset) + " overlaps tensor '" + tensors_[*prev].name +
                   "' [" + std::to_string(infos[*prev].offset) + ", " +
                   std::to_string(infos[*prev].offset + infos[*prev].bytes) + ")");
      prev = k;
    }
  }

  MappedFile map_;
  std::vector<std::byte> buf_;
  std::span<const std::byte> bytes_;
  std::filesystem::path path_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::uint64_t array_elements_ = 0;  // metadata array elements read so far
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace lmembed::io
