// lmembed/core/json.hpp - a small, strict JSON value, parser and writer.
//
// Used for safetensors headers, config.json, tokenizer.json, JSONL data and results. Objects keep
// insertion order (so written files diff cleanly and safetensors headers round-trip), numbers
// keep an exact int64 next to the double (token ids, byte offsets above 2^53 stay exact), and the
// parser never trusts its input: depth is bounded, every error names the source, the byte offset
// and line:column.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"

namespace lmembed::json {

class Value;

/// An object's members in insertion order.
using Object = std::vector<std::pair<std::string, Value>>;
/// An array's elements.
using Array = std::vector<Value>;

/// One JSON value: null, bool, number, string, array or object.
class Value {
 public:
  /// The kind of value held.
  enum class Type { null, boolean, number, string, array, object };

  /// null.
  Value() = default;
  /// null (so that Value(nullptr) is not taken for a const char*).
  Value(std::nullptr_t) {}  // NOLINT(google-explicit-constructor)
  /// A boolean.
  Value(bool b) : type_(Type::boolean), bool_(b) {}  // NOLINT(google-explicit-constructor)
  /// An integer (exact).
  Value(int v) : Value(static_cast<long long>(v)) {}  // NOLINT
  /// An integer (exact).
  Value(long v) : Value(static_cast<long long>(v)) {}  // NOLINT
  /// An integer (exact).
  Value(long long v)  // NOLINT
      : type_(Type::number), is_int_(true), int_(v), num_(static_cast<double>(v)) {}
  /// An unsigned integer (exact when it fits int64, else kept as double only).
  Value(unsigned v) : Value(static_cast<long long>(v)) {}  // NOLINT
  /// An unsigned integer (exact when it fits int64, else kept as double only).
  Value(unsigned long v) : Value(static_cast<unsigned long long>(v)) {}  // NOLINT
  /// An unsigned integer (exact when it fits int64, else kept as double only).
  Value(unsigned long long v) : type_(Type::number), num_(static_cast<double>(v)) {  // NOLINT
    if (v <= static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max())) {
      is_int_ = true;
      int_ = static_cast<std::int64_t>(v);
    }
  }
  /// A floating-point number (also exact int64 when integral and in range; -0.0 stays a double
  /// so that it round-trips).
  Value(double v) : type_(Type::number), num_(v) {  // NOLINT
    if (std::isfinite(v) && std::nearbyint(v) == v && !(v == 0 && std::signbit(v)) &&
        v >= -9223372036854775808.0 && v < 9223372036854775808.0) {
      is_int_ = true;
      int_ = static_cast<std::int64_t>(v);
    }
  }
  /// A float (stored as double).
  Value(float v) : Value(static_cast<double>(v)) {}  // NOLINT
  /// A string.
  Value(std::string s) : type_(Type::string), str_(std::move(s)) {}  // NOLINT
  /// A string.
  Value(const char* s) : Value(std::string(s)) {}  // NOLINT
  /// A string.
  Value(std::string_view s) : Value(std::string(s)) {}  // NOLINT

  Value(const Value& o) { *this = o; }
  Value(Value&&) noexcept = default;
  Value& operator=(const Value& o) {
    if (this == &o) return *this;
    type_ = o.type_;
    bool_ = o.bool_;
    is_int_ = o.is_int_;
    int_ = o.int_;
    num_ = o.num_;
    str_ = o.str_;
    arr_ = o.arr_;
    obj_ = o.obj_;
    index_.reset();
    if (o.index_) index_ = std::make_unique<Index>(*o.index_);
    return *this;
  }
  Value& operator=(Value&&) noexcept = default;
  ~Value() = default;

  /// An empty object.
  static Value object() {
    Value v;
    v.type_ = Type::object;
    return v;
  }
  /// An empty array.
  static Value array() {
    Value v;
    v.type_ = Type::array;
    return v;
  }

  Type type() const noexcept { return type_; }
  bool is_null() const noexcept { return type_ == Type::null; }
  bool is_bool() const noexcept { return type_ == Type::boolean; }
  bool is_number() const noexcept { return type_ == Type::number; }
  /// A number with an exact int64 value.
  bool is_integer() const noexcept { return type_ == Type::number && is_int_; }
  bool is_string() const noexcept { return type_ == Type::string; }
  bool is_array() const noexcept { return type_ == Type::array; }
  bool is_object() const noexcept { return type_ == Type::object; }

  /// The boolean (config_error unless a bool).
  bool as_bool() const {
    expect(Type::boolean);
    return bool_;
  }
  /// The number as double (config_error unless a number).
  double as_double() const {
    expect(Type::number);
    return num_;
  }
  /// The number as exact int64 (config_error unless an integral number in range).
  std::int64_t as_int() const {
    expect(Type::number);
    if (!is_int_) throw config_error("json: expected an integer, got " + dump_number());
    return int_;
  }
  /// The string (config_error unless a string).
  const std::string& as_string() const {
    expect(Type::string);
    return str_;
  }
  std::string& as_string() {
    expect(Type::string);
    return str_;
  }
  /// The elements (config_error unless an array).
  const Array& as_array() const {
    expect(Type::array);
    return arr_;
  }
  Array& as_array() {
    expect(Type::array);
    return arr_;
  }
  /// The members in insertion order (config_error unless an object).
  const Object& as_object() const {
    expect(Type::object);
    return obj_;
  }
  /// Mutable members; drops the lookup index since keys may change (lookups stay correct).
  Object& as_object() {
    expect(Type::object);
    index_.reset();
    return obj_;
  }

