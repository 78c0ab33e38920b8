// Hostile input: a table of broken GGUF, safetensors and npy files, each built byte by byte.
// Every case must raise lmembed::format_error whose message names the file, the exact byte
// offset of the fault and what is wrong; nothing may crash (the suite also runs under
// ASan/UBSan). A second part truncates valid files at every length.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "lmembed/core/file.hpp"
#include "lmembed/io/gguf.hpp"
#include "lmembed/io/npy.hpp"
#include "lmembed/io/safetensors.hpp"

namespace fs = std::filesystem;
using namespace lmembed;
using namespace lmembed::io;

namespace {

/// Little-endian byte builder that can remember the offset where the fault is planted.
struct Bytes {
  std::vector<std::byte> b;
  std::uint64_t mark = format_error::npos;

  Bytes& here() {
    mark = b.size();
    return *this;
  }
  template <class T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& u8(std::uint8_t v) { return put(v); }
  Bytes& u32(std::uint32_t v) { return put(v); }
  Bytes& u64(std::uint64_t v) { return put(v); }
  Bytes& raw(std::string_view s) {
    for (char c : s) b.push_back(static_cast<std::byte>(c));
    return *this;
  }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  Bytes& zeros(std::size_t n) {
    b.insert(b.end(), n, std::byte{0});
    return *this;
  }
  Bytes& pad_to(std::size_t align) { return zeros((align - b.size() % align) % align); }
};

// --- GGUF pieces -------------------------------------------------------------------------
Bytes& gguf_header(Bytes& b, std::uint64_t n_tensors, std::uint64_t n_kv,
                   std::uint32_t version = 3) {
  return b.raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
}
Bytes& kv_string(Bytes& b, std::string_view key, std::string_view value) {
  return b.str(key).u32(8).str(value);
}
/// A tensor info; `ne` in GGUF order (innermost first).
Bytes& tensor_info(Bytes& b, std::string_view name, std::vector<std::uint64_t> ne,
                   std::uint32_t type, std::uint64_t offset, bool mark_offset = false) {
  b.str(name).u32(static_cast<std::uint32_t>(ne.size()));
  for (auto d : ne) b.u64(d);
  b.u32(type);
  if (mark_offset) b.here();
  return b.u64(offset);
}

/// A valid GGUF v3 file: 2 metadata keys, tensors a [2, 4] F32 at 0 and b [8] F32 at 32.
Bytes valid_gguf(std::uint32_t version = 3) {
  Bytes b;
  gguf_header(b, 2, 2, version);
  kv_string(b, "general.architecture", "llama");
  b.str("tokenizer.ggml.tokens").u32(9).u32(8).u64(2).str("<s>").str("</s>");
  tensor_info(b, "a", {4, 2}, 0, 0);
  tensor_info(b, "b", {8}, 0, 32);
  b.pad_to(32);
  for (int i = 0; i < 16; ++i) b.put(static_cast<float>(i));
  return b;
}

// --- safetensors pieces ------------------------------------------------------------------
/// A safetensors file with header `json` (padded to 8) and `data_bytes` zero data bytes.
Bytes safetensors(std::string json, std::size_t data_bytes, std::uint64_t mark_in_header = 0,
                  bool mark = true) {
  Bytes b;
  b.u64(json.size()).raw(json).zeros(data_bytes);
  if (mark) b.mark = 8 + mark_in_header;
  return b;
}
std::uint64_t pos_of(const std::string& json, const std::string& needle) {
  return json.find(needle);
}

// --- npy pieces --------------------------------------------------------------------------
Bytes npy(std::string dict, std::size_t data_bytes, int major = 1) {
  Bytes b;
  b.raw("\x93NUMPY").u8(static_cast<std::uint8_t>(major)).u8(0);
  const std::size_t prefix = major == 1 ? 10 : 12;
  const std::size_t total = prefix + dict.size() + 1;
  dict.append((total + 63) / 64 * 64 - total, ' ');
  dict += '\n';
  if (major == 1)
    b.put(static_cast<std::uint16_t>(dict.size()));
  else
    b.u32(static_cast<std::uint32_t>(dict.size()));
  b.raw(dict).zeros(data_bytes);
  return b;
}

enum class Kind { gguf, safetensors, npy };

struct Case {
  const char* name;
  Kind kind;
  std::function<Bytes()> build;
  const char* what;  ///< a phrase the message must contain
};

const std::string kSt2 =
    R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"v":{"dtype":"F16","shape":[4],"data_offsets":[16,24]}})";

