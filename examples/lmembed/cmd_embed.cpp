// `lmembed embed`: texts (or token ids) in, one embedding per line out, as float32 .npy.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "command.hpp"
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

int run_embed(std::span<const std::string> argv) {
  using lmembed::cli::Args;
  using lmembed::cli::usage_error;
  Args a(argv,
         "usage: lmembed embed --model PATH [--attention causal|bidirectional]\n"
         "                     [--pooling eos|mean|latent|multi_layer|multi_layer_mean|\n"
         "                                multi_layer_tokens|multi_layer_eos]\n"
         "                     [--head FILE.safetensors] [--pool-from N] [--instruction TEXT]\n"
         "                     [--eos] [--no-normalize] [--ids] [--threads N] [--truncate]\n"
         "                     [--device cpu|cuda] [--weights stored|f32]\n"
         "                     --input FILE --output FILE.npy\n"
         "Writes one float32 embedding per input line as an [n, d] .npy file.\n"
         "  --model PATH        a .gguf file or a Hugging Face folder (config.json + safetensors)\n"
         "  --attention A       causal (default) or bidirectional\n"
         "  --pooling P         eos (default): the last token; mean: mean over the tokens from\n"
         "                      --pool-from to the end; latent, multi_layer*: trainable heads\n"
         "  --head FILE         the trained head (.safetensors) of a trainable pooling\n"
         "  --pool-from N       leave the first N tokens of every text out of mean-style pooling\n"
         "  --instruction TEXT  prefix every text with TEXT and leave it out of the pooling\n"
         "  --eos               append the EOS token when tokenizing (default: the model's flag;\n"
         "                      eos pooling warns about texts whose last token is not EOS)\n"
         "  --no-normalize      write the raw pooled vectors (default: L2-normalized rows)\n"
         "  --ids               each input line holds space-separated token ids, used as given\n"
         "  --threads N         threads (default: all OpenMP offers)\n"
         "  --truncate          cut texts longer than the context (default: error)\n"
         "  --batch-tokens N    tokens per backbone call (default 8192; bounds memory)\n"
         "  --device D          cpu (default) or cuda: the backbone on the GPU (F32, same\n"
         "                      embeddings within 1e-4; needs a build with -DLMEMBED_CUDA=ON)\n"
         "  --weights W         stored (default): Q8_0/Q4_0/Q4_1 weights stay quantized (integer\n"
         "                      kernels on 8-bit activations, ~1/4-1/6 of the memory); f32:\n"
         "                      everything dequantized to float32 (exact, 4 bytes/parameter)\n"
         "  --input FILE        one text per line ('-': stdin)\n"
         "  --output FILE.npy   written atomically");
  a.option("--model")
      .option("--attention")
      .option("--pooling")
      .option("--head")
      .option("--pool-from")
      .option("--instruction")
      .flag("--eos")
      .flag("--no-normalize")
      .flag("--ids")
      .option("--threads")
      .flag("--truncate")
      .option("--batch-tokens")
      .option("--device")
      .option("--weights")
      .option("--input")
      .option("--output");
  a.parse();
  if (a.help()) {
    std::cout << a.usage() << "\n";
    return 0;
  }
  if (!a.positional().empty())
    throw usage_error("unexpected argument '" + a.positional().front() + "'");
  const std::string model = a.require("--model");
  const std::string input = a.require("--input");
  const std::string output = a.require("--output");
  using lmembed::cli::parse_option;
  const auto attention =
      parse_option("--attention", a.get_or("--attention", "causal"),
                   [](const std::string& s) { return lmembed::parse_attention(s); });
  const auto device =
      parse_option("--device", a.get_or("--device", "cpu"),
                   [](const std::string& s) { return lmembed::cli::parse_device(s); });
  const auto weights = lmembed::cli::weights_option(a);
  const std::string pooling = a.get_or("--pooling", "eos");
  // A bad name fails before the model loads (a missing or extra --head when the encoder is made).
  (void)parse_option("--pooling", pooling,
                     [](const std::string& s) { return lmembed::pooling::capture_of(s); });
  const long long pool_from = a.get_int("--pool-from", 0);
  if (pool_from < 0) throw usage_error("--pool-from must be >= 0");
  const long long threads = a.get_int("--threads", 0);
  const long long batch_tokens = a.get_int("--batch-tokens", 8192);
  if (batch_tokens < 1) throw usage_error("--batch-tokens must be >= 1");
  if (a.has("--ids") && a.has("--instruction"))
    throw usage_error("--instruction needs texts, not --ids");
  if (a.has("--ids") && a.has("--eos"))
    throw usage_error("--eos applies when tokenizing; with --ids the ids are used as given");
  lmembed::cli::require_device(device);  // before any model work

  const std::vector<std::string> lines = read_lines(input);
  // Token ids need no tokenizer: an HF folder without tokenizer.json, or a GGUF without
  // tokenizer.ggml.* metadata, is fine with --ids (the tokenizer only supplies the EOS id,
  // whose check is then skipped).
  namespace fs = std::filesystem;
  bool no_tokenizer = false;
  if (a.has("--ids")) {
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
  o.normalize = !a.has("--no-normalize");
  o.add_eos = a.has("--eos") ? true : tok.add_eos();
  o.pool_from = static_cast<std::int32_t>(pool_from);
  o.threads = static_cast<int>(threads);
  o.truncate = a.has("--truncate");
  o.batch_tokens = batch_tokens;
  o.progress = lines.size() > 1000;
  o.weights = weights;
  std::cerr << "lmembed embed: loading " << model
            << (device == lmembed::cli::Device::cuda ? " onto the GPU" : "") << "\n";
  const std::string head = a.get_or("--head", "");
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
  if (a.has("--ids")) {
    // (The GPU encoder keeps no CPU backbone to ask: its forward checks the ids.)
    const std::int64_t n_vocab = cuda ? INT32_MAX : enc->backbone().config().n_vocab;
    const std::int64_t n_ctx = cuda ? INT64_MAX : enc->backbone().config().n_ctx;
    const lmembed::TokenBatch b = parse_ids(lines, input, o.pool_from, n_vocab, n_ctx, o.truncate);
    e = enc->encode(b);
  } else {
    try {
      e = enc->encode(lines, a.get_or("--instruction", ""));
    } catch (const lmembed::input_error& err) {  // "text N of M ...": N is line N of the input
      throw lmembed::input_error((input == "-" ? std::string("stdin") : input) + ": " + err.what());
    }
  }
  lmembed::io::write_npy(output, e);
  std::cerr << "lmembed embed: wrote " << e.rows() << " x " << e.cols() << " to " << output << "\n";
  return 0;
}

const lmembed::cli::Register reg{"embed", "Embed texts (or token ids) into an .npy file",
                                 &run_embed};

}  // namespace
