#!/usr/bin/env python3
"""The compare report, checked twice over:

1. Statistics: a synthetic comparison (8 designs, 6 tasks in 3 categories, per-example scores)
   is written as DIR/results.json + DIR/designs/*.json; `lmembed compare --report-only`
   recomputes every test. The Wilcoxon p-values must equal scipy.stats.wilcoxon's on the same
   main scores, Holm must match an independent implementation, and the bootstrap intervals must
   agree with a numpy paired bootstrap (to Monte-Carlo accuracy).
2. Rendering: report.html is opened in headless Chromium. An injected script records any
   JavaScript error or console.error and measures every chart (the SVG's box, each bar's and
   each loss curve's box) into the DOM, which --dump-dom returns; a screenshot is taken of the
   unmodified page. The page must load with no console messages at all (it has no script) and
   every chart must have drawn with non-zero size.
3. The reference row: a synthetic `lmembed eval --output` file is added with `--reference
   "all-MiniLM-L6-v2 (sentence-transformers)=FILE"`; the row must be in the rendered tables
   (labelled "reference") and the bar charts, and its tests must be families of their own.

Skips (exit 77) only when no chromium binary exists.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from scipy import stats

CLI = os.environ.get("LMEMBED_CLI")
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and os.path.exists(p)), None)
DESIGNS = ["eos-causal", "lastlayer-causal", "multilayer-causal", "latent-bidirectional",
           "perceiver-tokens-bidirectional", "multilayer-bidirectional", "mean-causal",
           "mean-bidirectional"]
TASKS = [("sts-b", "sts", "spearman"), ("sick-r", "sts", "spearman"),
         ("banking77", "classification", "accuracy"), ("emotion", "classification", "accuracy"),
         ("snli-pairs", "pair_classification", "ap"), ("snli-retrieval", "retrieval", "ndcg_at_10")]
N_EX = 150
ANCHOR = "all-MiniLM-L6-v2 (sentence-transformers)"
B = 1000


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def write_synthetic(out):
    rng = np.random.default_rng(3)
    os.makedirs(os.path.join(out, "designs"))
    designs = []
    per_example = {}
    for i, d in enumerate(DESIGNS):
        tasks = []
        for t, c, m in TASKS:
            # Design i gains 0.03 * i on every task: clear per-task effects for late designs.
            x = 0.4 + 0.03 * i + rng.normal(0, 0.25, N_EX)
            per_example[(d, t)] = x
            tasks.append({"task": t, "category": c, "main_metric": m,
                          "main_score": float(x.mean()), "metrics": {m: float(x.mean())},
                          "n_examples": N_EX, "per_example": [float(v) for v in x]})
        loss = [[s, 3.0 * np.exp(-s / (40.0 + 5 * i)) + 0.5] for s in range(1, 101)]
        rec = {"design": d, "attention": "bidirectional" if "bidirectional" in d else "causal",
               "pooling": "x", "capture": "last_layer.last_token", "head_file": "",
               "head_sha256": "", "loss": loss if i % 2 == 1 else [], "tasks": tasks,
               "stages": [{"design": d, "stage": "eval", "wall_s": 1.0 + i,
                           "peak_rss_bytes": (50 + i) << 20}]}
        with open(os.path.join(out, "designs", d + ".json"), "w") as f:
            json.dump(rec, f)
        slim = dict(rec, tasks=[{k: v for k, v in t.items() if k != "per_example"} for t in tasks])
        designs.append(slim)
    results = {
        "schema": "lmembed.compare.results/1",
        "run": {"lmembed_version": "test", "model": "synthetic <model>", "model_arch": "llama",
                "d_model": 64, "n_layers": 5, "n_params": 260000, "train_file": "snli.jsonl",
                "n_train": 1000, "steps": 100, "batch": 32, "lr": 0.001, "seed": 11,
                "threads": 2, "bootstrap_samples": B, "alpha": 0.05,
                "started_utc": "2026-01-01T00:00:00Z", "finished_utc": "2026-01-01T00:10:00Z",
                "designs": DESIGNS,
                "tasks": [{"task": t, "category": c, "main_metric": m, "n_examples": N_EX}
                          for t, c, m in TASKS],
                "head_config": {"multi_layer.n_latents": "64"}},
        "designs": designs, "tests": [], "stages": []}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)
    # The reference row as `lmembed eval --embeddings ... --output` writes it.
    records = []
    for t, c, m in TASKS:
        x = 0.45 + rng.normal(0, 0.25, N_EX)
        per_example[(ANCHOR, t)] = x
        records.append({"task": t, "category": c, "metric": m, "value": float(x.mean()),
                        "metrics": {m: float(x.mean())}, "instruction": "", "notes": {},
                        "seconds": 0.1, "per_example_unit": "example",
                        "per_example": [float(v) for v in x]})
    with open(os.path.join(out, "anchor.json"), "w") as f:
        json.dump({"schema": "lmembed.eval/1", "model": "anchor.npy",
                   "design": {"embeddings": "anchor.npy", "embeddings_sha256": "ab" * 32},
                   "records": records}, f)
    return per_example


def holm(p):
    p = np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adj[i] = running
    return adj


def check_statistics(out, per_example):
    with open(os.path.join(out, "results.json")) as f:
        r = json.load(f)
    tests = r["tests"]
    # Design pairs, then the reference against every design (never the other way round).
    n_pairs = len(DESIGNS) * (len(DESIGNS) - 1) // 2 + len(DESIGNS)
    # 6 tasks (bootstrap) + 2 categories with 2 tasks (Wilcoxon) + all tasks (Wilcoxon).
    if len(tests) != n_pairs * (len(TASKS) + 2 + 1):
        fail(f"{len(tests)} tests, expected {n_pairs * (len(TASKS) + 3)}")
    ref_tests = [x for x in tests if x.get("reference")]
    if len(ref_tests) != len(DESIGNS) * (len(TASKS) + 3) or any(x["a"] != ANCHOR
                                                                   for x in ref_tests):
        fail(f"{len(ref_tests)} reference tests, expected {len(DESIGNS) * (len(TASKS) + 3)} "
             "with the reference as a")
    main = {(d, t): per_example[(d, t)].mean() for d in DESIGNS + [ANCHOR] for t, _, _ in TASKS}
    checked = 0
    for x in tests:
        if x["test"] != "wilcoxon":
            continue
        names = [t for t, c, _ in TASKS if x["scope"] == "all" or c == x["name"]]
        a = [main[(x["a"], t)] for t in names]
        b = [main[(x["b"], t)] for t in names]
        ref = stats.wilcoxon(a, b).pvalue
        if abs(x["p"] - ref) > 1e-9 * max(ref, 1e-300):
            fail(f"wilcoxon {x['scope']} {x['name']} {x['a']} vs {x['b']}: {x['p']} != scipy {ref}")
        if abs(x["min_p"] - 2.0 / 2 ** len(names)) > 1e-15:
            fail(f"min_p {x['min_p']} for n = {len(names)}")
        checked += 1
    # Holm within each family, against the implementation above.
    fams = {}
    for i, x in enumerate(tests):
        fams.setdefault((x["scope"], x["name"], bool(x.get("reference"))), []).append(i)
    for key, idx in fams.items():
        adj = holm([tests[i]["p"] for i in idx])
        for i, v in zip(idx, adj):
            if abs(tests[i]["p_holm"] - v) > 1e-12:
                fail(f"holm {key}: {tests[i]['p_holm']} != {v}")
    # Bootstrap: interval and p against numpy's resampling of the same differences.
    rng = np.random.default_rng(0)
    worst = 0.0
    for x in tests:
        if x["test"] != "bootstrap":
            continue
        d = per_example[(x["a"], x["name"])] - per_example[(x["b"], x["name"])]
        if abs(x["mean_diff"] - d.mean()) > 1e-12:
            fail(f"bootstrap mean diff {x['mean_diff']} != {d.mean()}")
        means = d[rng.integers(0, len(d), size=(4000, len(d)))].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        se = d.std() / np.sqrt(len(d))
        worst = max(worst, abs(x["ci_low"] - lo) / se, abs(x["ci_high"] - hi) / se)
        p_ref = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
        # Two Monte-Carlo estimates of p (B and 4000 resamples): allow 4 of their joint SDs.
        tol = 8 * np.sqrt(max(p_ref, 0.01) / 2 * (1 - p_ref / 2) * (1.0 / B + 1.0 / 4000)) + 0.005
        if abs(max(x["p"], 1.0 / B) - max(p_ref, 1.0 / B)) > tol:
            fail(f"bootstrap p {x['p']} vs numpy {p_ref} ({x['a']} vs {x['b']} on {x['name']})")
        checked += 1
    if worst > 0.5:  # MC error of a 1000-resample 2.5% percentile: ~0.1 SE; max over 336
        fail(f"bootstrap interval differs from numpy's by {worst:.3f} standard errors")
    print(f"statistics: {checked} tests agree with scipy/numpy (bootstrap CI max dev {worst:.3f} SE)")
    # The designs late in the list are clearly better than eos-causal on single tasks.
    late = [x for x in tests if x["scope"] == "task" and x["b"] == "eos-causal"
            and x["a"] == "mean-bidirectional"]
    if not all(x["p_holm"] < 0.05 and x["mean_diff"] > 0 for x in late):
        fail("a 0.21 effect over 150 examples should be significant on every task")


def chromium(args, timeout=120):
    prof = tempfile.mkdtemp(prefix="lmembed-chromium-")
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--user-data-dir=" + prof] + args
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(prof, ignore_errors=True)


PROBE_HEAD = """<script>window.__lm_errors=[];
window.addEventListener('error',function(e){__lm_errors.push('error: '+e.message)});
['error','warn'].forEach(function(k){var f=console[k];console[k]=function(){
__lm_errors.push(k+': '+[].join.call(arguments,' '));f.apply(console,arguments)}});</script>"""
PROBE_TAIL = """<script>(function(){var out={charts:[],errors:window.__lm_errors};
document.querySelectorAll('svg').forEach(function(s){var r=s.getBoundingClientRect();
var bb=function(e){var q=e.getBBox();return [q.width,q.height]};
out.charts.push({cls:s.getAttribute('class')||'',w:r.width,h:r.height,
bars:[].map.call(s.querySelectorAll('rect.bar'),bb),
curves:[].map.call(s.querySelectorAll('polyline'),bb),
texts:s.querySelectorAll('text').length})});
out.tables=document.querySelectorAll('table').length;
out.h2=[].map.call(document.querySelectorAll('h2'),function(h){return h.textContent});
var p=document.createElement('pre');p.id='lm-probe';p.textContent=JSON.stringify(out);
document.body.appendChild(p)})();</script>"""


def check_rendering(out):
    html_path = os.path.join(out, "report.html")
    html = open(html_path, encoding="utf-8").read()
    # Self-contained: no script, no external reference of any kind.
    body = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for bad in ("<script", "http:", "https:", "//fonts", "@import", "url("):
        if bad in body:
            fail(f"report.html is not self-contained: contains {bad!r}")
    if re.search(r"<[^>]*\s(src|href)=", body):
        fail("report.html references another resource (src/href)")
    if "synthetic &lt;model&gt;" not in html:
        fail("the model name was not escaped into the page")
    if f'<td>{ANCHOR}</td><td class="l">reference</td>' not in html:
        fail("the reference row is not in the scores table")

    # 1. Console: load the unmodified page with Chromium's console logging on stderr.
    res = chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", "file://" + html_path])
    if res.returncode != 0 or "<svg" not in res.stdout:
        fail(f"chromium --dump-dom failed (rc {res.returncode}): {res.stderr[-2000:]}")
    if f'<td>{ANCHOR}</td><td class="l">reference</td>' not in res.stdout:
        fail("the reference row is not in the page Chromium rendered")
    console = [l for l in res.stderr.splitlines() if "CONSOLE" in l]
    if console:
        fail("console messages while loading report.html:\n" + "\n".join(console))

    # 2. Measure what was drawn: the same page with the probe injected, in a temp copy.
    probe_dir = tempfile.mkdtemp(prefix="lmembed-probe-")
    probe = os.path.join(probe_dir, "report.html")
    with open(probe, "w", encoding="utf-8") as f:
        f.write(html.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>",
                                                                         PROBE_TAIL + "</body>", 1))
    res = chromium(["--window-size=1200,3000", "--dump-dom", "file://" + probe])
    m = re.search(r'<pre id="lm-probe">(.*?)</pre>', res.stdout, re.S)
    if not m:
        fail("the probe did not run: " + res.stderr[-2000:])
    data = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<")
                      .replace("&gt;", ">").replace("&amp;", "&"))
    if data["errors"]:
        fail("javascript errors in report.html: " + "; ".join(data["errors"]))
    bars = [c for c in data["charts"] if "bars" in c["cls"]]
    loss = [c for c in data["charts"] if "loss" in c["cls"]]
    if len(bars) != 4:  # one per category
        fail(f"{len(bars)} bar charts, expected 4 (one per category)")
    for c in bars:
        if c["w"] <= 0 or c["h"] <= 0:
            fail(f"a bar chart has no size: {c}")
        if len(c["bars"]) != len(DESIGNS) + 1 or any(w <= 0 or h <= 0 for w, h in c["bars"]):
            fail(f"a bar chart did not draw its {len(DESIGNS)} + 1 (reference) bars: {c['bars']}")
        if c["texts"] < len(DESIGNS):
            fail("bar chart labels missing")
    if len(loss) != 1 or loss[0]["w"] <= 0 or len(loss[0]["curves"]) != len(DESIGNS) // 2:
        fail(f"loss chart wrong: {loss}")
    if any(w <= 0 or h <= 0 for w, h in loss[0]["curves"]):
        fail(f"a loss curve has no extent: {loss[0]['curves']}")
    for section in ("Main score per category", "Training loss", "Pairwise tests",
                    "Run time and memory per stage"):
        if not any(section in h for h in data["h2"]):
            fail(f"section '{section}' missing: {data['h2']}")
    print(f"rendering: {len(bars)} bar charts x {len(DESIGNS)} bars, {len(loss[0]['curves'])} "
          f"loss curves, {data['tables']} tables, no console output")
    shutil.rmtree(probe_dir, ignore_errors=True)

    # 3. Screenshot of the unmodified page.
    shot = os.path.join(out, "report.png")
    res = chromium(["--window-size=1200,2400", "--screenshot=" + shot, "file://" + html_path])
    if not os.path.exists(shot):
        fail("no screenshot: " + res.stderr[-2000:])
    with open(shot, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        fail("screenshot is not a PNG")
    w, h = struct.unpack(">II", head[16:24])
    size = os.path.getsize(shot)
    if (w, h) != (1200, 2400) or size < 20000:
        fail(f"screenshot {w}x{h}, {size} bytes: too small to hold the charts")
    print(f"screenshot: {shot} ({w}x{h}, {size} bytes)")


def main():
    if not CLI or not os.path.exists(CLI):
        fail(f"LMEMBED_CLI not built: {CLI}")
    if CHROMIUM is None:
        print("SKIP: chromium is not installed (apt-get install chromium); the report's "
              "rendering was not checked")
        return 77
    out = tempfile.mkdtemp(prefix="lmembed-compare-report-")
    per_example = write_synthetic(out)
    res = subprocess.run([CLI, "compare", "--report-only", "--out", out, "--bootstrap", str(B),
                          "--reference", ANCHOR + "=" + os.path.join(out, "anchor.json")],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        fail(f"lmembed compare --report-only failed ({res.returncode}): {res.stderr}")
    print(res.stdout)
    if "report: " not in res.stdout or "mean-bidirectional" not in res.stdout:
        fail("summary table not printed")
    if not re.search(re.escape(ANCHOR) + r" +reference ", res.stdout):
        fail("the reference row is not in the printed summary table")
    check_statistics(out, per_example)
    check_rendering(out)
    keep = os.environ.get("LMEMBED_KEEP_REPORT")
    if keep:
        shutil.copytree(out, keep, dirs_exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