/// Test names print as the case name, not as bytes.
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

std::vector<Case> cases() {
  std::vector<Case> c;
  // ---------------------------------------------------------------- GGUF
  c.push_back({"gguf_empty", Kind::gguf, [] { return Bytes{}.here(); }, "truncated"});
  c.push_back({"gguf_wrong_magic", Kind::gguf,
               [] {
                 Bytes b = valid_gguf();
                 b.b[0] = std::byte{'G'};
                 b.b[3] = std::byte{'X'};
                 b.mark = 0;
                 return b;
               },
               "wrong magic"});
  c.push_back({"gguf_version_1", Kind::gguf,
               [] {
                 Bytes b = valid_gguf(1);
                 b.mark = 4;
                 return b;
               },
               "version 1 is not supported"});
  c.push_back({"gguf_version_99", Kind::gguf,
               [] {
                 Bytes b = valid_gguf(99);
                 b.mark = 4;
                 return b;
               },
               "unknown GGUF version 99"});
  c.push_back({"gguf_big_endian", Kind::gguf,
               [] {
                 Bytes b = valid_gguf(0x03000000u);
                 b.mark = 4;
                 return b;
               },
               "big-endian"});
  c.push_back({"gguf_truncated_counts", Kind::gguf,
               [] {
                 Bytes b;
                 b.raw("GGUF").u32(3).u64(0).here().u32(0);
                 return b;
               },
               "truncated"});
  c.push_back({"gguf_key_length_2p60", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).here().u64(1ull << 60).raw("general.name").u32(8).str("x");
                 return b;
               },
               "string length 1152921504606846976"});
  c.push_back({"gguf_string_value_length_2p60", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("general.name").u32(8).here().u64(1ull << 60).raw("x");
                 return b;
               },
               "exceeds"});
  c.push_back({"gguf_array_length_2p60", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("tokenizer.ggml.scores").u32(9).u32(6).here();
                 b.u64(1ull << 60).zeros(64);
                 return b;
               },
               "array length 1152921504606846976"});
  c.push_back({"gguf_string_array_length_2p60", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("tokenizer.ggml.tokens").u32(9).u32(8).here();
                 b.u64(1ull << 60).str("a");
                 return b;
               },
               "cannot fit"});
  c.push_back({"gguf_array_elements_over_limit", Kind::gguf,
               [] {
                 // 2^24 + 1 UINT8 elements fit in the file, but would cost ~1 GB in memory.
                 Bytes b;
                 gguf_header(b, 0, 1).str("big").u32(9).u32(0).here();
                 b.u64((1ull << 24) + 1).zeros((1u << 24) + 1);
                 return b;
               },
               "exceeds the limit of 16777216"});
  c.push_back({"gguf_tensor_count_2p60", Kind::gguf,
               [] {
                 Bytes b;
                 b.raw("GGUF").u32(3).here().u64(1ull << 60).u64(0).zeros(64);
                 return b;
               },
               "tensor count 1152921504606846976 is larger than the file could hold"});
  c.push_back({"gguf_tensor_count_after_metadata", Kind::gguf,
               [] {
                 // 3 tensors would fit in the whole file but not after its metadata.
                 Bytes b;
                 gguf_header(b, 3, 1);
                 kv_string(b, "general.name", std::string(80, 'x'));
                 b.here();
                 tensor_info(b, "a", {8}, 0, 0);
                 b.zeros(16);
                 return b;
               },
               "cannot fit"});
  c.push_back({"gguf_kv_count_2p60", Kind::gguf,
               [] {
                 Bytes b;
                 b.raw("GGUF").u32(3).u64(0).here().u64(1ull << 60).zeros(64);
                 return b;
               },
               "metadata count"});
  c.push_back({"gguf_unknown_value_type", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("general.name").here().u32(13).u64(0);
                 return b;
               },
               "unknown metadata value type 13"});
  c.push_back({"gguf_unknown_array_type", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("x").u32(9).here().u32(77).u64(1).u64(0);
                 return b;
               },
               "unknown array element type 77"});
  c.push_back({"gguf_arrays_nested_too_deep", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("deep").u32(9);
                 for (int d = 0; d < 16; ++d) b.u32(9).u64(1);
                 b.here().u32(4).u64(1).u32(7);
                 return b;
               },
               "nested deeper than 16"});
  c.push_back({"gguf_bool_value_2", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("tokenizer.ggml.add_bos_token").u32(7).here().u8(2);
                 return b;
               },
               "BOOL value 2"});
  c.push_back({"gguf_duplicate_key", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 2);
                 kv_string(b, "general.name", "a");
                 b.here();
                 kv_string(b, "general.name", "b");
                 return b;
               },
               "duplicate metadata key 'general.name'"});
  c.push_back({"gguf_alignment_not_power_of_two", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("general.alignment").u32(4).here().u32(48);
                 return b;
               },
               "not a power of two"});
  c.push_back({"gguf_alignment_zero", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("general.alignment").u32(4).here().u32(0);
                 return b;
               },
               "not a power of two"});
  c.push_back({"gguf_alignment_wrong_type", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 0, 1).str("general.alignment").u32(10).here().u64(32);
                 return b;
               },
               "must be UINT32"});
  c.push_back({"gguf_tensor_5_dims", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0).str("t").here().u32(5);
                 for (int i = 0; i < 5; ++i) b.u64(1);
                 b.u32(0).u64(0).pad_to(32).zeros(4);
                 return b;
               },
               "5 dimensions"});
  c.push_back({"gguf_tensor_dims_overflow", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0).str("t").u32(3).u64(1ull << 40).here().u64(1ull << 40);
                 b.u64(1).u32(0).u64(0).pad_to(32).zeros(32);
                 return b;
               },
               "overflow"});
  c.push_back({"gguf_zero_dim_others_overflow", Kind::gguf,
               [] {
                 // No element, but 2^40 x 2^40 columns would overflow every later product.
                 Bytes b;
                 gguf_header(b, 1, 0).str("t").u32(3).u64(1ull << 40).u64(0).here();
                 b.u64(1ull << 40).u32(0).u64(0).pad_to(32);
                 return b;
               },
               "overflow"});
  c.push_back({"gguf_unknown_tensor_type", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0).str("t").u32(1).u64(8).here().u32(99).u64(0);
                 b.pad_to(32).zeros(32);
                 return b;
               },
               "unknown tensor type 99"});
  c.push_back({"gguf_unsupported_iq2_xxs", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0).str("t").u32(1).u64(256).here().u32(16).u64(0);
                 b.pad_to(32).zeros(66);
                 return b;
               },
               "unsupported tensor type IQ2_XXS (16)"});
  c.push_back({"gguf_q8_0_row_not_block_multiple", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0).str("t").u32(2).u64(40).u64(2).here().u32(8).u64(0);
                 b.pad_to(32).zeros(160);
                 return b;
               },
               "not a multiple of the Q8_0 block size 32"});
  c.push_back({"gguf_tensor_past_end", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0);
                 tensor_info(b, "t", {64}, 0, 0, true);
                 b.pad_to(32).zeros(255);  // needs 256
                 return b;
               },
               "lies past the end of the file"});
  c.push_back({"gguf_tensor_offset_huge", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0);
                 tensor_info(b, "t", {4}, 0, ~std::uint64_t{31}, true);
                 b.pad_to(32).zeros(32);
                 return b;
               },
               "lies past the end of the file"});
  c.push_back({"gguf_tensors_overlap", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 2, 0);
                 tensor_info(b, "a", {16}, 0, 0);
                 tensor_info(b, "b", {8}, 0, 32, true);  // a covers [0, 64)
                 b.pad_to(32).zeros(96);
                 return b;
               },
               "overlaps tensor 'a'"});
  c.push_back({"gguf_tensor_misaligned", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0);
                 tensor_info(b, "a", {4}, 0, 4, true);
                 b.pad_to(32).zeros(64);
                 return b;
               },
               "not a multiple of the alignment 32"});
  c.push_back({"gguf_duplicate_tensor_name", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 2, 0);
                 tensor_info(b, "a", {8}, 0, 0);
                 b.here();
                 tensor_info(b, "a", {8}, 0, 32);
                 b.pad_to(32).zeros(64);
                 return b;
               },
               "duplicate tensor name 'a'"});
  c.push_back({"gguf_data_start_past_end", Kind::gguf,
               [] {
                 Bytes b;
                 gguf_header(b, 1, 0);
                 tensor_info(b, "a", {0}, 0, 0);
                 b.here();  // data would start at the next multiple of 32
                 return b;
               },
               "tensor data should start"});
  // ---------------------------------------------------------------- GGUF quantized blocks
  // For each GGML block type: data one byte short, a row that is not a whole number of blocks,
  // and a NaN scale in block 1 (its last F16 scale field: d, m or dmin), each named.
  struct QType {
    const char* name;
    std::uint32_t code;
    std::uint64_t block, bytes, scale_at;
  };
  static const QType qtypes[] = {{"Q4_0", 2, 32, 18, 0},      {"Q4_1", 3, 32, 20, 2},
                                 {"Q5_0", 6, 32, 22, 0},      {"Q5_1", 7, 32, 24, 2},
                                 {"Q8_0", 8, 32, 34, 0},      {"Q2_K", 10, 256, 84, 82},
                                 {"Q3_K", 11, 256, 110, 108}, {"Q4_K", 12, 256, 144, 2},
                                 {"Q5_K", 13, 256, 176, 2},   {"Q6_K", 14, 256, 210, 208}};
  static std::vector<std::string> qnames, qwhat;  // the table holds const char*
  if (qnames.empty())
    for (const QType& q : qtypes) {
      for (const char* k : {"_truncated_block", "_row_not_block_multiple", "_nan_scale"})
        qnames.push_back(std::string("gguf_") + q.name + k);
      qwhat.push_back("tensor 'w': data [0, +" + std::to_string(2 * q.bytes) +
                      ") lies past the end of the file");
      qwhat.push_back("tensor 'w': row length " + std::to_string(q.block + q.block / 2) +
                      " is not a multiple of the " + q.name + " block size " +
                      std::to_string(q.block));
      qwhat.push_back(std::string("tensor 'w': ") + q.name +
                      " block 1 of 2 has a non-finite scale");
    }
  for (std::size_t i = 0; i < std::size(qtypes); ++i) {
    const QType q = qtypes[i];
    c.push_back({qnames[3 * i].c_str(), Kind::gguf,
                 [q] {
                   Bytes b;
                   gguf_header(b, 1, 0);
                   tensor_info(b, "w", {2 * q.block}, q.code, 0, true);
                   b.pad_to(32).zeros(2 * q.bytes - 1);
                   return b;
                 },
                 qwhat[3 * i].c_str()});
    c.push_back({qnames[3 * i + 1].c_str(), Kind::gguf,
                 [q] {
                   Bytes b;
                   gguf_header(b, 1, 0).str("w").u32(2).u64(q.block + q.block / 2).u64(2).here();
                   b.u32(q.code).u64(0).pad_to(32).zeros(4 * q.bytes);
                   return b;
                 },
                 qwhat[3 * i + 1].c_str()});
    c.push_back({qnames[3 * i + 2].c_str(), Kind::gguf,
                 [q] {
                   Bytes b;
                   gguf_header(b, 1, 0);
                   tensor_info(b, "w", {2 * q.block}, q.code, 0);
                   b.pad_to(32);
                   const std::size_t at = b.b.size() + q.bytes + q.scale_at;
                   b.zeros(2 * q.bytes);
                   b.b[at] = std::byte{0x00};
                   b.b[at + 1] = std::byte{0x7E};  // F16 0x7e00: NaN
                   b.mark = at;
                   return b;
                 },
                 qwhat[3 * i + 2].c_str()});
  }
  // ---------------------------------------------------------------- safetensors
  c.push_back({"st_shorter_than_8", Kind::safetensors,
               [] {
                 Bytes b;
                 b.here().raw("abc");
                 return b;
               },
               "truncated"});
  c.push_back({"st_header_length_past_end", Kind::safetensors,
               [] {
                 Bytes b;
                 b.here().u64(1000).raw("{}");
                 return b;
               },
               "header length 1000 runs past the end of the file"});
  c.push_back({"st_header_length_2p63", Kind::safetensors,
               [] {
                 Bytes b;
                 b.here().u64(1ull << 63).raw("{}");
                 return b;
               },
               "runs past the end"});
  c.push_back({"st_header_not_json", Kind::safetensors,
               [] {
                 const std::string j = R"({"w": {"dtype": F32}})";
                 return safetensors(j, 0, pos_of(j, "F32"));
               },
               "header is not valid JSON"});
  c.push_back({"st_header_not_object", Kind::safetensors,
               [] { return safetensors("[1, 2]  ", 0, 0); }, "must be a JSON object"});
  c.push_back({"st_unknown_dtype", Kind::safetensors,
               [] {
                 const std::string j =
                     R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})";
                 return safetensors(j, 2, pos_of(j, "\"w\""));
               },
               "unknown dtype 'F8_E4M3'"});
  c.push_back({"st_shape_size_mismatch", Kind::safetensors,
               [] {
                 const std::string j =
                     R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})";
                 return safetensors(j, 16, pos_of(j, "\"w\""));
               },
               "needs 24 bytes, data_offsets span 16"});
  c.push_back({"st_offsets_past_end", Kind::safetensors,
               [] {
                 std::string j = kSt2;
                 Bytes b = safetensors(j, 20, 0, false);  // needs 24
                 b.mark = 8 + j.size() + 16;
                 return b;
               },
               "run past the end of the file"});
  c.push_back(
      {"st_offsets_huge", Kind::safetensors,
       [] {
         const std::string j =
             R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[9223372036854775800,9223372036854775802]}})";
         Bytes b = safetensors(j, 8, 0, false);
         b.mark = 8 + j.size() + 9223372036854775800ull;
         return b;
       },
       "run past the end"});
  c.push_back({"st_offsets_reversed", Kind::safetensors,
               [] {
                 const std::string j = R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}})";
                 return safetensors(j, 8, pos_of(j, "\"w\""));
               },
               "end before they begin"});
  c.push_back(
      {"st_tensors_overlap", Kind::safetensors,
       [] {
         const std::string j =
             R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
         Bytes b = safetensors(j, 16, 0, false);
         b.mark = 8 + j.size() + 8;
         return b;
       },
       "overlaps tensor"});
  c.push_back(
      {"st_duplicate_tensor_name", Kind::safetensors,
       [] {
         const std::string j =
             R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
         return safetensors(j, 2, j.rfind("\"a\""));
       },
       "duplicate object key 'a'"});
  c.push_back({"st_negative_shape", Kind::safetensors,
               [] {
                 const std::string j = R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})";
                 return safetensors(j, 0, pos_of(j, "\"w\""));
               },
               "non-negative integers"});
  c.push_back(
      {"st_shape_overflow", Kind::safetensors,
       [] {
         const std::string j =
             R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
         return safetensors(j, 0, pos_of(j, "\"w\""));
       },
       "overflows"});
  c.push_back(
      {"st_zero_dim_others_overflow", Kind::safetensors,
       [] {
         const std::string j =
             R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})";
         return safetensors(j, 0, pos_of(j, "\"w\""));
       },
       "overflows"});
  c.push_back({"st_missing_dtype", Kind::safetensors,
               [] {
                 const std::string j = R"({"w":{"shape":[1],"data_offsets":[0,4]}})";
                 return safetensors(j, 4, pos_of(j, "\"w\""));
               },
               "missing or non-string 'dtype'"});
  c.push_back({"st_metadata_not_strings", Kind::safetensors,
               [] {
                 const std::string j = R"({"__metadata__":{"n":3}})";
                 return safetensors(j, 0, pos_of(j, "\"__metadata__\""));
               },
               "must be a string"});
  // ---------------------------------------------------------------- npy
  c.push_back({"npy_wrong_magic", Kind::npy,
               [] {
                 Bytes b = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
                 b.b[1] = std::byte{'X'};
                 b.mark = 0;
                 return b;
               },
               "wrong magic"});
  c.push_back({"npy_unknown_version", Kind::npy,
               [] {
                 Bytes b = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
                 b.b[6] = std::byte{9};
                 b.mark = 6;
                 return b;
               },
               "unknown npy version 9.0"});
  c.push_back({"npy_fortran_order", Kind::npy,
               [] {
                 Bytes b = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16);
                 b.mark = 10;
                 return b;
               },
               "fortran_order True is not supported"});
  c.push_back(
      {"npy_shape_overflow", Kind::npy,
       [] {
         Bytes b = npy(
             "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 0);
         b.mark = 10;
         return b;
       },
       "overflows"});
  c.push_back({"npy_zero_dim_others_overflow", Kind::npy,
               [] {
                 // Found by fuzz_npy: numel 0, but the columns of to_matrix overflowed.
                 Bytes b =
                     npy("{'descr': '<i2', 'fortran_order': False, 'shape': (0, 404, 1600, 366084, "
                         "1600, 36608, 8, 0), }",
                         0);
                 b.mark = 10;
                 return b;
               },
               "overflows"});
  c.push_back({"npy_shape_entry_overflow", Kind::npy,
               [] {
                 const std::string d =
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }";
                 Bytes b = npy(d, 0);
                 b.mark = 10 + d.find("9999");
                 return b;
               },
               "shape entry overflows int64"});
  c.push_back({"npy_data_size_mismatch", Kind::npy,
               [] {
                 Bytes b = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 16);
                 b.mark = b.b.size() - 16;  // where the data starts
                 return b;
               },
               "needs 24 data bytes, the file has 16"});
  c.push_back({"npy_big_endian", Kind::npy,
               [] {
                 Bytes b = npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 4);
                 b.mark = 10;
                 return b;
               },
               "unsupported dtype descr '>f4'"});
  c.push_back({"npy_header_past_end", Kind::npy,
               [] {
                 Bytes b;
                 b.raw("\x93NUMPY").u8(1).u8(0).put(std::uint16_t{5000}).raw("{}");
                 b.mark = 8;
                 return b;
               },
               "header length 5000 runs past the end"});
  c.push_back({"npy_header_garbage", Kind::npy,
               [] {
                 Bytes b = npy("[1, 2, 3]", 0);
                 b.mark = 10;
                 return b;
               },
               "expected '{'"});
  c.push_back({"npy_missing_shape", Kind::npy,
               [] {
                 Bytes b = npy("{'descr': '<f4', 'fortran_order': False}", 0);
                 b.mark = 10;
                 return b;
               },
               "must have 'descr', 'fortran_order' and 'shape'"});
  return c;
}

