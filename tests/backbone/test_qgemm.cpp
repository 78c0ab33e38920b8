// Weights in their stored type: the integer GEMM of backbone/qgemm.hpp at every CPU level, and a
// random small Llama with Q8_0 / Q4_0 / Q4_1 tensors in a GGUF, stored vs f32.
//
// GEMM bounds (per output element y_ij, K values, nb = K / 32 blocks, u = 2^-24):
//  (a) Exact check of the integer kernel. The reference sums, in double, the dequantized weights
//      times the QUANTIZED activations d_x * q (the kernel's own rounding of X, computed with
//      the same cpu::QOps::quantize_rows). Each block's integer dot product is exact; what is
//      left is f32 arithmetic on the block results: per block a product d_w * d_x, the
//      conversion of the int32 dot (exact below 2^24: |dot| <= 32 * 128 * 127), one
//      multiply-add (two roundings without FMA), Q4_1's min term, then a running f32 sum over nb
//      blocks and one more add per depth block of 32 blocks (accumulation through C). Each term
//      is perturbed by at most (nb + 6) roundings of relative size u, so
//          |y - ref| <= (nb + 6) * 2u * S,  S = sum_k |w_k| |d_x q_k|
//      (for Q4_1, S uses |d u_k| + |m| instead of |w_k|: its two partial sums may cancel). Any
//      wrong index, sign, nibble or scale is O(|y|) and fails it.
//  (b) Against the F32 GEMM on the dequantized weights (gemm_nt, the WeightFormat::f32 path).
//      The 8-bit activation rounding changes each x_k by at most d_x / 2 = max|x_block| / 254
//      (round to nearest), so
//          |y - y_f32| <= sum_b (max|x_b| / 254) * sum_{k in b} |w_k| + (a)'s bound
//                         + K * 2u * sum_k |w_k x_k| (gemm_nt's own f32 rounding).
//  Refusal: K not a multiple of 32 is a shape_error naming the tensor.
// Backbone bound: see StoredVsF32 below.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "lmembed/backbone/backbone.hpp"
#include "lmembed/backbone/qgemm.hpp"
#include "lmembed/cpu/qkernels.hpp"

namespace {

using namespace lmembed;
using io::DType;
namespace fs = std::filesystem;

/// Random GGML blocks: rows x k values of type t (f16 scales, every quant value possible,
/// -128 included for Q8_0).
std::vector<std::byte> random_blocks(DType t, std::int64_t rows, std::int64_t k,
                                     std::mt19937& rng) {
  const std::int64_t nb = k / 32, bb = io::block_bytes(t);
  std::vector<std::byte> out(static_cast<std::size_t>(rows * nb * bb));
  std::uniform_real_distribution<float> scale(0.002f, 0.03f), mn(-0.3f, 0.05f);
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::int64_t i = 0; i < rows * nb; ++i) {
    std::byte* b = out.data() + i * bb;
    auto put16 = [&](std::size_t at, float v) {
      const std::uint16_t h = io::float_to_half(v);
      std::memcpy(b + at, &h, 2);
    };
    put16(0, scale(rng));
    std::size_t q0 = 2;
    if (t == DType::q4_1) {
      put16(2, mn(rng));
      q0 = 4;
    }
    for (std::size_t j = q0; j < static_cast<std::size_t>(bb); ++j)
      b[j] = static_cast<std::byte>(byte(rng));
  }
  return out;
}

/// Random activations with the shapes a forward pass feeds: mostly N(0, 1), some outliers, one
/// all-zero block (scale 0).
Matrix random_acts(std::int64_t m, std::int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> n01(0.0f, 1.0f);
  Matrix x(m, k);
  for (std::int64_t i = 0; i < x.size(); ++i) x.data()[i] = n01(rng);
  for (std::int64_t i = 0; i < m; i += 3) x(i, (i * 7) % k) *= 20.0f;
  if (k >= 64) x.block(0, 32, 1, 32).setZero();
  return x;
}

struct Level {
  cpu::Level level;
  bool vnni;
};

