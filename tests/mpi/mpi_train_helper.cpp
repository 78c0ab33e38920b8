// mpi_train_helper: trains a multi_layer head over a synthetic cache, either with
// train::Trainer in one process (--mode single, the reference) or with train::DistributedTrainer
// on MPI_COMM_WORLD (--mode mpi, under mpirun) or on train::SingleProcess (--mode local). Rank 0
// writes the final weights (raw float32, parameters in order) and the loss curve, so test_mpi.py
// can compare runs; --kill-rank /
// --kill-step SIGKILL one rank mid-run; --checkpoint-every / --resume exercise checkpoints;
// --bench prints steps/s and bytes per step as JSON.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "../train/fake_backbone.hpp"
#include "lmembed/pooling/multi_layer.hpp"
#include "lmembed/train/distributed.hpp"
#include "lmembed/train/mpi.hpp"
#include "lmembed/train/trainer.hpp"

using namespace lmembed;
namespace fs = std::filesystem;

namespace {

struct Args {
  std::string mode = "mpi", cache, out;
  std::int64_t steps = 8, batch = 24, chunk = 0, examples = 96, d = 16, layers = 3;
  std::int64_t checkpoint_every = 0, kill_rank = -1, kill_step = -1, threads = 1;
  std::int64_t perturb_rank = -1;  ///< this rank nudges one weight after step 1 (replica check)
  bool resume = false, bench = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw config_error(k + " needs a value");
      return argv[++i];
    };
    auto ival = [&]() { return std::stoll(val()); };
    if (k == "--mode")
      a.mode = val();
    else if (k == "--cache")
      a.cache = val();
    else if (k == "--out")
      a.out = val();
    else if (k == "--steps")
      a.steps = ival();
    else if (k == "--batch")
      a.batch = ival();
    else if (k == "--chunk")
      a.chunk = ival();
    else if (k == "--examples")
      a.examples = ival();
    else if (k == "--d")
      a.d = ival();
    else if (k == "--layers")
      a.layers = ival();
    else if (k == "--checkpoint-every")
      a.checkpoint_every = ival();
    else if (k == "--kill-rank")
      a.kill_rank = ival();
    else if (k == "--kill-step")
      a.kill_step = ival();
    else if (k == "--threads")
      a.threads = ival();
    else if (k == "--perturb-rank")
      a.perturb_rank = ival();
    else if (k == "--resume")
      a.resume = true;
    else if (k == "--bench")
      a.bench = true;
    else
      throw config_error("unknown argument " + k);
  }
  if (a.cache.empty() || a.out.empty()) throw config_error("--cache and --out are required");
  return a;
}

/// Queries and positives share a word; the hard negative shares the query's other word.
std::vector<train::Example> examples(std::int64_t n) {
  const char* words[] = {"apple", "river", "stone", "cloud", "green", "quiet", "sharp",
                         "bread", "light", "north", "metal", "dance", "ocean", "tiger"};
  std::vector<train::Example> ex;
  for (std::int64_t i = 0; i < n; ++i) {
    train::Example e;
    const std::string a = words[i % 14], b = words[(i * 5 + 3) % 14];
    e.query = a + " " + b + " " + std::to_string(i);
    e.positive = a + " thing " + std::to_string(i % 9);
    e.negatives.push_back(b + " other " + std::to_string(i % 4));
    e.negatives.push_back(b + " else " + std::to_string(i % 5));
    ex.push_back(e);
  }
  return ex;
}

void build(const Args& a) {
  const CaptureSpec spec{CaptureLayers::all, CaptureTokens::last};
  train::CacheOptions o;
  o.capture = spec;
  o.d = a.d;
  o.model_layers = a.layers;
  o.progress = false;
  train::build_cache(
      a.cache, train::CacheDataset::from_examples(examples(a.examples)),
      lmembed_test::fake_tokenize,
      [&](const TokenBatch& b) { return lmembed_test::fake_capture(b, spec, a.d, a.layers); }, o);
}

train::TrainOptions options(const Args& a) {
  train::TrainOptions o;
  o.steps = a.steps;
  o.batch = a.batch;
  o.chunk = a.chunk;
  o.lr = 3e-3;
  o.warmup = 2;
  o.seed = 11;
  o.max_negatives = 1;  // two negatives per example: exercises the sampling RNG
  o.adamw.weight_decay = 0.01;
  return o;
}