fs::path scratch() {
  static const fs::path d = [] {
    fs::path p = fs::temp_directory_path() / ("lmembed_hostile_" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p;
  }();
  return d;
}

void open_file(Kind k, const fs::path& p) {
  switch (k) {
    case Kind::gguf:
      (void)GgufFile::open(p);
      break;
    case Kind::safetensors:
      (void)SafetensorsFile::open(p);
      break;
    case Kind::npy:
      (void)read_npy(p);
      break;
  }
}

// (The tests stay in the anonymous namespace: their fixture's parameter type lives there.)
class Hostile : public ::testing::TestWithParam<Case> {};

TEST_P(Hostile, RaisesFormatErrorNamingFileOffsetAndProblem) {
  const Case& c = GetParam();
  const Bytes b = c.build();
  ASSERT_NE(b.mark, format_error::npos) << "case must mark the faulty offset";
  const char* ext = c.kind == Kind::gguf ? ".gguf" : c.kind == Kind::npy ? ".npy" : ".safetensors";
  const fs::path p = scratch() / (std::string(c.name) + ext);
  write_file_atomic(p, std::span<const std::byte>(b.b));
  try {
    open_file(c.kind, p);
    FAIL() << c.name << ": no error";
  } catch (const format_error& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.file(), p.string()) << m;
    EXPECT_NE(m.find(p.string()), std::string::npos) << m;
    EXPECT_EQ(e.offset(), b.mark) << m;
    EXPECT_NE(m.find("offset " + std::to_string(b.mark) + ":"), std::string::npos) << m;
    EXPECT_NE(m.find(c.what), std::string::npos) << "expected '" << c.what << "' in: " << m;
  }
  // Exactly format_error: anything else (std::bad_alloc, length_error, ...) fails the test.
  fs::remove(p);
}

