// lmembed/tokenizer/hf_json.hpp - Tokenizer::from_hf: a tokenizer from a Hugging Face
// tokenizer.json (BPE model, normalizer, pre-tokenizer, decoder, post-processor) and the
// tokenizer_config.json next to it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json.hpp"
#include "lmembed/tokenizer/norm_step.hpp"
#include "lmembed/tokenizer/pretokenize.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/tokenizer/vocab.hpp"

namespace lmembed {

inline Tokenizer Tokenizer::from_hf(const std::filesystem::path& tokenizer_json) {
  const std::string src = tokenizer_json.string();
  const json::Value root = json::parse(read_text_file(tokenizer_json), src);
  Tokenizer t;
  t.source_ = src;
  t.model_ = Model::bpe;
  t.unk_ = -1;
  t.bos_ = t.eos_ = -1;
  const json::Value& model = root.at("model");
  const std::string mtype = model.find("type") ? model.at("type").as_string() : "BPE";
  if (mtype != "BPE")
    throw config_error(src + ": model type '" + mtype + "' is not supported (only BPE)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json::Value* v = model.find(k); v && v->is_string() && !v->as_string().empty())
      throw config_error(src + ": model." + k + " is not supported");
  if (const json::Value* v = model.find("byte_fallback"); v && v->is_bool())
    t.byte_fallback_ = v->as_bool();
  if (const json::Value* v = model.find("ignore_merges"); v && v->is_bool())
    t.ignore_merges_ = v->as_bool();
  if (const json::Value* v = model.find("fuse_unk"); v && v->is_bool()) t.fuse_unk_ = v->as_bool();

  // vocab (+ added tokens, which may extend it)
  std::vector<std::pair<std::string, std::int64_t>> entries;
  std::int64_t max_id = -1;
  for (const auto& [tok, idv] : model.at("vocab").as_object()) {
    const std::int64_t id = idv.as_int();
    if (id < 0 || id > std::numeric_limits<std::int32_t>::max())
      throw config_error(src + ": vocab id " + std::to_string(id) + " of '" + tok +
                         "' out of range");
    entries.emplace_back(tok, id);
    max_id = std::max(max_id, id);
  }
  struct Added {
    std::string content;
    std::int64_t id;
    bool special;
  };
  std::vector<Added> added;
  if (const json::Value* at = root.find("added_tokens"); at && at->is_array())
    for (const json::Value& a : at->as_array()) {
      Added x{a.at("content").as_string(), a.at("id").as_int(), false};
      if (const json::Value* s = a.find("special"); s && s->is_bool()) x.special = s->as_bool();
      if (x.id < 0 || x.id > std::numeric_limits<std::int32_t>::max())
        throw config_error(src + ": added token id " + std::to_string(x.id) + " out of range");
      max_id = std::max(max_id, x.id);
      added.push_back(std::move(x));
    }
  if (max_id < 0) throw config_error(src + ": empty vocabulary");
  // Ids index a dense table: a vocabulary whose ids leave most of [0, max_id] empty (a hostile
  // "tok": 3e8 would ask for gigabytes of empty slots) is refused, not allocated. Real ones are
  // dense up to a few reserved holes.
  const std::int64_t n_tokens = static_cast<std::int64_t>(entries.size() + added.size());
  if (max_id >= 2 * n_tokens + 1024)
    throw config_error(src + ": token id " + std::to_string(max_id) + " leaves most of the id " +
                       "space empty (" + std::to_string(n_tokens) + " tokens): not a " +
                       "vocabulary lmembed can hold");
  const std::size_t n = static_cast<std::size_t>(max_id) + 1;
  t.tokens_.assign(n, std::string());
  t.attrs_.assign(n, detail::kAttrUnused);
  t.scores_.assign(n, 0.0f);
  for (auto& [tok, id] : entries) {
    t.tokens_[static_cast<std::size_t>(id)] = tok;
    t.attrs_[static_cast<std::size_t>(id)] = detail::kAttrNormal;
  }
  for (const Added& a : added) {
    t.tokens_[static_cast<std::size_t>(a.id)] = a.content;
    t.attrs_[static_cast<std::size_t>(a.id)] =
        a.special ? detail::kAttrControl : detail::kAttrUserDefined;
  }
  for (std::size_t i = 0; i < n; ++i)
    if (t.tokens_[i].empty()) t.tokens_[i] = "[EMPTY_" + std::to_string(i) + "]";
  t.build_maps();
  if (const json::Value* u = model.find("unk_token"); u && u->is_string())
    t.unk_ = t.token_id(u->as_string());
  if (t.unk_ >= 0 && t.attrs_[static_cast<std::size_t>(t.unk_)] == detail::kAttrNormal)
    t.attrs_[static_cast<std::size_t>(t.unk_)] = detail::kAttrUnknown;

  // merges: "a b" strings or ["a", "b"] pairs
  const json::Array& merges = model.at("merges").as_array();
  t.merges_.reserve(merges.size());
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const json::Value& m = merges[r];
    if (m.is_string()) {
      const std::string& s = m.as_string();
      const std::size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        throw config_error(src + ": merge " + std::to_string(r) + " '" + s + "' has no space");
      t.add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1),
                  static_cast<std::int32_t>(r));
    } else {
      const json::Array& p = m.as_array();
      if (p.size() != 2)
        throw config_error(src + ": merge " + std::to_string(r) + " is not a pair");
      t.add_merge(p[0].as_string(), p[1].as_string(), static_cast<std::int32_t>(r));
    }
  }

  // normalizer
  if (const json::Value* nz = root.find("normalizer"); nz && !nz->is_null())
    t.read_normalizer(*nz, src);
  // pre-tokenizer
  if (const json::Value* pt = root.find("pre_tokenizer"); pt && !pt->is_null())
    t.read_pre_tokenizer(*pt, src);
  // decoder: a Strip of leading spaces (SentencePiece-style models) or ByteLevel
  if (const json::Value* dc = root.find("decoder"); dc && !dc->is_null()) t.read_decoder(*dc);
  // post-processor: BOS/EOS template
  if (const json::Value* pp = root.find("post_processor"); pp && !pp->is_null())
    t.read_post_processor(*pp, src);

  // tokenizer_config.json next to it
  const auto cfg_path = tokenizer_json.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    const json::Value cfg = json::parse(read_text_file(cfg_path), cfg_path.string());
    auto token_of = [&](const char* key) -> std::int32_t {
      const json::Value* v = cfg.find(key);
      if (!v) return -1;
      if (v->is_string()) return t.token_id(v->as_string());
      if (v->is_object() && v->find("content")) return t.token_id(v->at("content").as_string());
      return -1;
    };
    if (t.bos_ < 0) t.bos_ = token_of("bos_token");
    if (t.eos_ < 0) t.eos_ = token_of("eos_token");
    if (const json::Value* v = cfg.find("add_bos_token"); v && v->is_bool())
      t.add_bos_ = v->as_bool();
    if (const json::Value* v = cfg.find("add_eos_token"); v && v->is_bool())
      t.add_eos_ = v->as_bool();
  }
  if (t.add_bos_ && t.bos_ < 0)
    throw config_error(src + ": BOS is to be added but no BOS token is defined");
  if (t.add_eos_ && t.eos_ < 0)
    throw config_error(src + ": EOS is to be added but no EOS token is defined");
  t.build_byte_ids();
  return t;
}