/// Every quantized kernel table this CPU can run.
std::vector<Level> levels() {
  std::vector<Level> out;
  for (cpu::Level l : {cpu::Level::generic, cpu::Level::avx2, cpu::Level::avx512})
    if (cpu::supported(l)) {
      out.push_back({l, false});
      if (l == cpu::Level::avx512 && cpu::features().avx512vnni) out.push_back({l, true});
    }
  return out;
}

/// Restores the dispatch level after a test that changes it.
struct LevelGuard {
  cpu::Level saved = cpu::level();
  ~LevelGuard() { cpu::set_level(saved); }
};

struct Shape3 {
  std::int64_t m, n, k;
  int threads;
};

void check_gemm(DType t, const Shape3& s, const Level& lv, bool accumulate) {
  SCOPED_TRACE(std::string(io::to_string(t)) + " m " + std::to_string(s.m) + " n " +
               std::to_string(s.n) + " k " + std::to_string(s.k) + " threads " +
               std::to_string(s.threads) + " level " + cpu::qtable(lv.level, lv.vnni).name +
               (accumulate ? " accumulate" : ""));
  cpu::set_level(lv.level);
  const cpu::QOps& ops = cpu::qtable(lv.level, lv.vnni);
  std::mt19937 rng(static_cast<unsigned>(s.m * 131 + s.n * 7 + s.k + static_cast<int>(t)));
  const auto blocks = random_blocks(t, s.n, s.k, rng);
  auto w = detail::QuantWeight::zeros(t, s.n, s.k, "w");
  w.pack_rows(blocks.data(), s.n, 0);
  // The packed layout decodes to exactly what io::quant decodes from the file's blocks.
  const Matrix wd = w.dequantize();
  Matrix wf(s.n, s.k);
  for (std::int64_t r = 0; r < s.n; ++r)
    io::quant::dequantize_row(t, blocks.data() + r * w.row_bytes(), s.k, wf.data() + r * s.k);
  ASSERT_EQ(std::memcmp(wd.data(), wf.data(), sizeof(float) * wf.size()), 0);

  const Matrix x = random_acts(s.m, s.k, rng);
  Matrix c0(s.m, s.n);
  for (std::int64_t i = 0; i < c0.size(); ++i) c0.data()[i] = accumulate ? 0.25f * (i % 5) : 0.0f;
  Matrix y = c0;
  detail::QuantActs acts;
  detail::qgemm_nt(x.data(), s.k, s.m, w, y.data(), s.n, accumulate, s.threads, acts, &ops);
  // F32 product on the dequantized weights (the WeightFormat::f32 path).
  Matrix yf = c0;
  detail::GemmScratch gs;
  detail::gemm_nt(x.data(), s.k, s.m, detail::PackedWeight::from(wf), yf.data(), s.n, accumulate, 1,
                  gs);
  // The kernel's own activation rounding.
  detail::QuantActs ref_acts;
  ref_acts.quantize(x.data(), s.k, s.m, s.k, ops, 1);
  const std::int64_t nb = s.k / 32;
  const double u = std::ldexp(1.0, -24);
  double worst_a = 0, worst_b = 0, rel_b = 0, max_y = 0;
  for (std::int64_t i = 0; i < s.m; ++i)
    for (std::int64_t j = 0; j < s.n; ++j) {
      double ref = c0(i, j), S = std::abs(c0(i, j)), wx = 0, act_err = 0;
      for (std::int64_t b = 0; b < nb; ++b) {
        const double dx = ref_acts.d[static_cast<std::size_t>(i * nb + b)];
        double sw = 0;
        for (std::int64_t kk = b * 32; kk < b * 32 + 32; ++kk) {
          const double xq = dx * ref_acts.q[static_cast<std::size_t>(i * s.k + kk)];
          const double wv = wf(j, kk);
          ref += wv * xq;
          double mag = std::abs(wv);
          if (t == DType::q4_1) {  // |d u| + |m| of this value
            const double m = w.m[static_cast<std::size_t>(((j / 16) * nb + b) * 16 + j % 16)];
            mag = std::abs(wv - m) + std::abs(m);
          }
          S += mag * std::abs(xq);
          wx += std::abs(wv * x(i, kk));
          sw += std::abs(wv);
        }
        act_err += dx / 2 * sw;
      }
      const double tol_a = (nb + 6) * 2 * u * S + 1e-30;
      const double diff_a = std::abs(y(i, j) - ref);
      EXPECT_LE(diff_a, tol_a) << "exact check at (" << i << ", " << j << ")";
      // (1 + 1e-4): q = nearest(x * fl(1 / d)), not of x / d: a tie may round the other way.
      const double tol_b = act_err * (1 + 1e-4) + tol_a + s.k * 2 * u * wx;
      const double diff_b = std::abs(static_cast<double>(y(i, j)) - yf(i, j));
      EXPECT_LE(diff_b, tol_b) << "vs F32 at (" << i << ", " << j << ")";
      worst_a = std::max(worst_a, diff_a / tol_a);
      worst_b = std::max(worst_b, diff_b / tol_b);
      rel_b = std::max(rel_b, diff_b);
      max_y = std::max(max_y, std::abs(static_cast<double>(yf(i, j))));
    }
  if (s.m * s.n >= 1000)
    std::printf(
        "  %-5s %-10s m %4lld n %4lld k %4lld: exact/bound %.2g, vs f32 %.2g of bound, "
        "max|diff| / max|y| %.2g\n",
        io::to_string(t), ops.name, static_cast<long long>(s.m), static_cast<long long>(s.n),
        static_cast<long long>(s.k), worst_a, worst_b, rel_b / std::max(max_y, 1e-30));
}