INSTANTIATE_TEST_SUITE_P(Table, Hostile, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Hostile, TableHasAtLeast25Cases) {
  EXPECT_GE(cases().size(), 25u);
}

// The valid builders really are valid (so the table's faults are the only faults).
TEST(Hostile, ValidBaselinesOpen) {
  for (std::uint32_t v : {2u, 3u}) {
    const Bytes b = valid_gguf(v);
    const auto f = GgufFile::from_bytes(b.b, "valid.gguf");
    EXPECT_EQ(f.version(), v);
    EXPECT_EQ(f.get_as<std::vector<std::string>>("tokenizer.ggml.tokens"),
              (std::vector<std::string>{"<s>", "</s>"}));
    EXPECT_EQ(f.tensor("a").shape, (Shape{2, 4}));
    EXPECT_EQ(to_matrix(f.tensor("b"))(0, 7), 15.0f);
  }
  Bytes st;
  st.u64(kSt2.size()).raw(kSt2).zeros(24);
  const auto s = SafetensorsFile::from_bytes(st.b, "valid.safetensors");
  EXPECT_EQ(s.tensors().size(), 2u);
  const Bytes n = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 16, 2);
  EXPECT_EQ(parse_npy(n.b, "valid.npy").shape, (Shape{2, 2}));
}

