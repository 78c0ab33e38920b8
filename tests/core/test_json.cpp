// Tests of lmembed/core/json_util.hpp: nlohmann/json behind lmembed's errors. Parse errors are
// format_errors naming the file, the byte offset and line:column; wrong types and missing keys
// are config_errors naming the key; hostile nesting neither overflows the stack nor escapes as a
// non-lmembed exception; what lmembed writes keeps its key order and number forms.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "lmembed/core/json_util.hpp"

using namespace lmembed;

namespace {

// The format_error of parsing `text` as `source` (fails the test when it parses).
format_error parse_error_of(const std::string& text, const std::string& source = "t.json") {
  try {
    (void)json::parse(text, source);
  } catch (const format_error& e) {
    return e;
  }
  ADD_FAILURE() << "no error for: " << text.substr(0, 80);
  return format_error("none");
}

std::string config_error_of(const auto& f) {
  try {
    f();
  } catch (const config_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no config_error";
  return {};
}

}  // namespace

TEST(Json, ParseAndDump) {
  const auto v = json::parse(
      R"({"a": [1, 2.5, "x\u00e9\ud83d\ude00", true, null], "big": 9007199254740993, "b": {"c": -3}})");
  EXPECT_EQ(json::as_array(json::at(v, "a")).size(), 5u);
  EXPECT_EQ(json::as_int(json::at(json::at(v, "a"), 0)), 1);
  EXPECT_EQ(json::as_double(json::at(json::at(v, "a"), 1)), 2.5);
  EXPECT_EQ(json::as_string(json::at(json::at(v, "a"), 2)), "x\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(json::get_int(v, "big"), 9007199254740993LL);  // exact above 2^53
  EXPECT_EQ(json::get_int(json::at(v, "b"), "c"), -3);
  EXPECT_EQ(json::find(v, "zzz"), nullptr);
  EXPECT_EQ(json::find(json::at(v, "a"), "a"), nullptr);  // not an object: no member
  // Compact and pretty forms; the pretty text parses back to the same document.
  EXPECT_EQ(json::dump(v), R"({"a":[1,2.5,"xé😀",true,null],"big":9007199254740993,"b":{"c":-3}})");
  EXPECT_EQ(json::dump(v, 1),
            "{\n \"a\": [\n  1,\n  2.5,\n  \"xé😀\",\n  true,\n  null\n ],\n"
            " \"big\": 9007199254740993,\n \"b\": {\n  \"c\": -3\n }\n}");
  EXPECT_EQ(json::dump(json::parse(json::dump(v, 2))), json::dump(v));
  // Members keep their insertion order, in documents built and parsed.
  ordered_json o;
  o["z"] = 1;
  o["a"] = "s";
  o["arr"].push_back(0.1);
  json::append(o, "e", ordered_json::object());
  EXPECT_EQ(json::dump(o), R"({"z":1,"a":"s","arr":[0.1],"e":{}})");
  EXPECT_EQ(json::dump(json::parse(R"({"z":1,"a":2,"m":3})")), R"({"z":1,"a":2,"m":3})");
}

TEST(Json, NumbersAndStringsAsWritten) {
  ordered_json v = ordered_json::array();
  for (double d :
       {2.0, -0.0, 0.1, 1e20, 1e-7, 0.0001, std::nan(""), std::numeric_limits<double>::infinity()})
    v.push_back(d);
  v.push_back(std::int64_t{-5});
  v.push_back(std::uint64_t{18446744073709551615u});
  // Doubles shortest round-trip with ".0" on integral ones; NaN and infinities as null.
  EXPECT_EQ(json::dump(v), "[2.0,-0.0,0.1,1e+20,1e-07,0.0001,null,null,-5,18446744073709551615]");
  for (double d : {0.1, 1.0 / 3, 6.02214076e23, 5e-324, 123456.789})
    EXPECT_EQ(json::as_double(json::parse(json::dump(d))), d);
  // Control characters as lowercase \u00XX; invalid UTF-8 is replaced, never a throw.
  EXPECT_EQ(json::dump(std::string("a\x01\x1f\n\t\"\\")), R"("a\u0001\u001f\n\t\"\\")");
  EXPECT_EQ(json::dump(std::string("ok\xff\xc3")), "\"ok\xef\xbf\xbd\xef\xbf\xbd\"");
}

TEST(Json, IntegersAreChecked) {
  const auto v = json::parse(R"([2.0, 1.5, 1e30, -7, 9223372036854775807, 9223372036854775808,
                                  18446744073709551616, "3", -0.0])");
  auto el = [&](std::size_t i) -> const ordered_json& { return json::at(v, i); };
  EXPECT_TRUE(json::is_integer(el(0)));
  EXPECT_EQ(json::as_int(el(0)), 2);  // an integral double is an integer
  EXPECT_FALSE(json::is_integer(el(1)));
  EXPECT_FALSE(json::is_integer(el(2)));
  EXPECT_EQ(json::as_int(el(3)), -7);
  EXPECT_EQ(json::as_int(el(4)), std::numeric_limits<std::int64_t>::max());
  EXPECT_FALSE(json::is_integer(el(5)));  // 2^63 does not fit int64
  EXPECT_FALSE(json::is_integer(el(6)));  // beyond uint64: a double
  EXPECT_FALSE(json::is_integer(el(7)));
  EXPECT_EQ(config_error_of([&] { (void)json::as_int(el(1), "shapes.json", "dim"); }),
            "shapes.json: 'dim': expected an integer, got 1.5");
  EXPECT_EQ(config_error_of([&] { (void)json::as_int(el(2), "shapes.json", "dim"); }),
            "shapes.json: 'dim': expected an integer, got 1e+30");
  EXPECT_EQ(config_error_of([&] { (void)json::as_int(el(5)); }),
            "json: expected an integer, got 9223372036854775808");
  EXPECT_EQ(config_error_of([&] { (void)json::as_int(el(7), "x.json"); }),
            "x.json: expected an integer, got string");
}

TEST(Json, WrongTypesAndMissingKeysNameTheKey) {
  const auto cfg = json::parse(R"({"hidden_size": "64", "eps": null, "layers": [1, 2]})");
  EXPECT_EQ(config_error_of([&] { (void)json::get_int(cfg, "hidden_size", "config.json"); }),
            "config.json: 'hidden_size': expected an integer, got string");
  EXPECT_EQ(config_error_of([&] { (void)json::get_double(cfg, "eps", "config.json"); }),
            "config.json: 'eps': expected number, got null");
  EXPECT_EQ(config_error_of([&] { (void)json::get_int(cfg, "vocab_size", "config.json"); }),
            "config.json: missing key 'vocab_size'");
  EXPECT_EQ(config_error_of([&] { (void)json::get_object(cfg, "layers", "config.json"); }),
            "config.json: 'layers': expected object, got array");
  EXPECT_EQ(config_error_of([&] { (void)json::get_bool(cfg, "layers"); }),
            "json: 'layers': expected bool, got array");
  EXPECT_EQ(config_error_of([&] { (void)json::at(json::at(cfg, "layers"), 2, "config.json"); }),
            "config.json: index 2 out of range (size 2)");
  EXPECT_EQ(config_error_of([&] { (void)json::at(json::at(cfg, "layers"), "x", "config.json"); }),
            "config.json: expected object, got array");
}

TEST(Json, ParseErrorsNameFileOffsetAndLineColumn) {
  // The offset is that of the token at fault (here "tru", 0-based byte 9, line 2 column 8).
  format_error e = parse_error_of("{\n  \"a\": tru }", "cfg.json");
  EXPECT_EQ(e.file(), "cfg.json");
  EXPECT_EQ(e.offset(), 9u);
  EXPECT_NE(std::string(e.what()).find("cfg.json: offset 9: "), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("invalid literal"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("(line 2:8)"), std::string::npos) << e.what();
  EXPECT_EQ(std::string(e.what()).find("json.exception"), std::string::npos) << e.what();
  struct Case {
    std::string text;
    std::uint64_t offset;
    const char* what;
  };
  const Case cases[] = {
      {"", 0, "unexpected end of input"},
      {"[1, 2", 5, "unexpected end of input"},
      {"{\"a\" 1}", 5, "expected ':'"},
      {"[1] x", 4, "expected end of input"},
      {"[1] [2]", 4, "expected end of input"},
      {"[1x]", 2, "invalid literal"},
      {"[1.]", 1, "invalid number"},
      {"[1e400]", 1, "number overflow"},
      {"{\"a\":1,}", 7, "expected string literal"},
      {"\"ab\x01\"", 3, "control character"},
      {"[\"\\q\"]", 3, "after backslash"},
      {"\"\\ud800\"", 7, "surrogate"},
      {"\"bad \xff utf-8\"", 5, "ill-formed UTF-8"},  // strings must be UTF-8
      {"{\"a\":1,\"b\":2,\n \"a\":3}", 15, "duplicate object key 'a'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    e = parse_error_of(c.text, "f.json");
    EXPECT_EQ(e.offset(), c.offset) << e.what();
    EXPECT_NE(std::string(e.what()).find("f.json: offset " + std::to_string(c.offset) + ": "),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(c.what), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(" (line "), std::string::npos) << e.what();
  }
  EXPECT_NE(std::string(parse_error_of("{\"a\":1,\n\"a\":2}").what()).find("(line 2:1)"),
            std::string::npos);
  // A long bad token is not echoed whole into the message.
  e = parse_error_of("[\"" + std::string(100000, 'x') + "\x01\"]");
  EXPECT_LT(std::string(e.what()).size(), 400u);
}

TEST(Json, DuplicateKeysInLargeObjects) {
  // Past 32 members keys are found through a hash index: duplicates still refused, at the key.
  std::string text = "{";
  for (int i = 0; i < 1000; ++i)
    text += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  EXPECT_EQ(json::as_object(json::parse(text + "\"k1000\":0}")).size(), 1001u);
  const std::size_t at = text.size();
  const format_error e = parse_error_of(text + "\"k777\":0}");
  EXPECT_EQ(e.offset(), at);
  EXPECT_NE(std::string(e.what()).find("duplicate object key 'k777'"), std::string::npos);
}

TEST(Json, DeepNestingIsRefusedWithoutStackOverflow) {
  // 512 levels parse (and are destroyed); deeper is a format_error at the first '[' too many.
  const auto ok = json::parse(std::string(512, '[') + std::string(512, ']'));
  EXPECT_TRUE(ok.is_array());
  for (const char open : {'[', '{'}) {
    const std::string deep(1000000, open);
    format_error e = parse_error_of(deep);
    if (open == '[') {
      EXPECT_EQ(e.offset(), 512u);
      EXPECT_NE(std::string(e.what()).find("nesting deeper than 512"), std::string::npos);
    }
    e = parse_error_of(std::string(513, '[') + std::string(513, ']'));
    EXPECT_EQ(e.offset(), 512u);
  }
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  EXPECT_NE(std::string(parse_error_of(objects).what()).find("nesting deeper"), std::string::npos);
}
