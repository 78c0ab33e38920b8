// lmembed/core/json_util.hpp - nlohmann/json with lmembed's error reporting.
//
// Every JSON document lmembed reads or writes is an nlohmann::ordered_json: objects keep their
// members in file order, so written files (results, cache indexes, safetensors headers) keep
// their key order and documents read back iterate as written. parse() builds the value through
// nlohmann's SAX interface so that members are appended without ordered_map's linear key scan
// (a 150k-entry tokenizer vocabulary parses in linear time), duplicate keys and nesting deeper
// than max_depth are refused, and every error is a format_error naming the source, the byte
// offset and line:column. The accessors throw config_error naming the place and the key: no
// nlohmann::json::exception leaves this header's functions.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"

namespace lmembed {

/// The JSON value of lmembed: nlohmann/json with objects in insertion order.
using nlohmann::ordered_json;

}  // namespace lmembed

namespace lmembed::json {

/// Containers nested deeper than this are refused (protects the stack from hostile input).
inline constexpr std::size_t max_depth = 512;

/// A short name of the type of `v`, for messages ("null", "bool", "number", "string", ...).
inline const char* type_name(const ordered_json& v) noexcept {
  return v.is_boolean() ? "bool" : v.is_number() ? "number" : v.type_name();
}

/// The JSON text of `v`: compact when indent < 0, else pretty with `indent` spaces. Doubles are
/// written shortest round-trip (NaN and infinities as null); invalid UTF-8 in strings becomes
/// U+FFFD instead of throwing, so that writing never fails on user text.
inline std::string dump(const ordered_json& v, int indent = -1) {
  return v.dump(indent, ' ', false, ordered_json::error_handler_t::replace);
}

namespace detail {

// The text iterator given to nlohmann's lexer: it records how far the lexer has read, so that
// errors found between tokens (duplicate keys, depth) get the offset of their token.
struct TextIterator {
  using iterator_category = std::forward_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;
  const char* p = nullptr;
  const char** read = nullptr;
  reference operator*() const { return *p; }
  TextIterator& operator++() {
    *read = ++p;
    return *this;
  }
  TextIterator operator++(int) {
    TextIterator t = *this;
    ++*this;
    return t;
  }
  bool operator==(const TextIterator& o) const { return p == o.p; }
};

// Builds an ordered_json from nlohmann's SAX events (see the file comment).
class Builder {
 public:
  using object_t = ordered_json::object_t;

  Builder(std::string_view text, const char* const* read) : text_(text), read_(read) {}

  bool null() { return put(nullptr); }
  bool boolean(bool b) { return put(b); }
  bool number_integer(std::int64_t v) { return put(v, number_end()); }
  bool number_unsigned(std::uint64_t v) { return put(v, number_end()); }
  bool number_float(double v, const std::string&) { return put(v, number_end()); }
  bool string(std::string& s) { return put(std::move(s)); }
  bool binary(ordered_json::binary_t&) { return false; }  // not produced by JSON text
  bool start_object(std::size_t) { return open(ordered_json::object()); }
  bool start_array(std::size_t) { return open(ordered_json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& k) {
    Frame& f = stack_.back();
    auto& obj = static_cast<Container&>(f.value->get_ref<object_t&>());
    if (obj.size() < kIndexFrom) {
      for (const auto& m : obj)
        if (m.first == k) return fail(token_start(), "duplicate object key '" + k + "'");
    }
    obj.emplace_back(std::move(k), nullptr);
    if (obj.size() >= kIndexFrom) {
      if (obj.size() == kIndexFrom)
        for (std::size_t i = 0; i + 1 < obj.size(); ++i) f.index.insert(obj, i);
      if (!f.index.insert(obj, obj.size() - 1))
        return fail(token_start(), "duplicate object key '" + obj.back().first + "'");
    }
    member_ = &obj.back().second;
    last_end_ = read_offset();
    return true;
  }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::json::exception& ex) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ...":
    // keep what follows the position; drop the echo of the token (can be a whole long line).
    std::string what = ex.what();
    if (const auto p = what.find("] "); p != std::string::npos) what.erase(0, p + 2);
    if (what.rfind("parse error", 0) == 0)
      if (const auto p = what.find(": "); p != std::string::npos) what.erase(0, p + 2);
    if (const auto p = what.find("; last read: '" + last_token + "'"); p != std::string::npos)
      what.erase(p, last_token.size() + 15);
    if (what.size() > 200) what = what.substr(0, 200) + "...";
    // Inside a string the lexer's position is the byte at fault; elsewhere, the token's start.
    const std::size_t at = std::min(position > 0 ? position - 1 : 0, text_.size());
    return fail(what.find("invalid string") != std::string::npos ? at : token_start(), what);
  }

