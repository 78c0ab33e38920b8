// lmembed/backbone/config.hpp - the shape of a decoder (ModelConfig) and its F32 weights.
//
// Kept free of file formats: the loaders (loader.hpp) fill these from GGUF or a Hugging Face
// folder, tests and benchmarks fill them directly (random weights generated in memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/core/error.hpp"
#include "lmembed/core/tensor.hpp"
#include "lmembed/io/dtype.hpp"

namespace lmembed {

/// How the rows of q/k weights pair up for rotary embeddings.
enum class RopeStyle : std::uint8_t {
  /// Pairs (2i, 2i+1) of each head: llama.cpp's NORM mode, what GGUF llama files use, because
  /// convert_hf_to_gguf.py permutes the q/k rows of llama-architecture models.
  interleaved,
  /// Pairs (i, i + head_dim/2): HF's rotate_half and llama.cpp's NEOX mode (qwen2 in GGUF and
  /// every HF checkpoint).
  neox,
};

/// "interleaved" | "neox".
inline const char* to_string(RopeStyle s) {
  return s == RopeStyle::interleaved ? "interleaved" : "neox";
}

/// The hyper-parameters of a Llama / Mistral / Qwen2 decoder.
struct ModelConfig {
  std::string arch = "llama";              ///< "llama" (also Mistral) or "qwen2"
  std::int64_t n_vocab = 0;                ///< rows of the token embedding
  std::int64_t d_model = 0;                ///< hidden size
  std::int64_t n_layers = 0;               ///< decoder blocks
  std::int64_t n_heads = 0;                ///< query heads
  std::int64_t n_kv_heads = 0;             ///< key/value heads (GQA when < n_heads)
  std::int64_t head_dim = 0;               ///< per head (usually d_model / n_heads)
  std::int64_t d_ff = 0;                   ///< SwiGLU inner size
  std::int64_t n_ctx = 0;                  ///< longest sequence the model was trained for
  float rope_theta = 10000.0f;             ///< rotary base
  float rms_eps = 1e-5f;                   ///< RMSNorm epsilon
  bool qkv_bias = false;                   ///< q/k/v projections have biases (qwen2)
  bool tied_output = false;                ///< the LM head reuses the token embedding (unused here)
  RopeStyle rope_style = RopeStyle::neox;  ///< q/k row layout of the weights as loaded

  /// Width of all query heads together.
  std::int64_t q_dim() const { return n_heads * head_dim; }
  /// Width of all key (or value) heads together.
  std::int64_t kv_dim() const { return n_kv_heads * head_dim; }

  /// config_error unless every size is positive and the heads fit together.
  void validate(const std::string& source = "model") const {
    auto need = [&](bool ok, const std::string& what) {
      if (!ok) throw config_error(source + ": invalid model config: " + what);
    };
    need(arch == "llama" || arch == "qwen2",
         "unsupported architecture '" + arch + "' (supported: llama, mistral, qwen2)");
    need(n_vocab > 0, "n_vocab must be > 0");
    need(d_model > 0, "d_model must be > 0");
    need(n_layers > 0, "n_layers must be > 0");
    need(n_heads > 0, "n_heads must be > 0");
    need(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "n_kv_heads (" + std::to_string(n_kv_heads) +
                                                          ") must divide n_heads (" +
                                                          std::to_string(n_heads) + ")");
    need(head_dim > 0 && head_dim % 2 == 0, "head_dim must be even and > 0");
    need(d_ff > 0, "d_ff must be > 0");
    need(n_ctx > 0, "n_ctx must be > 0");
    need(rope_theta > 0.0f, "rope_theta must be > 0");
    need(rms_eps > 0.0f, "rms_eps must be > 0");
  }
};

/// How a model's weights are held in memory (Backbone::load, EncoderOptions::weights).
enum class WeightFormat : std::uint8_t {
  /// GGUF projections in Q8_0 / Q4_0 / Q4_1 stay in that block type and run on integer kernels
  /// (activations rounded to 8 bits per 32-value block, see backbone/qgemm.hpp); a quantized
  /// token embedding stays quantized (rows decoded on lookup, exactly). Everything else is F32.
  stored,
  /// Every tensor dequantized to F32: the exact evaluation of the file's values (4 bytes per
  /// parameter).
  f32,
};

/// "stored" | "f32".
inline const char* to_string(WeightFormat f) {
  return f == WeightFormat::stored ? "stored" : "f32";
}

/// "stored" / "f32" -> WeightFormat; config_error naming `who` (when not empty) and the
/// choices otherwise.
inline WeightFormat parse_weight_format(std::string_view s, std::string_view who = "weights") {
  if (s == "stored") return WeightFormat::stored;
  if (s == "f32") return WeightFormat::f32;
  throw config_error((who.empty() ? std::string() : std::string(who) + ": ") +
                     "unknown weight format '" + std::string(s) + "' (expected stored or f32)");
}

/// A tensor kept as its file stores it: `rows` rows of `cols` values in GGML blocks of `dtype`
/// (row r at bytes + r * row_bytes()). Empty (rows == 0) when the tensor is held as F32.
struct BlockRows {
  io::DType dtype = io::DType::f32;  ///< the GGML type of the blocks
  std::int64_t rows = 0;             ///< rows (outermost dimension)
  std::int64_t cols = 0;             ///< values per row (a multiple of the block size)
  std::vector<std::byte> bytes;      ///< rows * row_bytes() bytes

