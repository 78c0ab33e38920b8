#!/usr/bin/env python3
"""Peak resident memory of `lmembed embed` on the real model, beside llama.cpp's on the same texts.

    bench/backbone/rss_real_model.py [--model GGUF] [--cli build/bin/lmembed] [--texts N]

Each side runs in a fresh child process (so its peak RSS is its own: ru_maxrss of the child):
  lmembed:   `lmembed embed --model GGUF --pooling mean --input texts.txt --output e.npy` (tokenizing
             itself; --ids with llama.cpp's ids when the tokenizer refuses the model)
  llama.cpp: llama-cpp-python `Llama(GGUF, embedding=True, pooling_type=MEAN).embed(text)` per text
Prints the model file's size, both peaks, their ratio, wall times and the load average. Run it with
the reference venv's python (scripts/requirements/reference.txt).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("LMEMBED_DATA_DIR", os.path.join(ROOT, "data"))
import realmodel  # noqa: E402

PEER = r"""
import sys, time
from llama_cpp import Llama, LLAMA_POOLING_TYPE_MEAN
texts = open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]
t0 = time.time()
llm = Llama(sys.argv[1], embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN, n_ctx=512,
            n_batch=512, n_ubatch=512, n_threads=int(sys.argv[3]), verbose=False)
t1 = time.time()
for t in texts:
    llm.embed(t)
print(f"{t1 - t0:.2f} {time.time() - t1:.2f}")
"""

IDS = r"""
import sys
from llama_cpp import Llama
llm = Llama(sys.argv[1], vocab_only=True, verbose=False)
with open(sys.argv[3], "w") as f:
    for t in open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]:
        f.write(" ".join(map(str, llm.tokenize(t.encode(), add_bos=True, special=False))) + "\n")
"""


def rss_of(cmd):
    """(stdout, wall s, peak RSS MiB) of cmd alone: a fresh python wrapper runs it as its only
    child and reports that child's ru_maxrss (exact, unlike polling /proc)."""
    wrapper = ("import resource, subprocess, sys, time; t = time.time(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr); print(r.stdout.strip()); "
               "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "time.time() - t); sys.exit(r.returncode)")
    p = subprocess.run([sys.executable, "-c", wrapper] + cmd, check=True, capture_output=True,
                       text=True)
    lines = p.stdout.strip().split("\n")
    _, kib, wall = lines[-1].split()
    return "\n".join(lines[:-1]), float(wall), int(kib) / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=realmodel.default_path())
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "bin", "lmembed"))
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    texts = realmodel.bundled_texts()[::7][:a.texts]
    tmp = tempfile.mkdtemp(prefix="lmembed-rss-")
    tf = os.path.join(tmp, "texts.txt")
    with open(tf, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(t.replace("\n", " ") + "\n")
    idf = os.path.join(tmp, "ids.txt")
    subprocess.run([sys.executable, "-c", IDS, a.model, tf, idf], check=True)
    n_tok = sum(len(line.split()) for line in open(idf))
    size = os.path.getsize(a.model) / 2**20
    print(f"model {os.path.basename(a.model)}: {size:.1f} MiB; {len(texts)} texts, {n_tok} tokens; "
          f"{a.threads} threads; load average {os.getloadavg()[0]:.2f}")

    rows = []
    out = os.path.join(tmp, "e.npy")
    base = [a.cli, "embed", "--model", a.model, "--pooling", "mean", "--output", out,
            "--threads", str(a.threads)]
    try:
        _, wall, peak = rss_of(base + ["--input", tf])
        rows.append(("lmembed embed (texts)", peak, wall, ""))
    except subprocess.CalledProcessError as e:
        print(f"lmembed embed on texts failed ({e.stderr.strip()[-200:]}); ids only")
    _, wall, peak = rss_of(base + ["--ids", "--input", idf])
    rows.append(("lmembed embed --ids", peak, wall, ""))
    o, wall, peak = rss_of([sys.executable, "-c", PEER, a.model, tf, str(a.threads)])
    load_s, embed_s = o.split()
    rows.append(("llama-cpp-python embed()", peak, wall, f"load {load_s} s, embed {embed_s} s"))
    print(f"{'':28} {'peak RSS MiB':>12} {'x file':>7} {'wall s':>7}")
    for name, peak, wall, note in rows:
        print(f"{name:28} {peak:12.1f} {peak / size:7.2f} {wall:7.1f}  {note}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
