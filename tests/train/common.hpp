// Helpers shared by the tests in tests/train: temp folders, text matrices, the PyTorch reference.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lmembed/core/tensor.hpp"

namespace lmembed_test {

namespace fs = std::filesystem;

/// A fresh folder under the build tree, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::path(LMEMBED_BINARY_DIR) / "tests" / "tmp-train" /
           (name + "-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
            std::to_string(std::random_device{}()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// Writes a matrix as whitespace-separated text with full precision (numpy.loadtxt reads it).
template <class M>
void write_txt(const fs::path& file, const M& m) {
  std::ofstream f(file);
  f << std::setprecision(17);
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    for (Eigen::Index j = 0; j < m.cols(); ++j) f << (j ? " " : "") << double(m(i, j));
    f << "\n";
  }
}

/// Reads a text matrix of known column count.
inline lmembed::MatrixX<double> read_txt(const fs::path& file, Eigen::Index cols) {
  std::ifstream f(file);
  if (!f) throw std::runtime_error("cannot read " + file.string());
  std::vector<double> v;
  double x;
  while (f >> x) v.push_back(x);
  if (cols == 0 || v.size() % cols) throw std::runtime_error("bad matrix in " + file.string());
  lmembed::MatrixX<double> m(Eigen::Index(v.size()) / cols, cols);
  for (std::size_t i = 0; i < v.size(); ++i)
    m(Eigen::Index(i) / cols, Eigen::Index(i) % cols) = v[i];
  return m;
}

/// True when Debian's python3 with torch is present (else the reference tests skip).
inline bool have_torch() {
  static const bool ok =
      std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
  return ok;
}

/// Runs tests/train/torch_ref.py MODE DIR... (one interpreter for all); true on success.
inline bool run_torch_ref(const std::string& mode, const std::vector<fs::path>& dirs) {
  std::string cmd =
      "/usr/bin/python3 " + std::string(LMEMBED_SOURCE_DIR) + "/tests/train/torch_ref.py " + mode;
  for (const auto& d : dirs) cmd += " '" + d.string() + "'";
  return std::system(cmd.c_str()) == 0;
}

/// Largest |a - b| relative to the largest |b| (a matrix-level relative error).
template <class A, class B>
double rel_err(const A& a, const B& b) {
  const double scale = std::max(1e-300, double(b.cwiseAbs().maxCoeff()));
  return double((a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff()) /
         scale;
}

}  // namespace lmembed_test
