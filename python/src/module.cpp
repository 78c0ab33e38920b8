// python/src/module.cpp - the lmembed Python module (_lmembed): exceptions, Encoder, tokenize.
//
// Embeddings come back as float32 C-contiguous numpy arrays that own the library's buffer (the
// row-major lmembed::Matrix is moved to the heap and handed to numpy with a capsule: no copy).
// The GIL is released while the backbone runs, so Python threads go on meanwhile.
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "lmembed/cpu/dispatch.hpp"
#include "lmembed/eval/runner.hpp"
#include "lmembed/version.hpp"

namespace lmembed::python {

namespace {

using Array = nb::ndarray<nb::numpy, float, nb::ndim<2>, nb::c_contig>;

// The Python exception classes (lmembed/_errors.py, handed over by _set_error_types at import;
// defined in Python so that editors and type checkers see them).
PyObject* g_error = nullptr;
PyObject* g_format = nullptr;
PyObject* g_shape = nullptr;
PyObject* g_config = nullptr;
PyObject* g_io = nullptr;
PyObject* g_input = nullptr;

void raise(PyObject* cls, const char* msg) {
  // An instance (not PyErr_SetString) so that subclasses of OSError keep the message as-is.
  nb::object inst = nb::steal(PyObject_CallFunction(cls, "s", msg));
  if (!inst.is_valid()) return;  // the constructor raised: that error stands
  PyErr_SetObject(cls, inst.ptr());
}

void translate(const std::exception_ptr& p, void*) {
  if (!g_error) std::rethrow_exception(p);  // not set up: nanobind's RuntimeError
  try {
    std::rethrow_exception(p);
  } catch (const format_error& e) {
    nb::object inst = nb::steal(PyObject_CallFunction(g_format, "s", e.what()));
    if (!inst.is_valid()) return;
    // The file and byte offset at fault, as attributes (None where the library had none).
    inst.attr("file") = e.file().empty() ? nb::none() : nb::cast(e.file());
    inst.attr("offset") = e.offset() == format_error::npos ? nb::none() : nb::cast(e.offset());
    PyErr_SetObject(g_format, inst.ptr());
  } catch (const shape_error& e) {
    raise(g_shape, e.what());
  } catch (const config_error& e) {
    raise(g_config, e.what());
  } catch (const io_error& e) {
    raise(g_io, e.what());
  } catch (const input_error& e) {
    raise(g_input, e.what());
  } catch (const error& e) {
    raise(g_error, e.what());
  }
}

/// Hands a Matrix to numpy without copying it.
Array to_numpy(Matrix&& m) {
  const auto rows = static_cast<std::size_t>(m.rows()), cols = static_cast<std::size_t>(m.cols());
  if (m.size() == 0) m.resize(1, std::max<Eigen::Index>(1, m.cols()));  // a valid data pointer
  auto* owned = new Matrix(std::move(m));
  nb::capsule owner(owned, [](void* q) noexcept { delete static_cast<Matrix*>(q); });
  return Array(owned->data(), {rows, cols}, owner);
}

EosCheck parse_eos_check(const std::string& s) {
  if (s == "off") return EosCheck::off;
  if (s == "warn") return EosCheck::warn;
  if (s == "error") return EosCheck::error;
  throw config_error("eos_check must be 'off', 'warn' or 'error', got '" + s + "'");
}

void init_encoder(PyEncoder* self, const std::filesystem::path& model, const std::string& attention,
                  const std::string& pooling, const std::optional<std::filesystem::path>& head,
                  int threads, bool normalize, std::optional<bool> add_bos,
                  std::optional<bool> add_eos, const std::string& eos_check, bool truncate,
                  std::int64_t batch_tokens, std::int32_t pool_from, const std::string& weights) {
  EncoderOptions o;
  o.weights = parse_weight_format(weights);
  o.threads = threads;
  o.normalize = normalize;
  o.add_bos = add_bos;
  o.add_eos = add_eos;
  o.eos_check = parse_eos_check(eos_check);
  o.truncate = truncate;
  if (batch_tokens < 1) throw config_error("batch_tokens must be >= 1");
  o.batch_tokens = batch_tokens;
  if (pool_from < 0) throw config_error("pool_from must be >= 0");
  o.pool_from = pool_from;
  AnyEncoder enc;
  {
    nb::gil_scoped_release release;  // loading a model reads (and converts) every tensor
    enc = make_design(model, attention, pooling, head.value_or(std::filesystem::path()), o);
  }
  new (self) PyEncoder{std::move(enc), {}};
}

Array encode(PyEncoder& self, const std::vector<std::string>& texts,
             const std::optional<std::string>& instruction,
             std::optional<std::int64_t> batch_size) {
  if (batch_size && *batch_size < 1) throw config_error("batch_size must be >= 1");
  const std::string ins = instruction.value_or("");
  Matrix out;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(self.mu);
    const std::span<const std::string> all(texts);
    const auto bs = static_cast<std::size_t>(batch_size.value_or(0));
    if (bs == 0 || all.size() <= bs) {
      out = self.enc->encode(all, ins);
    } else {
      out.resize(static_cast<Eigen::Index>(all.size()), self.enc->dim());
      for (std::size_t s = 0; s < all.size(); s += bs) {
        const std::size_t n = std::min(bs, all.size() - s);
        out.middleRows(static_cast<Eigen::Index>(s), static_cast<Eigen::Index>(n)) =
            self.enc->encode(all.subspan(s, n), ins);
      }
    }
  }
  return to_numpy(std::move(out));
}

std::vector<std::vector<std::int32_t>> tokenize(PyEncoder& self,
                                                const std::vector<std::string>& texts,
                                                const std::optional<std::string>& instruction) {
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(self.mu);
  const TokenBatch b =
      detail::tokenize_texts(self.enc->tokenizer(), texts, instruction.value_or(""),
                             self.enc->options(), pooling::capture_of(self.enc->pooling_name()));
  std::vector<std::vector<std::int32_t>> out;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const auto s = b.sequence(i);
    out.emplace_back(s.begin(), s.end());
  }
  return out;
}

}  // namespace

