// Built against an installed lmembed by scripts/test.sh (and by conan's test_package): proves
// that find_package(lmembed) gives a working target by making one real call.
//   lmembed_consumer MODEL.gguf   reads the GGUF header and metadata of MODEL and prints them
//   lmembed_consumer              parses a small GGUF built in memory (no data files needed)
#include <cstring>
#include <iostream>
#include <vector>

#include <lmembed/lmembed.hpp>

namespace {
lmembed::io::GgufFile in_memory_gguf() {
  std::vector<std::byte> b;
  auto put = [&](const void* p, std::size_t n) {
    const auto* c = static_cast<const std::byte*>(p);
    b.insert(b.end(), c, c + n);
  };
  auto u32 = [&](std::uint32_t v) { put(&v, 4); };
  auto u64 = [&](std::uint64_t v) { put(&v, 8); };
  auto str = [&](const char* s) {
    u64(std::strlen(s));
    put(s, std::strlen(s));
  };
  put("GGUF", 4);
  u32(3);
  u64(1);  // tensors
  u64(1);  // metadata
  str("general.architecture");
  u32(8);
  str("llama");
  str("token_embd.weight");
  u32(2);
  u64(4);
  u64(2);
  u32(0);  // F32
  u64(0);
  b.resize((b.size() + 31) / 32 * 32);
  for (int i = 0; i < 8; ++i) {
    const float v = static_cast<float>(i);
    put(&v, 4);
  }
  return lmembed::io::GgufFile::from_bytes(std::move(b), "in-memory.gguf");
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const lmembed::io::GgufFile f =
        argc > 1 ? lmembed::io::GgufFile::open(argv[1]) : in_memory_gguf();
    const std::string arch = f.get_as<std::string>("general.architecture");
    std::cout << "lmembed " << LMEMBED_VERSION_STRING << " consumer: " << f.path().string()
              << ": GGUF v" << f.version() << ", architecture " << arch << ", " << f.keys().size()
              << " metadata keys, " << f.tensors().size() << " tensors";
    if (f.has(arch + ".embedding_length"))
      std::cout << ", embedding length " << f.get_as<int>(arch + ".embedding_length");
    const lmembed::io::TensorView& t = f.tensor("token_embd.weight");
    std::cout << ", token_embd.weight " << lmembed::io::to_string(t.dtype) << " "
              << lmembed::to_string(t.shape) << "\n";
    return f.tensors().empty() ? 1 : 0;
  } catch (const lmembed::error& e) {
    std::cerr << "lmembed consumer: " << e.what() << "\n";
    return 1;
  }
}
