// libFuzzer target: the .npy reader on arbitrary bytes, then the float conversion.
#include <cstddef>
#include <cstdint>
#include <span>

#include "lmembed/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lmembed::io;
  try {
    const NpyArray a =
        parse_npy(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size),
                  "fuzz.npy");
    const lmembed::Matrix m = a.to_matrix();
    (void)m;
  } catch (const lmembed::error&) {
  }
  return 0;
}
