// Tokenizer tests against independent references: llama.cpp's tokenizer test vectors
// (data/tokenizer, made by Hugging Face tokenizers) and the token ids llama.cpp printed for the
// stories260K goldens (data/golden/*.json); plus Unicode tables, bad input and threads.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lmembed/core/json_util.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/tokenizer/tokenizer.hpp"

namespace lmembed::detail {
// Turns the SPM segmentation fast path off, to compare it with llama.cpp's whole-text queue.
struct TokenizerTestAccess {
  static Tokenizer whole_text(Tokenizer t) {
    t.spm_split_ = false;
    return t;
  }
};
}  // namespace lmembed::detail

namespace fs = std::filesystem;
using lmembed::EncodeOptions;
using lmembed::Tokenizer;
namespace uc = lmembed::detail::unicode;

namespace {

const fs::path kData = LMEMBED_DATA_DIR;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// llama.cpp's test-tokenizer-0 format: strings separated by "\n__ggml_vocab_test__\n"; one line
// of ids per string.
struct Vectors {
  std::vector<std::string> texts;
  std::vector<std::vector<std::int32_t>> ids;
};
Vectors read_vectors(const std::string& name) {
  Vectors v;
  std::string inp = slurp(kData / "tokenizer" / ("ggml-vocab-" + name + ".gguf.inp"));
  const std::string delim = "\n__ggml_vocab_test__\n";
  for (std::size_t pos; (pos = inp.find(delim)) != std::string::npos;) {
    v.texts.push_back(inp.substr(0, pos));
    inp.erase(0, pos + delim.size());
  }
  std::istringstream out(slurp(kData / "tokenizer" / ("ggml-vocab-" + name + ".gguf.out")));
  std::string line;
  while (std::getline(out, line)) {
    std::istringstream ls(line);
    std::vector<std::int32_t> ids;
    for (std::int32_t x; ls >> x;) ids.push_back(x);
    v.ids.push_back(ids);
  }
  return v;
}

const Tokenizer& spm() {
  static const Tokenizer t = Tokenizer::from_gguf(
      lmembed::io::GgufFile::open(kData / "tokenizer" / "ggml-vocab-llama-spm.gguf"));
  return t;
}
const Tokenizer& gpt2() {
  static const Tokenizer t = Tokenizer::from_gguf(
      lmembed::io::GgufFile::open(kData / "tokenizer" / "ggml-vocab-gpt-2.gguf"));
  return t;
}

std::string show(const std::vector<std::int32_t>& ids) {
  std::string s;
  for (auto i : ids) s += std::to_string(i) + " ";
  return s;
}

void check_vectors(const Tokenizer& tok, const std::string& name) {
  const Vectors v = read_vectors(name);
  ASSERT_EQ(v.texts.size(), 46u);
  ASSERT_EQ(v.ids.size(), v.texts.size());
  const EncodeOptions no_special{false, false, false};
  for (std::size_t i = 0; i < v.texts.size(); ++i) {
    const auto got = tok.encode(v.texts[i], no_special);
    EXPECT_EQ(got, v.ids[i]) << name << " string " << i << " '" << v.texts[i] << "'\n  got "
                             << show(got) << "\n want " << show(v.ids[i]);
    // Round trip (every test string is valid UTF-8).
    EXPECT_EQ(tok.decode(got), v.texts[i]) << name << " string " << i;
  }
}

}  // namespace

