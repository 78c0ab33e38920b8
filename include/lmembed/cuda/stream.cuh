// lmembed/cuda/stream.cuh - pinned, double-buffered host -> device streaming, overlapped with
// compute on a second stream.
//
// Training reads cached hidden states from memory-mapped shards; copying them to the GPU must
// not stall the kernels. stream_batches() keeps two slots, each a pinned host buffer plus a
// device buffer: while the compute stream works on slot i % 2, the host fills the other slot's
// pinned buffer and the copy stream uploads it. Events order the reuse of each slot:
//   host fill (slot s)  waits  the previous upload from slot s  (copied[s])
//   upload (slot s)     waits  the compute that last read slot s (consumed[s])
//   compute (slot s)    waits  the upload into slot s           (ready[s])
// so no buffer is overwritten while it is read, and the host never waits for compute unless
// both slots are busy.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "lmembed/cuda/runtime.cuh"

namespace lmembed::cuda {

/// Streams n batches to the device. `fill(i, span<std::byte> pinned)` writes batch i into the
/// pinned buffer (at most max_bytes) and returns its size; `consume(i, const std::byte* device,
/// std::size_t bytes, cudaStream_t compute)` queues the work on batch i on the compute stream
/// (it must not keep the pointer past that work). Returns after all work has finished.
template <class Fill, class Consume>
void stream_batches(std::int64_t n, std::size_t max_bytes, Fill&& fill, Consume&& consume,
                    cudaStream_t compute) {
  if (n <= 0) return;
  Stream copy = Stream::create();
  std::array<PinnedBuffer<std::byte>, 2> host{PinnedBuffer<std::byte>(max_bytes),
                                              PinnedBuffer<std::byte>(max_bytes)};
  std::array<DeviceBuffer<std::byte>, 2> dev{DeviceBuffer<std::byte>(max_bytes),
                                             DeviceBuffer<std::byte>(max_bytes)};
  std::array<Event, 2> copied{Event(), Event()}, ready{Event(), Event()},
      consumed{Event(), Event()};
  std::array<bool, 2> used{false, false};
  for (std::int64_t i = 0; i < n; ++i) {
    const std::size_t s = static_cast<std::size_t>(i % 2);
    if (used[s]) copied[s].synchronize();  // the pinned buffer's last upload has finished
    const std::size_t bytes = fill(i, std::span<std::byte>(host[s].data(), max_bytes));
    if (bytes > max_bytes)
      throw shape_error("cuda::stream_batches: batch " + std::to_string(i) + " has " +
                        std::to_string(bytes) + " bytes, more than the " +
                        std::to_string(max_bytes) + " reserved");
    if (used[s]) consumed[s].wait_on(copy.get());  // compute is done reading dev[s]
    LMEMBED_CUDA_CHECK(
        cudaMemcpyAsync(dev[s].data(), host[s].data(), bytes, cudaMemcpyHostToDevice, copy.get()));
    copied[s].record(copy.get());
    ready[s].record(copy.get());
    ready[s].wait_on(compute);
    consume(i, static_cast<const std::byte*>(dev[s].data()), bytes, compute);
    consumed[s].record(compute);
    used[s] = true;
  }
  LMEMBED_CUDA_CHECK(cudaStreamSynchronize(compute));
  copy.synchronize();
}

}  // namespace lmembed::cuda
