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
#include "lmembed/core/json_util.hpp"
#include "lmembed/tokenizer/norm_step.hpp"
#include "lmembed/tokenizer/pretokenize.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/tokenizer/vocab.hpp"

namespace lmembed {

inline Tokenizer Tokenizer::from_hf(const std::filesystem::path& tokenizer_json) {
  const std::string src = tokenizer_json.string();
  const ordered_json root = json::parse(read_text_file(tokenizer_json), src);
  Tokenizer t;
  t.source_ = src;
  t.model_ = Model::bpe;
  t.unk_ = -1;
  t.bos_ = t.eos_ = -1;
  const ordered_json& model = json::at(root, "model", src);
  const std::string mtype =
      json::find(model, "type") ? json::get_string(model, "type", src) : "BPE";
  if (mtype != "BPE")
    throw config_error(src + ": model type '" + mtype + "' is not supported (only BPE)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const ordered_json* v = json::find(model, k);
        v && v->is_string() && !v->get_ref<const std::string&>().empty())
      throw config_error(src + ": model." + k + " is not supported");
  if (const ordered_json* v = json::find(model, "byte_fallback"); v && v->is_boolean())
    t.byte_fallback_ = v->get<bool>();
  if (const ordered_json* v = json::find(model, "ignore_merges"); v && v->is_boolean())
    t.ignore_merges_ = v->get<bool>();
  if (const ordered_json* v = json::find(model, "fuse_unk"); v && v->is_boolean())
    t.fuse_unk_ = v->get<bool>();

  // vocab (+ added tokens, which may extend it)
  std::vector<std::pair<std::string, std::int64_t>> entries;
  std::int64_t max_id = -1;
  const std::string vocab_src = src + ": vocab";
  for (const auto& [tok, idv] : json::get_object(model, "vocab", src)) {
    const std::int64_t id = json::as_int(idv, vocab_src, tok);
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
  const std::string added_src = src + ": added_tokens";
  if (const ordered_json* at = json::find(root, "added_tokens"); at && at->is_array())
    for (const ordered_json& a : *at) {
      Added x{json::get_string(a, "content", added_src), json::get_int(a, "id", added_src), false};
      if (const ordered_json* s = json::find(a, "special"); s && s->is_boolean())
        x.special = s->get<bool>();
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
  if (const ordered_json* u = json::find(model, "unk_token"); u && u->is_string())
    t.unk_ = t.token_id(u->get_ref<const std::string&>());
  if (t.unk_ >= 0 && t.attrs_[static_cast<std::size_t>(t.unk_)] == detail::kAttrNormal)
    t.attrs_[static_cast<std::size_t>(t.unk_)] = detail::kAttrUnknown;

  // merges: "a b" strings or ["a", "b"] pairs
  const ordered_json::array_t& merges = json::get_array(model, "merges", src);
  const std::string merges_src = src + ": merges";
  t.merges_.reserve(merges.size());
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const ordered_json& m = merges[r];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const std::size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        throw config_error(src + ": merge " + std::to_string(r) + " '" + s + "' has no space");
      t.add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1),
                  static_cast<std::int32_t>(r));
    } else {
      const ordered_json::array_t& p = json::as_array(m, merges_src);
      if (p.size() != 2)
        throw config_error(src + ": merge " + std::to_string(r) + " is not a pair");
      t.add_merge(json::as_string(p[0], merges_src), json::as_string(p[1], merges_src),
                  static_cast<std::int32_t>(r));
    }
  }

  // normalizer
  if (const ordered_json* nz = json::find(root, "normalizer"); nz && !nz->is_null())
    t.read_normalizer(*nz, src);
  // pre-tokenizer
  if (const ordered_json* pt = json::find(root, "pre_tokenizer"); pt && !pt->is_null())
    t.read_pre_tokenizer(*pt, src);
  // decoder: a Strip of leading spaces (SentencePiece-style models) or ByteLevel
  if (const ordered_json* dc = json::find(root, "decoder"); dc && !dc->is_null())
    t.read_decoder(*dc);
  // post-processor: BOS/EOS template
  if (const ordered_json* pp = json::find(root, "post_processor"); pp && !pp->is_null())
    t.read_post_processor(*pp, src);

  // tokenizer_config.json next to it
  const auto cfg_path = tokenizer_json.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    const std::string cfg_src = cfg_path.string();
    const ordered_json cfg = json::parse(read_text_file(cfg_path), cfg_src);
    auto token_of = [&](const char* key) -> std::int32_t {
      const ordered_json* v = json::find(cfg, key);
      if (!v) return -1;
      if (v->is_string()) return t.token_id(v->get_ref<const std::string&>());
      if (const ordered_json* c = json::find(*v, "content"))
        return t.token_id(json::as_string(*c, cfg_src + ": " + key, "content"));
      return -1;
    };
    if (t.bos_ < 0) t.bos_ = token_of("bos_token");
    if (t.eos_ < 0) t.eos_ = token_of("eos_token");
    if (const ordered_json* v = json::find(cfg, "add_bos_token"); v && v->is_boolean())
      t.add_bos_ = v->get<bool>();
    if (const ordered_json* v = json::find(cfg, "add_eos_token"); v && v->is_boolean())
      t.add_eos_ = v->get<bool>();
  }
  if (t.add_bos_ && t.bos_ < 0)
    throw config_error(src + ": BOS is to be added but no BOS token is defined");
  if (t.add_eos_ && t.eos_ < 0)
    throw config_error(src + ": EOS is to be added but no EOS token is defined");
  t.build_byte_ids();
  return t;
}

