#!/usr/bin/env python3
"""Plain Release vs -march=native: what run-time CPU dispatch leaves to the compiler flags.

Builds bench_backbone and bench_pooling twice - a plain `-DCMAKE_BUILD_TYPE=Release` build (what
find_package, vcpkg and Conan consumers get) and one with `-march=native` - then runs them in ONE
session with interleaved rounds (plain, native, native, plain, ...) so that a change of machine
load hits both alike, and prints per benchmark the median over rounds, the ratio plain/native
of the times (1.00: no difference; 1.10: the plain build is 10 % slower) and the load average
before, during and after. On a machine shared with other jobs, read the ratios, not the absolute
figures, and look at the load average.

  bench/dispatch/compare_builds.py [--rounds 5] [--threads 2] [--shape llama512]
                                   [--combo causal/mean] [--no-build] [--skip-heads] [--skip-backbone]
                                   [--heads-filter REGEX] [--real-model GGUF [--real-texts 400]]
                                   [--plain-dir build-bench-plain] [--native-dir build-bench-native]

--real-model also builds the lmembed CLI in both folders and times `lmembed embed` (mean pooling,
causal, ids precomputed once by `lmembed tokenize` so only the backbone and pooling are timed
beside loading) on the first --real-texts texts of the bundled datasets, e.g. SmolLM2-135M
(scripts/fetch_models.sh).
"""
import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def machine():
    model, cores = platform.processor() or "?", os.cpu_count()
    try:
        for line in sh(["lscpu"]).splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {cores} logical CPUs"


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def build(build_dir, flags, jobs, cli=False):
    """Configures build_dir (a fresh one: Release, benchmarks only; an existing one keeps its
    options, only CMAKE_CXX_FLAGS is set) and builds the two benchmarks (and the CLI)."""
    cache = os.path.join(build_dir, "CMakeCache.txt")
    examples = "ON" if cli else "OFF"
    if os.path.exists(cache):
        cfg = ["cmake", "-S", ROOT, "-B", build_dir, f"-DCMAKE_CXX_FLAGS={flags}",
               "-DLMEMBED_BUILD_BENCH=ON"] + (["-DLMEMBED_BUILD_EXAMPLES=ON"] if cli else [])
    else:
        cfg = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
               "-DLMEMBED_BUILD_BENCH=ON", "-DLMEMBED_BUILD_TESTS=OFF",
               f"-DLMEMBED_BUILD_EXAMPLES={examples}", f"-DCMAKE_CXX_FLAGS={flags}"]
    print(f"# configure and build {build_dir} (CMAKE_CXX_FLAGS='{flags}')", flush=True)
    sh(cfg)
    sh(["cmake", "--build", build_dir, "--target", "bench_backbone", "bench_pooling",
        *(["lmembed_cli"] if cli else []), "-j", str(jobs)])


def real_texts(n):
    """The first n texts of SNLI dev's premises and hypotheses (bundled, one per line)."""
    out = []
    for f in ("s1.dev", "s2.dev"):
        with open(os.path.join(ROOT, "data", "datasets", "snli_dev", f), encoding="utf-8") as fh:
            out += [t.strip() for t in fh if t.strip()]
    return out[:n]