  /// True when no tensor is held here.
  bool empty() const noexcept { return rows == 0; }
  /// Bytes of one row.
  std::int64_t row_bytes() const noexcept {
    return cols / io::block_size(dtype) * io::block_bytes(dtype);
  }
};

/// One decoder block's F32 weights, PyTorch layout ([out, in]); q/k rows in the layout named
/// by ModelConfig::rope_style. Biases are 1 x n (empty when the model has none).
struct LayerWeights {
  Matrix attn_norm;       ///< [1, d]
  Matrix wq, wk, wv, wo;  ///< [q_dim, d], [kv_dim, d], [kv_dim, d], [d, q_dim]
  Matrix bq, bk, bv;      ///< [1, q_dim], [1, kv_dim], [1, kv_dim] or empty
  Matrix ffn_norm;        ///< [1, d]
  Matrix w_gate, w_up;    ///< [d_ff, d]
  Matrix w_down;          ///< [d, d_ff]
  /// Projections kept in their stored block type (WeightFormat::stored); where one is set, the
  /// Matrix of the same name is empty.
  struct Stored {
    BlockRows wq, wk, wv, wo, w_gate, w_up, w_down;  ///< as the Matrix fields
  } stored;
};

/// All weights the frozen backbone needs (no LM head: embeddings need none).
struct ModelWeights {
  Matrix tok_embd;  ///< [n_vocab, d]
  std::vector<LayerWeights> layers;
  Matrix out_norm;  ///< [1, d]
  /// The token embedding in its stored block type (WeightFormat::stored, quantized files);
  /// tok_embd is then empty.
  BlockRows tok_embd_stored;
};

namespace detail {

/// Reorders the q/k rows of each head from interleaved pairs (2i, 2i+1) to halves
/// (i, i + head_dim/2): HF row j*(hd/2)+i = GGUF row 2i+j, the inverse of llama.cpp's
/// LlamaModel.permute. Works on weights (rows) and on biases stored as 1 x n.
inline Matrix interleaved_to_neox(const Matrix& w, std::int64_t n_head, std::int64_t head_dim) {
  const bool bias = w.rows() == 1 && w.cols() == n_head * head_dim;
  const Matrix src = bias ? Matrix(w.transpose()) : w;
  Matrix out(src.rows(), src.cols());
  const std::int64_t half = head_dim / 2;
  for (std::int64_t h = 0; h < n_head; ++h)
    for (std::int64_t i = 0; i < half; ++i)
      for (std::int64_t j = 0; j < 2; ++j)
        out.row(h * head_dim + j * half + i) = src.row(h * head_dim + 2 * i + j);
  return bias ? Matrix(out.transpose()) : out;
}

/// interleaved_to_neox as a row map: element r is the row that source row r moves to.
inline std::vector<std::int64_t> interleaved_to_neox_rows(std::int64_t n_head,
                                                          std::int64_t head_dim) {
  std::vector<std::int64_t> to(static_cast<std::size_t>(n_head * head_dim));
  const std::int64_t half = head_dim / 2;
  for (std::int64_t h = 0; h < n_head; ++h)
    for (std::int64_t i = 0; i < half; ++i)
      for (std::int64_t j = 0; j < 2; ++j)
        to[static_cast<std::size_t>(h * head_dim + 2 * i + j)] = h * head_dim + j * half + i;
  return to;
}

}  // namespace detail

}  // namespace lmembed
