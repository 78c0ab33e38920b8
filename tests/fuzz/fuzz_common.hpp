// tests/fuzz/fuzz_common.hpp - helpers shared by the libFuzzer targets that read files from a
// folder (tokenizer.json, training JSONL, task folders, caches, heads): a private scratch folder
// per process, writing an input's parts as files, and a check that fails the run loudly.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace lmembed_fuzz {

/// A folder of this process's own (under $TMPDIR, /dev/shm when it exists: no disk writes),
/// emptied by fresh() before every input.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    namespace fs = std::filesystem;
    const char* t = std::getenv("TMPDIR");
    fs::path base = t ? fs::path(t) : fs::exists("/dev/shm") ? fs::path("/dev/shm") : "/tmp";
    fs::path d = base / ("lmembed_fuzz_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  // Removed when the fuzzer exits normally (a crash leaves it for the reproducer's sake).
  static const struct Cleanup {
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup;
  return dir;
}

/// An empty scratch sub-folder `name` (removed and re-created).
inline std::filesystem::path fresh(const std::string& name) {
  const auto d = scratch() / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

/// Writes bytes to `p` (creating its folder).
inline void put(const std::filesystem::path& p, std::string_view bytes) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

/// The input split at every '\x1e' (ASCII record separator, in the dictionaries): the parts
/// are the files of a folder layout, in a fixed order.
inline std::vector<std::string_view> parts(std::string_view in, std::size_t max_parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max_parts) {
    const auto p = in.find('\x1e');
    if (p == std::string_view::npos) break;
    out.push_back(in.substr(0, p));
    in.remove_prefix(p + 1);
  }
  out.push_back(in);
  return out;
}

/// Whether `s` is well-formed UTF-8 (shortest forms, no surrogates, <= U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n;
  }
  return true;
}

/// Fails the run (libFuzzer saves the input) when a promise of the code under test is broken.
#define LMEMBED_FUZZ_CHECK(cond, what)                                           \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "lmembed fuzz check failed: %s (%s)\n", what, #cond); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

}  // namespace lmembed_fuzz
