// `lmembed embed|eval --device cuda`: fills device.hpp's hooks with the CUDA backend (compiled
// by nvcc, only when the lmembed::cuda target exists; see CMakeLists.txt).
//   no_device_reason  cuda::no_device_reason (the driver's message, "" when a GPU is usable)
//   make_encoder      cuda::make_encoder: the backbone on the GPU, F32 weights (CPU parity)
//   topk              cuda::search_topk: cuBLAS scores + CUB stable segmented sort, the CPU's
//                     tie order
#include "device.hpp"
#include "lmembed/cuda/encoder.cuh"
#include "lmembed/cuda/retrieval.cuh"
#include "lmembed/cuda/runtime.cuh"

namespace {

namespace lc = lmembed::cuda;

[[maybe_unused]] const bool filled = [] {
  auto& h = lmembed::cli::device_hooks();
  h.no_device_reason = [] { return lc::no_device_reason(); };
  h.make_encoder = [](const std::filesystem::path& model, lmembed::AttentionKind attention,
                      std::string_view pooling, const std::filesystem::path& head,
                      const lmembed::EncoderOptions& options) {
    return lc::make_encoder(model, attention, pooling, head, options);
  };
  h.topk = [](const lmembed::Matrix& queries, const lmembed::Matrix& corpus, std::int64_t k) {
    return lc::search_topk(queries, corpus, k);
  };
  return true;
}();

}  // namespace
