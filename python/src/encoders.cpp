// python/src/encoders.cpp - the 8 compile-time designs of the module, chosen at run time.
#include <array>
#include <string_view>

#include "bindings.hpp"

namespace lmembed::python {

namespace {

template <class A, class P>
AnyEncoder make_as(const std::filesystem::path& model, const std::filesystem::path& head,
                   const EncoderOptions& o) {
  return std::make_unique<Encoder<A, P>>(Encoder<A, P>::load(model, head, o));
}

struct Design {
  std::string_view attention, pooling;
  AnyEncoder (*make)(const std::filesystem::path&, const std::filesystem::path&,
                     const EncoderOptions&);
};

template <class A>
constexpr std::array<Design, 4> designs_of() {
  return {{{A::name, pooling::eos::name, &make_as<A, pooling::eos>},
           {A::name, pooling::mean::name, &make_as<A, pooling::mean>},
           {A::name, pooling::latent::name, &make_as<A, pooling::latent>},
           {A::name, pooling::multi_layer::name, &make_as<A, pooling::multi_layer>}}};
}

constexpr auto kCausal = designs_of<attention::causal>();
constexpr auto kBidirectional = designs_of<attention::bidirectional>();

}  // namespace

AnyEncoder make_design(const std::filesystem::path& model, const std::string& attention,
                       const std::string& pooling, const std::filesystem::path& head,
                       const EncoderOptions& options) {
  const auto& table =
      parse_attention(attention) == AttentionKind::causal ? kCausal : kBidirectional;
  for (const Design& d : table)
    if (d.pooling == pooling) return d.make(model, head, options);
  throw config_error("unknown pooling '" + pooling +
                     "' for the Python module (valid: eos, mean, latent, multi_layer)");
}

}  // namespace lmembed::python