inline void Tokenizer::read_normalizer(const json::Value& n, const std::string& src) {
  const std::string type = n.at("type").as_string();
  if (type == "Sequence") {
    for (const json::Value& x : n.at("normalizers").as_array()) read_normalizer(x, src);
  } else if (type == "Prepend") {
    normalizer_.push_back({detail::NormStep::Kind::prepend, n.at("prepend").as_string(), {}});
  } else if (type == "Replace") {
    const json::Value& pat = n.at("pattern");
    if (!pat.find("String"))
      throw config_error(src + ": Replace normalizer with a Regex pattern is not supported");
    normalizer_.push_back({detail::NormStep::Kind::replace, pat.at("String").as_string(),
                           n.at("content").as_string()});
  } else if (type == "Lowercase") {
    normalizer_.push_back({detail::NormStep::Kind::lowercase, {}, {}});
  } else if (type == "NFC") {
    normalizer_.push_back({detail::NormStep::Kind::nfc, {}, {}});
  } else {
    throw config_error(src + ": normalizer '" + type + "' is not supported");
  }
}

inline void Tokenizer::read_pre_tokenizer(const json::Value& p, const std::string& src) {
  const std::string type = p.at("type").as_string();
  if (type == "Sequence") {
    for (const json::Value& x : p.at("pretokenizers").as_array()) read_pre_tokenizer(x, src);
  } else if (type == "ByteLevel") {
    byte_level_ = true;
    if (const json::Value* v = p.find("add_prefix_space"); v && v->is_bool())
      byte_level_prefix_space_ = v->as_bool();
    bool use_regex = true;
    if (const json::Value* v = p.find("use_regex"); v && v->is_bool()) use_regex = v->as_bool();
    if (use_regex) append_steps(detail::PreTokenizer::named("gpt-2"));
  } else if (type == "Split") {
    const json::Value& pat = p.at("pattern");
    const std::string behavior = p.find("behavior") ? p.at("behavior").as_string() : "Isolated";
    bool invert = false;
    if (const json::Value* v = p.find("invert"); v && v->is_bool()) invert = v->as_bool();
    if (behavior != "Isolated" || invert || !pat.find("Regex"))
      throw config_error(src +
                         ": Split pre-tokenizer supported only with a Regex pattern, "
                         "behavior Isolated, invert false");
    append_steps(named_regex(pat.at("Regex").as_string(), src));
  } else if (type == "Digits") {
    bool individual = false;
    if (const json::Value* v = p.find("individual_digits"); v && v->is_bool())
      individual = v->as_bool();
    detail::SplitStep s;
    s.kind = detail::SplitStep::Kind::class_run;
    s.cls = detail::SplitStep::Class::number;
    s.count = individual ? 1 : 0;
    pre_.steps.push_back(s);
    if (pre_.name.empty()) pre_.name = "digits";
  } else if (type == "Metaspace") {
    metaspace_ = true;
    std::string scheme = "always";
    if (const json::Value* v = p.find("prepend_scheme"); v && v->is_string())
      scheme = v->as_string();
    if (const json::Value* v = p.find("add_prefix_space"); v && v->is_bool() && !v->as_bool())
      scheme = "never";
    metaspace_prepend_ = scheme == "always" ? 2 : scheme == "first" ? 1 : 0;
    strip_leading_space_ = metaspace_prepend_ != 0;
    if (const json::Value* v = p.find("replacement");
        v && v->is_string() && v->as_string() != "\xe2\x96\x81")
      throw config_error(src + ": Metaspace replacement other than U+2581 is not supported");
    bool split = true;
    if (const json::Value* v = p.find("split"); v && v->is_bool()) split = v->as_bool();
    if (split) {
      detail::SplitStep s;
      s.kind = detail::SplitStep::Kind::before_char;
      s.cpt = 0x2581;
      pre_.steps.push_back(s);
    }
    if (pre_.name.empty()) pre_.name = "metaspace";
  } else {
    throw config_error(src + ": pre-tokenizer '" + type + "' is not supported");
  }
}

