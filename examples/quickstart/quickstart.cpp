// The README's code example, built and run by the test suite so that it stays true.
#include <iostream>
#include <string>
#include <vector>

#include <lmembed/lmembed.hpp>

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "data/models/stories260K.gguf";
  using Model1 = lmembed::Encoder<lmembed::attention::causal, lmembed::pooling::eos>;
  auto enc = Model1::load(model);
  std::vector<std::string> texts{"A man is playing a flute.", "A man plays the flute."};
  lmembed::Matrix e = enc.encode(texts);  // [2, 64], rows L2-normalized
  std::cout << "cosine: " << e.row(0).dot(e.row(1)) << "\n";
  return e.rows() == 2 ? 0 : 1;
}
