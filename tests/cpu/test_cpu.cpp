// Run-time CPU dispatch: every kernel at every level this CPU supports (through set_level, the
// library form of LMEMBED_CPU), against double-precision references computed here, and the
// override's refusals. The llama.cpp goldens run per level too (tests/backbone's
// backbone_golden_cpu_* variants).
//
// Tolerances and why:
//  - GEMM: |c - ref| <= 2e-6 * sum_k |a_k b_k| (float rounding of k products and sums); AVX2
//    and AVX-512 sum every element's k terms in the same order with FMA: bit-identical.
//  - exp (silu, softmax): 4e-7 relative to std::exp in double (Cephes ~2 ulp); generic is
//    std::exp itself.
//  - RMSNorm, RoPE: the same scalar arithmetic at every level: bit-identical to generic.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "lmembed/backbone/gemm.hpp"
#include "lmembed/cpu/dispatch.hpp"

using namespace lmembed;
using cpu::Level;

namespace {

const Level kLevels[] = {Level::generic, Level::avx2, Level::avx512};

/// The levels this CPU runs (the others are checked to be refused).
std::vector<Level> supported_levels() {
  std::vector<Level> v;
  for (Level l : kLevels)
    if (cpu::supported(l)) v.push_back(l);
  return v;
}

/// Restores the best level when a test ends.
struct LevelGuard {
  ~LevelGuard() { cpu::set_level(cpu::best_level()); }
};

std::vector<float> randn(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

}  // namespace

TEST(CpuDispatch, DetectsThisCpu) {
  const cpu::Features& f = cpu::features();
  std::printf("features: %s; best level %s; now %s\n", f.str().c_str(),
              cpu::name(cpu::best_level()), cpu::describe().c_str());
  EXPECT_TRUE(cpu::supported(Level::generic));
  if (cpu::supported(Level::avx512)) {
    EXPECT_TRUE(cpu::supported(Level::avx2));
  }
  EXPECT_EQ(cpu::supported(Level::avx2), f.avx2 && f.fma);
  if (!std::getenv("LMEMBED_CPU")) {
    EXPECT_EQ(cpu::level(), cpu::best_level());
    EXPECT_NE(cpu::level_reason().find("auto"), std::string::npos);
  }
}

TEST(CpuDispatch, SetLevelAndRefusal) {
  LevelGuard guard;
  for (Level l : kLevels) {
    if (cpu::supported(l)) {
      cpu::set_level(l);
      EXPECT_EQ(cpu::level(), l);
      EXPECT_EQ(cpu::level_reason(), std::string("set_level(") + cpu::name(l) + ")");
      EXPECT_EQ(&cpu::ops(), &cpu::table(l));
    } else {
      // A level this CPU lacks is refused, naming what is missing; the level stays.
      const Level before = cpu::level();
      try {
        cpu::set_level(l);
        ADD_FAILURE() << "set_level(" << cpu::name(l) << ") accepted";
      } catch (const config_error& e) {
        EXPECT_NE(std::string(e.what()).find("lacks"), std::string::npos) << e.what();
      }
      EXPECT_EQ(cpu::level(), before);
    }
  }
  EXPECT_EQ(cpu::parse_level("avx2"), Level::avx2);
  EXPECT_THROW(cpu::parse_level("sse4"), config_error);
}

/// LMEMBED_CPU naming no level: every use throws a config_error until set_level (run by the
/// cpu_env_refused ctest with LMEMBED_CPU=avx9000).
TEST(CpuEnv, RefusedOnFirstUse) {
  if (!std::getenv("LMEMBED_EXPECT_REFUSAL")) GTEST_SKIP() << "run by ctest cpu_env_refused";
  try {
    (void)cpu::ops();
    FAIL() << "LMEMBED_CPU=" << std::getenv("LMEMBED_CPU") << " accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("avx9000"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)cpu::level(), config_error);
  cpu::set_level(Level::generic);
  EXPECT_EQ(cpu::level(), Level::generic);
}

/// gemm_nt at every level equals a double product within float rounding, on ragged shapes
/// (partial tiles, several k blocks, 1 and 2 threads, = and +=); AVX2 is bit-identical to
/// AVX-512.
TEST(CpuKernels, GemmEveryLevel) {
  LevelGuard guard;
  struct Shape {
    int m, n, k;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{13, 33, 7}, Shape{9, 47, 600}, Shape{200, 70, 385},
                  Shape{64, 96, 1100}}) {
    const auto a = randn(static_cast<std::size_t>(s.m) * s.k, 1);
    const auto w = randn(static_cast<std::size_t>(s.n) * s.k, 2);
    const auto c0 = randn(static_cast<std::size_t>(s.m) * s.n, 3);
    Matrix wm = Eigen::Map<const Matrix>(w.data(), s.n, s.k);
    const auto pw = detail::PackedWeight::from(wm);
    std::vector<double> ref(c0.size()), bound(c0.size());
    for (int i = 0; i < s.m; ++i)
      for (int j = 0; j < s.n; ++j) {
        double acc = 0, mag = 0;
        for (int k = 0; k < s.k; ++k) {
          const double p = static_cast<double>(a[i * s.k + k]) * w[j * s.k + k];
          acc += p;
          mag += std::abs(p);
        }
        ref[i * s.n + j] = acc;
        bound[i * s.n + j] = 2e-6 * (mag + std::abs(c0[i * s.n + j])) + 1e-30;
      }
    std::vector<std::vector<float>> by_level;
    for (Level l : supported_levels()) {
      cpu::set_level(l);
      detail::GemmScratch scratch;
      for (int threads : {1, 2})
        for (bool accumulate : {false, true}) {
          std::vector<float> c = c0;
          detail::gemm_nt(a.data(), s.k, s.m, pw, c.data(), s.n, accumulate, threads, scratch);
          double worst = 0;
          for (std::size_t i = 0; i < c.size(); ++i) {
            const double want = ref[i] + (accumulate ? c0[i] : 0.0);
            worst = std::max(worst, std::abs(c[i] - want) / bound[i]);
          }
          EXPECT_LE(worst, 1.0) << cpu::name(l) << " " << s.m << "x" << s.n << "x" << s.k
                                << " threads " << threads << " acc " << accumulate;
          if (threads == 1 && !accumulate) by_level.push_back(c);
        }
    }
    if (cpu::supported(Level::avx512)) {
      EXPECT_EQ(by_level[1], by_level[2])
          << "avx2 and avx512 differ at " << s.m << "x" << s.n << "x" << s.k;
    }
  }
}

/// silu_mul and exp_shift_sum against std::exp in double, including both tails.
TEST(CpuKernels, ExpKernelsEveryLevel) {
  LevelGuard guard;
  std::vector<float> x = randn(203, 4, 6.0f);
  for (float v : {-200.0f, -90.0f, -87.5f, 0.0f, 30.0f, 87.0f, 100.0f}) x.push_back(v);
  const auto u = randn(x.size(), 5);
  for (Level l : supported_levels()) {
    cpu::set_level(l);
    std::vector<float> g = x;
    cpu::ops().silu_mul(g.data(), u.data(), static_cast<std::int64_t>(g.size()));
    for (std::size_t i = 0; i < g.size(); ++i) {
      const double want = x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))) * u[i];
      // + 1e-35: AVX2 clamps e^-g at e^88, so silu(g < -88) is ~g e^-88 instead of ~0.
      EXPECT_NEAR(g[i], want, 4e-7 * std::abs(want) + 1e-35) << cpu::name(l) << " x " << x[i];
    }
    std::vector<float> e = x;
    const float shift = 3.0f;
    const double sum =
        cpu::ops().exp_shift_sum(e.data(), static_cast<std::int64_t>(e.size()), shift);
    for (std::size_t i = 0; i < e.size(); ++i) {
      const double want =
          std::exp(static_cast<double>(x[i] - shift));  // float x - shift, as the kernel
      if (x[i] - shift >= 84.0f) continue;  // e^88 and up: float overflow differs per level
      EXPECT_NEAR(e[i], want, 4e-7 * want + 2e-38) << cpu::name(l) << " x " << x[i];
    }
    EXPECT_GT(sum, 0.0);
    std::vector<float> e2(x.begin(), x.begin() + 203);
    double want2 = 0;
    for (float v : e2) want2 += std::exp(static_cast<double>(v - shift));
    EXPECT_NEAR(cpu::ops().exp_shift_sum(e2.data(), 203, shift), want2, 1e-6 * want2)
        << cpu::name(l);
  }
}

