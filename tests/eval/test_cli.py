#!/usr/bin/python3
"""`lmembed eval` end to end on precomputed embeddings, checked against scipy/sklearn.

1. `lmembed eval --dump-texts` lists every (instruction, text) of sts-b and snli-pairs.
2. This test embeds them (seeded random projection of hashed bag of words), saves .npy.
3. `lmembed eval --embeddings --texts --output` scores them; the JSON records must hold the
   fields the issue asks for, and their numbers must equal scipy's Spearman/Pearson and
   sklearn's average precision computed here from the same embeddings.
"""
import json
import os
import subprocess
import sys
import tempfile
import zlib

try:
    import numpy as np
    import scipy.stats as st
    from sklearn.metrics import average_precision_score
except ImportError as e:
    print("skip:", e)
    sys.exit(77)

CLI = os.environ.get("LMEMBED_CLI")
DATA = os.environ.get("LMEMBED_DATA_DIR")
if not CLI or not os.path.exists(CLI) or not DATA:
    print("skip: LMEMBED_CLI / LMEMBED_DATA_DIR missing")
    sys.exit(77)

tmp = tempfile.mkdtemp(prefix="lmembed_eval_cli_")
texts_file = os.path.join(tmp, "texts.jsonl")
common = ["--tasks", "sts-b,snli-pairs", "--max-examples", "300", "--data-dir", DATA]
subprocess.run([CLI, "eval", "--dump-texts", texts_file] + common, check=True)
recs = [json.loads(l) for l in open(texts_file)]
assert recs and all(set(r) == {"instruction", "text"} for r in recs), recs[:2]

D = 96
proj = np.random.default_rng(5).normal(size=(4096, D))


def embed(text):
    v = np.zeros(4096)
    for w in text.lower().split():
        v[zlib.crc32(w.encode()) % 4096] += 1
    e = v @ proj
    n = np.linalg.norm(e)
    return e / n if n > 0 else e


E = np.stack([embed(r["text"]) for r in recs]).astype(np.float32)
npy = os.path.join(tmp, "emb.npy")
np.save(npy, E)
out = os.path.join(tmp, "results.json")
r = subprocess.run([CLI, "eval", "--embeddings", npy, "--texts", texts_file, "--output", out,
                    "--quiet"] + common, capture_output=True, text=True)
print(r.stdout)
if r.returncode != 0:
    print(r.stderr)
    sys.exit(1)
assert "sts-b" in r.stdout and "spearman" in r.stdout, "table missing"
doc = json.load(open(out))
assert doc["schema"] == "lmembed.eval/1"
by_task = {rec["task"]: rec for rec in doc["records"]}
for rec in doc["records"]:
    for key in ["task", "category", "metric", "value", "metrics", "design", "model",
                "instruction", "per_example", "notes"]:
        assert key in rec, (key, rec.keys())
    assert rec["design"]["embeddings_sha256"] and len(rec["design"]["embeddings_sha256"]) == 64


def lines(path):
    return [l.rstrip("\n") for l in open(path, encoding="utf-8")]


sts = by_task["sts-b"]
assert sts["notes"]["subsample"].startswith("300 of 1500"), sts["notes"]
assert abs(np.mean(sts["per_example"]) - sts["value"]) < 1e-9

# Whole STS-B dev and SNLI pairs against scipy/sklearn on the same embeddings.
full_texts = os.path.join(tmp, "texts_full.jsonl")
full = ["--tasks", "sts-b,snli-pairs", "--data-dir", DATA]
subprocess.run([CLI, "eval", "--dump-texts", full_texts] + full, check=True)
recs2 = [json.loads(l) for l in open(full_texts)]
E2 = np.stack([embed(r["text"]) for r in recs2]).astype(np.float32)
np.save(os.path.join(tmp, "emb2.npy"), E2)
out2 = os.path.join(tmp, "results2.json")
subprocess.run([CLI, "eval", "--embeddings", os.path.join(tmp, "emb2.npy"), "--texts", full_texts,
                "--output", out2, "--quiet"] + full, check=True)
res2 = {r["task"]: r for r in json.load(open(out2))["records"]}
row2 = {(r["instruction"], r["text"]): i for i, r in enumerate(recs2)}


def cosine(ins, a, b):
    x = E2[row2[(ins, a)]].astype(np.float64)
    y = E2[row2[(ins, b)]].astype(np.float64)
    return x @ y / (np.linalg.norm(x) * np.linalg.norm(y))


rec = res2["sts-b"]
gold, cos = [], []
for l in lines(os.path.join(DATA, "datasets", "stsbenchmark", "sts-dev.csv")):
    f = l.split("\t")
    gold.append(float(f[4]))
    cos.append(cosine(rec["instruction"], f[5], f[6]))
ref_s, ref_p = st.spearmanr(gold, cos)[0], st.pearsonr(gold, cos)[0]
print(f"sts-b spearman: lmembed {rec['value']:.10f}, scipy {ref_s:.10f}")
assert abs(rec["value"] - ref_s) < 1e-6, (rec["value"], ref_s)
assert abs(rec["metrics"]["pearson"] - ref_p) < 1e-6

rec = res2["snli-pairs"]
snli = os.path.join(DATA, "datasets", "snli_dev")
lab, cos = [], []
for p, h, y in zip(lines(os.path.join(snli, "s1.dev")), lines(os.path.join(snli, "s2.dev")),
                   lines(os.path.join(snli, "labels.dev"))):
    if y in ("entailment", "contradiction"):
        lab.append(1 if y == "entailment" else 0)
        cos.append(cosine(rec["instruction"], p.strip(), h.strip()))
ref_ap = average_precision_score(lab, cos)
print(f"snli-pairs AP: lmembed {rec['value']:.10f}, sklearn {ref_ap:.10f}")
assert abs(rec["value"] - ref_ap) < 1e-6, (rec["value"], ref_ap)

# The model path: stories260K, mean pooling, a small seeded STS-B subsample.
model = os.path.join(DATA, "models", "stories260K.gguf")
out3 = os.path.join(tmp, "results3.json")
r = subprocess.run([CLI, "eval", "--model", model, "--attention", "causal", "--pooling", "mean",
                    "--tasks", "sts-b", "--max-examples", "60", "--threads", "1", "--quiet",
                    "--data-dir", DATA, "--output", out3], capture_output=True, text=True)
if r.returncode != 0:
    print(r.stdout, r.stderr)
    sys.exit(1)
rec = json.load(open(out3))["records"][0]
assert rec["model"] == model
assert rec["design"]["attention"] == "causal" and rec["design"]["pooling"] == "mean"
assert rec["design"]["head"] is None and rec["design"]["head_sha256"] is None
assert rec["notes"]["subsample"].startswith("60 of 1500")
assert -1 <= rec["value"] <= 1 and len(rec["per_example"]) == 60
# A trainable pooling without its head is a clean error, not a crash.
r = subprocess.run([CLI, "eval", "--model", model, "--attention", "causal", "--pooling",
                    "latent", "--tasks", "sts-b", "--data-dir", DATA], capture_output=True,
                   text=True)
assert r.returncode == 1 and "head" in r.stderr, (r.returncode, r.stderr)
r = subprocess.run([CLI, "eval", "--embeddings", npy], capture_output=True, text=True)
assert r.returncode == 2 and "--texts" in r.stderr, (r.returncode, r.stderr)
print("lmembed eval CLI checks passed")
