// lmembed/backbone/loader.hpp - ModelConfig and F32 weights from GGUF or a Hugging Face folder.
//
// WeightFormat::stored (GGUF only): projections of type Q8_0 / Q4_0 / Q4_1 and a quantized token
// embedding are copied as they are stored (LayerWeights::stored, ModelWeights::tok_embd_stored);
// the backbone runs integer kernels on them (backbone/qgemm.hpp). The rest of this comment is
// WeightFormat::f32, the default here: every tensor is dequantized to F32 (F32/F16/BF16 and the
// GGML block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K ... Q6_K from GGUF; F32/F16/BF16 from
// safetensors): the forward pass is one F32 code path. Tensors are converted one at a time straight
// from the memory map, so the peak is the F32 weights plus the (shared, file-backed) map. The
// memory cost is 4 bytes per parameter whatever the file holds (F16/BF16 files double, Q8_0
// grows 3.8x, Q4_1 6.4x); docs/backbone.md gives the figures. The LM head (output.weight) is never
// loaded: the backbone ends at output_norm, so tied and untied files load alike. Shapes are checked
// against the config and a mismatch is a format_error naming the tensor and the file.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lmembed/backbone/config.hpp"
#include "lmembed/backbone/qgemm.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/io/safetensors.hpp"
#include "lmembed/io/tensor_view.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace lmembed::io {