def run_real(build_dir, a, ids_file):
    cli = os.path.join(build_dir, "bin", "lmembed")
    out = os.path.join(build_dir, "real-embed.npy")
    cpu0, t0 = child_cpu(), time.perf_counter()
    sh([cli, "embed", "--model", a.real_model, "--ids", "--input", ids_file, "--output", out,
        "--attention", "causal", "--pooling", "mean", "--threads", str(a.threads)],
       env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    name = os.path.basename(a.real_model).split(".")[0]
    return {f"embed {name} {a.real_texts} texts (s)": (wall, cpu)}


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_backbone(build_dir, a):
    cpu0 = child_cpu()
    out = sh([os.path.join(build_dir, "bench", "bench_backbone"), "--shape", a.shape, "--threads",
              str(a.threads), "--repeats", "1", "--combo", a.combo])
    cpu = child_cpu() - cpu0
    level = re.search(r"^cpu: (.*)$", out, re.M)
    m = re.search(r"RESULT shape=\S+ tok_per_s=([0-9.]+)", out)
    if not m:
        sys.exit(f"no RESULT line from {build_dir}'s bench_backbone:\n{out}")
    tokens = int(re.search(r"corpus: \d+ sequences, (\d+) tokens", out).group(1))
    # Seconds per corpus pass: lower is better, like the heads' times.
    wall = tokens / float(m.group(1))
    # The process's CPU seconds include tokenizing and the random model (same in both builds).
    return {f"backbone {a.shape} {a.combo} (s)": (wall, cpu)}, (level.group(1) if level else "?")


def run_heads(build_dir, a):
    out = sh([os.path.join(build_dir, "bench", "bench_pooling"), "--benchmark_format=json",
              f"--benchmark_filter={a.heads_filter}"],
             env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
    res = {}
    for b in json.loads(out)["benchmarks"]:
        name = b["name"].split("/min_time")[0].replace("ForwardBackward", " fwd+bwd")
        # real_time in ms; cpu_time is the process's CPU time (MeasureProcessCPUTime).
        res[f"heads {name} (s)"] = (b["real_time"] / 1e3, b["cpu_time"] / 1e3)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shape", default="llama512")
    p.add_argument("--combo", default="causal/mean")
    p.add_argument("--plain-dir", default=os.path.join(ROOT, "build-bench-plain"))
    p.add_argument("--native-dir", default=os.path.join(ROOT, "build-bench-native"))
    p.add_argument("--no-build", action="store_true", help="use the existing build dirs")
    p.add_argument("--skip-heads", action="store_true")
    p.add_argument("--skip-backbone", action="store_true")
    p.add_argument("--heads-filter", default="MultiLayerForwardBackward/64|LatentForwardBackward",
                   help="bench_pooling --benchmark_filter")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--real-model", help="a GGUF file: also time `lmembed embed` on it")
    p.add_argument("--real-texts", type=int, default=400)
    a = p.parse_args()

    builds = {"plain": (a.plain_dir, ""), "native": (a.native_dir, "-march=native")}
    if not a.no_build:
        for d, flags in builds.values():
            build(d, flags, a.jobs, cli=bool(a.real_model))
    ids_file = None
    if a.real_model:
        # Token ids once (tokenizing is not what the builds differ in), then embed --ids.
        texts = os.path.join(a.plain_dir, "real-texts.txt")
        with open(texts, "w", encoding="utf-8") as f:
            f.write("\n".join(real_texts(a.real_texts)) + "\n")
        ids_file = os.path.join(a.plain_dir, "real-ids.txt")
        with open(texts, encoding="utf-8") as fin, open(ids_file, "w") as f:
            f.write(subprocess.run([os.path.join(a.plain_dir, "bin", "lmembed"), "tokenize",
                                    "--model", a.real_model], stdin=fin, check=True, text=True,
                                   capture_output=True).stdout)
    commit = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
    print(f"machine: {machine()}")
    print(f"commit: {commit} (+ working tree); threads {a.threads}; rounds {a.rounds}; "
          f"backbone shape {a.shape} ({a.combo}, random F32 weights, data/bench/corpus256.txt)")
    print(f"load average at start: {load()} (shared machine: other jobs run alongside)")
    times = {"plain": {}, "native": {}}
    levels = {}
    loads = []
    for r in range(a.rounds):
        order = ["plain", "native"] if r % 2 == 0 else ["native", "plain"]
        for name in order:
            d = builds[name][0]
            res = {}
            if not a.skip_backbone:
                res, levels[name] = run_backbone(d, a)
            if a.real_model:
                res.update(run_real(d, a, ids_file))
            if not a.skip_heads:
                res.update(run_heads(d, a))
            for k, v in res.items():
                times[name].setdefault(k, []).append(v)
        loads.append(load())
        print(f"round {r + 1}/{a.rounds} done, load average {loads[-1]}", flush=True)
    for name in levels:
        print(f"{name:6s} build: CPU level {levels[name]}")
    print()
    print("medians over rounds; wall = elapsed seconds, cpu = the process's CPU seconds (less")
    print("sensitive to other jobs taking the cores); ratio = plain / native (> 1: plain slower)")
    print(f"{'benchmark':40s} {'plain wall':>10s} {'native wall':>11s} {'ratio':>6s}   "
          f"{'plain cpu':>9s} {'native cpu':>10s} {'ratio':>6s}")
    worst = {"wall": 0.0, "cpu": 0.0}
    for k in times["plain"]:
        row = []
        for i, kind in enumerate(("wall", "cpu")):
            mp = statistics.median(t[i] for t in times["plain"][k])
            mn = statistics.median(t[i] for t in times["native"][k])
            worst[kind] = max(worst[kind], mp / mn)
            row += [mp, mn, mp / mn]
        print(f"{k:40s} {row[0]:10.3f} {row[1]:11.3f} {row[2]:6.3f}   {row[3]:9.3f} "
              f"{row[4]:10.3f} {row[5]:6.3f}")
    print()
    print(f"worst ratio plain/native: wall {worst['wall']:.3f}, cpu {worst['cpu']:.3f} "
          "(goal: <= 1.10)")
    print(f"load average per round: {'; '.join(loads)}")
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
