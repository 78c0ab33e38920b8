// lmembed/pooling/head_io.hpp - heads to and from safetensors files.
//
// A head file holds one tensor per parameter under the parameter's dotted name, in PyTorch's
// [out, in] layout (so it loads into the matching PyTorch module with load_state_dict), and a
// __metadata__ block naming the pooling and its sizes, which loading checks.
#pragma once

#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "lmembed/io/safetensors.hpp"
#include "lmembed/nn/param.hpp"

namespace lmembed::pooling::detail {

/// The __metadata__ key that marks an lmembed head file.
inline constexpr const char* head_format_key = "format";
inline constexpr const char* head_format_value = "lmembed.pooling_head";

/// Writes every parameter (F32 for float heads, F64 for double) plus metadata, atomically.
template <class T>
void save_params(const nn::ParamList<T>& params, const std::map<std::string, std::string>& meta,
                 const std::filesystem::path& file) {
  io::SafetensorsWriter w;
  for (const nn::Param<T>* p : params) w.add(p->name, p->value, p->shape);
  w.set_metadata(head_format_key, head_format_value);
  for (const auto& [k, v] : meta) w.set_metadata(k, v);
  w.write(file);
}

/// Checks that `f` is a head file for `pooling` and returns its metadata.
inline const std::map<std::string, std::string>& check_head_file(const io::SafetensorsFile& f,
                                                                 const std::string& pooling,
                                                                 const std::string& file) {
  const auto& m = f.metadata();
  auto it = m.find("pooling");
  if (it == m.end())
    throw config_error(file +
                       ": __metadata__ has no 'pooling' entry (not an lmembed head file; "
                       "a PyTorch state dict needs pooling and sizes added, see "
                       "docs/pooling.md)");
  if (it->second != pooling)
    throw config_error(file + ": a '" + it->second + "' head, expected '" + pooling + "'");
  return m;
}

/// Fills every parameter from the tensor of the same name (F32, F16, BF16 or F64). format_error
/// for a missing or unexpected tensor, shape_error naming both shapes for a mismatch.
template <class T>
void load_params(const io::SafetensorsFile& f, const nn::ParamList<T>& params,
                 const std::string& file) {
  std::set<std::string> wanted;
  for (nn::Param<T>* p : params) {
    wanted.insert(p->name);
    const io::TensorView* t = f.find_tensor(p->name);
    if (!t)
      throw format_error(file, format_error::npos,
                         "missing tensor '" + p->name + "' (shape " + to_string(p->shape) + ")");
    if (t->shape != p->shape)
      throw shape_error(file + ": tensor '" + p->name + "' has shape " + to_string(t->shape) +
                        ", the head expects " + to_string(p->shape));
    const auto n = static_cast<std::size_t>(p->numel());
    T* out = p->value.data();
    if (t->dtype == io::DType::f64) {
      if (t->data.size() != n * sizeof(double))
        throw format_error(file, format_error::npos, "tensor '" + p->name + "' size mismatch");
      for (std::size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, t->data.data() + i * sizeof(double), sizeof(double));
        out[i] = static_cast<T>(v);
      }
    } else if (t->dtype == io::DType::f32 || t->dtype == io::DType::f16 ||
               t->dtype == io::DType::bf16) {
      std::vector<float> tmp(n);
      io::to_float(*t, tmp);
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(tmp[i]);
    } else {
      throw format_error(file, format_error::npos,
                         "tensor '" + p->name + "' has dtype " + io::to_string(t->dtype) +
                             ", a head needs F32, F16, BF16 or F64");
    }
  }
  for (const io::TensorView& t : f.tensors())
    if (!wanted.count(t.name))
      throw format_error(file, format_error::npos,
                         "unexpected tensor '" + t.name + "' (not a parameter of this head)");
}

}  // namespace lmembed::pooling::detail