const std::vector<Shape3> kShapes = {
    {1, 16, 32, 1},       // one row, one panel, one block
    {1, 7, 96, 1},        // n below a panel, odd block count
    {5, 33, 64, 1},       // m below the tile, n past two panels
    {13, 50, 1056, 1},    // k = 33 blocks: past the 32-block depth step
    {8, 64, 2080, 1},     // m = the tile, k = 65 blocks
    {300, 48, 128, 1},    // m past the 256-row task block
    {260, 200, 1088, 2},  // two threads, ragged everything
};

class QGemm : public ::testing::TestWithParam<DType> {};

TEST_P(QGemm, MatchesExactAndF32ReferencesAtEveryLevel) {
  LevelGuard guard;
  for (const Level& lv : levels())
    for (const Shape3& s : kShapes) check_gemm(GetParam(), s, lv, false);
}

TEST_P(QGemm, Accumulates) {
  LevelGuard guard;
  for (const Level& lv : levels()) check_gemm(GetParam(), {9, 40, 160, 1}, lv, true);
}

TEST_P(QGemm, CurrentLevelDispatch) {
  // qgemm_nt without an explicit table runs cpu::qops(): the current level, VNNI where present.
  LevelGuard guard;
  for (cpu::Level l : {cpu::Level::generic, cpu::Level::avx2, cpu::Level::avx512}) {
    if (!cpu::supported(l)) continue;
    cpu::set_level(l);
    EXPECT_EQ(&cpu::qops(), &cpu::qtable(l, cpu::features().avx512vnni));
    std::mt19937 rng(5);
    const auto blocks = random_blocks(GetParam(), 20, 64, rng);
    auto w = detail::QuantWeight::zeros(GetParam(), 20, 64, "w");
    w.pack_rows(blocks.data(), 20, 0);
    const Matrix x = random_acts(3, 64, rng);
    Matrix a(3, 20), b(3, 20);
    detail::QuantActs acts;
    detail::qgemm_nt(x.data(), 64, 3, w, a.data(), 20, false, 1, acts);
    detail::qgemm_nt(x.data(), 64, 3, w, b.data(), 20, false, 1, acts, &cpu::qops());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, QGemm, ::testing::Values(DType::q8_0, DType::q4_0, DType::q4_1),
                         [](const auto& info) { return std::string(io::to_string(info.param)); });

TEST(QGemmActs, EveryLevelQuantizesLikeGenericAndWithinHalfAStep) {
  std::mt19937 rng(3);
  const Matrix x = random_acts(37, 160, rng);
  detail::QuantActs ref;
  ref.quantize(x.data(), 160, 37, 160, cpu::qtable(cpu::Level::generic, false), 1);
  for (std::int64_t i = 0; i < 37; ++i)
    for (std::int64_t k = 0; k < 160; ++k) {
      const float d = ref.d[static_cast<std::size_t>(i * 5 + k / 32)];
      const int q = ref.q[static_cast<std::size_t>(i * 160 + k)];
      ASSERT_LE(std::abs(static_cast<double>(x(i, k)) - static_cast<double>(d) * q),
                d * (0.5 + 1e-5) + 1e-30);
    }
  for (const Level& lv : levels()) {
    detail::QuantActs got;
    got.quantize(x.data(), 160, 37, 160, cpu::qtable(lv.level, lv.vnni), 1);
    EXPECT_TRUE(std::equal(ref.q.begin(), ref.q.begin() + 37 * 160, got.q.begin()))
        << cpu::qtable(lv.level, lv.vnni).name;
    EXPECT_EQ(std::memcmp(ref.d.data(), got.d.data(), 37 * 5 * sizeof(float)), 0);
    EXPECT_TRUE(std::equal(ref.s.begin(), ref.s.begin() + 37 * 5, got.s.begin()));
    EXPECT_EQ(std::memcmp(ref.ds.data(), got.ds.data(), 37 * 5 * sizeof(float)), 0);
  }
}

TEST(QGemmRefusal, KNotAMultipleOf32NamesTheTensor) {
  for (DType t : {DType::q8_0, DType::q4_0, DType::q4_1}) {
    try {
      (void)detail::QuantWeight::zeros(t, 16, 48, "blk.3.attn_q.weight");
      ADD_FAILURE() << "K = 48 accepted";
    } catch (const shape_error& e) {
      EXPECT_NE(std::string(e.what()).find("blk.3.attn_q.weight"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("48"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW((void)detail::QuantWeight::zeros(DType::q6_k, 16, 256, "x"), shape_error);
}

TEST(QGemmRefusal, PermutedRowsLandWhereThePermutationSays) {
  // pack_rows with a row map (the q/k un-permutation) moves whole rows.
  std::mt19937 rng(11);
  const auto blocks = random_blocks(DType::q4_1, 32, 64, rng);
  const auto perm = detail::interleaved_to_neox_rows(2, 16);
  auto w = detail::QuantWeight::zeros(DType::q4_1, 32, 64, "w");
  w.pack_rows(blocks.data(), 32, 0, &perm);
  const Matrix got = w.dequantize();
  Matrix src(32, 64);
  for (std::int64_t r = 0; r < 32; ++r)
    io::quant::dequantize_row(DType::q4_1, blocks.data() + r * w.row_bytes(), 64,
                              src.data() + r * 64);
  const Matrix want = detail::interleaved_to_neox(src, 2, 16);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * want.size()), 0);
}

// --- a random small Llama in a GGUF -------------------------------------------------------------

/// Minimal GGUF v3 writer: metadata (u32, f32, string) and tensors (bytes of a GGML type).
struct GgufWriter {
  std::vector<std::byte> meta;
  std::uint64_t n_kv = 0;
  struct T {
    std::string name;
    std::vector<std::uint64_t> ne;  // innermost first
    std::uint32_t type;
    std::vector<std::byte> data;
  };
  std::vector<T> tensors;

  template <class V>
  static void put(std::vector<std::byte>& b, V v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof(V));
  }
  static void str(std::vector<std::byte>& b, const std::string& s) {
    put<std::uint64_t>(b, s.size());
    for (char c : s) b.push_back(static_cast<std::byte>(c));
  }
  void u32(const std::string& k, std::uint32_t v) {
    str(meta, k);
    put<std::uint32_t>(meta, 4);
    put(meta, v);
    ++n_kv;
  }
  void f32(const std::string& k, float v) {
    str(meta, k);
    put<std::uint32_t>(meta, 6);
    put(meta, v);
    ++n_kv;
  }
  void string(const std::string& k, const std::string& v) {
    str(meta, k);
    put<std::uint32_t>(meta, 8);
    str(meta, v);
    ++n_kv;
  }
  void write(const fs::path& path) const {
    std::vector<std::byte> b;
    for (char c : std::string("GGUF")) b.push_back(static_cast<std::byte>(c));
    put<std::uint32_t>(b, 3);
    put<std::uint64_t>(b, tensors.size());
    put<std::uint64_t>(b, n_kv);
    b.insert(b.end(), meta.begin(), meta.end());
    std::uint64_t off = 0;
    for (const T& t : tensors) {
      str(b, t.name);
      put<std::uint32_t>(b, static_cast<std::uint32_t>(t.ne.size()));
      for (auto d : t.ne) put(b, d);
      put(b, t.type);
      put(b, off);
      off += (t.data.size() + 31) / 32 * 32;
    }
    b.resize((b.size() + 31) / 32 * 32);
    for (const T& t : tensors) {
      b.insert(b.end(), t.data.begin(), t.data.end());
      b.resize((b.size() + 31) / 32 * 32);
    }
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
};

std::uint32_t ggml_id(DType t) {
  switch (t) {
    case DType::f32:
      return 0;
    case DType::q4_0:
      return 2;
    case DType::q4_1:
      return 3;
    default:
      return 8;  // q8_0
  }
}

/// Quantizes random N(0, sigma) rows to GGML blocks of t (llama.cpp's reference quantizers).
std::vector<std::byte> quantize_random(DType t, std::int64_t rows, std::int64_t k, float sigma,
                                       std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, sigma);
  const std::int64_t nb = k / 32, bb = io::block_bytes(t);
  std::vector<std::byte> out(static_cast<std::size_t>(rows * nb * bb));
  for (std::int64_t i = 0; i < rows * nb; ++i) {
    float x[32];
    for (float& v : x) v = nd(rng);
    std::byte* b = out.data() + i * bb;
    auto put16 = [&](std::size_t at, float v) {
      const std::uint16_t h = io::float_to_half(v);
      std::memcpy(b + at, &h, 2);
    };
    if (t == DType::q8_0) {
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::abs(v));
      const float d = amax / 127, id = d ? 1 / d : 0;
      put16(0, d);
      for (int j = 0; j < 32; ++j)
        b[2 + j] = static_cast<std::byte>(static_cast<std::int8_t>(std::lround(x[j] * id)));
    } else if (t == DType::q4_0) {
      float mx = 0;
      for (float v : x)
        if (std::abs(v) > std::abs(mx)) mx = v;
      const float d = mx / -8, id = d ? 1 / d : 0;
      put16(0, d);
      for (int j = 0; j < 16; ++j) {
        const int a = std::min(15, static_cast<int>(x[j] * id + 8.5f));
        const int c = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
        b[2 + j] = static_cast<std::byte>(a | (c << 4));
      }
    } else {
      float lo = x[0], hi = x[0];
      for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
      const float d = (hi - lo) / 15, id = d ? 1 / d : 0;
      put16(0, d);
      put16(2, lo);
      for (int j = 0; j < 16; ++j) {
        const int a = std::min(15, static_cast<int>((x[j] - lo) * id + 0.5f));
        const int c = std::min(15, static_cast<int>((x[j + 16] - lo) * id + 0.5f));
        b[4 + j] = static_cast<std::byte>(a | (c << 4));
      }
    }
  }
  return out;
}

std::vector<std::byte> f32_bytes(const std::vector<float>& v) {
  std::vector<std::byte> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

/// A 2-layer Llama (d 64, 4 / 2 heads of 16, FFN 96, vocab 50). Layer 0: q/k/v Q4_0, o Q8_0,
/// gate/up/down Q4_1. Layer 1 mixes types inside the fused weights (q/k Q4_0 + v Q8_0, gate
/// Q4_1 + up Q4_0: both fall back to F32) and has o Q4_1, down Q8_0. Token embedding Q8_0.
fs::path write_random_llama() {
  const fs::path path = fs::temp_directory_path() / "lmembed-test-qllama.gguf";
  constexpr std::int64_t d = 64, ff = 96, heads = 4, kv = 2, hd = 16, vocab = 50;
  std::mt19937 rng(2024);
  GgufWriter g;
  g.string("general.architecture", "llama");
  g.u32("llama.embedding_length", d);
  g.u32("llama.block_count", 2);
  g.u32("llama.attention.head_count", heads);
  g.u32("llama.attention.head_count_kv", kv);
  g.u32("llama.feed_forward_length", ff);
  g.u32("llama.context_length", 128);
  g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.f32("llama.rope.freq_base", 10000.0f);
  auto norm = [&](const std::string& name) {
    std::uniform_real_distribution<float> u(0.8f, 1.2f);
    std::vector<float> v(d);
    for (float& x : v) x = u(rng);
    g.tensors.push_back({name, {static_cast<std::uint64_t>(d)}, 0, f32_bytes(v)});
  };
  auto mat = [&](const std::string& name, DType t, std::int64_t rows, std::int64_t cols) {
    const float sigma = 1.0f / std::sqrt(static_cast<float>(cols));
    g.tensors.push_back({name,
                         {static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)},
                         ggml_id(t),
                         quantize_random(t, rows, cols, sigma, rng)});
  };
  mat("token_embd.weight", DType::q8_0, vocab, d);
  norm("output_norm.weight");
  const DType types[2][7] = {
      {DType::q4_0, DType::q4_0, DType::q4_0, DType::q8_0, DType::q4_1, DType::q4_1, DType::q4_1},
      {DType::q4_0, DType::q4_0, DType::q8_0, DType::q4_1, DType::q4_1, DType::q4_0, DType::q8_0}};
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    norm(b + "attn_norm.weight");
    norm(b + "ffn_norm.weight");
    mat(b + "attn_q.weight", types[l][0], heads * hd, d);
    mat(b + "attn_k.weight", types[l][1], kv * hd, d);
    mat(b + "attn_v.weight", types[l][2], kv * hd, d);
    mat(b + "attn_output.weight", types[l][3], d, heads * hd);
    mat(b + "ffn_gate.weight", types[l][4], ff, d);
    mat(b + "ffn_up.weight", types[l][5], ff, d);
    mat(b + "ffn_down.weight", types[l][6], d, ff);
  }
  g.write(path);
  return path;
}

TokenBatch random_batch() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::int32_t> id(0, 49);
  TokenBatch b;
  for (int len : {1, 5, 17, 40, 9}) {
    std::vector<std::int32_t> ids(static_cast<std::size_t>(len));
    for (auto& x : ids) x = id(rng);
    b.add(ids);
  }
  return b;
}

