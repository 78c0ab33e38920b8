// Unit tests of lmembed::compare: the design registry, results.json round trip, the
// statistics glue (families, Holm, orientation) and the report's content and honesty.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <regex>
#include <set>
#include <string>

#include "lmembed/compare/compare.hpp"
#include "lmembed/compare/design.hpp"
#include "lmembed/compare/report.hpp"
#include "lmembed/compare/results.hpp"
#include "lmembed/compare/results_json.hpp"
#include "lmembed/compare/shared_pass.hpp"
#include "lmembed/compare/stage.hpp"
#include "lmembed/compare/stats.hpp"

using namespace lmembed;
using namespace lmembed::compare;

namespace {

// A synthetic comparison: `n_designs` designs over the given tasks, per-example scores drawn
// around a per-design offset (design i is better by `effect` * i).
Results synthetic(const std::vector<std::pair<std::string, std::string>>& tasks,
                  std::size_t n_designs, double effect, std::int64_t n_examples = 200) {
  Results r;
  r.run.lmembed_version = "test";
  r.run.model = "stories260K.gguf";
  r.run.model_arch = "llama";
  r.run.d_model = 64;
  r.run.n_layers = 5;
  r.run.n_train = 1000;
  r.run.steps = 50;
  r.run.batch = 32;
  r.run.lr = 1e-3;
  r.run.train_file = "snli.jsonl";
  for (const auto& [t, c] : tasks) r.run.tasks.push_back({t, c, "score", n_examples});
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0.0, 0.3);
  for (std::size_t i = 0; i < n_designs; ++i) {
    DesignResult d;
    d.design = std::string(kDesigns[i].name);
    d.attention = std::string(kDesigns[i].attention);
    d.pooling = std::string(kDesigns[i].pooling);
    d.capture = to_string(kDesigns[i].capture);
    if (kDesigns[i].trainable())
      for (int s = 0; s <= 50; s += 5) d.loss.push_back({s, 3.0 - 0.02 * s - 0.1 * double(i)});
    for (const auto& [t, c] : tasks) {
      TaskScore ts;
      ts.task = t;
      ts.category = c;
      ts.main_metric = "score";
      double sum = 0;
      for (std::int64_t k = 0; k < n_examples; ++k) {
        ts.per_example.push_back(0.5 + effect * double(i) + noise(rng));
        sum += ts.per_example.back();
      }
      ts.main_score = sum / double(n_examples);
      ts.metrics["score"] = ts.main_score;
      d.tasks.push_back(std::move(ts));
    }
    d.stages.push_back({d.design, "eval", 1.5, 10 << 20, ""});
    r.designs.push_back(std::move(d));
  }
  return r;
}

}  // namespace

TEST(Designs, RegistryMatchesThePaper) {
  EXPECT_EQ(kDesigns.size(), 10u);
  const Design& m1 = find_design("eos-causal");
  EXPECT_EQ(m1.paper, "model 1");
  EXPECT_FALSE(m1.trainable());
  EXPECT_EQ(m1.capture, (CaptureSpec{CaptureLayers::last, CaptureTokens::last}));
  const Design& m2 = find_design("lastlayer-causal");
  EXPECT_EQ(m2.head, HeadKind::multi_layer);
  EXPECT_EQ(m2.capture, (CaptureSpec{CaptureLayers::last, CaptureTokens::last}));
  const Design& m3 = find_design("multilayer-causal");
  EXPECT_EQ(m3.capture, (CaptureSpec{CaptureLayers::all, CaptureTokens::last}));
  EXPECT_EQ(m3.attention, "causal");
  const Design& m4t = find_design("latent-bidirectional");
  EXPECT_EQ(m4t.head, HeadKind::latent);
  EXPECT_EQ(m4t.capture, (CaptureSpec{CaptureLayers::last, CaptureTokens::all}));
  EXPECT_TRUE(m4t.bidirectional());
  const Design& m4c = find_design("perceiver-tokens-bidirectional");
  EXPECT_EQ(m4c.head, HeadKind::multi_layer);
  EXPECT_EQ(m4c.capture, (CaptureSpec{CaptureLayers::last, CaptureTokens::all}));
  const Design& m5 = find_design("multilayer-bidirectional");
  EXPECT_EQ(m5.capture, (CaptureSpec{CaptureLayers::all, CaptureTokens::mean}));
  EXPECT_TRUE(m5.bidirectional());
  EXPECT_EQ(find_design("mean-causal").capture,
            (CaptureSpec{CaptureLayers::last, CaptureTokens::mean}));
  EXPECT_EQ(find_design("latent-causal").attention, "causal");
  EXPECT_EQ(find_design("eos-bidirectional").head, HeadKind::none);
}

