// AdamW + linear warmup/decay schedule + gradient-norm clipping against PyTorch
// (torch.optim.AdamW, LambdaLR with HF's linear schedule, clip_grad_norm_).
#include <gtest/gtest.h>

#include <fstream>

#include "common.hpp"
#include "lmembed/train/optim.hpp"

using namespace lmembed;
using namespace lmembed_test;

namespace {

/// Stand-in with the fields of nn::Param that the optimizer uses.
template <class T>
struct TestParam {
  std::string name;
  MatrixX<T> value, grad;
  bool decay = true;
};

constexpr int rows = 5, cols = 6, steps = 9, warmup = 3;
constexpr double lr = 0.05, wd = 0.1;

void prepare(const fs::path& dir, double clip, MatrixX<double>& w0, MatrixX<double>& grads,
             MatrixX<double>& decay) {
  std::mt19937 rng(99);
  std::normal_distribution<double> nd;
  w0.resize(rows, cols);
  grads.resize(steps * rows, cols);
  decay.resize(rows, 1);
  for (Eigen::Index i = 0; i < w0.size(); ++i) w0.data()[i] = nd(rng);
  for (Eigen::Index i = 0; i < grads.size(); ++i) grads.data()[i] = nd(rng) * 0.7;
  for (int i = 0; i < rows; ++i) decay(i, 0) = (i % 2 == 0);
  write_txt(dir / "w0.txt", w0);
  write_txt(dir / "grads.txt", grads);
  write_txt(dir / "decay.txt", decay);
  std::ofstream o(dir / "opts.txt");
  o << "lr " << lr << "\nwd " << wd << "\nb1 0.9\nb2 0.98\neps 1e-6\nsteps " << steps
    << "\nwarmup " << warmup << "\nclip " << clip << "\n";
}

template <class T>
void check(const fs::path& dir, double clip, const MatrixX<double>& w0,
           const MatrixX<double>& grads, const MatrixX<double>& decay, double tol) {
  std::vector<TestParam<T>> ps(rows);
  std::vector<TestParam<T>*> list;
  for (int i = 0; i < rows; ++i) {
    ps[i].name = "p" + std::to_string(i);
    ps[i].value = w0.row(i).cast<T>();
    ps[i].decay = decay(i, 0) != 0;
    list.push_back(&ps[i]);
  }
  train::AdamWOptions o;
  o.beta2 = 0.98;
  o.eps = 1e-6;
  o.weight_decay = wd;
  train::AdamW<TestParam<T>> opt(list, o);
  std::vector<double> norms;
  for (int s = 0; s < steps; ++s) {
    for (int i = 0; i < rows; ++i) ps[i].grad = grads.row(s * rows + i).cast<T>();
    norms.push_back(train::clip_grad_norm(list, clip));
    opt.step(train::linear_schedule(lr, s, warmup, steps));
  }
  MatrixX<double> w(rows, cols);
  for (int i = 0; i < rows; ++i) w.row(i) = ps[i].value.template cast<double>();
  EXPECT_LE(rel_err(w, read_txt(dir / "w.txt", cols)), tol);
  const auto ref_norms = read_txt(dir / "norms.txt", 1);
  for (int s = 0; s < steps; ++s) EXPECT_NEAR(norms[s], ref_norms(s, 0), 1e-5 * ref_norms(s, 0));
  EXPECT_EQ(opt.steps(), steps);
}

}  // namespace

// With and without clipping, double and float, against one torch run.
TEST(AdamW, MatchesTorchWithScheduleAndClipping) {
  if (!have_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch is not available";
  TempDir a("adamw-clip"), b("adamw-noclip");
  MatrixX<double> w0, grads, decay;
  prepare(a.path, 1.0, w0, grads, decay);
  prepare(b.path, 0.0, w0, grads, decay);
  ASSERT_TRUE(run_torch_ref("adamw", {a.path, b.path}));
  check<double>(a.path, 1.0, w0, grads, decay, 1e-10);
  check<double>(b.path, 0.0, w0, grads, decay, 1e-10);
  check<float>(a.path, 1.0, w0, grads, decay, 1e-5);
}

TEST(LinearSchedule, WarmupThenLinearDecay) {
  EXPECT_DOUBLE_EQ(train::linear_schedule(1.0, 0, 4, 12), 0.0);
  EXPECT_DOUBLE_EQ(train::linear_schedule(1.0, 2, 4, 12), 0.5);
  EXPECT_DOUBLE_EQ(train::linear_schedule(1.0, 4, 4, 12), 1.0);
  EXPECT_DOUBLE_EQ(train::linear_schedule(1.0, 8, 4, 12), 0.5);
  EXPECT_DOUBLE_EQ(train::linear_schedule(1.0, 12, 4, 12), 0.0);
  EXPECT_DOUBLE_EQ(train::linear_schedule(2.0, 0, 0, 10), 2.0);
}

TEST(AdamW, StateRoundTripsAndChecksShapes) {
  TestParam<float> a{"a", MatrixX<float>::Ones(2, 3), MatrixX<float>::Ones(2, 3), true};
  std::vector<TestParam<float>*> l{&a};
  train::AdamW<TestParam<float>> opt(l);
  opt.step(0.1);
  auto st = opt.state();
  train::AdamW<TestParam<float>> opt2(l);
  opt2.load_state(st, opt.steps());
  EXPECT_EQ(opt2.state().at("adamw.v.a"), st.at("adamw.v.a"));
  st["adamw.m.a"] = MatrixX<float>::Zero(3, 3);
  EXPECT_THROW(opt2.load_state(st, 1), shape_error);
  st.erase("adamw.m.a");
  EXPECT_THROW(opt2.load_state(st, 1), config_error);
}
