#!/usr/bin/env python3
"""The real run: stories260K, SNLI dev triplets, multi_layer head.

Converts SNLI to triplets, caches the backbone states (multi_layer capture), trains the head,
and evaluates on STS-B dev: Spearman correlation (scipy) between the gold scores and the
cosine of the two sentences' embeddings, for the trained head and for the untrained head with
the same initialization (plus eos and mean pooling without a head, for context). Asserts that
the training loss falls and that the trained head beats the untrained one; prints the numbers.
"""
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy.stats import spearmanr

cli = os.environ.get("LMEMBED_CLI", "")
data = os.environ.get("LMEMBED_DATA_DIR", "")
if not os.path.exists(cli):
    print("lmembed CLI not built:", cli)
    sys.exit(77)
model = os.path.join(data, "models", "stories260K.gguf")
steps = int(os.environ.get("REAL_RUN_STEPS", "60"))
tmp = tempfile.mkdtemp(prefix="lmembed-real-run-")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # spinning threads crawl on a loaded machine


def run(*args):
    t = time.time()
    r = subprocess.run([cli, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit("failed: " + " ".join(args))
    return r, time.time() - t


try:
    jsonl = os.path.join(tmp, "snli.jsonl")
    r, _ = run("data", "snli", "--in", os.path.join(data, "datasets", "snli_dev"), "--out", jsonl,
               "--limit", os.environ.get("REAL_RUN_EXAMPLES", "1000"))
    print(r.stderr.strip())
    cache = os.path.join(tmp, "cache")
    r, t_cache = run("cache", "--model", model, "--capture", "multi_layer", "--data", jsonl,
                     "--out", cache, "--eos", "--threads", "1")
    print(r.stdout.strip(), "(%.1f s)" % t_cache)
    head = os.path.join(tmp, "run", "head.safetensors")
    common = ["--cache", cache, "--pooling", "multi_layer", "--batch", "64", "--lr", "3e-3",
              "--warmup", str(steps // 10), "--seed", "1", "--threads", "2"]
    r, t_train = run("train", *common, "--steps", str(steps), "--out", head)
    print(r.stderr.strip().splitlines()[-2], "(%.1f s)" % t_train)
    untrained = os.path.join(tmp, "init", "head.safetensors")
    run("train", *common, "--steps", "0", "--out", untrained)

    with open(os.path.join(tmp, "run", "loss.csv")) as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    k = max(1, len(losses) // 10)
    first, last = np.mean(losses[:k]), np.mean(losses[-k:])
    print("training loss: first %d steps %.4f -> last %d steps %.4f" % (k, first, k, last))

    # STS-B dev: tab-separated, score in field 4, sentences in 5 and 6.
    s1, s2, gold = [], [], []
    with open(os.path.join(data, "datasets", "stsbenchmark", "sts-dev.csv"), encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            gold.append(float(p[4]))
            s1.append(p[5])
            s2.append(p[6])
    for name, lines in (("s1", s1), ("s2", s2)):
        with open(os.path.join(tmp, name + ".txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def spearman(*pool):
        e = []
        for name in ("s1", "s2"):
            out = os.path.join(tmp, name + ".npy")
            run("embed", "--model", model, *pool, "--input", os.path.join(tmp, name + ".txt"),
                "--output", out, "--threads", "1", "--truncate")
            e.append(np.load(out))
        cos = (e[0] * e[1]).sum(1) / np.linalg.norm(e[0], axis=1) / np.linalg.norm(e[1], axis=1)
        return spearmanr(cos, gold).correlation

    rho_trained = spearman("--pooling", "multi_layer", "--head", head, "--eos")
    rho_untrained = spearman("--pooling", "multi_layer", "--head", untrained, "--eos")
    rho_eos = spearman("--pooling", "eos", "--eos")
    rho_mean = spearman("--pooling", "mean")
    print("STS-B dev Spearman (n=%d): multi_layer trained %.4f, untrained %.4f; "
          "no head: eos %.4f, mean %.4f" % (len(gold), rho_trained, rho_untrained, rho_eos,
                                             rho_mean))
    assert last < first, "training loss did not fall"
    assert rho_trained > rho_untrained, "the trained head does not beat the untrained one"
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print("ok")