/// RMSNorm and RoPE: bit-identical at every level; attention within exp's tolerance of a
/// double softmax.
TEST(CpuKernels, NormRopeAttentionEveryLevel) {
  LevelGuard guard;
  const std::int64_t d = 576, hd = 64, heads = 3, n = 37;
  const auto x = randn(d, 6), w = randn(d, 7), bias = randn(heads * hd, 8);
  const auto cs = randn(hd / 2, 9), sn = randn(hd / 2, 10);
  const auto q = randn(hd, 11), kt = randn(hd * n, 12), v = randn(n * hd, 13);
  std::vector<float> norm0, rope0;
  for (Level l : supported_levels()) {
    cpu::set_level(l);
    std::vector<float> y(d);
    cpu::ops().rms_norm_row(x.data(), w.data(), y.data(), d, 1e-5f);
    std::vector<float> row(bias.size(), 0.5f);
    cpu::ops().bias_rope_row(row.data(), bias.data(), heads * hd, cs.data(), sn.data(), heads, hd);
    double ss = 0;
    for (float t : x) ss += static_cast<double>(t) * t;
    const double sc = 1.0 / std::sqrt(ss / d + 1e-5);
    for (std::int64_t i = 0; i < d; ++i) EXPECT_NEAR(y[i], x[i] * sc * w[i], 1e-5);
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < hd / 2; ++i) {
        const double x0 = 0.5 + static_cast<double>(bias[h * hd + i]);
        const double x1 = 0.5 + static_cast<double>(bias[h * hd + i + hd / 2]);
        EXPECT_NEAR(row[h * hd + i], x0 * cs[i] - x1 * sn[i], 2e-6 * (std::abs(x0) + std::abs(x1)));
        EXPECT_NEAR(row[h * hd + i + hd / 2], x0 * sn[i] + x1 * cs[i],
                    2e-6 * (std::abs(x0) + std::abs(x1)));
      }
    // No sum is reordered: RMSNorm (no a * b + c) is identical at every level, RoPE at every
    // level with FMA (the compiler contracts x0 c - x1 s there, not on plain x86-64).
    if (norm0.empty()) norm0 = y;
    EXPECT_EQ(y, norm0) << cpu::name(l);
    if (l == Level::avx2) rope0 = row;
    if (l == Level::avx512 && !rope0.empty()) {
      EXPECT_EQ(row, rope0);
    }
    for (std::int64_t nk : {std::int64_t{1}, std::int64_t{20}, n}) {
      std::vector<float> srow(n), out(hd);
      const float scale = 0.125f;
      cpu::ops().attention_row(q.data(), kt.data(), n, v.data(), hd, nk, hd, scale, srow.data(),
                               out.data());
      std::vector<double> s(nk);
      double mx = -1e300, sum = 0;
      for (std::int64_t j = 0; j < nk; ++j) {
        for (std::int64_t c = 0; c < hd; ++c)
          s[j] += static_cast<double>(q[c]) * scale * kt[c * n + j];
        mx = std::max(mx, s[j]);
      }
      for (double& t : s) sum += (t = std::exp(t - mx));
      for (std::int64_t c = 0; c < hd; ++c) {
        double want = 0;
        for (std::int64_t j = 0; j < nk; ++j) want += s[j] / sum * v[j * hd + c];
        EXPECT_NEAR(out[c], want, 2e-5) << cpu::name(l) << " nk " << nk;
      }
    }
  }
}

