// lmembed/lmembed.hpp - the umbrella header: everything of lmembed's CPU library.
//
// Optional parts have their own headers and targets: lmembed/interop/xtensor.hpp
// (lmembed::xtensor), lmembed/cuda/*.cuh (lmembed::cuda), lmembed/train/mpi.hpp (lmembed::mpi).
#pragma once

#include "lmembed/version.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/core/batch.hpp"
#include "lmembed/core/json.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/io/tensor_view.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/io/safetensors.hpp"
#include "lmembed/io/npy.hpp"
#include "lmembed/attention/attention.hpp"
#include "lmembed/backbone/backbone.hpp"
#include "lmembed/eval/eval.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/core/backend.hpp"
#include "lmembed/nn/param.hpp"
#include "lmembed/nn/init.hpp"
#include "lmembed/nn/linear.hpp"
#include "lmembed/nn/layernorm.hpp"
#include "lmembed/nn/activation.hpp"
#include "lmembed/nn/attention.hpp"
#include "lmembed/nn/reduce.hpp"
#include "lmembed/pooling/pooling.hpp"
#include "lmembed/encoder.hpp"
#include "lmembed/compare/compare.hpp"
