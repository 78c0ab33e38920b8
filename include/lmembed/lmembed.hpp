// lmembed/lmembed.hpp - the umbrella header: everything of lmembed's CPU library.
//
// Optional parts have their own headers and targets: lmembed/interop/xtensor.hpp
// (lmembed::xtensor), lmembed/cuda/*.cuh (lmembed::cuda), lmembed/train/mpi.hpp (lmembed::mpi).
#pragma once

#include "lmembed/version.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/core/batch.hpp"
