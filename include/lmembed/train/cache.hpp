// lmembed/train/cache.hpp - the selective, sharded, memory-mapped cache of backbone states.
//
// The backbone is frozen, so the hidden states a pooling head consumes are computed once and
// the head is trained over them many times. The cache keeps exactly what the capture spec
// needs (d per text for eos, L x d for multi_layer, T x d for latent - only the pooled tokens
// [pool_from, end) - and d for mean), each distinct (instruction, text) once.
//
// Layout of a cache folder:
//   index.json      header (model, attention, capture, dtype, d, n_layers, sizes, checksums of
//                   the two files below) and the shard plan; a shard's entry gains its checksum
//                   when the shard is finished. Rewritten atomically after every shard.
//   texts.jsonl     the distinct texts in id order: {"instruction": ..., "text": ...}
//   examples.jsonl  one example a line as text ids: [query, positive, negative...]
//   shard-NNNNN.bin one shard: a 64-byte header, row offsets, then the rows (f32 or f16)
//   progress-R.json the shards rank R finished in a run of several processes (merged into
//                   index.json when the run ends or the next run starts)
// Every file is written atomically (temp + fsync + rename). A crash loses at most the shard in
// progress: a rerun with the same inputs verifies the finished shards by checksum, keeps them,
// and redoes the rest (and any shard whose checksum no longer matches).
//
// Under MPI (a Communicator of R ranks, e.g. `mpirun -np R lmembed cache`) every rank
// tokenizes all texts and so computes the same shard plan; the shards still to build are
// dealt to the ranks by a deterministic greedy balance of their token counts, each rank writes
// its own shards (and its progress file after each), and rank 0 writes the merged index. A
// shard's bytes depend only on its texts, so the folder is byte for byte the single-process
// one, whatever R; a rerun with any R after a crash of any rank resumes from what was finished.
// The folder must be on a file system every rank sees (one machine, NFS, Lustre ...).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "lmembed/core/batch.hpp"
#include "lmembed/core/error.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json.hpp"
#include "lmembed/io/dtype.hpp"
#include "lmembed/train/comm.hpp"
#include "lmembed/train/data.hpp"
#include "lmembed/train/random.hpp"

namespace lmembed::train {

/// One distinct text of a cache: what the backbone reads is instruction + text, and the pooled
/// tokens start after the instruction's.
struct CacheText {
  std::string instruction;
  std::string text;
  friend bool operator==(const CacheText&, const CacheText&) = default;
};

/// An example as ids into the cache's distinct texts.
struct CacheExample {
  std::int64_t query = 0;
  std::int64_t positive = 0;
  std::vector<std::int64_t> negatives;
  friend bool operator==(const CacheExample&, const CacheExample&) = default;
};

/// The distinct texts of a data set and its examples as text ids.
struct CacheDataset {
  std::vector<CacheText> texts;
  std::vector<CacheExample> examples;

