// lmembed: command-line front end of the lmembed library. See `lmembed --help`.
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "lmembed/cpu/dispatch.hpp"
#include "lmembed/version.hpp"

#if defined(_OPENMP) && defined(__linux__)
#include <unistd.h>
#endif

namespace {
/// A message as one line: a file's own text quoted in an error (a 1 MB line, NUL bytes, control
/// characters) is cut to 1000 bytes and its control bytes escaped.
std::string one_line(std::string_view m) {
  std::string out;
  for (const char c : m.substr(0, 1000)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  if (m.size() > 1000) out += "... (" + std::to_string(m.size()) + " bytes)";
  return out;
}
}  // namespace

int main(int argc, char** argv) {
#if defined(_OPENMP) && defined(__linux__)
  // Threads that spin while they wait (libgomp's default spins ~300,000 times first) starve each
  // other on a busy machine: 2 threads ran 10x slower than 1 on an oversubscribed one, while
  // sleeping at once costs little when idle (bench/threads/wait_policy.py, docs/robustness.md).
  // libgomp reads OMP_WAIT_POLICY when it is loaded, before main: set it and start over.
  // A user's OMP_WAIT_POLICY wins; LMEMBED_OMP_WAIT_POLICY=keep leaves libgomp's default.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("LMEMBED_OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: go on with the default
    ::unsetenv("OMP_WAIT_POLICY");
  }
#endif
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
    std::cerr << "lmembed: error: unknown command '" << one_line(args[0])
              << "' (see lmembed --help)\n";
    return 2;
  }
  try {
    return lmembed::cli::run(it->second, std::span<const std::string>(args).subspan(1));
  } catch (const usage_error& e) {
    // One line, so scripts and logs keep the whole message with the command at fault.
    std::cerr << "lmembed " << args[0] << ": error: " << one_line(e.what()) << " (see lmembed "
              << args[0] << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lmembed " << args[0] << ": error: " << one_line(e.what()) << "\n";
    return 1;
  } catch (...) {
    std::cerr << "lmembed " << args[0] << ": error: unexpected non-standard exception\n";
    return 1;
  }
}
