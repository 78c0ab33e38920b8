// Built against an installed lmembed by scripts/test.sh (and by conan's test_package).
#include <iostream>

#include <lmembed/lmembed.hpp>

int main(int argc, char** argv) {
  lmembed::TokenBatch b;
  const std::int32_t ids[] = {1, 2, 3};
  b.add(ids);
  std::cout << "lmembed " << LMEMBED_VERSION_STRING << " consumer: " << b.n_tokens()
            << " tokens packed" << (argc > 1 ? std::string(" (model ") + argv[1] + ")" : "")
            << "\n";
  return b.n_tokens() == 3 ? 0 : 1;
}
