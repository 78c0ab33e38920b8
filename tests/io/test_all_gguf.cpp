// Opens every .gguf in data/ and checks it against facts recorded independently: the llama.cpp
// golden JSONs in data/golden (dims, tensor types) and data/README.md (vocabulary files).
// A .gguf without facts fails the test, so new data files get covered.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/io/gguf.hpp"

namespace fs = std::filesystem;
using namespace lmembed;
using namespace lmembed::io;

namespace {
const fs::path all_gguf_data_dir = LMEMBED_DATA_DIR;

std::string base_name(const std::string& tensor) {
  if (tensor.rfind("blk.", 0) == 0) return tensor.substr(tensor.find('.', 4) + 1);
  return tensor;
}

/// Checks one model GGUF against its golden JSON; returns the model's path.
fs::path check_model(const fs::path& golden_json) {
  SCOPED_TRACE(golden_json.string());
  const ordered_json g = json::parse(read_text_file(golden_json), golden_json.string());
  std::string rel = json::get_string(g, "model_path");
  const std::string prefix = "shared/data/";
  if (rel.rfind(prefix, 0) == 0) rel = rel.substr(prefix.size());
  const fs::path path = all_gguf_data_dir / rel;
  const auto f = GgufFile::open(path);
  const ordered_json& d = json::at(g, "dims");
  const std::string arch = json::get_string(g, "arch");
  EXPECT_EQ(f.get_as<std::string>("general.architecture"), arch);
  const auto n_vocab = json::get_int(d, "n_vocab");
  const auto n_embd = json::get_int(d, "n_embd");
  const auto n_layer = json::get_int(d, "n_layer");
  const auto n_head = json::get_int(d, "n_head");
  const auto n_head_kv = json::get_int(d, "n_head_kv");
  const auto head_dim = json::get_int(d, "head_dim");
  const auto n_ff = json::get_int(d, "n_ff");
  EXPECT_EQ(static_cast<std::int64_t>(f.get("tokenizer.ggml.tokens").size()), n_vocab);
  EXPECT_EQ(f.get_as<std::int64_t>(arch + ".embedding_length"), n_embd);
  EXPECT_EQ(f.get_as<std::int64_t>(arch + ".block_count"), n_layer);
  EXPECT_EQ(f.get_as<std::int64_t>(arch + ".attention.head_count"), n_head);
  EXPECT_EQ(f.get_as<std::int64_t>(arch + ".attention.head_count_kv"), n_head_kv);
  EXPECT_EQ(f.get_as<std::int64_t>(arch + ".feed_forward_length"), n_ff);
  EXPECT_EQ(f.get_as<std::int64_t>(arch + ".context_length"), json::get_int(d, "n_ctx_train"));
  EXPECT_EQ(f.get_as<float>(arch + ".attention.layer_norm_rms_epsilon"),
            static_cast<float>(json::get_double(d, "rms_norm_eps")));
  EXPECT_EQ(f.has(arch + ".rope.freq_base"), json::get_bool(d, "rope_freq_base_in_gguf"));
  if (f.has(arch + ".rope.freq_base")) {
    EXPECT_EQ(f.get_as<double>(arch + ".rope.freq_base"), json::get_double(d, "rope_freq_base"));
  }
  const bool tied = json::get_bool(d, "tied_output");
  const bool bias = json::get_bool(d, "qkv_bias");
  EXPECT_EQ(f.find_tensor("output.weight") == nullptr, tied);
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.bias") != nullptr, bias);
  EXPECT_EQ(static_cast<std::int64_t>(f.tensors().size()),
            (tied ? 2 : 3) + n_layer * (bias ? 12 : 9));

  // Types: per tensor family and in total, as llama.cpp reported them.
  const ordered_json& by_name = json::at(g, "tensor_types_by_name");
  std::map<std::string, std::int64_t> counts;
  for (const TensorView& t : f.tensors()) {
    ++counts[to_string(t.dtype)];
    const ordered_json* allowed = json::find(by_name, base_name(t.name));
    EXPECT_NE(allowed, nullptr) << t.name;
    if (!allowed) continue;
    bool ok = false;
    for (const auto& a : json::as_array(*allowed)) ok |= json::as_string(a) == to_string(t.dtype);
    EXPECT_TRUE(ok) << t.name << " is " << to_string(t.dtype);
    EXPECT_EQ(t.data.size(), static_cast<std::size_t>(*byte_size(t.dtype, t.numel()))) << t.name;
  }
  for (const auto& [type, n] : json::get_object(g, "tensor_types"))
    EXPECT_EQ(counts[type], json::as_int(n)) << type;

  // Shapes, outermost first ([out, in] like PyTorch).
  const auto shape = [&](const std::string& name, Shape s) {
    const TensorView* t = f.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, s) << name;
  };
  shape("token_embd.weight", {n_vocab, n_embd});
  shape("output_norm.weight", {n_embd});
  if (!tied) shape("output.weight", {n_vocab, n_embd});
  for (std::int64_t l = 0; l < n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    shape(b + "attn_norm.weight", {n_embd});
    shape(b + "attn_q.weight", {n_head * head_dim, n_embd});
    shape(b + "attn_k.weight", {n_head_kv * head_dim, n_embd});
    shape(b + "attn_v.weight", {n_head_kv * head_dim, n_embd});
    shape(b + "attn_output.weight", {n_embd, n_head * head_dim});
    shape(b + "ffn_norm.weight", {n_embd});
    shape(b + "ffn_gate.weight", {n_ff, n_embd});
    shape(b + "ffn_up.weight", {n_ff, n_embd});
    shape(b + "ffn_down.weight", {n_embd, n_ff});
    if (bias) {
      shape(b + "attn_q.bias", {n_head * head_dim});
      shape(b + "attn_k.bias", {n_head_kv * head_dim});
      shape(b + "attn_v.bias", {n_head_kv * head_dim});
    }
  }
  // Every tensor converts to finite floats.
  for (const TensorView& t : f.tensors()) EXPECT_TRUE(to_matrix(t).allFinite()) << t.name;
  return fs::weakly_canonical(path);
}
}  // namespace

