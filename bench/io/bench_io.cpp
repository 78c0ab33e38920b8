// Speed of the file formats: opening models (mmap + metadata parse + tensor index),
// dequantizing each stored type to float, writing/reading safetensors and npy, parsing JSON.
// Bytes/s counters let the types be compared within one run.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>

#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/io/npy.hpp"
#include "lmembed/io/safetensors.hpp"

namespace fs = std::filesystem;
using namespace lmembed;
using namespace lmembed::io;

namespace {
const fs::path data = LMEMBED_DATA_DIR;

void BM_GgufOpen(benchmark::State& st, fs::path p) {
  for (auto _ : st) {
    auto f = GgufFile::open(p);
    benchmark::DoNotOptimize(f.tensors().data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(fs::file_size(p)));
}
BENCHMARK_CAPTURE(BM_GgufOpen, stories260K, data / "models/stories260K.gguf");
BENCHMARK_CAPTURE(BM_GgufOpen, vocab_llama_spm_32k, data / "tokenizer/ggml-vocab-llama-spm.gguf");
BENCHMARK_CAPTURE(BM_GgufOpen, vocab_gpt2_50k, data / "tokenizer/ggml-vocab-gpt-2.gguf");

// Dequantize token_embd.weight (512 x 64) of each stories260K copy.
void BM_ToFloat(benchmark::State& st, fs::path p) {
  const auto f = GgufFile::open(p);
  const TensorView& t = f.tensor("token_embd.weight");
  Matrix m(t.shape[0], t.shape[1]);
  for (auto _ : st) {
    to_float(t, std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * t.numel());
  st.SetLabel(to_string(t.dtype));
}
BENCHMARK_CAPTURE(BM_ToFloat, f32, data / "models/stories260K.gguf");
BENCHMARK_CAPTURE(BM_ToFloat, f16, data / "golden/models/stories260K-f16.gguf");
BENCHMARK_CAPTURE(BM_ToFloat, bf16, data / "golden/models/stories260K-bf16.gguf");
BENCHMARK_CAPTURE(BM_ToFloat, q8_0, data / "golden/models/stories260K-q8_0.gguf");

void BM_SafetensorsOpen(benchmark::State& st) {
  const fs::path p = data / "golden/models/tiny-llama-hf/model.safetensors";
  for (auto _ : st) {
    auto f = SafetensorsFile::open(p);
    benchmark::DoNotOptimize(f.tensors().data());
  }
}
BENCHMARK(BM_SafetensorsOpen);

// Write + read back a 1024 x 256 float matrix (1 MiB), atomically (includes fsync).
void BM_SafetensorsWriteRead(benchmark::State& st) {
  const fs::path p = fs::temp_directory_path() / "lmembed_bench_io.safetensors";
  const Matrix m = Matrix::Random(1024, 256);
  for (auto _ : st) {
    SafetensorsWriter w;
    w.add("m", m);
    w.write(p);
    auto f = SafetensorsFile::open(p);
    benchmark::DoNotOptimize(to_matrix(f.tensor("m")).data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * m.size() * 4);
  fs::remove(p);
}
BENCHMARK(BM_SafetensorsWriteRead)->Unit(benchmark::kMillisecond);

void BM_NpyWriteRead(benchmark::State& st) {
  const fs::path p = fs::temp_directory_path() / "lmembed_bench_io.npy";
  const Matrix m = Matrix::Random(1024, 256);
  for (auto _ : st) {
    write_npy(p, m);
    benchmark::DoNotOptimize(read_npy(p).to_matrix().data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * m.size() * 4);
  fs::remove(p);
}
BENCHMARK(BM_NpyWriteRead)->Unit(benchmark::kMillisecond);

// JSON: a tokenizer.json-like object (50k-entry vocab) parsed and dumped.
void BM_JsonParse(benchmark::State& st) {
  ordered_json vocab = ordered_json::object();
  for (int i = 0; i < 50000; ++i) json::append(vocab, "tok_" + std::to_string(i) + "_\xC4\xA0x", i);
  ordered_json root = ordered_json::object();
  root["model"]["vocab"] = std::move(vocab);
  const std::string text = json::dump(root);
  for (auto _ : st) {
    auto v = json::parse(text);
    benchmark::DoNotOptimize(
        json::find(json::at(json::at(v, "model"), "vocab"), "tok_49999_\xC4\xA0x"));
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(text.size()));
}
BENCHMARK(BM_JsonParse)->Unit(benchmark::kMillisecond);
}  // namespace

BENCHMARK_MAIN();
