// libFuzzer target: the JSON parser on arbitrary text; what parses must dump and re-parse to
// the same text (a round-trip oracle, not only "no crash").
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lmembed/core/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lmembed;
  try {
    const json::Value v =
        json::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    const std::string once = json::dump(v);
    const std::string twice = json::dump(json::parse(once, "dumped.json"));
    if (once != twice) __builtin_trap();
  } catch (const lmembed::error&) {
  }
  return 0;
}
