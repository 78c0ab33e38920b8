#!/usr/bin/env python3
"""`lmembed compare` end to end on the bundled stories260K model, small enough for CI.

Three designs (eos-causal; latent-bidirectional and perceiver-tokens-bidirectional, which
consume the same states and must share one cache), two bundled tasks subsampled, a few
training steps on the bundled SNLI triplets. Checks:
  - the outputs exist and agree with each other (results.json, designs/*.json, heads, report);
  - training examples that share a text with an evaluated example were removed (SNLI);
  - the second bidirectional design reused the first one's cache;
  - the training loss was recorded for every step and went down;
  - the per-example scores reproduce the main score where the metric is a mean of them
    (snli-pairs' AP: mean precision at the positives; sts-b: mean of the Spearman terms);
  - a rerun resumes every finished design without recomputing it (files byte-identical);
  - a rerun with other settings into the same folder is refused with a clear message;
  - one backbone pass per attention mode: --per-design-encoding (the backbone run for every
    design) gives bit-identical heads and per-example scores, with more sequences run;
  - a reference row from `lmembed eval --embeddings --output` (here random embeddings) joins
    the report via --report-only --reference, tested in families of its own; one evaluated on
    another subsample is refused.
"""
import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile

CLI = os.environ.get("LMEMBED_CLI")
DATA = os.environ.get("LMEMBED_DATA_DIR")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(args, expect_ok=True, command="compare"):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    res = subprocess.run([CLI, command] + args, capture_output=True, text=True, env=env,
                         timeout=600)
    if expect_ok and res.returncode != 0:
        fail(f"lmembed {command} {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res


def check_per_design_encoding(args, out, r):
    """The shared pass against the backbone run for every design: same bits everywhere."""
    out2 = tempfile.mkdtemp(prefix="lmembed-compare-e2e-per-design-")
    a2 = list(args)
    a2[a2.index("--out") + 1] = out2
    run(a2 + ["--per-design-encoding"])
    with open(os.path.join(out2, "results.json")) as f:
        r2 = json.load(f)
    if r["run"]["encoding"] != "shared" or r2["run"]["encoding"] != "per-design":
        fail(f"encodings {r['run']['encoding']} / {r2['run']['encoding']}")
    shared_n, per_n = r["run"]["backbone_sequences"], r2["run"]["backbone_sequences"]
    if not 0 < shared_n < per_n:
        fail(f"sequences through the backbone: shared {shared_n}, per design {per_n}")
    for d in r["designs"]:
        name = d["design"]
        with open(os.path.join(out, "designs", name + ".json")) as f:
            x = json.load(f)
        with open(os.path.join(out2, "designs", name + ".json")) as f:
            y = json.load(f)
        if x["head_sha256"] != y["head_sha256"]:
            fail(f"{name}: the head trained on the shared pass differs from per-design encoding")
        if x["loss"] != y["loss"]:
            fail(f"{name}: loss curves differ")
        for tx, ty in zip(x["tasks"], y["tasks"]):
            if tx["per_example"] != ty["per_example"] or tx["main_score"] != ty["main_score"]:
                fail(f"{name}/{tx['task']}: scores differ between shared and per-design encoding")
    print(f"shared pass: {shared_n} sequences through the backbone "
          f"({r['run']['backbone_seconds']:.2f} s), per design: {per_n} "
          f"({r2['run']['backbone_seconds']:.2f} s); heads and scores bit-identical")


def save_npy(path, rows):
    """A float32 [n, d] .npy (format 1.0), without numpy."""
    n, d = len(rows), len(rows[0])
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, d)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        for r in rows:
            f.write(struct.pack("<%df" % d, *r))


def check_reference(out):
    """A reference row through `lmembed eval --embeddings`, added with --report-only."""
    rng = random.Random(5)
    ev = ["--tasks", "sts-b,snli-pairs", "--max-examples", "150", "--quiet"]
    texts = os.path.join(out, "ref-texts.jsonl")
    run(["--dump-texts", texts] + ev, command="eval")
    n = sum(1 for _ in open(texts))
    save_npy(os.path.join(out, "ref.npy"), [[rng.gauss(0, 1) for _ in range(16)] for _ in range(n)])
    run(["--embeddings", os.path.join(out, "ref.npy"), "--texts", texts, "--output",
         os.path.join(out, "ref.json")] + ev, command="eval")
    label = "random (16 dims)"
    res = run(["--report-only", "--out", out, "--bootstrap", "300", "--reference",
               label + "=" + os.path.join(out, "ref.json")])
    if not re.search(re.escape(label) + r" +reference ", res.stdout):
        fail("the reference row is not in the summary table:\n" + res.stdout)
    with open(os.path.join(out, "results.json")) as f:
        r = json.load(f)
    refs = [d for d in r["designs"] if d.get("reference")]
    if [d["design"] for d in refs] != [label]:
        fail(f"reference rows {refs}")
    rt = [t for t in r["tests"] if t.get("reference")]
    if not rt or any(t["a"] != label for t in rt) or len(rt) != 3 * (2 + 1):
        fail(f"reference tests: {len(rt)} (expected 3 designs x (2 tasks + all))")
    if "| " + label + " | reference |" not in open(os.path.join(out, "report.md")).read():
        fail("the reference row is not in report.md")
    # Saved in references.json: a plain re-render keeps it.
    res = run(["--report-only", "--out", out, "--bootstrap", "300"])
    if not re.search(re.escape(label) + r" +reference ", res.stdout):
        fail("a re-render lost the reference row")
    # Evaluated on another subsample: refused, naming the task.
    ev2 = ["--tasks", "sts-b,snli-pairs", "--max-examples", "100", "--quiet"]
    run(["--dump-texts", texts] + ev2, command="eval")
    n = sum(1 for _ in open(texts))
    save_npy(os.path.join(out, "ref2.npy"), [[rng.gauss(0, 1) for _ in range(4)] for _ in range(n)])
    run(["--embeddings", os.path.join(out, "ref2.npy"), "--texts", texts, "--output",
         os.path.join(out, "ref2.json")] + ev2, command="eval")
    res = run(["--report-only", "--out", out, "--reference", "x=" + os.path.join(out, "ref2.json")],
              expect_ok=False)
    if res.returncode == 0 or "per-example scores" not in res.stderr:
        fail(f"a reference on another subsample was not refused: {res.stderr[-800:]}")
    print("reference row: scored, tested in its own families, kept on re-render")


