// The sharded cache: exact contents, deduplication, selective capture, f16, and resume after a
// crash (finished shards kept and verified by checksum, the shard in progress redone).
#include <gtest/gtest.h>

#include <fstream>

#include "common.hpp"
#include "fake_backbone.hpp"
#include "lmembed/train/cache.hpp"

using namespace lmembed;
using namespace lmembed_test;

namespace {

constexpr std::int64_t kD = 6, kL = 3;

std::vector<train::Example> some_examples(int n) {
  std::vector<train::Example> ex;
  for (int i = 0; i < n; ++i) {
    train::Example e;
    e.query = "query number " + std::to_string(i);
    e.positive = "positive text " + std::to_string(i % 7);  // repeats: stored once
    if (i % 3) e.negatives.push_back("negative " + std::to_string(i));
    if (i % 5 == 0) e.query_instruction = "Retrieve: ";
    ex.push_back(e);
  }
  return ex;
}

train::CacheOptions options(CaptureSpec spec, io::DType dt = io::DType::f32) {
  train::CacheOptions o;
  o.capture = spec;
  o.dtype = dt;
  o.d = kD;
  o.model_layers = kL;
  o.model = "fake";
  o.shard_bytes = 600;  // many small shards
  o.batch_tokens = 64;
  o.progress = false;
  return o;
}

train::CaptureFn capture_fn(CaptureSpec spec, int* calls = nullptr, int fail_after = -1) {
  return [=](const TokenBatch& b) {
    if (calls) {
      if (fail_after >= 0 && *calls >= fail_after) throw io_error("simulated crash");
      ++*calls;
    }
    return fake_capture(b, spec, kD, kL);
  };
}

/// What the cache should return for text t: the capture of it alone, pooled tokens only.
Matrix expected_rows(const train::CacheText& t, CaptureSpec spec) {
  const auto tok = fake_tokenize(t);
  TokenBatch b;
  train::detail::add_sequence(b, tok.ids, tok.pool_from);
  Captured c = fake_capture(b, spec, kD, kL);
  if (spec.tokens != CaptureTokens::all) return c.states;
  const std::int64_t nl = c.n_layers;
  return c.states.bottomRows((b.n_tokens() - tok.pool_from) * nl);
}

}  // namespace

TEST(Cache, StoresExactlyWhatEachCaptureNeedsOncePerDistinctText) {
  const auto ex = some_examples(40);
  const auto data = train::CacheDataset::from_examples(ex);
  // 40 queries + 7 distinct positives + 26 negatives.
  EXPECT_EQ(data.texts.size(), 40u + 7u + 26u);
  for (CaptureSpec spec : {CaptureSpec{CaptureLayers::all, CaptureTokens::last},
                           CaptureSpec{CaptureLayers::last, CaptureTokens::all},
                           CaptureSpec{CaptureLayers::last, CaptureTokens::mean},
                           CaptureSpec{CaptureLayers::all, CaptureTokens::mean}}) {
    SCOPED_TRACE(to_string(spec));
    TempDir dir("cache");
    const auto rep =
        train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec), options(spec));
    EXPECT_GT(rep.shards, 1);
    EXPECT_EQ(rep.shards_built, rep.shards);
    const auto cache = train::Cache::open(dir.path, true);
    EXPECT_EQ(cache.n_texts(), std::int64_t(data.texts.size()));
    EXPECT_EQ(cache.dataset().examples, data.examples);
    EXPECT_EQ(cache.dataset().texts, data.texts);
    EXPECT_EQ(cache.capture(), spec);
    // Gather in a scrambled order, with a repeat.
    std::vector<std::int64_t> ids{5, 0, 72, 13, 5, 41};
    const Captured c = cache.gather(ids);
    c.check();
    std::int64_t row = 0;
    std::int64_t payload_floats = 0;
    for (auto id : ids) {
      const Matrix want = expected_rows(data.texts[std::size_t(id)], spec);
      ASSERT_EQ(c.states.middleRows(row, want.rows()), want) << "text " << id;
      row += want.rows();
    }
    EXPECT_EQ(row, c.states.rows());
    for (std::int64_t t = 0; t < cache.n_texts(); ++t)
      payload_floats += expected_rows(data.texts[std::size_t(t)], spec).size();
    // Bytes per text: payload plus small per-shard headers - far below a full dump.
    EXPECT_GE(rep.bytes, payload_floats * 4);
    EXPECT_LE(rep.bytes, payload_floats * 4 + rep.shards * 1024);
    EXPECT_LT(rep.bytes_per_text, rep.full_dump_bytes_per_text);
    if (spec.tokens == CaptureTokens::all) {
      EXPECT_TRUE(c.pool_from.empty());
    }
    if (spec.tokens == CaptureTokens::mean) {
      // text 0 has the instruction "Retrieve: ": its pool_from is recorded.
      EXPECT_EQ(cache.pool_from(0), 1 + 10);
    }
  }
}

