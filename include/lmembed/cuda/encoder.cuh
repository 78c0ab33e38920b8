// lmembed/cuda/encoder.cuh - Encoder<Attention, Pooling, backend::cuda>: the one Encoder
// (encoder.hpp) with its backbone on the GPU.
//
//   #include "lmembed/cuda/encoder.cuh"   // in a .cu file; link lmembed::cuda
//   using Enc = lmembed::Encoder<lmembed::attention::bidirectional, lmembed::pooling::mean,
//                                lmembed::backend::cuda>;
//   auto enc = Enc::load("qwen2-0.5b.gguf");
//   lmembed::Matrix e = enc.encode(texts);   // same rows as the CPU encoder, within 1e-4
//
// This file only says what backend::cuda means to an Encoder: its backbone is
// cuda::DeviceBackbone (the decoder of backbone/decoder.hpp over the CUDA executor), loaded with
// cuda::DeviceOptions. Tokenization, batching, the EOS check, pooling and normalization are the
// Encoder's own; the pooling heads run on the host over the captured states. backbone() has no
// CPU Backbone to return and throws config_error; use device_backbone().
#pragma once

#include <filesystem>
#include <string_view>

#include "lmembed/cuda/backbone.cuh"
#include "lmembed/encoder.hpp"

namespace lmembed {

namespace detail {
template <>
struct BackendTraits<backend::cuda> {
  using backbone_type = cuda::DeviceBackbone;
  using options = cuda::DeviceOptions;
  static constexpr const char* progress_suffix = " (cuda)";
  /// EncoderOptions::weights does not apply: the device keeps F32 or BF16
  /// (DeviceOptions::precision).
  static cuda::DeviceBackbone load(const std::filesystem::path& model, const EncoderOptions&,
                                   const options& device) {
    return cuda::DeviceBackbone::load(model, device);
  }
  static void set_threads(cuda::DeviceBackbone&, int) {}
  [[noreturn]] static const Backbone& host_backbone(const cuda::DeviceBackbone&) {
    throw config_error(
        "Encoder<..., backend::cuda> keeps its backbone on the GPU: use device_backbone()");
  }
};
}  // namespace detail

namespace cuda {

/// make_encoder() with the backbone on the GPU (`--device cuda`): same choices, same errors.
inline AnyEncoder make_encoder(const std::filesystem::path& model, AttentionKind attention,
                               std::string_view pooling_name,
                               const std::filesystem::path& head_file = {},
                               const EncoderOptions& options = {},
                               const DeviceOptions& device = {}) {
  (void)pooling::capture_of(pooling_name);  // config_error listing the names, before loading
  Tokenizer t = Tokenizer::load(model);
  return lmembed::detail::make_encoder_on<backend::cuda>(DeviceBackbone::load(model, device),
                                                         std::move(t), attention, pooling_name,
                                                         head_file, options);
}

}  // namespace cuda

}  // namespace lmembed