TEST(Designs, GroupsAndErrors) {
  auto paper = parse_designs("paper");
  ASSERT_EQ(paper.size(), 6u);  // five models, model 4 in both forms
  EXPECT_EQ(paper[0].name, "eos-causal");
  EXPECT_EQ(paper[5].name, "multilayer-bidirectional");
  auto demo = parse_designs("paper, mean-causal,mean-bidirectional,paper");
  EXPECT_EQ(demo.size(), 8u);
  EXPECT_EQ(parse_designs("all").size(), 10u);
  EXPECT_EQ(parse_designs("extra").size(), 4u);
  EXPECT_THROW(parse_designs("eos-causal,bogus"), config_error);
  EXPECT_THROW(parse_designs(" , "), config_error);
  try {
    find_design("eos");
    FAIL();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("latent-causal"), std::string::npos) << e.what();
  }
}

TEST(Designs, CachesAreSharedExactlyBetweenDesignsConsumingTheSameStates) {
  EXPECT_EQ(cache_key(find_design("eos-causal")), cache_key(find_design("lastlayer-causal")));
  EXPECT_EQ(cache_key(find_design("latent-bidirectional")),
            cache_key(find_design("perceiver-tokens-bidirectional")));
  EXPECT_NE(cache_key(find_design("eos-causal")), cache_key(find_design("eos-bidirectional")));
  EXPECT_NE(cache_key(find_design("mean-causal")), cache_key(find_design("eos-causal")));
  EXPECT_EQ(cache_key(find_design("multilayer-causal")), "causal.all_layers.last_token");
  std::set<std::string> keys;
  for (const auto& d : parse_designs("all")) keys.insert(cache_key(d));
  EXPECT_EQ(keys.size(), 8u);  // 10 designs, two pairs share
}

TEST(Stats, WilcoxonFamiliesHolmAndOrientation) {
  // 6 tasks in one category: design 1 better everywhere -> exact p = 2/2^6 = 0.03125.
  std::vector<std::pair<std::string, std::string>> tasks;
  for (int i = 0; i < 6; ++i) tasks.push_back({"t" + std::to_string(i), "sts"});
  Results r = synthetic(tasks, 3, 0.2, 50);
  r.tests = compute_tests(r, {500, 1});
  const PairTest* t = r.find_test("category", "sts", "lastlayer-causal", "eos-causal");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->a, "lastlayer-causal");  // b is the earlier design (the baseline)
  EXPECT_EQ(t->b, "eos-causal");
  EXPECT_EQ(t->test, "wilcoxon");
  EXPECT_EQ(t->n, 6);
  EXPECT_GT(t->mean_diff, 0.1);
  EXPECT_NEAR(t->p, 0.03125, 1e-12);
  EXPECT_NEAR(t->min_p, 0.03125, 1e-12);
  // Family of 3 pairs, all p = 0.03125: Holm multiplies the smallest by 3, then monotone.
  EXPECT_NEAR(t->p_holm, 0.09375, 1e-12);
  // Bootstrap per task: clear effect of 0.2 with sd 0.3 over 50 examples.
  const PairTest* b = r.find_test("task", "t0", "lastlayer-causal", "eos-causal");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->test, "bootstrap");
  EXPECT_EQ(b->n, 50);
  EXPECT_LT(b->ci_low, b->mean_diff);
  EXPECT_GT(b->ci_high, b->mean_diff);
  EXPECT_GE(b->p, 1.0 / 500);  // floored at 1/B
  // Counts: 6 tasks x 3 pairs bootstrap + 3 category + 3 all.
  EXPECT_EQ(r.tests.size(), 6u * 3 + 3 + 3);
}