TEST(UnicodeTables, CategoriesAndWhitespace) {
  EXPECT_TRUE(uc::flags('A') & uc::kLetter);
  EXPECT_TRUE(uc::flags('7') & uc::kNumber);
  EXPECT_TRUE(uc::flags('!') & uc::kPunctuation);
  EXPECT_TRUE(uc::flags('$') & uc::kSymbol);
  EXPECT_EQ(uc::flags(' '), uc::kSeparator | uc::kWhitespace);
  EXPECT_EQ(uc::flags('\n'), uc::kControl | uc::kWhitespace);
  EXPECT_FALSE(uc::flags(0x1C) & uc::kWhitespace);  // not White_Space (unlike str.isspace)
  EXPECT_TRUE(uc::flags(0x3000) & uc::kWhitespace);
  EXPECT_TRUE(uc::flags(0x00A0) & uc::kWhitespace);
  EXPECT_TRUE(uc::flags(0x0301) & uc::kMark);
  EXPECT_TRUE(uc::flags(0x4E00) & uc::kLetter);   // CJK ideograph (Lo)
  EXPECT_TRUE(uc::flags(0x2F800) & uc::kLetter);  // astral, binary-searched
  EXPECT_TRUE(uc::flags(0x1F600) & uc::kSymbol);  // emoji (So)
  EXPECT_TRUE(uc::flags(0x00BD) & uc::kNumber);   // ½ (No)
  EXPECT_TRUE(uc::flags(0xE000) & uc::kControl);  // private use (Co)
  EXPECT_EQ(uc::flags(0x0378), uc::kUndefined);   // unassigned
  EXPECT_EQ(uc::flags(0x110000), uc::kUndefined);
  EXPECT_EQ(uc::to_lower('Q'), static_cast<std::uint32_t>('q'));
  EXPECT_EQ(uc::to_lower(0x0412), 0x0432u);  // Cyrillic В -> в
  // GPT-2 byte symbols: printable bytes map to themselves, the rest to U+0100...
  EXPECT_EQ(uc::byte_to_cpt()['a'], static_cast<std::uint32_t>('a'));
  EXPECT_EQ(uc::byte_to_cpt()[' '], 0x120u);  // 'Ġ'
  EXPECT_EQ(uc::byte_to_cpt()[0], 0x100u);
  // NFC (the Python test compares 3,500 strings with unicodedata): compose, reorder, Hangul.
  EXPECT_EQ(uc::nfc("e\xCC\x81"), "\xC3\xA9");                     // e + U+0301 -> U+00E9
  EXPECT_EQ(uc::nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // jamo -> U+AC00
  EXPECT_EQ(uc::nfc("\xE2\x84\xAB"), "\xC3\x85");                  // U+212B (singleton) -> U+00C5
  EXPECT_EQ(uc::nfc("plain ascii"), "plain ascii");
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(uc::cpt_to_byte(uc::byte_to_cpt()[static_cast<std::size_t>(b)]), b);
}

TEST(UnicodeTables, InvalidUtf8DecodesLikeLlamaCpp) {
  auto cpts = [](std::string_view s) {
    std::vector<std::uint32_t> v;
    for (std::size_t p = 0; p < s.size();) v.push_back(uc::next_cpt(s, p));
    return v;
  };
  using V = std::vector<std::uint32_t>;
  EXPECT_EQ(cpts("a\xC3\xA9"), (V{'a', 0xE9}));
  EXPECT_EQ(cpts("\x80"), (V{0xFFFD}));                    // stray continuation byte
  EXPECT_EQ(cpts("\xC3"), (V{0xFFFD}));                    // truncated sequence
  EXPECT_EQ(cpts("\xE2\x82z"), (V{0xFFFD, 0xFFFD, 'z'}));  // each bad byte is one U+FFFD
  EXPECT_EQ(cpts("\xFF"), (V{0xFFFD}));
  EXPECT_EQ(cpts(std::string_view("\0", 1)), (V{0}));
}

TEST(TokenizerVectors, LlamaSpm) {
  check_vectors(spm(), "llama-spm");
}
TEST(TokenizerVectors, Gpt2) {
  check_vectors(gpt2(), "gpt-2");
}

TEST(TokenizerVectors, ModelFlags) {
  EXPECT_EQ(spm().model(), Tokenizer::Model::spm);
  EXPECT_EQ(spm().vocab_size(), 32000u);
  EXPECT_EQ(spm().bos_id(), 1);
  EXPECT_EQ(spm().eos_id(), 2);
  EXPECT_TRUE(spm().add_bos());
  EXPECT_FALSE(spm().add_eos());
  EXPECT_EQ(gpt2().model(), Tokenizer::Model::bpe);
  EXPECT_EQ(gpt2().pre_tokenizer(), "gpt-2");
  EXPECT_EQ(gpt2().vocab_size(), 50257u);
  EXPECT_EQ(gpt2().eos_id(), 50256);
  EXPECT_FALSE(gpt2().add_bos());
}

// llama.cpp's ids for the 44 golden sentences (add_special and parse_special on, as in
// llama-embedding), for every model whose GGUF carries stories260K's vocabulary.
TEST(TokenizerGoldens, Stories260KAndTinyModels) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"stories260K.json", "models/stories260K.gguf"},
      {"stories260K-q8_0.json", "golden/models/stories260K-q8_0.gguf"},
      {"tiny-llama.json", "golden/models/tiny-llama.gguf"},
      {"tiny-qwen2.json", "golden/models/tiny-qwen2.gguf"}};
  for (const auto& [json_name, model] : cases) {
    const auto g = lmembed::json::parse(slurp(kData / "golden" / json_name), json_name);
    const Tokenizer tok = Tokenizer::load(kData / model);
    EXPECT_EQ(tok.add_bos(), lmembed::json::get_bool(g, "add_bos")) << json_name;
    EXPECT_EQ(tok.add_eos(), lmembed::json::get_bool(g, "add_eos")) << json_name;
    std::size_t n = 0;
    for (const auto& s : lmembed::json::get_array(g, "sentences")) {
      std::vector<std::int32_t> want;
      for (const auto& x : lmembed::json::get_array(s, "ids"))
        want.push_back(static_cast<std::int32_t>(lmembed::json::as_int(x)));
      EncodeOptions opt;
      opt.parse_special = true;
      const auto got = tok.encode(lmembed::json::get_string(s, "text"), opt);
      EXPECT_EQ(got, want) << json_name << ": '" << lmembed::json::get_string(s, "text") << "'";
      ++n;
    }
    EXPECT_EQ(n, 44u) << json_name;
  }
}