inline void Tokenizer::read_normalizer(const ordered_json& n, const std::string& src) {
  const std::string where = src + ": normalizer";
  const std::string type = json::get_string(n, "type", where);
  if (type == "Sequence") {
    for (const ordered_json& x : json::get_array(n, "normalizers", where)) read_normalizer(x, src);
  } else if (type == "Prepend") {
    normalizer_.push_back(
        {detail::NormStep::Kind::prepend, json::get_string(n, "prepend", where), {}});
  } else if (type == "Replace") {
    const ordered_json& pat = json::at(n, "pattern", where);
    if (!json::find(pat, "String"))
      throw config_error(src + ": Replace normalizer with a Regex pattern is not supported");
    normalizer_.push_back({detail::NormStep::Kind::replace, json::get_string(pat, "String", where),
                           json::get_string(n, "content", where)});
  } else if (type == "Lowercase") {
    normalizer_.push_back({detail::NormStep::Kind::lowercase, {}, {}});
  } else if (type == "NFC") {
    normalizer_.push_back({detail::NormStep::Kind::nfc, {}, {}});
  } else {
    throw config_error(src + ": normalizer '" + type + "' is not supported");
  }
}

inline void Tokenizer::read_pre_tokenizer(const ordered_json& p, const std::string& src) {
  const std::string where = src + ": pre_tokenizer";
  auto flag = [&](const char* key, bool fallback) {
    const ordered_json* v = json::find(p, key);
    return v && v->is_boolean() ? v->get<bool>() : fallback;
  };
  const std::string type = json::get_string(p, "type", where);
  if (type == "Sequence") {
    for (const ordered_json& x : json::get_array(p, "pretokenizers", where))
      read_pre_tokenizer(x, src);
  } else if (type == "ByteLevel") {
    byte_level_ = true;
    byte_level_prefix_space_ = flag("add_prefix_space", byte_level_prefix_space_);
    if (flag("use_regex", true)) append_steps(detail::PreTokenizer::named("gpt-2"));
  } else if (type == "Split") {
    const ordered_json& pat = json::at(p, "pattern", where);
    const std::string behavior =
        json::find(p, "behavior") ? json::get_string(p, "behavior", where) : "Isolated";
    const bool invert = flag("invert", false);
    if (behavior != "Isolated" || invert || !json::find(pat, "Regex"))
      throw config_error(src +
                         ": Split pre-tokenizer supported only with a Regex pattern, "
                         "behavior Isolated, invert false");
    append_steps(named_regex(json::get_string(pat, "Regex", where), src));
  } else if (type == "Digits") {
    const bool individual = flag("individual_digits", false);
    detail::SplitStep s;
    s.kind = detail::SplitStep::Kind::class_run;
    s.cls = detail::SplitStep::Class::number;
    s.count = individual ? 1 : 0;
    pre_.steps.push_back(s);
    if (pre_.name.empty()) pre_.name = "digits";
  } else if (type == "Metaspace") {
    metaspace_ = true;
    std::string scheme = "always";
    if (const ordered_json* v = json::find(p, "prepend_scheme"); v && v->is_string())
      scheme = v->get_ref<const std::string&>();
    if (!flag("add_prefix_space", true)) scheme = "never";
    metaspace_prepend_ = scheme == "always" ? 2 : scheme == "first" ? 1 : 0;
    strip_leading_space_ = metaspace_prepend_ != 0;
    if (const ordered_json* v = json::find(p, "replacement");
        v && v->is_string() && v->get_ref<const std::string&>() != "\xe2\x96\x81")
      throw config_error(src + ": Metaspace replacement other than U+2581 is not supported");
    if (flag("split", true)) {
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

inline void Tokenizer::read_decoder(const ordered_json& d) {
  const std::string type = json::get_string(d, "type", "decoder");
  if (type == "Sequence") {
    for (const ordered_json& x : json::get_array(d, "decoders", "decoder")) read_decoder(x);
  } else if (type == "Strip") {
    if (const ordered_json* v = json::find(d, "start");
        v && v->is_number() && json::as_int(*v, "decoder", "start") > 0)
      strip_leading_space_ = true;
  } else if (type == "Metaspace") {
    std::string scheme = "always";
    if (const ordered_json* v = json::find(d, "prepend_scheme"); v && v->is_string())
      scheme = v->get_ref<const std::string&>();
    strip_leading_space_ = scheme != "never";
  }
}

inline void Tokenizer::read_post_processor(const ordered_json& p, const std::string& src) {
  const std::string where = src + ": post_processor";
  const std::string type = json::get_string(p, "type", where);
  if (type == "Sequence") {
    for (const ordered_json& x : json::get_array(p, "processors", where))
      read_post_processor(x, src);
  } else if (type == "TemplateProcessing") {
    const ordered_json* specials = json::find(p, "special_tokens");
    bool seen_seq = false;
    bool bos = false, eos = false;
    for (const ordered_json& item : json::get_array(p, "single", where)) {
      if (json::find(item, "Sequence")) {
        seen_seq = true;
        continue;
      }
      const ordered_json* st = json::find(item, "SpecialToken");
      if (!st) continue;
      const std::string name = json::get_string(*st, "id", where);
      std::int32_t id = token_id(name);
      if (const ordered_json* sp = specials ? json::find(*specials, name) : nullptr) {
        const ordered_json::array_t& ids = json::get_array(*sp, "ids", where);
        if (ids.size() != 1)
          throw config_error(src + ": template token '" + name + "' must map to one id");
        id = static_cast<std::int32_t>(json::as_int(ids[0], where, "ids"));
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
    bos_ = static_cast<std::int32_t>(json::as_int(json::at(json::at(p, "cls", where), 1, where)));
    eos_ = static_cast<std::int32_t>(json::as_int(json::at(json::at(p, "sep", where), 1, where)));
    add_bos_ = add_eos_ = true;
  } else if (type == "ByteLevel") {
    // offsets only; ids unchanged
  } else {
    throw config_error(src + ": post-processor '" + type + "' is not supported");
  }
}

}  // namespace lmembed