namespace detail {

/// Converts a tensor to F32 after checking its shape (outermost first; a 1-D tensor is [n]).
inline Matrix checked_matrix(const TensorView& t, const Shape& expected,
                             const std::filesystem::path& file) {
  if (t.shape != expected)
    throw format_error(file, format_error::npos,
                       "tensor '" + t.name + "' has shape " + lmembed::to_string(t.shape) +
                           ", expected " + lmembed::to_string(expected));
  return to_matrix(t);
}

/// The tensor's blocks as stored, after checking its shape like checked_matrix.
inline BlockRows checked_blocks(const TensorView& t, const Shape& expected,
                                const std::filesystem::path& file) {
  if (t.shape != expected)
    throw format_error(file, format_error::npos,
                       "tensor '" + t.name + "' has shape " + lmembed::to_string(t.shape) +
                           ", expected " + lmembed::to_string(expected));
  detail::check_view(t);
  BlockRows b;
  b.dtype = t.dtype;
  b.rows = expected.size() == 1 ? 1 : expected[0];
  b.cols = expected.back();
  b.bytes.assign(t.data.begin(), t.data.end());
  return b;
}

/// Drops the mapped file's pages under `bytes` from this process's resident set once a tensor
/// has been converted (they stay in the page cache; a later read faults them back in): the
/// load's peak is then the converted weights, not those plus the whole mapped file.
inline void release_pages(std::span<const std::byte> bytes) {
#if defined(__unix__) || defined(__APPLE__)
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  if (page == 0 || bytes.empty()) return;
  const auto lo = reinterpret_cast<std::uintptr_t>(bytes.data());
  const auto begin = (lo + page - 1) / page * page, end = (lo + bytes.size()) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#else
  (void)bytes;
#endif
}

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace detail

/// The model config a GGUF's metadata describes (n_vocab from token_embd.weight).
inline ModelConfig config_from_gguf(const GgufFile& f) {
  const std::string src = f.path().string();
  const std::string arch = f.get_as<std::string>("general.architecture");
  ModelConfig c;
  if (arch == "llama" || arch == "mistral") {
    c.arch = "llama";
    c.rope_style = RopeStyle::interleaved;  // convert_hf_to_gguf.py permuted q/k
  } else if (arch == "qwen2") {
    c.arch = "qwen2";
    c.rope_style = RopeStyle::neox;  // qwen2 is converted unpermuted, NEOX rope
  } else {
    throw config_error(src + ": unsupported architecture '" + arch +
                       "' (supported: llama, mistral, qwen2)");
  }
  const std::string p = arch + ".";
  c.d_model = f.get_as<std::int64_t>(p + "embedding_length");
  c.n_layers = f.get_as<std::int64_t>(p + "block_count");
  c.n_heads = f.get_as<std::int64_t>(p + "attention.head_count");
  c.n_kv_heads = f.get_or<std::int64_t>(p + "attention.head_count_kv", c.n_heads);
  c.d_ff = f.get_as<std::int64_t>(p + "feed_forward_length");
  c.n_ctx = f.get_as<std::int64_t>(p + "context_length");
  c.head_dim =
      f.get_or<std::int64_t>(p + "attention.key_length", c.n_heads > 0 ? c.d_model / c.n_heads : 0);
  c.rope_theta = f.get_or<float>(p + "rope.freq_base", 10000.0f);
  c.rms_eps = f.get_as<float>(p + "attention.layer_norm_rms_epsilon");
  const std::int64_t rope_dims = f.get_or<std::int64_t>(p + "rope.dimension_count", c.head_dim);
  if (rope_dims != c.head_dim)
    throw config_error(src + ": partial rotary embedding (rope.dimension_count " +
                       std::to_string(rope_dims) + " != head_dim " + std::to_string(c.head_dim) +
                       ") is not supported");
  if (f.has(p + "rope.scaling.type") && f.get_as<std::string>(p + "rope.scaling.type") != "none")
    throw config_error(src + ": rope scaling '" + f.get_as<std::string>(p + "rope.scaling.type") +
                       "' is not supported");
  const TensorView& emb = f.tensor("token_embd.weight");
  if (emb.shape.size() != 2)
    throw format_error(f.path(), format_error::npos,
                       "tensor 'token_embd.weight' has shape " + lmembed::to_string(emb.shape) +
                           ", expected [n_vocab, " + std::to_string(c.d_model) + "]");
  c.n_vocab = emb.shape[0];
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  c.validate(src);
  return c;
}

/// Config and weights of a GGUF model: F32, or (WeightFormat::stored) the projections with an
/// integer kernel and a quantized token embedding as stored.
inline std::pair<ModelConfig, ModelWeights> load_gguf_weights(
    const std::filesystem::path& path, WeightFormat format = WeightFormat::f32) {
  const GgufFile f = GgufFile::open(path);
  ModelConfig c = config_from_gguf(f);
  const auto d = c.d_model, dq = c.q_dim(), dkv = c.kv_dim(), ff = c.d_ff;
  auto get = [&](const std::string& name, const Shape& shape) {
    const TensorView& t = f.tensor(name);
    Matrix m = detail::checked_matrix(t, shape, path);
    detail::release_pages(t.data);
    return m;
  };
  const bool stored = format == WeightFormat::stored;
  // A projection: kept as stored when it has an integer kernel, else F32 in `m`.
  auto proj = [&](const std::string& name, const Shape& shape, Matrix& m, BlockRows& q) {
    const TensorView& t = f.tensor(name);
    if (stored && lmembed::detail::has_qkernel(t.dtype)) {
      q = detail::checked_blocks(t, shape, path);
      detail::release_pages(t.data);
    } else {
      m = get(name, shape);
    }
  };
  ModelWeights w;
  if (const TensorView& e = f.tensor("token_embd.weight"); stored && is_quantized(e.dtype)) {
    w.tok_embd_stored = detail::checked_blocks(e, {c.n_vocab, d}, path);
    detail::release_pages(e.data);
  } else {
    w.tok_embd = get("token_embd.weight", {c.n_vocab, d});
  }
  w.out_norm = get("output_norm.weight", {d});
  w.layers.resize(c.n_layers);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerWeights& L = w.layers[l];
    L.attn_norm = get(b + "attn_norm.weight", {d});
    proj(b + "attn_q.weight", {dq, d}, L.wq, L.stored.wq);
    proj(b + "attn_k.weight", {dkv, d}, L.wk, L.stored.wk);
    proj(b + "attn_v.weight", {dkv, d}, L.wv, L.stored.wv);
    proj(b + "attn_output.weight", {d, dq}, L.wo, L.stored.wo);
    if (c.qkv_bias) {
      L.bq = get(b + "attn_q.bias", {dq});
      L.bk = get(b + "attn_k.bias", {dkv});
      L.bv = get(b + "attn_v.bias", {dkv});
    }
    L.ffn_norm = get(b + "ffn_norm.weight", {d});
    proj(b + "ffn_gate.weight", {ff, d}, L.w_gate, L.stored.w_gate);
    proj(b + "ffn_up.weight", {ff, d}, L.w_up, L.stored.w_up);
    proj(b + "ffn_down.weight", {d, ff}, L.w_down, L.stored.w_down);
  }
  return {c, std::move(w)};
}