TEST(TokenizerSpecial, ParseSpecialAndBosEosFlags) {
  const EncodeOptions plain{false, false, false};
  EncodeOptions special = plain;
  special.parse_special = true;
  EXPECT_EQ(gpt2().encode("<|endoftext|>", special), (std::vector<std::int32_t>{50256}));
  EXPECT_GT(gpt2().encode("<|endoftext|>", plain).size(), 1u);  // plain text when not parsed
  EXPECT_EQ(gpt2().encode("a<|endoftext|>b", special), (std::vector<std::int32_t>{64, 50256, 65}));
  // SPM: "<s>" parsed; text after a special token gets the space prefix again.
  const auto ids = spm().encode("<s>Hello", special);
  EXPECT_EQ(ids, (std::vector<std::int32_t>{1, 15043}));
  EXPECT_NE(spm().encode("<s>Hello", plain).front(), 1);
  // Flags: model defaults, overridden per call.
  EXPECT_EQ(spm().encode("Hello").front(), 1);
  EXPECT_EQ(spm().encode("Hello", EncodeOptions{false, true, false}),
            (std::vector<std::int32_t>{15043, 2}));
  EXPECT_EQ(gpt2().encode("Hello", EncodeOptions{true, true, false}),
            (std::vector<std::int32_t>{50256, 15496, 50256}));
  // Control tokens decode to nothing.
  EXPECT_EQ(spm().decode(std::vector<std::int32_t>{1, 15043, 2}), "Hello");
}

