// python/src/train.cpp - lmembed.cache() and lmembed.train(): the library's cache builder and
// trainer in this process (what `lmembed cache` / `lmembed train` run, without the CLI).
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "lmembed/pooling/any_head.hpp"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/trainer.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lmembed::python {

namespace {

std::map<std::string, double> build(const std::filesystem::path& model,
                                    const std::filesystem::path& data,
                                    const std::filesystem::path& out, const std::string& capture,
                                    const std::string& attention, const std::string& dtype_name,
                                    bool eos, int threads, std::int64_t shard_kb,
                                    std::int64_t batch_tokens, bool truncate, bool skip_bad,
                                    bool progress, const std::string& weights) {
  nb::gil_scoped_release release;
  const CaptureSpec spec = train::parse_capture(capture);
  const auto att = parse_attention(attention);
  const auto dtype = io::parse_dtype(dtype_name);
  if (dtype != io::DType::f32 && dtype != io::DType::f16)
    throw config_error("dtype must be 'f32' or 'f16', got '" + dtype_name + "'");
  if (shard_kb <= 0 || batch_tokens <= 0)
    throw config_error("shard_kb and batch_tokens must be positive");
  train::ReadStats st;
  const auto examples = train::read_examples(data, {skip_bad}, &st);
  const auto dataset = train::CacheDataset::from_examples(examples);
  const auto tokenizer = Tokenizer::load(model);
  auto backbone = Backbone::load(model, parse_weight_format(weights));
  backbone.set_threads(threads);
  // Tokenized as the CLI (and so as an Encoder with the same add_eos) does.
  EncoderOptions eo;
  eo.add_eos = eos ? true : tokenizer.add_eos();
  train::TokenizeFn tokenize = [&](const train::CacheText& t) {
    const std::string text[1] = {t.text};
    const TokenBatch b = detail::tokenize_texts(tokenizer, text, t.instruction, eo, spec);
    const auto seq = b.sequence(0);
    return train::TokenizedText{{seq.begin(), seq.end()}, b.pool_start(0)};
  };
  ForwardOptions fo;
  fo.truncate = truncate;
  train::CaptureFn cap = [&](const TokenBatch& b) { return backbone.forward(b, att, spec, fo); };
  train::CacheOptions o;
  o.capture = spec;
  o.dtype = dtype;
  o.d = backbone.config().d_model;
  o.model_layers = backbone.config().n_layers;
  o.model = model.string();
  o.attention = to_string(att);
  o.tokenization = std::string("add_eos=") + (*eo.add_eos ? "1" : "0");
  o.shard_bytes = shard_kb * 1024;
  o.batch_tokens = batch_tokens;
  o.progress = progress;
  const auto rep = train::build_cache(out, dataset, tokenize, cap, o);
  return {{"texts", double(rep.texts)},
          {"examples", double(rep.examples)},
          {"tokens", double(rep.tokens)},
          {"shards", double(rep.shards)},
          {"shards_kept", double(rep.shards_kept)},
          {"shards_built", double(rep.shards_built)},
          {"shards_corrupt", double(rep.shards_corrupt)},
          {"bytes", double(rep.bytes)},
          {"bytes_per_text", rep.bytes_per_text},
          {"full_dump_bytes_per_text", rep.full_dump_bytes_per_text},
          {"skipped_lines", double(st.skipped)}};
}

using Steps = std::vector<std::map<std::string, double>>;

template <class Head>
Steps run_steps(Head& head, const train::Cache& cache, const train::TrainOptions& opt,
                const std::filesystem::path& out, const std::optional<std::filesystem::path>& ckpt,
                std::int64_t every, bool resume, bool progress) {
  Steps steps;
  if (opt.steps > 0) {
    train::Trainer<Head> trainer(head, cache, opt);
    if (resume && ckpt) trainer.load_checkpoint(*ckpt);
    while (!trainer.done()) {
      const train::StepStats s = trainer.step();
      steps.push_back({{"step", double(s.step)},
                       {"loss", s.loss},
                       {"lr", s.lr},
                       {"grad_norm", s.grad_norm},
                       {"texts", double(s.texts)}});
      if (progress)
        std::cerr << "lmembed.train: step " << s.step << "/" << opt.steps << " loss " << s.loss
                  << "\n";
      if (ckpt && (s.step % every == 0 || trainer.done())) trainer.save_checkpoint(*ckpt);
    }
  }
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  head.save(out);
  return steps;
}

Steps fit(const std::filesystem::path& cache_dir, const std::string& pooling,
          const std::filesystem::path& out, std::int64_t steps, std::int64_t batch, double lr,
          std::int64_t warmup, std::uint64_t seed, std::uint64_t init_seed, double weight_decay,
          double clip, double scale, bool symmetric, bool hard_negatives,
          std::int64_t max_negatives, std::int64_t chunk, std::optional<std::int64_t> latents,
          std::optional<std::int64_t> heads, std::optional<std::int64_t> head_dim,
          std::optional<std::int64_t> ff_mult, int threads,
          const std::optional<std::filesystem::path>& checkpoint_dir,
          std::optional<std::int64_t> checkpoint_every, bool resume, bool progress) {
  nb::gil_scoped_release release;
  const auto cache = train::Cache::open(cache_dir);
  train::TrainOptions opt;
  opt.steps = steps;
  opt.batch = batch;
  opt.lr = lr;
  opt.warmup = warmup;
  opt.seed = seed;
  opt.clip = clip;
  opt.max_negatives = max_negatives;
  opt.chunk = chunk;
  opt.loss.scale = scale;
  opt.loss.symmetric = symmetric;
  opt.loss.hard_negatives = hard_negatives;
  opt.adamw.weight_decay = weight_decay;
  if (opt.steps < 0 || opt.batch < 1 || opt.lr <= 0 || opt.warmup < 0 || opt.chunk < 0)
    throw config_error("batch and lr must be positive; steps, warmup and chunk >= 0");
  if (resume && !checkpoint_dir) throw config_error("resume=True needs checkpoint_dir");
  if (threads > 0) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Eigen::setNbThreads(threads);
  }
  const std::int64_t every = checkpoint_every.value_or(std::max<std::int64_t>(1, opt.steps / 10));
  if (every < 1) throw config_error("checkpoint_every must be >= 1");
  // The same seeding and default sizes as `lmembed train` (train_command.hpp).
  const std::uint64_t iseed = init_seed ^ opt.seed;
  const std::int64_t d = cache.d();
  auto sizes = [&](auto& c) {
    if (heads) c.heads = *heads;
    c.head_dim = head_dim ? *head_dim : (d + c.heads - 1) / c.heads;
    if (latents) c.n_latents = *latents;
  };
  if (pooling == pooling::latent::name) {
    auto c = pooling::LatentHead<float>::Config::defaults(d);
    sizes(c);
    if (ff_mult) c.mlp_mult = *ff_mult;
    pooling::LatentHead<float> head(c);
    head.init(iseed);
    return run_steps(head, cache, opt, out, checkpoint_dir, every, resume, progress);
  }
  const auto input = pooling::parse_multi_layer_input(pooling);
  auto c = pooling::MultiLayerHead<float>::Config::defaults(d, cache.n_layers(), input);
  sizes(c);
  if (ff_mult) c.ff_mult = *ff_mult;
  pooling::MultiLayerHead<float> head(c);
  head.init(iseed);
  return run_steps(head, cache, opt, out, checkpoint_dir, every, resume, progress);
}

}  // namespace

