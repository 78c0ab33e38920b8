// `lmembed embed`: texts (or token ids) in, one embedding per line out, as float32 .npy.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "device.hpp"
#include "lmembed/encoder.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/io/npy.hpp"

namespace {

/// Lines of a text file ("-" reads stdin); a final newline does not start another line.
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  auto read = [&](std::istream& in) {
    std::string l;
    while (std::getline(in, l)) {
      if (!l.empty() && l.back() == '\r') l.pop_back();
      lines.push_back(std::move(l));
    }
  };
  if (path == "-") {
    read(std::cin);
  } else {
    // An ifstream opens a folder and reads nothing from it: say so instead of embedding nothing.
    if (std::filesystem::is_directory(path)) throw lmembed::io_error(path + ": is a folder");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw lmembed::io_error(path + ": cannot open for reading");
    read(f);
    if (f.bad()) throw lmembed::io_error(path + ": read error");
  }
  if (lines.empty())
    throw lmembed::input_error((path == "-" ? std::string("stdin") : path) +
                               ": holds no lines to embed (empty input)");
  return lines;
}

/// Parses space-separated token ids per line (input_error naming line and token otherwise):
/// ids in [0, n_vocab), at most n_ctx of them unless `truncate`.
lmembed::TokenBatch parse_ids(const std::vector<std::string>& lines, const std::string& path,
                              std::int32_t pool_from, std::int64_t n_vocab, std::int64_t n_ctx,
                              bool truncate) {
  lmembed::TokenBatch b;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::vector<std::int32_t> ids;
    std::size_t p = 0;
    const std::string& l = lines[i];
    while (p < l.size()) {
      while (p < l.size() && (l[p] == ' ' || l[p] == '\t')) ++p;
      if (p >= l.size()) break;
      std::size_t q = p;
      while (q < l.size() && l[q] != ' ' && l[q] != '\t') ++q;
      const std::string tok = l.substr(p, q - p);
      try {
        std::size_t used = 0;
        const long long v = std::stoll(tok, &used);
        if (used != tok.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(tok);
        ids.push_back(static_cast<std::int32_t>(v));
      } catch (const std::exception&) {
        throw lmembed::input_error(path + ":" + std::to_string(i + 1) + ": '" + tok +
                                   "' is not a token id");
      }
      if (ids.back() >= n_vocab)
        throw lmembed::input_error(path + ":" + std::to_string(i + 1) + ": token id " + tok +
                                   " is out of the model's vocabulary [0, " +
                                   std::to_string(n_vocab) + ")");
      p = q;
    }
    if (ids.empty())
      throw lmembed::input_error(path + ":" + std::to_string(i + 1) + ": no token ids");
    if (!truncate && static_cast<std::int64_t>(ids.size()) > n_ctx)
      throw lmembed::input_error(path + ":" + std::to_string(i + 1) + ": " +
                                 std::to_string(ids.size()) +
                                 " token ids, more than the model's context length " +
                                 std::to_string(n_ctx) + " (cut them: --truncate)");
    const auto n = static_cast<std::int32_t>(ids.size());
    lmembed::detail::add_sequence(b, ids, std::min(pool_from, n - 1));
  }
  return b;
}

struct Options {
  std::optional<std::string> model, input, output;
  std::string attention = "causal", pooling = "eos", device = "cpu", head;
  std::optional<std::string> instruction;
  long long pool_from = 0, threads = 0, batch_tokens = 8192;
  bool eos = false, no_normalize = false, ids = false, truncate = false;
  lmembed::WeightFormat weights = lmembed::WeightFormat::stored;
};

void add_options(CLI::App& app, Options& o) {
  namespace cli = lmembed::cli;
  app.description(
      "Writes one float32 embedding per input line as an [n, d] .npy file (L2-normalized rows\n"
      "unless --no-normalize). Needs --model, --input and --output.");
  app.footer(
      "Poolings: eos (the last token), mean (the tokens from --pool-from to the end), and the\n"
      "trainable latent, multi_layer, multi_layer_mean, multi_layer_tokens, multi_layer_eos\n"
      "(their --head from `lmembed train`). eos pooling warns about texts whose last token is\n"
      "not EOS. --weights stored runs Q8_0/Q4_0/Q4_1 projections on integer kernels over 8-bit\n"
      "activations (~1/4-1/6 of the memory); f32 dequantizes everything (exact, 4 bytes per\n"
      "parameter). --device cuda runs the backbone on the GPU in F32 (the same embeddings\n"
      "within 1e-4) and needs a build with -DLMEMBED_CUDA=ON.");
  cli::option(app, "--model PATH", o.model,
              "a .gguf file or a Hugging Face folder (config.json + safetensors)");
  cli::option(app, "--attention A", o.attention, "causal (default) or bidirectional");
  cli::option(app, "--pooling P", o.pooling,
              "eos (default), mean, latent, multi_layer, multi_layer_mean|tokens|eos");
  cli::option(app, "--head FILE", o.head, "the trained head (.safetensors) of a trainable pooling");
  cli::option(app, "--pool-from N", o.pool_from,
              "leave the first N tokens of every text out of mean-style pooling");
  cli::option(app, "--instruction TEXT", o.instruction,
              "prefix every text with TEXT and leave it out of the pooling");
  cli::flag(app, "--eos", o.eos,
            "append the EOS token when tokenizing (default: the model's flag)");
  cli::flag(app, "--no-normalize", o.no_normalize,
            "write the raw pooled vectors (default: L2-normalized rows)");
  cli::flag(app, "--ids", o.ids, "each input line holds space-separated token ids, used as given");
  cli::option(app, "--threads N", o.threads, "threads (default: all OpenMP offers)");
  cli::flag(app, "--truncate", o.truncate, "cut texts longer than the context (default: error)");
  cli::option(app, "--batch-tokens N", o.batch_tokens,
              "tokens per backbone call (default 8192; bounds memory)");
  cli::option(app, "--device D", o.device, "cpu (default) or cuda: the backbone on the GPU");
  cli::weights_option(app, o.weights,
                      "stored (default: quantized weights stay so) or f32 (dequantized; exact)");
  cli::option(app, "--input FILE", o.input, "one text per line ('-': stdin)");
  cli::option(app, "--output FILE.npy", o.output, "written atomically");
}