TEST(Stats, HolmWithinEachFamilyOnly) {
  std::vector<PairTest> ts(4);
  ts[0] = {"task", "x", "a", "b", "bootstrap", 10, 0, NAN, NAN, 0.01, NAN, NAN};
  ts[1] = {"task", "x", "a", "c", "bootstrap", 10, 0, NAN, NAN, 0.04, NAN, NAN};
  ts[2] = {"task", "y", "a", "b", "bootstrap", 10, 0, NAN, NAN, 0.01, NAN, NAN};
  ts[3] = {"task", "y", "a", "c", "bootstrap", 10, 0, NAN, NAN, NAN, NAN, NAN};
  apply_holm(ts);
  EXPECT_NEAR(ts[0].p_holm, 0.02, 1e-15);
  EXPECT_NEAR(ts[1].p_holm, 0.04, 1e-15);
  EXPECT_NEAR(ts[2].p_holm, 0.01, 1e-15);  // NaN is not part of the family
  EXPECT_TRUE(std::isnan(ts[3].p_holm));
}

TEST(Results, JsonRoundTripKeepsEveryNumber) {
  Results r = synthetic({{"sts-b", "sts"}, {"banking77", "classification"}}, 4, 0.05, 20);
  r.run.head_config["n_latents"] = "16";
  r.run.seed = 1234;
  r.tests = compute_tests(r, {200, 3});
  const auto dir = std::filesystem::path(LMEMBED_BINARY_DIR) / "tests" / "compare_roundtrip";
  std::filesystem::remove_all(dir);
  write_report(r, dir);
  Results back = load_results(dir / "results.json");
  ASSERT_EQ(back.designs.size(), r.designs.size());
  EXPECT_EQ(back.run.seed, 1234u);
  EXPECT_EQ(back.run.head_config.at("n_latents"), "16");
  EXPECT_EQ(back.designs[2].tasks[1].main_score, r.designs[2].tasks[1].main_score);
  EXPECT_TRUE(back.designs[2].tasks[1].per_example.empty());  // left to designs/*.json
  ASSERT_EQ(back.tests.size(), r.tests.size());
  for (std::size_t i = 0; i < r.tests.size(); ++i) {
    EXPECT_EQ(back.tests[i].p, r.tests[i].p);
    EXPECT_EQ(back.tests[i].p_holm, r.tests[i].p_holm);
    EXPECT_EQ(std::isnan(back.tests[i].ci_low), std::isnan(r.tests[i].ci_low));
  }
  EXPECT_EQ(back.designs[1].loss.size(), r.designs[1].loss.size());
  // Rendering the reloaded results gives the same report (what --report-only relies on).
  EXPECT_EQ(render_html(back), render_html(r));
  // Per-design resume files keep per-example scores.
  save_design(dir, r.designs[3]);
  auto d = load_design(dir, r.designs[3].design);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->tasks[0].per_example, r.designs[3].tasks[0].per_example);
  EXPECT_FALSE(load_design(dir, "mean-causal").has_value());
  // A damaged resume file is an error naming it, never silently redone.
  write_file_atomic(design_file(dir, "mean-causal"), std::string_view("{\"design\": "));
  try {
    load_design(dir, "mean-causal");
    FAIL();
  } catch (const format_error& e) {
    EXPECT_NE(std::string(e.what()).find("mean-causal.json"), std::string::npos) << e.what();
  }
  // Another schema is refused.
  write_file_atomic(dir / "other.json", std::string_view("{\"schema\": \"x/9\"}"));
  EXPECT_THROW(load_results(dir / "other.json"), config_error);
}

