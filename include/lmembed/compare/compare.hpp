// lmembed/compare/compare.hpp - the seed paper's experiment end to end (`lmembed compare`).
//
// For each design: cache the hidden states its pooling consumes over the training texts
// (designs with the same attention and CaptureSpec share one cache), train the head where
// there is one, evaluate every task; then test the designs against each other (stats.hpp) and
// write the report (report.hpp). Every finished design is saved at once (DIR/designs/*.json,
// its head in DIR/heads/), so an interrupted run resumes with the next unfinished design; the
// caches resume shard by shard (train/cache.hpp). Progress goes to stderr throughout.
//
// The backbone runs once per (attention mode, text) for the training caches and the evaluation
// together (shared_pass.hpp): every design of a mode is served from that one pass, bit for bit
// what a forward call of its own would return. CompareOptions::shared_pass = false runs the
// backbone for every design instead (the old path, kept for checks and timing).
//
// Text -> tokens, the same for training caches and evaluation, so a head sees at evaluation
// exactly the kind of states it was trained on:
//   [BOS] "Instruct: {instruction}\nQuery: " (when there is an instruction) + text + [EOS]
// EOS is appended for every design (the paper's eos pooling needs it; appending it everywhere
// keeps the designs' inputs identical), and pooled tokens start after the instruction.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "lmembed/attention/attention.hpp"
#include "lmembed/backbone/backbone.hpp"
#include "lmembed/compare/design.hpp"
#include "lmembed/compare/report.hpp"
#include "lmembed/compare/results.hpp"
#include "lmembed/compare/results_json.hpp"
#include "lmembed/compare/shared_pass.hpp"
#include "lmembed/compare/stage.hpp"
#include "lmembed/compare/stats.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/eval/runner.hpp"
#include "lmembed/eval/sha256.hpp"
#include "lmembed/eval/tasks.hpp"
#include "lmembed/pooling/latent.hpp"
#include "lmembed/pooling/multi_layer.hpp"
#include "lmembed/pooling/simple.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/data.hpp"
#include "lmembed/train/trainer.hpp"
#include "lmembed/version.hpp"

