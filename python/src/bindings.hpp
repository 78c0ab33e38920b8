// python/src/bindings.hpp - what the translation units of the lmembed Python module share.
//
// The module is split into several .cpp files (encoders, train, eval) so that a -j2 build
// compiles the heavy Eigen/lmembed instantiations side by side.
#pragma once

#include <nanobind/nanobind.h>

#include <filesystem>
#include <mutex>
#include <string>

#include "lmembed/encoder.hpp"

namespace lmembed::python {

namespace nb = nanobind;

/// An encoder as Python holds it: the run-time chosen design plus a lock, since one Encoder's
/// scratch state must not be used by two threads at once (the GIL is released while encoding).
struct PyEncoder {
  AnyEncoder enc;
  std::mutex mu;
};

/// The module's encoder designs: the 8 of Tang & Yang 2024 (attention causal | bidirectional x
/// pooling eos | mean | latent | multi_layer), each a compile-time Encoder<A, P> instantiated in
/// encoders.cpp and picked at run time; config_error (listing them) for any other pair.
AnyEncoder make_design(const std::filesystem::path& model, const std::string& attention,
                       const std::string& pooling, const std::filesystem::path& head,
                       const EncoderOptions& options);

/// The default data folder: $LMEMBED_DATA_DIR, else the source tree's data/ the module was
/// built from.
std::filesystem::path default_data_dir();

void bind_train(nb::module_& m);
void bind_eval(nb::module_& m);

}  // namespace lmembed::python