TEST(Report, HonestWhenNothingIsSignificant) {
  // Five single-task categories and no real effect: nothing may be claimed.
  Results r = synthetic({{"sts-b", "sts"},
                         {"banking77", "classification"},
                         {"banking77-clustering", "clustering"},
                         {"snli-pairs", "pair_classification"},
                         {"snli-retrieval", "retrieval"}},
                        8, 0.0, 100);
  r.tests = compute_tests(r, {1000, 5});
  const SignificanceCount c = count_significant(r);
  const std::string md = render_markdown(r);
  const std::string table = summary_table(r);
  const auto power = power_statement(r);
  std::string all_power;
  for (const auto& s : power) all_power += s + "\n";
  // One task per category: Wilcoxon impossible, said so.
  EXPECT_NE(all_power.find("have one task each: a Wilcoxon test over one task is impossible"),
            std::string::npos)
      << all_power;
  // Five tasks overall: 2/2^5 = 0.0625 > 0.05, said so.
  EXPECT_NE(all_power.find("0.0625"), std::string::npos) << all_power;
  EXPECT_NE(all_power.find("cannot reach significance"), std::string::npos) << all_power;
  if (c.holm == 0) {
    EXPECT_EQ(md.find("significantly better"), std::string::npos);
  }
  if (c.raw == 0) {
    EXPECT_NE(power.back().find("Nothing is significant"), std::string::npos);
    EXPECT_NE(table.find("no design differs significantly"), std::string::npos);
  }
  EXPECT_NE(table.find("mean-bidirectional"), std::string::npos);
}

TEST(Report, MarksSignificantDifferencesAgainstTheBaseline) {
  Results r = synthetic({{"sts-b", "sts"}}, 3, 0.3, 300);
  r.tests = compute_tests(r, {2000, 5});
  const Mark m = category_mark(r, "sts", "multilayer-causal");
  ASSERT_NE(m.test, nullptr);
  EXPECT_EQ(m.test->test, "bootstrap");  // one task: bootstrap decides
  EXPECT_TRUE(m.holm);
  EXPECT_GT(m.diff, 0.5);
  EXPECT_EQ(category_mark(r, "sts", "eos-causal").test, nullptr);
  const std::string table = summary_table(r);
  EXPECT_NE(table.find("multilayer-causal better than eos-causal"), std::string::npos) << table;
  const std::string html = render_html(r);
  EXPECT_NE(html.find("class=\"bar up\""), std::string::npos);
  EXPECT_NE(html.find("class=\"bar base\""), std::string::npos);
  EXPECT_NE(html.find("class=\"verdict sig\""), std::string::npos);
}

TEST(Report, HtmlIsSelfContainedAndEscaped) {
  Results r = synthetic({{"sts-b", "sts"}, {"x<script>", "cat&\""}}, 10, 0.01, 30);
  r.run.model = "<img src=x onerror=alert(1)>";
  r.tests = compute_tests(r, {100, 5});
  const std::string html = render_html(r);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x"), std::string::npos);
  // No reference that leaves the file: the only URL is the SVG namespace name.
  std::string stripped =
      std::regex_replace(html, std::regex("xmlns=\"http://www.w3.org/2000/svg\""), "");
  EXPECT_EQ(stripped.find("http"), std::string::npos);
  EXPECT_FALSE(std::regex_search(stripped, std::regex("<[^>]*\\s(src|href)=")));
  EXPECT_EQ(stripped.find("@import"), std::string::npos);
  EXPECT_EQ(stripped.find("url("), std::string::npos);
  // One bar chart per category, one loss chart.
  std::size_t charts = 0;
  for (std::size_t p = html.find("<svg class=\"chart bars\""); p != std::string::npos;
       p = html.find("<svg class=\"chart bars\"", p + 1))
    ++charts;
  EXPECT_EQ(charts, 2u);
  EXPECT_NE(html.find("<svg class=\"chart loss\""), std::string::npos);
  EXPECT_NE(html.find("<polyline"), std::string::npos);
}

TEST(Stage, RecordsWallTimeAndPeakMemory) {
  StageTimer t("eos-causal", "eval");
  std::vector<char> big(64 << 20, 1);  // touch 64 MiB
  volatile char sink = big[12345];
  (void)sink;
  const StageRecord s = t.finish();
  EXPECT_EQ(s.stage, "eval");
  EXPECT_GE(s.wall_s, 0.0);
  EXPECT_GT(s.peak_rss_bytes, 64ll << 20);
}

// ---------------------------------------------------------------- one backbone pass per mode