namespace lmembed::compare {

/// Everything `lmembed compare` is told.
struct CompareOptions {
  std::filesystem::path model;                   ///< .gguf or HF folder
  std::filesystem::path train;                   ///< training JSONL (query/positive/negative)
  std::filesystem::path out;                     ///< output folder (resumed when it exists)
  std::filesystem::path data_dir;                ///< the repository's data/ (bundled tasks)
  std::vector<std::string> tasks;                ///< bundled task names
  std::vector<std::filesystem::path> task_dirs;  ///< user task folders (MTEB layouts)
  std::vector<Design> designs;                   ///< in run order
  std::int64_t steps = 200, batch = 64, warmup = 20;
  double lr = 1e-3;
  std::uint64_t seed = 42;
  std::int64_t max_train = 0;     ///< first N training examples (0: all)
  std::int64_t max_examples = 0;  ///< per bundled task, seeded subsample (0: all)
  /// Bundled retrieval corpus: relevant documents + seeded distractors up to N (0: all).
  std::int64_t max_corpus = 0;
  /// How the backbone holds a GGUF's quantized weights (stored: as the file has them).
  WeightFormat weights = WeightFormat::stored;
  std::int64_t bootstrap = 2000;  ///< paired-bootstrap resamples
  /// Classification experiments (MTEB's 10 by default; each embeds its own training sample).
  std::int64_t n_experiments = 10;
  double alpha = 0.05;
  int threads = 0;                  ///< 0: all the runtime offers
  std::int64_t ml_latents = 0;      ///< multi_layer head latents (0: its default)
  std::int64_t latent_latents = 0;  ///< latent head latents (0: its default)
  bool progress = true;
  bool shared_pass = true;  ///< one backbone pass per (attention, text); false: per design
  /// Reference rows: (label, `lmembed eval --output` JSON of precomputed embeddings on the same
  /// tasks), e.g. {"all-MiniLM-L6-v2 (sentence-transformers)", "anchor.json"}.
  std::vector<std::pair<std::string, std::filesystem::path>> references;
};

/// A reference row from the results JSON of `lmembed eval --embeddings ... --output FILE`:
/// its records for `tasks` (in that order), scored by the same evaluator as the designs.
/// config_error when the file lacks one of the tasks or is not such a file.
inline DesignResult load_reference(const std::string& label, const std::filesystem::path& file,
                                   const std::vector<std::string>& tasks) {
  const ordered_json doc = json::parse(read_text_file(file), file.string());
  const ordered_json* schema = json::find(doc, "schema");
  if (!schema || !schema->is_string() || schema->get_ref<const std::string&>() != "lmembed.eval/1")
    throw config_error(file.string() +
                       ": not an `lmembed eval --output` file (schema "
                       "lmembed.eval/1)");
  DesignResult d;
  d.design = label;
  d.reference = true;
  d.attention = "-";
  d.pooling = "precomputed";
  std::map<std::string, eval::TaskResult> by_task;
  for (const auto& rec : json::get_array(doc, "records", file.string())) {
    eval::TaskResult tr = eval::from_json(rec);
    by_task[tr.task] = std::move(tr);
  }
  for (const auto& t : tasks) {
    auto it = by_task.find(t);
    if (it == by_task.end())
      throw config_error(file.string() + ": reference '" + label + "' has no record of task '" + t +
                         "'");
    const eval::TaskResult& tr = it->second;
    d.tasks.push_back(
        {tr.task, tr.category, tr.main_metric, tr.main_score, tr.metrics, tr.per_example});
  }
  std::string npy, sha;
  if (const ordered_json* des = json::find(doc, "design")) {
    if (const ordered_json* e = json::find(*des, "embeddings"); e && e->is_string())
      npy = e->get_ref<const std::string&>();
    if (const ordered_json* e = json::find(*des, "embeddings_sha256"); e && e->is_string())
      sha = e->get_ref<const std::string&>();
  }
  d.head_file = npy;
  d.head_sha256 = sha;
  d.note = "precomputed embeddings " + (npy.empty() ? file.string() : npy) +
           (sha.empty() ? "" : " (sha256 " + sha.substr(0, 12) + "...)") +
           ", scored by `lmembed eval --embeddings` on the same tasks and settings (" +
           file.filename().string() + ")";
  return d;
}

namespace detail {

inline std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

inline void say(const CompareOptions& o, const std::string& msg) {
  if (o.progress) std::cerr << "[compare] " << msg << std::endl;
}

/// The prompt that carries a task instruction (E5 / the paper's format).
inline std::string instruction_prompt(std::string_view instruction) {
  if (instruction.empty()) return {};
  return "Instruct: " + std::string(instruction) + "\nQuery: ";
}

/// Tokens of (instruction, text) as every design sees them (see the file comment).
inline train::TokenizedText tokenize_text(const Tokenizer& tok, std::string_view instruction,
                                          std::string_view text) {
  train::TokenizedText t;
  const std::string prompt = instruction_prompt(instruction);
  if (!prompt.empty()) {
    t.ids = tok.encode(prompt, {.add_bos = true, .add_eos = false});
    t.pool_from = static_cast<std::int32_t>(t.ids.size());
    auto rest = tok.encode(text, {.add_bos = false, .add_eos = true});
    t.ids.insert(t.ids.end(), rest.begin(), rest.end());
  } else {
    t.ids = tok.encode(text, {.add_bos = true, .add_eos = true});
    t.pool_from = t.ids.empty() || t.ids.front() != tok.bos_id() ? 0 : 1;
  }
  if (t.pool_from >= static_cast<std::int32_t>(t.ids.size()))  // nothing after the prompt
    t.pool_from = static_cast<std::int32_t>(t.ids.size()) - 1;
  return t;
}

/// Appends one tokenized text to a batch, keeping its pool_from even when it is the first
/// non-zero one (TokenBatch::add drops a non-zero pool_from of a batch's first sequence).
inline void add_text(TokenBatch& b, const train::TokenizedText& t) {
  const std::size_t before = b.size();
  b.ids.insert(b.ids.end(), t.ids.begin(), t.ids.end());
  b.offsets.push_back(static_cast<std::int64_t>(b.ids.size()));
  if (t.pool_from != 0 || !b.pool_from.empty()) {
    if (b.pool_from.empty()) b.pool_from.assign(before, 0);
    b.pool_from.push_back(t.pool_from);
  }
}

/// The training examples: a JSONL file, or "bundled:snli" for the SNLI dev triplets of the
/// repository's data/ (premise, entailed hypothesis, contradicting hypothesis).
inline std::vector<train::Example> load_training(const std::filesystem::path& train,
                                                 const std::filesystem::path& data_dir) {
  if (train == "bundled:snli") return train::convert_snli(data_dir / "datasets" / "snli_dev");
  return train::read_examples(train);
}

/// The texts that make up a task's scored examples: both sides of STS and pair examples,
/// retrieval queries and their relevant documents, classification test texts, clustering
/// texts, reranking queries and candidates. Retrieval distractors and classification training
/// texts are left out: seeing those in training does not leak an answer.
inline void scored_texts(const eval::Task& task, std::unordered_set<std::string>& out) {
  std::visit(
      [&](const auto& d) {
        using D = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<D, eval::StsData> ||
                      std::is_same_v<D, eval::PairClassificationData>) {
          out.insert(d.sentence1.begin(), d.sentence1.end());
          out.insert(d.sentence2.begin(), d.sentence2.end());
        } else if constexpr (std::is_same_v<D, eval::RetrievalData>) {
          std::unordered_map<std::string, const std::string*> doc;
          for (std::size_t i = 0; i < d.doc_ids.size(); ++i) doc[d.doc_ids[i]] = &d.docs[i];
          for (std::size_t q = 0; q < d.queries.size(); ++q) {
            out.insert(d.queries[q]);
            if (auto it = d.qrels.find(d.query_ids[q]); it != d.qrels.end())
              for (const auto& [id, grade] : it->second)
                if (grade > 0)
                  if (auto x = doc.find(id); x != doc.end()) out.insert(*x->second);
          }
        } else if constexpr (std::is_same_v<D, eval::ClassificationData>) {
          out.insert(d.test_text.begin(), d.test_text.end());
        } else if constexpr (std::is_same_v<D, eval::ClusteringData>) {
          out.insert(d.text.begin(), d.text.end());
        } else {
          for (const auto& it : d.items) {
            out.insert(it.query);
            out.insert(it.positive.begin(), it.positive.end());
            out.insert(it.negative.begin(), it.negative.end());
          }
        }
      },
      task.data);
}

/// Removes every training example that shares a text with a scored evaluation example (the
/// bundled SNLI triplets and the SNLI tasks come from the same split); returns how many.
inline std::int64_t decontaminate(std::vector<train::Example>& examples,
                                  const std::vector<eval::Task>& tasks) {
  std::unordered_set<std::string> scored;
  for (const auto& t : tasks) scored_texts(t, scored);
  const auto before = examples.size();
  std::erase_if(examples, [&](const train::Example& e) {
    if (scored.count(e.query) || scored.count(e.positive)) return true;
    for (const auto& n : e.negatives)
      if (scored.count(n)) return true;
    return false;
  });
  return static_cast<std::int64_t>(before - examples.size());
}

/// L2-normalizes rows in place (zero rows stay zero).
inline void normalize_rows(Matrix& m) {
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    const float n = m.row(i).norm();
    if (n > 0) m.row(i) /= n;
  }
}

