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
//
// The class is here; its parts, each in a header of its own that this one includes at its end:
//   special_tokens.hpp  token attributes, the special-token list, the text split on it
//   byte_tokens.hpp     byte symbols (<0xNN> tokens, GPT-2 byte-level symbols)
//   spm.hpp             the SentencePiece encoder    bpe.hpp  the merge-rank BPE encoder
//   gguf_vocab.hpp      from_gguf                    hf_json.hpp  from_hf (tokenizer.json)
//   vocab.hpp, merge_table.hpp, norm_step.hpp  the lookup tables and normalizer steps it holds
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lmembed/core/error.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/tokenizer/merge_table.hpp"
#include "lmembed/tokenizer/norm_step.hpp"
#include "lmembed/tokenizer/pretokenize.hpp"
#include "lmembed/tokenizer/unicode.hpp"
#include "lmembed/tokenizer/vocab.hpp"

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

  /// Reads the tokenizer.ggml.* metadata of a GGUF file (model "llama" or "gpt2") (gguf_vocab.hpp).
  static Tokenizer from_gguf(const io::GgufFile& f);

  /// Reads a Hugging Face tokenizer.json (BPE model), plus tokenizer_config.json from the same
  /// folder when present (add_bos_token, add_eos_token, bos_token, eos_token) (hf_json.hpp).
  static Tokenizer from_hf(const std::filesystem::path& tokenizer_json);

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

  // ----------------------------------------------------------- special tokens (special_tokens.hpp)
  static std::uint8_t attr_of_type(std::int32_t type);
  void force_eog_control();
  void build_maps();
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;

  // ---------------------------------------------------------------- byte tokens (byte_tokens.hpp)
  void build_byte_ids();
  static bool byte_level_raw(std::string_view text, std::string& raw);
  static bool is_byte_token(std::string_view t);

  // ---------------------------------------------------------------- SentencePiece (spm.hpp)
  bool no_inner_metaspace() const;
  void encode_spm(std::string_view piece, bool prefix_space, Scratch& s,
                  std::vector<std::int32_t>& out) const;
  void spm_segment(std::string_view text, std::vector<std::int32_t>& out) const;
  void spm_emit(std::string_view str, std::vector<std::int32_t>& out) const;

  // ---------------------------------------------------------------- BPE (bpe.hpp)
  void add_merge(std::string_view a, std::string_view b, std::int32_t rank);
  std::string normalize(std::string_view piece, bool first) const;
  void encode_bpe(std::string_view piece, bool first, Scratch& s,
                  std::vector<std::int32_t>& out) const;
  void bpe_word(std::string_view word, Scratch& s, std::vector<std::int32_t>& out) const;
  void merge(std::vector<std::int32_t>& ids, Scratch& s) const;

  // ------------------------------------------------------------ tokenizer.json parts (hf_json.hpp)
  void read_normalizer(const nlohmann::ordered_json& n, const std::string& src);
  void read_pre_tokenizer(const nlohmann::ordered_json& p, const std::string& src);
  void append_steps(const detail::PreTokenizer& p);
  static detail::PreTokenizer named_regex(const std::string& re, const std::string& src);
  void read_decoder(const nlohmann::ordered_json& d);
  void read_post_processor(const nlohmann::ordered_json& p, const std::string& src);

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

// The definitions of the members declared above, one concept a header.
#include "lmembed/tokenizer/bpe.hpp"
#include "lmembed/tokenizer/byte_tokens.hpp"
#include "lmembed/tokenizer/gguf_vocab.hpp"
#include "lmembed/tokenizer/hf_json.hpp"
#include "lmembed/tokenizer/special_tokens.hpp"
#include "lmembed/tokenizer/spm.hpp"