TEST(Cache, HalfPrecisionRoundsEachValue) {
  const auto data = train::CacheDataset::from_examples(some_examples(12));
  const CaptureSpec spec{CaptureLayers::all, CaptureTokens::last};
  TempDir dir("cache");
  const auto rep = train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec),
                                      options(spec, io::DType::f16));
  const auto cache = train::Cache::open(dir.path);
  EXPECT_EQ(cache.dtype(), io::DType::f16);
  std::vector<std::int64_t> ids(std::size_t(cache.n_texts()));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::int64_t(i);
  const Captured c = cache.gather(ids);
  for (auto id : ids) {
    const Matrix want = expected_rows(data.texts[std::size_t(id)], spec);
    for (Eigen::Index k = 0; k < want.size(); ++k)
      EXPECT_EQ(c.states.middleRows(id * kL, kL).data()[k],
                io::half_to_float(io::float_to_half(want.data()[k])));
  }
  EXPECT_LT(rep.bytes, std::int64_t(ids.size()) * kL * kD * 2 + rep.shards * 1024);
}

TEST(Cache, ResumesAfterACrashKeepingFinishedShards) {
  const auto data = train::CacheDataset::from_examples(some_examples(60));
  const CaptureSpec spec{CaptureLayers::last, CaptureTokens::all};
  TempDir ref("cache-ref"), dir("cache");
  int ref_calls = 0;
  const auto full = train::build_cache(ref.path, data, fake_tokenize, capture_fn(spec, &ref_calls),
                                       options(spec));
  ASSERT_GT(full.shards, 4);
  int calls = 0;
  // Crash part way: the backbone fails on its 5th call.
  EXPECT_THROW(
      train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec, &calls, 4), options(spec)),
      io_error);
  EXPECT_THROW(train::Cache::open(dir.path), config_error);  // unfinished
  // Leave a torn temp file behind, as a SIGKILL during a write would.
  std::ofstream(dir.path / ".shard-00001.bin.tmp.123.0") << "torn";
  int calls2 = 0;
  const auto rep =
      train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec, &calls2), options(spec));
  EXPECT_GT(rep.shards_kept, 0);
  EXPECT_EQ(rep.shards_kept + rep.shards_built, rep.shards);
  EXPECT_EQ(calls, 4);
  EXPECT_LT(calls2, ref_calls);  // fewer backbone calls than a fresh run needs...
  EXPECT_EQ(rep.shards_corrupt, 0);
  EXPECT_FALSE(fs::exists(dir.path / ".shard-00001.bin.tmp.123.0"));
  // ... and the same bytes as the uninterrupted run.
  for (std::int64_t k = 0; k < full.shards; ++k) {
    const auto name = train::detail::shard_name(k);
    std::ifstream a(ref.path / name, std::ios::binary), b(dir.path / name, std::ios::binary);
    std::string sa((std::istreambuf_iterator<char>(a)), {}),
        sb((std::istreambuf_iterator<char>(b)), {});
    EXPECT_EQ(sa, sb) << name;
  }
  // A rerun of a complete cache computes nothing.
  int calls3 = 0;
  const auto again =
      train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec, &calls3), options(spec));
  EXPECT_EQ(calls3, 0);
  EXPECT_EQ(again.shards_kept, again.shards);
}

TEST(Cache, RebuildsAShardWhoseChecksumFails) {
  const auto data = train::CacheDataset::from_examples(some_examples(30));
  const CaptureSpec spec{CaptureLayers::all, CaptureTokens::last};
  TempDir dir("cache");
  train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec), options(spec));
  const fs::path shard = dir.path / train::detail::shard_name(1);
  std::string bytes;
  {
    std::ifstream f(shard, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  {
    std::string bad = bytes;
    bad[bad.size() - 3] ^= 0x40;
    std::ofstream(shard, std::ios::binary) << bad;
  }
  EXPECT_THROW(train::Cache::open(dir.path, /*verify=*/true), format_error);
  int calls = 0;
  const auto rep =
      train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec, &calls), options(spec));
  EXPECT_EQ(rep.shards_corrupt, 1);
  EXPECT_EQ(rep.shards_built, 1);
  std::ifstream f(shard, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), bytes);
  EXPECT_NO_THROW(train::Cache::open(dir.path, true));
}

