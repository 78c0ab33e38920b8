// `lmembed cache`: run the frozen backbone once over every distinct training text and store
// what the pooling consumes (see include/lmembed/train/cache.hpp and docs/training.md).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "cli.hpp"
#include "lmembed/backbone/backbone.hpp"
#include "lmembed/encoder.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/world.hpp"

namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", b, units[u]);
  return buf;
}

struct Options {
  std::optional<std::string> model, capture, data, out;
  std::string attention = "causal", dtype = "f32";
  long long threads = 0, shard_kb = 65536, batch_tokens = 2048;
  bool skip_bad = false, truncate = false, eos = false;
  lmembed::WeightFormat weights = lmembed::WeightFormat::stored;
};

void add_options(CLI::App& app, Options& o) {
  namespace cli = lmembed::cli;
  app.description(
      "Runs the backbone once over every distinct text of the training data and stores what\n"
      "the pooling consumes, in sharded memory-mapped files with an index (DIR/index.json).\n"
      "Rerunning after a crash keeps the finished shards (verified by checksum) and redoes the\n"
      "rest. Under mpirun (-np N) the shards are shared out among the ranks and the folder is\n"
      "the same as one process's; rank 0 prints the progress and the report.\n"
      "Needs --model, --capture, --data and --out.");
  app.footer(
      "--capture: a pooling name (eos, mean, latent, multi_layer, multi_layer_mean,\n"
      "multi_layer_tokens, multi_layer_eos) or layers.tokens, e.g. all_layers.last_token.\n"
      "Tokenization is `lmembed embed`'s, so embed a trained head with the same --eos.");
  cli::option(app, "--model PATH", o.model, "a .gguf file or a Hugging Face folder");
  cli::option(app, "--capture KIND", o.capture,
              "what to store: a pooling name or layers.tokens (see below)");
  cli::option(app, "--data FILE.jsonl", o.data, "the training data (lmembed data)");
  cli::option(app, "--out DIR", o.out, "the cache folder");
  cli::option(app, "--attention A", o.attention, "causal (default) or bidirectional");
  cli::option(app, "--dtype T", o.dtype, "f32 (default) or f16 (half the bytes)");
  cli::weights_option(app, o.weights,
                      "stored (default) or f32 (dequantized; exact), as `lmembed embed`");
  cli::option(app, "--threads N", o.threads, "backbone threads (default: all)");
  cli::option(app, "--shard-kb N", o.shard_kb, "close a shard at about N KiB (default 65536)");
  cli::option(app, "--batch-tokens N", o.batch_tokens, "tokens per backbone call (default 2048)");
  cli::flag(app, "--skip-bad", o.skip_bad,
            "skip malformed JSONL lines (counted) instead of stopping");
  cli::flag(app, "--truncate", o.truncate, "cut texts longer than the context (default: error)");
  cli::flag(app, "--eos", o.eos, "append the EOS token (default: the model's flag)");
}

