// `lmembed tokenize`: prints the token ids of texts, one line of space-separated ids per text.
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

namespace {

struct Options {
  std::optional<std::string> model, tokenizer;
  bool no_bos = false, eos = false, parse_special = false;
  std::vector<std::string> texts;
};

void add_options(CLI::App& app, Options& o) {
  namespace cli = lmembed::cli;
  app.description(
      "Prints the token ids of each TEXT as one line of space-separated integers (an empty\n"
      "line for an empty text); with no TEXT, of each line of stdin. Give exactly one of\n"
      "--model and --tokenizer. Arguments after -- are texts even if they start with '-'.");
  cli::option(app, "--model FILE", o.model,
              "a GGUF model (its tokenizer.ggml.* metadata), or an HF folder");
  cli::option(app, "--tokenizer FILE", o.tokenizer,
              "a Hugging Face tokenizer.json (and the tokenizer_config.json beside it)");
  cli::flag(app, "--no-bos", o.no_bos, "do not add BOS (default: the model's add_bos flag)");
  cli::flag(app, "--eos", o.eos, "add EOS (default: the model's add_eos flag)");
  cli::flag(app, "--parse-special", o.parse_special,
            "recognize special tokens such as <s> written in the text");
  cli::positionals(app, "TEXT", o.texts, "the texts (none: one per line of stdin)");
}

int run_tokenize(const Options& o) {
  using lmembed::cli::usage_error;
  if (o.model.has_value() == o.tokenizer.has_value())
    throw usage_error("give exactly one of --model and --tokenizer");
  const lmembed::Tokenizer tok =
      o.model ? lmembed::Tokenizer::load(*o.model) : lmembed::Tokenizer::from_hf(*o.tokenizer);
  lmembed::EncodeOptions opt;
  if (o.no_bos) opt.add_bos = false;
  if (o.eos) opt.add_eos = true;
  opt.parse_special = o.parse_special;

  std::string line;
  auto print = [&](const std::string& text) {
    // An empty text prints an empty line (no BOS/EOS either), as the command promises.
    const std::vector<std::int32_t> ids =
        text.empty() ? std::vector<std::int32_t>{} : tok.encode(text, opt);
    line.clear();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i) line.push_back(' ');
      line += std::to_string(ids[i]);
    }
    line.push_back('\n');
    std::cout << line;
  };
  if (!o.texts.empty()) {
    for (const std::string& text : o.texts) print(text);
  } else {
    std::string text;
    while (std::getline(std::cin, text)) print(text);
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}

const lmembed::cli::Register<Options> reg{"tokenize", "Print the token ids of texts", &add_options,
                                          &run_tokenize};

}  // namespace
