// libFuzzer target: the JSON parser (lmembed::json::parse over nlohmann/json) on arbitrary text;
// what parses must dump and re-parse to the same text (a round-trip oracle, not only "no
// crash"), and the typed accessors on its members throw lmembed errors only.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lmembed/core/json_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lmembed;
  try {
    const ordered_json v =
        json::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    const std::string once = json::dump(v);
    const std::string twice = json::dump(json::parse(once, "dumped.json"));
    if (once != twice) __builtin_trap();
    if (json::dump(json::parse(json::dump(v, 2), "pretty.json")) != once) __builtin_trap();
    const ordered_json empty = ordered_json::array();
    const auto& items = v.is_array() ? v : empty;
    for (const auto& x : items) {
      try {
        (void)json::as_int(x, "fuzz.json", "x");
      } catch (const config_error&) {
      }
      try {
        (void)json::get_string(x, "k", "fuzz.json");
      } catch (const config_error&) {
      }
    }
  } catch (const lmembed::error&) {
  }
  return 0;
}