/// Column sums (bias gradients): plain adds in row order, so every level gives the same floats,
/// within float rounding of a double sum.
TEST(CpuKernels, ColumnSumsEveryLevel) {
  LevelGuard guard;
  const std::int64_t rows = 67, cols = 45, ld = 50;
  const auto x = randn(static_cast<std::size_t>(rows * ld), 14);
  std::vector<float> first;
  for (Level l : supported_levels()) {
    cpu::set_level(l);
    std::vector<float> sum(cols, 1.0f);
    cpu::ops().add_col_sums(x.data(), rows, cols, ld, sum.data());
    for (std::int64_t j = 0; j < cols; ++j) {
      double want = 1.0, mag = 1.0;
      for (std::int64_t i = 0; i < rows; ++i) {
        want += x[i * ld + j];
        mag += std::abs(x[i * ld + j]);
      }
      EXPECT_NEAR(sum[j], want, 1e-6 * mag) << cpu::name(l) << " column " << j;
    }
    if (first.empty()) first = sum;
    EXPECT_EQ(sum, first) << cpu::name(l);
  }
}

/// GELU's pieces Phi(x), phi(x) at every level against double std::erf / std::exp: Eigen's
/// 13/8 rational erf (vector levels) is within a few float ulp of erf on [-4, 4] and +-1
/// beyond, so Phi within 3e-7 absolute; phi (of the float x^2) within exp's 4e-7 relative plus
/// one rounding.
TEST(CpuKernels, GeluPartsEveryLevel) {
  LevelGuard guard;
  std::vector<float> x = randn(301, 15, 3.0f);
  for (float v : {-12.0f, -6.0f, -5.66f, -1e-3f, 0.0f, 1e-3f, 0.5f, 5.66f, 6.0f, 12.0f})
    x.push_back(v);
  const auto n = static_cast<std::int64_t>(x.size());
  for (Level l : supported_levels()) {
    cpu::set_level(l);
    std::vector<float> cdf(x.size()), pdf(x.size()), cdf_only(x.size(), -1.0f);
    cpu::ops().gelu_parts(x.data(), cdf.data(), pdf.data(), n);
    cpu::ops().gelu_parts(x.data(), cdf_only.data(), nullptr, n);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double xd = x[i];
      const double want_cdf = 0.5 * (1.0 + std::erf(xd / std::sqrt(2.0)));
      // phi of the float x^2 the kernels form (its rounding alone moves e^(-x^2/2) by up to
      // x^2/2 * 6e-8 relative: 1.5e-6 at x = 7), so the bound measures the kernels' own error.
      const double x2 = static_cast<double>(x[i] * x[i]);
      const double want_pdf = std::exp(-0.5 * x2) / std::sqrt(2.0 * M_PI);
      EXPECT_NEAR(cdf[i], want_cdf, 3e-7) << cpu::name(l) << " x " << x[i];
      EXPECT_NEAR(pdf[i], want_pdf, 6e-7 * want_pdf + 1e-37) << cpu::name(l) << " x " << x[i];
      EXPECT_EQ(cdf_only[i], cdf[i]) << cpu::name(l);  // pdf = nullptr: Phi alone, the same
    }
  }
}
