// lmembed/train/world.hpp - the process group of this run (MPI_COMM_WORLD under mpirun, else
// the group of one), shared by `lmembed cache` and `lmembed train`.
#pragma once

#include <cstdlib>

#include "lmembed/train/comm.hpp"
#include "lmembed/train/mpi.hpp"

namespace lmembed::train {

/// True when this process was started by an MPI launcher (mpirun/mpiexec of Open MPI, MPICH,
/// Intel MPI, MVAPICH, or Slurm's srun with PMI/PMIx).
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

/// The process group of this run: MPI_COMM_WORLD when the program was built with lmembed::mpi
/// and started by an MPI launcher, else the group of one. One object for the whole process
/// (MPI can be initialized once); what `lmembed train` hands its trainer and `lmembed cache`
/// to build_cache.
inline Communicator& world() {
#ifdef LMEMBED_WITH_MPI
  if (launched_by_mpi()) {
    static Mpi comm;
    return comm;
  }
#endif
  static SingleProcess single;
  return single;
}

}  // namespace lmembed::train
