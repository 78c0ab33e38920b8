// JSONL examples and the SNLI / STS-B converters, on the bundled real files.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "common.hpp"
#include "lmembed/train/data.hpp"

using namespace lmembed;
using namespace lmembed_test;

namespace {
void write(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}
}  // namespace

TEST(Examples, ReadsThePapersFormatIncludingItsSpelling) {
  TempDir dir("data");
  write(dir.path / "a.jsonl",
        "{\"query\": \"q1\", \"positive\": \"p1\", \"negative\": \"n1\"}\n"
        "\n"
        "{\"query\": \"q2\", \"postive\": \"p2\"}\r\n"
        "{\"query\": \"q3\", \"positive\": \"p3\", \"negative\": [\"a\", \"b\"], "
        "\"query_instruction\": \"Find: \", \"document_instruction\": \"Doc: \"}\n"
        "{\"query\": \"q4\", \"positive\": \"p4\", \"negative\": null}");
  train::ReadStats st;
  const auto ex = train::read_examples(dir.path / "a.jsonl", {}, &st);
  ASSERT_EQ(ex.size(), 4u);
  EXPECT_EQ(st.lines, 4);
  EXPECT_EQ(st.skipped, 0);
  EXPECT_EQ(ex[0].negatives, std::vector<std::string>{"n1"});
  EXPECT_EQ(ex[1].positive, "p2");
  EXPECT_TRUE(ex[1].negatives.empty());
  EXPECT_EQ(ex[2].negatives, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ex[2].query_instruction, "Find: ");
  EXPECT_EQ(ex[2].document_instruction, "Doc: ");
  EXPECT_TRUE(ex[3].negatives.empty());
  // Round trip through write_examples.
  train::write_examples(dir.path / "b.jsonl", ex);
  EXPECT_EQ(train::read_examples(dir.path / "b.jsonl"), ex);
}

TEST(Examples, MalformedLinesNameTheLineOrAreCountedWithSkipBad) {
  TempDir dir("data");
  const std::string good = "{\"query\": \"q\", \"positive\": \"p\"}\n";
  write(dir.path / "bad.jsonl", good + good + "{\"query\": \"q\"}\n" + good +
                                    "{\"query\": \"q\", \"positive\": 3}\n" + "not json\n" +
                                    "{\"query\": \"q\", \"positive\": \"p\", \"negative\": [1]}\n");
  try {
    train::read_examples(dir.path / "bad.jsonl");
    FAIL() << "no throw";
  } catch (const format_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("line 3"), std::string::npos) << m;
    EXPECT_NE(m.find("positive"), std::string::npos) << m;
    EXPECT_NE(m.find("bad.jsonl"), std::string::npos) << m;
    EXPECT_EQ(e.offset(), 2 * good.size());
  }
  train::ReadStats st;
  const auto ex = train::read_examples(dir.path / "bad.jsonl", {true}, &st);
  EXPECT_EQ(ex.size(), 3u);
  EXPECT_EQ(st.skipped, 4);
  EXPECT_EQ(st.lines, 7);
  ASSERT_EQ(st.first_errors.size(), 4u);
  EXPECT_NE(st.first_errors[2].find("line 6"), std::string::npos) << st.first_errors[2];
}

TEST(Converters, SnliTripletsAreEntailedAndContradictingHypothesesOfTheirPremise) {
  const fs::path dir = fs::path(LMEMBED_DATA_DIR) / "datasets" / "snli_dev";
  const auto ex = train::convert_snli(dir);
  // Independent reading of the three files.
  std::ifstream f1(dir / "s1.dev"), f2(dir / "s2.dev"), fl(dir / "labels.dev");
  std::string a, b, l;
  std::set<std::tuple<std::string, std::string, std::string>> rows;
  std::map<std::string, std::pair<int, int>> counts;  // premise -> (entail, contra)
  auto trim = [](std::string s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
    return s;
  };
  int lines = 0;
  while (std::getline(f1, a) && std::getline(f2, b) && std::getline(fl, l)) {
    ++lines;
    a = trim(a), b = trim(b), l = trim(l);
    rows.insert({a, b, l});
    if (l == "entailment") ++counts[a].first;
    if (l == "contradiction") ++counts[a].second;
  }
  EXPECT_EQ(lines, 9842);
  std::size_t expected = 0;
  for (const auto& [p, c] : counts)
    if (c.second > 0) expected += std::size_t(c.first);
  EXPECT_EQ(ex.size(), expected);
  EXPECT_GT(ex.size(), 3000u);
  for (const auto& e : ex) {
    ASSERT_EQ(e.negatives.size(), 1u);
    EXPECT_TRUE(rows.count({e.query, e.positive, "entailment"})) << e.query << " | " << e.positive;
    EXPECT_TRUE(rows.count({e.query, e.negatives[0], "contradiction"})) << e.query;
  }
}

TEST(Converters, StsbPairsWithScoreAtLeastFour) {
  const fs::path csv = fs::path(LMEMBED_DATA_DIR) / "datasets" / "stsbenchmark" / "sts-train.csv";
  const auto ex = train::convert_stsb(csv, 4.0);
  const auto all = train::read_stsb(csv);
  EXPECT_EQ(all.size(), 5749u);
  std::size_t expected = 0;
  for (const auto& p : all) expected += p.score >= 4.0;
  EXPECT_EQ(ex.size(), expected);
  ASSERT_FALSE(ex.empty());
  EXPECT_EQ(ex[0].query, "A plane is taking off.");
  EXPECT_EQ(ex[0].positive, "An air plane is taking off.");
  EXPECT_DOUBLE_EQ(all[1].score, 3.8);  // "A man is playing a large flute." (not kept)
  EXPECT_NE(ex[1].query, "A man is playing a large flute.");
}

TEST(Converters, BadInputsNameFileAndLine) {
  TempDir dir("data");
  write(dir.path / "s.csv", "g\tf\t2012\t1\t4.5\ta\tb\ng\tf\t2012\t2\tx\ta\tb\n");
  try {
    train::convert_stsb(dir.path / "s.csv");
    FAIL();
  } catch (const format_error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  write(dir.path / "s1.dev", "a\nb\n");
  write(dir.path / "s2.dev", "c\nd\n");
  write(dir.path / "labels.dev", "entailment\nmaybe\n");
  EXPECT_THROW(train::convert_snli(dir.path), format_error);
}
