// The lmembed tool's subcommands on CLI11: a registry, option helpers and the parse.
//
// Each subcommand lives in its own cmd_<name>.cpp: a struct of its options, a function that
// declares them on the subcommand's CLI::App, and one that runs it, registered with
//   const lmembed::cli::Register<Options> reg{"tokenize", "Print the token ids of texts",
//                                             &add_options, &run_tokenize};
// so subcommands are added without touching main.cpp. main picks the subcommand by its name
// (the first argument); cli::run parses the rest with CLI11 into a fresh Options and runs it.
//
// The command line: `--name VALUE` and `--name=VALUE` (the last one counts when an option is
// given twice, except the repeatable ones), flags without a value, `--` ending the options
// (everything after it is positional, even if it starts with '-'), -h / --help. A bad command
// line is a usage_error: main prints `lmembed <cmd>: error: <message> (see lmembed <cmd>
// --help)` and exits with status 2.
#pragma once

#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "lmembed/backbone/config.hpp"
#include "usage.hpp"

namespace lmembed::cli {

namespace detail {

/// "--model PATH" -> {"--model", "PATH"} (the option and its value's name in the help).
inline std::pair<std::string, std::string> split_spec(const std::string& spec) {
  const auto space = spec.find(' ');
  if (space == std::string::npos) return {spec, ""};
  return {spec.substr(0, space), spec.substr(space + 1)};
}

inline void assign(const std::string&, const std::string& v, std::string& to) {
  to = v;
}
inline void assign(const std::string& name, const std::string& v, long long& to) {
  to = parse_integer(name, v);
}
inline void assign(const std::string& name, const std::string& v, double& to) {
  to = parse_finite(name, v);
}
template <class T>
void assign(const std::string& name, const std::string& v, std::optional<T>& to) {
  T x{};
  assign(name, v, x);
  to = std::move(x);
}

/// An argument that starts with '-' and is neither "-" nor after "--": an option, known or not.
inline bool looks_like_option(const std::string& a) {
  return a.size() >= 2 && a[0] == '-';
}

/// The arguments as CLI11 is to read them, keeping the rules of lmembed's command line where
/// CLI11 2.1 reads them otherwise: "--name=" gives option --name the empty value (CLI11 would take
/// the next argument as its value); a flag takes no value ("--eos=1" is an error, not "true");
/// an argument that starts with '-' before "--" is an option, so "-5" or "---x" is an unknown
/// one (not a positional) and "-hx" is unknown as a whole (not -h and -x). Option values are
/// passed on as they are; unknown "--name" options are left to CLI11 (see run).
inline std::vector<std::string> normalize(const CLI::App& app, std::span<const std::string> args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      out.insert(out.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    out.push_back(a);
    if (!looks_like_option(a)) continue;
    const auto eq = a.find('=');
    const std::string name = a.substr(0, eq);
    const CLI::Option* o = app.get_option_no_throw(name);
    if (o == nullptr) {  // CLI11 leaves an unknown "--name" over; any other is unknown here
      std::string n, v;
      if (!CLI::detail::split_long(a, n, v)) throw usage_error("unknown argument '" + a + "'");
      continue;
    }
    if (o->get_items_expected_max() == 0) {  // a flag
      if (eq == std::string::npos) continue;
      if (o == app.get_help_ptr()) throw usage_error("unknown argument '" + a + "'");
      throw usage_error("flag " + name + " takes no value");
    }
    if (eq == std::string::npos) {  // its value is the next argument, whatever it is
      if (i + 1 < args.size()) out.push_back(args[++i]);
    } else if (eq + 1 == a.size()) {  // "--name=": the empty value
      out.back() = name;
      out.emplace_back();
    }
  }
  return out;
}

/// The first unknown option among CLI11's left-over arguments (those before "--"), if any.
inline std::optional<std::string> unknown_option(const std::vector<std::string>& left) {
  for (const std::string& a : left) {
    if (a == "--") break;
    if (looks_like_option(a)) return a;
  }
  return std::nullopt;
}

/// The message for CLI11's left-over arguments: the first unknown option, else the first
/// positional argument the subcommand takes none of.
inline std::string extras_message(const std::vector<std::string>& left) {
  if (auto o = unknown_option(left)) return "unknown argument '" + *o + "'";
  bool after_mark = false;
  for (const std::string& a : left) {
    if (a == "--" && !after_mark) {
      after_mark = true;
      continue;
    }
    return "unexpected argument '" + a + "'";
  }
  return "unexpected arguments";
}

}  // namespace detail

/// `--name VALUE` (spec "--name VALUE": VALUE names the value in the help) into `to`: a
/// std::string, a long long (a base-10 integer, parse_integer), a double (finite, parse_finite),
/// or a std::optional of one (empty unless given). Given twice, the last one counts.
template <class T>
CLI::Option* option(CLI::App& app, const std::string& spec, T& to, const std::string& help) {
  const auto [name, value] = detail::split_spec(spec);
  return app
      .add_option(
          name,
          [name = name, &to](const CLI::results_t& r) {
            detail::assign(name, r.back(), to);
            return true;
          },
          help)
      ->type_name(value)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

/// A repeatable `--name VALUE`: every value, in order.
inline CLI::Option* repeatable(CLI::App& app, const std::string& spec, std::vector<std::string>& to,
                               const std::string& help) {
  const auto [name, value] = detail::split_spec(spec);
  return app
      .add_option(
          name,
          [&to](const CLI::results_t& r) {
            to = r;
            return true;
          },
          help)
      ->type_name(value)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

/// A flag: `to` is true when given.
inline CLI::Option* flag(CLI::App& app, const std::string& name, bool& to,
                         const std::string& help) {
  return app.add_flag(name, to, help);
}

/// The positional arguments (any number, each one as given) under `name` in the help.
inline CLI::Option* positionals(CLI::App& app, const std::string& name,
                                std::vector<std::string>& to, const std::string& help) {
  // Not `expected(0, N)->allow_extra_args()`: an option allowing extra arguments reads "[a,b]"
  // as the list {a, b}. One that expects as many as CLI11 can count takes every positional.
  constexpr int any = CLI::detail::expected_max_vector_size;
  return app
      .add_option(
          name,
          [&to](const CLI::results_t& r) {
            to = r;
            return true;
          },
          help)
      ->expected(any, any)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

/// `--weights stored|f32` (default stored: a GGUF's Q8_0/Q4_0/Q4_1 weights stay quantized; f32:
/// dequantized), the same option on every command that loads a backbone.
inline CLI::Option* weights_option(CLI::App& app, lmembed::WeightFormat& to,
                                   const std::string& help) {
  return app
      .add_option(
          "--weights",
          [&to](const CLI::results_t& r) {
            to = parse_option("--weights", r.back(), [](const std::string& s) {
              return lmembed::parse_weight_format(s, "");
            });
            return true;
          },
          help)
      ->type_name("W")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

/// A subcommand: its name, the one-line summary `lmembed --help` lists, and `setup`, which
/// declares its options on a CLI::App and returns what runs it once they are parsed.
struct Command {
  std::string name;
  std::string summary;
  std::function<std::function<int()>(CLI::App&)> setup;
};

/// All registered subcommands, by name.
inline std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> r;
  return r;
}

/// Registers a subcommand at static-initialization time: `add(app, options)` declares the
/// options on the subcommand's CLI::App, binding them to `options`; `run(options)` runs the
/// subcommand on the parsed values and returns the exit status.
template <class Options>
struct Register {
  Register(std::string name, std::string summary, void (*add)(CLI::App&, Options&),
           int (*run)(const Options&)) {
    registry()[name] =
        Command{name, std::move(summary), [add, run](CLI::App& app) -> std::function<int()> {
                  auto o = std::make_shared<Options>();
                  add(app, *o);
                  return [o, run] { return run(*o); };
                }};
  }
};

/// Parses `args` (the arguments after the subcommand's name) with CLI11 and runs the subcommand.
/// -h / --help prints its help on stdout (status 0); a bad command line is a usage_error.
inline int run(const Command& cmd, std::span<const std::string> args) {
  CLI::App app(cmd.summary, "lmembed " + cmd.name);
  app.get_formatter()->column_width(28);
  const std::function<int()> body = cmd.setup(app);
  app.description(app.get_description() + "\n");  // a blank line before "Usage:"
  std::vector<std::string> in = detail::normalize(app, args);
  std::reverse(in.begin(), in.end());  // CLI11 takes the arguments last first
  try {
    app.parse(std::move(in));
  } catch (const CLI::CallForHelp&) {
    if (auto o = detail::unknown_option(app.remaining()))
      throw usage_error("unknown argument '" + *o + "'");
    std::cout << app.help();
    return 0;
  } catch (const CLI::ExtrasError&) {
    throw usage_error(detail::extras_message(app.remaining()));
  } catch (const CLI::ArgumentMismatch&) {
    // The one mismatch left after normalize: an option that is the last argument has no value.
    throw usage_error("option " + args.back().substr(0, args.back().find('=')) + " needs a value");
  } catch (const CLI::ParseError& e) {
    throw usage_error(e.what());
  }
  return body();
}

}  // namespace lmembed::cli
