// lmembed/pooling/any_head.hpp - a trainable head chosen at run time (CLI, trainer, cache tools).
//
// Compile-time code uses LatentHead / MultiLayerHead directly; AnyHead wraps either behind the
// same interface for code that learns the pooling from a flag or a file's __metadata__.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

#include "lmembed/io/safetensors.hpp"
#include "lmembed/pooling/latent.hpp"
#include "lmembed/pooling/multi_layer.hpp"

namespace lmembed::pooling {

/// A latent or multi_layer* head on scalar T, selected by pooling name.
template <class T>
class AnyHead {
 public:
  using Variant = std::variant<LatentHead<T>, MultiLayerHead<T>>;
  /// The wrapped head's context.
  struct Context {
    std::variant<typename LatentHead<T>::Context, typename MultiLayerHead<T>::Context> v;
  };

  explicit AnyHead(LatentHead<T> h) : head_(std::move(h)) {}
  explicit AnyHead(MultiLayerHead<T> h) : head_(std::move(h)) {}

  /// A freshly initialized head with default sizes for `pooling` (latent or multi_layer*), width
  /// d and n_layers backbone layers (used by multi_layer and multi_layer_mean).
  static AnyHead create(std::string_view pooling, std::int64_t d, std::int64_t n_layers,
                        std::uint64_t seed) {
    if (pooling == latent::name) {
      LatentHead<T> h(LatentHead<T>::Config::defaults(d));
      h.init(seed);
      return AnyHead(std::move(h));
    }
    MultiLayerHead<T> h(
        MultiLayerHead<T>::Config::defaults(d, n_layers, parse_multi_layer_input(pooling)));
    h.init(seed);
    return AnyHead(std::move(h));
  }
  /// Loads a head file of any kind (dispatching on its __metadata__ "pooling").
  static AnyHead load(const std::filesystem::path& file) {
    std::string kind;
    {
      auto f = io::SafetensorsFile::open(file);
      auto it = f.metadata().find("pooling");
      if (it == f.metadata().end())
        throw config_error(file.string() +
                           ": __metadata__ has no 'pooling' entry (not an lmembed head file)");
      kind = it->second;
    }
    if (kind == latent::name) return AnyHead(LatentHead<T>::load(file));
    (void)parse_multi_layer_input(kind);  // config_error for anything else
    return AnyHead(MultiLayerHead<T>::load(file));
  }
  /// load, then config_error unless the file holds the pooling `expected`.
  static AnyHead load(const std::filesystem::path& file, std::string_view expected) {
    AnyHead h = load(file);
    if (h.name() != expected)
      throw config_error(file.string() + ": a '" + h.name() + "' head, expected '" +
                         std::string(expected) + "'");
    return h;
  }

  std::string name() const {
    return std::visit([](const auto& h) { return std::string(h.name()); }, head_);
  }
  CaptureSpec capture() const {
    return std::visit([](const auto& h) { return h.capture(); }, head_);
  }
  std::int64_t dim() const {
    return std::visit([](const auto& h) { return h.dim(); }, head_);
  }
  MatrixX<T> forward(const CapturedT<T>& in) const {
    return std::visit([&](const auto& h) { return h.forward(in); }, head_);
  }
  MatrixX<T> forward(const CapturedT<T>& in, Context& ctx) const {
    return std::visit(
        [&](const auto& h) {
          using C = typename std::decay_t<decltype(h)>::Context;
          return h.forward(in, ctx.v.template emplace<C>());
        },
        head_);
  }
  MatrixX<T> backward(const MatrixX<T>& d_out, const Context& ctx) {
    return std::visit(
        [&](auto& h) {
          using C = typename std::decay_t<decltype(h)>::Context;
          const C* c = std::get_if<C>(&ctx.v);
          if (!c) throw config_error("AnyHead::backward: context from another head kind");
          return h.backward(d_out, *c);
        },
        head_);
  }
  nn::ParamList<T> parameters() {
    return std::visit([](auto& h) { return h.parameters(); }, head_);
  }
  void zero_grad() {
    std::visit([](auto& h) { h.zero_grad(); }, head_);
  }
  void init(std::uint64_t seed) {
    std::visit([&](auto& h) { h.init(seed); }, head_);
  }
  void save(const std::filesystem::path& file) const {
    std::visit([&](const auto& h) { h.save(file); }, head_);
  }
  std::map<std::string, std::string> metadata() const {
    return std::visit([](const auto& h) { return h.metadata(); }, head_);
  }
  /// The wrapped head.
  Variant& variant() { return head_; }
  const Variant& variant() const { return head_; }

 private:
  Variant head_;
};

}  // namespace lmembed::pooling
