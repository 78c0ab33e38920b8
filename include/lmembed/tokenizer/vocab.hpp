// lmembed/tokenizer/vocab.hpp - a vocabulary's lookup parts: token attributes (llama.cpp's token
// types as bit flags) and the open-addressing table token text -> id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lmembed::detail {

/// Token attributes (llama.cpp's token types), as bit flags.
enum TokenAttr : std::uint8_t {
  kAttrNormal = 1,
  kAttrUnknown = 2,
  kAttrControl = 4,
  kAttrUserDefined = 8,
  kAttrUnused = 16,
  kAttrByte = 32,
};

/// Open-addressing table text -> token id. The token texts are copied into one contiguous arena
/// so that a lookup touches little memory (most SPM bigram lookups miss and stop at the stored
/// hash; hits compare against the arena).
class TokenTable {
 public:
  /// Indexes `tokens`. Later duplicates win, as in llama.cpp's token_to_id.
  void build(const std::vector<std::string>& tokens) {
    arena_.clear();
    offsets_.assign(1, 0);
    for (const std::string& t : tokens) {
      arena_ += t;
      offsets_.push_back(static_cast<std::uint32_t>(arena_.size()));
    }
    std::size_t cap = 16;
    while (cap < tokens.size() * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (std::size_t i = 0; i < tokens.size(); ++i) insert(tokens[i], static_cast<std::int32_t>(i));
  }
  /// The id of `text`, or -1.
  std::int32_t find(std::string_view text) const noexcept {
    if (slots_.empty()) return -1;
    const std::uint32_t h = hash(text);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == h && text_of(s.id) == text) return s.id;
    }
  }
  static std::uint32_t hash(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a, then a final mix
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return static_cast<std::uint32_t>(h);
  }

 private:
  struct Slot {
    std::uint32_t hash = 0;
    std::int32_t id = -1;
  };
  std::string_view text_of(std::int32_t id) const noexcept {
    const auto i = static_cast<std::size_t>(id);
    return std::string_view(arena_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }
  void insert(std::string_view text, std::int32_t id) {
    const std::uint32_t h = hash(text);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0 || (s.hash == h && text_of(s.id) == text)) {
        s = Slot{h, id};
        return;
      }
    }
  }
  std::string arena_;
  std::vector<std::uint32_t> offsets_;
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
};

/// Hash for heterogeneous (string_view) lookups in string-keyed maps.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return TokenTable::hash(s); }
};
using TokenMap = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

}  // namespace lmembed::detail
