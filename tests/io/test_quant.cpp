// GGML block formats: hand-made blocks of each type decoded to values worked out by hand from
// the layouts in docs/formats.md (the bit-exact comparison with gguf-py is test_quants_gguf.py),
// the DType facts, the scale check and a quantized tensor read through a GGUF file.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lmembed/io/dtype.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/io/quant.hpp"
#include "lmembed/io/tensor_view.hpp"

using namespace lmembed;
using namespace lmembed::io;

namespace {

using Block = std::vector<std::byte>;

Block block_of(DType t) {
  return Block(static_cast<std::size_t>(block_bytes(t)), std::byte{0});
}
void put16(Block& b, std::size_t at, std::uint16_t v) {
  std::memcpy(b.data() + at, &v, 2);
}
void put8(Block& b, std::size_t at, int v) {
  b[at] = static_cast<std::byte>(v & 0xFF);
}
std::vector<float> decode(DType t, const Block& b) {
  std::vector<float> y(static_cast<std::size_t>(block_size(t)), -999.0f);
  quant::dequantize_blocks(t, b.data(), 1, y.data());
  return y;
}

constexpr std::uint16_t kOne = 0x3C00, kHalf = 0x3800, kQuarter = 0x3400, kMinusTwo = 0xC000,
                        kMinusEighth = 0xB000;

TEST(Quant, DTypeFacts) {
  struct F {
    DType t;
    const char* name;
    std::int64_t bs, bb;
  };
  for (const F& f : {F{DType::q4_0, "Q4_0", 32, 18}, F{DType::q4_1, "Q4_1", 32, 20},
                     F{DType::q5_0, "Q5_0", 32, 22}, F{DType::q5_1, "Q5_1", 32, 24},
                     F{DType::q8_0, "Q8_0", 32, 34}, F{DType::q2_k, "Q2_K", 256, 84},
                     F{DType::q3_k, "Q3_K", 256, 110}, F{DType::q4_k, "Q4_K", 256, 144},
                     F{DType::q5_k, "Q5_K", 256, 176}, F{DType::q6_k, "Q6_K", 256, 210}}) {
    EXPECT_STREQ(to_string(f.t), f.name);
    EXPECT_EQ(parse_dtype(f.name), f.t);
    EXPECT_EQ(block_size(f.t), f.bs) << f.name;
    EXPECT_EQ(block_bytes(f.t), f.bb) << f.name;
    EXPECT_TRUE(is_quantized(f.t));
    EXPECT_EQ(byte_size(f.t, 3 * f.bs), 3 * f.bb);
    EXPECT_FALSE(byte_size(f.t, f.bs + 1).has_value());
  }
  EXPECT_EQ(parse_dtype("q4_k"), DType::q4_k);
  EXPECT_FALSE(is_quantized(DType::f16));
  EXPECT_THROW(parse_dtype("Q8_K"), config_error);
  for (DType t : all_dtypes) EXPECT_EQ(try_parse_dtype(to_string(t)), t);
}

TEST(Quant, Q4_0) {
  Block b = block_of(DType::q4_0);
  put16(b, 0, kHalf);
  for (int j = 0; j < 16; ++j) put8(b, 2 + j, j | ((15 - j) << 4));
  const auto y = decode(DType::q4_0, b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * static_cast<float>(j - 8)) << j;
    EXPECT_EQ(y[16 + j], 0.5f * static_cast<float>(7 - j)) << j;
  }
}

TEST(Quant, Q4_1) {
  Block b = block_of(DType::q4_1);
  put16(b, 0, kQuarter);
  put16(b, 2, kMinusTwo);
  for (int j = 0; j < 16; ++j) put8(b, 4 + j, j | ((15 - j) << 4));
  const auto y = decode(DType::q4_1, b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.25f * static_cast<float>(j) - 2.0f) << j;
    EXPECT_EQ(y[16 + j], 0.25f * static_cast<float>(15 - j) - 2.0f) << j;
  }
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[15], 1.75f);
}

TEST(Quant, Q5_0) {
  Block b = block_of(DType::q5_0);
  put16(b, 0, kOne);
  const std::uint32_t qh = 0xAAAA5555u;  // fifth bit set for even j < 16 and odd j >= 16
  std::memcpy(b.data() + 2, &qh, 4);
  for (int j = 0; j < 16; ++j) put8(b, 6 + j, j | ((15 - j) << 4));
  const auto y = decode(DType::q5_0, b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], static_cast<float>((j | (j % 2 == 0 ? 16 : 0)) - 16)) << j;
    EXPECT_EQ(y[16 + j], static_cast<float>(((15 - j) | (j % 2 == 1 ? 16 : 0)) - 16)) << j;
  }
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], -15.0f);
  EXPECT_EQ(y[16], -1.0f);
  EXPECT_EQ(y[17], 14.0f);
}