TEST(AllGguf, EveryGgufInDataHasItsKnownFacts) {
  std::set<fs::path> checked;
  for (const auto& e : fs::directory_iterator(all_gguf_data_dir / "golden"))
    if (e.path().extension() == ".json") checked.insert(check_model(e.path()));
  EXPECT_EQ(checked.size(), 6u);  // stories260K (+ f16, bf16, q8_0), tiny-llama, tiny-qwen2

  // Vocabulary-only files from llama.cpp (data/README.md): no tensors.
  {
    const fs::path p = all_gguf_data_dir / "tokenizer/ggml-vocab-llama-spm.gguf";
    const auto f = GgufFile::open(p);
    EXPECT_EQ(f.tensors().size(), 0u);
    EXPECT_EQ(f.get_as<std::string>("tokenizer.ggml.model"), "llama");
    const auto tokens = f.get_as<std::vector<std::string>>("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 32000u);
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(f.get_as<std::vector<float>>("tokenizer.ggml.scores").size(), 32000u);
    EXPECT_TRUE(f.get_as<bool>("tokenizer.ggml.add_bos_token"));
    EXPECT_FALSE(f.get_as<bool>("tokenizer.ggml.add_eos_token"));
    checked.insert(fs::weakly_canonical(p));
  }
  {
    const fs::path p = all_gguf_data_dir / "tokenizer/ggml-vocab-gpt-2.gguf";
    const auto f = GgufFile::open(p);
    EXPECT_EQ(f.tensors().size(), 0u);
    EXPECT_EQ(f.get_as<std::string>("tokenizer.ggml.model"), "gpt2");
    const auto tokens = f.get_as<std::vector<std::string>>("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 50257u);
    EXPECT_EQ(tokens.back(), "<|endoftext|>");
    const auto merges = f.get_as<std::vector<std::string>>("tokenizer.ggml.merges");
    ASSERT_EQ(merges.size(), 50000u);
    EXPECT_EQ(merges[0], "\xC4\xA0 t");  // "Ġ t"
    EXPECT_EQ(f.get_as<std::uint32_t>("tokenizer.ggml.eos_token_id"), 50256u);
    checked.insert(fs::weakly_canonical(p));
  }

  // No .gguf in data/ goes unchecked.
  for (const auto& e : fs::recursive_directory_iterator(all_gguf_data_dir))
    if (e.path().extension() == ".gguf") {
      EXPECT_TRUE(checked.count(fs::weakly_canonical(e.path())))
          << e.path() << " has no known facts in this test";
    }
}