// BOUND (per-layer states, stored vs f32). One 8-bit rounding of a block of Gaussian-like
// activations perturbs each value by a uniform error of at most d/2, d = max|x_b| / 127 ~ 2.5
// sigma / 127 for 32 values: rms error d / sqrt(12) ~ 0.57 % of sigma, and a product with
// weights independent of that error keeps the same relative rms (0.57 %) in its output. A
// layer's residual stream receives the o and down products of inputs that went through 2
// roundings each (q|k|v then o; gate|up then down), so after L = 2 layers 4 rounded products add
// independent errors of ~0.57 % x sqrt(2) each: ~1.6 % rms relative to the state, the typical
// per-vector figure of the measure max|diff| / max|ref| (d = 64 values: max|diff| ~2.5x its rms
// and max|ref| ~2.5x the state's rms; measured median 1.6-1.8 %). The test takes the worst of 144
// token-layer vectors per attention, a tail ~2.5x the typical one (~4 %), and bounds it at 2x
// that, 8e-2, with cosine >= 0.997 (1 - cos ~ rel^2 / 2). A wrong row, scale or sign is O(1).
// Measured: printed by the test (causal 2.7e-2, bidirectional 4.0e-2, min cosine 0.99945).
constexpr double kStateBound = 8e-2, kMinCos = 0.997;