std::filesystem::path default_data_dir() {
  if (const char* e = std::getenv("LMEMBED_DATA_DIR"); e && *e) return e;
  return LMEMBED_DATA_DIR;
}

}  // namespace lmembed::python

NB_MODULE(_lmembed, m) {
  namespace py = lmembed::python;
  using py::nb::arg;
  m.doc() = "lmembed: decoder-only LLMs as text-embedding models (C++ library bindings)";
  m.attr("__version__") = LMEMBED_VERSION_STRING;

  m.def(
      "_set_error_types",
      [](py::nb::object error, py::nb::object format, py::nb::object shape, py::nb::object config,
         py::nb::object io, py::nb::object input) {
        py::g_error = error.release().ptr();
        py::g_format = format.release().ptr();
        py::g_shape = shape.release().ptr();
        py::g_config = config.release().ptr();
        py::g_io = io.release().ptr();
        py::g_input = input.release().ptr();
      },
      "Installs the exception classes of lmembed._errors (called once by lmembed/__init__.py).");
  py::nb::register_exception_translator(&py::translate);

  py::nb::class_<py::PyEncoder>(
      m, "Encoder",
      "Tokenizer + frozen backbone + pooling of one design (attention x pooling).\n\n"
      "model: a .gguf file or a Hugging Face folder (config.json + safetensors).\n"
      "attention: 'causal' | 'bidirectional'. pooling: 'eos' | 'mean' | 'latent' |\n"
      "'multi_layer' (the trainable ones need head=, a file written by lmembed.train).\n"
      "threads: backbone threads (0: all). normalize: L2-normalize rows. add_bos/add_eos:\n"
      "None = the model's flag (add_eos is on for poolings that read the last token).\n"
      "eos_check: 'off' | 'warn' | 'error' for eos-style pooling of texts without EOS.\n"
      "truncate: cut texts longer than the context (else InputError). batch_tokens: tokens per\n"
      "backbone call. pool_from: leading tokens of every text that mean-style pooling skips.\n"
      "weights: 'stored' (a GGUF's Q8_0/Q4_0/Q4_1 weights stay quantized: integer kernels on\n"
      "8-bit activations) or 'f32' (dequantized; exact), as `lmembed embed --weights`.")
      .def("__init__", &py::init_encoder, arg("model"), arg("attention") = "bidirectional",
           arg("pooling") = "multi_layer", arg("head") = py::nb::none(), py::nb::kw_only(),
           arg("threads") = 0, arg("normalize") = true, arg("add_bos") = py::nb::none(),
           arg("add_eos") = py::nb::none(), arg("eos_check") = "warn", arg("truncate") = false,
           arg("batch_tokens") = 8192, arg("pool_from") = 0, arg("weights") = "stored")
      .def("encode", &py::encode, arg("texts"), arg("instruction") = py::nb::none(),
           arg("batch_size") = py::nb::none(),
           "Embeddings of texts as a float32 array [len(texts), dim] (C-contiguous; the library's\n"
           "buffer, not a copy, when batch_size is None or >= len(texts)). instruction: a prefix\n"
           "put before every text and left out of mean-style pooling, verbatim (the E5 form of a\n"
           "task instruction is lmembed.format_instruction(task)). batch_size: texts per\n"
           "library call (None: all at once; the library still bounds tokens per backbone call\n"
           "by batch_tokens). The GIL is released meanwhile.")
      .def("tokenize", &py::tokenize, arg("texts"), arg("instruction") = py::nb::none(),
           "Token ids of texts exactly as encode() feeds them to the backbone (BOS/EOS rules of\n"
           "this encoder, the instruction prefix included).")
      .def_prop_ro(
          "dim", [](py::PyEncoder& s) { return s.enc->dim(); }, "Embedding width.")
      .def_prop_ro(
          "attention", [](py::PyEncoder& s) { return std::string(s.enc->attention_name()); },
          "'causal' or 'bidirectional'.")
      .def_prop_ro(
          "pooling", [](py::PyEncoder& s) { return std::string(s.enc->pooling_name()); },
          "The pooling name.")
      .def_prop_ro(
          "n_layers", [](py::PyEncoder& s) { return s.enc->backbone().config().n_layers; },
          "Transformer layers of the backbone.")
      .def_prop_rw(
          "normalize", [](py::PyEncoder& s) { return s.enc->options().normalize; },
          [](py::PyEncoder& s, bool v) {
            std::lock_guard<std::mutex> lock(s.mu);
            s.enc->options().normalize = v;
          },
          "Whether encode() L2-normalizes each row.")
      .def("__repr__", [](py::PyEncoder& s) {
        return std::string("lmembed.Encoder(attention='") + s.enc->attention_name() +
               "', pooling='" + s.enc->pooling_name() + "', dim=" + std::to_string(s.enc->dim()) +
               ")";
      });

  m.def(
      "format_instruction",
      [](const std::string& instruction) { return lmembed::eval::format_instruction(instruction); },
      arg("instruction"),
      "The E5-style prefix of a task instruction: 'Instruct: {instruction}\\nQuery: ' ('' stays\n"
      "''), as lmembed eval and Tang & Yang 2024 put it before queries.");

  m.def(
      "cpu_level", [] { return lmembed::cpu::describe(); },
      "The CPU kernel level the run-time dispatch picked and why, e.g. 'avx512 (auto: ...)'\n"
      "(as `lmembed --version` prints it; the LMEMBED_CPU environment variable overrides).");

  py::bind_train(m);
  py::bind_eval(m);
}