  /// Deduplicates the texts of `examples` (same instruction and text -> one id), in order of
  /// first appearance.
  static CacheDataset from_examples(const std::vector<Example>& examples) {
    CacheDataset d;
    std::unordered_map<std::string, std::int64_t> ids;
    auto id = [&](const std::string& instr, const std::string& text) {
      std::string key = instr;
      key += '\0';
      key += text;
      auto [it, fresh] = ids.try_emplace(std::move(key), std::int64_t(d.texts.size()));
      if (fresh) d.texts.push_back({instr, text});
      return it->second;
    };
    for (const auto& e : examples) {
      CacheExample c;
      c.query = id(e.query_instruction, e.query);
      c.positive = id(e.document_instruction, e.positive);
      for (const auto& n : e.negatives) c.negatives.push_back(id(e.document_instruction, n));
      d.examples.push_back(std::move(c));
    }
    return d;
  }
};

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

/// The number of captured layers and "rows per item" of a spec.
inline std::int64_t captured_layers(CaptureSpec spec, std::int64_t model_layers) {
  return spec.layers == CaptureLayers::all ? model_layers : 1;
}

/// "eos", "multi_layer" ... (a pooling name) or "last_layer.last_token" ... -> CaptureSpec.
inline CaptureSpec parse_capture(std::string_view s) {
  static const std::pair<const char*, CaptureSpec> named[] = {
      {"eos", {CaptureLayers::last, CaptureTokens::last}},
      {"mean", {CaptureLayers::last, CaptureTokens::mean}},
      {"latent", {CaptureLayers::last, CaptureTokens::all}},
      {"multi_layer", {CaptureLayers::all, CaptureTokens::last}},
      {"multi_layer_mean", {CaptureLayers::all, CaptureTokens::mean}},
      {"multi_layer_tokens", {CaptureLayers::last, CaptureTokens::all}},
      {"multi_layer_eos", {CaptureLayers::last, CaptureTokens::last}}};
  for (const auto& [n, c] : named)
    if (s == n) return c;
  for (auto l : {CaptureLayers::last, CaptureLayers::all})
    for (auto t : {CaptureTokens::last, CaptureTokens::all, CaptureTokens::mean})
      if (s == to_string(CaptureSpec{l, t})) return {l, t};
  throw config_error("unknown capture '" + std::string(s) +
                     "': use a pooling name (eos, mean, latent, multi_layer, multi_layer_mean, "
                     "multi_layer_tokens, multi_layer_eos) or layers.tokens such as "
                     "all_layers.last_token");
}

namespace detail {

inline constexpr char shard_magic[8] = {'L', 'M', 'E', 'C', 'S', 'H', 'D', '1'};
inline constexpr std::size_t shard_header_bytes = 64;

/// The fixed header of a shard file.
struct ShardHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t dtype;  ///< 0 f32, 1 f16
  std::int64_t first_text, n_texts, n_items, n_layers, d;
  std::int64_t reserved;
};
static_assert(sizeof(ShardHeader) == shard_header_bytes);

inline std::size_t align64(std::size_t n) {
  return (n + 63) / 64 * 64;
}

inline std::string shard_name(std::int64_t k) {
  std::string n = std::to_string(k);
  return "shard-" + std::string(n.size() < 5 ? 5 - n.size() : 0, '0') + n + ".bin";
}

inline std::uint64_t checksum_of(std::string_view s) {
  return checksum64(std::as_bytes(std::span<const char>(s.data(), s.size())));
}

inline std::string texts_jsonl(const CacheDataset& d) {
  std::string out;
  for (const auto& t : d.texts) {
    json::Value v = json::Value::object();
    v["instruction"] = t.instruction;
    v["text"] = t.text;
    out += json::dump(v) + "\n";
  }
  return out;
}

inline std::string examples_jsonl(const CacheDataset& d) {
  std::string out;
  for (const auto& e : d.examples) {
    // Appends only: GCC 12 misreports -Wrestrict on "literal" + std::string temporaries.
    out += '[';
    out += std::to_string(e.query);
    out += ',';
    out += std::to_string(e.positive);
    for (auto n : e.negatives) {
      out += ',';
      out += std::to_string(n);
    }
    out += "]\n";
  }
  return out;
}

/// Parses examples.jsonl (as written by examples_jsonl) with ids checked against n_texts.
inline std::vector<CacheExample> parse_examples_jsonl(const std::string& text,
                                                      const std::filesystem::path& file,
                                                      std::int64_t n_texts) {
  std::vector<CacheExample> out;
  std::size_t pos = 0;
  std::int64_t line = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line;
    const json::Value v =
        json::parse(std::string_view(text).substr(pos, end - pos), "line " + std::to_string(line));
    if (!v.is_array() || v.as_array().size() < 2)
      throw format_error(file, pos, "line " + std::to_string(line) + ": expected [q, p, n...]");
    CacheExample e;
    std::vector<std::int64_t> ids;
    for (const auto& x : v.as_array()) {
      const std::int64_t id = x.as_int();
      if (id < 0 || id >= n_texts)
        throw format_error(file, pos,
                           "line " + std::to_string(line) + ": text id " + std::to_string(id) +
                               " out of range [0, " + std::to_string(n_texts) + ")");
      ids.push_back(id);
    }
    e.query = ids[0];
    e.positive = ids[1];
    e.negatives.assign(ids.begin() + 2, ids.end());
    out.push_back(std::move(e));
    pos = end + 1;
  }
  return out;
}

/// Appends a sequence with its pool_from, keeping pool_from one entry per sequence.
/// (Written out rather than TokenBatch::add, whose pool_from of a first sequence is dropped.)
inline void add_sequence(TokenBatch& b, std::span<const std::int32_t> ids, std::int32_t from) {
  b.pool_from.resize(b.size(), 0);
  b.ids.insert(b.ids.end(), ids.begin(), ids.end());
  b.offsets.push_back(static_cast<std::int64_t>(b.ids.size()));
  b.pool_from.push_back(from);
}

/// A pretty single-line-per-shard rendering of the index (readable and diffable).
inline std::string dump_index(const json::Value& index) {
  return json::dump(index, 1) + "\n";
}

}  // namespace detail