TEST(Cache, RefusesToMixInputs) {
  const auto data = train::CacheDataset::from_examples(some_examples(10));
  const CaptureSpec spec{CaptureLayers::all, CaptureTokens::last};
  TempDir dir("cache");
  train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec), options(spec));
  auto o = options(spec);
  o.model = "another";
  EXPECT_THROW(train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec), o),
               config_error);
  const auto other = train::CacheDataset::from_examples(some_examples(11));
  EXPECT_THROW(train::build_cache(dir.path, other, fake_tokenize, capture_fn(spec), options(spec)),
               config_error);
  EXPECT_THROW(train::Cache::open(dir.path / "nope"), config_error);
}

TEST(Cache, CaptureNames) {
  EXPECT_EQ(train::parse_capture("multi_layer"),
            (CaptureSpec{CaptureLayers::all, CaptureTokens::last}));
  EXPECT_EQ(train::parse_capture("latent"), (CaptureSpec{CaptureLayers::last, CaptureTokens::all}));
  EXPECT_EQ(train::parse_capture("all_layers.mean_tokens"),
            (CaptureSpec{CaptureLayers::all, CaptureTokens::mean}));
  EXPECT_THROW(train::parse_capture("everything"), config_error);
}

TEST(Cache, DealsPendingShardsToRanksByTokens) {
  // Largest first, each to the least loaded rank; ties to the lower rank; done shards: -1.
  const std::vector<std::int64_t> tokens{10, 50, 30, 30, 5, 99};
  const std::vector<char> pending{1, 1, 1, 1, 1, 0};
  EXPECT_EQ(train::detail::deal_shards(tokens, pending, 2), (std::vector<int>{0, 0, 1, 1, 0, -1}));
  EXPECT_EQ(train::detail::deal_shards(tokens, pending, 1), (std::vector<int>{0, 0, 0, 0, 0, -1}));
  EXPECT_EQ(train::detail::deal_shards(tokens, pending, 3), (std::vector<int>{1, 0, 1, 2, 2, -1}));
}

TEST(Cache, ResumesFromTheProgressFilesOfAnUnfinishedMultiRankRun) {
  // What a run of several ranks leaves when one dies: an index without checksums and one
  // progress-R.json per rank listing the shards it finished. One process resumes from it.
  const auto data = train::CacheDataset::from_examples(some_examples(30));
  const CaptureSpec spec{CaptureLayers::all, CaptureTokens::last};
  TempDir dir("cache");
  train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec), options(spec));
  const std::string complete_index = read_text_file(dir.path / "index.json");
  ordered_json idx = json::parse(complete_index);
  auto& shards = idx["shards"].get_ref<ordered_json::array_t&>();
  ASSERT_GE(shards.size(), 4u);
  ordered_json p0 = ordered_json::object(), p1 = ordered_json::object();
  p0["shards"] = ordered_json::array();
  p1["shards"] = ordered_json::array();
  for (std::size_t k = 1; k < shards.size(); ++k) {  // shard 0 was in progress
    ordered_json e = ordered_json::object();
    e["shard"] = std::int64_t(k);
    e["checksum"] = json::at(shards[k], "checksum");
    (k % 2 ? p1 : p0)["shards"].push_back(e);
  }
  for (auto& s : shards) s["checksum"] = ordered_json();
  idx["complete"] = false;
  write_file_atomic(dir.path / "index.json", std::string_view(json::dump(idx, 1) + "\n"));
  write_file_atomic(dir.path / "progress-0.json", std::string_view(json::dump(p0)));
  write_file_atomic(dir.path / "progress-1.json", std::string_view(json::dump(p1)));
  EXPECT_THROW(train::Cache::open(dir.path), config_error);  // unfinished
  int calls = 0;
  const auto rep =
      train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec, &calls), options(spec));
  EXPECT_EQ(rep.shards_kept, std::int64_t(shards.size()) - 1);
  EXPECT_EQ(rep.shards_built, 1);
  EXPECT_GE(calls, 1);
  EXPECT_FALSE(fs::exists(dir.path / "progress-0.json"));
  EXPECT_FALSE(fs::exists(dir.path / "progress-1.json"));
  EXPECT_EQ(read_text_file(dir.path / "index.json"), complete_index);
  EXPECT_NO_THROW(train::Cache::open(dir.path, /*verify=*/true));

  // A progress file naming a shard outside the plan is refused with its file name.
  write_file_atomic(dir.path / "progress-3.json",
                    std::string_view(R"({"shards":[{"shard":9999,"checksum":"00"}]})"));
  try {
    train::build_cache(dir.path, data, fake_tokenize, capture_fn(spec), options(spec));
    ADD_FAILURE() << "no error";
  } catch (const format_error& e) {
    EXPECT_NE(std::string(e.what()).find("progress-3.json"), std::string::npos) << e.what();
  }
}