namespace {

bool same_bits(const Captured& a, const Captured& b) {
  return a.spec == b.spec && a.n_seq == b.n_seq && a.n_layers == b.n_layers && a.d == b.d &&
         a.offsets == b.offsets && a.pool_from == b.pool_from &&
         a.states.rows() == b.states.rows() && a.states.cols() == b.states.cols() &&
         std::memcmp(a.states.data(), b.states.data(), sizeof(float) * a.states.size()) == 0;
}

}  // namespace

TEST(SharedPass, ServesEveryDesignBitForBitWhatItsOwnForwardWouldReturn) {
  const auto model = std::filesystem::path(LMEMBED_DATA_DIR) / "models" / "stories260K.gguf";
  Backbone bb = Backbone::load(model);
  bb.set_threads(2);
  const Tokenizer tok = Tokenizer::load(model);
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"", "Once upon a time there was a little dog."},
      {"Retrieve a similar story", "The cat sat on the mat and looked at the sun."},
      {"", "Lily liked to play in the park with her friends every day after school."},
      {"Retrieve a similar story", "Tom"},
      {"", "A big red ball."},
      {"", "Once upon a time there was a little dog."},  // a duplicate within the batch
  };
  auto batch_of = [&](const std::vector<std::size_t>& which) {
    TokenBatch b;
    for (std::size_t i : which)
      compare::detail::add_text(
          b, compare::detail::tokenize_text(tok, texts[i].first, texts[i].second));
    return b;
  };
  const TokenBatch full = batch_of({0, 1, 2, 3, 4, 5});
  ASSERT_FALSE(full.pool_from.empty());
  const std::vector<CaptureSpec> specs = {{CaptureLayers::last, CaptureTokens::last},
                                          {CaptureLayers::last, CaptureTokens::mean},
                                          {CaptureLayers::last, CaptureTokens::all},
                                          {CaptureLayers::all, CaptureTokens::last},
                                          {CaptureLayers::all, CaptureTokens::mean}};
  for (AttentionKind att : {AttentionKind::causal, AttentionKind::bidirectional}) {
    PassNeeds needs;
    for (const auto& s : specs) needs.add(s);
    SharedPass pass(bb, att, needs);
    // Some texts first run in another batch, in another order: states must not depend on it.
    (void)pass.capture(batch_of({4, 2}), specs[0]);
    EXPECT_EQ(pass.sequences_run(), 2);
    for (const auto& spec : specs) {
      const Captured want = bb.forward(full, att, spec, {.truncate = true});
      const Captured got = pass.capture(full, spec);
      EXPECT_TRUE(same_bits(got, want)) << to_string(spec) << " " << static_cast<int>(att);
      got.check();
    }
    // Five distinct texts, each through the backbone once for all five specs.
    EXPECT_EQ(pass.sequences_run(), 5);
    // Served: texts 4 and 2 and the repeat of 0 in the first full batch, then all 6 four times.
    EXPECT_EQ(pass.sequences_served(), 3 + 4 * 6);
  }
}

TEST(SharedPass, ServesOnlyWhatWasDeclared) {
  PassNeeds n;
  n.add({CaptureLayers::all, CaptureTokens::last});
  EXPECT_TRUE(n.covers({CaptureLayers::last, CaptureTokens::last}));  // from the all-layers rows
  EXPECT_TRUE(n.covers({CaptureLayers::all, CaptureTokens::last}));
  EXPECT_FALSE(n.covers({CaptureLayers::last, CaptureTokens::mean}));
  EXPECT_FALSE(n.covers({CaptureLayers::last, CaptureTokens::all}));
  n.add({CaptureLayers::last, CaptureTokens::mean});
  EXPECT_TRUE(n.covers({CaptureLayers::last, CaptureTokens::mean}));
  EXPECT_FALSE(n.covers({CaptureLayers::all, CaptureTokens::mean}));
  EXPECT_THROW(n.add({CaptureLayers::all, CaptureTokens::all}), config_error);
}