/// The settings a resumed run must share with the run that wrote DIR (else the designs
/// already there would not be comparable with the new ones).
inline ordered_json run_fingerprint(const CompareOptions& o, std::int64_t n_train) {
  ordered_json v = ordered_json::object();
  v["model"] = std::filesystem::absolute(o.model).lexically_normal().string();
  v["train"] = o.train == "bundled:snli"
                   ? o.train.string()
                   : std::filesystem::absolute(o.train).lexically_normal().string();
  v["n_train"] = n_train;
  ordered_json tasks = ordered_json::array();
  for (const auto& t : o.tasks) tasks.push_back(t);
  for (const auto& t : o.task_dirs) tasks.push_back(t.string());
  v["tasks"] = std::move(tasks);
  v["steps"] = o.steps;
  v["batch"] = o.batch;
  v["warmup"] = o.warmup;
  v["lr"] = o.lr;
  v["seed"] = static_cast<std::int64_t>(o.seed);
  v["max_examples"] = o.max_examples;
  v["ml_latents"] = o.ml_latents;
  v["latent_latents"] = o.latent_latents;
  if (o.n_experiments != 10) v["n_experiments"] = o.n_experiments;  // absent: older runs' 10
  if (o.max_corpus > 0) v["max_corpus"] = o.max_corpus;             // absent: the whole corpus
  return v;
}

}  // namespace detail