  /// The error found (after sax_parse returned false).
  [[noreturn]] void raise(const std::string& source) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < error_at_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw format_error(source, error_at_,
                       error_ + " (line " + std::to_string(line) + ":" + std::to_string(col) + ")");
  }
  ordered_json take() { return std::move(root_); }

 private:
  static constexpr std::size_t kIndexFrom = 32;  // objects this large get a hash index of keys
  using Container = object_t::Container;
  // The keys of a large object, to refuse duplicates in O(1): open addressing over slots of
  // (32 bits of the key's hash, index + 1).
  class KeyIndex {
   public:
    // Adds key i of `obj`; false when an equal key is there already.
    bool insert(const Container& obj, std::size_t i) {
      if ((n_ + 1) * 2 > slots_.size()) grow();
      const auto h = static_cast<std::uint32_t>(std::hash<std::string_view>{}(obj[i].first));
      for (std::size_t s = h & mask_;; s = (s + 1) & mask_) {
        const std::uint64_t e = slots_[s];
        if (e == 0) {
          slots_[s] = (std::uint64_t{h} << 32) | (i + 1);
          ++n_;
          return true;
        }
        if ((e >> 32) == h && obj[(e & 0xffffffffu) - 1].first == obj[i].first) return false;
      }
    }

   private:
    void grow() {
      std::vector<std::uint64_t> old = std::move(slots_);
      slots_.assign(std::max<std::size_t>(64, old.size() * 2), 0);
      mask_ = slots_.size() - 1;
      for (const std::uint64_t e : old)
        if (e != 0) {
          std::size_t s = (e >> 32) & mask_;
          while (slots_[s] != 0) s = (s + 1) & mask_;
          slots_[s] = e;
        }
    }
    std::vector<std::uint64_t> slots_;
    std::size_t mask_ = 0, n_ = 0;
  };
  struct Frame {
    ordered_json* value;
    KeyIndex index;
  };

  std::size_t read_offset() const { return static_cast<std::size_t>(*read_ - text_.data()); }
  // The end of the number just read: the lexer has read the byte after it, unless at the end.
  std::size_t number_end() const {
    const std::size_t at = read_offset();
    const bool lookahead =
        at < text_.size() || (at > 0 && std::string_view("0123456789.eE+-").find(text_[at - 1]) ==
                                            std::string_view::npos);
    return lookahead ? at - 1 : at;
  }
  // The first byte of the token after the last one the parser accepted.
  std::size_t token_start() const {
    std::size_t i = last_end_;
    while (i < text_.size() &&
           std::string_view(" \t\n\r,:").find(text_[i]) != std::string_view::npos)
      ++i;
    return i;
  }
  bool fail(std::size_t at, std::string what) {
    error_at_ = at;
    error_ = std::move(what);
    return false;
  }
  // Places a value where the parser is: the root, the end of an array or the last key's member.
  template <class V>
  ordered_json* place(V&& v) {
    if (stack_.empty()) {
      root_ = std::forward<V>(v);
      return &root_;
    }
    ordered_json& top = *stack_.back().value;
    if (top.is_array()) {
      auto& a = top.get_ref<ordered_json::array_t&>();
      a.emplace_back(std::forward<V>(v));
      return &a.back();
    }
    *member_ = std::forward<V>(v);
    return member_;
  }
  template <class V>
  bool put(V&& v, std::size_t end = std::string::npos) {
    place(std::forward<V>(v));
    last_end_ = end == std::string::npos ? read_offset() : end;
    return true;
  }
  bool open(ordered_json&& container) {
    last_end_ = read_offset();
    if (stack_.size() >= max_depth)
      return fail(last_end_ - 1, "nesting deeper than " + std::to_string(max_depth));
    stack_.push_back({place(std::move(container)), {}});
    return true;
  }
  bool close() {
    stack_.pop_back();
    last_end_ = read_offset();
    return true;
  }

