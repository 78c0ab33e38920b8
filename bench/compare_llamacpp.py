#!/usr/bin/env python3
"""Backbone throughput against llama.cpp: prints tokens/s and the ratio, measured in one run.

    bench/compare_llamacpp.py --bench BUILD/bench/bench_backbone [--shape llama512|llama1024|
        qwen896|all] [--threads 2] [--rounds 3] [--peer-cmd 'CMD {shape}' ...]

Ours: bench_backbone (random-weight F32 models of the issue's shapes, data/bench/corpus256.txt,
best of `rounds` interleaved runs per attention x pooling, median over those 4).

Peer: with --peer-cmd, the command is run (with {shape} replaced by the shape name)
interleaved with ours, `rounds` times per shape. If it prints lines "PEER combo=NAME
tok_per_s=X" (one per attention x pooling, as bench/backbone/llamacpp_peer.sh does), it is
scored exactly like ours (best per combination over the rounds, median over them); otherwise
its last "<number> tokens per second" (llama.cpp's perf print) or "<number> tok/s" counts, best
over the rounds. Without a peer command the ratio is against issue #4's published llama.cpp figures
(commit c392e509, 2 threads, this machine): patched = LM head skipped, -c 512 -b 512 -fa;
those are NOT measured in this run and the output says so.
"""
import argparse
import re
import shlex
import statistics
import subprocess
import sys

PUBLISHED = {  # tokens/s: (patched best flags, stock best flags, stock default flags)
    "llama512": (2920.0, 1597.0, 791.0),
    "llama1024": (690.0, 430.0, 276.0),
    "qwen896": (874.0, 302.0, 217.0),
}


def run_ours(bench, shape, threads):
    out = subprocess.run([bench, "--shape", shape, "--threads", str(threads), "--repeats", "1"],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        sys.exit(f"no RESULT line from {bench}:\n{out}")
    return dict(kv.split("=", 1) for kv in m.group(1).split())


def run_peer(cmd, shape):
    """{combo: tok/s} from PEER lines, or {"all": last throughput printed}."""
    out = subprocess.run(cmd.replace("{shape}", shape), shell=True, capture_output=True,
                         text=True)
    text = out.stdout + out.stderr
    combos = dict(re.findall(r"^PEER combo=(\S+) tok_per_s=([0-9.]+)", text, re.M))
    if out.returncode == 0 and combos:
        return {k: float(v) for k, v in combos.items()}
    m = re.findall(r"([0-9.]+)\s*(?:tokens per second|tok/s)", text)
    if out.returncode != 0 or not m:
        sys.exit(f"peer command failed or printed no throughput: {cmd}\n{text[-2000:]}")
    return {"all": float(m[-1])}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of the bench_backbone executable")
    ap.add_argument("--shape", default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peer-cmd", help="peer command, {shape} is replaced by the shape name")
    a = ap.parse_args()
    shapes = list(PUBLISHED) if a.shape == "all" else [a.shape]
    print(f"machine shared and noisy: rounds interleaved, {a.threads} threads")
    for shape in shapes:
        # Each bench_backbone run measures all 4 attention x pooling combinations once; the
        # best per combination over the rounds, then the median over the 4 (issue #4's method).
        best = {}
        peer = []
        results = []
        for _ in range(a.rounds):
            r = run_ours(a.bench, shape, a.threads)
            results.append(r)
            for key in ("best_causal_last", "best_causal_mean", "best_bidir_last",
                        "best_bidir_mean"):
                best[key] = max(best.get(key, 0.0), float(r[key]))
            if a.peer_cmd:
                peer.append(run_peer(a.peer_cmd, shape))
        ours = statistics.median(best.values())
        gflops = max(float(r["gemm_gflops"]) for r in results)
        rss = max(float(r["peak_rss_forward_mib"]) for r in results)
        weights = float(results[0]["weights_mib"])
        print(f"{shape:10s} lmembed {ours:8.1f} tok/s  (GEMM {gflops:.0f} GFLOP/s, weights "
              f"{weights:.0f} MiB, peak RSS while encoding {rss:.0f} MiB)")
        if peer:
            peer_best = {}
            for r in peer:
                for k, v in r.items():
                    peer_best[k] = max(peer_best.get(k, 0.0), v)
            p = statistics.median(peer_best.values())
            print(f"{shape:10s} peer    {p:8.1f} tok/s  (measured now: {a.peer_cmd})")
            print(f"{shape:10s} RATIO lmembed/peer = {ours / p:.2f}")
        else:
            patched, stock_best, stock = PUBLISHED[shape]
            print(f"{shape:10s} RATIO lmembed/llama.cpp (published figures, not measured in this "
                  f"run): patched {ours / patched:.2f}, stock best flags {ours / stock_best:.2f}, "
                  f"stock default {ours / stock:.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
