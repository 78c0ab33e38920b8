// lmembed/tokenizer/tokenizer.hpp - SentencePiece-BPE and byte-level BPE tokenizers, read from a
// GGUF file's tokenizer.ggml.* metadata or from a Hugging Face tokenizer.json.
//
// The algorithms follow llama.cpp (src/llama-vocab.cpp), whose test vectors they reproduce:
// - "llama" (SPM): the text (a space prefixed, spaces escaped to U+2581) is cut into UTF-8
//   characters; adjacent pieces whose concatenation is a token are merged, highest token score
//   first (leftmost on ties), through a priority queue of candidate bigrams; pieces that are not
//   tokens become <0xNN> byte tokens.
// - "gpt2" (byte-level BPE): the text is pre-tokenized (pretokenize.hpp), each word's bytes are
//   mapped to GPT-2's byte symbols and merged by merge rank (lowest first, leftmost on ties).
// - Hugging Face BPE models (tokenizer.json) use the same merge engine on characters, with byte
//   fallback, or on bytes with the ByteLevel pre-tokenizer.
// Special tokens (control, unknown) are matched in the text only with parse_special; user-defined
// tokens always are, longest first (llama.cpp's tokenizer_st_partition).
// encode/decode are const and keep no mutable state: concurrent calls on one Tokenizer are safe.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/tokenizer/pretokenize.hpp"
#include "lmembed/tokenizer/unicode.hpp"

namespace lmembed {

/// Per-call encoding options; nullopt means "as the model's own flag says".
struct EncodeOptions {
  /// Prepend BOS (nullopt: the model's add_bos flag).
  std::optional<bool> add_bos;
  /// Append EOS (nullopt: the model's add_eos flag). EOS pooling passes true.
  std::optional<bool> add_eos;
  /// Recognize control tokens such as "<s>" or "<|endoftext|>" written in the text.
  bool parse_special = false;
};

namespace detail {

/// Token attributes (llama.cpp's token types), as bit flags.
enum TokenAttr : std::uint8_t {
  kAttrNormal = 1,
  kAttrUnknown = 2,
  kAttrControl = 4,
  kAttrUserDefined = 8,
  kAttrUnused = 16,
  kAttrByte = 32,
};

/// Open-addressing table text -> token id. The token texts are copied into one contiguous arena
/// so that a lookup touches little memory (most SPM bigram lookups miss and stop at the stored
/// hash; hits compare against the arena).
class TokenTable {
 public:
  /// Indexes `tokens`. Later duplicates win, as in llama.cpp's token_to_id.
  void build(const std::vector<std::string>& tokens) {
    arena_.clear();
    offsets_.assign(1, 0);
    for (const std::string& t : tokens) {
      arena_ += t;
      offsets_.push_back(static_cast<std::uint32_t>(arena_.size()));
    }
    std::size_t cap = 16;
    while (cap < tokens.size() * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (std::size_t i = 0; i < tokens.size(); ++i) insert(tokens[i], static_cast<std::int32_t>(i));
  }
  /// The id of `text`, or -1.
  std::int32_t find(std::string_view text) const noexcept {
    if (slots_.empty()) return -1;
    const std::uint32_t h = hash(text);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == h && text_of(s.id) == text) return s.id;
    }
  }
  static std::uint32_t hash(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a, then a final mix
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return static_cast<std::uint32_t>(h);
  }

 private:
  struct Slot {
    std::uint32_t hash = 0;
    std::int32_t id = -1;
  };
  std::string_view text_of(std::int32_t id) const noexcept {
    const auto i = static_cast<std::size_t>(id);
    return std::string_view(arena_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }
  void insert(std::string_view text, std::int32_t id) {
    const std::uint32_t h = hash(text);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0 || (s.hash == h && text_of(s.id) == text)) {
        s = Slot{h, id};
        return;
      }
    }
  }
  std::string arena_;
  std::vector<std::uint32_t> offsets_;
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
};

/// Hash for heterogeneous (string_view) lookups in string-keyed maps.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return TokenTable::hash(s); }
};
using TokenMap = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

