// cpu_run LEVEL PROGRAM ARGS... - runs PROGRAM with LMEMBED_CPU=LEVEL, or exits 77 (ctest's
// skip) when this CPU cannot run LEVEL, so per-level test variants skip loudly elsewhere.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "lmembed/cpu/dispatch.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: cpu_run generic|avx2|avx512 PROGRAM [ARGS...]\n");
    return 2;
  }
  try {
    const lmembed::cpu::Level l = lmembed::cpu::parse_level(argv[1], "cpu_run");
    const std::string lacks = lmembed::cpu::missing(l);
    if (!lacks.empty()) {
      std::fprintf(stderr, "SKIP: this CPU lacks %s for level %s\n", lacks.c_str(), argv[1]);
      return 77;
    }
  } catch (const lmembed::config_error& e) {
    std::fprintf(stderr, "cpu_run: %s\n", e.what());
    return 2;
  }
  setenv("LMEMBED_CPU", argv[1], 1);
  std::fprintf(stderr, "cpu_run: LMEMBED_CPU=%s %s\n", argv[1], argv[2]);
  execv(argv[2], argv + 2);
  std::perror("cpu_run: execv");
  return 2;
}
