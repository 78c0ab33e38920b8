// Tests of the file formats on the real files in data/ (stories260K and its F16/BF16/Q8_0
// copies, the golden tiny models in GGUF and HF safetensors layout) and round trips.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <limits>
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
const fs::path data_dir = LMEMBED_DATA_DIR;
const fs::path stories = data_dir / "models/stories260K.gguf";
const fs::path golden_models = data_dir / "golden/models";

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("lmembed_io_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST(Gguf, Stories260KFacts) {
  const auto f = GgufFile::open(stories);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_as<std::string>("general.architecture"), "llama");
  EXPECT_EQ(f.get_as<int>("llama.block_count"), 5);
  EXPECT_EQ(f.get_as<int>("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_as<int>("llama.feed_forward_length"), 172);
  EXPECT_EQ(f.get_as<int>("llama.attention.head_count"), 8);
  EXPECT_EQ(f.get_as<int>("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_as<std::int64_t>("llama.context_length"), 2048);
  EXPECT_FLOAT_EQ(f.get_as<float>("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  const auto tokens = f.get_as<std::vector<std::string>>("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(f.get_as<std::vector<float>>("tokenizer.ggml.scores").size(), 512u);
  EXPECT_EQ(f.get_as<std::vector<std::int32_t>>("tokenizer.ggml.token_type").size(), 512u);
  EXPECT_EQ(f.get_as<std::uint32_t>("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f.get_as<std::uint32_t>("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_FALSE(f.has("tokenizer.ggml.add_bos_token"));
  EXPECT_TRUE(f.get_or("tokenizer.ggml.add_bos_token", true));
  EXPECT_THROW(f.get("no.such.key"), config_error);
  EXPECT_THROW(f.get_as<int>("general.architecture"), config_error);
  EXPECT_THROW(f.get_as<std::int8_t>("tokenizer.ggml.padding_token_id"), config_error);

  // 3 global tensors + 9 per block, all F32, shapes outermost-first.
  ASSERT_EQ(f.tensors().size(), 3u + 5u * 9u);
  const auto expect = [&](const std::string& name, Shape shape) {
    const TensorView& t = f.tensor(name);
    EXPECT_EQ(t.dtype, DType::f32) << name;
    EXPECT_EQ(t.shape, shape) << name;
    EXPECT_EQ(t.data.size(), static_cast<std::size_t>(t.numel()) * 4) << name;
    // Zero-copy: the view points into the mapped file, aligned to general.alignment.
    const auto off = static_cast<std::uint64_t>(t.data.data() - f.bytes().data());
    EXPECT_GE(off, f.data_offset());
    EXPECT_EQ((off - f.data_offset()) % f.alignment(), 0u);
  };
  expect("token_embd.weight", {512, 64});
  expect("output_norm.weight", {64});
  expect("output.weight", {512, 64});
  for (int l = 0; l < 5; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    expect(b + "attn_q.weight", {64, 64});
    expect(b + "attn_k.weight", {32, 64});
    expect(b + "attn_v.weight", {32, 64});
    expect(b + "attn_output.weight", {64, 64});
    expect(b + "attn_norm.weight", {64});
    expect(b + "ffn_gate.weight", {172, 64});
    expect(b + "ffn_down.weight", {64, 172});
    expect(b + "ffn_up.weight", {172, 64});
    expect(b + "ffn_norm.weight", {64});
  }
  EXPECT_THROW(f.tensor("blk.5.attn_q.weight"), format_error);
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  const Matrix emb = to_matrix(f.tensor("token_embd.weight"));
  const auto map = map_f32(f.tensor("token_embd.weight"));
  EXPECT_EQ(emb, Matrix(map));
  EXPECT_TRUE(emb.allFinite());
  EXPECT_GT(emb.cwiseAbs().maxCoeff(), 0.01f);
}

// The lower-precision copies dequantize to the F32 values within their format's precision.
TEST(Gguf, DequantizedCopiesMatchF32) {
  const auto ref = GgufFile::open(stories);
  struct Case {
    const char* file;
    DType matrix_type;
    double rel;  // per-value relative tolerance (Q8_0: of the block's max |value|)
  };
  for (const Case c : {Case{"stories260K-f16.gguf", DType::f16, 1.0 / 2048},
                       Case{"stories260K-bf16.gguf", DType::bf16, 1.0 / 256},
                       Case{"stories260K-q8_0.gguf", DType::q8_0, 1.0 / 127}}) {
    SCOPED_TRACE(c.file);
    const auto f = GgufFile::open(golden_models / c.file);
    ASSERT_EQ(f.tensors().size(), ref.tensors().size());
    int quantized = 0;
    for (const TensorView& r : ref.tensors()) {
      const TensorView& t = f.tensor(r.name);
      EXPECT_EQ(t.shape, r.shape) << r.name;
      const bool norm = r.shape.size() == 1;
      if (norm) {
        EXPECT_EQ(t.dtype, DType::f32) << r.name;
      } else if (c.matrix_type == DType::q8_0 && r.name.find("ffn_down") != std::string::npos) {
        EXPECT_EQ(t.dtype, DType::f16) << r.name;  // 172 is not a multiple of 32
      } else {
        EXPECT_EQ(t.dtype, c.matrix_type) << r.name;
        ++quantized;
      }
      const Matrix a = to_matrix(r), b = to_matrix(t);
      ASSERT_EQ(a.rows(), b.rows());
      ASSERT_EQ(a.cols(), b.cols());
      const double tol = t.dtype == DType::q8_0 ? c.rel : t.dtype == DType::f32 ? 0 : c.rel;
      const float* pa = a.data();
      const float* pb = b.data();
      for (Eigen::Index i = 0; i < a.size(); i += 32) {
        float block_max = 0;
        for (Eigen::Index j = i; j < std::min(i + 32, a.size()); ++j)
          block_max = std::max(block_max, std::fabs(pa[j]));
        for (Eigen::Index j = i; j < std::min(i + 32, a.size()); ++j) {
          const double scale = t.dtype == DType::q8_0 ? block_max : std::fabs(pa[j]);
          ASSERT_LE(std::fabs(pa[j] - pb[j]), tol * scale * 1.01 + 1e-7)
              << r.name << " element " << j;
        }
      }
    }
    EXPECT_EQ(quantized, c.matrix_type == DType::q8_0 ? 32 : 37);  // 2 + 5 x 7 matrices
  }
}

// The HF copies hold the GGUF's values bit for bit (q/k are permuted per head, so compare
// tensors that are not).
TEST(Safetensors, GoldenHfCopiesMatchGguf) {
  for (const char* name : {"tiny-llama", "tiny-qwen2"}) {
    SCOPED_TRACE(name);
    const auto g = GgufFile::open(golden_models / (std::string(name) + ".gguf"));
    const auto s =
        SafetensorsFile::open(golden_models / (std::string(name) + "-hf") / "model.safetensors");
    const auto cfg =
        json::parse(read_text_file(golden_models / (std::string(name) + "-hf") / "config.json"));
    const int layers = static_cast<int>(json::get_int(cfg, "num_hidden_layers"));
    EXPECT_EQ(layers,
              g.get_as<int>(g.get_as<std::string>("general.architecture") + ".block_count"));
    const auto same = [&](const std::string& hf, const std::string& gg) {
      const TensorView& a = s.tensor(hf);
      const TensorView& b = g.tensor(gg);
      EXPECT_EQ(a.shape, b.shape) << hf;
      EXPECT_EQ(a.dtype, b.dtype) << hf;
      ASSERT_EQ(a.data.size(), b.data.size()) << hf;
      EXPECT_EQ(std::memcmp(a.data.data(), b.data.data(), a.data.size()), 0) << hf;
    };
    same("model.embed_tokens.weight", "token_embd.weight");
    same("model.norm.weight", "output_norm.weight");
    for (int l = 0; l < layers; ++l) {
      const std::string h = "model.layers." + std::to_string(l) + ".";
      const std::string b = "blk." + std::to_string(l) + ".";
      same(h + "self_attn.v_proj.weight", b + "attn_v.weight");
      same(h + "self_attn.o_proj.weight", b + "attn_output.weight");
      same(h + "mlp.gate_proj.weight", b + "ffn_gate.weight");
      same(h + "mlp.up_proj.weight", b + "ffn_up.weight");
      same(h + "mlp.down_proj.weight", b + "ffn_down.weight");
      same(h + "input_layernorm.weight", b + "attn_norm.weight");
      same(h + "post_attention_layernorm.weight", b + "ffn_norm.weight");
    }
    EXPECT_EQ(s.find_tensor("lm_head.weight") != nullptr,
              g.find_tensor("output.weight") != nullptr);
  }
}

TEST(Safetensors, WriteReadRoundTrip) {
  const fs::path p = temp_dir() / "rt.safetensors";
  Matrix m(3, 5);
  for (int i = 0; i < m.size(); ++i) m.data()[i] = 0.25f * static_cast<float>(i) - 1.0f;
  MatrixX<double> d(2, 2);
  d << 1.0 / 3, 2, 3, 4;
  const std::vector<std::uint16_t> h = {float_to_half(1.5f), float_to_half(-2.0f)};
  SafetensorsWriter w;
  w.add("m", m);
  w.add("d", d);
  w.add("v", m, Shape{15});
  w.add("h", DType::f16, {2}, std::as_bytes(std::span<const std::uint16_t>(h)));
  w.set_metadata("pooling", "latent");
  EXPECT_THROW(w.add("m", m), config_error);
  EXPECT_THROW(w.add("bad", DType::f32, {4}, std::as_bytes(std::span<const std::uint16_t>(h))),
               shape_error);
  w.write(p);
  const auto s = SafetensorsFile::open(p);
  ASSERT_EQ(s.tensors().size(), 4u);
  EXPECT_EQ(s.tensors()[0].name, "m");
  EXPECT_EQ(s.tensor("m").shape, (Shape{3, 5}));
  EXPECT_EQ(to_matrix(s.tensor("m")), m);
  EXPECT_EQ(s.tensor("d").dtype, DType::f64);
  EXPECT_FLOAT_EQ(to_matrix(s.tensor("d"))(0, 0), 1.0f / 3);
  EXPECT_EQ(s.tensor("v").shape, (Shape{15}));
  EXPECT_EQ(to_matrix(s.tensor("h"))(0, 1), -2.0f);
  EXPECT_EQ(s.metadata().at("pooling"), "latent");
  // data is 8-byte aligned, so F32 maps without copies
  EXPECT_EQ(Matrix(map_f32(s.tensor("m"))), m);
  fs::remove_all(p.parent_path());
}

TEST(Npy, WriteReadRoundTrip) {
  const fs::path dir = temp_dir();
  Matrix m(4, 3);
  for (int i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(i) * 0.5f;
  write_npy(dir / "m.npy", m);
  const NpyArray a = read_npy(dir / "m.npy");
  EXPECT_EQ(a.dtype, DType::f32);
  EXPECT_EQ(a.shape, (Shape{4, 3}));
  EXPECT_EQ(a.to_matrix(), m);
  const std::vector<std::int64_t> ids = {1, -2, 3};
  write_npy(dir / "i.npy", DType::i64, {3}, std::as_bytes(std::span<const std::int64_t>(ids)));
  const NpyArray b = read_npy(dir / "i.npy");
  EXPECT_EQ(b.dtype, DType::i64);
  EXPECT_EQ(b.shape, (Shape{3}));
  EXPECT_EQ(b.to_matrix()(0, 1), -2.0f);
  // file size is a multiple of 64 before the data (numpy's alignment)
  EXPECT_EQ((fs::file_size(dir / "i.npy") - 24) % 64, 0u);
  fs::remove_all(dir);
}

TEST(Dtype, HalfAndBf16Conversions) {
  EXPECT_EQ(half_to_float(0x3C00), 1.0f);
  EXPECT_EQ(half_to_float(0xC000), -2.0f);
  EXPECT_EQ(half_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(half_to_float(0x7C00)));
  EXPECT_TRUE(std::isnan(half_to_float(0x7E00)));
  // Every half converts exactly (reference: ldexp on the decoded fields).
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const int e = static_cast<int>((h >> 10) & 31);
    const int man = static_cast<int>(h & 1023);
    const float s = (h & 0x8000) ? -1.0f : 1.0f;
    const float got = half_to_float(static_cast<std::uint16_t>(h));
    if (e == 31) {
      ASSERT_EQ(std::isnan(got), man != 0) << h;
      if (man == 0) {
        ASSERT_EQ(got, s * std::numeric_limits<float>::infinity()) << h;
      }
      continue;
    }
    const float want = e == 0 ? s * std::ldexp(static_cast<float>(man), -24)
                              : s * std::ldexp(static_cast<float>(man + 1024), e - 25);
    ASSERT_EQ(std::bit_cast<std::uint32_t>(got), std::bit_cast<std::uint32_t>(want)) << h;
  }
  // Every finite half round-trips exactly.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;
    ASSERT_EQ(float_to_half(half_to_float(static_cast<std::uint16_t>(h))), h) << h;
  }
  EXPECT_EQ(float_to_half(65520.0f), 0x7C00);                      // rounds to infinity
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie to even
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_float(0xC040), -3.0f);
  EXPECT_EQ(parse_dtype("bf16"), DType::bf16);
  EXPECT_THROW(parse_dtype("F8"), config_error);
}

TEST(File, AtomicWriteAndMap) {
  const fs::path dir = temp_dir();
  write_file_atomic(dir / "x.txt", std::string_view("hello"));
  write_file_atomic(dir / "x.txt", std::string_view("world!"));
  EXPECT_EQ(read_text_file(dir / "x.txt"), "world!");
  const auto m = MappedFile::open(dir / "x.txt");
  EXPECT_EQ(m.bytes().size(), 6u);
  EXPECT_EQ(static_cast<char>(m.bytes()[0]), 'w');
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);  // no temp file left behind
  EXPECT_THROW(MappedFile::open(dir / "missing"), io_error);
  EXPECT_THROW(write_file_atomic(dir / "no/such/dir/x", std::string_view("a")), io_error);
  fs::remove_all(dir);
}
