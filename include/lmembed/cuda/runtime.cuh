// lmembed/cuda/runtime.cuh - RAII owners of CUDA resources, and error checks that throw.
//
// Every CUDA runtime and cuBLAS call goes through LMEMBED_CUDA_CHECK / LMEMBED_CUBLAS_CHECK,
// which throw lmembed::error naming the call, the source place and CUDA's own message; device
// memory, pinned host memory, streams, events and the cuBLAS handle are owned by move-only
// classes, so an exception never leaks them.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <string>
#include <utility>

#include "lmembed/core/error.hpp"

namespace lmembed::cuda {

namespace detail {
/// Throws lmembed::error for a failed CUDA runtime call.
[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  // Clear a non-sticky error (a failed cudaMalloc, a bad launch configuration), so that the next
  // launch check does not report it again; sticky errors (a kernel fault) stay and resurface.
  (void)cudaGetLastError();
  throw error(std::string("CUDA call ") + call + " failed at " + file + ":" + std::to_string(line) +
              ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
/// Name of a cuBLAS status (cublasGetStatusName exists from CUDA 11.4 on).
inline const char* cublas_status_name(cublasStatus_t s) {
  return cublasGetStatusName(s);
}
/// Throws lmembed::error for a failed cuBLAS call.
[[noreturn]] inline void throw_cublas(cublasStatus_t s, const char* call, const char* file,
                                      int line) {
  throw error(std::string("cuBLAS call ") + call + " failed at " + file + ":" +
              std::to_string(line) + ": " + cublas_status_name(s) + " (" +
              cublasGetStatusString(s) + ")");
}
}  // namespace detail

}  // namespace lmembed::cuda

/// Runs a CUDA runtime call and throws lmembed::error naming it if it fails.
/// Declares a kernel defined in a header. It is a template (one unused, defaulted parameter;
/// launched as `k<<<g, b>>>(...)`), so that, like CUB's kernels, it may be defined in every .cu
/// file of a program: a plain __global__ function would be defined twice at link time.
#define LMEMBED_KERNEL template <int = 0> __global__

#define LMEMBED_CUDA_CHECK(call)                                                       \
  do {                                                                                 \
    const cudaError_t lmembed_cuda_e_ = (call);                                        \
    if (lmembed_cuda_e_ != cudaSuccess)                                                \
      ::lmembed::cuda::detail::throw_cuda(lmembed_cuda_e_, #call, __FILE__, __LINE__); \
  } while (0)

/// Runs a cuBLAS call and throws lmembed::error naming it if it fails.
#define LMEMBED_CUBLAS_CHECK(call)                                                         \
  do {                                                                                     \
    const cublasStatus_t lmembed_cublas_s_ = (call);                                       \
    if (lmembed_cublas_s_ != CUBLAS_STATUS_SUCCESS)                                        \
      ::lmembed::cuda::detail::throw_cublas(lmembed_cublas_s_, #call, __FILE__, __LINE__); \
  } while (0)

/// Checks the launch of the kernel just started, naming it (configuration errors surface here;
/// faults inside the kernel surface at the next synchronizing call). `name`: a string literal.
#define LMEMBED_CUDA_CHECK_LAUNCH(name)                                                        \
  do {                                                                                         \
    const cudaError_t lmembed_cuda_e_ = cudaGetLastError();                                    \
    if (lmembed_cuda_e_ != cudaSuccess)                                                        \
      ::lmembed::cuda::detail::throw_cuda(lmembed_cuda_e_, "launch of kernel " name, __FILE__, \
                                          __LINE__);                                           \
  } while (0)

namespace lmembed::cuda {

/// Number of usable CUDA devices; 0 when there is no device or no (recent enough) driver.
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" state
    return 0;
  }
  return n;
}

/// Why no device is usable ("" when one is): the driver's own message, for skip notes.
inline std::string no_device_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  }
  return n == 0 ? "no CUDA device present" : "";
}

/// Owned CUDA stream (non-blocking with respect to the legacy default stream).
class Stream {
 public:
  /// An empty owner (no stream; get() is the legacy default stream).
  Stream() = default;
  /// Creates a stream on the current device.
  static Stream create() {
    Stream st;
    LMEMBED_CUDA_CHECK(cudaStreamCreateWithFlags(&st.s_, cudaStreamNonBlocking));
    return st;
  }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    if (this != &o) {
      if (s_) cudaStreamDestroy(s_);
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  /// The raw handle.
  cudaStream_t get() const noexcept { return s_; }
  /// Waits for all work queued on the stream; throws if any of it failed.
  void synchronize() const { LMEMBED_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

/// Owned CUDA event (for stream ordering and timing).
class Event {
 public:
  /// Creates an event; timing disabled unless asked (cheaper for pure ordering).
  explicit Event(bool timing = false) {
    LMEMBED_CUDA_CHECK(
        cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  Event& operator=(Event&& o) noexcept {
    if (this != &o) {
      if (e_) cudaEventDestroy(e_);
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  /// The raw handle.
  cudaEvent_t get() const noexcept { return e_; }
  /// Records the event on a stream.
  void record(cudaStream_t s) { LMEMBED_CUDA_CHECK(cudaEventRecord(e_, s)); }
  /// Makes stream s wait for this event.
  void wait_on(cudaStream_t s) const { LMEMBED_CUDA_CHECK(cudaStreamWaitEvent(s, e_, 0)); }
  /// Blocks the host until the event completed.
  void synchronize() const { LMEMBED_CUDA_CHECK(cudaEventSynchronize(e_)); }
  /// Milliseconds between two recorded timing events.
  static float elapsed_ms(const Event& start, const Event& stop) {
    float ms = 0.0f;
    LMEMBED_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, stop.e_));
    return ms;
  }

 private:
  cudaEvent_t e_ = nullptr;
};

/// Device memory for `size()` elements of T, owned (cudaMalloc / cudaFree). Never resized
/// behind the caller's back: reserve() reallocates only when asked for more.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Allocates n elements (uninitialized).
  explicit DeviceBuffer(std::size_t n) { reserve(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  /// Ensures room for n elements; reallocates (dropping the contents) only when n > size().
  void reserve(std::size_t n) {
    if (n <= n_) return;
    release();
    void* p = nullptr;
    LMEMBED_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  /// Frees the memory.
  void release() noexcept {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  /// Device pointer.
  T* data() noexcept { return p_; }
  const T* data() const noexcept { return p_; }
  /// Capacity in elements.
  std::size_t size() const noexcept { return n_; }
  /// Capacity in bytes.
  std::size_t bytes() const noexcept { return n_ * sizeof(T); }

  /// Copies host data in (async on stream s; the host memory must stay valid until then, and
  /// be pinned for true overlap).
  void upload(std::span<const T> host, cudaStream_t s = nullptr, std::size_t at = 0) {
    check_range(at, host.size(), "upload");
    LMEMBED_CUDA_CHECK(
        cudaMemcpyAsync(p_ + at, host.data(), host.size_bytes(), cudaMemcpyHostToDevice, s));
  }
  /// Copies device data out to host (async on stream s).
  void download(std::span<T> host, cudaStream_t s = nullptr, std::size_t at = 0) const {
    check_range(at, host.size(), "download");
    LMEMBED_CUDA_CHECK(
        cudaMemcpyAsync(host.data(), p_ + at, host.size_bytes(), cudaMemcpyDeviceToHost, s));
  }
  /// Sets every byte of the first n elements to zero (async on stream s).
  void zero(std::size_t n, cudaStream_t s = nullptr) {
    check_range(0, n, "zero");
    LMEMBED_CUDA_CHECK(cudaMemsetAsync(p_, 0, n * sizeof(T), s));
  }

 private:
  void check_range(std::size_t at, std::size_t n, const char* what) const {
    if (at + n > n_)
      throw shape_error(std::string("cuda::DeviceBuffer::") + what + ": elements [" +
                        std::to_string(at) + ", " + std::to_string(at + n) +
                        ") do not fit a buffer of [" + std::to_string(n_) + "]");
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

/// Page-locked host memory for `size()` elements of T (cudaMallocHost / cudaFreeHost), so that
/// cudaMemcpyAsync really overlaps with kernels.
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  /// Allocates n elements (uninitialized).
  explicit PinnedBuffer(std::size_t n) { reserve(n); }
  ~PinnedBuffer() { release(); }
  PinnedBuffer(PinnedBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  /// Ensures room for n elements (reallocates only when growing).
  void reserve(std::size_t n) {
    if (n <= n_) return;
    release();
    void* p = nullptr;
    LMEMBED_CUDA_CHECK(cudaMallocHost(&p, n * sizeof(T)));
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  /// Frees the memory.
  void release() noexcept {
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* data() noexcept { return p_; }
  const T* data() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }
  /// The elements as a span.
  std::span<T> span() noexcept { return {p_, n_}; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

/// Owned cuBLAS handle bound to one stream.
class CublasHandle {
 public:
  /// An empty owner (no handle).
  CublasHandle() = default;
  /// Creates a handle on the current device whose work goes to stream s.
  static CublasHandle create(cudaStream_t s = nullptr) {
    CublasHandle h;
    LMEMBED_CUBLAS_CHECK(cublasCreate(&h.h_));
    h.set_stream(s);
    return h;
  }
  ~CublasHandle() {
    if (h_) cublasDestroy(h_);
  }
  CublasHandle(CublasHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CublasHandle& operator=(CublasHandle&& o) noexcept {
    if (this != &o) {
      if (h_) cublasDestroy(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  /// Binds the handle to stream s.
  void set_stream(cudaStream_t s) { LMEMBED_CUBLAS_CHECK(cublasSetStream(h_, s)); }
  /// The raw handle.
  cublasHandle_t get() const noexcept { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace lmembed::cuda
