// The lmembed CLI's `--device cpu|cuda`: a registry of device hooks.
//
// The CLI's .cpp files are compiled by the host compiler and cannot include the CUDA headers
// (lmembed/cuda/*.cuh hold kernels). When the tool is built with the lmembed::cuda target, the
// nvcc-compiled examples/lmembed/*.cu files fill these hooks at static-initialization time,
// like cli.hpp's Register:
//   // cuda_device.cu
//   static const bool filled = [] { lmembed::cli::device_hooks().topk = ...; return true; }();
// A subcommand asks for `--device cuda` through require_device(), which throws a clear
// config_error when the build has no CUDA or the machine has no usable GPU, and then calls the
// hook. A build without CUDA leaves every hook empty.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/attention/attention.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/encoder.hpp"
#include "lmembed/eval/topk.hpp"

namespace lmembed::cli {

namespace train_command {
struct Options;  // train_command.hpp
}

/// Where the work of a subcommand runs.
enum class Device { cpu, cuda };

/// The flag's spelling of a device.
inline const char* to_string(Device d) {
  return d == Device::cuda ? "cuda" : "cpu";
}

/// Parses `--device`'s value; config_error listing the valid names otherwise.
inline Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  throw config_error("unknown device '" + std::string(name) + "' (valid: cpu, cuda)");
}

/// The device implementations the nvcc-compiled part of the tool provides. Empty hooks mean
/// "not built with CUDA".
struct DeviceHooks {
  /// Why no GPU is usable ("" when one is): the CUDA driver's own message.
  std::function<std::string()> no_device_reason;
  /// lmembed::cuda::make_encoder: the backbone on the GPU, tokenizer and pooling as on the CPU
  /// (model, attention, pooling name, head file or "", options).
  std::function<AnyEncoder(const std::filesystem::path& model, AttentionKind attention,
                           std::string_view pooling, const std::filesystem::path& head,
                           const EncoderOptions& options)>
      make_encoder;
  /// lmembed::cuda::search_topk: exact top-k of every query row over the corpus rows by inner
  /// product, best first, equal scores to the smaller corpus row (as eval::search_topk).
  std::function<std::vector<std::vector<eval::Hit>>(const Matrix& queries, const Matrix& corpus,
                                                    std::int64_t k)>
      topk;
  /// `lmembed train --device cuda`: receives the parsed options of the subcommand, returns the
  /// exit status (filled by cuda_train.cu; cmd_train decides how it calls it).
  std::function<int(const train_command::Options& options)> train;
};

/// The tool's device hooks (one instance; filled before main by the .cu files, if any).
inline DeviceHooks& device_hooks() {
  static DeviceHooks h;
  return h;
}

/// Whether this lmembed was built with the CUDA backend.
inline bool built_with_cuda() {
  return static_cast<bool>(device_hooks().no_device_reason);
}

/// Checks that `d` can run here: config_error for `cuda` in a build without CUDA or on a
/// machine without a usable GPU (naming the driver's reason). `cpu` always can.
inline void require_device(Device d) {
  if (d == Device::cpu) return;
  if (!built_with_cuda())
    throw config_error(
        "--device cuda: this lmembed was built without CUDA (configure with -DLMEMBED_CUDA=ON)");
  if (const std::string why = device_hooks().no_device_reason(); !why.empty())
    throw config_error("--device cuda: no usable GPU (" + why + ")");
}

}  // namespace lmembed::cli
