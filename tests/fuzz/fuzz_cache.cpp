// libFuzzer target: a training cache folder (train/cache.hpp): index.json, texts.jsonl,
// examples.jsonl and one shard, split at '\x1e' in that order (seeded from a real cache that
// `lmembed cache` built on stories260K). The first byte's bit 0 re-stamps the index with the
// true checksums of texts.jsonl and examples.jsonl (so mutations reach the shard checks), bit 1
// opens with verify. Cache::open throws an lmembed error or gives a cache whose every text
// can be gathered.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "lmembed/train/cache.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace train = lmembed::train;
  if (size == 0) return 0;
  const std::uint8_t flags = data[0];
  const auto dir = lmembed_fuzz::fresh("cache");
  const auto p =
      lmembed_fuzz::parts(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), 4);
  std::string index(p[0]);
  if ((flags & 1) && p.size() > 2) {
    try {
      lmembed::ordered_json v = lmembed::json::parse(index, "index.json");
      if (v.is_object()) {
        v["texts_checksum"] = train::to_hex(train::detail::checksum_of(p[1]));
        v["examples_checksum"] = train::to_hex(train::detail::checksum_of(p[2]));
        index = lmembed::json::dump(v);
      }
    } catch (const lmembed::error&) {
    }
  }
  lmembed_fuzz::put(dir / "index.json", index);
  const char* names[] = {"", "texts.jsonl", "examples.jsonl", "shard-00000.bin"};
  for (std::size_t i = 1; i < p.size(); ++i) lmembed_fuzz::put(dir / names[i], p[i]);
  try {
    const train::Cache c = train::Cache::open(dir, (flags & 2) != 0);
    std::vector<std::int64_t> ids;
    for (std::int64_t i = 0; i < c.n_texts() && i < 64; ++i) ids.push_back(i);
    const auto g = c.gather(ids);
    LMEMBED_FUZZ_CHECK(g.states.cols() == c.d(), "gathered width");
    for (const auto i : ids) (void)c.pool_from(i);
  } catch (const lmembed::error&) {
  }
  return 0;
}
