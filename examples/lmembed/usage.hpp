// The lmembed tool's usage errors and the conversions of option values that raise them. No
// CLI11 here: train_command.hpp and with it the nvcc-compiled cuda_train.cu include this header;
// the command line itself is parsed by CLI11 (cli.hpp).
#pragma once

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "lmembed/core/error.hpp"

namespace lmembed::cli {

/// A bad command line: main prints `lmembed <cmd>: error: <message> (see lmembed <cmd> --help)`
/// and exits with status 2.
class usage_error : public lmembed::error {
 public:
  using error::error;
};

/// The value of integer option `name`: the whole of `v` in base 10, in range of long long
/// (" 5" and "+5" too, as std::stoll reads them); usage_error naming the option otherwise.
inline long long parse_integer(const std::string& name, const std::string& v) {
  try {
    std::size_t pos = 0;
    const long long x = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw usage_error("option " + name + " expects an integer, got '" + v + "'");
  }
}

/// The value of floating-point option `name`: the whole of `v`, finite ("nan" and "inf" parse,
/// and NaN slips through every range check after this); usage_error naming the option otherwise.
inline double parse_finite(const std::string& name, const std::string& v) {
  try {
    std::size_t pos = 0;
    const double x = std::stod(v, &pos);
    if (pos != v.size()) throw std::invalid_argument("trailing");
    if (!std::isfinite(x)) throw std::invalid_argument("not finite");
    return x;
  } catch (const std::exception&) {
    throw usage_error("option " + name + " expects a finite number, got '" + v + "'");
  }
}

/// The value of required option `name`; usage_error when it was not given.
template <class T>
const T& require(const std::optional<T>& value, const std::string& name) {
  if (!value) throw usage_error("missing required option " + name);
  return *value;
}

/// Calls `parse` on an option's value; its config_error (an unknown name) becomes a usage_error
/// naming the option, so a bad value exits with status 2 like any other bad command line.
template <class Parse>
auto parse_option(const std::string& name, const std::string& value, Parse&& parse)
    -> decltype(parse(value)) {
  try {
    return parse(value);
  } catch (const lmembed::config_error& e) {
    throw usage_error("option " + name + ": " + e.what());
  }
}

}  // namespace lmembed::cli
