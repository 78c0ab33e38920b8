// libFuzzer target: a Hugging Face tokenizer.json (arbitrary bytes, seeded from BPE tokenizers
// in GPT-2's and SentencePiece's layouts) -> Tokenizer::from_hf, then encode and decode of fixed
// texts: a file is refused with an lmembed error or gives a tokenizer whose ids are in range.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto dir = lmembed_fuzz::fresh("tokjson");
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // A second part, when present, is tokenizer_config.json beside it.
  const auto p = lmembed_fuzz::parts(in, 2);
  lmembed_fuzz::put(dir / "tokenizer.json", p[0]);
  if (p.size() > 1) lmembed_fuzz::put(dir / "tokenizer_config.json", p[1]);
  try {
    const lmembed::Tokenizer t = lmembed::Tokenizer::from_hf(dir / "tokenizer.json");
    static const std::string_view texts[] = {"Hello world", "  two  spaces\n",
                                             "<s>x</s>",    "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
                                             "\xff\xfe",    std::string_view("\0a", 2)};
    for (const std::string_view text : texts)
      for (const bool special : {false, true}) {
        lmembed::EncodeOptions o;
        o.parse_special = special;
        const auto ids = t.encode(text, o);
        for (const auto id : ids)
          LMEMBED_FUZZ_CHECK(id >= 0 && std::size_t(id) < t.vocab_size(), "id out of range");
        (void)t.decode(ids);
      }
  } catch (const lmembed::error&) {
  }
  return 0;
}