  /// Number of elements or members (0 for scalars).
  std::size_t size() const noexcept {
    return type_ == Type::array ? arr_.size() : type_ == Type::object ? obj_.size() : 0;
  }

  /// The member `key`, or nullptr when absent or when this is not an object.
  const Value* find(std::string_view key) const {
    if (type_ != Type::object) return nullptr;
    if (index_) {
      auto it = index_->find(std::string(key));
      return it == index_->end() ? nullptr : &obj_[it->second].second;
    }
    for (const auto& [k, v] : obj_)
      if (k == key) return &v;
    return nullptr;
  }
  Value* find(std::string_view key) {
    return const_cast<Value*>(static_cast<const Value&>(*this).find(key));
  }
  /// Whether the object has member `key`.
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  /// The member `key` (config_error "missing key 'k'" when absent).
  const Value& at(std::string_view key) const {
    expect(Type::object);
    if (const Value* v = find(key)) return *v;
    throw config_error("json: missing key '" + std::string(key) + "'");
  }
  /// Element i of an array (config_error when out of range).
  const Value& at(std::size_t i) const {
    expect(Type::array);
    if (i >= arr_.size())
      throw config_error("json: index " + std::to_string(i) + " out of range (size " +
                         std::to_string(arr_.size()) + ")");
    return arr_[i];
  }
  /// The member `key`, inserted as null when absent (a null value becomes an object first).
  Value& operator[](std::string_view key) {
    if (type_ == Type::null) type_ = Type::object;
    expect(Type::object);
    if (Value* v = find(key)) return *v;
    obj_.emplace_back(std::string(key), Value());
    if (index_) index_->emplace(obj_.back().first, obj_.size() - 1);
    maybe_index();
    return obj_.back().second;
  }
  Value& operator[](const char* key) { return (*this)[std::string_view(key)]; }
  /// Appends to an array (a null value becomes an array first).
  void push_back(Value v) {
    if (type_ == Type::null) type_ = Type::array;
    expect(Type::array);
    arr_.push_back(std::move(v));
  }

  /// A short name of the type, for messages.
  static const char* type_name(Type t) noexcept {
    switch (t) {
      case Type::null:
        return "null";
      case Type::boolean:
        return "bool";
      case Type::number:
        return "number";
      case Type::string:
        return "string";
      case Type::array:
        return "array";
      case Type::object:
        return "object";
    }
    return "?";
  }

 private:
  friend class Parser;
  friend std::string dump(const Value&, int);
  friend void dump_to(std::string&, const Value&, int, int);
  using Index = std::unordered_map<std::string, std::size_t>;

  void expect(Type t) const {
    if (type_ != t)
      throw config_error(std::string("json: expected ") + type_name(t) + ", got " +
                         type_name(type_));
  }
  // Large objects (tokenizer vocabularies) get a hash index so lookups stay O(1).
  void maybe_index() {
    if (index_ || obj_.size() < 32) return;
    index_ = std::make_unique<Index>();
    index_->reserve(obj_.size() * 2);
    for (std::size_t i = 0; i < obj_.size(); ++i) index_->emplace(obj_[i].first, i);
  }
  std::string dump_number() const {
    if (is_int_) return std::to_string(int_);
    if (!std::isfinite(num_)) return "null";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, num_);
    std::string out(buf, r.ptr);
    // Keep doubles that print like integers (-0, 1e20 aside) recognisably floating ("-0.0").
    if (out.find_first_of(".e") == std::string::npos) out += ".0";
    return out;
  }

  Type type_ = Type::null;
  bool bool_ = false;
  bool is_int_ = false;
  std::int64_t int_ = 0;
  double num_ = 0;
  std::string str_;
  Array arr_;
  Object obj_;
  std::unique_ptr<Index> index_;
};

/// Parses one JSON text (RFC 8259, no extensions). format_error names `source`, the byte offset
/// and line:column of the first problem.
class Parser {
 public:
  /// Nesting deeper than this is refused (protects the stack from hostile input).
  static constexpr int max_depth = 512;

