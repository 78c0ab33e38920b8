// `lmembed eval`: scores an embedding model (or precomputed embeddings) on MTEB-style tasks,
// prints a table of main scores and writes one JSON record per task.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "device.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/core/json_util.hpp"
#include "lmembed/encoder.hpp"
#include "lmembed/eval/eval.hpp"
#include "lmembed/io/npy.hpp"
#include "lmembed/version.hpp"

namespace {

namespace ev = lmembed::eval;
using Value = lmembed::ordered_json;

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::filesystem::path default_data_dir() {
  if (const char* e = std::getenv("LMEMBED_DATA_DIR"); e && *e) return e;
#ifdef LMEMBED_DATA_DIR
  return LMEMBED_DATA_DIR;
#else
  return "data";
#endif
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

struct Options {
  std::optional<std::string> model, attention, pooling, embeddings, texts, dump_texts, tasks;
  std::optional<std::string> data_dir, output;
  std::string head, device = "cpu";
  std::vector<std::string> task_dirs;
  long long max_examples = 0, max_corpus = 0, seed = 42, threads = 0;
  std::optional<long long> n_experiments, samples_per_label, clustering_runs, batch_size;
  lmembed::WeightFormat weights = lmembed::WeightFormat::stored;
  bool no_instructions = false, quiet = false;
};

void add_options(CLI::App& app, Options& o) {
  namespace cli = lmembed::cli;
  app.description(
      "  lmembed eval --model PATH --attention A --pooling P [--head FILE] [options]\n"
      "  lmembed eval --embeddings FILE.npy --texts FILE.jsonl [options]\n"
      "  lmembed eval --dump-texts FILE.jsonl [--tasks ...] [--task-dir DIR ...]\n"
      "Scores embeddings on MTEB-style tasks (see docs/evaluation.md), prints a table of main\n"
      "scores and writes one JSON record per task.");
  app.footer(
      "Bundled tasks: sts-b, banking77, banking77-clustering, snli-pairs, snli-retrieval.\n"
      "--max-corpus keeps the documents relevant to the kept queries plus seeded distractors.\n"
      "--device cuda puts the backbone (with --model) and the retrieval scoring (top-k: the\n"
      "CPU's top-k of the same embeddings, ties included) on the GPU; it needs a build with\n"
      "-DLMEMBED_CUDA=ON.");
  cli::option(app, "--model PATH", o.model, "GGUF file or Hugging Face folder");
  cli::option(app, "--attention A", o.attention, "causal | bidirectional");
  cli::option(app, "--pooling P", o.pooling,
              "eos | mean | latent | multi_layer | ... (trainable ones need --head)");
  cli::option(app, "--head FILE", o.head,
              "trained pooling head (.safetensors); its sha256 is recorded");
  cli::option(app, "--embeddings FILE", o.embeddings,
              "precomputed embeddings [n, d] (.npy), row i for line i of --texts");
  cli::option(app, "--texts FILE", o.texts,
              "JSONL {\"instruction\", \"text\"} as written by --dump-texts");
  cli::option(app, "--dump-texts FILE", o.dump_texts,
              "write every (instruction, text) the tasks need, then exit");
  cli::option(app, "--tasks LIST", o.tasks,
              "comma-separated bundled tasks (default: all, unless --task-dir)");
  cli::repeatable(app, "--task-dir DIR", o.task_dirs,
                  "a task folder in MTEB's layout (repeatable)");
  cli::option(app, "--data-dir DIR", o.data_dir,
              "lmembed's data folder (default: $LMEMBED_DATA_DIR or the source tree's)");
  cli::option(app, "--max-examples N", o.max_examples,
              "seeded subsample of each bundled task (0 = all; recorded)");
  cli::option(app, "--max-corpus N", o.max_corpus,
              "documents of a bundled retrieval corpus (0 = all; recorded)");
  cli::option(app, "--seed S", o.seed, "task seed (default 42, MTEB's)");
  cli::option(app, "--n-experiments N", o.n_experiments, "classification experiments (default 10)");
  cli::option(app, "--samples-per-label K", o.samples_per_label,
              "classification training examples per label (default 8)");
  cli::option(app, "--clustering-runs N", o.clustering_runs, "clustering runs (default 10)");
  cli::option(app, "--batch-size N", o.batch_size, "texts per embedding call (default 256)");
  cli::option(app, "--threads N", o.threads, "backbone threads (default: all)");
  cli::weights_option(app, o.weights, "with --model: stored (default) or f32, as `lmembed embed`");
  cli::option(app, "--device D", o.device,
              "cpu (default) or cuda: the backbone and the top-k on the GPU");
  cli::flag(app, "--no-instructions", o.no_instructions, "embed texts without task instructions");
  cli::option(app, "--output FILE", o.output, "results JSON (default: none, table only)");
  cli::flag(app, "--quiet", o.quiet, "no progress on stderr");
}

int run_eval(const Options& a) {
  using lmembed::cli::usage_error;
  const bool dump = a.dump_texts.has_value(), pre = a.embeddings.has_value(),
             model = a.model.has_value();
  if (static_cast<int>(dump) + static_cast<int>(pre) + static_cast<int>(model) != 1)
    throw usage_error("give exactly one of --model, --embeddings and --dump-texts");
  if (pre && !a.texts) throw usage_error("--embeddings needs --texts FILE.jsonl");
  if (model && (!a.attention || !a.pooling))
    throw usage_error("--model needs --attention and --pooling");

  using lmembed::cli::parse_option;
  const auto device = parse_option(
      "--device", a.device, [](const std::string& s) { return lmembed::cli::parse_device(s); });
  if (model) {  // bad names are usage errors, before any task or model is read
    (void)parse_option("--attention", *a.attention,
                       [](const std::string& s) { return lmembed::parse_attention(s); });
    (void)parse_option("--pooling", *a.pooling,
                       [](const std::string& s) { return lmembed::pooling::capture_of(s); });
  }
  if (!dump) lmembed::cli::require_device(device);  // before any model or task work

  ev::EvalOptions opt;
  if (device == lmembed::cli::Device::cuda) opt.search_topk = lmembed::cli::device_hooks().topk;
  opt.seed = static_cast<std::uint64_t>(a.seed);
  opt.n_experiments = a.n_experiments.value_or(opt.n_experiments);
  opt.samples_per_label = a.samples_per_label.value_or(opt.samples_per_label);
  opt.clustering_runs = a.clustering_runs.value_or(opt.clustering_runs);
  opt.batch_size = a.batch_size.value_or(opt.batch_size);
  opt.progress = !a.quiet;
  if (opt.n_experiments < 1 || opt.samples_per_label < 1 || opt.clustering_runs < 1 ||
      opt.batch_size < 1)
    throw usage_error(
        "--n-experiments, --samples-per-label, --clustering-runs and --batch-size must be >= 1");
  ev::BundledOptions bopt;
  bopt.max_examples = a.max_examples;
  bopt.seed = opt.seed;
  bopt.max_corpus = a.max_corpus;
  if (bopt.max_examples < 0) throw usage_error("--max-examples must be >= 0");
  if (bopt.max_corpus < 0) throw usage_error("--max-corpus must be >= 0");

  // Tasks: bundled by name, then folders.
  std::vector<std::string> names;
  if (a.tasks)
    names = split_commas(*a.tasks);
  else if (a.task_dirs.empty())
    names = ev::bundled_task_names();
  const auto data_dir = std::filesystem::path(a.data_dir.value_or(default_data_dir().string()));
  std::vector<ev::Task> tasks;
  for (const auto& n : names) tasks.push_back(ev::load_bundled_task(n, data_dir, bopt));
  for (const auto& d : a.task_dirs) tasks.push_back(ev::load_task_dir(d));
  if (tasks.empty()) throw usage_error("no tasks to run");
  const bool no_ins = a.no_instructions;
  if (no_ins)
    for (auto& t : tasks) t.instruction.clear();

  if (dump) {
    std::string out;
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& t : tasks)
      for (auto& kv : ev::requested_texts(t))
        if (seen.insert(kv).second) {
          Value v = Value::object();
          v["instruction"] = kv.first;
          v["text"] = kv.second;
          out += lmembed::json::dump(v) + "\n";
        }
    lmembed::write_file_atomic(*a.dump_texts, out);
    std::cerr << "wrote " << seen.size() << " texts to " << *a.dump_texts << "\n";
    return 0;
  }

  // The embedder and the record of what produced the embeddings.
  ev::Embedder embed;
  Value design = Value::object();
  std::string model_name;
  lmembed::AnyEncoder encoder;
  if (model) {
    lmembed::EncoderOptions eo;
    eo.threads = static_cast<int>(a.threads);
    eo.weights = a.weights;
    const std::string& head = a.head;
    const auto attention = lmembed::parse_attention(*a.attention);
    encoder =
        device == lmembed::cli::Device::cuda
            ? lmembed::cli::device_hooks().make_encoder(*a.model, attention, *a.pooling, head, eo)
            : lmembed::make_encoder(*a.model, attention, *a.pooling, head, eo);
    model_name = *a.model;
    design["attention"] = encoder->attention_name();
    design["pooling"] = encoder->pooling_name();
    design["head"] = head.empty() ? Value() : Value(head);
    design["head_sha256"] = head.empty() ? Value() : Value(ev::sha256_file(head));
    design["instruction_format"] = "Instruct: {instruction}\\nQuery: {text}";
    lmembed::EncoderBase* enc = encoder.get();
    embed = [enc](std::span<const std::string> texts, std::string_view instruction) {
      return enc->encode(texts, ev::format_instruction(instruction));
    };
  } else {
    const std::string texts_file = *a.texts;
    std::vector<std::pair<std::string, std::string>> keys;
    const auto recs = ev::detail::read_jsonl(texts_file);
    for (std::size_t i = 0; i < recs.size(); ++i)
      keys.emplace_back(ev::detail::str_field(recs[i], "instruction", texts_file, i),
                        ev::detail::str_field(recs[i], "text", texts_file, i));
    const std::string npy = *a.embeddings;
    const lmembed::io::NpyArray arr = lmembed::io::read_npy(npy);
    using lmembed::io::DType;
    if (arr.shape.size() != 2)
      throw lmembed::shape_error(npy + ": embeddings must be a 2-D array [n_texts, d], got " +
                                 std::to_string(arr.shape.size()) + " dimensions");
    if (arr.dtype != DType::f32 && arr.dtype != DType::f16 && arr.dtype != DType::bf16 &&
        arr.dtype != DType::f64)
      throw lmembed::format_error(npy + ": embeddings must be floating point, got " +
                                  lmembed::io::to_string(arr.dtype) + " (token ids?)");
    lmembed::Matrix E = arr.to_matrix();
    // One NaN would poison every score that touches it, silently: refuse it here.
    for (Eigen::Index r = 0; r < E.rows(); ++r)
      for (Eigen::Index c = 0; c < E.cols(); ++c)
        if (!std::isfinite(E(r, c)))
          throw lmembed::input_error(
              npy + ": row " + std::to_string(r) + ", column " + std::to_string(c) + " is " +
              (std::isnan(E(r, c)) ? "NaN" : "infinite") + " (embeddings must be finite)");
    embed = ev::LookupEmbedder(std::move(keys), std::move(E));
    model_name = npy;
    design["embeddings"] = npy;
    design["embeddings_sha256"] = ev::sha256_file(npy);
    design["texts"] = texts_file;
  }

  std::vector<ev::TaskResult> results;
  for (const auto& t : tasks) results.push_back(ev::evaluate(t, embed, opt));

  // Table of main scores.
  std::cout << std::left << std::setw(24) << "task" << std::setw(21) << "category" << std::setw(12)
            << "metric" << std::right << std::setw(9) << "value" << std::setw(10) << "seconds"
            << "\n";
  for (const auto& r : results)
    std::cout << std::left << std::setw(24) << r.task << std::setw(21) << r.category
              << std::setw(12) << r.main_metric << std::right << std::fixed << std::setprecision(4)
              << std::setw(9) << r.main_score << std::setprecision(1) << std::setw(10) << r.seconds
              << "\n";

  if (const auto& out = a.output) {
    Value doc = Value::object();
    doc["schema"] = "lmembed.eval/1";
    doc["lmembed_version"] = LMEMBED_VERSION_STRING;
    doc["created_utc"] = utc_now();
    doc["model"] = model_name;
    doc["design"] = design;
    Value settings = Value::object();
    settings["seed"] = static_cast<long long>(opt.seed);
    settings["n_experiments"] = static_cast<long long>(opt.n_experiments);
    settings["samples_per_label"] = static_cast<long long>(opt.samples_per_label);
    settings["clustering_runs"] = static_cast<long long>(opt.clustering_runs);
    settings["cluster_size"] = static_cast<long long>(opt.cluster_size);
    settings["max_examples"] = static_cast<long long>(bopt.max_examples);
    if (bopt.max_corpus > 0) settings["max_corpus"] = static_cast<long long>(bopt.max_corpus);
    settings["instructions"] = !no_ins;
    settings["device"] = lmembed::cli::to_string(device);
    doc["settings"] = std::move(settings);
    Value recs = Value::array();
    for (const auto& r : results) {
      Value v = ev::to_json(r);
      v["model"] = model_name;
      v["design"] = design;
      recs.push_back(std::move(v));
    }
    doc["records"] = std::move(recs);
    lmembed::write_file_atomic(*out, lmembed::json::dump(doc, 1) + "\n");
    if (opt.progress) std::cerr << "wrote " << *out << "\n";
  }
  return 0;
}

const lmembed::cli::Register<Options> reg{"eval", "Evaluate embeddings on MTEB-style tasks",
                                          &add_options, &run_eval};

}  // namespace
