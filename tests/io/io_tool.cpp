// io_tool: the C++ side of the Python interop test (test_interop.py).
//   io_tool write-safetensors OUT < spec.json   writes the tensors and metadata of the spec
//   io_tool write-npy OUT < spec.json           writes the spec's single tensor as .npy
//   io_tool read-safetensors IN                 prints {"metadata": {...}, "tensors": [...]}
//   io_tool read-npy IN                         prints {"tensors": [...]}
//   io_tool dump-gguf IN OUTDIR [NAME...]       writes each tensor NAME (all when none) of the
//                                               GGUF, dequantized to F32 by to_matrix, as
//                                               OUTDIR/NAME.npy in its own shape; prints
//                                               {"tensors": [{"name", "dtype", "shape"}]}
// spec.json: {"metadata": {k: v}, "tensors": [{"name", "dtype", "shape", "values"}]}. Values are
// printed exactly (integers as integers, floats with round-trip precision).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "lmembed/core/json_util.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/io/npy.hpp"
#include "lmembed/io/safetensors.hpp"

using namespace lmembed;
using namespace lmembed::io;

namespace {

std::vector<std::byte> encode(DType t, const ordered_json::array_t& values) {
  std::vector<std::byte> out;
  auto put = [&](auto v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof v);
  };
  for (const auto& v : values) {
    switch (t) {
      case DType::f32:
        put(static_cast<float>(json::as_double(v)));
        break;
      case DType::f64:
        put(json::as_double(v));
        break;
      case DType::f16:
        put(float_to_half(static_cast<float>(json::as_double(v))));
        break;
      case DType::bf16:
        put(float_to_bf16(static_cast<float>(json::as_double(v))));
        break;
      case DType::i8:
        put(static_cast<std::int8_t>(json::as_int(v)));
        break;
      case DType::u8:
        put(static_cast<std::uint8_t>(json::as_int(v)));
        break;
      case DType::i16:
        put(static_cast<std::int16_t>(json::as_int(v)));
        break;
      case DType::i32:
        put(static_cast<std::int32_t>(json::as_int(v)));
        break;
      case DType::i64:
        put(static_cast<std::int64_t>(json::as_int(v)));
        break;
      default:
        throw config_error(std::string("io_tool: ") + to_string(t) + " is not writable");
    }
  }
  return out;
}

ordered_json decode(const TensorView& t) {
  ordered_json values = ordered_json::array();
  const std::byte* p = t.data.data();
  const auto n = static_cast<std::size_t>(t.numel());
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::f32:
        values.push_back(ordered_json(io::detail::load_le<float>(p + 4 * i)));
        break;
      case DType::f64:
        values.push_back(ordered_json(io::detail::load_le<double>(p + 8 * i)));
        break;
      case DType::f16:
        values.push_back(
            ordered_json(half_to_float(io::detail::load_le<std::uint16_t>(p + 2 * i))));
        break;
      case DType::bf16:
        values.push_back(
            ordered_json(bf16_to_float(io::detail::load_le<std::uint16_t>(p + 2 * i))));
        break;
      case DType::i8:
        values.push_back(ordered_json(static_cast<int>(static_cast<std::int8_t>(p[i]))));
        break;
      case DType::u8:
        values.push_back(ordered_json(static_cast<int>(static_cast<std::uint8_t>(p[i]))));
        break;
      case DType::i16:
        values.push_back(
            ordered_json(static_cast<int>(io::detail::load_le<std::int16_t>(p + 2 * i))));
        break;
      case DType::i32:
        values.push_back(ordered_json(io::detail::load_le<std::int32_t>(p + 4 * i)));
        break;
      case DType::i64:
        values.push_back(
            ordered_json(static_cast<long long>(io::detail::load_le<std::int64_t>(p + 8 * i))));
        break;
      default:  // quantized: only as_float
        break;
    }
  }
  ordered_json out = ordered_json::object();
  out["name"] = t.name;
  out["dtype"] = to_string(t.dtype);
  ordered_json shape = ordered_json::array();
  for (auto d : t.shape) shape.push_back(ordered_json(static_cast<long long>(d)));
  out["shape"] = std::move(shape);
  out["values"] = std::move(values);
  // A second, independent path: the float conversion every model loader uses.
  ordered_json floats = ordered_json::array();
  const Matrix m = to_matrix(t);
  for (Eigen::Index i = 0; i < m.size(); ++i) floats.push_back(ordered_json(m.data()[i]));
  out["as_float"] = std::move(floats);
  return out;
}

