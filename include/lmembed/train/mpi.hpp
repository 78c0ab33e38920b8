// lmembed/train/mpi.hpp - train::Communicator over MPI (Open MPI, MPICH; mpirun, Slurm srun).
//
// Part of the optional component lmembed::mpi (CMake option LMEMBED_MPI), which defines
// LMEMBED_WITH_MPI and links MPI::MPI_CXX; without it this header is empty. Errors of MPI calls
// are returned, not fatal (MPI_ERRORS_RETURN), and become io_error naming the call; a rank that
// dies makes mpirun terminate the whole job with a message naming the rank.
#pragma once

#ifdef LMEMBED_WITH_MPI

#include <mpi.h>

#include <climits>
#include <string>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/train/comm.hpp"

namespace lmembed::train {

/// MPI_COMM_WORLD as a Communicator. Initializes MPI if nobody has (and then finalizes it in
/// the destructor); create one per process, after which the process is rank() of size().
class Mpi final : public Communicator {
 public:
  Mpi() : Mpi(nullptr, nullptr) {}
  /// With the program's argc/argv (MPI may consume its own arguments).
  Mpi(int* argc, char*** argv) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      int provided = 0;
      check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owns_ = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  }
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
  ~Mpi() override {
    int fin = 0;
    MPI_Finalized(&fin);
    if (owns_ && !fin) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  void allgatherv_raw(const void* send, void* recv, std::span<const std::int64_t> counts,
                      CommType type) override {
    std::vector<int> cnt(static_cast<std::size_t>(size_)), disp(static_cast<std::size_t>(size_));
    std::int64_t off = 0;
    for (int r = 0; r < size_; ++r) {
      cnt[std::size_t(r)] = to_int(counts[std::size_t(r)], "allgatherv count");
      disp[std::size_t(r)] = to_int(off, "allgatherv displacement");
      off += counts[std::size_t(r)];
    }
    check(MPI_Allgatherv(send, cnt[std::size_t(rank_)], mpi_type(type), recv, cnt.data(),
                         disp.data(), mpi_type(type), MPI_COMM_WORLD),
          "MPI_Allgatherv");
  }

  /// Reduce to rank 0, then broadcast: MPI_Allreduce may associate the sum differently on
  /// different ranks (recursive doubling on non-powers of two), which would let the replicas'
  /// weights drift apart by rounding; one sum broadcast is bit-identical everywhere.
  void allreduce_sum_raw(void* buf, std::int64_t count, CommType type) override {
    const int n = to_int(count, "allreduce count");
    if (rank_ == 0)
      check(MPI_Reduce(MPI_IN_PLACE, buf, n, mpi_type(type), MPI_SUM, 0, MPI_COMM_WORLD),
            "MPI_Reduce");
    else
      check(MPI_Reduce(buf, nullptr, n, mpi_type(type), MPI_SUM, 0, MPI_COMM_WORLD), "MPI_Reduce");
    check(MPI_Bcast(buf, n, mpi_type(type), 0, MPI_COMM_WORLD), "MPI_Bcast");
  }

  void broadcast_raw(void* buf, std::int64_t bytes, int root) override {
    check(MPI_Bcast(buf, to_int(bytes, "broadcast size"), MPI_BYTE, root, MPI_COMM_WORLD),
          "MPI_Bcast");
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

 private:
  static MPI_Datatype mpi_type(CommType t) {
    switch (t) {
      case CommType::f32:
        return MPI_FLOAT;
      case CommType::f64:
        return MPI_DOUBLE;
      case CommType::u64:
        return MPI_UINT64_T;
    }
    return MPI_BYTE;
  }
  static int to_int(std::int64_t v, const char* what) {
    if (v < 0 || v > INT_MAX)
      throw config_error(std::string("MPI: ") + what + " " + std::to_string(v) +
                         " does not fit MPI's int counts");
    return int(v);
  }
  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw io_error(std::string(call) + " failed on rank " + std::to_string(rank_) + ": " +
                   std::string(msg, std::size_t(len)));
  }

  int rank_ = 0, size_ = 1;
  bool owns_ = false;
};

}  // namespace lmembed::train

#endif  // LMEMBED_WITH_MPI
