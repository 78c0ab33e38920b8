#!/usr/bin/env python3
"""OpenMP's wait policy on an idle and on an oversubscribed machine (issue 19, item 5).

Times `lmembed embed` (causal, mean pooling, token ids given) with OMP_WAIT_POLICY unset
(libgomp's default: spin ~300,000 iterations, then sleep), ACTIVE (spin), PASSIVE (sleep at
once) and lmembed's own default (`lmembed` sets PASSIVE when the variable is unset), at 1 and 2
threads, on an idle machine and with `--hogs` busy-looping processes beside it (one per core:
the machine is then oversubscribed 2x, as on a shared CI runner or a laptop compiling).
Interleaved rounds; prints per setting the median wall time and its ratio to PASSIVE.

  bench/threads/wait_policy.py CLI MODEL [--texts 600] [--rounds 3] [--hogs N]
"""
import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hog(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cli")
    ap.add_argument("model")
    ap.add_argument("--texts", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hogs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lmembed_wait_")
    texts = []
    for f in ("s1.dev", "s2.dev"):
        with open(os.path.join(ROOT, "data", "datasets", "snli_dev", f), encoding="utf-8") as fh:
            texts += [t.strip() for t in fh if t.strip()]
    with open(os.path.join(tmp, "t.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(texts[:a.texts]) + "\n")
    ids = os.path.join(tmp, "ids.txt")
    with open(os.path.join(tmp, "t.txt"), encoding="utf-8") as fin, open(ids, "w") as fout:
        subprocess.run([a.cli, "tokenize", "--model", a.model], stdin=fin, stdout=fout, check=True)
    n_tok = sum(len(line.split()) for line in open(ids))
    policies = ["unset", "ACTIVE", "PASSIVE", "lmembed"]

    def once(policy, threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        env.pop("OMP_WAIT_POLICY", None)
        env.pop("LMEMBED_OMP_WAIT_POLICY", None)
        if policy in ("ACTIVE", "PASSIVE"):
            env["OMP_WAIT_POLICY"] = policy
        elif policy == "unset":
            env["LMEMBED_OMP_WAIT_POLICY"] = "keep"  # lmembed leaves libgomp's default alone
        t0 = time.perf_counter()
        subprocess.run([a.cli, "embed", "--model", a.model, "--ids", "--input", ids, "--output",
                        os.path.join(tmp, "e.npy"), "--pooling", "mean", "--attention", "causal",
                        "--threads", str(threads)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    print(f"machine: {os.cpu_count()} logical CPUs; model {os.path.basename(a.model)}; "
          f"{a.texts} texts, {n_tok} tokens; rounds {a.rounds}")
    for load in ("idle", f"{a.hogs} busy-loop processes"):
        stop = multiprocessing.Event()
        hogs = []
        if load != "idle":
            hogs = [multiprocessing.Process(target=hog, args=(stop,)) for _ in range(a.hogs)]
            for h in hogs:
                h.start()
        print(f"\n## {load} (load average at start {'%.2f %.2f %.2f' % os.getloadavg()})")
        times = {}
        for r in range(a.rounds):
            order = [(p, t) for t in (1, 2) for p in policies]
            if r % 2:
                order.reverse()
            for p, t in order:
                times.setdefault((p, t), []).append(once(p, t))
        stop.set()
        for h in hogs:
            h.join()
        print(f"{'threads':>7s} {'policy':>8s} {'median s':>9s} {'tok/s':>7s} {'/PASSIVE':>9s}")
        for t in (1, 2):
            base = statistics.median(times[("PASSIVE", t)])
            for p in policies:
                m = statistics.median(times[(p, t)])
                print(f"{t:7d} {p:>8s} {m:9.2f} {n_tok / m:7.0f} {m / base:9.2f}")
        print(f"load average at end: {'%.2f %.2f %.2f' % os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
