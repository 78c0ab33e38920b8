// examples/lmembed/train_command.hpp - `lmembed train` independent of the device: its options,
// head construction, the loop with progress, loss.csv and checkpoints. cmd_train.cpp declares
// the options on CLI11 and runs the command with train::DistributedTrainer (CPU, mpirun),
// cuda_train.cu with cuda::DeviceTrainer (`--device cuda`, the nvcc-compiled part of the tool;
// see device.hpp), so both devices share one command line, one loss.csv format and one
// checkpoint format. (No CLI11 here: nvcc compiles this header too.)
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include <Eigen/Core>

#include "device.hpp"
#include "lmembed/core/file.hpp"
#include "lmembed/pooling/pooling.hpp"
#include "lmembed/train/cache.hpp"
#include "lmembed/train/trainer.hpp"
#include "usage.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lmembed::cli::train_command {

namespace fs = std::filesystem;
namespace train = lmembed::train;

/// The options of `lmembed train` (declared on CLI11 in cmd_train.cpp; defaults as documented
/// there).
struct Options {
  std::optional<std::string> cache, pooling, out, checkpoint_dir, resume;
  std::string device = "cpu";
  long long steps = 100, batch = 32, warmup = 0, seed = 42, init_seed = 0;
  long long max_negatives = 1, chunk = 256, threads = 0;
  double lr = 1e-4, clip = 1.0, scale = 20.0, weight_decay = 0.0;
  std::optional<long long> latents, heads, head_dim, ff_mult, checkpoint_every;
  bool symmetric = false, no_hard_negatives = false;
};

/// Seconds as 1h02m or 3m05s ("?" when unknown).
inline std::string clock_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long long t = std::llround(s);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, t / 60 % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  return buf;
}

/// Creates the folder of `out`; io_error naming it when that fails (a path through a file).
inline void make_parent(const fs::path& out) {
  if (!out.has_parent_path()) return;
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  if (ec)
    throw lmembed::io_error(out.parent_path().string() + ": cannot create the folder of --out " +
                            out.string() + ": " + ec.message());
}

/// loss.csv: rows up to `keep_steps` of an earlier run are kept (resume), the rest dropped.
inline std::string csv_prefix(const fs::path& csv, std::int64_t keep_steps) {
  std::string out = "step,loss,lr,grad_norm,texts,seconds\n";
  if (keep_steps <= 0 || !fs::exists(csv)) return out;
  std::istringstream in(lmembed::read_text_file(csv));
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    const auto comma = line.find(',');
    if (comma == std::string::npos) break;
    long long step = 0;
    try {
      step = std::stoll(line.substr(0, comma));
    } catch (const std::exception&) {
      break;
    }
    if (step > keep_steps) break;
    out += line + "\n";
  }
  return out;
}

/// The training loop of `lmembed train` around any trainer (train::DistributedTrainer on the
/// CPU, cuda::DeviceTrainer on the GPU): --resume, progress on stderr, loss.csv, checkpoints
/// every --checkpoint-every steps, the head file at the end. `lead`: this process writes the
/// files and the progress (rank 0 under mpirun).
template <class Trainer, class Head>
int train_loop(Trainer& trainer, Head& head, const train::TrainOptions& opt, const Options& a,
               bool lead) {
  const fs::path out = require(a.out, "--out");
  make_parent(out);
  // One writer of the folder of --out (loss.csv, the default checkpoints): a second training
  // into it is refused while this one runs.
  lmembed::DirLock lock;
  if (lead)
    lock = lmembed::DirLock::acquire(out.has_parent_path() ? out.parent_path() : fs::path("."),
                                     "lmembed train");
  const fs::path ckpt_dir =
      a.resume ? fs::path(*a.resume)
               : fs::path(a.checkpoint_dir.value_or(
                     (out.parent_path() / (out.stem().string() + ".ckpt")).string()));
  const std::int64_t every = a.checkpoint_every.value_or(std::max<std::int64_t>(1, opt.steps / 10));
  if (a.resume) {
    trainer.load_checkpoint(ckpt_dir);
    std::cerr << "lmembed train: resumed from " << ckpt_dir.string() << " at step "
              << trainer.step_count() << "\n";
  }
  const fs::path csv = out.parent_path() / "loss.csv";
  // Rewrite loss.csv up to the resumed step (a killed run may have logged steps it lost), then
  // append a row per step. Only rank 0 writes files and progress.
  if (lead)
    lmembed::write_file_atomic(csv, std::string_view(csv_prefix(csv, trainer.step_count())));
  std::ofstream log;
  if (lead) log.open(csv, std::ios::app);
  const bool tty = lead && ::isatty(2);
  const std::int64_t start = trainer.step_count();
  const std::int64_t log_every = std::max<std::int64_t>(1, opt.steps / 50);
  const auto t0 = std::chrono::steady_clock::now();
  double ema = std::nan("");
  while (!trainer.done()) {
    const train::StepStats st = trainer.step();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    char row[256];
    std::snprintf(row, sizeof row, "%lld,%.9g,%.9g,%.9g,%lld,%.3f\n", (long long)st.step, st.loss,
                  st.lr, st.grad_norm, (long long)st.texts, secs);
    if (!lead) {
      if (st.step % every == 0 || trainer.done()) trainer.save_checkpoint(ckpt_dir);
      continue;
    }
    log << row << std::flush;
    ema = std::isnan(ema) ? st.loss : 0.9 * ema + 0.1 * st.loss;
    const double rate = double(st.step - start) / std::max(secs, 1e-9);
    const double eta = double(opt.steps - st.step) / rate;
    if (tty) {
      const int width = 30;
      const int filled = int(double(width) * double(st.step) / double(opt.steps));
      std::fprintf(stderr, "\r[%s%s] step %lld/%lld  loss %.4f  %.2f steps/s  ETA %s   ",
                   std::string(std::size_t(filled), '=').c_str(),
                   std::string(std::size_t(width - filled), ' ').c_str(), (long long)st.step,
                   (long long)opt.steps, ema, rate, clock_text(eta).c_str());
    } else if (st.step % log_every == 0 || st.step == opt.steps || st.step == start + 1) {
      std::fprintf(stderr,
                   "lmembed train: step %lld/%lld loss %.4f lr %.3g grad_norm %.3g "
                   "%.2f steps/s ETA %s\n",
                   (long long)st.step, (long long)opt.steps, st.loss, st.lr, st.grad_norm, rate,
                   clock_text(eta).c_str());
    }
    if (st.step % every == 0 || trainer.done()) trainer.save_checkpoint(ckpt_dir);
  }
  if (tty) std::fprintf(stderr, "\n");
  if (!lead) return 0;
  if constexpr (requires { trainer.sync_head(); }) trainer.sync_head();  // device -> CPU head
  head.save(out);
  std::cerr << "lmembed train: wrote " << out.string() << " (" << csv.string() << ", checkpoint "
            << ckpt_dir.string() << ")\n";
  return 0;
}