int run_cache(const Options& a) {
  using lmembed::cli::require;
  using lmembed::cli::usage_error;
  namespace train = lmembed::train;
  const std::string model = require(a.model, "--model"), data = require(a.data, "--data"),
                    out = require(a.out, "--out");
  using lmembed::cli::parse_option;
  const lmembed::CaptureSpec spec =
      parse_option("--capture", require(a.capture, "--capture"),
                   [](const std::string& s) { return train::parse_capture(s); });
  const auto attention = parse_option(
      "--attention", a.attention, [](const std::string& s) { return lmembed::parse_attention(s); });
  const auto parsed_dtype = lmembed::io::try_parse_dtype(a.dtype);
  if (parsed_dtype != lmembed::io::DType::f32 && parsed_dtype != lmembed::io::DType::f16)
    throw usage_error("--dtype must be f32 or f16");
  const lmembed::io::DType dtype = *parsed_dtype;

  train::Communicator& comm = train::world();  // MPI_COMM_WORLD under mpirun
  train::ReadStats st;
  const auto examples = train::read_examples(data, {a.skip_bad}, &st);
  if (examples.empty())
    throw lmembed::input_error(data + ": holds no training examples" +
                               (st.skipped ? " (every line was skipped as malformed)"
                                           : " (an empty file, or only blank lines)"));
  if (st.skipped && comm.rank() == 0)
    std::cerr << "lmembed cache: skipped " << st.skipped << " malformed line(s) of " << data
              << " (first: " << st.first_errors.front() << ")\n";
  const auto dataset = train::CacheDataset::from_examples(examples);
  // One `lmembed cache` per folder (the ranks of one mpirun share it; rank 0 holds the lock).
  lmembed::DirLock lock;
  if (comm.rank() == 0) lock = lmembed::DirLock::acquire(out, "lmembed cache");

  const auto tokenizer = lmembed::Tokenizer::load(model);
  auto backbone = lmembed::Backbone::load(model, a.weights);
  backbone.set_threads(static_cast<int>(a.threads));
  const auto& cfg = backbone.config();

  // Tokenize exactly as the Encoder does at inference (same BOS/EOS and instruction rules).
  lmembed::EncoderOptions eo;
  eo.add_eos = a.eos ? true : tokenizer.add_eos();  // as `lmembed embed`
  train::TokenizeFn tokenize = [&](const train::CacheText& t) {
    const std::string text[1] = {t.text};
    const lmembed::TokenBatch b =
        lmembed::detail::tokenize_texts(tokenizer, text, t.instruction, eo, spec);
    const auto seq = b.sequence(0);
    return train::TokenizedText{{seq.begin(), seq.end()}, b.pool_start(0)};
  };
  lmembed::ForwardOptions fo;
  fo.truncate = a.truncate;
  train::CaptureFn capture = [&](const lmembed::TokenBatch& b) {
    return backbone.forward(b, attention, spec, fo);
  };
  train::CacheOptions o;
  o.capture = spec;
  o.dtype = dtype;
  o.d = cfg.d_model;
  o.model_layers = cfg.n_layers;
  o.model = model;
  o.attention = lmembed::to_string(attention);
  o.tokenization = std::string("add_eos=") + (*eo.add_eos ? "1" : "0");
  o.shard_bytes = a.shard_kb * 1024;
  o.batch_tokens = a.batch_tokens;
  if (o.shard_bytes <= 0 || o.batch_tokens <= 0)
    throw usage_error("--shard-kb and --batch-tokens must be positive");
  o.progress = comm.rank() == 0;
  const auto rep = train::build_cache(out, dataset, tokenize, capture, o, comm);
  if (comm.rank() != 0) return 0;
  std::cout << "cache " << out << ": " << rep.texts << " distinct texts of " << rep.examples
            << " examples (" << rep.tokens << " tokens), capture " << lmembed::to_string(spec)
            << ", " << lmembed::io::to_string(dtype) << "\n"
            << "shards: " << rep.shards << " (" << rep.shards_kept << " kept, " << rep.shards_built
            << " built, " << rep.shards_corrupt << " failed their checksum)\n"
            << "bytes per text: " << std::llround(rep.bytes_per_text) << " ("
            << human_bytes(double(rep.bytes)) << " in all) vs "
            << std::llround(rep.full_dump_bytes_per_text)
            << " for a full all-layer, all-token f32 dump (output_hidden_states, L + 1 = "
            << cfg.n_layers + 1 << " states per token): "
            << (rep.bytes_per_text > 0 ? rep.full_dump_bytes_per_text / rep.bytes_per_text : 0)
            << "x smaller\n";
  return 0;
}

/// Under mpirun a failing rank must take the job down, or the others wait in a collective.
int run_cache_any_rank(const Options& options) {
  try {
    return run_cache(options);
  } catch (const std::exception& e) {
    if (lmembed::train::world().size() > 1) {
      std::cerr << "lmembed cache: rank " << lmembed::train::world().rank()
                << ": error: " << e.what() << "\n";
      lmembed::train::world().abort(1);
    }
    throw;
  }
}

const lmembed::cli::Register<Options> reg{"cache",
                                          "Cache backbone states for training a pooling head",
                                          &add_options, &run_cache_any_rank};

}  // namespace