/// The model config of a Hugging Face config.json (LlamaForCausalLM, MistralForCausalLM,
/// Qwen2ForCausalLM); config_error naming the file and the missing or unsupported field.
inline ModelConfig config_from_hf(const ordered_json& j, const std::string& src) {
  if (!j.is_object())
    throw config_error(src + ": expected a JSON object, got " + json::type_name(j));
  auto opt = [&](const char* key) -> const ordered_json* {
    const ordered_json* v = json::find(j, key);
    return v && !v->is_null() ? v : nullptr;
  };
  auto need = [&](const char* key) -> const ordered_json& {
    if (const ordered_json* v = opt(key)) return *v;
    throw config_error(src + ": missing field '" + key + "'");
  };
  auto need_int = [&](const char* key) { return json::as_int(need(key), src, key); };
  auto opt_bool = [&](const char* key) {
    const ordered_json* v = opt(key);
    return v && json::as_bool(*v, src, key);
  };
  std::string type;
  if (const ordered_json* mt = opt("model_type"))
    type = detail::lower(json::as_string(*mt, src, "model_type"));
  if (type.empty())
    if (const ordered_json* a = opt("architectures"); a && a->is_array() && !a->empty()) {
      const std::string name = json::as_string(a->front(), src, "architectures");
      type = name == "LlamaForCausalLM"     ? "llama"
             : name == "MistralForCausalLM" ? "mistral"
             : name == "Qwen2ForCausalLM"   ? "qwen2"
                                            : name;
    }
  if (type.empty()) throw config_error(src + ": missing field 'model_type'");
  ModelConfig c;
  if (type == "llama" || type == "mistral") {
    c.arch = "llama";
  } else if (type == "qwen2") {
    c.arch = "qwen2";
  } else {
    throw config_error(src + ": unsupported architecture '" + type +
                       "' (supported: llama, mistral, qwen2)");
  }
  c.rope_style = RopeStyle::neox;  // HF checkpoints use rotate_half
  c.d_model = need_int("hidden_size");
  c.d_ff = need_int("intermediate_size");
  c.n_layers = need_int("num_hidden_layers");
  c.n_heads = need_int("num_attention_heads");
  c.n_vocab = need_int("vocab_size");
  c.n_kv_heads = opt("num_key_value_heads")
                     ? json::as_int(*opt("num_key_value_heads"), src, "num_key_value_heads")
                     : c.n_heads;
  c.head_dim = opt("head_dim") ? json::as_int(*opt("head_dim"), src, "head_dim")
                               : (c.n_heads > 0 ? c.d_model / c.n_heads : 0);
  c.rms_eps = static_cast<float>(json::as_double(need("rms_norm_eps"), src, "rms_norm_eps"));
  c.rope_theta = opt("rope_theta")
                     ? static_cast<float>(json::as_double(*opt("rope_theta"), src, "rope_theta"))
                     : 10000.0f;
  c.n_ctx = need_int("max_position_embeddings");
  c.tied_output = opt_bool("tie_word_embeddings");
  if (const ordered_json* act = opt("hidden_act");
      act && json::as_string(*act, src, "hidden_act") != "silu")
    throw config_error(src + ": hidden_act '" + act->get_ref<const std::string&>() +
                       "' is not supported (silu)");
  if (opt("rope_scaling")) throw config_error(src + ": rope_scaling is not supported");
  if (opt_bool("mlp_bias")) throw config_error(src + ": mlp_bias is not supported");
  c.qkv_bias = c.arch == "qwen2";
  if (opt_bool("attention_bias") && c.arch == "llama")
    throw config_error(src + ": attention_bias (an o_proj bias) is not supported");
  // Mistral's sliding window changes nothing for sequences that fit in it: cap n_ctx there so
  // longer ones are refused (or truncated) instead of silently computed with full attention.
  const bool sliding = c.arch == "llama" || opt_bool("use_sliding_window");
  if (const ordered_json* sw = opt("sliding_window"); sw && sliding && sw->is_number())
    c.n_ctx = std::min(c.n_ctx, json::as_int(*sw, src, "sliding_window"));
  c.validate(src);
  return c;
}

