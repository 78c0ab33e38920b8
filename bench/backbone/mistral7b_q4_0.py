#!/usr/bin/env python3
"""What a Mistral-7B-shaped Q4_0 model costs here: a random-weight GGUF of that shape, written by
this script (never committed: ~3.9 GB), embedded by `lmembed embed --ids` with the weights kept
in their stored type; prints the file size, peak RSS, load time and tokens/s.

    bench/backbone/mistral7b_q4_0.py --cli build/bin/lmembed [--out /tmp/mistral7b-q4_0.gguf]
                                     [--texts 8] [--tokens 128] [--threads 2] [--keep]

The shape is Mistral-7B-v0.1's (d 4096, 32 layers, 32 query / 8 KV heads, FFN 14336, vocabulary
32000, RoPE base 1e4): every projection and the token embedding Q4_0 with random nibbles and
small random scales (so that activations stay finite), norms F32 ones. Token ids are random in
[1, 32000), one sequence per line. Needs gguf-py and numpy (the reference venv,
scripts/requirements/reference.txt). `--weights f32` is not run: 4 bytes per parameter is 29 GB.
"""
import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("needs gguf-py (scripts/requirements/reference.txt)")

D, L, H, KV, FF, V = 4096, 32, 32, 8, 14336, 32000


def q4_0(rng, rows, cols):
    """rows x cols values as Q4_0 blocks (f16 scale + 16 bytes of nibbles per 32 values)."""
    nb = cols // 32
    blocks = np.empty((rows, nb, 18), dtype=np.uint8)
    scale = (rng.random((rows, nb), dtype=np.float32) * 0.004 + 0.001).astype(np.float16)
    blocks[:, :, :2] = scale.view(np.uint8).reshape(rows, nb, 2)
    blocks[:, :, 2:] = rng.integers(0, 256, size=(rows, nb, 16), dtype=np.uint8)
    return blocks.reshape(rows, nb * 18)


def write_model(path):
    rng = np.random.default_rng(7)
    tmp = path + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_context_length(4096)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(D // H)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    q = gguf.GGMLQuantizationType.Q4_0
    w.add_tensor("token_embd.weight", q4_0(rng, V, D), raw_dtype=q)
    ones = np.ones(D, dtype=np.float32)
    for i in range(L):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "attn_q.weight", q4_0(rng, D, D), raw_dtype=q)
        w.add_tensor(p + "attn_k.weight", q4_0(rng, D // H * KV, D), raw_dtype=q)
        w.add_tensor(p + "attn_v.weight", q4_0(rng, D // H * KV, D), raw_dtype=q)
        w.add_tensor(p + "attn_output.weight", q4_0(rng, D, D), raw_dtype=q)
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", q4_0(rng, FF, D), raw_dtype=q)
        w.add_tensor(p + "ffn_up.weight", q4_0(rng, FF, D), raw_dtype=q)
        w.add_tensor(p + "ffn_down.weight", q4_0(rng, D, FF), raw_dtype=q)
    w.add_tensor("output_norm.weight", ones)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    os.replace(tmp, path)  # a killed run leaves no half-written model under the final name


def child_rss_mib():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--out", default="/tmp/mistral7b-q4_0.gguf")
    ap.add_argument("--texts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the model file")
    a = ap.parse_args()
    if not os.path.exists(a.out):
        t0 = time.time()
        write_model(a.out)
        print(f"wrote {a.out} in {time.time() - t0:.0f} s")
    size = os.path.getsize(a.out) / 2**20
    rng = np.random.default_rng(3)
    ids = os.path.join(os.path.dirname(a.out), "mistral7b-ids.txt")
    with open(ids, "w") as f:
        for _ in range(a.texts):
            f.write(" ".join(map(str, rng.integers(1, V, size=a.tokens))) + "\n")
    runs = {}
    # A first, untimed run pulls the file into the page cache (a cold read of 4 GB would
    # dominate whichever run came first).
    for name, n_texts in (("warm-up", 1), ("1 text", 1), (f"{a.texts} texts", a.texts)):
        sub = ids + f".{n_texts}"
        with open(ids) as fin, open(sub, "w") as fout:
            fout.writelines(fin.readlines()[:n_texts])
        t0 = time.perf_counter()
        r = subprocess.run([a.cli, "embed", "--model", a.out, "--ids", "--input", sub, "--output",
                            sub + ".npy", "--pooling", "mean", "--attention", "causal",
                            "--threads", str(a.threads)], capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"lmembed embed failed:\n{r.stderr}")
        e = np.load(sub + ".npy")
        runs[name] = (wall, n_texts * a.tokens, bool(np.isfinite(e).all()))
    rss = child_rss_mib()
    (w1, _, _), (wn, tok, finite) = runs["1 text"], runs[f"{a.texts} texts"]
    print(f"model: Mistral-7B shape, Q4_0, random weights: {size:.0f} MiB file")
    print(f"peak RSS of lmembed embed (--weights stored): {rss:.0f} MiB = {rss / size:.2f} x the "
          f"file (F32 weights would be {7.24e9 * 4 / 2**30:.1f} GiB)")
    print(f"1 text of {a.tokens} tokens: {w1:.1f} s wall (load + repack + forward)")
    print(f"{a.texts} texts x {a.tokens} tokens: {wn:.1f} s wall; encode "
          f"{(tok - a.tokens) / max(wn - w1, 1e-9):.1f} tok/s (the difference of the two runs, "
          f"so loading is taken out), {a.threads} threads, embeddings finite: {finite}")
    print(f"load average: {'%.2f %.2f %.2f' % os.getloadavg()}")
    if not a.keep:
        os.remove(a.out)


if __name__ == "__main__":
    main()