TEST(TokenizerBadInput, EmptyNulInvalidUtf8) {
  const EncodeOptions plain{false, false, false};
  EXPECT_TRUE(spm().encode("", plain).empty());
  EXPECT_TRUE(gpt2().encode("", plain).empty());
  EXPECT_EQ(spm().encode(""), (std::vector<std::int32_t>{1}));  // BOS only
  // NUL bytes are ordinary bytes: SPM "▁a" <0x00> "b"; GPT-2's byte symbol U+0100 = id 188.
  const std::string nul("a\0b", 3);
  const auto nul_ids = spm().encode(nul, plain);
  ASSERT_EQ(nul_ids.size(), 3u);
  EXPECT_EQ(spm().token_text(nul_ids[0]),
            "\xe2\x96\x81"
            "a");
  EXPECT_EQ(spm().token_text(nul_ids[1]), "<0x00>");
  EXPECT_EQ(spm().token_text(nul_ids[2]), "b");
  EXPECT_EQ(gpt2().token_text(188), "\xc4\x80");  // U+0100
  EXPECT_EQ(gpt2().encode(nul, plain), (std::vector<std::int32_t>{64, 188, 65}));
  EXPECT_EQ(spm().decode(spm().encode(nul, plain)), nul);
  EXPECT_EQ(gpt2().decode(gpt2().encode(nul, plain)), nul);
  // Invalid UTF-8. SPM works on bytes: an invalid byte becomes its <0xNN> token and decodes back.
  const std::string bad = "ok\xFF\xC3(";
  const auto s_ids = spm().encode(bad, plain);
  EXPECT_EQ(spm().decode(s_ids), bad);
  EXPECT_NE(std::find(s_ids.begin(), s_ids.end(), 3 + 0xFF), s_ids.end());
  // Byte-level BPE (like llama.cpp): each invalid byte becomes U+FFFD.
  EXPECT_EQ(gpt2().encode(bad, plain), gpt2().encode("ok\xEF\xBF\xBD\xEF\xBF\xBD(", plain));
  EXPECT_EQ(gpt2().decode(gpt2().encode(bad, plain)), "ok\xEF\xBF\xBD\xEF\xBF\xBD(");
}

TEST(TokenizerBadInput, RandomBytesNeverCrashAndRoundTrip) {
  // Random byte strings (ASCII, stray/truncated UTF-8, valid multi-byte, NUL, special-token
  // texts): SPM round-trips bytes exactly (U+2581 comes back as a space); byte-level BPE gives back
  // the text with each invalid byte replaced by U+FFFD (the documented behaviour).
  std::mt19937 rng(7);
  const std::vector<std::string> atoms = {"a",
                                          "Z",
                                          " ",
                                          "  ",
                                          "\n",
                                          "\t",
                                          std::string(1, '\0'),
                                          "\x80",
                                          "\xC3",
                                          "\xE2\x82",
                                          "\xF0\x9F",
                                          "\xFF",
                                          "\xC3\xA9",
                                          "\xE6\x97\xA5",
                                          "\xF0\x9F\x98\x81",
                                          "<s>",
                                          "</s>",
                                          "<|endoftext|>",
                                          "'s",
                                          "123",
                                          "!!",
                                          "\xE2\x96\x81"};
  const EncodeOptions plain{false, false, false};
  EncodeOptions special = plain;
  special.parse_special = true;
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) s += atoms[rng() % atoms.size()];
    // SentencePiece cannot tell U+2581 written in the text from an escaped space.
    std::string spm_want;
    for (std::size_t p = 0; p < s.size();) {
      if (s.compare(p, 3, "\xE2\x96\x81") == 0) {
        spm_want.push_back(' ');
        p += 3;
      } else {
        spm_want.push_back(s[p++]);
      }
    }
    EXPECT_EQ(spm().decode(spm().encode(s, plain)), spm_want);
    std::string clean;
    for (std::size_t p = 0; p < s.size();) uc::append_utf8(clean, uc::next_cpt(s, p));
    EXPECT_EQ(gpt2().decode(gpt2().encode(s, plain)), clean);
    EXPECT_NO_THROW(spm().encode(s, special));
    EXPECT_NO_THROW(gpt2().encode(s, special));
  }
}