using Head = pooling::MultiLayerHead<float>;

void write_weights(Head& h, const fs::path& file) {
  std::vector<float> all;
  for (auto* p : h.parameters())
    all.insert(all.end(), p->value.data(), p->value.data() + p->value.size());
  write_file_atomic(file, std::as_bytes(std::span<const float>(all)));
}

template <class T>
void run(const Args& a, T& trainer, Head& head, int rank) {
  const fs::path ck = fs::path(a.out) / "ckpt";
  if (a.resume && fs::exists(ck / "checkpoint.safetensors")) trainer.load_checkpoint(ck);
  std::ofstream loss;
  if (rank == 0) loss.open(fs::path(a.out) / "loss.txt", std::ios::app);
  std::int64_t bytes = 0, n = 0, texts = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (!trainer.done()) {
    if (rank == a.kill_rank && trainer.step_count() == a.kill_step) std::raise(SIGKILL);
    const auto st = trainer.step();
    if constexpr (requires { st.comm_bytes; }) bytes += st.comm_bytes;
    ++n;
    texts += st.texts;
    if (rank == 0) {
      char line[64];
      std::snprintf(line, sizeof line, "%lld %.9g\n", (long long)st.step, st.loss);
      loss << line << std::flush;
    }
    if (rank == a.perturb_rank && st.step == 1) head.parameters()[0]->value(0, 0) += 1e-3f;
    if (a.checkpoint_every > 0 && st.step % a.checkpoint_every == 0) trainer.save_checkpoint(ck);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if constexpr (requires { trainer.verify_replicas(); }) trainer.verify_replicas();
  if (rank == 0) {
    write_weights(head, fs::path(a.out) / "weights.bin");
    if (a.bench) {
      std::int64_t params = 0;
      for (auto* p : head.parameters()) params += p->numel();
      std::printf(
          "{\"steps\": %lld, \"seconds\": %.6f, \"steps_per_s\": %.4f, "
          "\"bytes_per_step\": %.1f, \"texts_per_step\": %.1f, \"head_params\": %lld}\n",
          (long long)n, secs, double(n) / secs, n ? double(bytes) / double(n) : 0.0,
          n ? double(texts) / double(n) : 0.0, (long long)params);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    a = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mpi_train_helper: " << e.what() << "\n";
    return 2;
  }
  Eigen::setNbThreads(int(a.threads));
  if (a.mode == "single" || a.mode == "local") {
    try {
      if (!fs::exists(fs::path(a.cache) / "index.json")) build(a);
      const auto cache = train::Cache::open(a.cache);
      fs::create_directories(a.out);
      Head head(Head::Config::defaults(a.d, a.layers));
      head.init(3);
      if (a.mode == "single") {  // train's own single-process trainer: the reference
        train::Trainer<Head> t(head, cache, options(a));
        run(a, t, head, 0);
      } else {  // the distributed trainer on the group of one
        train::SingleProcess comm;
        train::DistributedTrainer<Head> t(head, cache, options(a), comm);
        run(a, t, head, 0);
      }
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "mpi_train_helper: " << e.what() << "\n";
      return 1;
    }
  }
  train::Communicator& comm = train::world();  // MPI_COMM_WORLD under mpirun
  try {
    if (std::string(comm.name()) != "mpi") throw config_error("--mode mpi needs mpirun");
    if (comm.rank() == 0) {
      if (!fs::exists(fs::path(a.cache) / "index.json")) build(a);
      fs::create_directories(a.out);
    }
    comm.barrier();
    const auto cache = train::Cache::open(a.cache);
    Head head(Head::Config::defaults(a.d, a.layers));
    head.init(3 + std::uint64_t(comm.rank()));  // different on purpose: rank 0's is broadcast
    train::DistributedTrainer<Head> t(head, cache, options(a), comm);
    run(a, t, head, comm.rank());
  } catch (const std::exception& e) {
    std::cerr << "mpi_train_helper: rank " << comm.rank() << ": " << e.what() << "\n";
    comm.abort(1);
  }
  return 0;
}
