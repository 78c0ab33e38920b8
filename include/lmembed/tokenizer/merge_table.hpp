// lmembed/tokenizer/merge_table.hpp - the BPE merge rules: an open-addressing map
// (left id, right id) -> (rank, merged id).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace lmembed::detail {

/// Open-addressing map (left id, right id) -> (rank, merged id), read-only after building.
class MergeTable {
 public:
  struct Entry {
    std::uint64_t key = kEmpty;
    std::int32_t rank = 0;
    std::int32_t id = 0;
  };
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};

  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Entry{});
    mask_ = cap - 1;
  }
  /// Inserts unless the pair is present (the first, lowest-rank merge of a pair wins).
  void insert(std::int32_t a, std::int32_t b, std::int32_t rank, std::int32_t id) {
    if (size_ * 2 >= slots_.size()) grow();
    const std::uint64_t k = key(a, b);
    for (std::size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = Entry{k, rank, id};
        ++size_;
        return;
      }
      if (slots_[i].key == k) return;
    }
  }
  /// The merge of (a, b), or nullptr.
  const Entry* find(std::int32_t a, std::int32_t b) const noexcept {
    if (slots_.empty()) return nullptr;
    const std::uint64_t k = key(a, b);
    for (std::size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i];
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  std::size_t size() const noexcept { return size_; }

 private:
  static std::uint64_t key(std::int32_t a, std::int32_t b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  static std::size_t hash(std::uint64_t k) noexcept {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<std::size_t>(k);
  }
  void grow() {
    std::vector<Entry> old = std::move(slots_);
    reserve(std::max<std::size_t>(old.size(), 8));
    size_ = 0;
    for (const Entry& e : old)
      if (e.key != kEmpty) {
        const std::size_t a = static_cast<std::size_t>(e.key >> 32);
        insert(static_cast<std::int32_t>(a), static_cast<std::int32_t>(e.key & 0xffffffffu), e.rank,
               e.id);
      }
  }
  std::vector<Entry> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace lmembed::detail