  Parser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }
  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw format_error(source_, at,
                       what + " (line " + std::to_string(line) + ":" + std::to_string(col) + ")");
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool consume(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) == lit) {
      pos_ += lit.size();
      return true;
    }
    return false;
  }
  Value parse_value(int depth) {
    if (depth > max_depth) fail("nesting deeper than " + std::to_string(max_depth));
    if (pos_ >= s_.size()) fail("unexpected end of input, expected a value");
    const char c = s_[pos_];
    switch (c) {
      case '{':
        return parse_object(depth);
      case '[':
        return parse_array(depth);
      case '"':
        return Value(parse_string());
      case 't':
        if (consume("true")) return Value(true);
        break;
      case 'f':
        if (consume("false")) return Value(false);
        break;
      case 'n':
        if (consume("null")) return Value();
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    }
    fail(std::string("unexpected character '") + printable(c) + "', expected a value");
  }
  static std::string printable(char c) {
    if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f)
      return std::string(1, c);
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
    return buf;
  }
  Value parse_object(int depth) {
    ++pos_;  // '{'
    Value v = Value::object();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key in object");
      const std::size_t key_at = pos_;
      std::string key = parse_string();
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail("expected ':' after object key");
      ++pos_;
      skip_ws();
      Value member = parse_value(depth + 1);
      if (v.find(key)) fail_at(key_at, "duplicate object key '" + key + "'");
      v.obj_.emplace_back(std::move(key), std::move(member));
      if (v.index_) v.index_->emplace(v.obj_.back().first, v.obj_.size() - 1);
      v.maybe_index();
      skip_ws();
      if (pos_ >= s_.size()) fail("unexpected end of input in object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return v;
      }
      fail("expected ',' or '}' in object");
    }
  }
  Value parse_array(int depth) {
    ++pos_;  // '['
    Value v = Value::array();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      v.arr_.push_back(parse_value(depth + 1));
      skip_ws();
      if (pos_ >= s_.size()) fail("unexpected end of input in array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return v;
      }
      fail("expected ',' or ']' in array");
    }
  }
  unsigned hex4() {
    if (s_.size() - pos_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail_at(pos_ - 1, "invalid hex digit in \\u escape");
    }
    return v;
  }
  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string parse_string() {
    const std::size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail_at(start, "unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        // Copy a run of plain characters at once.
        std::size_t end = pos_;
        while (end < s_.size() && s_[end] != '"' && s_[end] != '\\' &&
               static_cast<unsigned char>(s_[end]) >= 0x20)
          ++end;
        out.append(s_.data() + pos_, end - pos_);
        pos_ = end;
        continue;
      }
      ++pos_;
      if (pos_ >= s_.size()) fail_at(start, "unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!consume("\\u")) fail("high surrogate without a low surrogate");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired low surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          fail_at(pos_ - 1, std::string("invalid escape '\\") + printable(e) + "'");
      }
    }
  }
  Value parse_number() {
    const std::size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("invalid number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9'))
        fail("invalid number: digit expected after '.'");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9'))
        fail("invalid number: digit expected in exponent");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    const char* b = s_.data() + start;
    const char* e = s_.data() + pos_;
    if (integral) {
      std::int64_t iv = 0;
      auto r = std::from_chars(b, e, iv);
      if (r.ec == std::errc() && r.ptr == e) return Value(static_cast<long long>(iv));
    }
    double d = 0;
    auto r = std::from_chars(b, e, d);
    if (r.ec == std::errc::result_out_of_range) {
      fail_at(start, "number out of range");
    }
    if (r.ec != std::errc() || r.ptr != e) fail_at(start, "invalid number");
    return Value(d);
  }

  std::string_view s_;
  const std::string& source_;
  std::size_t pos_ = 0;
};

/// Parses `text`; format_error names `source`, byte offset and line:column on any error.
inline Value parse(std::string_view text, const std::string& source = "<json>") {
  return Parser(text, source).parse_document();
}

/// Appends the JSON text of `v` to `out` (indent < 0: compact; else pretty with that indent).
inline void dump_to(std::string& out, const Value& v, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(lvl), ' ');
  };
  auto str = [&](const std::string& s) {
    out += '"';
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      switch (ch) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += ch;
          }
      }
    }
    out += '"';
  };
  switch (v.type_) {
    case Value::Type::null:
      out += "null";
      break;
    case Value::Type::boolean:
      out += v.bool_ ? "true" : "false";
      break;
    case Value::Type::number:
      out += v.dump_number();
      break;
    case Value::Type::string:
      str(v.str_);
      break;
    case Value::Type::array: {
      out += '[';
      if (v.arr_.empty()) {
        out += ']';
        break;
      }
      for (std::size_t i = 0; i < v.arr_.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        dump_to(out, v.arr_[i], indent, level + 1);
      }
      newline(level);
      out += ']';
      break;
    }
    case Value::Type::object: {
      out += '{';
      if (v.obj_.empty()) {
        out += '}';
        break;
      }
      for (std::size_t i = 0; i < v.obj_.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        str(v.obj_[i].first);
        out += indent < 0 ? ":" : ": ";
        dump_to(out, v.obj_[i].second, indent, level + 1);
      }
      newline(level);
      out += '}';
      break;
    }
  }
}

/// The JSON text of `v`: compact when indent < 0, else pretty-printed with `indent` spaces.
/// Numbers round-trip exactly (integers as integers, doubles in shortest form; NaN/inf as null).
inline std::string dump(const Value& v, int indent = -1) {
  std::string out;
  dump_to(out, v, indent, 0);
  return out;
}

}  // namespace lmembed::json
