// Behaviour of the pooling heads: save/load round trips and the checks at load, pool_from
// masking, the eos/mean poolings, policies and configurations.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "lmembed/io/safetensors.hpp"
#include "lmembed/pooling/pooling.hpp"

using namespace lmembed;
namespace fs = std::filesystem;

namespace {

fs::path tmp_file(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("lmembed_test_pooling_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

Captured tokens_input(std::int64_t d, std::uint64_t seed) {
  Captured in;
  in.spec = pooling::latent::capture;
  in.d = d;
  in.n_seq = 2;
  in.offsets = {0, 3, 7};
  in.pool_from = {1, 0};
  nn::Rng rng(seed);
  in.states.resize(7, d);
  for (Eigen::Index i = 0; i < in.states.size(); ++i)
    in.states.data()[i] = static_cast<float>(rng.normal());
  return in;
}

Captured layers_input(std::int64_t d, std::int64_t L, std::uint64_t seed) {
  Captured in;
  in.spec = pooling::multi_layer::capture;
  in.d = d;
  in.n_seq = 3;
  in.n_layers = L;
  nn::Rng rng(seed);
  in.states.resize(3 * L, d);
  for (Eigen::Index i = 0; i < in.states.size(); ++i)
    in.states.data()[i] = static_cast<float>(rng.normal());
  return in;
}

}  // namespace

TEST(Heads, MultiLayerSaveLoadRoundTrip) {
  auto c = pooling::MultiLayerHead<float>::Config::defaults(16, 5);
  c.n_latents = 7;
  pooling::MultiLayerHead<float> h(c);
  h.init(3);
  const auto in = layers_input(16, 5, 4);
  const Matrix y = h.forward(in);
  const fs::path f = tmp_file("ml.safetensors");
  h.save(f);
  auto g = pooling::MultiLayerHead<float>::load(f);
  EXPECT_EQ(g.config().n_latents, 7);
  EXPECT_EQ(g.config().head_dim, 2);
  EXPECT_EQ((g.forward(in) - y).cwiseAbs().maxCoeff(), 0.0f);
  // The file uses the PyTorch module's names and [out, in] layout.
  auto sf = io::SafetensorsFile::open(f);
  EXPECT_EQ(sf.metadata().at("pooling"), "multi_layer");
  EXPECT_EQ(sf.tensor("pos_emb.weight").shape, (Shape{5, 16}));
  EXPECT_EQ(sf.tensor("cross_attend_blocks.0.fn.to_kv.weight").shape, (Shape{32, 16}));
  EXPECT_EQ(sf.tensor("cross_attend_blocks.1.fn.net.0.weight").shape, (Shape{128, 16}));
  EXPECT_EQ(sf.tensor("cross_attend_blocks.1.fn.net.2.bias").shape, (Shape{16}));
  EXPECT_EQ(sf.tensors().size(), 15u);
  // A multi_layer file is not a latent head, nor a multi_layer_mean head.
  EXPECT_THROW(pooling::LatentHead<float>::load(f), config_error);
  EXPECT_THROW(pooling::MultiLayerHead<float>::load(f, pooling::MultiLayerInput::mean_tokens),
               config_error);
  // Double heads load float files.
  auto gd = pooling::MultiLayerHead<double>::load(f);
  EXPECT_EQ(gd.parameters()[0]->value.cast<float>(), h.parameters()[0]->value);
}

TEST(Heads, LoadChecksMetadataAgainstTensors) {
  pooling::MultiLayerHead<float> h(pooling::MultiLayerHead<float>::Config::defaults(8, 2));
  h.init(1);
  // Same tensors, metadata claiming another size: shape_error naming both shapes.
  io::SafetensorsWriter w;
  for (auto* p : h.parameters()) w.add(p->name, p->value, p->shape);
  auto meta = h.metadata();
  meta["n_latents"] = "65";
  for (auto& [k, v] : meta) w.set_metadata(k, v);
  const fs::path f = tmp_file("bad_meta.safetensors");
  w.write(f);
  try {
    pooling::MultiLayerHead<float>::load(f);
    FAIL() << "no error";
  } catch (const shape_error& e) {
    EXPECT_NE(std::string(e.what()).find("[64, 8]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[65, 8]"), std::string::npos) << e.what();
  }
  // A missing tensor: format_error naming it.
  io::SafetensorsWriter w2;
  for (auto* p : h.parameters())
    if (p->name != "latents") w2.add(p->name, p->value, p->shape);
  for (auto& [k, v] : h.metadata()) w2.set_metadata(k, v);
  w2.write(f);
  try {
    pooling::MultiLayerHead<float>::load(f);
    FAIL() << "no error";
  } catch (const format_error& e) {
    EXPECT_NE(std::string(e.what()).find("latents"), std::string::npos) << e.what();
  }
  // No metadata at all (a bare PyTorch state dict): config_error that says what is missing.
  io::SafetensorsWriter w3;
  for (auto* p : h.parameters()) w3.add(p->name, p->value, p->shape);
  w3.write(f);
  EXPECT_THROW(pooling::MultiLayerHead<float>::load(f), config_error);
}

TEST(Heads, LatentSaveLoadAndPoolFrom) {
  auto c = pooling::LatentHead<float>::Config::defaults(12);
  c.n_latents = 9;
  pooling::LatentHead<float> h(c);
  h.init(5);
  auto in = tokens_input(12, 6);
  const Matrix y = h.forward(in);
  ASSERT_EQ(y.rows(), 2);
  // Token 0 of text 0 is before pool_from: changing it changes nothing, and it gets no gradient.
  auto in2 = in;
  in2.states.row(0).setConstant(100.0f);
  EXPECT_EQ((h.forward(in2) - y).cwiseAbs().maxCoeff(), 0.0f);
  pooling::LatentHead<float>::Context ctx;
  h.forward(in, ctx);
  const Matrix d_in = h.backward(Matrix::Ones(2, 12), ctx);
  EXPECT_EQ(d_in.row(0).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_GT(d_in.row(1).cwiseAbs().maxCoeff(), 0.0f);
  // Text 1 is independent of text 0.
  auto in3 = in;
  in3.states.row(2) *= 2.0f;
  const Matrix y3 = h.forward(in3);
  EXPECT_EQ((y3.row(1) - y.row(1)).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_GT((y3.row(0) - y.row(0)).cwiseAbs().maxCoeff(), 0.0f);
  const fs::path f = tmp_file("latent.safetensors");
  h.save(f);
  auto g = pooling::LatentHead<float>::load(f);
  EXPECT_EQ((g.forward(in) - y).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_THROW(pooling::MultiLayerHead<float>::load(f), config_error);
}

TEST(Heads, BatchedEqualsOneByOne) {
  // Packing texts into one batch gives the same vectors as encoding them alone.
  pooling::MultiLayerHead<float> h(pooling::MultiLayerHead<float>::Config::defaults(16, 4));
  h.init(9);
  const auto in = layers_input(16, 4, 10);
  const Matrix y = h.forward(in);
  for (std::int64_t s = 0; s < 3; ++s) {
    Captured one = in;
    one.n_seq = 1;
    one.states = in.states.middleRows(s * 4, 4);
    EXPECT_LE((h.forward(one).row(0) - y.row(s)).cwiseAbs().maxCoeff(), 1e-5f);
  }
}

TEST(Heads, WrongInputIsAShapeError) {
  pooling::MultiLayerHead<float> h(pooling::MultiLayerHead<float>::Config::defaults(16, 4));
  EXPECT_THROW(h.forward(layers_input(16, 3, 1)), shape_error);  // 3 layers, head has 4
  EXPECT_THROW(h.forward(layers_input(8, 4, 1)), shape_error);   // width
  EXPECT_THROW(h.forward(tokens_input(16, 1)), shape_error);     // wrong capture
  pooling::LatentHead<float> l(pooling::LatentHead<float>::Config::defaults(12));
  auto in = tokens_input(12, 1);
  in.pool_from = {3, 0};  // text 0 has 3 tokens: nothing left to pool
  EXPECT_THROW(l.forward(in), input_error);
}

TEST(Pooling, EosAndMean) {
  auto in = tokens_input(4, 7);
  const Matrix e = pooling::eos_forward(in);
  EXPECT_EQ(e.row(0), in.states.row(2));
  EXPECT_EQ(e.row(1), in.states.row(6));
  const Matrix m = pooling::mean_forward(in);
  EXPECT_LE((m.row(0) - (in.states.row(1) + in.states.row(2)) / 2).cwiseAbs().maxCoeff(), 1e-6f);
  EXPECT_LE((m.row(1) - in.states.middleRows(3, 4).colwise().mean()).cwiseAbs().maxCoeff(), 1e-6f);
  Captured direct;
  direct.spec = pooling::mean::capture;
  direct.n_seq = 2;
  direct.d = 4;
  direct.states = m;
  EXPECT_EQ(pooling::mean_forward(direct), m);
  EXPECT_THROW(pooling::eos_forward(direct), shape_error);

  TokenBatch b;
  std::vector<std::int32_t> s0{5, 6, 2}, s1{5, 7};
  b.add(s0);
  b.add(s1);
  EXPECT_EQ(pooling::sequences_without_eos(b, 2), std::vector<std::size_t>{1});
}

TEST(Pooling, PoliciesAndConfigs) {
  static_assert(pooling::multi_layer::capture ==
                CaptureSpec{CaptureLayers::all, CaptureTokens::last});
  static_assert(pooling::multi_layer_mean::capture ==
                CaptureSpec{CaptureLayers::all, CaptureTokens::mean});
  static_assert(pooling::multi_layer_tokens::capture ==
                CaptureSpec{CaptureLayers::last, CaptureTokens::all});
  static_assert(pooling::latent::capture == CaptureSpec{CaptureLayers::last, CaptureTokens::all});
  static_assert(pooling::mean::capture == CaptureSpec{CaptureLayers::last, CaptureTokens::mean});
  static_assert(pooling::TrainablePolicy<pooling::latent>);
  static_assert(!pooling::TrainablePolicy<pooling::mean>);
  EXPECT_THROW(pooling::capture_of("max"), config_error);
  EXPECT_TRUE(pooling::is_trainable("multi_layer_eos"));
  EXPECT_FALSE(pooling::is_trainable("eos"));
  for (std::int64_t d : {64, 896, 4096}) {
    auto c = pooling::MultiLayerHead<float>::Config::defaults(d, 24);
    EXPECT_NO_THROW(c.validate());
    EXPECT_EQ(c.heads * c.head_dim, d);
    EXPECT_NO_THROW(pooling::LatentHead<float>::Config::defaults(d).validate());
  }
  // The paper's configuration is constructible (shown at a small width to spare memory).
  auto p = pooling::MultiLayerHead<float>::Config::paper(32, 24);
  EXPECT_EQ(p.n_latents, 768);
  EXPECT_EQ(p.heads * p.head_dim, 65536);
  pooling::MultiLayerHead<float> paper(p);
  EXPECT_EQ(paper.parameters()[4]->shape, (Shape{32}));
  EXPECT_EQ(nn::find_param(paper.parameters(), "cross_attend_blocks.0.fn.to_kv.weight")->shape,
            (Shape{131072, 32}));
  auto bad =
      pooling::MultiLayerHead<float>::Config::defaults(16, 4, pooling::MultiLayerInput::all_tokens);
  bad.n_layers = 4;
  EXPECT_THROW(bad.validate(), config_error);
}