TEST(StoredVsF32, PerLayerStatesWithinTheDerivedBound) {
  const fs::path path = write_random_llama();
  const Backbone stored = Backbone::load(path, WeightFormat::stored);
  const Backbone f32 = Backbone::load(path, WeightFormat::f32);
  EXPECT_LT(stored.weight_bytes() * 2, f32.weight_bytes());
  const TokenBatch batch = random_batch();
  const CaptureSpec all{CaptureLayers::all, CaptureTokens::all};
  for (AttentionKind att : {AttentionKind::causal, AttentionKind::bidirectional}) {
    const Captured a = stored.forward(batch, att, all), b = f32.forward(batch, att, all);
    ASSERT_EQ(a.states.rows(), b.states.rows());
    double min_cos = 1;
    std::vector<double> rel;
    for (std::int64_t r = 0; r < a.states.rows(); ++r) {
      const Eigen::VectorXd x = a.states.row(r).cast<double>().transpose();
      const Eigen::VectorXd y = b.states.row(r).cast<double>().transpose();
      rel.push_back((x - y).cwiseAbs().maxCoeff() / y.cwiseAbs().maxCoeff());
      min_cos = std::min(min_cos, x.dot(y) / (x.norm() * y.norm()));
    }
    std::sort(rel.begin(), rel.end());
    const double worst = rel.back();
    std::printf(
        "  %s: stored vs f32, %zu token-layer vectors: rel diff median %.2e, max %.2e, "
        "min cosine %.6f\n",
        to_string(att), rel.size(), rel[rel.size() / 2], worst, min_cos);
    EXPECT_LE(worst, kStateBound);
    EXPECT_GE(min_cos, kMinCos);
  }
  fs::remove(path);
}

