// lmembed/train/random.hpp - the trainer's random numbers and the cache's checksum.
//
// Own generator (xoshiro256**, seeded by splitmix64) rather than std::mt19937 + distributions,
// whose outputs differ between standard libraries: a run must replay bit for bit from its seed,
// and its whole state (four words) goes into a checkpoint.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "lmembed/core/error.hpp"

namespace lmembed::train {

/// xoshiro256** (Blackman & Vigna): small, fast, and its state is four words to checkpoint.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  /// Re-initialises the state from a seed with splitmix64 (as the authors recommend).
  void reseed(std::uint64_t seed) {
    for (auto& w : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      w = z ^ (z >> 31);
    }
  }
  /// Next 64 random bits.
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform integer in [0, n) (modulo; the bias, n / 2^64, is irrelevant here).
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  /// Fisher-Yates shuffle with this generator.
  template <class V>
  void shuffle(V& v) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

  /// The state as 64 hex digits, for checkpoints.
  std::string state() const {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (auto w : s_)
      for (int b = 60; b >= 0; b -= 4) out += hex[(w >> b) & 15];
    return out;
  }
  /// Restores state(); config_error when the string is not 64 hex digits.
  void set_state(const std::string& s) {
    if (s.size() != 64) throw config_error("Rng state must be 64 hex digits, got '" + s + "'");
    for (int k = 0; k < 4; ++k) {
      std::uint64_t w = 0;
      for (int i = 0; i < 16; ++i) {
        const char c = s[k * 16 + i];
        const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) throw config_error("Rng state must be 64 hex digits, got '" + s + "'");
        w = (w << 4) | std::uint64_t(v);
      }
      s_[k] = w;
    }
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<std::uint64_t, 4> s_{};
};

/// 64-bit checksum of a byte range (FNV-1a over 8-byte little-endian words, then the tail):
/// detects torn or corrupted cache shards; not cryptographic.
inline std::uint64_t checksum64(std::span<const std::byte> bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const std::size_t n8 = bytes.size() / 8;
  for (std::size_t i = 0; i < n8; ++i) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i * 8, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  for (std::size_t i = n8 * 8; i < bytes.size(); ++i)
    h = (h ^ std::uint64_t(bytes[i])) * 0x100000001b3ULL;
  return h;
}

/// A 64-bit value as 16 hex digits.
inline std::string to_hex(std::uint64_t v) {
  static const char* hex = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = hex[v & 15];
  return out;
}

}  // namespace lmembed::train