/// Open-addressing map (left id, right id) -> (rank, merged id), read-only after building.
class MergeTable {
 public:
  struct Entry {
    std::uint64_t key = kEmpty;
    std::int32_t rank = 0;
    std::int32_t id = 0;
  };
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};

  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Entry{});
    mask_ = cap - 1;
  }
  /// Inserts unless the pair is present (the first, lowest-rank merge of a pair wins).
  void insert(std::int32_t a, std::int32_t b, std::int32_t rank, std::int32_t id) {
    if (size_ * 2 >= slots_.size()) grow();
    const std::uint64_t k = key(a, b);
    for (std::size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = Entry{k, rank, id};
        ++size_;
        return;
      }
      if (slots_[i].key == k) return;
    }
  }
  /// The merge of (a, b), or nullptr.
  const Entry* find(std::int32_t a, std::int32_t b) const noexcept {
    if (slots_.empty()) return nullptr;
    const std::uint64_t k = key(a, b);
    for (std::size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i];
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  std::size_t size() const noexcept { return size_; }

 private:
  static std::uint64_t key(std::int32_t a, std::int32_t b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  static std::size_t hash(std::uint64_t k) noexcept {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<std::size_t>(k);
  }
  void grow() {
    std::vector<Entry> old = std::move(slots_);
    reserve(std::max<std::size_t>(old.size(), 8));
    size_ = 0;
    for (const Entry& e : old)
      if (e.key != kEmpty) {
        const std::size_t a = static_cast<std::size_t>(e.key >> 32);
        insert(static_cast<std::int32_t>(a), static_cast<std::int32_t>(e.key & 0xffffffffu), e.rank,
               e.id);
      }
  }
  std::vector<Entry> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

/// One Hugging Face normalizer step that BPE models use.
struct NormStep {
  enum class Kind { prepend, replace, lowercase, nfc } kind = Kind::prepend;
  std::string a;  // prepend: the prefix; replace: the pattern
  std::string b;  // replace: the content
};

struct TokenizerTestAccess;  // tests switch internal fast paths off to compare them

}  // namespace detail

/// A tokenizer: text -> token ids -> text. Build with from_gguf, from_hf or load.
class Tokenizer {
 public:
  /// The tokenization algorithm.
  enum class Model {
    spm,  ///< SentencePiece BPE driven by token scores (GGUF tokenizer.ggml.model "llama")
    bpe,  ///< BPE driven by merge ranks (GGUF "gpt2", Hugging Face "BPE")
  };

  /// Reads the tokenizer.ggml.* metadata of a GGUF file (model "llama" or "gpt2").
  static Tokenizer from_gguf(const io::GgufFile& f) {
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

  /// Reads a Hugging Face tokenizer.json (BPE model), plus tokenizer_config.json from the same
  /// folder when present (add_bos_token, add_eos_token, bos_token, eos_token).
  static Tokenizer from_hf(const std::filesystem::path& tokenizer_json) {
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
    if (const json::Value* v = model.find("fuse_unk"); v && v->is_bool())
      t.fuse_unk_ = v->as_bool();

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

  /// A .gguf file, a tokenizer.json file, or a Hugging Face folder holding tokenizer.json
  /// (config_error when the folder has none).
  static Tokenizer load(const std::filesystem::path& model) {
    namespace fs = std::filesystem;
    if (fs::is_directory(model)) {
      const fs::path tj = model / "tokenizer.json";
      if (!fs::exists(tj))
        throw config_error(model.string() +
                           ": folder has no tokenizer.json (lmembed reads Hugging "
                           "Face tokenizers only from tokenizer.json)");
      return from_hf(tj);
    }
    if (!fs::exists(model)) throw io_error(model.string() + ": no such file");
    if (model.extension() == ".json") return from_hf(model);
    return from_gguf(io::GgufFile::open(model));
  }

  /// Token ids of `text` (BOS/EOS per options or the model's flags). Thread-safe.
  std::vector<std::int32_t> encode(std::string_view text, const EncodeOptions& opt = {}) const {
    std::vector<std::int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (opt.add_bos.value_or(add_bos_)) {
      if (bos_ < 0) throw config_error(source_ + ": the model defines no BOS token");
      out.push_back(bos_);
    }
    Scratch s;
    bool prev_special = true;  // SPM: a space is prefixed to text at the start or after a token
    for (const Fragment& fr : partition(text, opt.parse_special)) {
      if (fr.token >= 0) {
        out.push_back(fr.token);
        prev_special = true;
        continue;
      }
      const std::string_view piece = text.substr(fr.offset, fr.length);
      if (model_ == Model::spm)
        encode_spm(piece, add_space_prefix_ && prev_special, s, out);
      else
        encode_bpe(piece, fr.offset == 0, s, out);  // "first": at the start of the input
      prev_special = false;
    }
    if (opt.add_eos.value_or(add_eos_)) {
      if (eos_ < 0) throw config_error(source_ + ": the model defines no EOS token");
      out.push_back(eos_);
    }
    return out;
  }

  /// The text of `ids`: control, unknown and unused tokens render as nothing, byte tokens as their
  /// byte, byte-level symbols as their bytes; SentencePiece models drop the one space they
  /// prefixed. input_error for an id outside [0, vocab_size()).
  std::string decode(std::span<const std::int32_t> ids) const {
    std::string out;
    bool first = true;
    for (std::int32_t id : ids) {
      if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
        throw input_error("token id " + std::to_string(id) + " out of range [0, " +
                          std::to_string(tokens_.size()) + ")");
      const std::uint8_t a = attrs_[static_cast<std::size_t>(id)];
      // Control, unknown, unused and undefined tokens render as nothing (llama.cpp token_to_piece).
      if ((a & (detail::kAttrControl | detail::kAttrUnknown)) || a == detail::kAttrUnused || a == 0)
        continue;
      const std::size_t before = out.size();
      append_piece(id, out);
      if (first && out.size() > before) {
        if (strip_leading_space_ && out[before] == ' ') out.erase(before, 1);
        first = false;
      }
    }
    return out;
  }

  /// BOS token id (-1 when the model has none).
  std::int32_t bos_id() const noexcept { return bos_; }
  /// EOS token id (-1 when the model has none).
  std::int32_t eos_id() const noexcept { return eos_; }
  /// Unknown token id (-1 when the model has none).
  std::int32_t unk_id() const noexcept { return unk_; }
  /// Number of token ids.
  std::size_t vocab_size() const noexcept { return tokens_.size(); }
  /// Whether encode adds BOS by default.
  bool add_bos() const noexcept { return add_bos_; }
  /// Whether encode adds EOS by default.
  bool add_eos() const noexcept { return add_eos_; }
  /// The algorithm.
  Model model() const noexcept { return model_; }
  /// The pre-tokenizer's name ("" for SentencePiece models and HF models without one).
  const std::string& pre_tokenizer() const noexcept { return pre_.name; }
  /// The stored text of token `id` (input_error when out of range).
  const std::string& token_text(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
      throw input_error("token id " + std::to_string(id) + " out of range [0, " +
                        std::to_string(tokens_.size()) + ")");
    return tokens_[static_cast<std::size_t>(id)];
  }
  /// The id of the token whose stored text is `text`, or -1.
  std::int32_t token_id(std::string_view text) const { return token_to_id_.find(text); }
  /// The words the pre-tokenizer cuts `text` into (after HF normalizers; one word when the
  /// model has no pre-tokenizer).
  std::vector<std::string> pre_tokenize(std::string_view text) const {
    const std::string norm = normalize(text, true);
    return detail::split_words(pre_, norm);
  }

 private:
  friend struct detail::TokenizerTestAccess;

  struct Fragment {
    std::size_t offset = 0, length = 0;
    std::int32_t token = -1;  // >= 0: a special token
  };
  // Per-call buffers (local to one encode call, so encode stays thread-safe).
  struct Scratch {
    detail::CodepointText cps;
    std::vector<std::uint32_t> offsets;
    std::string clean, norm, escaped;
    std::vector<std::int32_t> ids;
    std::vector<std::int32_t> prev, next;
  };

  static std::uint8_t attr_of_type(std::int32_t type) {
    switch (type) {
      case 1:
        return detail::kAttrNormal;
      case 2:
        return detail::kAttrUnknown;
      case 3:
        return detail::kAttrControl;
      case 4:
        return detail::kAttrUserDefined;
      case 5:
        return detail::kAttrUnused;
      case 6:
        return detail::kAttrByte;
      default:
        return 0;  // undefined: never matched as special, rendered as nothing
    }
  }

  // llama.cpp forces end-of-generation looking tokens to control type.
  void force_eog_control() {
    static constexpr std::string_view eog[] = {"<|eot_id|>",      "<|im_end|>",    "<|end|>",
                                               "<end_of_turn>",   "<|endoftext|>", "<|eom_id|>",
                                               "<|end_of_text|>", "<EOT>",         "_<EOT>"};
    for (std::size_t i = 0; i < tokens_.size(); ++i)
      for (std::string_view e : eog)
        if (tokens_[i] == e)
          attrs_[i] = static_cast<std::uint8_t>(attrs_[i] | detail::kAttrControl);
  }

  void build_maps() {
    token_to_id_.build(tokens_);  // later duplicates win (llama.cpp)
    specials_.clear();
    for (std::size_t i = 0; i < tokens_.size(); ++i)
      if (attrs_[i] & (detail::kAttrControl | detail::kAttrUserDefined | detail::kAttrUnknown))
        specials_.push_back(static_cast<std::int32_t>(i));
    std::stable_sort(specials_.begin(), specials_.end(), [&](std::int32_t a, std::int32_t b) {
      return tokens_[static_cast<std::size_t>(a)].size() >
             tokens_[static_cast<std::size_t>(b)].size();
    });
  }

  // Whether no token holds U+2581 right after a character other than U+2581.
  bool no_inner_metaspace() const {
    for (const std::string& t : tokens_)
      for (std::size_t p = t.find("\xe2\x96\x81", 1); p != std::string::npos;
           p = t.find("\xe2\x96\x81", p + 1))
        if (p < 3 || t.compare(p - 3, 3, "\xe2\x96\x81") != 0) return false;
    return true;
  }

  void add_merge(std::string_view a, std::string_view b, std::int32_t rank) {
    const std::int32_t ia = token_id(a), ib = token_id(b);
    if (ia < 0 || ib < 0) return;
    std::string ab;
    ab.reserve(a.size() + b.size());
    ab.append(a).append(b);
    const std::int32_t iab = token_id(ab);
    if (iab < 0) return;  // a merge whose result is no token can never be emitted
    merges_.insert(ia, ib, rank, iab);
  }

  // byte_ids_[b]: the initial symbol of byte b (byte-level: its GPT-2 symbol's token; otherwise
  // the <0xNN> byte token). raw_to_id_: byte-level tokens by their decoded bytes (ignore_merges).
  void build_byte_ids() {
    for (int b = 0; b < 256; ++b) {
      std::int32_t id = -1;
      if (byte_level_) {
        id = token_id(
            detail::unicode::to_utf8(detail::unicode::byte_to_cpt()[static_cast<std::size_t>(b)]));
      } else {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        id = token_id(buf);
        if (id < 0 && model_ == Model::spm) id = token_id(std::string(1, static_cast<char>(b)));
      }
      byte_ids_[static_cast<std::size_t>(b)] = id;
    }
    if (byte_level_ && ignore_merges_) {
      raw_to_id_.clear();
      for (std::size_t i = 0; i < tokens_.size(); ++i) {
        std::string raw;
        if (!byte_level_raw(tokens_[i], raw)) continue;
        raw_to_id_.emplace(std::move(raw), static_cast<std::int32_t>(i));
      }
    }
  }

  // The bytes a byte-level token text stands for; false when it holds a non-byte symbol.
  static bool byte_level_raw(std::string_view text, std::string& raw) {
    raw.clear();
    for (std::size_t pos = 0; pos < text.size();) {
      const int b = detail::unicode::cpt_to_byte(detail::unicode::next_cpt(text, pos));
      if (b < 0) return false;
      raw.push_back(static_cast<char>(b));
    }
    return true;
  }

  // Splits the text on special tokens, longest token first (llama.cpp's tokenizer_st_partition).
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const {
    std::vector<Fragment> frags;
    if (text.empty()) return frags;
    frags.push_back(Fragment{0, text.size(), -1});
    std::vector<Fragment> next;
    for (std::int32_t id : specials_) {
      const std::uint8_t a = attrs_[static_cast<std::size_t>(id)];
      if (!parse_special && (a & (detail::kAttrControl | detail::kAttrUnknown))) continue;
      const std::string& tok = tokens_[static_cast<std::size_t>(id)];
      next.clear();
      bool changed = false;
      for (const Fragment& f : frags) {
        if (f.token >= 0 || f.length < tok.size()) {
          next.push_back(f);
          continue;
        }
        const std::string_view region = text.substr(f.offset, f.length);
        std::size_t start = 0;
        for (std::size_t m = region.find(tok); m != std::string_view::npos;
             m = region.find(tok, start)) {
          if (m > start) next.push_back(Fragment{f.offset + start, m - start, -1});
          next.push_back(Fragment{f.offset + m, tok.size(), id});
          start = m + tok.size();
          changed = true;
        }
        if (start < f.length) next.push_back(Fragment{f.offset + start, f.length - start, -1});
      }
      if (changed) frags.swap(next);
    }
    return frags;
  }

  // ---------------------------------------------------------------- SentencePiece (llama.cpp)
  void encode_spm(std::string_view piece, bool prefix_space, Scratch& s,
                  std::vector<std::int32_t>& out) const {
    std::string& text = s.escaped;
    text.clear();
    text.reserve(piece.size() + 8);
    if (prefix_space) text += "\xe2\x96\x81";
    for (char c : piece) {
      if (c == ' ')
        text += "\xe2\x96\x81";
      else
        text.push_back(c);
    }
    if (text.empty()) return;
    if (!spm_split_) {
      spm_segment(text, out);
      return;
    }
    // No token holds U+2581 after another character (checked at load), so no merge can cross
    // the start of a U+2581 that follows another character: the pieces between such starts
    // are tokenized independently, with the same result and small, cache-resident work.
    std::size_t start = 0;
    for (std::size_t i = 3; i + 3 <= text.size(); ++i) {
      if (text.compare(i, 3, "\xe2\x96\x81") == 0 && text.compare(i - 3, 3, "\xe2\x96\x81") != 0) {
        spm_segment(std::string_view(text).substr(start, i - start), out);
        start = i;
      }
    }
    spm_segment(std::string_view(text).substr(start), out);
  }

  // One SPM segment: merges by token score (highest first, leftmost on ties), as llama.cpp's
  // llm_tokenizer_spm_session; short segments scan an array, long ones use a priority queue.
  void spm_segment(std::string_view text, std::vector<std::int32_t>& out) const {
    if (text.empty()) return;
    std::size_t nsym = 0;
    for (std::size_t off = 0; off < text.size(); ++nsym)
      off += detail::unicode::utf8_len(static_cast<unsigned char>(text[off]));
    if (nsym <= 32) {
      std::array<std::uint32_t, 33> start{};
      std::array<float, 32> score{};  // score of the pair (i, i+1); -inf when not a token
      std::size_t m = 0;
      for (std::size_t off = 0; off < text.size(); ++m) {
        start[m] = static_cast<std::uint32_t>(off);
        off = std::min(off + detail::unicode::utf8_len(static_cast<unsigned char>(text[off])),
                       text.size());
      }
      start[m] = static_cast<std::uint32_t>(text.size());
      constexpr float kNo = -std::numeric_limits<float>::infinity();
      std::array<bool, 32> ok{};
      auto look = [&](std::size_t i) {
        const std::int32_t id = token_to_id_.find(text.substr(start[i], start[i + 2] - start[i]));
        ok[i] = id >= 0;
        score[i] = id >= 0 ? scores_[static_cast<std::size_t>(id)] : kNo;
      };
      for (std::size_t i = 0; i + 1 < m; ++i) look(i);
      while (m > 1) {
        std::size_t best = m;
        for (std::size_t i = 0; i + 1 < m; ++i)
          if (ok[i] && (best == m || score[i] > score[best])) best = i;
        if (best == m) break;
        for (std::size_t i = best + 1; i < m; ++i) start[i] = start[i + 1];
        for (std::size_t i = best + 1; i + 1 < m; ++i) {
          score[i] = score[i + 1];
          ok[i] = ok[i + 1];
        }
        --m;
        if (best > 0) look(best - 1);
        if (best + 1 < m) look(best);
      }
      for (std::size_t i = 0; i < m; ++i)
        spm_emit(text.substr(start[i], start[i + 1] - start[i]), out);
      return;
    }
    // Symbols: [start, start + len) of `text`, linked left-to-right.
    struct Sym {
      std::uint32_t start, len;
      std::int32_t prev, next;
    };
    std::vector<Sym> sym;
    sym.reserve(text.size());
    for (std::size_t off = 0; off < text.size();) {
      const std::size_t len = std::min(
          detail::unicode::utf8_len(static_cast<unsigned char>(text[off])), text.size() - off);
      const auto idx = static_cast<std::int32_t>(sym.size());
      sym.push_back(Sym{static_cast<std::uint32_t>(off), static_cast<std::uint32_t>(len), idx - 1,
                        off + len == text.size() ? -1 : idx + 1});
      off += len;
    }
    struct Bigram {
      float score;
      std::int32_t left, right;
      std::uint32_t size;
    };
    // Highest score first, then leftmost (llama.cpp's llm_bigram_spm comparator).
    auto worse = [](const Bigram& l, const Bigram& r) {
      return l.score < r.score || (l.score == r.score && l.left > r.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
    auto try_add = [&](std::int32_t l, std::int32_t r) {
      if (l < 0 || r < 0) return;
      const Sym& a = sym[static_cast<std::size_t>(l)];
      const Sym& b = sym[static_cast<std::size_t>(r)];
      const std::string_view cat(text.data() + a.start, a.len + b.len);
      const std::int32_t id = token_to_id_.find(cat);
      if (id < 0) return;
      queue.push(Bigram{scores_[static_cast<std::size_t>(id)], l, r, a.len + b.len});
    };
    for (std::size_t i = 1; i < sym.size(); ++i)
      try_add(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
    while (!queue.empty()) {
      const Bigram bg = queue.top();
      queue.pop();
      Sym& l = sym[static_cast<std::size_t>(bg.left)];
      Sym& r = sym[static_cast<std::size_t>(bg.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;  // outdated
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[static_cast<std::size_t>(r.next)].prev = bg.left;
      try_add(l.prev, bg.left);
      try_add(bg.left, l.next);
    }
    for (std::int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next) {
      const Sym& x = sym[static_cast<std::size_t>(i)];
      spm_emit(std::string_view(text.data() + x.start, x.len), out);
    }
  }

  // A final SPM symbol: its token, or (merged symbols always are tokens) byte fallback.
  void spm_emit(std::string_view str, std::vector<std::int32_t>& out) const {
    if (const std::int32_t id = token_to_id_.find(str); id >= 0) {
      out.push_back(id);
      return;
    }
    for (char c : str) {
      const std::int32_t b = byte_ids_[static_cast<unsigned char>(c)];
      if (b >= 0)
        out.push_back(b);
      else if (unk_ >= 0)
        out.push_back(unk_);
    }
  }

  // ---------------------------------------------------------------- BPE (merge ranks)
  // Hugging Face normalizers, then Metaspace / ByteLevel prefix handling.
  std::string normalize(std::string_view piece, bool first) const {
    std::string s(piece);
    for (const detail::NormStep& n : normalizer_) {
      switch (n.kind) {
        case detail::NormStep::Kind::prepend:
          if (!s.empty()) s.insert(0, n.a);
          break;
        case detail::NormStep::Kind::replace: {
          if (n.a.empty()) break;
          std::string r;
          r.reserve(s.size());
          std::size_t start = 0;
          for (std::size_t m = s.find(n.a); m != std::string::npos; m = s.find(n.a, start)) {
            r.append(s, start, m - start).append(n.b);
            start = m + n.a.size();
          }
          r.append(s, start, std::string::npos);
          s.swap(r);
          break;
        }
        case detail::NormStep::Kind::lowercase: {
          std::string r;
          r.reserve(s.size());
          for (std::size_t pos = 0; pos < s.size();)
            detail::unicode::append_utf8(
                r, detail::unicode::to_lower(detail::unicode::next_cpt(s, pos)));
          s.swap(r);
          break;
        }
        case detail::NormStep::Kind::nfc:
          s = detail::unicode::nfc(s);
          break;
      }
    }
    if (metaspace_) {  // HF Metaspace: spaces become U+2581, then the prefix unless present
      std::string r;
      const bool prepend = metaspace_prepend_ == 2 || (metaspace_prepend_ == 1 && first);
      if (prepend && !(!s.empty() && s[0] == ' ') &&
          !(s.size() >= 3 && s.compare(0, 3, "\xe2\x96\x81") == 0))
        r += "\xe2\x96\x81";
      for (char c : s) {
        if (c == ' ')
          r += "\xe2\x96\x81";
        else
          r.push_back(c);
      }
      s.swap(r);
    }
    if (byte_level_prefix_space_ && !s.empty() && s[0] != ' ') s.insert(0, " ");
    return s;
  }

  void encode_bpe(std::string_view piece, bool first, Scratch& s,
                  std::vector<std::int32_t>& out) const {
    std::string_view text = piece;
    if (!normalizer_.empty() || metaspace_ || byte_level_prefix_space_) {
      s.norm = normalize(piece, first);
      text = s.norm;
    }
    if (text.empty()) return;
    const std::string_view used = detail::decode_text(text, s.cps, s.offsets, s.clean);
    if (pre_.steps.empty()) {
      bpe_word(used, s, out);
      return;
    }
    for (const detail::Segment& seg : pre_.split(s.cps))
      bpe_word(used.substr(s.offsets[seg.first], s.offsets[seg.second] - s.offsets[seg.first]), s,
               out);
  }

  // One word: initial symbols, then merges by rank (lowest first, leftmost on ties).
  void bpe_word(std::string_view word, Scratch& s, std::vector<std::int32_t>& out) const {
    if (word.empty()) return;
    std::vector<std::int32_t>& ids = s.ids;
    ids.clear();
    if (byte_level_) {
      if (ignore_merges_) {
        if (auto it = raw_to_id_.find(word); it != raw_to_id_.end()) {
          out.push_back(it->second);
          return;
        }
      }
      for (char c : word) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    } else {
      if (ignore_merges_) {
        if (const std::int32_t id = token_to_id_.find(word); id >= 0) {
          out.push_back(id);
          return;
        }
      }
      // Characters; those not in the vocabulary become <0xNN> tokens (byte_fallback) or unk.
      for (std::size_t off = 0; off < word.size();) {
        const std::size_t len = std::min(
            detail::unicode::utf8_len(static_cast<unsigned char>(word[off])), word.size() - off);
        const std::string_view ch = word.substr(off, len);
        off += len;
        if (const std::int32_t id = token_to_id_.find(ch); id >= 0) {
          ids.push_back(id);
          continue;
        }
        bool done = false;
        if (byte_fallback_) {
          done = true;
          for (char c : ch)
            if (byte_ids_[static_cast<unsigned char>(c)] < 0) done = false;
          if (done)
            for (char c : ch) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
        }
        if (!done) {
          if (unk_ < 0)
            throw input_error(source_ + ": character '" + std::string(ch) +
                              "' is not in the vocabulary and the model has no unknown token");
          if (!(fuse_unk_ && !ids.empty() && ids.back() == unk_)) ids.push_back(unk_);
        }
      }
    }
    merge(ids, s);
    for (std::int32_t id : ids)
      if (id >= 0) out.push_back(id);  // -1: a byte with no symbol token (dropped, as llama.cpp)
  }

  // Applies merges to `ids` in place.
  void merge(std::vector<std::int32_t>& ids, Scratch& s) const {
    const std::size_t n = ids.size();
    if (n < 2) return;
    constexpr std::int32_t kNone = std::numeric_limits<std::int32_t>::max();
    if (n <= 48) {
      // Short words: keep each adjacent pair's rank in an array; one scan per merge.
      std::array<std::int32_t, 48> rank{};
      std::array<std::int32_t, 48> res{};
      std::size_t m = n;
      auto look = [&](std::size_t i) {
        const auto* e = merges_.find(ids[i], ids[i + 1]);
        rank[i] = e ? e->rank : kNone;
        res[i] = e ? e->id : -1;
      };
      for (std::size_t i = 0; i + 1 < m; ++i) look(i);
      while (m > 1) {
        std::size_t best = 0;
        for (std::size_t i = 1; i + 1 < m; ++i)
          if (rank[i] < rank[best]) best = i;
        if (rank[best] == kNone) break;
        ids[best] = res[best];
        for (std::size_t i = best + 1; i + 1 < m; ++i) {
          ids[i] = ids[i + 1];
          rank[i] = rank[i + 1];
          res[i] = res[i + 1];
        }
        --m;
        if (best > 0) look(best - 1);
        if (best + 1 < m) look(best);
      }
      ids.resize(m);
      return;
    }
    // Long words: a priority queue of merge candidates, stale entries skipped on pop.
    struct Cand {
      std::int32_t rank, left, right, lid, rid;
    };
    auto worse = [](const Cand& a, const Cand& b) {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> queue(worse);
    std::vector<std::int32_t>& prev = s.prev;
    std::vector<std::int32_t>& next = s.next;
    prev.resize(n);
    next.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      prev[i] = static_cast<std::int32_t>(i) - 1;
      next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
    }
    auto push = [&](std::int32_t l, std::int32_t r) {
      if (l < 0 || r < 0) return;
      const auto* e =
          merges_.find(ids[static_cast<std::size_t>(l)], ids[static_cast<std::size_t>(r)]);
      if (e)
        queue.push(Cand{e->rank, l, r, ids[static_cast<std::size_t>(l)],
                        ids[static_cast<std::size_t>(r)]});
    };
    for (std::size_t i = 0; i + 1 < n; ++i)
      push(static_cast<std::int32_t>(i), static_cast<std::int32_t>(i + 1));
    constexpr std::int32_t kDead = -2;
    while (!queue.empty()) {
      const Cand c = queue.top();
      queue.pop();
      const auto l = static_cast<std::size_t>(c.left), r = static_cast<std::size_t>(c.right);
      if (ids[l] != c.lid || ids[r] != c.rid || next[l] != c.right) continue;  // outdated
      const auto* e = merges_.find(c.lid, c.rid);
      ids[l] = e->id;
      ids[r] = kDead;
      next[l] = next[r];
      if (next[r] >= 0) prev[static_cast<std::size_t>(next[r])] = c.left;
      push(prev[l], c.left);
      push(c.left, next[l]);
    }
    std::size_t w = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (ids[i] != kDead) ids[w++] = ids[i];
    ids.resize(w);
  }

  // ---------------------------------------------------------------- decoding
  void append_piece(std::int32_t id, std::string& out) const {
    const std::size_t i = static_cast<std::size_t>(id);
    const std::string& text = tokens_[i];
    const std::uint8_t a = attrs_[i];
    if (a & detail::kAttrUserDefined) {
      out += text;
      return;
    }
    if ((a & detail::kAttrByte) || (!byte_level_ && byte_fallback_ && is_byte_token(text))) {
      if (is_byte_token(text)) {
        out.push_back(static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
        return;
      }
    }
    if (byte_level_) {
      for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t start = pos;
        const int b = detail::unicode::cpt_to_byte(detail::unicode::next_cpt(text, pos));
        if (b >= 0)
          out.push_back(static_cast<char>(b));
        else
          out.append(text, start, pos - start);
      }
      return;
    }
    // SentencePiece-style: U+2581 is a space.
    for (std::size_t pos = 0; pos < text.size();) {
      if (text.compare(pos, 3, "\xe2\x96\x81") == 0) {
        out.push_back(' ');
        pos += 3;
      } else {
        out.push_back(text[pos++]);
      }
    }
  }

  static bool is_byte_token(std::string_view t) {
    auto hex = [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
    };
    return t.size() == 6 && t.substr(0, 3) == "<0x" && hex(t[3]) && hex(t[4]) && t[5] == '>';
  }

  // ---------------------------------------------------------------- tokenizer.json parts
  void read_normalizer(const json::Value& n, const std::string& src) {
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

  void read_pre_tokenizer(const json::Value& p, const std::string& src) {
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

  void append_steps(const detail::PreTokenizer& p) {
    if (pre_.name.empty()) pre_.name = p.name;
    pre_.steps.insert(pre_.steps.end(), p.steps.begin(), p.steps.end());
  }

  // A Split regex: the published patterns lmembed implements by hand.
  static detail::PreTokenizer named_regex(const std::string& re, const std::string& src) {
    if (re ==
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" ||
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

  void read_decoder(const json::Value& d) {
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

  void read_post_processor(const json::Value& p, const std::string& src) {
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

  // ---------------------------------------------------------------- state (immutable after load)
  std::string source_;
  Model model_ = Model::spm;
  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  bool add_space_prefix_ = false;
  bool spm_split_ = false;  // SPM text may be cut before each U+2581 that follows a character
  bool strip_leading_space_ = false;
  bool byte_level_prefix_space_ = false;
  bool metaspace_ = false;
  int metaspace_prepend_ = 0;  // 0 never, 1 first, 2 always
  bool add_bos_ = false, add_eos_ = false;
  std::int32_t bos_ = -1, eos_ = -1, unk_ = -1;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<std::uint8_t> attrs_;
  detail::TokenTable token_to_id_;  // indexes tokens_
  detail::TokenMap raw_to_id_;
  detail::MergeTable merges_;
  std::array<std::int32_t, 256> byte_ids_{};
  std::vector<std::int32_t> specials_;
  detail::PreTokenizer pre_;
  std::vector<detail::NormStep> normalizer_;
};

}  // namespace lmembed
