// libFuzzer target: training JSONL (train/data.hpp) on arbitrary bytes, seeded from converted
// SNLI / STS-B lines. read_examples either throws an lmembed error naming the line or returns
// examples that write_examples writes and read_examples reads back unchanged; with skip_bad it
// never throws for a malformed line and counts lines = examples + skipped.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.hpp"
#include "lmembed/train/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace train = lmembed::train;
  const auto dir = lmembed_fuzz::fresh("train");
  lmembed_fuzz::put(dir / "in.jsonl", std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    train::ReadStats st;
    const auto lenient = train::read_examples(dir / "in.jsonl", {true}, &st);
    LMEMBED_FUZZ_CHECK(st.lines == st.examples + st.skipped, "line counts");
    LMEMBED_FUZZ_CHECK(std::size_t(st.examples) == lenient.size(), "example count");
    try {
      const auto strict = train::read_examples(dir / "in.jsonl");
      LMEMBED_FUZZ_CHECK(strict == lenient, "strict and lenient reads differ");
    } catch (const lmembed::error&) {
      LMEMBED_FUZZ_CHECK(st.skipped > 0, "strict read threw but nothing was skipped");
    }
    train::write_examples(dir / "out.jsonl", lenient);
    LMEMBED_FUZZ_CHECK(train::read_examples(dir / "out.jsonl") == lenient, "write/read round trip");
  } catch (const lmembed::error&) {
  }
  return 0;
}