TEST(StoredVsF32, F32IsTodaysPathBitForBit) {
  // WeightFormat::f32 gives the states of the F32 weights io::to_matrix decodes, packed by
  // from_weights (the path every F32 file and every earlier release took).
  const fs::path path = write_random_llama();
  const Backbone f32 = Backbone::load(path, WeightFormat::f32);
  const io::GgufFile f = io::GgufFile::open(path);
  ModelWeights w;
  w.tok_embd = io::to_matrix(f.tensor("token_embd.weight"));
  w.out_norm = io::to_matrix(f.tensor("output_norm.weight"));
  w.layers.resize(2);
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerWeights& L = w.layers[static_cast<std::size_t>(l)];
    L.attn_norm = io::to_matrix(f.tensor(b + "attn_norm.weight"));
    L.ffn_norm = io::to_matrix(f.tensor(b + "ffn_norm.weight"));
    L.wq = io::to_matrix(f.tensor(b + "attn_q.weight"));
    L.wk = io::to_matrix(f.tensor(b + "attn_k.weight"));
    L.wv = io::to_matrix(f.tensor(b + "attn_v.weight"));
    L.wo = io::to_matrix(f.tensor(b + "attn_output.weight"));
    L.w_gate = io::to_matrix(f.tensor(b + "ffn_gate.weight"));
    L.w_up = io::to_matrix(f.tensor(b + "ffn_up.weight"));
    L.w_down = io::to_matrix(f.tensor(b + "ffn_down.weight"));
  }
  const Backbone today = Backbone::from_weights(io::config_from_gguf(f), std::move(w));
  const TokenBatch batch = random_batch();
  const CaptureSpec all{CaptureLayers::all, CaptureTokens::all};
  const Captured a = f32.forward(batch, AttentionKind::causal, all);
  const Captured b = today.forward(batch, AttentionKind::causal, all);
  ASSERT_EQ(a.states.size(), b.states.size());
  EXPECT_EQ(std::memcmp(a.states.data(), b.states.data(), sizeof(float) * a.states.size()), 0);
  fs::remove(path);
}

