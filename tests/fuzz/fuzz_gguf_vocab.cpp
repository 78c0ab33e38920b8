// libFuzzer target: GGUF tokenizer metadata (tokenizer.ggml.*: model, tokens, scores, types,
// merges, special ids, pre-tokenizer; arbitrary bytes seeded from real vocabularies) ->
// Tokenizer::from_gguf, then encode/decode of fixed texts and of every token's own text.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                               reinterpret_cast<const std::byte*>(data) + size);
  try {
    const auto f = lmembed::io::GgufFile::from_bytes(std::move(bytes), "fuzz-vocab.gguf");
    const lmembed::Tokenizer t = lmembed::Tokenizer::from_gguf(f);
    static const std::string_view texts[] = {"Hello world", " leading space", "<s>x</s>\n",
                                             "caf\xc3\xa9 123 \xe6\x97\xa5", "\xff\xc3"};
    for (const std::string_view text : texts)
      for (const bool special : {false, true}) {
        lmembed::EncodeOptions o;
        o.parse_special = special;
        const auto ids = t.encode(text, o);
        for (const auto id : ids)
          LMEMBED_FUZZ_CHECK(id >= 0 && std::size_t(id) < t.vocab_size(), "id out of range");
        (void)t.decode(ids);
      }
    // Every token decodes, and its stored text (at most the first 64) encodes.
    const std::size_t n = t.vocab_size() < 64 ? t.vocab_size() : 64;
    for (std::size_t i = 0; i < n; ++i) {
      const std::int32_t id = static_cast<std::int32_t>(i);
      (void)t.decode(std::vector<std::int32_t>{id});
      (void)t.encode(t.token_text(id));
    }
  } catch (const lmembed::error&) {
  }
  return 0;
}
