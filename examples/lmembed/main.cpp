// lmembed: command-line front end of the lmembed library. See `lmembed --help`.
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "command.hpp"
#include "lmembed/cpu/dispatch.hpp"
#include "lmembed/version.hpp"

int main(int argc, char** argv) {
  using namespace lmembed::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto print_help = [] {
    std::cout << "lmembed " << LMEMBED_VERSION_STRING
              << " - decoder-only LLMs as text-embedding models\n\nusage: lmembed <command> "
                 "[options]   (lmembed <command> --help for its options)\n\ncommands:\n";
    for (const auto& [name, cmd] : registry())
      std::cout << "  " << name << std::string(name.size() < 12 ? 12 - name.size() : 1, ' ')
                << cmd.summary << "\n";
  };
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    print_help();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "lmembed " << LMEMBED_VERSION_STRING << "\n";
    try {
      std::cout << "cpu: " << lmembed::cpu::describe() << "\n";  // run-time kernel level, why
    } catch (const lmembed::config_error& e) {
      std::cerr << "lmembed: " << e.what() << "\n";
      return 2;
    }
    return 0;
  }
  auto it = registry().find(args[0]);
  if (it == registry().end()) {
    std::cerr << "lmembed: unknown command '" << args[0] << "'\n";
    print_help();
    return 2;
  }
  try {
    return it->second.run(std::span<const std::string>(args).subspan(1));
  } catch (const usage_error& e) {
    std::cerr << "lmembed " << args[0] << ": " << e.what() << "\n(see lmembed " << args[0]
              << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lmembed " << args[0] << ": error: " << e.what() << "\n";
    return 1;
  }
}
