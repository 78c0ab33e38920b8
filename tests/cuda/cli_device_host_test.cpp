// `--device cuda` plumbing that runs on any machine (plain C++, always built):
//  - examples/lmembed/device.hpp: parse_device, and the errors of require_device when the
//    build has no CUDA (no hooks) or the machine has no GPU (the driver's reason);
//  - the eval runner's injection point for retrieval scoring on another device
//    (EvalOptions::search_topk + TopK::add_hits): given a top-k with eval::search_topk's
//    contract (ties to the smaller row), the metrics equal the CPU TopK path exactly, ties in
//    trec_eval's order (document id descending) included, over several corpus blocks.
// The GPU's own top-k is checked against eval::search_topk, ties included, in
// cuda_device_test (CudaRetrieval.TopKEqualsTheCpuIncludingTies); the CLI end to end in
// test_cli_device.py.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "device.hpp"
#include "lmembed/eval/runner.hpp"
#include "lmembed/eval/topk.hpp"

namespace {

using namespace lmembed;
namespace cli = lmembed::cli;

TEST(CliDevice, ParseDevice) {
  EXPECT_EQ(cli::parse_device("cpu"), cli::Device::cpu);
  EXPECT_EQ(cli::parse_device("cuda"), cli::Device::cuda);
  EXPECT_STREQ(cli::to_string(cli::Device::cuda), "cuda");
  try {
    (void)cli::parse_device("gpu");
    FAIL() << "no error for 'gpu'";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("valid: cpu, cuda"), std::string::npos) << e.what();
  }
}

TEST(CliDevice, RequireDeviceSaysWhyCudaIsUnavailable) {
  cli::DeviceHooks& h = cli::device_hooks();
  const cli::DeviceHooks saved = h;
  h = {};  // this executable links no .cu file: a build without CUDA
  EXPECT_FALSE(cli::built_with_cuda());
  EXPECT_NO_THROW(cli::require_device(cli::Device::cpu));
  try {
    cli::require_device(cli::Device::cuda);
    FAIL() << "no error without CUDA";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA (configure with -DLMEMBED_CUDA=ON)"),
              std::string::npos)
        << e.what();
  }
  // A CUDA build on a machine without a GPU: the driver's reason is in the message.
  h.no_device_reason = [] { return std::string("cudaErrorNoDevice: no CUDA-capable device"); };
  try {
    cli::require_device(cli::Device::cuda);
    FAIL() << "no error without a GPU";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("cudaErrorNoDevice: no CUDA-capable device"),
              std::string::npos)
        << e.what();
  }
  h.no_device_reason = [] { return std::string(); };  // a GPU is usable
  EXPECT_NO_THROW(cli::require_device(cli::Device::cuda));
  h = saved;
}

// Coarse embeddings (entries 0 / +-0.5, four non-zeros: unit norm exactly) make exact score
// ties between different texts; duplicate texts tie too.
Matrix coarse_embedding(const std::string& text) {
  std::uint32_t x = 2166136261u;
  for (unsigned char c : text) x = (x ^ c) * 16777619u;
  Matrix e = Matrix::Zero(1, 8);
  for (int n = 0; n < 4;) {
    x = x * 1664525u + 1013904223u;
    const int j = static_cast<int>((x >> 8) % 8);
    if (e(0, j) != 0) continue;
    e(0, j) = (x >> 20) & 1 ? 0.5f : -0.5f;
    ++n;
  }
  return e;
}

eval::Task tie_task() {
  eval::RetrievalData d;
  // Index order and trec_eval's order (id descending) disagree: "d2" > "d10" as strings.
  const std::vector<std::string> texts = {"apple", "pear", "plum", "fig",  "kiwi", "apple",
                                          "lime",  "date", "pear", "yuzu", "fig",  "sloe",
                                          "apple", "nut",  "plum", "kiwi", "lime"};
  for (std::size_t i = 0; i < texts.size(); ++i) {
    // Distinct, neither sorted nor reverse-sorted. (Built with += : GCC 12 reports a false
    // -Wrestrict on "literal" + std::string&&.)
    std::string id = "d";
    id += std::to_string((i * 7) % texts.size() + 1);
    if (i % 3 == 0) id += "x";
    d.doc_ids.push_back(id);
    d.docs.push_back(texts[i]);
  }
  const std::vector<std::string> queries = {"apple", "pear", "fig", "kiwi", "lime", "q6", "q7"};
  for (std::size_t i = 0; i < queries.size(); ++i) {
    std::string id = "q";
    id += std::to_string(i);
    d.query_ids.push_back(id);
    d.queries.push_back(queries[i]);
    // One copy of each duplicated text is relevant: where ties fall changes nDCG/MRR.
    d.qrels[d.query_ids.back()][d.doc_ids[(i * 5 + 12) % texts.size()]] = 1;
    d.qrels[d.query_ids.back()][d.doc_ids[i]] = 2;
  }
  eval::Task t;
  t.name = "ties";
  t.data = std::move(d);
  return t;
}

