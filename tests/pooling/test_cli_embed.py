#!/usr/bin/python3
"""`lmembed embed` end to end against llama.cpp's goldens (data/golden/tiny-llama.json):
--ids with the golden token ids, eos (llama.cpp's "last") and mean pooling, causal and
bidirectional, --no-normalize; texts tokenized by the CLI; normalization; a trainable head;
and the errors a user meets first."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CLI = os.environ.get("LMEMBED_CLI")
DATA = os.environ.get("LMEMBED_DATA_DIR")
TOOL = os.environ.get("LMEMBED_TARGET_POOLING_REF_TOOL")
if not CLI or not os.path.exists(CLI) or not DATA:
    print("LMEMBED_CLI / LMEMBED_DATA_DIR not set: skipping")
    sys.exit(77)

model = os.path.join(DATA, "golden/models/tiny-llama.gguf")
gold = json.load(open(os.path.join(DATA, "golden/tiny-llama.json")))
sents = gold["sentences"][:12]
failures = []


def embed(tmp, args, lines, name="out"):
    inp = os.path.join(tmp, name + ".txt")
    out = os.path.join(tmp, name + ".npy")
    with open(inp, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([CLI, "embed", "--model", model, "--input", inp, "--output", out,
                        "--threads", "2", *args], capture_output=True, text=True)
    return r, (np.load(out) if r.returncode == 0 else None)


def check(label, ok, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {label} {detail}")
    if not ok:
        failures.append(label)


with tempfile.TemporaryDirectory() as tmp:
    ids = [" ".join(map(str, s["ids"])) for s in sents]
    for pooling, attention, key in [("eos", "causal", "last_causal"),
                                    ("mean", "bidirectional", "mean_noncausal"),
                                    ("mean", "causal", "mean_causal"),
                                    ("eos", "bidirectional", "last_noncausal")]:
        r, e = embed(tmp, ["--ids", "--no-normalize", "--pooling", pooling, "--attention",
                           attention], ids)
        if r.returncode != 0:
            check(f"{pooling}/{attention} --ids", False, r.stderr)
            continue
        ref = np.array([s["embeddings"][key] for s in sents], np.float32)
        err = max(np.abs(e[i] - ref[i]).max() / np.abs(ref[i]).max() for i in range(len(sents)))
        check(f"{pooling}/{attention} --ids vs llama.cpp", e.dtype == np.float32 and
              e.shape == ref.shape and err <= 1e-4, f"rel {err:.2e}")
    # Texts tokenized by the CLI (tiny-llama adds BOS and EOS, as the goldens did).
    r, e = embed(tmp, ["--pooling", "eos"], [s["text"] for s in sents], "texts")
    ref = np.array([s["embeddings"]["last_causal"] for s in sents], np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    check("texts, normalized, vs llama.cpp", r.returncode == 0 and
          np.abs(e - ref).max() <= 1e-4, "" if r.returncode == 0 else r.stderr)
    # A trainable head: normalized rows of the right width.
    if TOOL:
        head = os.path.join(tmp, "ml.safetensors")
        subprocess.run([TOOL, "init", "multi_layer", "256", "4", "0", "0", "0", "0", "3", head],
                       check=True)
        r, e = embed(tmp, ["--pooling", "multi_layer", "--head", head, "--attention",
                           "bidirectional"], [s["text"] for s in sents], "ml")
        check("multi_layer head", r.returncode == 0 and e.shape == (len(sents), 256) and
              np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5),
              "" if r.returncode == 0 else r.stderr)
        r, _ = embed(tmp, ["--pooling", "multi_layer_mean", "--head", head], ["x"], "wrong")
        check("head of another pooling is refused", r.returncode == 1 and
              "multi_layer_mean" in r.stderr, r.stderr.strip())
    r, _ = embed(tmp, ["--pooling", "latent"], ["x"], "nohead")
    check("trainable pooling without --head", r.returncode == 1 and "--head" in r.stderr,
          r.stderr.strip())
    r, _ = embed(tmp, ["--pooling", "max"], ["x"], "badpool")
    check("unknown pooling lists the valid ones", r.returncode != 0 and
          "multi_layer" in r.stderr, r.stderr.strip())
    r, _ = embed(tmp, ["--ids"], ["1 2 x"], "badids")
    check("bad token id names the line", r.returncode == 1 and ":1:" in r.stderr,
          r.stderr.strip())
    r, _ = embed(tmp, ["--pooling", "eos", "--ids"], ["1 410 447"], "noeos")
    check("eos pooling warns about a missing EOS", r.returncode == 0 and
          "EOS" in r.stderr, r.stderr.strip().splitlines()[0] if r.stderr else "")

if failures:
    print("FAILED:", failures)
    sys.exit(1)
print("all lmembed embed checks passed")
