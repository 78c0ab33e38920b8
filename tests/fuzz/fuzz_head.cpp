// libFuzzer target: head and checkpoint files (safetensors with lmembed's __metadata__) loaded
// into pooling heads (pooling/any_head.hpp), seeded from real latent and multi_layer heads of
// stories260K: every file is refused with an lmembed error (shape, name or metadata mismatch)
// or gives a head that runs forward on captured states of its own shape and saves a file that
// loads back to the same parameters.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "lmembed/pooling/any_head.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using Head = lmembed::pooling::AnyHead<float>;
  const auto dir = lmembed_fuzz::fresh("head");
  lmembed_fuzz::put(dir / "in.safetensors",
                    std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    Head h = Head::load(dir / "in.safetensors");
    const auto meta = h.metadata();
    std::int64_t layers = 1;
    if (auto it = meta.find("n_layers"); it != meta.end()) layers = std::stoll(it->second);
    const lmembed::CaptureSpec spec = h.capture();
    const std::int64_t d = h.dim();
    // Forward on a small batch of its own shape: 2 sequences (3 tokens each when it reads all
    // tokens) x the layers it reads.
    if (d > 0 && d <= 1024 && layers > 0 && layers <= 64) {
      lmembed::Captured c;
      c.spec = spec;
      c.n_seq = 2;
      c.d = d;
      c.n_layers = spec.layers == lmembed::CaptureLayers::all ? layers : 1;
      std::int64_t items = 2;
      if (spec.tokens == lmembed::CaptureTokens::all) {
        c.offsets = {0, 3, 6};
        items = 6;
      }
      c.states = lmembed::Matrix::Random(items * c.n_layers, d);
      const lmembed::Matrix y = h.forward(c);
      LMEMBED_FUZZ_CHECK(y.rows() == 2, "one output row per sequence");
    }
    h.save(dir / "out.safetensors");
    Head back = Head::load(dir / "out.safetensors");
    auto pa = h.parameters();
    auto pb = back.parameters();
    LMEMBED_FUZZ_CHECK(pa.size() == pb.size(), "parameter count after save/load");
    for (std::size_t i = 0; i < pa.size(); ++i) {
      const auto& a = pa[i]->value;
      const auto& b = pb[i]->value;
      LMEMBED_FUZZ_CHECK(a.rows() == b.rows() && a.cols() == b.cols() &&
                             std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0,
                         "parameter bits after save/load");
    }
  } catch (const lmembed::error&) {
  } catch (const std::invalid_argument&) {  // n_layers metadata that stoll rejects (harness)
  } catch (const std::out_of_range&) {
  }
  return 0;
}
