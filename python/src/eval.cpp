// python/src/eval.cpp - lmembed.evaluate() and the task data: the library's MTEB-style runner
// over an Encoder, precomputed embeddings or a Python callable.
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "lmembed/eval/eval.hpp"

namespace lmembed::python {

namespace {

using namespace nb::literals;
using InArray = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Keys = std::vector<std::pair<std::string, std::string>>;

/// A bundled task by name, or a task folder in MTEB's layout by path.
eval::Task load_task(const std::string& name, const std::optional<std::filesystem::path>& data_dir,
                     std::int64_t max_examples, std::uint64_t seed) {
  if (std::filesystem::is_directory(name)) return eval::load_task_dir(name);
  eval::BundledOptions b;
  if (max_examples < 0) throw config_error("max_examples must be >= 0");
  b.max_examples = max_examples;
  b.seed = seed;
  return eval::load_bundled_task(name, data_dir.value_or(default_data_dir()), b);
}

Matrix to_matrix(const InArray& a) {
  Matrix m(static_cast<Eigen::Index>(a.shape(0)), static_cast<Eigen::Index>(a.shape(1)));
  std::copy(a.data(), a.data() + a.size(), m.data());
  return m;
}

std::vector<std::string> evaluate(nb::object model, const std::vector<std::string>& tasks,
                                  const std::optional<std::filesystem::path>& data_dir,
                                  std::int64_t max_examples, std::uint64_t seed,
                                  std::int64_t n_experiments, std::int64_t samples_per_label,
                                  std::int64_t clustering_runs, std::int64_t batch_size,
                                  bool instructions, bool progress) {
  eval::EvalOptions opt;
  opt.seed = seed;
  opt.n_experiments = n_experiments;
  opt.samples_per_label = samples_per_label;
  opt.clustering_runs = clustering_runs;
  opt.batch_size = batch_size;
  opt.progress = progress;
  if (n_experiments < 1 || samples_per_label < 1 || clustering_runs < 1 || batch_size < 1)
    throw config_error(
        "n_experiments, samples_per_label, clustering_runs and batch_size must be >= 1");

  eval::Embedder embed;
  if (nb::isinstance<PyEncoder>(model)) {
    PyEncoder* enc = nb::cast<PyEncoder*>(model);
    // As `lmembed eval --model`: the E5 prefix of the task instruction on the query side.
    embed = [enc](std::span<const std::string> texts, std::string_view instruction) {
      std::lock_guard<std::mutex> lock(enc->mu);
      return enc->enc->encode(texts, eval::format_instruction(instruction));
    };
  } else if (nb::isinstance<nb::tuple>(model) && nb::len(model) == 2) {
    // (keys, embeddings): as `lmembed eval --embeddings E.npy --texts T.jsonl`.
    auto keys = nb::cast<Keys>(model[0]);
    auto arr = nb::cast<InArray>(model[1]);
    embed = eval::LookupEmbedder(std::move(keys), to_matrix(arr));
  } else if (PyCallable_Check(model.ptr())) {
    // A Python callable (texts: list[str], instruction: str) -> array [n, d]; called with
    // the GIL held, everything else runs without it.
    embed = [model](std::span<const std::string> texts, std::string_view instruction) {
      nb::gil_scoped_acquire gil;
      nb::object r =
          model(std::vector<std::string>(texts.begin(), texts.end()), std::string(instruction));
      nb::object np = nb::module_::import_("numpy");
      r = np.attr("ascontiguousarray")(r, "dtype"_a = "float32");
      const int ndim = nb::cast<int>(r.attr("ndim"));
      if (ndim != 2)
        throw shape_error("the embedding callable returned an array of " + std::to_string(ndim) +
                          " dimensions, not 2");
      return to_matrix(nb::cast<InArray>(r));
    };
  } else {
    throw config_error(
        "evaluate(model, ...): model must be an lmembed.Encoder, a (keys, embeddings) tuple or "
        "a callable(texts, instruction) -> array");
  }

  std::vector<eval::Task> loaded;
  for (const auto& t : tasks) loaded.push_back(load_task(t, data_dir, max_examples, seed));
  if (!instructions)
    for (auto& t : loaded) t.instruction.clear();
  std::vector<std::string> out;
  nb::gil_scoped_release release;
  for (const auto& t : loaded)
    out.push_back(json::dump(eval::to_json(eval::evaluate(t, embed, opt))));
  return out;
}

template <class V>
nb::list to_list(const V& v) {
  nb::list l;
  for (const auto& x : v) l.append(x);
  return l;
}

nb::dict task_data(const std::string& name, const std::optional<std::filesystem::path>& data_dir,
                   std::int64_t max_examples, std::uint64_t seed) {
  const eval::Task t = load_task(name, data_dir, max_examples, seed);
  nb::dict d;
  d["name"] = t.name;
  d["category"] = t.category();
  d["main_metric"] = t.main_metric();
  d["description"] = t.description;
  d["instruction"] = t.instruction;
  nb::dict notes;
  for (const auto& [k, v] : t.notes) notes[k.c_str()] = v;
  d["notes"] = notes;
  nb::dict data;
  std::visit(
      [&](const auto& x) {
        using D = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<D, eval::StsData>) {
          data["sentence1"] = to_list(x.sentence1);
          data["sentence2"] = to_list(x.sentence2);
          data["score"] = to_list(x.score);
        } else if constexpr (std::is_same_v<D, eval::PairClassificationData>) {
          data["sentence1"] = to_list(x.sentence1);
          data["sentence2"] = to_list(x.sentence2);
          data["label"] = to_list(x.label);
        } else if constexpr (std::is_same_v<D, eval::RetrievalData>) {
          data["query_ids"] = to_list(x.query_ids);
          data["queries"] = to_list(x.queries);
          data["doc_ids"] = to_list(x.doc_ids);
          data["docs"] = to_list(x.docs);
          nb::dict q;
          for (const auto& [qid, rel] : x.qrels) {
            nb::dict r;
            for (const auto& [did, g] : rel) r[did.c_str()] = g;
            q[qid.c_str()] = r;
          }
          data["qrels"] = q;
        } else if constexpr (std::is_same_v<D, eval::ClassificationData>) {
          data["train_text"] = to_list(x.train_text);
          data["train_label"] = to_list(x.train_label);
          data["test_text"] = to_list(x.test_text);
          data["test_label"] = to_list(x.test_label);
          data["label_names"] = to_list(x.label_names);
        } else if constexpr (std::is_same_v<D, eval::ClusteringData>) {
          data["text"] = to_list(x.text);
          data["label"] = to_list(x.label);
          data["label_names"] = to_list(x.label_names);
        } else {
          nb::list items;
          for (const auto& it : x.items) {
            nb::dict i;
            i["query"] = it.query;
            i["positive"] = to_list(it.positive);
            i["negative"] = to_list(it.negative);
            items.append(i);
          }
          data["items"] = items;
        }
      },
      t.data);
  d["data"] = data;
  return d;
}

Keys task_texts(const std::string& name, const std::optional<std::filesystem::path>& data_dir,
                std::int64_t max_examples, std::uint64_t seed, bool instructions) {
  eval::Task t = load_task(name, data_dir, max_examples, seed);
  if (!instructions) t.instruction.clear();
  return eval::requested_texts(t);
}

}  // namespace