namespace detail {
/// config_error unless every reference has as many per-example scores per task as `design`
/// (they were evaluated on other subsamples otherwise, and cannot be paired).
inline void check_references(const std::vector<DesignResult>& refs, const DesignResult& design) {
  for (const auto& ref : refs)
    for (const auto& t : ref.tasks)
      if (const TaskScore* s = design.find_task(t.task);
          s && s->per_example.size() != t.per_example.size())
        throw config_error("reference '" + ref.design + "': task " + t.task + " has " +
                           std::to_string(t.per_example.size()) + " per-example scores, the " +
                           "designs " + std::to_string(s->per_example.size()) +
                           " (evaluated with another --max-examples or --seed?)");
}
}  // namespace detail

/// Runs the comparison; returns the results it also wrote to opt.out.
inline Results run_compare(const CompareOptions& o) {
  namespace fs = std::filesystem;
  if (o.designs.empty()) throw config_error("compare: no designs");
  if (o.steps < 1 || o.batch < 2) throw config_error("compare: need --steps >= 1 and --batch >= 2");
  fs::create_directories(o.out);
  const auto t_run = std::chrono::steady_clock::now();
  Results R;
  R.run.lmembed_version = LMEMBED_VERSION_STRING;
  R.run.started_utc = detail::utc_now();
  R.run.model = o.model.string();
  R.run.train_file = o.train.string();
  R.run.steps = o.steps;
  R.run.batch = o.batch;
  R.run.lr = o.lr;
  R.run.seed = o.seed;
  R.run.bootstrap_samples = o.bootstrap;
  R.run.alpha = o.alpha;
  for (const auto& d : o.designs) R.run.designs.emplace_back(d.name);

  // ---- load: model, tokenizer, training data, tasks
  StageTimer load_timer("", "load");
  detail::say(o, "loading " + o.model.string());
  Backbone bb = Backbone::load(o.model, o.weights);
  bb.set_threads(o.threads);
  const Tokenizer tok = Tokenizer::load(o.model);
  const ModelConfig& mc = bb.config();
  R.run.model_arch = mc.arch;
  R.run.d_model = mc.d_model;
  R.run.n_layers = mc.n_layers;
  R.run.n_params = static_cast<std::int64_t>(bb.weight_bytes() / sizeof(float));
  R.run.threads = bb.threads();
  std::vector<eval::Task> tasks;
  for (const auto& name : o.tasks)
    tasks.push_back(eval::load_bundled_task(name, o.data_dir, {o.max_examples, 42, o.max_corpus}));
  for (const auto& dir : o.task_dirs) tasks.push_back(eval::load_task_dir(dir));
  if (tasks.empty()) throw config_error("compare: no tasks (--tasks or --task-dir)");
  {
    std::set<std::string> names;
    for (const auto& t : tasks)
      if (!names.insert(t.name).second)
        throw config_error("compare: task '" + t.name + "' given twice");
  }
  std::vector<DesignResult> refs;
  {
    std::vector<std::string> names;
    for (const auto& t : tasks) names.push_back(t.name);
    for (const auto& [label, file] : o.references)
      refs.push_back(load_reference(label, file, names));
  }
  std::vector<train::Example> examples = detail::load_training(o.train, o.data_dir);
  const auto n_read = static_cast<std::int64_t>(examples.size());
  R.run.n_train_overlap = detail::decontaminate(examples, tasks);
  if (R.run.n_train_overlap > 0)
    detail::say(o, "removed " + std::to_string(R.run.n_train_overlap) + " of " +
                       std::to_string(n_read) +
                       " training examples that share a text with an evaluation example");
  if (o.max_train > 0 && static_cast<std::int64_t>(examples.size()) > o.max_train)
    examples.resize(static_cast<std::size_t>(o.max_train));
  if (examples.size() < 2)
    throw input_error(o.train.string() + ": " + std::to_string(examples.size()) +
                      " training examples left of " + std::to_string(n_read) + " after removing " +
                      std::to_string(R.run.n_train_overlap) +
                      " that share a text with the evaluation tasks (evaluate on a subsample "
                      "with --max-examples, or train on other data)");
  R.run.n_train = static_cast<std::int64_t>(examples.size());
  for (const auto& e : examples)
    R.run.negatives = std::max<std::int64_t>(R.run.negatives, std::int64_t(e.negatives.size()));
  R.run.head_config["multi_layer.n_latents"] = std::to_string(
      o.ml_latents > 0
          ? o.ml_latents
          : pooling::MultiLayerHead<float>::Config::defaults(mc.d_model, mc.n_layers).n_latents);
  R.run.head_config["latent.n_latents"] = std::to_string(
      o.latent_latents > 0 ? o.latent_latents
                           : pooling::LatentHead<float>::Config::defaults(mc.d_model).n_latents);
  R.stages.push_back(load_timer.finish(std::to_string(examples.size()) + " training examples, " +
                                       std::to_string(tasks.size()) + " tasks"));

  // ---- resume check: DIR/run.json must describe the same experiment
  const ordered_json fp = detail::run_fingerprint(o, R.run.n_train);
  const fs::path fp_file = o.out / "run.json";
  if (fs::exists(fp_file)) {
    // Compared as values, as written and read back (2 and 2.0 are the same setting).
    const ordered_json old = json::parse(read_text_file(fp_file), fp_file.string());
    if (old != json::parse(json::dump(fp)))
      throw config_error(o.out.string() +
                         " holds a comparison with other settings (run.json differs): use "
                         "another --out, or delete it to start over");
  } else {
    write_file_atomic(fp_file, json::dump(fp, 1) + "\n");
  }

  const train::CacheDataset train_data = train::CacheDataset::from_examples(examples);
  eval::EvalOptions eopt;
  eopt.progress = o.progress;
  eopt.n_experiments = o.n_experiments;
  if (o.n_experiments != 10)
    R.run.head_config["eval.n_experiments"] = std::to_string(o.n_experiments);

  // Task infos (n_examples filled from the first design's per-example counts).
  for (const auto& t : tasks) R.run.tasks.push_back({t.name, t.category(), t.main_metric(), 0});

  const std::size_t n_designs = o.designs.size();
  // One shared pass per attention mode, declared with what its unfinished designs consume and
  // dropped after the last of them. Per-design encoding times its forward calls the same way.
  std::map<std::string, PassNeeds> needs;
  std::map<std::string, std::size_t> last_use;
  for (std::size_t di = 0; di < n_designs; ++di)
    if (!fs::exists(design_file(o.out, std::string(o.designs[di].name)))) {
      needs[std::string(o.designs[di].attention)].add(o.designs[di].capture);
      last_use[std::string(o.designs[di].attention)] = di;
    }
  std::map<std::string, std::optional<SharedPass>> passes;
  R.run.encoding = o.shared_pass ? "shared" : "per-design";
  double per_design_seconds = 0;
  std::int64_t per_design_sequences = 0;
  auto encode = [&](const Design& design, const TokenBatch& b) -> Captured {
    if (o.shared_pass) {
      auto& p = passes[std::string(design.attention)];
      if (!p)
        p.emplace(bb, parse_attention(design.attention), needs.at(std::string(design.attention)));
      return p->capture(b, design.capture);
    }
    const auto t0 = std::chrono::steady_clock::now();
    Captured c =
        bb.forward(b, parse_attention(design.attention), design.capture, {.truncate = true});
    per_design_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    per_design_sequences += static_cast<std::int64_t>(b.size());
    return c;
  };
  auto backbone_seconds = [&] {
    double t = per_design_seconds;
    for (const auto& [k, p] : passes)
      if (p) t += p->backbone_seconds();
    return t + R.run.backbone_seconds;  // + passes already dropped
  };
  for (std::size_t di = 0; di < n_designs; ++di) {
    const Design& design = o.designs[di];
    const std::string dname(design.name);
    const std::string tag =
        "[" + std::to_string(di + 1) + "/" + std::to_string(n_designs) + " " + dname + "] ";
    if (auto done = load_design(o.out, dname)) {
      detail::say(o, tag + "finished in an earlier run: resumed from " +
                         design_file(o.out, dname).string());
      R.designs.push_back(std::move(*done));
      continue;
    }
    DesignResult D;
    D.design = dname;
    D.attention = std::string(design.attention);
    D.pooling = std::string(design.pooling);
    D.capture = to_string(design.capture);

    // ---- cache + train
    std::optional<pooling::MultiLayerHead<float>> ml;
    std::optional<pooling::LatentHead<float>> lat;
    if (design.trainable()) {
      const std::string key = cache_key(design);
      const fs::path cache_dir = o.out / "cache" / key;
      StageTimer ct(dname, "cache");
      bool reused = false;
      try {
        (void)train::Cache::open(cache_dir);
        reused = true;
      } catch (const config_error&) {
      }
      if (!reused) {
        detail::say(o, tag + "caching " + key + " over " + std::to_string(train_data.texts.size()) +
                           " training texts");
        train::CacheOptions copt;
        copt.capture = design.capture;
        copt.d = mc.d_model;
        copt.model_layers = mc.n_layers;
        copt.model = o.model.string();
        copt.attention = std::string(design.attention);
        copt.progress = o.progress;
        const auto rep = train::build_cache(
            cache_dir, train_data,
            [&](const train::CacheText& t) {
              return detail::tokenize_text(tok, t.instruction, t.text);
            },
            [&](const TokenBatch& b) { return encode(design, b); }, copt);
        D.stages.push_back(ct.finish(std::to_string(rep.texts) + " texts, " +
                                     std::to_string(rep.bytes / 1024) + " KiB"));
      } else {
        detail::say(o, tag + "reusing the cache " + key);
        D.stages.push_back(ct.finish("reused cache " + key));
      }
      const train::Cache cache = train::Cache::open(cache_dir);

      StageTimer tt(dname, "train");
      train::TrainOptions topt;
      topt.steps = o.steps;
      topt.batch = o.batch;
      topt.lr = o.lr;
      topt.warmup = o.warmup;
      topt.seed = o.seed;
      auto run_training = [&](auto& head) {
        head.init(o.seed);
        train::Trainer trainer(head, cache, topt);
        const auto t0 = std::chrono::steady_clock::now();
        const std::int64_t every = std::max<std::int64_t>(1, o.steps / 10);
        while (!trainer.done()) {
          const train::StepStats st = trainer.step();
          D.loss.push_back({st.step, st.loss});
          if (o.progress && (st.step % every == 0 || st.step == o.steps)) {
            const double el =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            char buf[160];
            std::snprintf(buf, sizeof buf, "train step %lld/%lld  loss %.4f  %.1f steps/s",
                          static_cast<long long>(st.step), static_cast<long long>(o.steps), st.loss,
                          static_cast<double>(st.step) / std::max(el, 1e-9));
            detail::say(o, tag + buf);
          }
        }
        fs::create_directories(o.out / "heads");
        const fs::path hf = o.out / "heads" / (dname + ".safetensors");
        head.save(hf);
        D.head_file = fs::relative(hf, o.out).string();
        D.head_sha256 = eval::sha256_file(hf);
      };
      if (design.head == HeadKind::multi_layer) {
        const auto input = pooling::parse_multi_layer_input(design.pooling);
        auto cfg = pooling::MultiLayerHead<float>::Config::defaults(mc.d_model, mc.n_layers, input);
        if (o.ml_latents > 0) cfg.n_latents = o.ml_latents;
        ml.emplace(cfg);
        run_training(*ml);
      } else {
        auto cfg = pooling::LatentHead<float>::Config::defaults(mc.d_model);
        if (o.latent_latents > 0) cfg.n_latents = o.latent_latents;
        lat.emplace(cfg);
        run_training(*lat);
      }
      D.stages.push_back(tt.finish(std::to_string(o.steps) + " steps, final loss " +
                                   detail::fmt(D.loss.empty() ? NAN : D.loss.back().loss, 4)));
    }

    // ---- evaluate
    StageTimer et(dname, "eval");
    const eval::Embedder embed = [&](std::span<const std::string> texts,
                                     std::string_view instruction) -> Matrix {
      TokenBatch b;
      for (const auto& t : texts) detail::add_text(b, detail::tokenize_text(tok, instruction, t));
      const Captured c = encode(design, b);
      Matrix e;
      if (ml)
        e = ml->forward(c);
      else if (lat)
        e = lat->forward(c);
      else if (design.pooling == pooling::eos::name)
        e = pooling::eos_forward(c);
      else
        e = pooling::mean_forward(c);
      detail::normalize_rows(e);
      return e;
    };
    std::string per_task;
    for (const auto& task : tasks) {
      detail::say(o, tag + "evaluating " + task.name);
      const eval::TaskResult tr = eval::evaluate(task, embed, eopt);
      D.tasks.push_back(
          {tr.task, tr.category, tr.main_metric, tr.main_score, tr.metrics, tr.per_example});
      per_task +=
          (per_task.empty() ? "" : ", ") + tr.task + " " + detail::fmt(tr.seconds, 1) + " s";
    }
    D.stages.push_back(et.finish(per_task));
    if (last_use.count(D.attention) && last_use.at(D.attention) == di) {
      if (auto& p = passes[D.attention]) {
        detail::say(
            o, tag + "shared " + D.attention + " pass: " + std::to_string(p->sequences_run()) +
                   " texts through the backbone in " + detail::fmt(p->backbone_seconds(), 1) +
                   " s, " + std::to_string(p->sequences_served()) + " requests served from it, " +
                   std::to_string(p->bytes() >> 20) + " MiB kept");
        R.run.backbone_seconds += p->backbone_seconds();
        R.run.backbone_sequences += p->sequences_run();
        p.reset();
      }
    }
    save_design(o.out, D);
    R.designs.push_back(std::move(D));
    detail::check_references(refs, R.designs.front());
    save_references(o.out, refs);
    // A report after every design: progress a person can open while the run goes on.
    for (auto& ti : R.run.tasks)
      if (const TaskScore* s = R.designs.front().find_task(ti.task))
        ti.n_examples = static_cast<std::int64_t>(s->per_example.size());
    Results partial = R;
    partial.designs.insert(partial.designs.end(), refs.begin(), refs.end());
    partial.run.backbone_seconds = backbone_seconds();
    partial.run.wall_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
    partial.run.finished_utc = "(running: " + std::to_string(di + 1) + " of " +
                               std::to_string(n_designs) + " designs done)";
    partial.tests = compute_tests(partial, {o.bootstrap, o.seed});
    write_report(partial, o.out);
  }
  for (auto& ti : R.run.tasks)
    if (const TaskScore* s = R.designs.front().find_task(ti.task))
      ti.n_examples = static_cast<std::int64_t>(s->per_example.size());
  detail::check_references(refs, R.designs.front());
  R.designs.insert(R.designs.end(), refs.begin(), refs.end());
  R.run.backbone_seconds = backbone_seconds();
  R.run.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
  R.run.backbone_sequences += per_design_sequences;
  for (const auto& [k, p] : passes)
    if (p) R.run.backbone_sequences += p->sequences_run();

  StageTimer st("", "stats");
  detail::say(o, "significance tests (" + std::to_string(o.bootstrap) + " bootstrap resamples)");
  R.tests = compute_tests(R, {o.bootstrap, o.seed});
  R.stages.push_back(st.finish());
  R.run.finished_utc = detail::utc_now();
  StageTimer rt("", "report");
  write_report(R, o.out);
  R.stages.push_back(rt.finish());
  write_report(R, o.out);  // again, so the report stage's own cost is in it
  return R;
}

