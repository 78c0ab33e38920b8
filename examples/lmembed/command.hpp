// The lmembed CLI's subcommand registry and argument parser.
//
// Each subcommand lives in its own cmd_<name>.cpp and registers itself with
//   static const lmembed::cli::Register reg{"tokenize", "Print token ids of texts", &run};
// so subcommands are added without touching main.cpp.
#pragma once

#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmembed/backbone/config.hpp"
#include "lmembed/core/error.hpp"

namespace lmembed::cli {

/// Thrown for bad command lines; main prints the message and the subcommand's usage.
class usage_error : public lmembed::error {
 public:
  using error::error;
};

/// Parsed command line of one subcommand.
///
/// Declare what is accepted, then parse:
///   Args a(argv_span, "lmembed tokenize --model FILE [--no-bos] [TEXT ...]");
///   a.option("--model").flag("--no-bos");
///   a.parse();           // throws usage_error on an unknown flag or a missing value
///   a.get("--model");    // std::optional<std::string>
/// "--" ends the flags: everything after it is positional, even if it starts with "-".
/// "--name=value" and "--name value" are both accepted for options.
class Args {
 public:
  Args(std::span<const std::string> argv, std::string usage)
      : argv_(argv.begin(), argv.end()), usage_(std::move(usage)) {}

  /// Declares an option that takes a value (may repeat: get_all returns every value).
  Args& option(std::string name) {
    options_.insert(std::move(name));
    return *this;
  }
  /// Declares a boolean flag.
  Args& flag(std::string name) {
    flags_.insert(std::move(name));
    return *this;
  }

  /// Parses argv; throws usage_error naming the offending argument.
  Args& parse() {
    bool only_positional = false;
    for (std::size_t i = 0; i < argv_.size(); ++i) {
      const std::string& a = argv_[i];
      if (only_positional || a.size() < 2 || a[0] != '-' || a == "-") {
        positional_.push_back(a);
        continue;
      }
      if (a == "--") {
        only_positional = true;
        continue;
      }
      if (a == "-h" || a == "--help") {
        help_ = true;
        continue;
      }
      std::string name = a, value;
      bool has_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        has_value = true;
      }
      if (flags_.count(name)) {
        if (has_value) throw usage_error("flag " + name + " takes no value");
        values_[name].push_back("1");
      } else if (options_.count(name)) {
        if (!has_value) {
          if (i + 1 >= argv_.size()) throw usage_error("option " + name + " needs a value");
          value = argv_[++i];
        }
        values_[name].push_back(value);
      } else {
        throw usage_error("unknown argument '" + a + "'");
      }
    }
    return *this;
  }

  bool help() const { return help_; }
  const std::string& usage() const { return usage_; }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::optional<std::string> get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second.back();
  }
  /// The value of a required option; usage_error if it is absent.
  std::string require(const std::string& name) const {
    auto v = get(name);
    if (!v) throw usage_error("missing required option " + name);
    return *v;
  }
  std::string get_or(const std::string& name, std::string def) const {
    auto v = get(name);
    return v ? *v : def;
  }
  /// Integer option with a default; usage_error if it does not parse.
  long long get_int(const std::string& name, long long def) const {
    auto v = get(name);
    if (!v) return def;
    try {
      std::size_t pos = 0;
      long long x = std::stoll(*v, &pos);
      if (pos != v->size()) throw std::invalid_argument("trailing");
      return x;
    } catch (const std::exception&) {
      throw usage_error("option " + name + " expects an integer, got '" + *v + "'");
    }
  }
  /// Floating-point option with a default; usage_error if it does not parse.
  double get_double(const std::string& name, double def) const {
    auto v = get(name);
    if (!v) return def;
    try {
      std::size_t pos = 0;
      double x = std::stod(*v, &pos);
      if (pos != v->size()) throw std::invalid_argument("trailing");
      // "nan" and "inf" parse, and NaN slips through every range check after this.
      if (!std::isfinite(x)) throw std::invalid_argument("not finite");
      return x;
    } catch (const std::exception&) {
      throw usage_error("option " + name + " expects a finite number, got '" + *v + "'");
    }
  }
  std::vector<std::string> get_all(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::vector<std::string> argv_;
  std::string usage_;
  std::set<std::string> options_, flags_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

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

/// `--weights stored|f32` (default stored: a GGUF's Q8_0/Q4_0/Q4_1 weights stay quantized; f32:
/// dequantized), the same option on every command that loads a backbone.
inline lmembed::WeightFormat weights_option(const Args& a) {
  return parse_option("--weights", a.get_or("--weights", "stored"),
                      [](const std::string& s) { return lmembed::parse_weight_format(s, ""); });
}

/// A subcommand: receives the arguments after its name; returns the exit status.
using CommandFn = int (*)(std::span<const std::string> args);

struct Command {
  std::string name;
  std::string summary;
  CommandFn run;
};

/// All registered subcommands, by name.
inline std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> r;
  return r;
}

/// Registers a subcommand at static-initialization time.
struct Register {
  Register(std::string name, std::string summary, CommandFn fn) {
    registry()[name] = Command{name, std::move(summary), fn};
  }
};

}  // namespace lmembed::cli
