// Helper for test_heads_torch.py: creates, runs and re-saves heads so that PyTorch can check
// them. Not installed; used only by the Python reference test.
//
//   pooling_ref_tool init POOLING D L N_LATENTS HEADS HEAD_DIM MULT SEED OUT.safetensors
//   pooling_ref_tool run HEAD.safetensors POOLING INPUT.safetensors OUT.safetensors
//       INPUT holds states [rows, d] F32, offsets I64, pool_from I64, meta n_seq/n_layers, and
//       R [n_seq, d] F32; OUT gets y (unnormalized), d_states and grad.<param> for the loss
//       sum(R * l2_normalize(y)).
//   pooling_ref_tool resave POOLING IN.safetensors OUT.safetensors
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "lmembed/io/safetensors.hpp"
#include "lmembed/nn/reduce.hpp"
#include "lmembed/pooling/pooling.hpp"

using namespace lmembed;

namespace {

std::vector<std::int64_t> read_i64(const io::TensorView& t) {
  if (t.dtype != io::DType::i64) throw format_error("tensor " + t.name + " must be I64");
  std::vector<std::int64_t> v(t.data.size() / 8);
  if (!v.empty()) std::memcpy(v.data(), t.data.data(), v.size() * 8);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv, argv + argc);
  try {
    if (a.size() == 11 && a[1] == "init") {
      const std::string pooling = a[2];
      const std::int64_t d = std::stoll(a[3]), L = std::stoll(a[4]), nl = std::stoll(a[5]),
                         heads = std::stoll(a[6]), hd = std::stoll(a[7]), mult = std::stoll(a[8]);
      const std::uint64_t seed = std::stoull(a[9]);
      if (pooling == pooling::latent::name) {
        auto c = pooling::LatentHead<float>::Config::defaults(d);
        if (nl) c.n_latents = nl;
        if (heads) c.heads = heads;
        c.head_dim = hd ? hd : (d + c.heads - 1) / c.heads;
        if (mult) c.mlp_mult = mult;
        pooling::LatentHead<float> h(c);
        h.init(seed);
        h.save(a[10]);
      } else {
        auto c = pooling::MultiLayerHead<float>::Config::defaults(
            d, L, pooling::parse_multi_layer_input(pooling));
        if (nl) c.n_latents = nl;
        if (heads) c.heads = heads;
        c.head_dim = hd ? hd : (d + c.heads - 1) / c.heads;
        if (mult) c.ff_mult = mult;
        pooling::MultiLayerHead<float> h(c);
        h.init(seed);
        h.save(a[10]);
      }
      return 0;
    }
    if (a.size() == 6 && a[1] == "run") {
      auto head = pooling::AnyHead<float>::load(a[2], a[3]);
      auto f = io::SafetensorsFile::open(a[4]);
      Captured in;
      in.spec = head.capture();
      in.d = head.dim();
      in.states = io::to_matrix(f.tensor("states"));
      in.n_seq = std::stoll(f.metadata().at("n_seq"));
      in.n_layers = std::stoll(f.metadata().at("n_layers"));
      in.offsets = read_i64(f.tensor("offsets"));
      for (auto v : read_i64(f.tensor("pool_from")))
        in.pool_from.push_back(static_cast<std::int32_t>(v));
      if (in.spec.tokens != CaptureTokens::all) {
        in.offsets.clear();
        in.pool_from.clear();
      }
      const Matrix R = io::to_matrix(f.tensor("R"));
      pooling::AnyHead<float>::Context ctx;
      head.zero_grad();
      const Matrix y = head.forward(in, ctx);
      Matrix yn, dy;
      Vector norms;
      nn::l2_normalize_forward(y, yn, &norms);
      nn::l2_normalize_backward(yn, norms, R, dy);
      const Matrix d_states = head.backward(dy, ctx);
      io::SafetensorsWriter w;
      w.add("y", y);
      w.add("d_states", d_states);
      for (auto* p : head.parameters()) w.add("grad." + p->name, p->grad, p->shape);
      w.write(a[5]);
      return 0;
    }
    if (a.size() == 5 && a[1] == "resave") {
      pooling::AnyHead<float>::load(a[3], a[2]).save(a[4]);
      return 0;
    }
    std::cerr << "usage: see the header of pooling_ref_tool.cpp\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "pooling_ref_tool: " << e.what() << "\n";
    return 1;
  }
}
