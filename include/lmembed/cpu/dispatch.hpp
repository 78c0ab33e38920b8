// lmembed/cpu/dispatch.hpp - which ISA level's kernels run: detected once, overridable.
//
// One binary carries the generic, AVX2 and AVX-512 kernels (lmembed/cpu/kernels.hpp); the
// level is decided on first use: LMEMBED_CPU=generic|avx2|avx512 when set, else the best one
// the CPU (and OS) supports. set_level() changes it at run time (tests, benchmarks). A level
// the CPU lacks is refused with a config_error, so no kernel can raise an illegal instruction.
// Builds other than GCC / clang on x86 (aarch64, MSVC) have the generic level only.
#pragma once

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>

#include "lmembed/core/error.hpp"
#include "lmembed/cpu/kernels.hpp"

namespace lmembed::cpu {

/// Instruction-set levels with their own kernels, in increasing order.
enum class Level : int {
  generic = 0,  ///< portable C++ (the translation unit's ISA: SSE2 on plain x86-64)
  avx2 = 1,     ///< AVX2 + FMA
  avx512 = 2,   ///< AVX-512 F, BW, VL and DQ (on top of avx2)
};

/// The level's name as LMEMBED_CPU spells it.
inline const char* name(Level l) {
  switch (l) {
    case Level::avx2:
      return "avx2";
    case Level::avx512:
      return "avx512";
    default:
      return "generic";
  }
}

/// CPU features the dispatch looks at (all false off x86).
struct Features {
  bool avx2 = false, fma = false;                                              ///< the avx2 level
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;  ///< avx512
  bool avx512vnni = false;  ///< int8 dot products (reported, for quantized kernels)
  bool avx512bf16 = false;  ///< BF16 dot products (reported, for BF16 kernels)

  /// Space-separated names of the features present ("none" when none).
  std::string str() const {
    std::string s;
    auto add = [&](bool on, const char* n) {
      if (!on) return;
      if (!s.empty()) s += ' ';
      s += n;
    };
    add(avx2, "avx2");
    add(fma, "fma");
    add(avx512f, "avx512f");
    add(avx512bw, "avx512bw");
    add(avx512vl, "avx512vl");
    add(avx512dq, "avx512dq");
    add(avx512vnni, "avx512vnni");
    add(avx512bf16, "avx512bf16");
    return s.empty() ? "none" : s;
  }
};

/// This CPU's features (detected once; __builtin_cpu_supports also checks that the OS saves
/// the ymm / zmm state).
inline const Features& features() {
  static const Features f = [] {
    Features r;
#if LMEMBED_CPU_X86
    __builtin_cpu_init();
    r.avx2 = __builtin_cpu_supports("avx2");
    r.fma = __builtin_cpu_supports("fma");
    r.avx512f = __builtin_cpu_supports("avx512f");
    r.avx512bw = __builtin_cpu_supports("avx512bw");
    r.avx512vl = __builtin_cpu_supports("avx512vl");
    r.avx512dq = __builtin_cpu_supports("avx512dq");
    r.avx512vnni = __builtin_cpu_supports("avx512vnni");
    r.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
    return r;
  }();
  return f;
}

/// The features `l` needs that this CPU (or build) lacks; empty when it can run `l`.
inline std::string missing(Level l) {
  const Features& f = features();
  std::string m;
  auto need = [&](bool on, const char* n) {
    if (on) return;
    if (!m.empty()) m += ' ';
    m += n;
  };
  if (l == Level::generic) return m;
#if !LMEMBED_CPU_X86
  return "x86 kernels (this build has the generic level only)";
#endif
  need(f.avx2, "avx2");
  need(f.fma, "fma");
  if (l == Level::avx512) {
    need(f.avx512f, "avx512f");
    need(f.avx512bw, "avx512bw");
    need(f.avx512vl, "avx512vl");
    need(f.avx512dq, "avx512dq");
  }
  return m;
}

/// True when this CPU can run level `l`'s kernels.
inline bool supported(Level l) {
  return missing(l).empty();
}

/// The highest level this CPU supports.
inline Level best_level() {
  if (supported(Level::avx512)) return Level::avx512;
  if (supported(Level::avx2)) return Level::avx2;
  return Level::generic;
}

/// "generic" / "avx2" / "avx512" -> Level; config_error naming `who` and the choices otherwise.
inline Level parse_level(std::string_view s, std::string_view who = "LMEMBED_CPU") {
  if (s == "generic") return Level::generic;
  if (s == "avx2") return Level::avx2;
  if (s == "avx512") return Level::avx512;
  throw config_error(std::string(who) + ": unknown CPU level '" + std::string(s) +
                     "' (expected generic, avx2 or avx512)");
}

/// The kernel table of level `l` (any level, supported or not: calling it is the caller's
/// risk; tests use supported()).
inline const Ops& table(Level l) {
#if LMEMBED_CPU_X86
  if (l == Level::avx512) return avx512::table;
  if (l == Level::avx2) return avx2::table;
#endif
  (void)l;
  return generic::table;
}

namespace detail {

/// The chosen level, why, and a pending LMEMBED_CPU error (thrown on use until set_level).
struct Choice {
  std::atomic<const Ops*> ops{nullptr};
  std::atomic<int> level{0};
  std::mutex m;
  std::string reason, error;