TEST(TokenizerBadInput, DecodeOutOfRangeIsInputError) {
  EXPECT_THROW(spm().decode(std::vector<std::int32_t>{15043, 32000}), lmembed::input_error);
  EXPECT_THROW(gpt2().decode(std::vector<std::int32_t>{-1}), lmembed::input_error);
  EXPECT_THROW(gpt2().token_text(50257), lmembed::input_error);
}

TEST(TokenizerBadInput, LongInputs) {
  // 1 MB without spaces and 1 MB of one character: must finish (merging is a priority queue,
  // near-linear; bench/tokenizer times it) and round-trip.
  std::string nospace;
  const std::string word = "Tokenization0123456789abcdefghij";
  while (nospace.size() < (1u << 20)) nospace += word;
  const std::string one(1u << 20, 'a');
  const EncodeOptions plain{false, false, false};
  for (const Tokenizer* t : {&spm(), &gpt2()}) {
    const auto a = t->encode(nospace, plain);
    EXPECT_LT(a.size(), nospace.size());
    EXPECT_EQ(t->decode(a), nospace);
    const auto b = t->encode(one, plain);
    EXPECT_LT(b.size(), one.size() / 2);
    EXPECT_EQ(t->decode(b), one);
  }
}

TEST(TokenizerThreads, ConcurrentEncodeMatchesSerial) {
  const std::string corpus = slurp(kData / "bench" / "corpus256.txt");
  std::vector<std::string> lines;
  std::istringstream in(corpus);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 256u);
  for (const Tokenizer* t : {&spm(), &gpt2()}) {
    std::vector<std::vector<std::int32_t>> serial;
    for (const auto& l : lines) serial.push_back(t->encode(l));
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; ++k)
      threads.emplace_back([&, k] {
        for (int rep = 0; rep < 3; ++rep)
          for (std::size_t i = 0; i < lines.size(); ++i)
            if (t->encode(lines[(i + static_cast<std::size_t>(k) * 37) % lines.size()]) !=
                serial[(i + static_cast<std::size_t>(k) * 37) % lines.size()])
              ++mismatches[static_cast<std::size_t>(k)];
      });
    for (auto& th : threads) th.join();
    for (int m : mismatches) EXPECT_EQ(m, 0);
  }
  // data/README.md: 5,903 tokens with llama-spm and BOS, i.e. each line with its newline.
  std::size_t total = 0;
  for (const auto& l : lines) total += spm().encode(l + "\n").size();
  EXPECT_EQ(total, 5903u);
}

TEST(TokenizerSpm, SegmentedEqualsWholeTextQueue) {
  // The SPM fast path cuts the text before each U+2581 that follows a character; the result
  // must equal llama.cpp's single queue over the whole text, on every vector and corpus line.
  const Tokenizer whole = lmembed::detail::TokenizerTestAccess::whole_text(spm());
  std::vector<std::string> texts = read_vectors("llama-spm").texts;
  std::istringstream in(slurp(kData / "datasets" / "stsbenchmark" / "sts-dev.csv"));
  for (std::string l; std::getline(in, l) && texts.size() < 1500;) texts.push_back(l);
  std::size_t tokens = 0;
  for (const auto& t : texts) {
    const auto a = spm().encode(t);
    ASSERT_EQ(a, whole.encode(t)) << t;
    tokens += a.size();
  }
  EXPECT_GT(tokens, 10000u);
}

TEST(TokenizerLoad, Errors) {
  // Golden HF folders hold no tokenizer.json.
  EXPECT_THROW(Tokenizer::load(kData / "golden" / "models" / "tiny-llama-hf"),
               lmembed::config_error);
  EXPECT_THROW(Tokenizer::load(kData / "no-such-file.gguf"), lmembed::io_error);
  EXPECT_THROW(lmembed::detail::PreTokenizer::named("no-such-pre"), lmembed::config_error);
}

