// lmembed/core/error.hpp - the exception hierarchy every part of lmembed throws.
//
// Every message says what went wrong, where (file, byte offset, tensor, line, shape) and,
// where it helps, what was expected. Nothing in lmembed reports errors any other way.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace lmembed {

/// Base of every exception lmembed throws.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file's bytes are not what its format allows (GGUF, safetensors, npy, JSON, JSONL ...).
/// The message names the file and the byte offset (or line) at fault.
class format_error : public error {
 public:
  /// `file: offset N: what`; use offset = npos when no offset applies.
  format_error(const std::filesystem::path& file, std::uint64_t offset, const std::string& what)
      : error(make_message(file, offset, what)), file_(file.string()), offset_(offset) {}
  /// A message that already names its place.
  explicit format_error(const std::string& what) : error(what) {}

  static constexpr std::uint64_t npos = ~std::uint64_t{0};

  /// The file at fault ("" if none was given).
  const std::string& file() const noexcept { return file_; }
  /// The byte offset at fault, or npos.
  std::uint64_t offset() const noexcept { return offset_; }

 private:
  static std::string make_message(const std::filesystem::path& file, std::uint64_t offset,
                                  const std::string& what) {
    std::string m = file.string();
    if (offset != npos) m += ": offset " + std::to_string(offset);
    return m + ": " + what;
  }
  std::string file_;
  std::uint64_t offset_ = npos;
};

/// Arrays whose shapes do not fit together (names both shapes).
class shape_error : public error {
 public:
  using error::error;
};

/// A configuration (config.json, CLI flags, head sizes, metadata) that is missing or invalid.
class config_error : public error {
 public:
  using error::error;
};

/// The operating system refused a file operation (open, write, rename, mmap ...).
class io_error : public error {
 public:
  using error::error;
};

/// Input values out of their domain (token id out of range, empty sequence ...).
class input_error : public error {
 public:
  using error::error;
};

}  // namespace lmembed
