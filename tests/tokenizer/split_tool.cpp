// Test helper: prints how a named pre-tokenizer splits texts, for the Python reference test.
// Input (stdin): one hex-encoded UTF-8 text per line. Output: one line per text, the words
// hex-encoded and separated by spaces. With --nfc instead of a name: each text's NFC form, hex.
#include <cstdio>
#include <iostream>
#include <string>

#include "lmembed/tokenizer/pretokenize.hpp"

static std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenizer_split_tool PRE_TOKENIZER_NAME < hex_lines\n";
    return 2;
  }
  try {
    std::string line;
    if (std::string(argv[1]) == "--nfc") {
      while (std::getline(std::cin, line)) {
        std::string out;
        char buf[3];
        for (unsigned char c : lmembed::detail::unicode::nfc(unhex(line))) {
          std::snprintf(buf, sizeof buf, "%02x", c);
          out += buf;
        }
        std::cout << out << '\n';
      }
      return 0;
    }
    const auto pre = lmembed::detail::PreTokenizer::named(argv[1]);
    while (std::getline(std::cin, line)) {
      std::string out;
      for (const std::string& w : lmembed::detail::split_words(pre, unhex(line))) {
        if (!out.empty()) out.push_back(' ');
        char buf[3];
        for (unsigned char c : w) {
          std::snprintf(buf, sizeof buf, "%02x", c);
          out += buf;
        }
      }
      std::cout << out << '\n';
    }
  } catch (const std::exception& e) {
    std::cerr << "tokenizer_split_tool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