TEST(TokenizerLoad, SparseVocabularyIdsAreRefusedNotAllocated) {
  // fuzz_tokenizer_json's finding (corpus/tokenizer_json/regression-sparse-vocab-ids): one id
  // of 3e8 asked for 3e8 empty token slots (~10 GB) and ran out of memory.
  const fs::path dir = fs::temp_directory_path() / "lmembed_test_sparse_vocab";
  fs::create_directories(dir);
  auto write = [&](const std::string& vocab) {
    std::ofstream(dir / "tokenizer.json")
        << R"({"model": {"type": "BPE", "vocab": {)" << vocab << R"(}, "merges": []}})";
  };
  write(R"("a": 0, "b": 300000000)");
  try {
    (void)Tokenizer::from_hf(dir / "tokenizer.json");
    ADD_FAILURE() << "a vocabulary with id 300000000 for 2 tokens was accepted";
  } catch (const lmembed::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("leaves most of the id space empty"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  write(R"("a": 0, "b": 900)");  // a few reserved holes are fine
  EXPECT_EQ(Tokenizer::from_hf(dir / "tokenizer.json").vocab_size(), 901u);
  fs::remove_all(dir);
}

TEST(PreTokenizer, LlamaBpeKnownSplits) {
  const auto pre = lmembed::detail::PreTokenizer::named("llama-bpe");
  using W = std::vector<std::string>;
  EXPECT_EQ(lmembed::detail::split_words(pre, "Hello world"), (W{"Hello", " world"}));
  EXPECT_EQ(lmembed::detail::split_words(pre, "1234567"), (W{"123", "456", "7"}));
  EXPECT_EQ(lmembed::detail::split_words(pre, "I'LL go"), (W{"I", "'LL", " go"}));
  EXPECT_EQ(lmembed::detail::split_words(pre, "a  \n\n b"), (W{"a", "  \n\n", " b"}));
  EXPECT_EQ(lmembed::detail::split_words(pre, "x   "), (W{"x", "   "}));
  EXPECT_EQ(lmembed::detail::split_words(pre, "(hi)!!\n"), (W{"(hi", ")!!\n"}));
  const auto qwen = lmembed::detail::PreTokenizer::named("qwen2");
  EXPECT_EQ(lmembed::detail::split_words(qwen, "x 123"), (W{"x", " ", "1", "2", "3"}));
}

// "smollm" (SmolLM/SmolLM2; also starcoder, refact, command-r, codeshell, exaone, minerva-7b,
// mellum2): \p{N} cuts every number code point off alone, then the GPT-2 pattern runs. llama.cpp's
// tokens for these strings on SmolLM2 (TokenizerRealModel below) all end on these word boundaries.
TEST(PreTokenizer, SmollmKnownSplits) {
  const auto pre = lmembed::detail::PreTokenizer::named("smollm");
  using W = std::vector<std::string>;
  auto split = [&](std::string_view s) { return lmembed::detail::split_words(pre, s); };
  EXPECT_EQ(split("Hello world"), (W{"Hello", " world"}));
  EXPECT_EQ(split("1234567"), (W{"1", "2", "3", "4", "5", "6", "7"}));
  EXPECT_EQ(split(" 2024"), (W{" ", "2", "0", "2", "4"}));
  EXPECT_EQ(split("x2y"), (W{"x", "2", "y"}));
  EXPECT_EQ(split("it's 3.14"), (W{"it", "'s", " ", "3", ".", "1", "4"}));
  EXPECT_EQ(split("I'LL go"), (W{"I", "'", "LL", " go"}));    // contractions are lowercase only
  EXPECT_EQ(split("\xc2\xbd \xd9\xa3\xd9\xa4 \xe2\x85\xab"),  // ½ ٣٤ Ⅻ (No, Nd, Nl)
            (W{"\xc2\xbd", " ", "\xd9\xa3", "\xd9\xa4", " ", "\xe2\x85\xab"}));
  EXPECT_EQ(split("a  \n\n b"), (W{"a", "  \n\n", " b"}));
  EXPECT_EQ(split("x   "), (W{"x", "   "}));
  EXPECT_EQ(split("(hi)!!\n"), (W{"(", "hi", ")!!", "\n"}));
  EXPECT_EQ(split("\tfoo"), (W{"\t", "foo"}));
  for (const char* alias :
       {"starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"})
    EXPECT_EQ(lmembed::detail::split_words(lmembed::detail::PreTokenizer::named(alias), "a 12"),
              (W{"a", " ", "1", "2"}))
        << alias;
}

// The real model (SmolLM2-135M-Instruct, "smollm"; scripts/fetch_models.sh): the ids llama.cpp's
// llama_tokenize gave for these strings (add_special true; parse_special false, then true).
// tests/tokenizer/test_real_tokenizer.py compares ~40,000 texts the same way.
TEST(TokenizerRealModel, SmolLM2MatchesLlamaCpp) {
  const char* env = std::getenv("LMEMBED_REAL_MODEL");
  if (!env || !*env || !fs::exists(env))
    GTEST_SKIP() << "LMEMBED_REAL_MODEL unset or missing (scripts/fetch_models.sh)";
  const Tokenizer tok = Tokenizer::load(env);
  EXPECT_EQ(tok.pre_tokenizer(), "smollm");
  EXPECT_EQ(tok.vocab_size(), 49152u);
  EXPECT_FALSE(tok.add_bos());
  EXPECT_FALSE(tok.add_eos());
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  using V = std::vector<std::int32_t>;
  EXPECT_EQ(tok.encode("Hello world"), (V{19556, 905}));
  EXPECT_EQ(tok.encode("1234567"), (V{33, 34, 35, 36, 37, 38, 39}));
  EXPECT_EQ(tok.encode(" 2024"), (V{216, 34, 32, 34, 36}));
  EXPECT_EQ(tok.encode("x2y"), (V{104, 34, 105}));
  EXPECT_EQ(tok.encode("it's 3.14"), (V{269, 506, 216, 35, 30, 33, 36}));
  EXPECT_EQ(tok.encode("I'LL go"), (V{57, 23, 16421, 685}));
  EXPECT_EQ(tok.encode("\xc2\xbd \xd9\xa3\xd9\xa4 \xe2\x85\xab"),
            (V{16738, 216, 164, 113, 164, 114, 216, 173, 223, 121}));
  EXPECT_EQ(tok.encode("a  \n\n b"), (V{81, 256, 1116, 278}));
  EXPECT_EQ(tok.encode("x   "), (V{104, 333}));
  EXPECT_EQ(tok.encode("(hi)!!\n"), (V{24, 6004, 25, 10095, 198}));
  EXPECT_EQ(tok.encode("\tfoo"), (V{197, 15236}));
  EXPECT_EQ(tok.encode("In 2024, I'LL pay $1,234.56 for 3 llamas \xf0\x9f\xa6\x99."),
            (V{788, 216, 34, 32, 34, 36,  28,  339, 23,  16421, 2290, 1885,  33,  28,  34,
               35,  36,  30, 37, 38, 327, 216, 35,  303, 4130,  292,  15107, 116, 243, 30}));
  const std::string chat = "<|im_start|>user\nHi<|im_end|>";
  EXPECT_EQ(tok.encode(chat),
            (V{44, 108, 306, 79, 3738, 108, 46, 4093, 198, 26843, 44, 108, 306, 79, 486, 108, 46}));
  EncodeOptions special;
  special.parse_special = true;
  EXPECT_EQ(tok.encode(chat, special), (V{1, 4093, 198, 26843, 2}));
  EXPECT_EQ(tok.decode(tok.encode(chat, special)), "user\nHi");  // control tokens render as ""
}