TEST(Quant, Q5_1) {
  Block b = block_of(DType::q5_1);
  put16(b, 0, kHalf);
  put16(b, 2, kOne);
  const std::uint32_t qh = 0xFFFF0000u;  // the upper 16 values get +16
  std::memcpy(b.data() + 4, &qh, 4);
  for (int j = 0; j < 16; ++j) put8(b, 8 + j, j | (j << 4));
  const auto y = decode(DType::q5_1, b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * static_cast<float>(j) + 1.0f) << j;
    EXPECT_EQ(y[16 + j], 0.5f * static_cast<float>(j + 16) + 1.0f) << j;
  }
  EXPECT_EQ(y[31], 16.5f);
}

TEST(Quant, Q8_0) {
  Block b = block_of(DType::q8_0);
  put16(b, 0, kMinusEighth);
  for (int j = 0; j < 32; ++j) put8(b, 2 + j, 8 * j - 128);
  const auto y = decode(DType::q8_0, b);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], static_cast<float>(16 - j)) << j;
}

TEST(Quant, Q2_K) {
  Block b = block_of(DType::q2_k);
  for (int i = 0; i < 16; ++i) put8(b, i, i | ((15 - i) << 4));  // scale i, min 15 - i
  for (int k = 0; k < 64; ++k) put8(b, 16 + k, 0xE4);            // 2-bit fields 0, 1, 2, 3
  put16(b, 80, kOne);
  put16(b, 82, kHalf);
  const auto y = decode(DType::q2_k, b);
  for (int i = 0; i < 256; ++i) {
    const int sub = i / 16, q = (i / 32) % 4;
    EXPECT_EQ(y[i], static_cast<float>(sub * q) - 0.5f * static_cast<float>(15 - sub)) << i;
  }
  EXPECT_EQ(y[0], -7.5f);
  EXPECT_EQ(y[40], -4.5f);
  EXPECT_EQ(y[255], 45.0f);
}

TEST(Quant, Q3_K) {
  Block b = block_of(DType::q3_k);
  for (int l = 0; l < 32; ++l) put8(b, l, 0x0F);       // high bit set for values < 128 only
  for (int k = 0; k < 64; ++k) put8(b, 32 + k, 0xE4);  // 2-bit fields 0, 1, 2, 3
  for (int k = 0; k < 8; ++k) put8(b, 96 + k, k | ((k + 8) << 4));  // low 4 scale bits: j
  for (int k = 8; k < 12; ++k) put8(b, 96 + k, 0xFF);  // high 2 bits 3: scale j + 48 - 32
  put16(b, 108, kOne);
  const auto y = decode(DType::q3_k, b);
  for (int i = 0; i < 256; ++i) {
    const int sc = 16 + i / 16, q = (i / 32) % 4 - (i >= 128 ? 4 : 0);
    EXPECT_EQ(y[i], static_cast<float>(sc * q)) << i;
  }
  EXPECT_EQ(y[200], -56.0f);
}

// Q4_K/Q5_K scale bytes: sub-blocks 0-3 scale 1, 2, 3, 4 and mins 3, 0, 0, 0; sub-block 4 takes
// its low bits from byte 8 and its high bits from bytes 0 and 4: scale 21, min 34.
void k_scales(Block& b) {
  const int s[12] = {0x41, 2, 3, 4, 0x83, 0, 0, 0, 0x25, 0, 0, 0};
  for (int k = 0; k < 12; ++k) put8(b, 4 + k, s[k]);
  put16(b, 0, kOne);
  put16(b, 2, kOne);
}
constexpr float kQ4kWant[8] = {1 * 10 - 3, 2 * 5, 3 * 10, 4 * 5, 21 * 10 - 34, 0, 0, 0};

TEST(Quant, Q4_K) {
  Block b = block_of(DType::q4_k);
  k_scales(b);
  for (int k = 0; k < 128; ++k) put8(b, 16 + k, 0x5A);  // low nibble 10, high 5
  const auto y = decode(DType::q4_k, b);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(y[i], kQ4kWant[i / 32]) << i;
}

TEST(Quant, Q5_K) {
  Block b = block_of(DType::q5_k);
  k_scales(b);
  for (int l = 0; l < 32; ++l) put8(b, 16 + l, 0x10);   // fifth bit for sub-block 4 only
  for (int k = 0; k < 128; ++k) put8(b, 48 + k, 0x5A);  // low nibble 10, high 5
  const auto y = decode(DType::q5_k, b);
  for (int i = 0; i < 256; ++i)
    EXPECT_EQ(y[i], i / 32 == 4 ? 21.0f * 26 - 34 : kQ4kWant[i / 32]) << i;
}

