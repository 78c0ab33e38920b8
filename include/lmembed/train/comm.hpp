// lmembed/train/comm.hpp - the communicator the distributed trainer talks through.
//
// Four collectives are all data-parallel head training needs: an all-gather with per-rank
// counts (embeddings of each rank's slice of the batch), an in-place all-reduce sum (head
// gradients), a broadcast and a barrier. The interface takes raw buffers plus an element type,
// the shape of both MPI's and NCCL's C APIs, so that an NCCL communicator (device buffers, a
// stream) can implement it later without changing the trainer. Implementations:
//   SingleProcess  - rank 0 of 1, every collective is a copy (this header);
//   Mpi            - MPI_COMM_WORLD (lmembed/train/mpi.hpp, only with LMEMBED_WITH_MPI).
// Every implementation counts the payload bytes it moved (CommStats), for the benchmark and the
// scaling estimate in docs/distributed.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "lmembed/core/error.hpp"

namespace lmembed::train {

/// Element type of a collective's buffer (the subset of MPI/NCCL types the trainer uses).
enum class CommType { f32, f64, u64 };

/// Size in bytes of one element of `t`.
inline std::size_t comm_type_size(CommType t) {
  return t == CommType::f32 ? 4 : 8;
}

/// The CommType of a C++ scalar.
template <class T>
constexpr CommType comm_type_of() {
  if constexpr (std::is_same_v<T, float>)
    return CommType::f32;
  else if constexpr (std::is_same_v<T, double>)
    return CommType::f64;
  else {
    static_assert(std::is_same_v<T, std::uint64_t>, "collectives take float, double, uint64");
    return CommType::u64;
  }
}

/// Payload bytes a communicator moved, per collective kind (what this rank contributed plus
/// what it received for an all-gather; the buffer size for an all-reduce and a broadcast).
struct CommStats {
  std::int64_t allgather_bytes = 0;
  std::int64_t allreduce_bytes = 0;
  std::int64_t broadcast_bytes = 0;
  std::int64_t calls = 0;
  std::int64_t total() const { return allgather_bytes + allreduce_bytes + broadcast_bytes; }
};

/// A group of `size()` processes running the same program; this one is `rank()`.
/// Collectives must be called by every rank in the same order (as MPI's and NCCL's).
class Communicator {
 public:
  virtual ~Communicator() = default;
  /// This process's index, 0 .. size() - 1.
  virtual int rank() const = 0;
  /// Number of processes.
  virtual int size() const = 0;
  /// Short name for messages ("single", "mpi", later "nccl").
  virtual const char* name() const = 0;

  /// Concatenates every rank's `send` in rank order into `recv` on every rank; counts[r] is the
  /// number of elements rank r sends (all ranks pass the same counts).
  virtual void allgatherv_raw(const void* send, void* recv, std::span<const std::int64_t> counts,
                              CommType type) = 0;
  /// In place: every rank's `buf` becomes the element-wise sum over ranks. Every rank gets
  /// bit-identical values (required: the trainer keeps replicas identical by it).
  virtual void allreduce_sum_raw(void* buf, std::int64_t count, CommType type) = 0;
  /// Copies `bytes` bytes of `buf` from `root` to every rank.
  virtual void broadcast_raw(void* buf, std::int64_t bytes, int root) = 0;
  /// Returns once every rank has called it.
  virtual void barrier() = 0;
  /// Terminates every rank of the group with `code` (after an error on one rank, so that the
  /// others do not wait forever in a collective).
  [[noreturn]] virtual void abort(int code) = 0;

  /// Typed all-gather: returns the concatenation, in rank order, of every rank's `send`.
  /// counts[r] must equal rank r's send.size().
  template <class T>
  std::vector<T> allgatherv(std::span<const T> send, std::span<const std::int64_t> counts) {
    check_counts(counts, std::int64_t(send.size()));
    std::int64_t total = 0;
    for (auto c : counts) total += c;
    std::vector<T> out(static_cast<std::size_t>(total));
    allgatherv_raw(send.data(), out.data(), counts, comm_type_of<T>());
    stats_.allgather_bytes += total * std::int64_t(sizeof(T));
    ++stats_.calls;
    return out;
  }
  /// Typed in-place all-reduce sum.
  template <class T>
  void allreduce_sum(std::span<T> buf) {
    allreduce_sum_raw(buf.data(), std::int64_t(buf.size()), comm_type_of<T>());
    stats_.allreduce_bytes += std::int64_t(buf.size() * sizeof(T));
    ++stats_.calls;
  }
  /// Typed broadcast from `root`.
  template <class T>
  void broadcast(std::span<T> buf, int root = 0) {
    broadcast_raw(buf.data(), std::int64_t(buf.size_bytes()), root);
    stats_.broadcast_bytes += std::int64_t(buf.size_bytes());
    ++stats_.calls;
  }
  /// One value from every rank, in rank order.
  template <class T>
  std::vector<T> allgather_one(T value) {
    std::vector<std::int64_t> counts(std::size_t(size()), 1);
    return allgatherv<T>(std::span<const T>(&value, 1), counts);
  }

  /// Bytes moved so far.
  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  void check_counts(std::span<const std::int64_t> counts, std::int64_t mine) const {
    if (std::int64_t(counts.size()) != size())
      throw shape_error("allgatherv: " + std::to_string(counts.size()) + " counts for " +
                        std::to_string(size()) + " ranks");
    if (counts[std::size_t(rank())] != mine)
      throw shape_error("allgatherv: rank " + std::to_string(rank()) + " sends " +
                        std::to_string(mine) + " elements but counts say " +
                        std::to_string(counts[std::size_t(rank())]));
  }

 private:
  CommStats stats_;
};

/// The group of one: what a run without mpirun uses. Collectives are copies, so the
/// distributed trainer on it computes exactly what train::Trainer computes.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* name() const override { return "single"; }
  void allgatherv_raw(const void* send, void* recv, std::span<const std::int64_t> counts,
                      CommType type) override {
    if (counts[0] > 0) std::memcpy(recv, send, std::size_t(counts[0]) * comm_type_size(type));
  }
  void allreduce_sum_raw(void*, std::int64_t, CommType) override {}
  void broadcast_raw(void*, std::int64_t, int root) override {
    if (root != 0) throw config_error("broadcast: root " + std::to_string(root) + " of 1 rank");
  }
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

}  // namespace lmembed::train