/// The device `lmembed train` was asked to run on (--device, default cpu).
inline Device device_of(const Options& a) {
  return parse_option("--device", a.device, [](const std::string& s) { return parse_device(s); });
}

/// Runs `lmembed train`: options, cache, head (initialized from --seed / --init-seed); --steps 0
/// writes the untrained head; otherwise returns run_head(head, cache, options, a), a generic
/// callable that trains the head (LatentHead<float> or MultiLayerHead<float>) with train_loop.
template <class RunHead>
int run(const Options& a, RunHead&& run_head) {
  const auto cache = train::Cache::open(require(a.cache, "--cache"));
  const std::string pooling = require(a.pooling, "--pooling");
  (void)require(a.out, "--out");

  train::TrainOptions opt;
  opt.steps = a.steps;
  opt.batch = a.batch;
  opt.lr = a.lr;
  opt.warmup = a.warmup;
  opt.seed = static_cast<std::uint64_t>(a.seed);
  opt.clip = a.clip;
  opt.max_negatives = a.max_negatives;
  opt.chunk = a.chunk;
  opt.loss.scale = a.scale;
  opt.loss.symmetric = a.symmetric;
  opt.loss.hard_negatives = !a.no_hard_negatives;
  opt.adamw.weight_decay = a.weight_decay;
  if (pooling != "latent")  // a bad name is a usage error, before any head is built
    (void)parse_option("--pooling", pooling, [](const std::string& s) {
      return lmembed::pooling::parse_multi_layer_input(s);
    });
  if (opt.steps < 0 || opt.batch < 1 || opt.lr <= 0 || opt.warmup < 0 || opt.chunk < 0)
    throw usage_error("--batch, --lr must be positive; --steps, --warmup, --chunk >= 0");
  // (--heads 0 would divide by zero below, --checkpoint-every 0 in the loop.)
  for (const auto& n : {a.latents, a.heads, a.head_dim, a.ff_mult, a.checkpoint_every})
    if (n && *n < 1)
      throw usage_error(
          "--latents, --heads, --head-dim, --ff-mult, --checkpoint-every must be >= 1");
  const int threads = static_cast<int>(a.threads);
  if (threads > 0) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    Eigen::setNbThreads(threads);
  }
  // --steps 0: the initialized, untrained head (a baseline for evaluation).
  auto finish = [&](auto& head) -> int {
    if (opt.steps == 0) {
      const fs::path out = *a.out;
      make_parent(out);
      head.save(out);
      std::cerr << "lmembed train: --steps 0: wrote the untrained head to " << out.string() << "\n";
      return 0;
    }
    return run_head(head, cache, opt, a);
  };
  const std::uint64_t init_seed = static_cast<std::uint64_t>(a.init_seed) ^ opt.seed;
  const std::int64_t d = cache.d();
  auto sizes = [&](auto& c) {
    if (a.heads) c.heads = *a.heads;
    c.head_dim = a.head_dim ? *a.head_dim : (d + c.heads - 1) / c.heads;
    if (a.latents) c.n_latents = *a.latents;
  };
  if (pooling == "latent") {
    auto c = lmembed::pooling::LatentHead<float>::Config::defaults(d);
    sizes(c);
    c.mlp_mult = a.ff_mult.value_or(c.mlp_mult);
    lmembed::pooling::LatentHead<float> head(c);
    head.init(init_seed);
    return finish(head);
  }
  const auto input = lmembed::pooling::parse_multi_layer_input(pooling);
  auto c = lmembed::pooling::MultiLayerHead<float>::Config::defaults(d, cache.n_layers(), input);
  sizes(c);
  c.ff_mult = a.ff_mult.value_or(c.ff_mult);
  lmembed::pooling::MultiLayerHead<float> head(c);
  head.init(init_seed);
  return finish(head);
}

}  // namespace lmembed::cli::train_command
