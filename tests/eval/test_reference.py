#!/usr/bin/python3
"""lmembed::eval against scipy and sklearn, computed here on the same inputs.

- Spearman/Pearson (with ties) vs scipy.stats.spearmanr/pearsonr: 1e-9 relative.
- Wilcoxon signed-rank p-values vs scipy.stats.wilcoxon, exact and normal-approximation paths,
  ties, zeros (wilcox/pratt/zsplit), two- and one-sided, continuity correction: 1e-9 relative.
- V-measure vs sklearn.metrics.homogeneity_completeness_v_measure: 1e-12.
- Average precision vs sklearn.metrics.average_precision_score (with tied scores): 1e-12.
- Mini-batch k-means V-measure on fixed Banking77 embeddings vs sklearn MiniBatchKMeans
  (MTEB's settings, means over 10 seeds each): within 0.01.
- Logistic-regression accuracy on the same embeddings vs sklearn LogisticRegression (MTEB's
  settings) on identical training subsets: within 0.5 points.

The fixed embeddings are a seeded Gaussian random projection (to 128 dimensions) of TF-IDF
vectors of the Banking77 texts, L2-normalized, saved as .npy by this test.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import warnings

try:
    import numpy as np
    import scipy
    import scipy.stats as st
    import sklearn
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import (accuracy_score, average_precision_score,
                                 homogeneity_completeness_v_measure, v_measure_score)
except ImportError as e:  # not Debian's python3
    print("skip:", e)
    sys.exit(77)

TOOL = os.environ.get("LMEMBED_TARGET_EVAL_REF_TOOL")
DATA = os.environ.get("LMEMBED_DATA_DIR")
if not TOOL or not DATA:
    print("skip: LMEMBED_TARGET_EVAL_REF_TOOL / LMEMBED_DATA_DIR not set")
    sys.exit(77)

failures = []


def check(name, ours, ref, rel=None, abs_=None):
    if ours is None or ref is None or (isinstance(ref, float) and np.isnan(ref)):
        ok = (ours is None) == (ref is None or np.isnan(ref))
    elif rel is not None:
        ok = abs(ours - ref) <= rel * max(abs(ref), 1e-300)
    else:
        ok = abs(ours - ref) <= abs_
    if not ok:
        failures.append(f"{name}: ours {ours!r} vs reference {ref!r}")
    return ok


def run_tool(cases, tmp):
    path = os.path.join(tmp, "cases.json")
    with open(path, "w") as f:
        json.dump(cases, f)
    out = subprocess.run([TOOL, path], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        sys.exit(1)
    return json.loads(out.stdout)


rng = np.random.default_rng(20240902)
tmp = tempfile.mkdtemp(prefix="lmembed_eval_ref_")

# ---------------------------------------------------------------- correlations
corr_cases = []
for n, tie_levels in [(10, None), (50, 5), (200, None), (1500, 26)]:
    x = rng.normal(size=n)
    y = x * 0.6 + rng.normal(size=n)
    if tie_levels:  # STS-like gold scores with many ties
        x = np.round(np.clip(x, -2.5, 2.5) * tie_levels / 5) / (tie_levels / 5)
    corr_cases.append({"op": "corr", "x": x.tolist(), "y": y.tolist()})
corr_out = run_tool(corr_cases, tmp)
for c, o in zip(corr_cases, corr_out):
    n = len(c["x"])
    check(f"spearman n={n}", o["spearman"], float(st.spearmanr(c["x"], c["y"])[0]), rel=1e-9)
    check(f"pearson n={n}", o["pearson"], float(st.pearsonr(c["x"], c["y"])[0]), rel=1e-9)
    check(f"spearman_terms mean n={n}", o["spearman_terms_mean"],
          float(st.spearmanr(c["x"], c["y"])[0]), rel=1e-9)

# ---------------------------------------------------------------- Wilcoxon
w_cases = []  # (description, x, y, kwargs for scipy, our method name)


def add_w(desc, x, y, zero_method="wilcox", alternative="two-sided", method="auto",
          correction=False, scipy_method=None):
    w_cases.append((desc, {"op": "wilcoxon", "x": list(map(float, x)), "y": list(map(float, y)),
                           "zero_method": zero_method, "alternative": alternative,
                           "method": method, "correction": correction},
                    dict(zero_method=zero_method, alternative=alternative,
                         method=scipy_method or method, correction=correction)))


for alt in ["two-sided", "greater", "less"]:
    for n in [6, 10, 25, 50]:  # exact path (scipy auto: n <= 50, no zeros, no ties)
        x = rng.normal(size=n) + 0.3
        add_w(f"exact n={n} {alt}", x, np.zeros(n), alternative=alt)
    for n in [51, 120]:  # approx path by size
        x = rng.normal(size=n) + 0.2
        y = rng.normal(size=n)
        add_w(f"approx n={n} {alt}", x, y, alternative=alt)
        add_w(f"approx+cc n={n} {alt}", x, y, alternative=alt, correction=True)
    # Ties, no zeros: we take the normal approximation with tie correction (scipy's approx).
    t = np.round(rng.normal(size=30) * 3) / 3
    t[t == 0] = 1.0 / 3
    add_w(f"ties n=30 {alt}", t, np.zeros(30), alternative=alt, scipy_method="approx")
    add_w(f"ties n=30 approx {alt}", t, np.zeros(30), alternative=alt, method="approx")
    # Zeros (and ties): scipy's default switches to the approximation; all zero methods.
    z = np.round(rng.normal(size=40) * 2) / 2 + 0.1
    base = z.copy()
    z[:6] = base[:6] = 0.0
    for zm in ["wilcox", "pratt", "zsplit"]:
        add_w(f"zeros {zm} {alt}", z, np.zeros(40), zero_method=zm, alternative=alt)
        add_w(f"zeros {zm} +cc {alt}", z, np.zeros(40), zero_method=zm, alternative=alt,
              correction=True)
    # Paired scores of two systems over tasks, as compare uses it (n = 8 tasks).
    a = rng.uniform(0.3, 0.8, size=8)
    add_w(f"tasks n=8 {alt}", a + rng.normal(scale=0.02, size=8), a, alternative=alt)
    # Forced exact on a larger untied sample.
    add_w(f"forced exact n=60 {alt}", rng.normal(size=60) + 0.1, np.zeros(60), alternative=alt,
          method="exact")

w_out = run_tool([c for _, c, _ in w_cases], tmp)
n_exact = n_approx = 0
for (desc, c, kw), o in zip(w_cases, w_out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st.wilcoxon(np.array(c["x"]), np.array(c["y"]), **kw)
    check(f"wilcoxon {desc} statistic", o["statistic"], float(ref.statistic), rel=1e-12)
    check(f"wilcoxon {desc} p", o["pvalue"], float(ref.pvalue), rel=1e-9)
    n_exact += o["exact"]
    n_approx += not o["exact"]
if n_exact < 10 or n_approx < 30:
    failures.append(f"wilcoxon: paths not both exercised (exact {n_exact}, approx {n_approx})")

# ---------------------------------------------------------------- V-measure, AP
v_cases = []
for n, kt, kp in [(10, 2, 3), (500, 7, 7), (3080, 77, 77), (1000, 1, 5), (200, 5, 1)]:
    a = rng.integers(0, kt, size=n)
    b = np.where(rng.random(n) < 0.6, a % max(kp, 1), rng.integers(0, kp, size=n))
    v_cases.append({"op": "vmeasure", "a": a.tolist(), "b": b.tolist()})
v_out = run_tool(v_cases, tmp)
for c, o in zip(v_cases, v_out):
    h, cpl, v = homogeneity_completeness_v_measure(c["a"], c["b"])
    n = len(c["a"])
    check(f"homogeneity n={n}", o["homogeneity"], float(h), abs_=1e-12)
    check(f"completeness n={n}", o["completeness"], float(cpl), abs_=1e-12)
    check(f"v_measure n={n}", o["v_measure"], float(v), abs_=1e-12)

ap_cases = []
for n in [20, 300]:
    s = np.round(rng.normal(size=n), 1)  # many ties
    lab = (rng.random(n) < 0.4).astype(int)
    ap_cases.append({"op": "pairs", "scores": s.tolist(), "labels": lab.tolist()})
ap_out = run_tool(ap_cases, tmp)
for c, o in zip(ap_cases, ap_out):
    check(f"average_precision n={len(c['scores'])}", o["ap"],
          float(average_precision_score(c["labels"], c["scores"])), abs_=1e-12)

# ---------------------------------------------------------------- Banking77 fixed embeddings


def read_banking(name):
    with open(os.path.join(DATA, "datasets", "banking77", name), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["text", "category"], rows[0]
    return [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]


tr_text, tr_cat = read_banking("train.csv")
te_text, te_cat = read_banking("test.csv")
cats = sorted(set(tr_cat))
cid = {c: i for i, c in enumerate(cats)}
ytr = np.array([cid[c] for c in tr_cat])
yte = np.array([cid[c] for c in te_cat])
vec = TfidfVectorizer(min_df=2).fit(tr_text + te_text)
proj = np.random.default_rng(77).normal(size=(len(vec.vocabulary_), 128)) / np.sqrt(128)


def embed(texts):
    e = np.asarray(vec.transform(texts) @ proj)
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)


Etr, Ete = embed(tr_text), embed(te_text)
np.save(os.path.join(tmp, "test.npy"), Ete)

# k-means: MTEB's MiniBatchKMeans(n_clusters=#labels, batch_size=512, n_init="auto").
SEEDS = 10
ours_km = run_tool([{"op": "kmeans", "npy": os.path.join(tmp, "test.npy"), "labels": yte.tolist(),
                     "k": 77, "batch_size": 512, "seeds": SEEDS}], tmp)[0]
ref_v = []
for s in range(SEEDS):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = MiniBatchKMeans(n_clusters=77, batch_size=512, n_init="auto", random_state=s).fit(Ete)
    ref_v.append(v_measure_score(yte, km.labels_))
print(f"k-means V-measure (mean of {SEEDS} seeds): ours {ours_km['v_measure']:.4f}, "
      f"sklearn {np.mean(ref_v):.4f} (sd ours {np.std(ours_km['runs']):.4f}, "
      f"sklearn {np.std(ref_v):.4f})")
check("k-means V-measure mean", ours_km["v_measure"], float(np.mean(ref_v)), abs_=0.01)

# Logistic regression: MTEB's LogisticRegression(max_iter=100) on undersampled training sets
# (8 and 32 per label, as MTEB's classification experiments draw them).
lr_cases, lr_refs = [], []
sub_rng = np.random.default_rng(42)
for k in [8, 32]:
    if k is None:
        idx = np.arange(len(ytr))
    else:
        perm = sub_rng.permutation(len(ytr))
        cnt, idx = {}, []
        for i in perm:
            if cnt.get(ytr[i], 0) < k:
                cnt[ytr[i]] = cnt.get(ytr[i], 0) + 1
                idx.append(i)
        idx = np.array(idx)
    name = f"train_{k or 'all'}.npy"
    np.save(os.path.join(tmp, name), Etr[idx])
    lr_cases.append({"op": "logreg", "train_npy": os.path.join(tmp, name),
                     "test_npy": os.path.join(tmp, "test.npy"),
                     "train_labels": ytr[idx].tolist(), "test_labels": yte.tolist()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(random_state=42, max_iter=100).fit(Etr[idx], ytr[idx])
    lr_refs.append((k, accuracy_score(yte, clf.predict(Ete))))
lr_out = run_tool(lr_cases, tmp)
for (k, ref_acc), o in zip(lr_refs, lr_out):
    print(f"logreg {k or 'all'} per label: accuracy ours {o['accuracy']:.4f}, "
          f"sklearn {ref_acc:.4f} ({o['iterations']} L-BFGS iterations)")
    check(f"logreg accuracy ({k or 'all'} per label)", o["accuracy"], ref_acc, abs_=0.005)

print(f"scipy {scipy.__version__}, sklearn {sklearn.__version__}: "
      f"{len(corr_cases)} correlation, {len(w_cases)} Wilcoxon ({n_exact} exact), "
      f"{len(v_cases)} V-measure, {len(ap_cases)} AP, k-means, {len(lr_cases)} logreg cases")
if failures:
    print("FAILED:")
    for f in failures:
        print("  ", f)
    sys.exit(1)
print("all reference comparisons passed")
