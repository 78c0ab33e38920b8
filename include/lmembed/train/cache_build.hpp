// lmembed/train/cache_build.hpp - build_cache: plans the shards, resumes from the finished ones,
// runs the backbone over the rest and writes the shards and index.json (on one rank or many).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/train/cache_capture.hpp"
#include "lmembed/train/cache_dataset.hpp"
#include "lmembed/train/cache_deal.hpp"
#include "lmembed/train/cache_format.hpp"
#include "lmembed/train/comm.hpp"
#include "lmembed/train/random.hpp"

namespace lmembed::train {

/// Token ids of one text and the first pooled token (after the instruction's tokens).
struct TokenizedText {
  std::vector<std::int32_t> ids;
  std::int32_t pool_from = 0;
};

/// Tokenizes one cache text (the CLI: instruction with BOS, then the text without).
using TokenizeFn = std::function<TokenizedText(const CacheText&)>;
/// Runs the frozen backbone on a batch and returns what the cache's CaptureSpec asks for.
using CaptureFn = std::function<Captured(const TokenBatch&)>;

/// Options of build_cache().
struct CacheOptions {
  CaptureSpec capture{};
  io::DType dtype = io::DType::f32;     ///< f32 or f16
  std::int64_t d = 0;                   ///< hidden width of the backbone
  std::int64_t model_layers = 0;        ///< L of the backbone (n_layers captured when all)
  std::string model;                    ///< recorded in the index; a rerun must match
  std::string attention = "causal";     ///< recorded in the index; a rerun must match
  std::string tokenization;             ///< e.g. "add_eos=1"; recorded; a rerun must match
  std::int64_t shard_bytes = 64 << 20;  ///< a shard closes when its rows reach this size
  std::int64_t batch_tokens = 2048;     ///< tokens per backbone call (at least one text)
  bool progress = true;                 ///< progress on stderr
};

/// What build_cache() did.
struct CacheReport {
  std::int64_t texts = 0, examples = 0, tokens = 0;
  std::int64_t shards = 0, shards_kept = 0, shards_built = 0, shards_corrupt = 0;
  std::int64_t bytes = 0;               ///< bytes of all shards
  double bytes_per_text = 0;            ///< of the shards
  double full_dump_bytes_per_text = 0;  ///< f32, all L + 1 hidden states of every token
};

namespace detail {

/// Appends a sequence with its pool_from, keeping pool_from one entry per sequence.
/// (Written out rather than TokenBatch::add, whose pool_from of a first sequence is dropped.)
inline void add_sequence(TokenBatch& b, std::span<const std::int32_t> ids, std::int32_t from) {
  b.pool_from.resize(b.size(), 0);
  b.ids.insert(b.ids.end(), ids.begin(), ids.end());
  b.offsets.push_back(static_cast<std::int64_t>(b.ids.size()));
  b.pool_from.push_back(from);
}

}  // namespace detail

/// Runs the backbone (through `capture`) over every distinct text of `data` that is not yet in
/// the cache folder `dir` and stores what `opt.capture` asks for. Resumes: finished shards of an
/// earlier run with the same inputs are verified by checksum and kept. config_error when `dir`
/// holds a cache of other inputs (other texts, model, attention, capture or dtype).
/// With a Communicator of several ranks (every rank calls this with the same arguments) the
/// shards are built in parallel and the folder is the same as one process's (cache.hpp's header
/// comment). An exception thrown on one rank while shards are built leaves the others waiting in
/// the final collective: call comm.abort() on error, as `lmembed cache` does.
inline CacheReport build_cache(const std::filesystem::path& dir, const CacheDataset& data,
                               const TokenizeFn& tokenize, const CaptureFn& capture,
                               const CacheOptions& opt, Communicator& comm) {
  namespace fs = std::filesystem;
  const int ranks = comm.size(), me = comm.rank();
  const bool lead = me == 0;
  if (opt.dtype != io::DType::f32 && opt.dtype != io::DType::f16)
    throw config_error(std::string("cache dtype must be f32 or f16, got ") +
                       io::to_string(opt.dtype));
  if (opt.d <= 0 || opt.model_layers <= 0)
    throw config_error("build_cache: d and model_layers must be positive");
  if (data.texts.empty()) throw input_error("build_cache: no texts");
  const std::int64_t n_layers = captured_layers(opt.capture, opt.model_layers);
  const bool all_tokens = opt.capture.tokens == CaptureTokens::all;
  const std::size_t elem = opt.dtype == io::DType::f16 ? 2 : 4;
  const std::int64_t n = static_cast<std::int64_t>(data.texts.size());
  const bool progress = opt.progress && lead;

  // 1. Tokenize everything (cheap next to the backbone) and plan the shards.
  std::vector<TokenizedText> tok(static_cast<std::size_t>(n));
  CacheReport rep;
  rep.texts = n;
  rep.examples = static_cast<std::int64_t>(data.examples.size());
  for (std::int64_t i = 0; i < n; ++i) {
    tok[i] = tokenize(data.texts[i]);
    const auto len = static_cast<std::int64_t>(tok[i].ids.size());
    if (len == 0 || tok[i].pool_from < 0 || tok[i].pool_from >= len)
      throw input_error("text " + std::to_string(i) + " ('" + data.texts[i].text.substr(0, 60) +
                        "') has no tokens after its instruction");
    rep.tokens += len;
  }
  auto items_of = [&](std::int64_t i) -> std::int64_t {
    return all_tokens ? std::int64_t(tok[i].ids.size()) - tok[i].pool_from : 1;
  };
  std::vector<std::pair<std::int64_t, std::int64_t>> plan;  // (first, count)
  {
    std::int64_t first = 0, bytes = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      bytes += items_of(i) * n_layers * opt.d * std::int64_t(elem);
      if (bytes >= opt.shard_bytes || i + 1 == n) {
        plan.emplace_back(first, i + 1 - first);
        first = i + 1;
        bytes = 0;
      }
    }
  }
  rep.shards = static_cast<std::int64_t>(plan.size());
  std::vector<std::int64_t> plan_tokens(plan.size(), 0);
  for (std::size_t k = 0; k < plan.size(); ++k)
    for (std::int64_t i = plan[k].first; i < plan[k].first + plan[k].second; ++i)
      plan_tokens[k] += std::int64_t(tok[std::size_t(i)].ids.size());