void bind_train(nb::module_& m) {
  using nb::arg;
  m.def("cache", &build, arg("model"), arg("data"), arg("out"), arg("capture"), nb::kw_only(),
        arg("attention") = "causal", arg("dtype") = "f32", arg("eos") = false, arg("threads") = 0,
        arg("shard_kb") = 65536, arg("batch_tokens") = 2048, arg("truncate") = false,
        arg("skip_bad") = false, arg("progress") = false, arg("weights") = "stored",
        "Runs the backbone once over every distinct text of data (training JSONL, as written by\n"
        "`lmembed data`) and stores what the pooling consumes in out (sharded, resumable: a\n"
        "rerun keeps the finished shards). capture: a pooling name or layers.tokens (e.g.\n"
        "'multi_layer', 'all_layers.last_token'). eos: append EOS (default: the model's flag;\n"
        "embed the trained head with the same add_eos). weights: 'stored' (a GGUF's Q8_0/Q4_0/\n"
        "Q4_1 weights stay quantized) or 'f32', as `lmembed cache --weights`. Returns the\n"
        "report as a dict.");
  m.def("train", &fit, arg("cache"), arg("pooling"), arg("out"), nb::kw_only(), arg("steps") = 100,
        arg("batch") = 32, arg("lr") = 1e-4, arg("warmup") = 0, arg("seed") = 42,
        arg("init_seed") = 0, arg("weight_decay") = 0.0, arg("clip") = 1.0, arg("scale") = 20.0,
        arg("symmetric") = false, arg("hard_negatives") = true, arg("max_negatives") = 1,
        arg("chunk") = 256, arg("latents") = nb::none(), arg("heads") = nb::none(),
        arg("head_dim") = nb::none(), arg("ff_mult") = nb::none(), arg("threads") = 0,
        arg("checkpoint_dir") = nb::none(), arg("checkpoint_every") = nb::none(),
        arg("resume") = false, arg("progress") = false,
        "Trains a latent or multi_layer* head on a cache with InfoNCE (in-batch and hard\n"
        "negatives, GradCache chunks), AdamW and linear warmup/decay, as `lmembed train` does\n"
        "in one process (same defaults and seeding: same seed and threads, same head). Writes\n"
        "the head to out (steps=0: the initialized, untrained head) and returns one dict per\n"
        "step: step, loss, lr, grad_norm, texts. checkpoint_dir: save every checkpoint_every\n"
        "steps (default steps/10); resume=True continues from it.");
}

}  // namespace lmembed::python