namespace detail {

inline std::string progress_name(int rank) {
  return "progress-" + std::to_string(rank) + ".json";
}

inline bool is_progress_file(const std::string& f) {
  return f.size() > 14 && f.rfind("progress-", 0) == 0 && f.ends_with(".json");
}

/// Deals the shards still to build to `ranks` ranks: largest token count first, each to the
/// least loaded rank (ties: the lower shard index, the lower rank). Same answer on every rank.
inline std::vector<int> deal_shards(const std::vector<std::int64_t>& tokens,
                                    const std::vector<char>& pending, int ranks) {
  std::vector<int> owner(tokens.size(), -1);
  std::vector<std::size_t> order;
  for (std::size_t k = 0; k < tokens.size(); ++k)
    if (pending[k]) order.push_back(k);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return tokens[a] > tokens[b]; });
  std::vector<std::int64_t> load(std::size_t(ranks), 0);
  for (std::size_t k : order) {
    const auto r = std::size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owner[k] = int(r);
    load[r] += tokens[k];
  }
  return owner;
}

/// Runs `f` on rank 0 only; if it throws, rank 0 rethrows and every other rank throws too
/// (instead of waiting forever in the next collective).
template <class F>
void on_lead_checked(Communicator& comm, F&& f) {
  std::exception_ptr err;
  if (comm.rank() == 0) {
    try {
      f();
    } catch (...) {
      err = std::current_exception();
    }
  }
  std::uint64_t failed = err ? 1 : 0;
  comm.broadcast(std::span<std::uint64_t>(&failed, 1), 0);
  if (err) std::rethrow_exception(err);
  if (failed) throw config_error("build_cache: rank 0 refused the cache folder (see its error)");
}

}  // namespace detail