TEST(Quant, Q6_K) {
  Block b = block_of(DType::q6_k);
  for (int k = 0; k < 128; ++k) put8(b, k, 0x21);        // low nibble 1, high nibble 2
  for (int k = 0; k < 64; ++k) put8(b, 128 + k, 0xE4);   // 2-bit fields 0, 1, 2, 3
  for (int i = 0; i < 16; ++i) put8(b, 192 + i, i - 8);  // int8 scales -8 .. 7
  put16(b, 208, kHalf);
  const auto y = decode(DType::q6_k, b);
  for (int i = 0; i < 256; ++i) {
    const int s = (i / 32) % 4, lo = s < 2 ? 1 : 2, q = (lo | (s << 4)) - 32;
    EXPECT_EQ(y[i], 0.5f * static_cast<float>(i / 16 - 8) * static_cast<float>(q)) << i;
  }
  EXPECT_EQ(y[0], 124.0f);
  EXPECT_EQ(y[100], -18.0f);
}

// The scale fields the check looks at, per type (independent of quant::scale_offsets).
TEST(Quant, FirstBadScaleFindsEveryScaleField) {
  struct S {
    DType t;
    std::vector<int> at;
  };
  for (const S& s :
       {S{DType::q4_0, {0}}, S{DType::q4_1, {0, 2}}, S{DType::q5_0, {0}}, S{DType::q5_1, {0, 2}},
        S{DType::q8_0, {0}}, S{DType::q2_k, {80, 82}}, S{DType::q3_k, {108}},
        S{DType::q4_k, {0, 2}}, S{DType::q5_k, {0, 2}}, S{DType::q6_k, {208}}}) {
    const auto bb = static_cast<std::size_t>(block_bytes(s.t));
    std::vector<std::byte> data(3 * bb, std::byte{0xFF});  // quants all ones
    for (std::size_t blk = 0; blk < 3; ++blk)
      for (int a : s.at) std::memcpy(data.data() + blk * bb + a, &kOne, 2);
    EXPECT_FALSE(quant::first_bad_scale(s.t, data.data(), 3).has_value()) << to_string(s.t);
    for (int a : s.at)
      for (std::uint16_t bad : {std::uint16_t{0x7C00}, std::uint16_t{0xFC00}, std::uint16_t{0x7E00},
                                std::uint16_t{0xFFFF}}) {
        std::vector<std::byte> d = data;
        std::memcpy(d.data() + 2 * bb + a, &bad, 2);
        const auto r = quant::first_bad_scale(s.t, d.data(), 3);
        ASSERT_TRUE(r.has_value()) << to_string(s.t) << " at " << a;
        EXPECT_EQ(r->block, 2);
        EXPECT_EQ(r->offset, 2 * bb + static_cast<std::size_t>(a));
        EXPECT_EQ(r->bits, bad);
      }
    // Subnormal and zero scales are fine.
    std::vector<std::byte> d = data;
    const std::uint16_t sub = 0x0001;
    for (int a : s.at) std::memcpy(d.data() + a, &sub, 2);
    EXPECT_FALSE(quant::first_bad_scale(s.t, d.data(), 3).has_value());
  }
}

// A 2 x 64 Q4_1 tensor in a GGUF file: shape, rows and values through to_matrix.
TEST(Quant, Q4_1TensorThroughGguf) {
  std::vector<std::byte> f;
  auto put = [&](auto v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    f.insert(f.end(), p, p + sizeof v);
  };
  f.insert(f.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
  put(std::uint32_t{3});
  put(std::uint64_t{1});
  put(std::uint64_t{0});
  put(std::uint64_t{1});
  f.push_back(std::byte{'w'});
  put(std::uint32_t{2});
  put(std::uint64_t{64});
  put(std::uint64_t{2});
  put(std::uint32_t{3});  // GGML_TYPE_Q4_1
  put(std::uint64_t{0});
  f.resize((f.size() + 31) / 32 * 32, std::byte{0});
  for (int blk = 0; blk < 4; ++blk) {  // block k: d = 1, m = k, nibbles j / 15 - j
    Block b = block_of(DType::q4_1);
    put16(b, 0, kOne);
    put16(b, 2, float_to_half(static_cast<float>(blk)));
    for (int j = 0; j < 16; ++j) put8(b, 4 + j, j | ((15 - j) << 4));
    f.insert(f.end(), b.begin(), b.end());
  }
  const auto g = GgufFile::from_bytes(f, "q41.gguf");
  const TensorView& t = g.tensor("w");
  EXPECT_EQ(t.dtype, DType::q4_1);
  EXPECT_EQ(t.shape, (Shape{2, 64}));
  const Matrix m = to_matrix(t);
  ASSERT_EQ(m.rows(), 2);
  ASSERT_EQ(m.cols(), 64);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 64; ++c) {
      const int blk = 2 * r + c / 32, j = c % 32;
      EXPECT_EQ(m(r, c), static_cast<float>((j < 16 ? j : 31 - j) + blk)) << r << "," << c;
    }
  std::vector<float> row(64);
  quant::dequantize_row(DType::q4_1, t.data.data() + 2 * 20, 64, row.data());
  for (int c = 0; c < 64; ++c) EXPECT_EQ(row[static_cast<std::size_t>(c)], m(1, c));
}

}  // namespace
