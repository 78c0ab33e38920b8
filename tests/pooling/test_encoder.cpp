// Encoder<Attention, Pooling>: end to end against llama.cpp's goldens (eos = llama.cpp's "last"
// pooling, mean = its "mean"), trainable poolings against backbone + head by hand, the EOS
// check, and the run-time make_encoder.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/encoder.hpp"

using namespace lmembed;
namespace fs = std::filesystem;

namespace {

const fs::path kData = LMEMBED_DATA_DIR;

ordered_json load_golden(const std::string& name) {
  const fs::path p = kData / "golden" / name;
  return json::parse(read_text_file(p), p.string());
}

/// max |a - b| / max |b| over a row.
float rel_err(const RowVector& a, const ordered_json& ref) {
  const auto& arr = json::as_array(ref);
  float diff = 0, scale = 0;
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const float r = static_cast<float>(json::as_double(arr[i]));
    diff = std::max(diff, std::abs(a(static_cast<Eigen::Index>(i)) - r));
    scale = std::max(scale, std::abs(r));
  }
  return diff / scale;
}

template <class Enc>
void check_against_golden(Enc& enc, const ordered_json& g, const std::string& mode, int n) {
  const auto& sents = json::get_array(g, "sentences");
  std::vector<std::string> texts;
  for (int i = 0; i < n; ++i)
    texts.push_back(json::get_string(sents[static_cast<std::size_t>(i)], "text"));
  const Matrix e = enc.encode(texts);
  ASSERT_EQ(e.rows(), n);
  for (int i = 0; i < n; ++i)
    EXPECT_LE(rel_err(e.row(i),
                      json::at(json::at(sents[static_cast<std::size_t>(i)], "embeddings"), mode)),
              1e-4f)
        << mode << " sentence " << i;
}

}  // namespace

TEST(Encoder, EosAndMeanMatchLlamaCpp) {
  // tiny-llama adds BOS and EOS (its GGUF flags), as llama.cpp did for the goldens.
  const ordered_json g = load_golden("tiny-llama.json");
  EncoderOptions o;
  o.normalize = false;
  auto last = Encoder<attention::causal, pooling::eos>::load(
      kData / "golden/models/tiny-llama.gguf", {}, o);
  check_against_golden(last, g, "last_causal", 8);
  auto mean = Encoder<attention::bidirectional, pooling::mean>::load(
      kData / "golden/models/tiny-llama.gguf", {}, o);
  check_against_golden(mean, g, "mean_noncausal", 8);
  // Normalized rows by default.
  auto norm =
      Encoder<attention::causal, pooling::mean>::load(kData / "golden/models/tiny-llama.gguf");
  std::vector<std::string> t{"A man is playing a flute.", "Hello"};
  const Matrix e = norm.encode(t);
  EXPECT_NEAR(e.row(0).norm(), 1.0f, 1e-5f);
  EXPECT_NEAR(e.row(1).norm(), 1.0f, 1e-5f);
}