Shape shape_of(const ordered_json& s) {
  Shape out;
  for (const auto& d : json::as_array(s)) out.push_back(json::as_int(d));
  return out;
}

}  // namespace

// dump-gguf: one tensor at a time, so the real model needs one tensor's floats at once.
int dump_gguf(const std::filesystem::path& in, const std::filesystem::path& dir,
              const std::vector<std::string>& names) {
  const GgufFile f = GgufFile::open(in);
  std::vector<const TensorView*> todo;
  if (names.empty())
    for (const auto& t : f.tensors()) todo.push_back(&t);
  for (const auto& n : names) todo.push_back(&f.tensor(n));
  std::filesystem::create_directories(dir);
  ordered_json tensors = ordered_json::array();
  for (const TensorView* t : todo) {
    std::vector<float> v(static_cast<std::size_t>(t->numel()));
    to_float(*t, v);
    write_npy(dir / (t->name + ".npy"), DType::f32, t->shape,
              std::span<const std::byte>(reinterpret_cast<const std::byte*>(v.data()),
                                         v.size() * sizeof(float)));
    ordered_json e = ordered_json::object();
    e["name"] = t->name;
    e["dtype"] = to_string(t->dtype);
    ordered_json shape = ordered_json::array();
    for (auto d : t->shape) shape.push_back(ordered_json(static_cast<long long>(d)));
    e["shape"] = std::move(shape);
    tensors.push_back(std::move(e));
  }
  ordered_json out = ordered_json::object();
  out["tensors"] = std::move(tensors);
  std::cout << json::dump(out) << "\n";
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "dump-gguf") {
    try {
      return dump_gguf(argv[2], argv[3], std::vector<std::string>(argv + 4, argv + argc));
    } catch (const lmembed::error& e) {
      std::cerr << "io_tool: " << e.what() << "\n";
      return 1;
    }
  }
  if (argc != 3) {
    std::cerr << "usage: io_tool write-safetensors|write-npy|read-safetensors|read-npy PATH\n"
                 "       io_tool dump-gguf IN OUTDIR [NAME...]\n";
    return 2;
  }
  const std::string cmd = argv[1];
  const std::filesystem::path path = argv[2];
  try {
    if (cmd == "write-safetensors" || cmd == "write-npy") {
      const std::string text((std::istreambuf_iterator<char>(std::cin)), {});
      const ordered_json spec = json::parse(text, "<stdin>");
      if (cmd == "write-npy") {
        const auto& t = json::at(json::at(spec, "tensors"), 0);
        const DType dt = parse_dtype(json::get_string(t, "dtype"));
        const auto bytes = encode(dt, json::get_array(t, "values"));
        write_npy(path, dt, shape_of(json::at(t, "shape")), bytes);
        return 0;
      }
      SafetensorsWriter w;
      for (const auto& t : json::get_array(spec, "tensors")) {
        const DType dt = parse_dtype(json::get_string(t, "dtype"));
        const auto bytes = encode(dt, json::get_array(t, "values"));
        w.add(json::get_string(t, "name"), dt, shape_of(json::at(t, "shape")), bytes);
      }
      if (const ordered_json* m = json::find(spec, "metadata"))
        for (const auto& [k, v] : json::as_object(*m)) w.set_metadata(k, json::as_string(v));
      w.write(path);
      return 0;
    }
    ordered_json out = ordered_json::object();
    ordered_json tensors = ordered_json::array();
    if (cmd == "read-safetensors") {
      const auto f = SafetensorsFile::open(path);
      ordered_json meta = ordered_json::object();
      for (const auto& [k, v] : f.metadata()) meta[k] = v;
      out["metadata"] = std::move(meta);
      for (const auto& t : f.tensors()) tensors.push_back(decode(t));
    } else if (cmd == "read-npy") {
      const NpyArray a = read_npy(path);
      tensors.push_back(decode(a.view("array")));
    } else {
      std::cerr << "io_tool: unknown command " << cmd << "\n";
      return 2;
    }
    out["tensors"] = std::move(tensors);
    std::cout << json::dump(out) << "\n";
    return 0;
  } catch (const lmembed::error& e) {
    std::cerr << "io_tool: " << e.what() << "\n";
    return 1;
  }
}