// Cutting a valid file anywhere gives a format_error, never a crash or a silent success.
TEST(Hostile, TruncatedAnywhere) {
  const Bytes g = valid_gguf();
  for (std::size_t n = 0; n < g.b.size(); ++n) {
    std::vector<std::byte> cut(g.b.begin(), g.b.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW((void)GgufFile::from_bytes(cut, "cut.gguf"), format_error) << n;
  }
  Bytes st;
  st.u64(kSt2.size()).raw(kSt2).zeros(24);
  for (std::size_t n = 0; n < st.b.size(); ++n) {
    std::vector<std::byte> cut(st.b.begin(), st.b.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW((void)SafetensorsFile::from_bytes(cut, "cut.safetensors"), format_error) << n;
  }
  const Bytes np = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 16);
  for (std::size_t n = 0; n < np.b.size(); ++n) {
    std::vector<std::byte> cut(np.b.begin(), np.b.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW((void)parse_npy(cut, "cut.npy"), format_error) << n;
  }
  // The real model, cut at 200 places through header, metadata and tensor data.
  const auto m = MappedFile::open(fs::path(LMEMBED_DATA_DIR) / "models/stories260K.gguf");
  const std::size_t size = m.bytes().size();
  for (std::size_t k = 0; k < 200; ++k) {
    const std::size_t n = k < 100 ? k * 150 : (k - 100) * (size / 100) + 7;
    if (n >= size) continue;
    std::vector<std::byte> cut(m.bytes().begin(),
                               m.bytes().begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW((void)GgufFile::from_bytes(cut, "cut.gguf"), format_error) << n;
  }
}

// Every GGUF metadata value type, nested arrays and arrays of strings, with typed getters.
TEST(Gguf, EveryValueTypeAndNestedArrays) {
  Bytes b;
  gguf_header(b, 0, 15, 2);
  b.str("u8").u32(0).u8(200);
  b.str("i8").u32(1).put(std::int8_t{-5});
  b.str("u16").u32(2).put(std::uint16_t{65535});
  b.str("i16").u32(3).put(std::int16_t{-300});
  b.str("u32").u32(4).u32(4000000000u);
  b.str("i32").u32(5).put(std::int32_t{-7});
  b.str("f32").u32(6).put(1.5f);
  b.str("bool").u32(7).u8(1);
  b.str("str").u32(8).str("héllo");
  b.str("u64").u32(10).u64(1ull << 63);
  b.str("i64").u32(11).put(std::int64_t{-(1ll << 40)});
  b.str("f64").u32(12).put(0.1);
  b.str("strings").u32(9).u32(8).u64(3).str("a").str("").str("ccc");
  // [[1, 2], [3]] as an array of INT32 arrays
  b.str("nested").u32(9).u32(9).u64(2).u32(5).u64(2).put(std::int32_t{1}).put(std::int32_t{2});
  b.u32(5).u64(1).put(std::int32_t{3});
  b.str("empty").u32(9).u32(6).u64(0);
  const auto f = GgufFile::from_bytes(b.b, "types.gguf");
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.keys().size(), 15u);
  EXPECT_EQ(f.get("u8").type(), GgufType::u8);
  EXPECT_EQ(f.get_as<int>("u8"), 200);
  EXPECT_EQ(f.get_as<int>("i8"), -5);
  EXPECT_EQ(f.get_as<std::uint16_t>("u16"), 65535);
  EXPECT_EQ(f.get_as<int>("i16"), -300);
  EXPECT_EQ(f.get_as<std::uint32_t>("u32"), 4000000000u);
  EXPECT_EQ(f.get_as<std::int64_t>("i32"), -7);
  EXPECT_EQ(f.get_as<float>("f32"), 1.5f);
  EXPECT_THROW(f.get_as<int>("f32"), config_error);  // 1.5 is not integral
  EXPECT_TRUE(f.get_as<bool>("bool"));
  EXPECT_THROW(f.get_as<bool>("u8"), config_error);
  EXPECT_EQ(f.get_as<std::string>("str"), "h\xC3\xA9llo");
  EXPECT_EQ(f.get_as<std::uint64_t>("u64"), 1ull << 63);
  EXPECT_THROW(f.get_as<std::int64_t>("u64"), config_error);  // out of range
  EXPECT_EQ(f.get_as<std::int64_t>("i64"), -(1ll << 40));
  EXPECT_THROW(f.get_as<std::uint32_t>("i32"), config_error);  // negative
  EXPECT_THROW(f.get_as<std::int8_t>("u8"), config_error);     // 200 > 127
  EXPECT_EQ(f.get_as<double>("f64"), 0.1);
  EXPECT_EQ(f.get_as<double>("i64"), -1099511627776.0);
  EXPECT_EQ(f.get_as<std::vector<std::string>>("strings"),
            (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_THROW(f.get_as<std::vector<float>>("strings"), config_error);
  const GgufValue& n = f.get("nested");
  ASSERT_TRUE(n.is_array());
  EXPECT_EQ(n.array_type(), GgufType::array);
  ASSERT_EQ(n.size(), 2u);
  EXPECT_EQ(n[0].as<std::vector<std::int32_t>>(), (std::vector<std::int32_t>{1, 2}));
  EXPECT_EQ(n[1].as<std::vector<float>>(), (std::vector<float>{3.0f}));
  EXPECT_EQ(f.get_as<std::vector<std::vector<std::int64_t>>>("nested"),
            (std::vector<std::vector<std::int64_t>>{{1, 2}, {3}}));
  EXPECT_THROW(n[2], config_error);
  EXPECT_TRUE(f.get_as<std::vector<float>>("empty").empty());
  EXPECT_EQ(f.get_or<int>("absent", 42), 42);
  EXPECT_EQ(f.get_or<int>("i32", 42), -7);
  try {
    (void)f.get_as<std::string>("u8");
    FAIL();
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("types.gguf"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'u8'"), std::string::npos) << e.what();
  }
}

}  // namespace