TEST(StoredVsF32, F32FileIsTheSameEitherWay) {
  // stories260K is F32: `stored` keeps nothing quantized and gives the F32 states bit for bit.
  const fs::path model = fs::path(LMEMBED_DATA_DIR) / "models/stories260K.gguf";
  const Backbone a = Backbone::load(model, WeightFormat::stored);
  const Backbone b = Backbone::load(model, WeightFormat::f32);
  EXPECT_EQ(a.weight_bytes(), b.weight_bytes());
  TokenBatch batch;
  batch.add(std::vector<std::int32_t>{1, 20, 30, 40, 50, 60});
  const CaptureSpec all{CaptureLayers::all, CaptureTokens::all};
  const Captured x = a.forward(batch, AttentionKind::causal, all);
  const Captured y = b.forward(batch, AttentionKind::causal, all);
  EXPECT_EQ(std::memcmp(x.states.data(), y.states.data(), sizeof(float) * x.states.size()), 0);
}

TEST(StoredVsF32, WeightFormatNames) {
  EXPECT_EQ(parse_weight_format("stored"), WeightFormat::stored);
  EXPECT_EQ(parse_weight_format("f32"), WeightFormat::f32);
  EXPECT_STREQ(to_string(WeightFormat::stored), "stored");
  EXPECT_THROW((void)parse_weight_format("q4", "--weights"), config_error);
}

}  // namespace
