// libFuzzer target: arbitrary bytes decoded as GGML quantized blocks. Byte 0 picks the type
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: byte 0 mod 10), the rest are
// blocks (a partial last block is dropped). Checks, besides the sanitizers:
//  - blocks with finite scales (quant::first_bad_scale finds none) decode to finite values;
//  - a whole run of blocks decodes as the blocks one by one, and as dequantize_row by rows;
//  - the same bytes as a GGUF tensor: GgufFile refuses them exactly when a scale is not finite
//    (a format_error naming the tensor), else to_matrix gives the same bits.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lmembed/io/gguf.hpp"
#include "lmembed/io/quant.hpp"

namespace {

using lmembed::io::DType;

constexpr DType kTypes[] = {DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,
                            DType::q2_k, DType::q3_k, DType::q4_k, DType::q5_k, DType::q6_k};
constexpr std::uint32_t kCodes[] = {2, 3, 6, 7, 8, 10, 11, 12, 13, 14};

template <class T>
void put(std::vector<std::byte>& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lmembed::io;
  if (size < 1) return 0;
  const std::size_t k = data[0] % 10;
  const DType t = kTypes[k];
  const auto bb = static_cast<std::size_t>(block_bytes(t));
  const auto bs = static_cast<std::size_t>(block_size(t));
  const std::size_t n_blocks = (size - 1) / bb;
  if (n_blocks == 0) return 0;
  const auto* src = reinterpret_cast<const std::byte*>(data + 1);

  std::vector<float> all(n_blocks * bs), one(bs);
  quant::dequantize_blocks(t, src, static_cast<std::int64_t>(n_blocks), all.data());
  for (std::size_t i = 0; i < n_blocks; ++i) {
    quant::dequantize_blocks(t, src + i * bb, 1, one.data());
    if (std::memcmp(one.data(), all.data() + i * bs, bs * sizeof(float)) != 0) __builtin_trap();
  }
  // Two rows when the block count is even.
  if (n_blocks % 2 == 0) {
    std::vector<float> row(n_blocks / 2 * bs);
    quant::dequantize_row(t, src + n_blocks / 2 * bb, static_cast<std::int64_t>(row.size()),
                          row.data());
    if (std::memcmp(row.data(), all.data() + row.size(), row.size() * sizeof(float)) != 0)
      __builtin_trap();
  }
  const auto bad = quant::first_bad_scale(t, src, static_cast<std::int64_t>(n_blocks));
  if (!bad)
    for (float v : all)
      if (!std::isfinite(v)) __builtin_trap();

  // The same blocks as tensor "q" [n_blocks * block_size] of a GGUF file.
  std::vector<std::byte> f;
  for (char c : std::string("GGUF")) f.push_back(static_cast<std::byte>(c));
  put(f, std::uint32_t{3});
  put(f, std::uint64_t{1});  // tensors
  put(f, std::uint64_t{0});  // metadata
  put(f, std::uint64_t{1});
  f.push_back(std::byte{'q'});
  put(f, std::uint32_t{1});
  put(f, static_cast<std::uint64_t>(n_blocks * bs));
  put(f, kCodes[k]);
  put(f, std::uint64_t{0});
  f.resize((f.size() + 31) / 32 * 32, std::byte{0});
  f.insert(f.end(), src, src + n_blocks * bb);
  try {
    const GgufFile g = GgufFile::from_bytes(std::move(f), "fuzz_quant.gguf");
    if (bad) __builtin_trap();  // a non-finite scale was let through
    const lmembed::Matrix m = to_matrix(g.tensor("q"));
    if (static_cast<std::size_t>(m.size()) != all.size() ||
        std::memcmp(m.data(), all.data(), all.size() * sizeof(float)) != 0)
      __builtin_trap();
  } catch (const lmembed::format_error& e) {
    if (!bad || std::string(e.what()).find("tensor 'q'") == std::string::npos) __builtin_trap();
  }
  return 0;
}