  std::string_view text_;
  const char* const* read_;
  ordered_json root_;
  std::vector<Frame> stack_;
  ordered_json* member_ = nullptr;
  std::size_t last_end_ = 0;
  std::size_t error_at_ = 0;
  std::string error_;
};

[[noreturn]] inline void type_mismatch(std::string_view where, std::string_view key,
                                       const char* want, const ordered_json& got) {
  std::string m(where.empty() ? std::string_view("json") : where);
  if (!key.empty()) m += ": '" + std::string(key) + "'";
  m += std::string(": expected ") + want + ", got ";
  if (got.is_number_unsigned()) {
    m += std::to_string(got.get_ref<const std::uint64_t&>());
  } else if (got.is_number_integer()) {
    m += std::to_string(got.get_ref<const std::int64_t&>());
  } else if (got.is_number_float()) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, got.get_ref<const double&>());
    m.append(buf, r.ptr);
  } else {
    m += type_name(got);
  }
  throw config_error(m);
}

}  // namespace detail

/// Parses one JSON text (RFC 8259). format_error names `source`, the byte offset and
/// line:column of the first problem (also for duplicate keys and nesting deeper than
/// max_depth); strings must be valid UTF-8.
inline ordered_json parse(std::string_view text, const std::string& source = "<json>") {
  const char* read = text.data();
  detail::Builder b(text, &read);
  const detail::TextIterator first{text.data(), &read}, last{text.data() + text.size(), &read};
  bool ok = false;
  try {
    ok = ordered_json::sax_parse(first, last, &b);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(source, format_error::npos, e.what());
  }
  if (!ok) b.raise(source);
  return b.take();
}

/// The member `key` of object `o`, or nullptr (also when `o` is not an object).
inline const ordered_json* find(const ordered_json& o, std::string_view key) {
  if (!o.is_object()) return nullptr;
  const auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}
inline ordered_json* find(ordered_json& o, std::string_view key) {
  if (!o.is_object()) return nullptr;
  const auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}

/// Whether `v` is an integral number that fits int64 (an integer, or an integral double such
/// as 2.0 in range).
inline bool is_integer(const ordered_json& v) noexcept {
  if (v.is_number_unsigned()) return v.get_ref<const std::uint64_t&>() <= INT64_MAX;
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get_ref<const double&>();
  return std::isfinite(d) && std::nearbyint(d) == d && d >= -9223372036854775808.0 &&
         d < 9223372036854775808.0;
}

// Typed reads: config_error "<where>[: '<key>']: expected <type>, got <type or number>" when
// `v` is something else (`where` names the file or object, `key` the member; "json" when empty).

