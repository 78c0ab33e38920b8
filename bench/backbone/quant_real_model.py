#!/usr/bin/python3
"""`lmembed embed --weights stored` vs `--weights f32` on the real model: memory, speed, agreement.

    bench/backbone/quant_real_model.py [--model GGUF] [--cli build/bin/lmembed] [--texts 500]
                                       [--threads 2] [--rounds 3] [--pooling mean]

Both runs embed the same bundled texts (rss_real_model.py's selection) in fresh child processes,
in interleaved rounds (stored, f32, f32, stored, ...). Per run: peak RSS (ru_maxrss of the child,
rss_real_model.rss_of), wall time, and encode tokens/s = tokens / (wall - wall of the same command
on one text), which takes the load and start-up out. Prints medians, the ratios, the load average,
and the cosine of the stored embeddings vs the f32 ones (min / median, for the chosen pooling and
for eos = last-token pooling). Needs only Debian's python3 with numpy (tokens are counted with
`lmembed tokenize`).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import rss_real_model  # noqa: E402  (also puts tests/ on the path for realmodel)
import realmodel  # noqa: E402

import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=realmodel.default_path())
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "bin", "lmembed"))
    ap.add_argument("--texts", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pooling", default="mean")
    a = ap.parse_args()

    texts = realmodel.bundled_texts()[::7][:a.texts]
    tmp = tempfile.mkdtemp(prefix="lmembed-quant-")
    tf, one = os.path.join(tmp, "texts.txt"), os.path.join(tmp, "one.txt")
    with open(tf, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(t.replace("\n", " ") + "\n")
    with open(one, "w", encoding="utf-8") as f:
        f.write(texts[0].replace("\n", " ") + "\n")
    with open(tf, encoding="utf-8") as f:
        ids = subprocess.run([a.cli, "tokenize", "--model", a.model], stdin=f, check=True,
                             capture_output=True, text=True).stdout
    n_tok = sum(len(line.split()) for line in ids.strip().split("\n"))
    size = os.path.getsize(a.model) / 2**20
    print(f"model {os.path.basename(a.model)}: {size:.1f} MiB; {len(texts)} texts, {n_tok} tokens "
          f"(lmembed's tokenizer); pooling {a.pooling}; {a.threads} threads; {a.rounds} rounds; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def run(weights, inp, pooling, out):
        cmd = [a.cli, "embed", "--model", a.model, "--pooling", pooling, "--weights", weights,
               "--threads", str(a.threads), "--input", inp, "--output", out]
        _, wall, peak = rss_real_model.rss_of(cmd)
        return wall, peak

    res = {w: {"wall": [], "peak": [], "tps": [], "load": []} for w in ("stored", "f32")}
    for r in range(a.rounds):
        for w in (("stored", "f32") if r % 2 == 0 else ("f32", "stored")):
            base, _ = run(w, one, a.pooling, os.path.join(tmp, f"one-{w}.npy"))
            wall, peak = run(w, tf, a.pooling, os.path.join(tmp, f"e-{w}-{a.pooling}.npy"))
            res[w]["wall"].append(wall)
            res[w]["peak"].append(peak)
            res[w]["load"].append(base)
            res[w]["tps"].append(n_tok / max(wall - base, 1e-9))
            print(f"  round {r + 1} {w:6}: peak {peak:7.1f} MiB, wall {wall:6.2f} s (one text "
                  f"{base:5.2f} s), {res[w]['tps'][-1]:7.0f} tok/s; load average "
                  f"{os.getloadavg()[0]:.2f}", flush=True)

    med = {w: {k: statistics.median(v) for k, v in d.items()} for w, d in res.items()}
    print(f"\n{'medians':10} {'peak RSS MiB':>12} {'x file':>7} {'wall s':>7} {'1-text s':>8} "
          f"{'encode tok/s':>12}")
    for w in ("stored", "f32"):
        m = med[w]
        print(f"{w:10} {m['peak']:12.1f} {m['peak'] / size:7.2f} {m['wall']:7.2f} {m['load']:8.2f} "
              f"{m['tps']:12.0f}")
    print(f"stored / f32: peak RSS {med['stored']['peak'] / med['f32']['peak']:.3f}, encode tok/s "
          f"{med['stored']['tps'] / med['f32']['tps']:.2f}x")

    def normalize(m):
        m = np.asarray(m, dtype=np.float64)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    for pooling in dict.fromkeys([a.pooling, "eos"]):
        paths = {w: os.path.join(tmp, f"e-{w}-{pooling}.npy") for w in ("stored", "f32")}
        for w, p in paths.items():
            if not os.path.exists(p):
                run(w, tf, pooling, p)
        cos = (normalize(np.load(paths["stored"])) * normalize(np.load(paths["f32"]))).sum(axis=1)
        print(f"cosine stored vs f32, {pooling} pooling, {len(cos)} texts: min {cos.min():.6f}, "
              f"median {np.median(cos):.6f}, mean {cos.mean():.6f}, "
              f"{(cos < 0.999).sum()} below 0.999")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