def main():
    if not CLI or not os.path.exists(CLI):
        fail(f"LMEMBED_CLI not built: {CLI}")
    out = tempfile.mkdtemp(prefix="lmembed-compare-e2e-")
    args = ["--model", os.path.join(DATA, "models", "stories260K.gguf"), "--train", "bundled:snli",
            "--designs", "eos-causal,latent-bidirectional,perceiver-tokens-bidirectional",
            "--tasks", "sts-b,snli-pairs", "--max-examples", "150", "--max-train", "256",
            "--steps", "12", "--batch", "16", "--warmup", "2", "--ml-latents", "8",
            "--latent-latents", "16", "--bootstrap", "300", "--threads", "1", "--out", out]
    res = run(args)
    print(res.stdout)
    if "report: " not in res.stdout or "perceiver-tokens-bidirectional" not in res.stdout:
        fail("no summary table on stdout")
    if "[compare]" not in res.stderr:
        fail("no progress on stderr")

    with open(os.path.join(out, "results.json")) as f:
        r = json.load(f)
    names = [d["design"] for d in r["designs"]]
    if names != ["eos-causal", "latent-bidirectional", "perceiver-tokens-bidirectional"]:
        fail(f"designs {names}")
    if r["run"]["n_train_overlap"] <= 0:
        fail("SNLI training triplets overlap the SNLI task, but nothing was removed")
    if r["run"]["n_train"] != 256:
        fail(f"n_train {r['run']['n_train']}, expected 256 (--max-train)")
    by = {d["design"]: d for d in r["designs"]}
    if by["eos-causal"]["loss"] or by["eos-causal"]["head_file"]:
        fail("eos-causal has nothing to train")
    st = {d: {s["stage"]: s for s in by[d]["stages"]} for d in names}
    if "reused cache bidirectional.last_layer.all_tokens" not in st["perceiver-tokens-bidirectional"]["cache"]["note"]:
        fail(f"no cache reuse: {st['perceiver-tokens-bidirectional']['cache']}")
    if "reused" in st["latent-bidirectional"]["cache"]["note"]:
        fail("the first design cannot reuse a cache")
    for d in ("latent-bidirectional", "perceiver-tokens-bidirectional"):
        loss = [l for _, l in by[d]["loss"]]
        if len(loss) != 12:
            fail(f"{d}: {len(loss)} loss points, expected 12")
        if not sum(loss[-4:]) < sum(loss[:4]):
            fail(f"{d}: training loss did not go down: {loss}")
        head = os.path.join(out, by[d]["head_file"])
        if not os.path.getsize(head) > 0:
            fail(f"{d}: no head file")
        if hashlib.sha256(open(head, "rb").read()).hexdigest() != by[d]["head_sha256"]:
            fail(f"{d}: head_sha256 does not match the head file")
        for s in ("cache", "train", "eval"):
            if st[d][s]["wall_s"] <= 0 or st[d][s]["peak_rss_bytes"] <= 0:
                fail(f"{d}: stage {s} not measured: {st[d][s]}")

    # Per-example scores reproduce the main scores where the metric is their mean.
    for d in names:
        with open(os.path.join(out, "designs", d + ".json")) as f:
            full = json.load(f)
        for t in full["tasks"]:
            pe = t["per_example"]
            if not pe:
                fail(f"{d}/{t['task']}: no per-example scores")
            mean = sum(pe) / len(pe)
            if abs(mean - t["main_score"]) > 1e-9:
                fail(f"{d}/{t['task']}: mean of per-example {mean} != main score {t['main_score']}")
    tests = r["tests"]
    if not any(t["scope"] == "task" and t["test"] == "bootstrap" for t in tests):
        fail("no bootstrap tests")
    if not any(t["scope"] == "all" and t["test"] == "wilcoxon" for t in tests):
        fail("no Wilcoxon test over all tasks")
    for name in ("report.md", "report.html"):
        if os.path.getsize(os.path.join(out, name)) < 1000:
            fail(name + " is too small")

    # Resume: same command, nothing recomputed.
    before = {d: open(os.path.join(out, "designs", d + ".json"), "rb").read() for d in names}
    res = run(args)
    if res.stderr.count("finished in an earlier run") != 3:
        fail("a rerun did not resume all three designs:\n" + res.stderr[-2000:])
    if "train step" in res.stderr or "evaluating" in res.stderr:
        fail("a rerun recomputed work")
    for d in names:
        if open(os.path.join(out, "designs", d + ".json"), "rb").read() != before[d]:
            fail(f"designs/{d}.json changed on resume")

    # Other settings into the same folder: refused, nothing overwritten.
    bad = list(args)
    bad[bad.index("--steps") + 1] = "13"
    res = run(bad, expect_ok=False)
    if res.returncode == 0 or "run.json differs" not in res.stderr:
        fail(f"changed settings were not refused (rc {res.returncode}): {res.stderr[-1000:]}")
    check_per_design_encoding(args, out, r)
    check_reference(out)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