TEST(Encoder, TrainablePoolingsAreBackbonePlusHead) {
  const fs::path model = kData / "models/stories260K.gguf";
  Backbone bb = Backbone::load(model);
  Tokenizer tok = Tokenizer::load(model);
  const auto& c = bb.config();
  pooling::MultiLayerHead<float> head(
      pooling::MultiLayerHead<float>::Config::defaults(c.d_model, c.n_layers));
  head.init(5);
  const fs::path hf = fs::temp_directory_path() / "lmembed_test_encoder_ml.safetensors";
  head.save(hf);
  using Model = Encoder<attention::bidirectional, pooling::multi_layer>;
  auto enc = Model::load(model, hf);
  std::vector<std::string> texts{"Once upon a time", "there was a little girl named Lily."};
  const Matrix e = enc.encode(texts);
  // By hand: tokens with EOS appended (the pooling reads the last token), all layers' last
  // token, head, normalize.
  TokenBatch b;
  EncodeOptions eo;
  eo.add_eos = true;
  for (const auto& t : texts) b.add(tok.encode(t, eo));
  EXPECT_EQ(b.sequence(0).back(), tok.eos_id());
  const Captured cap = bb.forward<attention::bidirectional>(b, pooling::multi_layer::capture);
  Matrix ref = head.forward(cap);
  nn::l2_normalize_rows(ref);
  EXPECT_LE((e - ref).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_STREQ(enc.pooling_name(), "multi_layer");

  // A head for another pooling, or for another width, is refused.
  EXPECT_THROW((Encoder<attention::causal, pooling::multi_layer_mean>::load(model, hf)),
               config_error);
  EXPECT_THROW((Encoder<attention::causal, pooling::latent>::load(model, hf)), config_error);
  EXPECT_THROW((Encoder<attention::causal, pooling::latent>::load(model)), config_error);
  EXPECT_THROW((Encoder<attention::causal, pooling::eos>::load(model, hf)), config_error);
  pooling::LatentHead<float> wide(pooling::LatentHead<float>::Config::defaults(32));
  EXPECT_THROW((Encoder<attention::causal, pooling::latent>(Backbone::load(model), tok, wide)),
               config_error);
}

// docs/architecture.md "How to add a pooling", followed step by step: a test-only policy that
// pools the FIRST token of each text. 1. a tag with a name, 2. the states it consumes (the
// backbone then captures exactly those), 3. not trainable, 4. its forward.
struct first_token_pooling {
  static constexpr const char* name = "first_token";
  static constexpr CaptureSpec capture{CaptureLayers::last, CaptureTokens::all};
  static constexpr bool trainable = false;
  template <class T>
  static MatrixX<T> forward(const CapturedT<T>& in) {
    MatrixX<T> y(in.n_seq, in.d);
    for (std::int64_t s = 0; s < in.n_seq; ++s) y.row(s) = in.states.row(in.offsets[s]);
    return y;
  }
};
static_assert(pooling::Policy<first_token_pooling>);

TEST(Encoder, ATestOnlyPoolingPolicyFollowingTheWalkThrough) {
  const fs::path model = kData / "models/stories260K.gguf";
  using Model = Encoder<attention::bidirectional, first_token_pooling>;
  Model enc = Model::load(model);
  std::vector<std::string> texts{"Once upon a time", "there was a little girl named Lily.", "a"};
  const Matrix e = enc.encode(texts);
  EXPECT_STREQ(enc.pooling_name(), "first_token");
  // By hand: the backbone's last-layer states of every token, the first row of each text.
  const Tokenizer& tok = enc.tokenizer();
  TokenBatch b;
  for (const auto& t : texts) b.add(tok.encode(t));
  const Captured all = enc.backbone().forward<attention::bidirectional>(
      b, {CaptureLayers::last, CaptureTokens::all});
  for (std::int64_t s = 0; s < 3; ++s) {
    const Eigen::RowVectorXf r = all.states.row(all.offsets[s]).normalized();
    EXPECT_LE((e.row(s) - r).cwiseAbs().maxCoeff(), 1e-6f) << "text " << s;
  }
  // Bidirectional: the first token sees the rest, so texts sharing a first token differ.
  EXPECT_GT((e.row(0) - e.row(2)).cwiseAbs().maxCoeff(), 1e-3f);
}

TEST(Encoder, EosCheckAndRunTimeEncoder) {
  const fs::path model = kData / "models/stories260K.gguf";  // adds BOS, not EOS
  EncoderOptions o;
  o.add_eos = false;
  o.eos_check = EosCheck::error;
  auto enc = make_encoder(model, AttentionKind::causal, "eos", {}, o);
  std::vector<std::string> t{"Lily"};
  EXPECT_THROW(enc->encode(t), input_error);
  enc->options().add_eos.reset();  // default: eos pooling appends EOS
  const Matrix e = enc->encode(t);
  EXPECT_EQ(e.rows(), 1);
  EXPECT_EQ(enc->dim(), 64);
  EXPECT_STREQ(enc->attention_name(), "causal");

  // Pre-tokenized input pools exactly the given ids: mean with pool_from skips the prefix.
  auto m = make_encoder(model, AttentionKind::bidirectional, "mean");
  m->options().normalize = false;
  TokenBatch b;
  std::vector<std::int32_t> ids{1, 410, 447, 284, 303};
  detail::add_sequence(b, ids, 2);
  ASSERT_EQ(b.pool_start(0), 2);
  const Matrix pooled = m->encode(b);
  Backbone bb = Backbone::load(model);
  TokenBatch all;
  all.add(ids);
  const Captured cap =
      bb.forward<attention::bidirectional>(all, {CaptureLayers::last, CaptureTokens::all});
  const RowVector ref = cap.states.middleRows(2, 3).colwise().mean();
  EXPECT_LE((pooled.row(0) - ref).cwiseAbs().maxCoeff(), 1e-5f);

  EXPECT_THROW(make_encoder(model, AttentionKind::causal, "max"), config_error);
  EXPECT_THROW(make_encoder(model, AttentionKind::causal, "latent"), config_error);  // no head
}