TEST(CliDevice, InjectedSearchGivesTheCpuMetricsWithTrecEvalTies) {
  const eval::Task task = tie_task();
  const eval::Embedder embed = [](std::span<const std::string> texts, std::string_view) {
    Matrix m(static_cast<Eigen::Index>(texts.size()), 8);
    for (std::size_t i = 0; i < texts.size(); ++i)
      m.row(static_cast<Eigen::Index>(i)) = coarse_embedding(texts[i]);
    return m;
  };
  for (std::int64_t block : {3, 5, 17, 100}) {
    for (std::int64_t k : {1, 4, 100}) {
      eval::EvalOptions cpu;
      cpu.progress = false;
      cpu.corpus_block = block;
      cpu.top_k = k;
      eval::EvalOptions dev = cpu;
      int calls = 0;
      dev.search_topk = [&calls](const Matrix& q, const Matrix& c, std::int64_t kk) {
        ++calls;
        return eval::search_topk(q, c, kk, 2);  // ties to the smaller row, as the GPU's
      };
      const eval::TaskResult a = eval::evaluate(task, embed, cpu);
      const eval::TaskResult b = eval::evaluate(task, embed, dev);
      EXPECT_EQ(calls, (17 + block - 1) / block);
      ASSERT_EQ(a.per_example.size(), b.per_example.size());
      for (std::size_t i = 0; i < a.per_example.size(); ++i)
        EXPECT_EQ(a.per_example[i], b.per_example[i]) << "query " << i << " block " << block;
      EXPECT_EQ(a.metrics, b.metrics) << "block " << block << " k " << k;
    }
  }
}

TEST(CliDevice, TheTieOrderMattersInThisData) {
  // A top-k that breaks ties the other way (larger row first) changes the metrics here, so
  // the test above would catch a runner that did not hand blocks over in trec_eval's order.
  const eval::Task task = tie_task();
  const eval::Embedder embed = [](std::span<const std::string> texts, std::string_view) {
    Matrix m(static_cast<Eigen::Index>(texts.size()), 8);
    for (std::size_t i = 0; i < texts.size(); ++i)
      m.row(static_cast<Eigen::Index>(i)) = coarse_embedding(texts[i]);
    return m;
  };
  eval::EvalOptions cpu;
  cpu.progress = false;
  cpu.top_k = 10;
  eval::EvalOptions reversed = cpu;
  reversed.search_topk = [](const Matrix& q, const Matrix& c, std::int64_t k) {
    const Matrix r = c.colwise().reverse();  // rows in reverse order
    auto hits = eval::search_topk(q, r, k);
    for (auto& row : hits)
      for (auto& h : row) h.doc = c.rows() - 1 - h.doc;
    return hits;
  };
  const eval::TaskResult a = eval::evaluate(task, embed, cpu);
  const eval::TaskResult b = eval::evaluate(task, embed, reversed);
  EXPECT_NE(a.per_example, b.per_example);
}

TEST(CliDevice, AddHitsKeepsTheBestUnderTheTieRank) {
  Matrix q = Matrix::Zero(1, 2);
  eval::TopK t(q, 2);
  t.set_tie_rank({3, 0, 2, 1});
  const std::vector<eval::Hit> a = {{0, 1.0f}, {1, 0.5f}}, b = {{2, 1.0f}, {3, 0.5f}};
  t.add_hits(0, a);
  t.add_hits(0, b);
  const auto r = t.result(0);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].doc, 2);  // score 1, tie rank 2 beats doc 0's 3
  EXPECT_EQ(r[1].doc, 0);
}

}  // namespace
