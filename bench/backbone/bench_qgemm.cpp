// bench_qgemm - the stored-type GEMM (qgemm_nt: Q8_0 / Q4_0 / Q4_1 weights, int8 activations)
// beside the F32 GEMM (gemm_nt) on the backbone's shapes, in multiply-add rate.
//
//   bench_qgemm [--threads 1,2] [--reps 5] [--m 1024] [--shapes smollm2|7b|all]
//
// Per shape and thread count, each product runs `reps` times, interleaved (f32, q8_0, q4_0, q4_1,
// f32, ...); prints the median and best GFLOP/s (2 m n k / s; for the integer kernels the same
// count, so the ratio is the speed-up on that product) and the ratio to F32, with the CPU level,
// the kernels' name (avx512vnni, ...) and the load average. Random weights; nothing is read.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lmembed/backbone/gemm.hpp"
#include "lmembed/backbone/qgemm.hpp"
#include "lmembed/cpu/qkernels.hpp"

namespace {

using namespace lmembed;
using io::DType;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// Random GGML blocks of type t (f16 scales ~1e-2, random quants).
std::vector<std::byte> random_blocks(DType t, std::int64_t rows, std::int64_t k,
                                     std::mt19937& rng) {
  const std::int64_t bb = io::block_bytes(t);
  std::vector<std::byte> out(static_cast<std::size_t>(rows * (k / 32) * bb));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : out) b = static_cast<std::byte>(byte(rng));
  const std::uint16_t h = io::float_to_half(0.01f);
  for (std::size_t i = 0; i < out.size(); i += static_cast<std::size_t>(bb)) {
    std::memcpy(&out[i], &h, 2);
    if (t == DType::q4_1) std::memcpy(&out[i + 2], &h, 2);
  }
  return out;
}

struct GemmShape {
  const char* name;
  std::int64_t n, k;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads{1, 2};
  int reps = 5;
  std::int64_t m = 1024;
  std::string which = "smollm2";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--threads") {
      threads.clear();
      std::stringstream ss(v);
      for (std::string t; std::getline(ss, t, ',');) threads.push_back(std::stoi(t));
    } else if (a == "--reps") {
      reps = std::stoi(v);
    } else if (a == "--m") {
      m = std::stoll(v);
    } else if (a == "--shapes") {
      which = v;
    } else {
      std::fprintf(stderr,
                   "usage: bench_qgemm [--threads 1,2] [--reps 5] [--m 1024] "
                   "[--shapes smollm2|7b|all]\n");
      return 2;
    }
  }
  std::vector<GemmShape> shapes;
  if (which == "smollm2" || which == "all")  // SmolLM2-135M: d 576, 9/3 heads of 64, FFN 1536
    shapes.insert(shapes.end(), {{"smollm2 q|k|v", 960, 576},
                                 {"smollm2 o", 576, 576},
                                 {"smollm2 gate|up", 3072, 576},
                                 {"smollm2 down", 576, 1536}});
  if (which == "7b" || which == "all")  // Mistral-7B: d 4096, 32/8 heads, FFN 14336
    shapes.insert(shapes.end(), {{"7b q|k|v", 6144, 4096},
                                 {"7b o", 4096, 4096},
                                 {"7b gate|up", 28672, 4096},
                                 {"7b down", 4096, 14336}});
  double la[3] = {0, 0, 0};
  if (getloadavg(la, 3) < 0) la[0] = -1;
  std::printf(
      "bench_qgemm: m %lld, %d reps interleaved; CPU level %s, quantized kernels %s; load "
      "average %.2f\n",
      static_cast<long long>(m), reps, cpu::name(cpu::level()), cpu::qops().name, la[0]);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const DType types[3] = {DType::q8_0, DType::q4_0, DType::q4_1};
  for (const GemmShape& s : shapes) {
    Matrix x(m, s.k);
    for (std::int64_t i = 0; i < x.size(); ++i) x.data()[i] = nd(rng);
    detail::QuantWeight qw[3];
    for (int t = 0; t < 3; ++t) {
      const auto blocks = random_blocks(types[t], s.n, s.k, rng);
      qw[t] = detail::QuantWeight::zeros(types[t], s.n, s.k, s.name);
      qw[t].pack_rows(blocks.data(), s.n, 0);
    }
    detail::PackedWeight fw;
    {
      const Matrix wf = qw[1].dequantize();
      fw = detail::PackedWeight::from(wf);
    }
    Matrix c(m, s.n);
    const double flops = 2.0 * static_cast<double>(m) * s.n * s.k;
    for (int th : threads) {
      std::vector<double> rate[4];
      detail::GemmScratch gs;
      detail::QuantActs qa;
      for (int r = 0; r < reps + 1; ++r) {  // the first round warms up (not counted)
        double t0 = now_s();
        detail::gemm_nt(x.data(), s.k, m, fw, c.data(), s.n, false, th, gs);
        if (r > 0) rate[0].push_back(flops / (now_s() - t0) / 1e9);
        for (int t = 0; t < 3; ++t) {
          t0 = now_s();
          detail::qgemm_nt(x.data(), s.k, m, qw[t], c.data(), s.n, false, th, qa);
          if (r > 0) rate[t + 1].push_back(flops / (now_s() - t0) / 1e9);
        }
      }
      const double f = median(rate[0]);
      std::printf("%-16s n %5lld k %5lld threads %d | f32 %6.1f (best %6.1f) GFLOP/s", s.name,
                  static_cast<long long>(s.n), static_cast<long long>(s.k), th, f,
                  *std::max_element(rate[0].begin(), rate[0].end()));
      for (int t = 0; t < 3; ++t)
        std::printf(" | %s %6.1f %.2fx", io::to_string(types[t]), median(rate[t + 1]),
                    median(rate[t + 1]) / f);
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  if (getloadavg(la, 3) < 0) la[0] = -1;
  std::printf("load average after: %.2f\n", la[0]);
  return 0;
}