  // 2. The index: new, or an earlier run's, which must describe the same cache.
  const std::string texts_text = detail::texts_jsonl(data);
  const std::string examples_text = detail::examples_jsonl(data);
  ordered_json header = ordered_json::object();
  header["format"] = "lmembed-cache";
  header["version"] = 1;
  header["model"] = opt.model;
  header["attention"] = opt.attention;
  header["tokenization"] = opt.tokenization;
  header["capture"] = to_string(opt.capture);
  header["dtype"] = io::to_string(opt.dtype);
  header["d"] = opt.d;
  header["model_layers"] = opt.model_layers;
  header["n_layers"] = n_layers;
  header["n_texts"] = n;
  header["n_examples"] = rep.examples;
  header["texts_checksum"] = to_hex(detail::checksum_of(texts_text));
  header["examples_checksum"] = to_hex(detail::checksum_of(examples_text));
  const fs::path index_path = dir / "index.json";
  std::vector<std::string> done(plan.size());  // checksum of each finished shard
  auto write_index = [&] {
    ordered_json idx = header;
    idx["bytes_per_text"] = rep.bytes_per_text;
    idx["full_dump_bytes_per_text"] = rep.full_dump_bytes_per_text;
    ordered_json shards = ordered_json::array();
    for (std::size_t k = 0; k < plan.size(); ++k) {
      ordered_json s = ordered_json::object();
      s["file"] = detail::shard_name(std::int64_t(k));
      s["first_text"] = plan[k].first;
      s["n_texts"] = plan[k].second;
      s["checksum"] = done[k].empty() ? ordered_json() : ordered_json(done[k]);
      shards.push_back(std::move(s));
    }
    idx["shards"] = std::move(shards);
    idx["complete"] = std::all_of(done.begin(), done.end(), [](auto& c) { return !c.empty(); });
    write_file_atomic(index_path, std::string_view(detail::dump_index(idx)));
  };
  auto remove_progress_files = [&] {
    for (const auto& e : fs::directory_iterator(dir))
      if (detail::is_progress_file(e.path().filename().string())) fs::remove(e.path());
  };

