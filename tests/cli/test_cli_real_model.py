#!/usr/bin/env python3
"""Every CLI command on the real model (SmolLM2-135M-Instruct, Q4_1 + Q8_0 GGUF), as a new user
runs them from the README: tokenize, embed (the 4 attention x pooling combinations and both
trained heads), cache, train, eval (bundled task, --model and --embeddings), compare.

Checked against independent code where there is a reference to check against:
  - embed's rows (--weights f32) are the pooling of the backbone states: eos = the last row,
    mean = the average of the rows of `dump_states`; the default (weights kept in Q4_1/Q8_0)
    within cosine 0.99 of them (printed),
  - eval's Spearman on 60 STS-B pairs (an MTEB-layout task folder) equals
    scipy.stats.spearmanr of the cosine similarities numpy computes from `embed`'s rows of the
    same sentences (1e-9),
  - tokenize --eos ends every line with the model's EOS id and embed --ids on those ids equals
    embed on the texts (bit for bit),
  - train's loss falls (last 3 steps' mean below the first 3's), and a head of another pooling is
    refused naming the file,
  - compare finishes with results.json holding both designs on the task.
Skips (77) naming what is missing when the real model (scripts/fetch_models.sh, LMEMBED_REAL_MODEL)
or scipy is absent. About 2 minutes on 2 cores.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import clitest  # noqa: E402  (this folder)
import realmodel  # noqa: E402

MODEL = realmodel.model_path()
CLI = realmodel.cli()
try:
    import numpy as np
    from scipy.stats import spearmanr
except ImportError as e:
    realmodel.skip(f"numpy/scipy missing: {e}")

DUMP = os.environ.get("LMEMBED_TARGET_DUMP_STATES", "")
DATA = clitest.data_dir()
env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
check = clitest.Checks("lmembed_cli_real_")
p = check.p


def lm(*args, expect=0, stdin=None):
    r = subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True, env=env,
                       input=stdin)
    if expect is not None and r.returncode != expect:
        print(r.stdout[-2000:], r.stderr[-2000:])
        raise SystemExit(f"lmembed {' '.join(map(str, args[:3]))}: exit {r.returncode}, "
                         f"expected {expect}")
    return r


texts = ["A man is playing a flute.", "A man plays the flute.", "Two dogs run on the beach.",
         "The stock market fell sharply today.", "How do I activate my new card?",
         "Ein Hund läuft über die Wiese. 🐕", "def f(x): return x ** 2  # square"]
with open(p("texts.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(texts) + "\n")

# --- tokenize, and embed --ids on its output --------------------------------------------------
r = lm("tokenize", "--model", MODEL, "--eos", stdin="\n".join(texts) + "\n")
ids = [list(map(int, line.split())) for line in r.stdout.splitlines()]
check(len(ids) == len(texts) and all(len(x) > 2 for x in ids), f"tokenize: {len(ids)} lines")
eos = {x[-1] for x in ids}
check(len(eos) == 1, f"tokenize --eos: every line ends with the same id {sorted(eos)}")
with open(p("ids.txt"), "w") as f:
    f.write(r.stdout)

# --- embed: 4 combinations --------------------------------------------------------------------
emb = {}
for att in ("causal", "bidirectional"):
    for pool in ("eos", "mean"):
        out = p(f"{att}-{pool}.npy")
        lm("embed", "--model", MODEL, "--attention", att, "--pooling", pool, "--input",
           p("texts.txt"), "--output", out, "--eos", "--no-normalize", "--threads", 2)
        e = np.load(out)
        emb[(att, pool)] = e
        check(e.shape == (len(texts), 576) and np.isfinite(e).all(),
              f"embed {att}/{pool}: shape {e.shape}, finite")
check(not np.allclose(emb[("causal", "mean")], emb[("bidirectional", "mean")]),
      "causal and bidirectional embeddings differ")
lm("embed", "--model", MODEL, "--ids", "--pooling", "mean", "--input", p("ids.txt"), "--output",
   p("ids-mean.npy"), "--no-normalize", "--threads", 2)
check(np.array_equal(np.load(p("ids-mean.npy")), emb[("causal", "mean")]),
      "embed --ids on tokenize's ids equals embed on the texts, bit for bit")

# Pooling vs the backbone's own states (dump_states: every layer, every token, F32 weights), on
# embed's F32 path (--weights f32; the default keeps Q4_1/Q8_0 weights quantized).
if os.path.exists(DUMP):
    for pool in ("eos", "mean"):
        lm("embed", "--model", MODEL, "--attention", "causal", "--pooling", pool, "--input",
           p("texts.txt"), "--output", p(f"f32-{pool}.npy"), "--eos", "--no-normalize",
           "--weights", "f32", "--threads", 2)
        emb[("f32", pool)] = np.load(p(f"f32-{pool}.npy"))
    subprocess.run([DUMP, MODEL, "causal", p("ids.txt"), p("states.npy")], check=True)
    st = np.load(p("states.npy")).reshape(-1, 30, 576)[:, -1]  # last layer (final norm)
    at, eos_ref, mean_ref = 0, [], []
    for x in ids:
        eos_ref.append(st[at + len(x) - 1])
        mean_ref.append(st[at:at + len(x)].astype(np.float64).mean(0))
        at += len(x)
    d_eos = np.abs(emb[("f32", "eos")] - np.array(eos_ref)).max()
    d_mean = np.abs(emb[("f32", "mean")] - np.array(mean_ref)).max() / np.abs(mean_ref).max()
    check(d_eos == 0, f"eos pooling = the last token's final state (max diff {d_eos:.1e})")
    check(d_mean < 1e-5, f"mean pooling = the mean of the final states (max rel diff {d_mean:.1e})")
    # The stored (quantized-activation) path stays close to F32 (docs/backbone.md's bound).
    for pool in ("eos", "mean"):
        a, b = emb[("causal", pool)].astype(np.float64), emb[("f32", pool)].astype(np.float64)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        check(cos.min() >= 0.99, f"embed {pool}: stored weights vs --weights f32, min cosine "
                                  f"{cos.min():.5f} (median {np.median(cos):.5f})")
else:
    print("note: dump_states not built: pooling vs states not checked")

# --- cache + train + embed with the trained heads ---------------------------------------------
lm("data", "snli", "--in", os.path.join(DATA, "datasets", "snli_dev"), "--out", p("train.jsonl"),
   "--limit", 96)
heads = {}
for pool, att in (("latent", "bidirectional"), ("multi_layer", "causal")):
    cache = p(f"cache-{pool}")
    lm("cache", "--model", MODEL, "--capture", pool, "--attention", att, "--data",
       p("train.jsonl"), "--out", cache, "--eos", "--threads", 2)
    os.makedirs(p(f"h-{pool}"), exist_ok=True)
    head = p(f"h-{pool}", "head.safetensors")
    lm("train", "--cache", cache, "--pooling", pool, "--out", head, "--steps", 24, "--batch", 16,
       "--lr", "1e-3", "--latents", 16, "--threads", 2)
    with open(p(f"h-{pool}", "loss.csv")) as f:
        rows = [line.strip().split(",") for line in f if line.strip()]
    loss = [float(r[1]) for r in rows[1:]]
    check(len(loss) == 24 and np.mean(loss[-3:]) < np.mean(loss[:3]),
          f"train {pool}: loss {np.mean(loss[:3]):.3f} -> {np.mean(loss[-3:]):.3f}")
    out = p(f"head-{pool}.npy")
    lm("embed", "--model", MODEL, "--attention", att, "--pooling", pool, "--head", head,
       "--input", p("texts.txt"), "--output", out, "--eos", "--threads", 2)
    e = np.load(out)
    check(e.shape[0] == len(texts) and np.isfinite(e).all(),
          f"embed {att}/{pool} with the trained head: shape {e.shape}")
    heads[pool] = head
r = lm("embed", "--model", MODEL, "--pooling", "multi_layer", "--head", heads["latent"], "--input",
       p("texts.txt"), "--output", p("wrong.npy"), expect=1)
last = r.stderr.strip().splitlines()[-1]
check(heads["latent"] in last and not os.path.exists(p("wrong.npy")),
      f"a latent head for multi_layer pooling is refused naming it: {last[:200]}")

# --- eval: --model on a task folder, against scipy on embed's rows ------------------------------
# 60 STS-B dev pairs as an MTEB-layout folder: the pairs are then known here. eval puts the
# category's instruction before both sides; embed --instruction does the same.
pairs = []
with open(os.path.join(DATA, "datasets", "stsbenchmark", "sts-dev.csv"), encoding="utf-8") as f:
    for line in f:
        c = line.rstrip("\n").split("\t")
        if len(c) >= 7 and "\n" not in c[5] + c[6]:
            pairs.append((c[5], c[6], float(c[4])))
pairs = pairs[:60]
os.makedirs(p("sts"), exist_ok=True)
with open(p("sts", "test.tsv"), "w", encoding="utf-8") as f:
    for s1, s2, g in pairs:
        f.write(f"{s1}\t{s2}\t{g}\n")
lm("eval", "--model", MODEL, "--attention", "causal", "--pooling", "mean", "--task-dir", p("sts"),
   "--output", p("eval.json"), "--threads", 2, "--quiet")
ev = json.load(open(p("eval.json")))
model_score = ev["records"][0]["value"]
# The category's default instruction, formatted as the record says (both sides of an STS pair).
prefix = ev["design"]["instruction_format"].replace("{instruction}",
                                                    ev["records"][0]["instruction"] or "")
prefix = prefix[:prefix.index("{text}")] if ev["records"][0]["instruction"] else ""
prefix = prefix.replace("\\n", "\n")  # the record spells the newline as the two characters \n
with open(p("s1.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(x[0] for x in pairs) + "\n")
with open(p("s2.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(x[1] for x in pairs) + "\n")
for n in ("s1", "s2"):
    lm("embed", "--model", MODEL, "--attention", "causal", "--pooling", "mean", "--input",
       p(f"{n}.txt"), "--output", p(f"{n}.npy"), "--threads", 2,
       *(["--instruction", prefix] if prefix else []))
e1, e2 = (np.load(p(f"{n}.npy")).astype(np.float64) for n in ("s1", "s2"))
cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
ref = spearmanr([x[2] for x in pairs], cos).correlation
check(abs(model_score - ref) <= 1e-9 * max(1.0, abs(ref)),
      f"eval sts (60 pairs) Spearman {model_score:.6f} = scipy on embed's rows {ref:.6f}")
check(0.2 < model_score < 1.0, f"SmolLM2 mean pooling has signal on STS-B: {model_score:.4f}")

# --- compare: two designs on one task ---------------------------------------------------------
lm("compare", "--model", MODEL, "--train", p("train.jsonl"), "--designs",
   "eos-causal,mean-bidirectional", "--tasks", "sts-b", "--max-examples", 40, "--steps", 2,
   "--batch", 8, "--threads", 2, "--out", p("cmp"), "--quiet")
resj = json.load(open(p("cmp", "results.json")))
names = sorted(d["design"] for d in resj["designs"])
check(names == ["eos-causal", "mean-bidirectional"], f"compare: results for {names}")

check.finish()