/// Config and F32 weights of a Hugging Face folder (config.json plus model.safetensors or the
/// shards listed by model.safetensors.index.json).
inline std::pair<ModelConfig, ModelWeights> load_hf_weights(const std::filesystem::path& dir) {
  const auto cfg_path = dir / "config.json";
  if (!std::filesystem::exists(cfg_path))
    throw config_error(dir.string() + ": no config.json (expected a Hugging Face model folder)");
  ModelConfig c =
      config_from_hf(json::parse(read_text_file(cfg_path), cfg_path.string()), cfg_path.string());
  // tensor name -> (file index); files opened once each.
  std::vector<SafetensorsFile> files;
  std::vector<std::filesystem::path> file_paths;
  std::map<std::string, std::size_t> where;
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(dir / "model.safetensors")) {
    files.push_back(SafetensorsFile::open(dir / "model.safetensors"));
    file_paths.push_back(dir / "model.safetensors");
  } else if (std::filesystem::exists(index_path)) {
    const auto idx = json::parse(read_text_file(index_path), index_path.string());
    const ordered_json* map = json::find(idx, "weight_map");
    if (!map || !map->is_object())
      throw format_error(index_path, format_error::npos, "no 'weight_map' object");
    std::map<std::string, std::size_t> file_no;
    const std::string map_src = index_path.string() + ": weight_map";
    for (const auto& [name, file] : json::as_object(*map)) {
      const std::string fname = json::as_string(file, map_src, name);
      auto it = file_no.find(fname);
      if (it == file_no.end()) {
        it = file_no.emplace(fname, files.size()).first;
        files.push_back(SafetensorsFile::open(dir / fname));
        file_paths.push_back(dir / fname);
      }
      where[name] = it->second;
    }
  } else {
    throw io_error(dir.string() +
                   ": neither model.safetensors nor model.safetensors.index.json exists");
  }
  const auto d = c.d_model, dq = c.q_dim(), dkv = c.kv_dim(), ff = c.d_ff;
  auto get = [&](const std::string& name, const Shape& shape) {
    std::size_t fi = 0;
    if (!where.empty()) {
      auto it = where.find(name);
      if (it == where.end())
        throw format_error(index_path, format_error::npos,
                           "tensor '" + name + "' is not in the weight_map");
      fi = it->second;
    }
    return detail::checked_matrix(files[fi].tensor(name), shape, file_paths[fi]);
  };
  ModelWeights w;
  w.tok_embd = get("model.embed_tokens.weight", {c.n_vocab, d});
  w.out_norm = get("model.norm.weight", {d});
  w.layers.resize(c.n_layers);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".";
    LayerWeights& L = w.layers[l];
    L.attn_norm = get(b + "input_layernorm.weight", {d});
    L.wq = get(b + "self_attn.q_proj.weight", {dq, d});
    L.wk = get(b + "self_attn.k_proj.weight", {dkv, d});
    L.wv = get(b + "self_attn.v_proj.weight", {dkv, d});
    L.wo = get(b + "self_attn.o_proj.weight", {d, dq});
    if (c.qkv_bias) {
      L.bq = get(b + "self_attn.q_proj.bias", {dq});
      L.bk = get(b + "self_attn.k_proj.bias", {dkv});
      L.bv = get(b + "self_attn.v_proj.bias", {dkv});
    }
    L.ffn_norm = get(b + "post_attention_layernorm.weight", {d});
    L.w_gate = get(b + "mlp.gate_proj.weight", {ff, d});
    L.w_up = get(b + "mlp.up_proj.weight", {ff, d});
    L.w_down = get(b + "mlp.down_proj.weight", {d, ff});
  }
  return {c, std::move(w)};
}

/// A .gguf file or a Hugging Face folder (safetensors hold no block types: always F32).
inline std::pair<ModelConfig, ModelWeights> load_model_weights(
    const std::filesystem::path& model, WeightFormat format = WeightFormat::f32) {
  if (std::filesystem::is_directory(model)) return load_hf_weights(model);
  if (!std::filesystem::exists(model))
    throw io_error(model.string() + ": no such file or directory");
  return load_gguf_weights(model, format);
}

}  // namespace lmembed::io
