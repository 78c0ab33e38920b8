#!/usr/bin/env python3
"""Steps/s and bytes communicated per step of distributed head training, 1/2/3 ranks.

Usage: bench/mpi/bench_mpi.py BUILD_DIR [--repeats N]   (BUILD_DIR configured with
-DLMEMBED_MPI=ON and target mpi_train_helper built). Runs the multi_layer head over a synthetic
cache at two widths, interleaving rank counts, and prints medians plus the per-step compute and
message sizes docs/distributed.md's scaling estimate uses. Everything in one run, on this
machine (say whether it was shared).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

build = sys.argv[1] if len(sys.argv) > 1 else "build-mpi"
repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
helper = os.path.join(build, "tests", "mpi_train_helper")
env = dict(os.environ, OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")

CONFIGS = [
    # name, helper args, repeats
    ("d=16 L=3 batch=24 (communication-bound)",
     ["--d", "16", "--layers", "3", "--batch", "24", "--steps", "30"], repeats),
    ("d=896 L=24 batch=8 (Qwen2-0.5B width, compute-bound)",
     ["--d", "896", "--layers", "24", "--batch", "8", "--steps", "2", "--examples", "24"], 1),
]

with tempfile.TemporaryDirectory(prefix="lmembed-bench-mpi-") as tmp:
    results = []
    for ci, (name, args, reps) in enumerate(CONFIGS):
        cache = os.path.join(tmp, f"cache{ci}")
        runs = {1: [], 2: [], 3: []}
        for rep in range(reps):
            for n in (1, 2, 3):  # interleaved, so load changes hit every rank count alike
                out = os.path.join(tmp, f"out{ci}-{n}-{rep}")
                cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(n), helper,
                       "--cache", cache, "--out", out, "--bench"] + args
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if p.returncode:
                    sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")
                line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
                runs[n].append(json.loads(line))
                shutil.rmtree(out)
        print(f"\n{name}")
        print(f"{'ranks':>5} {'steps/s':>9} {'s/step':>8} {'bytes/step (rank 0)':>20} {'vs 1 rank':>9}")
        base = statistics.median(r["steps_per_s"] for r in runs[1])
        for n in (1, 2, 3):
            sps = statistics.median(r["steps_per_s"] for r in runs[n])
            b = runs[n][0]["bytes_per_step"]
            print(f"{n:>5} {sps:>9.3f} {1 / sps:>8.3f} {b:>20.0f} {sps / base:>8.2f}x")
            results.append({"config": name, "ranks": n, "steps_per_s": sps, "bytes_per_step": b,
                            "texts_per_step": runs[n][0].get("texts_per_step"),
                            "head_params": runs[n][0]["head_params"]})
    print("\n" + json.dumps(results))