/// Runs the backbone (through `capture`) over every distinct text of `data` that is not yet in
/// the cache folder `dir` and stores what `opt.capture` asks for. Resumes: finished shards of an
/// earlier run with the same inputs are verified by checksum and kept. config_error when `dir`
/// holds a cache of other inputs (other texts, model, attention, capture or dtype).
/// With a Communicator of several ranks (every rank calls this with the same arguments) the
/// shards are built in parallel and the folder is the same as one process's (header comment).
/// An exception thrown on one rank while shards are built leaves the others waiting in the
/// final collective: call comm.abort() on error, as `lmembed cache` does.
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
  json::Value header = json::Value::object();
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
    json::Value idx = header;
    idx["bytes_per_text"] = rep.bytes_per_text;
    idx["full_dump_bytes_per_text"] = rep.full_dump_bytes_per_text;
    json::Value shards = json::Value::array();
    for (std::size_t k = 0; k < plan.size(); ++k) {
      json::Value s = json::Value::object();
      s["file"] = detail::shard_name(std::int64_t(k));
      s["first_text"] = plan[k].first;
      s["n_texts"] = plan[k].second;
      s["checksum"] = done[k].empty() ? json::Value() : json::Value(done[k]);
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
      const json::Value index = json::parse(read_text_file(index_path), index_path.string());
      for (const auto& [k, v] : header.as_object()) {
        const json::Value* old = index.find(k);
        if (!old || json::dump(*old) != json::dump(v))
          throw config_error(dir.string() + " holds a cache of other inputs: '" + k + "' is " +
                             (old ? json::dump(*old) : std::string("absent")) + ", this run has " +
                             json::dump(v) + " (use another --out, or delete the folder)");
      }
      if (index.at("shards").as_array().size() != plan.size())
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
    const json::Value index = json::parse(read_text_file(index_path), index_path.string());
    const auto& shards = index.at("shards").as_array();
    for (std::size_t k = 0; k < plan.size(); ++k)
      if (const json::Value* c = shards[k].find("checksum"); c && c->is_string())
        done[k] = c->as_string();
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!detail::is_progress_file(e.path().filename().string())) continue;
      const json::Value p = json::parse(read_text_file(e.path()), e.path().string());
      for (const auto& s : p.at("shards").as_array()) {
        const std::int64_t k = s.at("shard").as_int();
        if (k < 0 || k >= std::int64_t(plan.size()))
          throw format_error(
              e.path(), format_error::npos,
              "shard " + std::to_string(k) + " of a plan of " + std::to_string(plan.size()));
        if (done[std::size_t(k)].empty()) done[std::size_t(k)] = s.at("checksum").as_string();
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
      json::Value p = json::Value::object(), list = json::Value::array();
      for (std::size_t j = 0; j < built.size(); j += 2) {
        json::Value e = json::Value::object();
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

/// A finished cache folder, memory-mapped for training.
class Cache {
 public:
  /// Opens `dir`; config_error when it is not a complete cache, format_error when a shard's
  /// header disagrees with the index. With verify, every shard's checksum is checked too.
  static Cache open(const std::filesystem::path& dir, bool verify = false) {
    Cache c;
    c.dir_ = dir;
    const auto index_path = dir / "index.json";
    if (!std::filesystem::exists(index_path))
      throw config_error(dir.string() + " is not an lmembed cache (no index.json)");
    const json::Value idx = json::parse(read_text_file(index_path), index_path.string());
    if (!idx.contains("format") || idx.at("format").as_string() != "lmembed-cache")
      throw config_error(index_path.string() + ": not an lmembed cache index");
    if (!idx.at("complete").as_bool())
      throw config_error(dir.string() +
                         " is an unfinished cache: rerun lmembed cache with the same options");
    c.spec_ = parse_capture(idx.at("capture").as_string());
    c.dtype_ = io::parse_dtype(idx.at("dtype").as_string());
    c.d_ = idx.at("d").as_int();
    c.n_layers_ = idx.at("n_layers").as_int();
    c.model_layers_ = idx.at("model_layers").as_int();
    c.model_ = idx.at("model").as_string();
    c.attention_ = idx.at("attention").as_string();
    const std::int64_t n = idx.at("n_texts").as_int();

    const std::string texts = read_text_file(dir / "texts.jsonl");
    if (to_hex(detail::checksum_of(texts)) != idx.at("texts_checksum").as_string())
      throw format_error(dir / "texts.jsonl", format_error::npos, "checksum differs from index");
    std::size_t pos = 0;
    while (pos < texts.size()) {
      std::size_t end = texts.find('\n', pos);
      if (end == std::string::npos) end = texts.size();
      const json::Value v = json::parse(std::string_view(texts).substr(pos, end - pos),
                                        (dir / "texts.jsonl").string());
      c.data_.texts.push_back({v.at("instruction").as_string(), v.at("text").as_string()});
      pos = end + 1;
    }
    if (std::int64_t(c.data_.texts.size()) != n)
      throw format_error(
          dir / "texts.jsonl", format_error::npos,
          std::to_string(c.data_.texts.size()) + " texts, index says " + std::to_string(n));
    const std::string ex = read_text_file(dir / "examples.jsonl");
    if (to_hex(detail::checksum_of(ex)) != idx.at("examples_checksum").as_string())
      throw format_error(dir / "examples.jsonl", format_error::npos, "checksum differs from index");
    c.data_.examples = detail::parse_examples_jsonl(ex, dir / "examples.jsonl", n);

    c.where_.resize(std::size_t(n));
    for (const auto& s : idx.at("shards").as_array()) {
      Shard sh;
      const auto path = dir / s.at("file").as_string();
      sh.file = MappedFile::open(path);
      const auto b = sh.file.bytes();
      if (verify && to_hex(checksum64(b)) != s.at("checksum").as_string())
        throw format_error(path, format_error::npos, "checksum differs from index.json");
      detail::ShardHeader h;
      if (b.size() < sizeof h) throw format_error(path, 0, "shorter than a shard header");
      std::memcpy(&h, b.data(), sizeof h);
      const std::size_t elem = h.dtype == 1 ? 2 : 4;
      if (std::memcmp(h.magic, detail::shard_magic, 8) != 0 || h.version != 1)
        throw format_error(path, 0, "not an lmembed cache shard");
      if (h.first_text != s.at("first_text").as_int() || h.n_texts != s.at("n_texts").as_int() ||
          h.n_layers != c.n_layers_ || h.d != c.d_ ||
          elem != (c.dtype_ == io::DType::f16 ? 2 : 4) || h.n_texts < 0 || h.first_text < 0 ||
          h.first_text + h.n_texts > n)
        throw format_error(path, 0, "header disagrees with index.json");
      const std::size_t off_bytes = detail::align64(std::size_t(h.n_texts + 1) * 8 + h.n_texts * 4);
      const std::size_t need =
          detail::shard_header_bytes + off_bytes + std::size_t(h.n_items * h.n_layers * h.d) * elem;
      if (b.size() != need)
        throw format_error(
            path, format_error::npos,
            "size " + std::to_string(b.size()) + " bytes, expected " + std::to_string(need));
      sh.item_off = reinterpret_cast<const std::int64_t*>(b.data() + detail::shard_header_bytes);
      sh.pool_from = reinterpret_cast<const std::int32_t*>(sh.item_off + h.n_texts + 1);
      sh.rows = b.data() + detail::shard_header_bytes + off_bytes;
      sh.first = h.first_text;
      if (sh.item_off[0] != 0 || sh.item_off[h.n_texts] != h.n_items)
        throw format_error(path, detail::shard_header_bytes, "row offsets are inconsistent");
      for (std::int64_t j = 0; j < h.n_texts; ++j) {
        if (sh.item_off[j + 1] <= sh.item_off[j])
          throw format_error(path, detail::shard_header_bytes, "row offsets are inconsistent");
        c.where_[std::size_t(h.first_text + j)] = {std::int32_t(c.shards_.size()), std::int32_t(j)};
      }
      c.shards_.push_back(std::move(sh));
    }
    return c;
  }

  CaptureSpec capture() const { return spec_; }
  io::DType dtype() const { return dtype_; }
  std::int64_t d() const { return d_; }
  /// Captured layers per item (L for all_layers, 1 for last_layer).
  std::int64_t n_layers() const { return n_layers_; }
  std::int64_t model_layers() const { return model_layers_; }
  const std::string& model() const { return model_; }
  const std::string& attention() const { return attention_; }
  std::int64_t n_texts() const { return std::int64_t(data_.texts.size()); }
  const CacheDataset& dataset() const { return data_; }
  const std::filesystem::path& dir() const { return dir_; }

  /// The stored states of texts `ids` as the backbone would capture them for a batch of those
  /// texts (with tokens == all: only the pooled tokens, so pool_from is empty).
  template <class T = float>
  CapturedT<T> gather(std::span<const std::int64_t> ids) const {
    CapturedT<T> c;
    c.spec = spec_;
    c.n_seq = std::int64_t(ids.size());
    c.n_layers = n_layers_;
    c.d = d_;
    std::int64_t items = 0;
    for (auto id : ids) items += text_items(id);
    if (spec_.tokens == CaptureTokens::all) c.offsets.reserve(ids.size() + 1);
    if (spec_.tokens == CaptureTokens::all) c.offsets.push_back(0);
    c.states.resize(items * n_layers_, d_);
    std::int64_t row = 0;
    for (auto id : ids) {
      const auto [s, j] = where_[std::size_t(id)];
      const Shard& sh = shards_[std::size_t(s)];
      const std::int64_t it = sh.item_off[j + 1] - sh.item_off[j];
      const std::int64_t cnt = it * n_layers_ * d_;
      const std::int64_t src = sh.item_off[j] * n_layers_ * d_;
      T* dst = c.states.data() + row * d_;
      if (dtype_ == io::DType::f16) {
        const auto* h = reinterpret_cast<const std::uint16_t*>(sh.rows) + src;
        for (std::int64_t e = 0; e < cnt; ++e) dst[e] = T(io::half_to_float(h[e]));
      } else {
        const auto* f = reinterpret_cast<const float*>(sh.rows) + src;
        for (std::int64_t e = 0; e < cnt; ++e) dst[e] = T(f[e]);
      }
      row += it * n_layers_;
      if (spec_.tokens == CaptureTokens::all) c.offsets.push_back(c.offsets.back() + it);
    }
    return c;
  }

  /// Items (1, or pooled tokens) stored for text `id`; input_error when out of range.
  std::int64_t text_items(std::int64_t id) const {
    if (id < 0 || id >= n_texts())
      throw input_error("cache text id " + std::to_string(id) + " out of range [0, " +
                        std::to_string(n_texts()) + ")");
    const auto [s, j] = where_[std::size_t(id)];
    const Shard& sh = shards_[std::size_t(s)];
    return sh.item_off[j + 1] - sh.item_off[j];
  }
  /// The instruction-token count recorded for text `id` (what mean pooling left out).
  std::int32_t pool_from(std::int64_t id) const {
    text_items(id);
    const auto [s, j] = where_[std::size_t(id)];
    return shards_[std::size_t(s)].pool_from[j];
  }

 private:
  struct Shard {
    MappedFile file;
    const std::int64_t* item_off = nullptr;
    const std::int32_t* pool_from = nullptr;
    const std::byte* rows = nullptr;
    std::int64_t first = 0;
  };
  std::filesystem::path dir_;
  CaptureSpec spec_{};
  io::DType dtype_ = io::DType::f32;
  std::int64_t d_ = 0, n_layers_ = 1, model_layers_ = 0;
  std::string model_, attention_;
  CacheDataset data_;
  std::vector<Shard> shards_;
  std::vector<std::pair<std::int32_t, std::int32_t>> where_;
};

}  // namespace lmembed::train
