// libFuzzer target: the BPE and SentencePiece encoders on arbitrary bytes with real
// vocabularies (GPT-2's byte-level BPE, llama's SPM, stories260K's SPM). The first byte picks
// the vocabulary and the options; the rest is the text. Checks: no crash, ids in range, and
// the round trips the tokenizers promise (docs/tokenizer.md "Bad input"): byte-level BPE gives
// back any well-formed UTF-8 text exactly; SentencePiece with byte fallback gives back any
// bytes exactly (but U+2581, its space mark).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

#ifndef LMEMBED_DATA_DIR
#define LMEMBED_DATA_DIR "data"
#endif

namespace {
const lmembed::Tokenizer& vocab(int which) {
  static const lmembed::Tokenizer gpt2 =
      lmembed::Tokenizer::load(LMEMBED_DATA_DIR "/tokenizer/ggml-vocab-gpt-2.gguf");
  static const lmembed::Tokenizer spm =
      lmembed::Tokenizer::load(LMEMBED_DATA_DIR "/tokenizer/ggml-vocab-llama-spm.gguf");
  static const lmembed::Tokenizer stories =
      lmembed::Tokenizer::load(LMEMBED_DATA_DIR "/models/stories260K.gguf");
  return which == 0 ? gpt2 : which == 1 ? spm : stories;
}
}  // namespace

// The vocabularies load once, before the first input (GPT-2's 50k tokens take seconds under
// ASan on a busy machine: inside the first input they would count against -timeout).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  for (int i = 0; i < 3; ++i) (void)vocab(i);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int which = data[0] % 3;
  const bool special = (data[0] >> 2) & 1;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const lmembed::Tokenizer& t = vocab(which);
  lmembed::EncodeOptions o;
  o.add_bos = false;
  o.add_eos = false;
  o.parse_special = special;
  try {
    const auto ids = t.encode(text, o);
    for (const auto id : ids)
      LMEMBED_FUZZ_CHECK(id >= 0 && std::size_t(id) < t.vocab_size(), "id out of range");
    const std::string back = t.decode(ids);
    if (!special && t.model() == lmembed::Tokenizer::Model::bpe && lmembed_fuzz::valid_utf8(text))
      LMEMBED_FUZZ_CHECK(back == text, "byte-level BPE round trip");
    // (U+2581, SentencePiece's own space mark, decodes to a space: texts holding it are out.)
    if (!special && t.model() == lmembed::Tokenizer::Model::spm &&
        text.find("\xe2\x96\x81") == std::string_view::npos)
      LMEMBED_FUZZ_CHECK(back == text, "SentencePiece byte-fallback round trip");
  } catch (const lmembed::error&) {
  }
  return 0;
}
