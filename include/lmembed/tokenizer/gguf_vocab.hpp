// lmembed/tokenizer/gguf_vocab.hpp - Tokenizer::from_gguf: a tokenizer from the tokenizer.ggml.*
// metadata of a GGUF file (models "llama" and "gpt2").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/tokenizer/pretokenize.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/tokenizer/vocab.hpp"

namespace lmembed {

inline Tokenizer Tokenizer::from_gguf(const io::GgufFile& f) {
  Tokenizer t;
  const std::string src = f.path().string();
  const std::string model = f.get_as<std::string>("tokenizer.ggml.model");
  auto tokens = f.get_as<std::vector<std::string>>("tokenizer.ggml.tokens");
  if (tokens.empty()) throw config_error(src + ": tokenizer.ggml.tokens is empty");
  std::vector<float> scores;
  if (f.has("tokenizer.ggml.scores"))
    scores = f.get_as<std::vector<float>>("tokenizer.ggml.scores");
  std::vector<std::int32_t> types;
  if (f.has("tokenizer.ggml.token_type"))
    types = f.get_as<std::vector<std::int32_t>>("tokenizer.ggml.token_type");
  if ((!scores.empty() && scores.size() != tokens.size()) ||
      (!types.empty() && types.size() != tokens.size()))
    throw config_error(src + ": tokenizer.ggml.scores/token_type sizes (" +
                       std::to_string(scores.size()) + ", " + std::to_string(types.size()) +
                       ") differ from tokenizer.ggml.tokens (" + std::to_string(tokens.size()) +
                       ")");
  t.source_ = src;
  if (model == "llama") {
    t.model_ = Model::spm;
    t.bos_ = 1;
    t.eos_ = 2;
    t.unk_ = 0;
    t.add_bos_ = true;
    t.add_eos_ = false;
    t.add_space_prefix_ = true;
    t.strip_leading_space_ = true;
  } else if (model == "gpt2") {
    t.model_ = Model::bpe;
    t.byte_level_ = true;
    t.bos_ = t.eos_ = 11;  // llama.cpp's defaults for gpt2 vocabularies
    t.unk_ = -1;
    t.add_bos_ = t.add_eos_ = false;
    const std::string pre = f.get_or<std::string>("tokenizer.ggml.pre", "default");
    t.pre_ = detail::PreTokenizer::named(pre);
    if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "falcon3" ||
        pre == "pixtral") {
      t.ignore_merges_ = true;
      t.add_bos_ = true;
    }
  } else {
    throw config_error(src + ": unsupported tokenizer.ggml.model '" + model +
                       "' (supported: llama, gpt2)");
  }
  t.add_space_prefix_ = f.get_or<bool>("tokenizer.ggml.add_space_prefix", t.add_space_prefix_);
  t.strip_leading_space_ = t.add_space_prefix_;

  const std::size_t n = tokens.size();
  t.attrs_.resize(n);
  t.scores_.assign(n, 0.0f);
  for (std::size_t i = 0; i < n; ++i) {
    if (tokens[i].empty()) tokens[i] = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
    if (!scores.empty()) t.scores_[i] = scores[i];
    t.attrs_[i] = types.empty() ? std::uint8_t{detail::kAttrNormal} : attr_of_type(types[i]);
  }
  t.tokens_ = std::move(tokens);
  auto read_id = [&](const char* key, std::int32_t& id) {
    if (!f.has(key)) return;
    const auto v = f.get_as<std::int64_t>(key);
    if (v >= 0 && static_cast<std::size_t>(v) < n) id = static_cast<std::int32_t>(v);
  };
  read_id("tokenizer.ggml.bos_token_id", t.bos_);
  read_id("tokenizer.ggml.eos_token_id", t.eos_);
  read_id("tokenizer.ggml.unknown_token_id", t.unk_);
  t.add_bos_ = f.get_or<bool>("tokenizer.ggml.add_bos_token", t.add_bos_);
  t.add_eos_ = f.get_or<bool>("tokenizer.ggml.add_eos_token", t.add_eos_);
  t.force_eog_control();
  t.build_maps();
  if (t.model_ == Model::spm) t.spm_split_ = t.no_inner_metaspace();
  if (t.model_ == Model::bpe) {
    const auto merges = f.get_as<std::vector<std::string>>("tokenizer.ggml.merges");
    t.merges_.reserve(merges.size());
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const std::size_t sp = m.find(' ', 1);  // as llama.cpp: the first space after char 0
      if (sp == std::string::npos) continue;
      t.add_merge(std::string_view(m).substr(0, sp), std::string_view(m).substr(sp + 1),
                  static_cast<std::int32_t>(r));
    }
  }
  t.build_byte_ids();
  return t;
}

}  // namespace lmembed
