// libFuzzer target: evaluation task folders in every MTEB layout (eval/tasks.hpp). The first
// byte picks the layout, the rest is split at '\x1e' into that layout's files (in the order
// below); load_task_dir must throw an lmembed error or give a task whose requested texts can be
// listed (what `lmembed eval --dump-texts` does next).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "lmembed/eval/runner.hpp"
#include "lmembed/eval/tasks.hpp"

namespace {
// The files of each layout; a leading task.json (given or not) settles the category.
const std::vector<std::vector<const char*>> kLayouts = {
    {"test.tsv"},                                            // STS, TSV
    {"test.jsonl"},                                          // STS / pairs / clustering / rerank
    {"queries.jsonl", "corpus.jsonl", "qrels/test.tsv"},     // retrieval (BEIR)
    {"queries.jsonl", "corpus.jsonl", "qrels.tsv"},          // retrieval, flat qrels
    {"train.jsonl", "test.jsonl"},                           // classification
    {"task.json", "test.jsonl"},                             // any category, named
    {"task.json", "test.tsv", "test.jsonl", "train.jsonl"},  // conflicting files
    {"task.json", "queries.jsonl", "corpus.jsonl", "qrels/test.tsv"}};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& layout = kLayouts[data[0] % kLayouts.size()];
  const auto dir = lmembed_fuzz::fresh("task");
  const auto files = lmembed_fuzz::parts(
      std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), layout.size());
  for (std::size_t i = 0; i < files.size(); ++i) lmembed_fuzz::put(dir / layout[i], files[i]);
  try {
    const lmembed::eval::Task t = lmembed::eval::load_task_dir(dir);
    (void)t.category();
    (void)lmembed::eval::requested_texts(t);
  } catch (const lmembed::error&) {
  }
  return 0;
}