/// Re-renders DIR's report from DIR/results.json and DIR/designs/*.json (tests recomputed
/// from the per-example scores) - after an edit of the renderer, or with another alpha.
/// References given here are added (or replace a saved one of the same label).
inline Results rerender(
    const std::filesystem::path& dir, std::optional<double> alpha,
    std::optional<std::int64_t> bootstrap,
    const std::vector<std::pair<std::string, std::filesystem::path>>& references = {}) {
  Results r = load_results(dir / "results.json");
  std::erase_if(r.designs, [](const DesignResult& d) { return d.reference; });
  for (auto& d : r.designs)
    if (auto full = load_design(dir, d.design)) d.tasks = std::move(full->tasks);
  std::vector<DesignResult> refs = load_references(dir);
  std::vector<std::string> names;
  for (const auto& t : r.run.tasks) names.push_back(t.task);
  for (const auto& [label, file] : references) {
    std::erase_if(refs, [&](const DesignResult& d) { return d.design == label; });
    refs.push_back(load_reference(label, file, names));
  }
  if (!r.designs.empty()) detail::check_references(refs, r.designs.front());
  save_references(dir, refs);
  r.designs.insert(r.designs.end(), refs.begin(), refs.end());
  if (alpha) r.run.alpha = *alpha;
  if (bootstrap) r.run.bootstrap_samples = *bootstrap;
  r.tests = compute_tests(r, {r.run.bootstrap_samples, r.run.seed});
  write_report(r, dir);
  return r;
}

}  // namespace lmembed::compare