void bind_eval(nb::module_& m) {
  using nb::arg;
  m.def("_evaluate", &evaluate, arg("model"), arg("tasks"), nb::kw_only(),
        arg("data_dir") = nb::none(), arg("max_examples") = 0, arg("seed") = 42,
        arg("n_experiments") = 10, arg("samples_per_label") = 8, arg("clustering_runs") = 10,
        arg("batch_size") = 256, arg("instructions") = true, arg("progress") = false,
        "lmembed.evaluate's engine: one results record (JSON text) per task.");
  m.def("bundled_task_names", &eval::bundled_task_names,
        "Names of the bundled tasks, in their default evaluation order.");
  m.def("task_data", &task_data, arg("task"), nb::kw_only(), arg("data_dir") = nb::none(),
        arg("max_examples") = 0, arg("seed") = 42,
        "The data of a task exactly as lmembed.evaluate scores it: a bundled name or a task\n"
        "folder in MTEB's layout -> dict(name, category, main_metric, description,\n"
        "instruction, notes, data) with the category's fields in data.");
  m.def("task_texts", &task_texts, arg("task"), nb::kw_only(), arg("data_dir") = nb::none(),
        arg("max_examples") = 0, arg("seed") = 42, arg("instructions") = true,
        "Every (instruction, text) lmembed.evaluate may embed for a task (sorted, distinct), as\n"
        "`lmembed eval --dump-texts` writes them: embed these to evaluate precomputed\n"
        "embeddings with evaluate((keys, embeddings), ...).");
}

}  // namespace lmembed::python
