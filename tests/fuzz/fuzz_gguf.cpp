// libFuzzer target: the GGUF reader on arbitrary bytes, then every typed getter and every
// tensor conversion. Only lmembed's own exceptions may escape the reader; anything else
// (crash, sanitizer report, std::bad_alloc, std::length_error) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lmembed/io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lmembed::io;
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                               reinterpret_cast<const std::byte*>(data) + size);
  try {
    const GgufFile f = GgufFile::from_bytes(std::move(bytes), "fuzz.gguf");
    for (const std::string& k : f.keys()) {
      const GgufValue& v = f.get(k);
      (void)v.to_display();
      try { (void)f.get_as<std::int64_t>(k); } catch (const lmembed::config_error&) {}
      try { (void)f.get_as<double>(k); } catch (const lmembed::config_error&) {}
      try { (void)f.get_as<std::string>(k); } catch (const lmembed::config_error&) {}
      try { (void)f.get_as<std::vector<std::string>>(k); } catch (const lmembed::config_error&) {}
      try { (void)f.get_as<std::vector<float>>(k); } catch (const lmembed::config_error&) {}
      try { (void)f.get_as<std::vector<std::int32_t>>(k); } catch (const lmembed::config_error&) {}
    }
    for (const TensorView& t : f.tensors()) {
      // The reader guarantees the bytes exist, so this allocation is bounded by the input.
      const lmembed::Matrix m = to_matrix(t);
      (void)m;
      if (f.find_tensor(t.name) != &t) __builtin_trap();
    }
  } catch (const lmembed::error&) {
  }
  return 0;
}