int run_embed(const Options& a) {
  using lmembed::cli::require;
  using lmembed::cli::usage_error;
  const std::string model = require(a.model, "--model");
  const std::string input = require(a.input, "--input");
  const std::string output = require(a.output, "--output");
  using lmembed::cli::parse_option;
  const auto attention = parse_option(
      "--attention", a.attention, [](const std::string& s) { return lmembed::parse_attention(s); });
  const auto device = parse_option(
      "--device", a.device, [](const std::string& s) { return lmembed::cli::parse_device(s); });
  const auto weights = a.weights;
  const std::string& pooling = a.pooling;
  // A bad name fails before the model loads (a missing or extra --head when the encoder is made).
  (void)parse_option("--pooling", pooling,
                     [](const std::string& s) { return lmembed::pooling::capture_of(s); });
  const long long pool_from = a.pool_from;
  if (pool_from < 0) throw usage_error("--pool-from must be >= 0");
  const long long threads = a.threads;
  const long long batch_tokens = a.batch_tokens;
  if (batch_tokens < 1) throw usage_error("--batch-tokens must be >= 1");
  if (a.ids && a.instruction) throw usage_error("--instruction needs texts, not --ids");
  if (a.ids && a.eos)
    throw usage_error("--eos applies when tokenizing; with --ids the ids are used as given");
  lmembed::cli::require_device(device);  // before any model work

  const std::vector<std::string> lines = read_lines(input);
  // Token ids need no tokenizer: an HF folder without tokenizer.json, or a GGUF without
  // tokenizer.ggml.* metadata, is fine with --ids (the tokenizer only supplies the EOS id,
  // whose check is then skipped).
  namespace fs = std::filesystem;
  bool no_tokenizer = false;
  if (a.ids) {
    if (fs::is_directory(model))
      no_tokenizer = !fs::exists(fs::path(model) / "tokenizer.json");
    else if (fs::path(model).extension() == ".gguf")
      no_tokenizer = !lmembed::io::GgufFile::open(model).has("tokenizer.ggml.model");
  }
  lmembed::Tokenizer tok = no_tokenizer ? lmembed::Tokenizer{} : lmembed::Tokenizer::load(model);
  lmembed::EncoderOptions o;
  if (no_tokenizer) {
    o.eos_check = lmembed::EosCheck::off;
    std::cerr << "lmembed embed: " << model
              << " has no tokenizer (no tokenizer.json / tokenizer.ggml.* metadata): the ids are "
                 "used as given, EOS is not checked\n";
  }
  o.normalize = !a.no_normalize;
  o.add_eos = a.eos ? true : tok.add_eos();
  o.pool_from = static_cast<std::int32_t>(pool_from);
  o.threads = static_cast<int>(threads);
  o.truncate = a.truncate;
  o.batch_tokens = batch_tokens;
  o.progress = lines.size() > 1000;
  o.weights = weights;
  std::cerr << "lmembed embed: loading " << model
            << (device == lmembed::cli::Device::cuda ? " onto the GPU" : "") << "\n";
  const std::string& head = a.head;
  const bool cuda = device == lmembed::cli::Device::cuda;
  lmembed::AnyEncoder enc;
  try {
    enc = cuda ? lmembed::cli::device_hooks().make_encoder(model, attention, pooling, head, o)
               : lmembed::make_encoder(lmembed::Backbone::load(model, weights), std::move(tok),
                                       attention, pooling, head, o);
  } catch (const lmembed::config_error& e) {
    // A head that does not fit the model (width, layers): say which file.
    if (head.empty() || std::string_view(e.what()).find(head) != std::string_view::npos) throw;
    throw lmembed::config_error(head + ": " + e.what());
  }
  lmembed::Matrix e;
  if (a.ids) {
    // (The GPU encoder keeps no CPU backbone to ask: its forward checks the ids.)
    const std::int64_t n_vocab = cuda ? INT32_MAX : enc->backbone().config().n_vocab;
    const std::int64_t n_ctx = cuda ? INT64_MAX : enc->backbone().config().n_ctx;
    const lmembed::TokenBatch b = parse_ids(lines, input, o.pool_from, n_vocab, n_ctx, o.truncate);
    e = enc->encode(b);
  } else {
    try {
      e = enc->encode(lines, a.instruction.value_or(""));
    } catch (const lmembed::input_error& err) {  // "text N of M ...": N is line N of the input
      throw lmembed::input_error((input == "-" ? std::string("stdin") : input) + ": " + err.what());
    }
  }
  lmembed::io::write_npy(output, e);
  std::cerr << "lmembed embed: wrote " << e.rows() << " x " << e.cols() << " to " << output << "\n";
  return 0;
}

const lmembed::cli::Register<Options> reg{"embed", "Embed texts (or token ids) into an .npy file",
                                          &add_options, &run_embed};

}  // namespace
