// lmembed/core/file.hpp - read-only memory maps, whole-file reads and atomic writes.
//
// Models are memory-mapped so F32 weights are used in place (no copy, shared page cache).
// Every file lmembed writes goes through write_file_atomic: a crash leaves either the old file
// or the new one, never a torn one.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "lmembed/core/error.hpp"

namespace lmembed {

namespace detail {
/// "path: what: strerror(errno)".
inline std::string os_message(const std::filesystem::path& p, const std::string& what, int err) {
  return p.string() + ": " + what + ": " + std::strerror(err);
}
}  // namespace detail

/// A read-only memory map of a whole file (RAII, movable, not copyable).
class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept
      : path_(std::move(o.path_)),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~MappedFile() { unmap(); }

  /// Maps `path` read-only; io_error when it cannot be opened, is not a regular file or
  /// cannot be mapped. An empty file gives an empty span.
  static MappedFile open(const std::filesystem::path& path) {
    MappedFile f;
    f.path_ = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error(detail::os_message(path, "cannot open", errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      throw io_error(detail::os_message(path, "cannot stat", err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw io_error(path.string() + ": not a regular file");
    }
    f.size_ = static_cast<std::size_t>(st.st_size);
    if (f.size_ > 0) {
      void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        f.size_ = 0;
        throw io_error(detail::os_message(path, "cannot mmap", err));
      }
      f.data_ = p;
    }
    ::close(fd);  // the mapping keeps the file alive
    return f;
  }

  /// The file's bytes (valid while this object lives; moving it keeps them valid).
  std::span<const std::byte> bytes() const noexcept {
    return {static_cast<const std::byte*>(data_), size_};
  }
  /// The mapped file's path.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// The file size in bytes.
  std::size_t size() const noexcept { return size_; }

 private:
  void unmap() noexcept {
    if (data_) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  std::filesystem::path path_;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

/// The whole file as a string; io_error when it cannot be read.
inline std::string read_text_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(detail::os_message(path, "cannot open", errno));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw io_error(detail::os_message(path, "cannot read", err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

namespace detail {
inline void write_all(int fd, const std::byte* p, std::size_t n, const std::filesystem::path& tmp) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw io_error(os_message(tmp, "cannot write", errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}
}  // namespace detail

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename over
/// `path`, fsync of the folder. io_error on any failure (the temp file is removed).
inline void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path dir =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const std::filesystem::path tmp =
      dir / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
             std::to_string(counter.fetch_add(1)));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)  // name the file asked for (and its folder), not the temp file
    throw io_error(detail::os_message(
        path, "cannot write (creating a temp file in folder " + dir.string() + ")", errno));
  try {
    detail::write_all(fd, bytes.data(), bytes.size(), tmp);
    if (::fsync(fd) != 0) throw io_error(detail::os_message(tmp, "cannot fsync", errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw io_error(detail::os_message(tmp, "cannot close", err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw io_error(detail::os_message(path, "cannot rename temp file onto", err));
  }
  // Make the rename itself durable.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

/// An advisory lock (flock) on a folder that a command writes, held while the object lives, so
/// that a second writer of the same folder (two `lmembed cache --out D`, two trainings beside
/// one loss.csv) is refused instead of interleaving its files with the first one's. The lock is
/// on the folder itself (no lock file is left), released when the process ends however it ends.
class DirLock {
 public:
  DirLock() = default;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  DirLock(DirLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  DirLock& operator=(DirLock&& o) noexcept {
    if (this != &o) {
      release();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~DirLock() { release(); }

  /// Creates `dir` if needed and locks it; io_error naming it when another process holds the
  /// lock (`what` says who is refused, e.g. "lmembed cache").
  static DirLock acquire(const std::filesystem::path& dir, const std::string& what) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw io_error(dir.string() + ": cannot create folder: " + ec.message());
    DirLock l;
    l.fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (l.fd_ < 0) throw io_error(detail::os_message(dir, "cannot open folder", errno));
    if (::flock(l.fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err == EWOULDBLOCK)
        throw io_error(dir.string() + ": another process is writing this folder (" + what +
                       " refuses to share it; wait for the other run or choose another folder)");
      throw io_error(detail::os_message(dir, "cannot lock folder", err));
    }
    return l;
  }

 private:
  void release() noexcept {
    if (fd_ >= 0) ::close(fd_);  // closing the last descriptor drops the flock
    fd_ = -1;
  }
  int fd_ = -1;
};

/// Writes `text` to `path` atomically (see the byte overload).
inline void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  write_file_atomic(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

}  // namespace lmembed