  // Rank 0 checks that an existing folder holds this cache, or starts a new one.
  detail::on_lead_checked(comm, [&] {
    fs::create_directories(dir);
    // Remove temp files a killed run left behind (write_file_atomic's ".name.tmp.*").
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string f = e.path().filename().string();
      if (f.size() > 1 && f[0] == '.' && f.find(".tmp.") != std::string::npos) fs::remove(e.path());
    }
    if (fs::exists(index_path)) {
      const ordered_json index = json::parse(read_text_file(index_path), index_path.string());
      for (const auto& [k, v] : json::as_object(header)) {
        const ordered_json* old = json::find(index, k);
        if (!old || json::dump(*old) != json::dump(v))
          throw config_error(dir.string() + " holds a cache of other inputs: '" + k + "' is " +
                             (old ? json::dump(*old) : std::string("absent")) + ", this run has " +
                             json::dump(v) + " (use another --out, or delete the folder)");
      }
      if (json::get_array(index, "shards", index_path.string()).size() != plan.size())
        throw config_error(index_path.string() + ": shard plan differs (other --shard-kb?)");
    } else {
      write_file_atomic(dir / "texts.jsonl", std::string_view(texts_text));
      write_file_atomic(dir / "examples.jsonl", std::string_view(examples_text));
      remove_progress_files();  // of an older, deleted index
      write_index();
    }
  });

  // Every rank learns the finished shards: index.json, then the progress files of ranks of an
  // earlier run that did not end (several processes write no index until the end).
  {
    const ordered_json index = json::parse(read_text_file(index_path), index_path.string());
    const auto& shards = json::get_array(index, "shards", index_path.string());
    if (shards.size() != plan.size())
      throw config_error(index_path.string() + ": shard plan differs (other --shard-kb?)");
    for (std::size_t k = 0; k < plan.size(); ++k)
      if (const ordered_json* c = json::find(shards[k], "checksum"); c && c->is_string())
        done[k] = c->get_ref<const std::string&>();
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!detail::is_progress_file(e.path().filename().string())) continue;
      const std::string src = e.path().string();
      const ordered_json p = json::parse(read_text_file(e.path()), src);
      for (const auto& s : json::get_array(p, "shards", src)) {
        const std::int64_t k = json::get_int(s, "shard", src);
        if (k < 0 || k >= std::int64_t(plan.size()))
          throw format_error(
              e.path(), format_error::npos,
              "shard " + std::to_string(k) + " of a plan of " + std::to_string(plan.size()));
        if (done[std::size_t(k)].empty())
          done[std::size_t(k)] = json::get_string(s, "checksum", src);
      }
    }
  }
  comm.barrier();  // nobody reads the progress files any more

  // 3. Verify the finished shards (dealt round-robin to the ranks), build the others.
  std::vector<std::uint64_t> verified(plan.size(), 0);
  for (std::size_t k = 0; k < plan.size(); ++k) {
    if (done[k].empty() || int(k % std::size_t(ranks)) != me) continue;
    const fs::path shard_path = dir / detail::shard_name(std::int64_t(k));
    if (fs::exists(shard_path) &&
        to_hex(checksum64(MappedFile::open(shard_path).bytes())) == done[k])
      verified[k] = 1;
    else
      std::cerr << "lmembed cache: " << shard_path.string()
                << " is missing or fails its checksum; rebuilding it\n";
  }
  comm.allreduce_sum(std::span<std::uint64_t>(verified));
  std::vector<char> pending(plan.size(), 0);
  for (std::size_t k = 0; k < plan.size(); ++k) {
    if (verified[k]) {
      ++rep.shards_kept;
      continue;
    }
    if (!done[k].empty()) ++rep.shards_corrupt;
    done[k].clear();
    pending[k] = 1;
  }
  // The merged state goes into the index at once; progress files start afresh.
  if (lead) {
    write_index();
    remove_progress_files();
  }
  comm.barrier();
  const std::vector<int> owner = detail::deal_shards(plan_tokens, pending, ranks);
  std::int64_t mine = 0, mine_texts = 0;
  for (std::size_t k = 0; k < plan.size(); ++k)
    if (owner[k] == me) ++mine, mine_texts += plan[k].second;

  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t texts_done = 0, built_here = 0;
  // The progress line is rewritten in place ("\r"); whatever ends the loop (done, or an error
  // such as a full disk) ends that line, so an error message starts on a line of its own.
  struct EndProgressLine {
    bool open = false;
    ~EndProgressLine() {
      if (open) std::cerr << "\n";
    }
  } progress_line;
  std::vector<std::uint64_t> built;  // (shard, checksum) pairs this rank built
  for (std::size_t k = 0; k < plan.size(); ++k) {
    if (owner[k] != me) continue;
    const auto [first, count] = plan[k];
    const fs::path shard_path = dir / detail::shard_name(std::int64_t(k));
    std::int64_t n_items = 0;
    for (std::int64_t i = first; i < first + count; ++i) n_items += items_of(i);
    const std::size_t offsets_bytes = detail::align64(std::size_t(count + 1) * 8 + count * 4);
    const std::size_t data_bytes = std::size_t(n_items * n_layers * opt.d) * elem;
    std::vector<std::byte> buf(detail::shard_header_bytes + offsets_bytes + data_bytes);
    detail::ShardHeader h{};
    std::memcpy(h.magic, detail::shard_magic, 8);
    h.version = 1;
    h.dtype = opt.dtype == io::DType::f16 ? 1 : 0;
    h.first_text = first;
    h.n_texts = count;
    h.n_items = n_items;
    h.n_layers = n_layers;
    h.d = opt.d;
    std::memcpy(buf.data(), &h, sizeof h);
    auto* item_off = reinterpret_cast<std::int64_t*>(buf.data() + detail::shard_header_bytes);
    auto* pool = reinterpret_cast<std::int32_t*>(item_off + count + 1);
    item_off[0] = 0;
    for (std::int64_t j = 0; j < count; ++j) {
      item_off[j + 1] = item_off[j] + items_of(first + j);
      pool[j] = tok[first + j].pool_from;
    }
    std::byte* rows = buf.data() + detail::shard_header_bytes + offsets_bytes;
    // Run the backbone in batches of about batch_tokens tokens.
    std::int64_t i = first;
    while (i < first + count) {
      TokenBatch batch;
      const std::int64_t b0 = i;
      while (i < first + count &&
             (i == b0 || batch.n_tokens() + std::int64_t(tok[i].ids.size()) <= opt.batch_tokens)) {
        detail::add_sequence(batch, tok[i].ids, tok[i].pool_from);
        ++i;
      }
      Captured c = capture(batch);
      c.check();
      if (c.spec != opt.capture || c.d != opt.d || c.n_layers != n_layers ||
          c.n_seq != std::int64_t(batch.size()))
        throw shape_error("build_cache: the backbone returned " + to_string(c.spec) + " [" +
                          std::to_string(c.n_seq) + " texts, " + std::to_string(c.n_layers) +
                          " layers, d " + std::to_string(c.d) + "], expected " +
                          to_string(opt.capture) + " [" + std::to_string(batch.size()) +
                          " texts, " + std::to_string(n_layers) + " layers, d " +
                          std::to_string(opt.d) + "]");
      for (std::int64_t s = 0; s < std::int64_t(batch.size()); ++s) {
        const std::int64_t t = b0 + s;
        // Source rows of text s: one item (last, mean), or its pooled tokens (all).
        const std::int64_t src_item = all_tokens ? c.offsets[std::size_t(s)] + tok[t].pool_from : s;
        const std::int64_t items = items_of(t);
        const std::int64_t dst_item = item_off[t - first];
        const float* src = c.states.data() + src_item * n_layers * opt.d;
        const std::int64_t count_f = items * n_layers * opt.d;
        if (elem == 4) {
          std::memcpy(rows + dst_item * n_layers * opt.d * 4, src, std::size_t(count_f) * 4);
        } else {
          auto* dst = reinterpret_cast<std::uint16_t*>(rows) + dst_item * n_layers * opt.d;
          for (std::int64_t e = 0; e < count_f; ++e) dst[e] = io::float_to_half(src[e]);
        }
      }
      if (progress) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::cerr << "\rlmembed cache: shard " << built_here + 1 << "/" << mine << ", texts "
                  << texts_done + (i - first) << "/" << mine_texts;
        if (ranks > 1) std::cerr << " on rank 0 (" << ranks << " ranks)";
        std::cerr << ", " << secs << " s" << std::flush;
        progress_line.open = true;
      }
    }
    write_file_atomic(shard_path, std::span<const std::byte>(buf));
    const std::uint64_t sum = checksum64(buf);
    done[k] = to_hex(sum);
    built.push_back(k);
    built.push_back(sum);
    ++built_here;
    texts_done += count;
    if (ranks == 1) {
      write_index();
    } else {  // this rank's finished shards, for a rerun after a crash elsewhere
      ordered_json p = ordered_json::object(), list = ordered_json::array();
      for (std::size_t j = 0; j < built.size(); j += 2) {
        ordered_json e = ordered_json::object();
        e["shard"] = std::int64_t(built[j]);
        e["checksum"] = to_hex(built[j + 1]);
        list.push_back(std::move(e));
      }
      p["shards"] = std::move(list);
      write_file_atomic(dir / detail::progress_name(me), std::string_view(json::dump(p) + "\n"));
    }
  }
  if (progress_line.open) std::cerr << "\n";
  progress_line.open = false;

  // 4. Every rank learns every checksum; rank 0 writes the complete index.
  const auto counts64 = comm.allgather_one<std::uint64_t>(built.size());
  const std::vector<std::int64_t> counts(counts64.begin(), counts64.end());
  const auto all_built = comm.allgatherv<std::uint64_t>(built, counts);
  for (std::size_t j = 0; j < all_built.size(); j += 2)
    done[all_built[j]] = to_hex(all_built[j + 1]);
  rep.shards_built = std::int64_t(all_built.size() / 2);
  for (std::size_t k = 0; k < plan.size(); ++k)
    rep.bytes += std::int64_t(fs::file_size(dir / detail::shard_name(std::int64_t(k))));
  rep.bytes_per_text = double(rep.bytes) / double(n);
  rep.full_dump_bytes_per_text =
      double(rep.tokens) / double(n) * double(opt.model_layers + 1) * double(opt.d) * 4.0;
  if (lead) {
    write_index();
    remove_progress_files();
  }
  comm.barrier();  // the folder is complete when build_cache returns on any rank
  return rep;
}

/// build_cache() in this process alone.
inline CacheReport build_cache(const std::filesystem::path& dir, const CacheDataset& data,
                               const TokenizeFn& tokenize, const CaptureFn& capture,
                               const CacheOptions& opt) {
  SingleProcess one;
  return build_cache(dir, data, tokenize, capture, opt, one);
}

}  // namespace lmembed::train