TEST(Stats, ReferenceRowsAreTestedInFamiliesOfTheirOwn) {
  Results r = synthetic({{"sts-b", "sts"}, {"banking77", "classification"}}, 3, 0.05, 50);
  const auto without = compute_tests(r, {300, 3});
  DesignResult ref = r.designs[1];
  ref.design = "all-MiniLM-L6-v2 (sentence-transformers)";
  ref.reference = true;
  ref.loss.clear();
  r.designs.push_back(ref);
  DesignResult ref2 = ref;
  ref2.design = "another reference";
  r.designs.push_back(ref2);
  r.tests = compute_tests(r, {300, 3});
  // The design-vs-design tests keep their p and Holm-corrected p exactly.
  std::size_t n_design_tests = 0, n_ref_tests = 0;
  for (const auto& t : r.tests) {
    if (t.reference) {
      ++n_ref_tests;
      EXPECT_TRUE(t.a == ref.design || t.a == ref2.design) << t.a;
      EXPECT_FALSE(t.b == ref.design || t.b == ref2.design) << t.b;  // never ref vs ref
      continue;
    }
    ++n_design_tests;
    bool found = false;
    for (const auto& w : without)
      if (w.scope == t.scope && w.name == t.name && w.a == t.a && w.b == t.b) {
        found = true;
        EXPECT_EQ(w.p_holm, t.p_holm) << t.scope << " " << t.name << " " << t.a << " " << t.b;
      }
    EXPECT_TRUE(found);
  }
  EXPECT_EQ(n_design_tests, without.size());
  // 2 references x 3 designs x (a bootstrap per task + the Wilcoxon over both tasks).
  EXPECT_EQ(n_ref_tests, 2u * 3u * 3u);
  // The report shows the reference row, labelled as such, and says it is not a design.
  const std::string md = render_markdown(r), html = render_html(r), table = summary_table(r);
  EXPECT_NE(md.find("| all-MiniLM-L6-v2 (sentence-transformers) | reference |"), std::string::npos);
  EXPECT_NE(html.find("all-MiniLM-L6-v2 (sentence-transformers)"), std::string::npos);
  EXPECT_NE(table.find("Reference all-MiniLM-L6-v2 (sentence-transformers)"), std::string::npos);
  // Round trip through results.json + references.json keeps the flag.
  const auto dir = std::filesystem::path(LMEMBED_BINARY_DIR) / "tests" / "compare_reference";
  std::filesystem::remove_all(dir);
  write_report(r, dir);
  save_references(dir, {ref});
  const Results back = load_results(dir / "results.json");
  ASSERT_EQ(back.designs.size(), r.designs.size());
  EXPECT_TRUE(back.designs[3].reference);
  EXPECT_FALSE(back.designs[0].reference);
  const auto refs = load_references(dir);
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_EQ(refs[0].tasks[0].per_example, ref.tasks[0].per_example);
}

TEST(Report, AnswersThePapersQuestionsAndTheTrainingLevel) {
  Results r = synthetic({{"sts-b", "sts"}, {"banking77", "classification"}}, 8, 0.05, 80);
  r.run.negatives = 1;
  r.designs[1].loss = {{0, 4.2}, {25, 4.1}, {50, 4.0}};  // a head that did not learn
  r.tests = compute_tests(r, {400, 5});
  const auto answers = findings(r);
  std::string all;
  for (const auto& s : answers) all += s + "\n";
  EXPECT_NE(all.find("Does bidirectional attention beat causal"), std::string::npos) << all;
  EXPECT_NE(all.find("mean-bidirectional scores higher than mean-causal"), std::string::npos);
  EXPECT_NE(all.find("model 3 vs model 2: multilayer-causal"), std::string::npos) << all;
  EXPECT_NE(all.find("Power: every category here has a single task"), std::string::npos);
  // Chance level ln(32 x 2) = 4.16: 4.0 is not below half of it, 2.0 - 0.1 i is.
  EXPECT_NEAR(chance_loss(r.run), std::log(64.0), 1e-12);
  EXPECT_FALSE(learned(r.run, r.designs[1]));
  EXPECT_TRUE(learned(r.run, r.designs[2]));
  EXPECT_NE(all.find("NOT below half the chance level (these heads barely learned; their scores "
                     "say little about the design): lastlayer-causal 4.200 -> 4.000"),
            std::string::npos)
      << all;
}