inline void Tokenizer::append_steps(const detail::PreTokenizer& p) {
  if (pre_.name.empty()) pre_.name = p.name;
  pre_.steps.insert(pre_.steps.end(), p.steps.begin(), p.steps.end());
}

// A Split regex: the published patterns lmembed implements by hand.
inline detail::PreTokenizer Tokenizer::named_regex(const std::string& re, const std::string& src) {
  if (re == "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" ||
      re == "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)")
    return detail::PreTokenizer::named("gpt-2");
  if (re ==
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    return detail::PreTokenizer::named("llama-bpe");
  if (re ==
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    return detail::PreTokenizer::named("qwen2");
  throw config_error(src + ": Split regex '" + re +
                     "' is not one of the patterns lmembed implements (gpt-2, llama-3, qwen2)");
}

inline void Tokenizer::read_decoder(const json::Value& d) {
  const std::string type = d.at("type").as_string();
  if (type == "Sequence") {
    for (const json::Value& x : d.at("decoders").as_array()) read_decoder(x);
  } else if (type == "Strip") {
    if (const json::Value* v = d.find("start"); v && v->is_number() && v->as_int() > 0)
      strip_leading_space_ = true;
  } else if (type == "Metaspace") {
    std::string scheme = "always";
    if (const json::Value* v = d.find("prepend_scheme"); v && v->is_string())
      scheme = v->as_string();
    strip_leading_space_ = scheme != "never";
  }
}

inline void Tokenizer::read_post_processor(const json::Value& p, const std::string& src) {
  const std::string type = p.at("type").as_string();
  if (type == "Sequence") {
    for (const json::Value& x : p.at("processors").as_array()) read_post_processor(x, src);
  } else if (type == "TemplateProcessing") {
    const json::Value& single = p.at("single");
    const json::Value* specials = p.find("special_tokens");
    bool seen_seq = false;
    bool bos = false, eos = false;
    for (const json::Value& item : single.as_array()) {
      if (item.find("Sequence")) {
        seen_seq = true;
        continue;
      }
      const json::Value* st = item.find("SpecialToken");
      if (!st) continue;
      const std::string name = st->at("id").as_string();
      std::int32_t id = token_id(name);
      if (specials && specials->find(name)) {
        const json::Array& ids = specials->at(name).at("ids").as_array();
        if (ids.size() != 1)
          throw config_error(src + ": template token '" + name + "' must map to one id");
        id = static_cast<std::int32_t>(ids[0].as_int());
      }
      if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
        throw config_error(src + ": template token '" + name + "' is not in the vocabulary");
      if (!seen_seq) {
        if (bos) throw config_error(src + ": template with two tokens before the sequence");
        bos_ = id;
        bos = true;
      } else {
        if (eos) throw config_error(src + ": template with two tokens after the sequence");
        eos_ = id;
        eos = true;
      }
    }
    add_bos_ = bos;
    add_eos_ = eos;
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    bos_ = static_cast<std::int32_t>(p.at("cls").as_array().at(1).as_int());
    eos_ = static_cast<std::int32_t>(p.at("sep").as_array().at(1).as_int());
    add_bos_ = add_eos_ = true;
  } else if (type == "ByteLevel") {
    // offsets only; ids unchanged
  } else {
    throw config_error(src + ": post-processor '" + type + "' is not supported");
  }
}

}  // namespace lmembed