  Choice() {
    const Level best = best_level();
    const char* env = std::getenv("LMEMBED_CPU");
    if (!env || !*env) {
      set(best, std::string("auto: best level of this CPU (") + features().str() + ")");
      return;
    }
    try {
      const Level want = parse_level(env);
      const std::string lacks = missing(want);
      if (!lacks.empty())
        throw config_error(std::string("LMEMBED_CPU=") + env + ": this CPU lacks " + lacks +
                           " (it has: " + features().str() + "; best level " + name(best) + ")");
      set(want,
          std::string("LMEMBED_CPU=") + env + " (best level of this CPU: " + name(best) + ")");
    } catch (const config_error& e) {
      error = e.what();
    }
  }
  void set(Level l, std::string why) {
    std::lock_guard<std::mutex> lock(m);
    reason = std::move(why);
    error.clear();
    level.store(static_cast<int>(l));
    ops.store(&table(l));
  }
  [[noreturn]] void fail() {
    std::lock_guard<std::mutex> lock(m);
    throw config_error(error);
  }
};

inline Choice& choice() {
  static Choice c;
  return c;
}

}  // namespace detail

/// The kernels of the current level. config_error when LMEMBED_CPU names a level this CPU
/// lacks (or no level) and set_level was not called since: fetch the table outside parallel
/// regions (an exception cannot leave one).
inline const Ops& ops() {
  detail::Choice& c = detail::choice();
  const Ops* p = c.ops.load(std::memory_order_acquire);
  if (!p) c.fail();
  return *p;
}

/// The current level (same errors as ops()).
inline Level level() {
  (void)ops();
  return static_cast<Level>(detail::choice().level.load());
}

/// Runs level `l` from now on (for every thread). config_error naming the missing features
/// when this CPU cannot run it. Calls racing a running kernel are safe (each call reads the
/// table once) but the kernels of one product may then mix levels.
inline void set_level(Level l) {
  const std::string lacks = missing(l);
  if (!lacks.empty())
    throw config_error(std::string("lmembed::cpu::set_level(") + name(l) + "): this CPU lacks " +
                       lacks + " (it has: " + features().str() + ")");
  detail::choice().set(l, std::string("set_level(") + name(l) + ")");
}

/// Why the current level was chosen ("auto: ...", "LMEMBED_CPU=avx2 ...", "set_level(...)").
inline std::string level_reason() {
  (void)ops();
  detail::Choice& c = detail::choice();
  std::lock_guard<std::mutex> lock(c.m);
  return c.reason;
}

/// One line for --version and logs: "avx512 (auto: best level of this CPU (...))".
inline std::string describe() {
  return std::string(name(level())) + " (" + level_reason() + ")";
}

}  // namespace lmembed::cpu
