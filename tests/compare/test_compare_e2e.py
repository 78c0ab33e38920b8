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
  - a rerun with other settings into the same folder is refused with a clear message.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

CLI = os.environ.get("LMEMBED_CLI")
DATA = os.environ.get("LMEMBED_DATA_DIR")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(args, expect_ok=True):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    res = subprocess.run([CLI, "compare"] + args, capture_output=True, text=True, env=env,
                         timeout=600)
    if expect_ok and res.returncode != 0:
        fail(f"lmembed compare {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res


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
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
