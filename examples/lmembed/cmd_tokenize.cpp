// `lmembed tokenize`: prints the token ids of texts, one line of space-separated ids per text.
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "command.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

namespace {

int run_tokenize(std::span<const std::string> argv) {
  using lmembed::cli::Args;
  using lmembed::cli::usage_error;
  Args a(
      argv,
      "usage: lmembed tokenize --model FILE.gguf | --tokenizer tokenizer.json [--no-bos] [--eos]\n"
      "                        [--parse-special] [TEXT ...]\n"
      "Prints the token ids of each TEXT as one line of space-separated integers (an empty\n"
      "line for an empty text). Arguments after -- are texts even if they start with '-'.\n"
      "With no TEXT, reads one text per line from stdin.\n"
      "  --model FILE        a GGUF model (its tokenizer.ggml.* metadata), or an HF folder\n"
      "  --tokenizer FILE    a Hugging Face tokenizer.json (tokenizer_config.json beside it\n"
      "                      is read too)\n"
      "  --no-bos            do not add BOS (default: the model's add_bos flag)\n"
      "  --eos               add EOS (default: the model's add_eos flag)\n"
      "  --parse-special     recognize special tokens such as <s> written in the text");
  a.option("--model").option("--tokenizer").flag("--no-bos").flag("--eos").flag("--parse-special");
  a.parse();
  if (a.help()) {
    std::cout << a.usage() << "\n";
    return 0;
  }
  const bool has_model = a.has("--model"), has_tok = a.has("--tokenizer");
  if (has_model == has_tok) throw usage_error("give exactly one of --model and --tokenizer");
  const lmembed::Tokenizer tok = has_model ? lmembed::Tokenizer::load(*a.get("--model"))
                                           : lmembed::Tokenizer::from_hf(*a.get("--tokenizer"));
  lmembed::EncodeOptions opt;
  if (a.has("--no-bos")) opt.add_bos = false;
  if (a.has("--eos")) opt.add_eos = true;
  opt.parse_special = a.has("--parse-special");

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
  if (!a.positional().empty()) {
    for (const std::string& text : a.positional()) print(text);
  } else {
    std::string text;
    while (std::getline(std::cin, text)) print(text);
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}

const lmembed::cli::Register reg{"tokenize", "Print the token ids of texts", &run_tokenize};

}  // namespace