/// The integer value (integers, and integral doubles, that fit int64).
inline std::int64_t as_int(const ordered_json& v, std::string_view where = {},
                           std::string_view key = {}) {
  if (!is_integer(v)) detail::type_mismatch(where, key, "an integer", v);
  return v.is_number_float() ? static_cast<std::int64_t>(v.get_ref<const double&>())
                             : v.get<std::int64_t>();
}
/// The number as a double.
inline double as_double(const ordered_json& v, std::string_view where = {},
                        std::string_view key = {}) {
  if (!v.is_number()) detail::type_mismatch(where, key, "number", v);
  return v.get<double>();
}
/// The boolean.
inline bool as_bool(const ordered_json& v, std::string_view where = {}, std::string_view key = {}) {
  if (!v.is_boolean()) detail::type_mismatch(where, key, "bool", v);
  return v.get_ref<const bool&>();
}
/// The string.
inline const std::string& as_string(const ordered_json& v, std::string_view where = {},
                                    std::string_view key = {}) {
  if (!v.is_string()) detail::type_mismatch(where, key, "string", v);
  return v.get_ref<const std::string&>();
}
/// The elements of an array.
inline const ordered_json::array_t& as_array(const ordered_json& v, std::string_view where = {},
                                             std::string_view key = {}) {
  if (!v.is_array()) detail::type_mismatch(where, key, "array", v);
  return v.get_ref<const ordered_json::array_t&>();
}
/// The members of an object, in order (pairs of key and value).
inline const ordered_json::object_t& as_object(const ordered_json& v, std::string_view where = {},
                                               std::string_view key = {}) {
  if (!v.is_object()) detail::type_mismatch(where, key, "object", v);
  return v.get_ref<const ordered_json::object_t&>();
}

/// The member `key` of object `o` (config_error "<where>: missing key 'key'" when absent, or
/// "expected object" when `o` is not one).
inline const ordered_json& at(const ordered_json& o, std::string_view key,
                              std::string_view where = {}) {
  if (const ordered_json* v = find(o, key)) return *v;
  if (!o.is_object()) detail::type_mismatch(where, {}, "object", o);
  throw config_error(std::string(where.empty() ? std::string_view("json") : where) +
                     ": missing key '" + std::string(key) + "'");
}
/// Element `i` of array `a` (config_error when out of range or not an array).
inline const ordered_json& at(const ordered_json& a, std::size_t i, std::string_view where = {}) {
  const auto& arr = as_array(a, where);
  if (i >= arr.size())
    throw config_error(std::string(where.empty() ? std::string_view("json") : where) + ": index " +
                       std::to_string(i) + " out of range (size " + std::to_string(arr.size()) +
                       ")");
  return arr[i];
}

// The member `key` of `o`, typed (missing key or wrong type: config_error naming both).
inline std::int64_t get_int(const ordered_json& o, std::string_view key,
                            std::string_view where = {}) {
  return as_int(at(o, key, where), where, key);
}
inline double get_double(const ordered_json& o, std::string_view key, std::string_view where = {}) {
  return as_double(at(o, key, where), where, key);
}
inline bool get_bool(const ordered_json& o, std::string_view key, std::string_view where = {}) {
  return as_bool(at(o, key, where), where, key);
}
inline const std::string& get_string(const ordered_json& o, std::string_view key,
                                     std::string_view where = {}) {
  return as_string(at(o, key, where), where, key);
}
inline const ordered_json::array_t& get_array(const ordered_json& o, std::string_view key,
                                              std::string_view where = {}) {
  return as_array(at(o, key, where), where, key);
}
inline const ordered_json::object_t& get_object(const ordered_json& o, std::string_view key,
                                                std::string_view where = {}) {
  return as_object(at(o, key, where), where, key);
}

/// Appends member `key` to object `o` (null becomes an object) without ordered_json's linear
/// search for an existing key: for building large objects whose keys are known to be unique.
inline ordered_json& append(ordered_json& o, std::string key, ordered_json value) {
  if (o.is_null()) o = ordered_json::object();
  auto& obj = o.get_ref<ordered_json::object_t&>();
  static_cast<ordered_json::object_t::Container&>(obj).emplace_back(std::move(key),
                                                                    std::move(value));
  return obj.back().second;
}

}  // namespace lmembed::json
