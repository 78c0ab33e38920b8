// xtensor interop: xtensor inputs and outputs cross into lmembed without copies where the
// layouts allow (checked by data pointers), and values are equal to the Eigen path.
#include <gtest/gtest.h>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "lmembed/interop/xtensor.hpp"
#include "lmembed/io/gguf.hpp"

using namespace lmembed;
using lmembed::interop::as_matrix;
using lmembed::interop::to_matrix;
using lmembed::interop::to_xtensor;

namespace {
// An lmembed-style function on Eigen matrices: row-wise L2 normalization then cosine matrix.
Matrix cosine(const Eigen::Ref<const Matrix>& a, const Eigen::Ref<const Matrix>& b) {
  const Matrix na = a.rowwise().normalized();
  const Matrix nb = b.rowwise().normalized();
  return na * nb.transpose();
}
}  // namespace

TEST(Xtensor, InputsAreViewedWithoutCopies) {
  xt::xtensor<float, 2> x = xt::reshape_view(xt::arange<float>(12.0f), {3, 4});
  const auto m = as_matrix(x);
  EXPECT_EQ(m.data(), x.data());  // zero copy
  EXPECT_EQ(m.rows(), 3);
  EXPECT_EQ(m.cols(), 4);
  EXPECT_EQ(m(2, 1), 9.0f);
  // 3-D tensors flatten their inner dimensions, as io::to_matrix does.
  xt::xtensor<float, 3> y = xt::reshape_view(xt::arange<float>(24.0f), {2, 3, 4});
  const auto my = as_matrix(y);
  EXPECT_EQ(my.data(), y.data());
  EXPECT_EQ(my.cols(), 12);
  EXPECT_EQ(my(1, 11), 23.0f);
  // Writes through the mutable view land in the xtensor.
  as_matrix(x)(0, 0) = 42.0f;
  EXPECT_EQ(x(0, 0), 42.0f);
  // Column-major tensors cannot be viewed; to_matrix copies them in the right order.
  xt::xtensor<float, 2, xt::layout_type::column_major> c = x;
  EXPECT_THROW((void)as_matrix(c), shape_error);
  EXPECT_EQ(to_matrix(c), Matrix(as_matrix(x)));
  // Lazy expressions evaluate into a Matrix.
  const Matrix t = to_matrix(xt::transpose(x) * 2.0f);
  EXPECT_EQ(t.rows(), 4);
  EXPECT_EQ(t(1, 2), 2.0f * x(2, 1));
}

TEST(Xtensor, ResultsComeBackWithoutCopies) {
  xt::xtensor<float, 2> a = {{1, 0, 0}, {1, 1, 0}, {0, 0, 2}};
  Matrix r = cosine(as_matrix(a), as_matrix(a));
  const float* buffer = r.data();
  interop::XMatrix x = to_xtensor(std::move(r));
  EXPECT_EQ(x.data(), buffer);  // the Matrix buffer now belongs to the xtensor container
  ASSERT_EQ(x.shape()[0], 3u);
  ASSERT_EQ(x.shape()[1], 3u);
  EXPECT_NEAR(x(0, 1), 1.0f / std::sqrt(2.0f), 1e-6f);
  EXPECT_NEAR(x(2, 2), 1.0f, 1e-6f);
  EXPECT_NEAR(x(0, 2), 0.0f, 1e-6f);
  // It is a full xtensor container: expressions, views, reductions.
  const xt::xtensor<float, 1> diag = xt::diagonal(x);
  EXPECT_NEAR(xt::sum(diag)(), 3.0f, 1e-5f);
  const xt::xtensor<float, 2> doubled = x * 2.0f;
  EXPECT_NEAR(doubled(1, 0), 2.0f / std::sqrt(2.0f), 1e-6f);
  EXPECT_EQ(interop::as_matrix(x).data(), buffer);
}

TEST(Xtensor, ModelTensorsAsXtensor) {
  const auto f =
      io::GgufFile::open(std::filesystem::path(LMEMBED_DATA_DIR) / "models/stories260K.gguf");
  const io::TensorView& t = f.tensor("token_embd.weight");
  const auto v = interop::view_xtensor<2>(t);
  EXPECT_EQ(static_cast<const void*>(v.data()), static_cast<const void*>(t.data.data()));
  EXPECT_EQ(v.shape()[0], 512u);
  EXPECT_EQ(v.shape()[1], 64u);
  const Matrix ref = io::to_matrix(t);
  EXPECT_EQ(v(17, 5), ref(17, 5));
  EXPECT_THROW((void)interop::view_xtensor<1>(t), shape_error);
  // Dequantized F16 copy straight into an xtensor.
  const auto h = io::GgufFile::open(std::filesystem::path(LMEMBED_DATA_DIR) /
                                    "golden/models/stories260K-f16.gguf");
  const xt::xtensor<float, 2> hx = to_xtensor<2>(h.tensor("token_embd.weight"));
  EXPECT_EQ(hx.shape()[0], 512u);
  EXPECT_NEAR(hx(17, 5), ref(17, 5), std::abs(ref(17, 5)) / 1024 + 1e-7f);
  EXPECT_THROW((void)interop::view_xtensor<2>(h.tensor("token_embd.weight")), format_error);
  EXPECT_THROW((void)to_xtensor<3>(h.tensor("token_embd.weight")), shape_error);
}
