// dump_states - writes the backbone's hidden states for test_reference.py (a PyTorch float64
// forward pass of the same checkpoint checks every layer, which the llama.cpp goldens, holding
// only final-layer states, cannot).
//
//   dump_states MODEL causal|bidirectional IDS_FILE OUT.npy
// IDS_FILE: one sequence per line, space-separated token ids. OUT.npy: float32
// [n_tokens * n_layers, d], rows token-major, layer-minor (CaptureLayers::all x
// CaptureTokens::all, as core/batch.hpp lays them out). Weights: WeightFormat::f32.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "lmembed/backbone/backbone.hpp"
#include "lmembed/io/npy.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: dump_states MODEL causal|bidirectional IDS_FILE OUT.npy\n");
    return 2;
  }
  try {
    // The exact F32 path: the reference tests bound lmembed's float32 error, not the 8-bit
    // activation rounding of the stored-type kernels (test_qgemm bounds that).
    lmembed::Backbone bb = lmembed::Backbone::load(argv[1], lmembed::WeightFormat::f32);
    const lmembed::AttentionKind att = lmembed::parse_attention(argv[2]);
    std::ifstream in(argv[3]);
    if (!in) throw lmembed::io_error(std::string(argv[3]) + ": cannot open");
    lmembed::TokenBatch batch;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ss(line);
      std::vector<std::int32_t> ids;
      for (std::int32_t id; ss >> id;) ids.push_back(id);
      if (!ids.empty()) batch.add(ids);
    }
    const lmembed::Captured c =
        bb.forward(batch, att, {lmembed::CaptureLayers::all, lmembed::CaptureTokens::all});
    lmembed::io::write_npy(argv[4], c.states);
  } catch (const lmembed::error& e) {
    std::fprintf(stderr, "dump_states: %s\n", e.what());
    return 1;
  }
  return 0;
}
