// `lmembed cache`: run the frozen backbone once over every distinct training text and store
// what the pooling consumes (see include/lmembed/train/cache.hpp and docs/training.md).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <span>
#include <string>

#include "command.hpp"
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

int run_cache(std::span<const std::string> argv) {
  using lmembed::cli::Args;
  using lmembed::cli::usage_error;
  namespace train = lmembed::train;
  Args a(argv,
         "usage: lmembed cache --model PATH --capture KIND --data FILE.jsonl --out DIR\n"
         "                     [--attention causal|bidirectional] [--dtype f32|f16] [--skip-bad]\n"
         "                     [--threads N] [--shard-kb N] [--batch-tokens N] [--truncate]\n"
         "                     [--eos] [--weights stored|f32]\n"
         "Runs the backbone once over every distinct text of the training data and stores what\n"
         "the pooling consumes, in sharded memory-mapped files with an index (DIR/index.json).\n"
         "Rerunning after a crash keeps the finished shards (verified by checksum) and redoes the\n"
         "rest. Under mpirun (-np N) the shards are shared out among the ranks and the folder is\n"
         "the same as one process's; rank 0 prints the progress and the report.\n"
         "  --capture KIND   a pooling name (eos, mean, latent, multi_layer, multi_layer_mean,\n"
         "                   multi_layer_tokens, multi_layer_eos) or layers.tokens, e.g.\n"
         "                   all_layers.last_token\n"
         "  --dtype          f32 (default) or f16 (half the bytes)\n"
         "  --weights W      stored (default: Q8_0/Q4_0/Q4_1 weights stay quantized, 8-bit\n"
         "                   activations) or f32 (dequantized; exact), as `lmembed embed`\n"
         "  --skip-bad       skip malformed JSONL lines (counted) instead of stopping\n"
         "  --eos            append the EOS token (default: the model's flag) - tokenization is\n"
         "                   `lmembed embed`'s, so embed a trained head with the same --eos\n"
         "  --shard-kb N     close a shard at about N KiB (default 65536)\n"
         "  --batch-tokens N tokens per backbone call (default 2048)");
  a.option("--model")
      .option("--capture")
      .option("--data")
      .option("--out")
      .option("--attention")
      .option("--dtype")
      .option("--weights")
      .option("--threads")
      .option("--shard-kb")
      .option("--batch-tokens")
      .flag("--skip-bad")
      .flag("--truncate")
      .flag("--eos");
  a.parse();
  if (a.help()) {
    std::cout << a.usage() << "\n";
    return 0;
  }
  const std::string model = a.require("--model"), data = a.require("--data"),
                    out = a.require("--out");
  using lmembed::cli::parse_option;
  const lmembed::CaptureSpec spec =
      parse_option("--capture", a.require("--capture"),
                   [](const std::string& s) { return train::parse_capture(s); });
  const auto attention =
      parse_option("--attention", a.get_or("--attention", "causal"),
                   [](const std::string& s) { return lmembed::parse_attention(s); });
  const auto dtype = lmembed::io::parse_dtype(a.get_or("--dtype", "f32"));
  if (dtype != lmembed::io::DType::f32 && dtype != lmembed::io::DType::f16)
    throw usage_error("--dtype must be f32 or f16");

  train::Communicator& comm = train::world();  // MPI_COMM_WORLD under mpirun
  train::ReadStats st;
  const auto examples = train::read_examples(data, {a.has("--skip-bad")}, &st);
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

  const auto weights = lmembed::cli::weights_option(a);
  const auto tokenizer = lmembed::Tokenizer::load(model);
  auto backbone = lmembed::Backbone::load(model, weights);
  backbone.set_threads(static_cast<int>(a.get_int("--threads", 0)));
  const auto& cfg = backbone.config();

  // Tokenize exactly as the Encoder does at inference (same BOS/EOS and instruction rules).
  lmembed::EncoderOptions eo;
  eo.add_eos = a.has("--eos") ? true : tokenizer.add_eos();  // as `lmembed embed`
  train::TokenizeFn tokenize = [&](const train::CacheText& t) {
    const std::string text[1] = {t.text};
    const lmembed::TokenBatch b =
        lmembed::detail::tokenize_texts(tokenizer, text, t.instruction, eo, spec);
    const auto seq = b.sequence(0);
    return train::TokenizedText{{seq.begin(), seq.end()}, b.pool_start(0)};
  };
  lmembed::ForwardOptions fo;
  fo.truncate = a.has("--truncate");
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
  o.shard_bytes = a.get_int("--shard-kb", 65536) * 1024;
  o.batch_tokens = a.get_int("--batch-tokens", 2048);
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
int run_cache_any_rank(std::span<const std::string> argv) {
  try {
    return run_cache(argv);
  } catch (const std::exception& e) {
    if (lmembed::train::world().size() > 1) {
      std::cerr << "lmembed cache: rank " << lmembed::train::world().rank()
                << ": error: " << e.what() << "\n";
      lmembed::train::world().abort(1);
    }
    throw;
  }
}

const lmembed::cli::Register reg{"cache", "Cache backbone states for training a pooling head",
                                 &run_cache_any_rank};

}  // namespace
