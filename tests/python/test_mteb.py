#!/usr/bin/env python3
"""python_mteb: MTEB (2.x, its own task classes and evaluators, on in-memory data - no hub
downloads) as the referee of lmembed's evaluator, on the SAME embeddings.

Every text the bundled tasks need (lmembed.task_texts) is embedded once with lmembed.Encoder;
lmembed.evaluate scores them as `lmembed eval --embeddings` does (LookupEmbedder), and MTEB's
AbsTask* subclasses, fed lmembed.task_data's data, score them through lmembed.st.MtebEncoder
over the same rows. Per task a table line: MTEB's score, lmembed's, the difference.

Exact where the computation is deterministic: STS (Spearman of cosines), pair classification
(cosine AP, accuracy, F1), retrieval and reranking (pytrec_eval / trec_eval: nDCG@10, MAP,
recall, precision to the 5 decimals MTEB rounds them to; MRR@10 exactly).
sentence-transformers' EmbeddingSimilarityEvaluator (through lmembed.st.SentenceTransformerLike)
on STS-B: within 1e-5 (it ranks float32 cosines; lmembed's are double). Within a
stated tolerance where each side draws its own random samples with its own RNG: classification
(MTEB's undersampling and sklearn's LogisticRegression vs lmembed's) and clustering (MTEB's
random.choices and sklearn's MiniBatchKMeans vs lmembed's): |difference| <= 4 standard errors of
the difference of the two means over their experiments/runs (plus 0.01 for the classifiers'
and k-means implementations' own differences).

Semantics followed: MTEB v2 task code with lmembed's settings (the v1 "Fast" clustering:
2048 texts per run drawn with replacement from all texts, 10 runs; MTEB 2's default embeds 4%
of the texts and draws 16384 per run). Pair classification: MTEB 2's main score is the best AP
over similarity functions (max_ap); lmembed's "ap" is MTEB's cosine_ap (v1's main score).
Reranking: MTEB 2 scores it as retrieval over the candidates (map_at_1000 via trec_eval); lmembed's
MAP is v1's per-query average precision over the candidates: the same number without ties.

LMEMBED_MTEB_MODEL overrides the model (default: the bundled stories260K.gguf);
LMEMBED_MTEB_MAX_EXAMPLES the per-task cap (default 1000; 0 = all)."""
import json
import math
import os
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # MTEB's and datasets' progress bars
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # in-memory data only: never the hub
import warnings  # noqa: E402

# sklearn's macro-F1 over 77 intents warns for every intent a weak model never predicts.
warnings.filterwarnings("ignore", message=".*ill-defined.*")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import pyhelpers as H  # noqa: E402

lmembed = H.import_lmembed()
try:
    import mteb
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.classification import AbsTaskClassification
    from mteb.abstasks.clustering import AbsTaskClustering
    from mteb.abstasks.pair_classification import AbsTaskPairClassification
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata
except ImportError as e:
    H.skip(f"mteb is not installed in {sys.executable} ({e}; scripts/requirements/mteb.txt)")
from lmembed.st import MtebEncoder, SentenceTransformerLike  # noqa: E402

MODEL = os.environ.get("LMEMBED_MTEB_MODEL") or H.tiny_model()
CAP = int(os.environ.get("LMEMBED_MTEB_MAX_EXAMPLES", "1000"))
SEED = 42
RUNS = 10

GENERAL = dict(description="lmembed bundled task, in memory", reference="https://example.org",
               dataset={"path": "NA", "revision": "NA"}, category="t2t", eval_splits=["test"],
               eval_langs=["eng-Latn"], date=("2024-01-01", "2024-01-01"), dialect=["Written"],
               domains=[], task_subtypes=[], license="cc-by-4.0", annotations_creators="derived",
               modalities=["text"], sample_creation="found", bibtex_citation="")


def meta(name, type_, main):
    return TaskMetadata(type=type_, name=name, main_score=main, **GENERAL)


def make_reranking_dir(root):
    """An MTEB-layout reranking folder from SNLI dev: each premise ranks its entailed (positive)
    and contradicted (negative) hypotheses."""
    snli = os.path.join(H.data_dir(), "datasets", "snli_dev")
    read = lambda f: [ln.strip() for ln in open(os.path.join(snli, f), encoding="utf-8")]
    prem, hyp, lab = read("s1.dev"), read("s2.dev"), read("labels.dev")
    items = {}
    for p, h, l in zip(prem, hyp, lab):
        it = items.setdefault(p, {"query": p, "positive": [], "negative": []})
        if l == "entailment" and h not in it["positive"]:
            it["positive"].append(h)
        elif l == "contradiction" and h not in it["negative"]:
            it["negative"].append(h)
    keep = [it for it in items.values() if it["positive"] and it["negative"]]
    keep = keep[: (CAP or len(keep))]
    d = os.path.join(root, "snli-reranking")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "test.jsonl"), "w", encoding="utf-8") as f:
        for it in keep:
            f.write(json.dumps(it) + "\n")
    with open(os.path.join(d, "task.json"), "w") as f:
        json.dump({"name": "snli-reranking", "category": "reranking",
                   "instruction": "Retrieve the hypotheses the premise entails."}, f)
    return d


def mteb_task(t):
    """An MTEB task class over lmembed.task_data's data, with lmembed's settings."""
    d, name, cat = t["data"], t["name"], t["category"]
    if cat == "sts":
        class T(AbsTaskSTS):
            metadata = meta(name, "STS", "cosine_spearman")
            min_score, max_score = 0, 5

            def load_data(self, **kw):
                self.dataset = DatasetDict({"test": Dataset.from_dict(
                    {"sentence1": d["sentence1"], "sentence2": d["sentence2"],
                     "score": d["score"]})})
                self.data_loaded = True
    elif cat == "pair_classification":
        class T(AbsTaskPairClassification):
            metadata = meta(name, "PairClassification", "max_ap")

            def load_data(self, **kw):
                self.dataset = DatasetDict({"test": Dataset.from_dict(
                    {"sentence1": d["sentence1"], "sentence2": d["sentence2"],
                     "labels": d["label"]})})
                self.data_loaded = True
    elif cat == "classification":
        class T(AbsTaskClassification):
            metadata = meta(name, "Classification", "accuracy")
            samples_per_label = 8
            n_experiments = RUNS

            def load_data(self, **kw):
                self.dataset = DatasetDict({
                    "train": Dataset.from_dict({"text": d["train_text"], "label": d["train_label"]}),
                    "test": Dataset.from_dict({"text": d["test_text"], "label": d["test_label"]})})
                self.data_loaded = True
    elif cat == "clustering":
        class T(AbsTaskClustering):
            metadata = meta(name, "Clustering", "v_measure")
            max_fraction_of_documents_to_embed = None
            max_document_to_embed = None
            max_documents_per_cluster = min(2048, len(d["text"]))
            n_clusters = RUNS
            k_mean_batch_size = 512

            def load_data(self, **kw):
                self.dataset = DatasetDict({"test": Dataset.from_dict(
                    {"sentences": d["text"], "labels": d["label"]})})
                self.data_loaded = True
    elif cat == "retrieval":
        class T(AbsTaskRetrieval):
            metadata = meta(name, "Retrieval", "ndcg_at_10")

            def load_data(self, **kw):
                self.dataset = {"default": {"test": {
                    "corpus": Dataset.from_dict({"id": d["doc_ids"], "text": d["docs"]}),
                    "queries": Dataset.from_dict({"id": d["query_ids"], "text": d["queries"]}),
                    "relevant_docs": d["qrels"], "top_ranked": None}}}
                self.data_loaded = True
    elif cat == "reranking":
        docs, qids, qtexts, qrels, top = {}, [], [], {}, {}
        for i, it in enumerate(d["items"]):
            q = f"q{i}"
            qids.append(q)
            qtexts.append(it["query"])
            ids = []
            for rel, group in ((1, it["positive"]), (0, it["negative"])):
                for text in group:
                    did = docs.setdefault(text, f"d{len(docs)}")
                    ids.append(did)
                    qrels.setdefault(q, {})[did] = rel
            top[q] = ids

        class T(AbsTaskRetrieval):
            metadata = meta(name, "Reranking", "map_at_1000")

            def load_data(self, **kw):
                self.dataset = {"default": {"test": {
                    "corpus": Dataset.from_dict({"id": list(docs.values()), "text": list(docs)}),
                    "queries": Dataset.from_dict({"id": qids, "text": qtexts}),
                    "relevant_docs": qrels, "top_ranked": top}}}
                self.data_loaded = True
    else:
        raise AssertionError(cat)
    T.__name__ = f"Lmembed_{name.replace('-', '_')}"
    return T()


def prompts_for(t):
    """Queries (and both sides of symmetric tasks) get the E5 prefix of the task instruction,
    retrieval documents none: what `lmembed eval --model` does."""
    p = lmembed.format_instruction(t["instruction"])
    if not p:
        return {}
    if t["category"] in ("retrieval", "reranking"):
        return {f"{t['name']}-query": p}
    return {t["name"]: p}


def se_diff(a, b):
    """Standard error of the difference of two independent means of samples a and b."""
    return math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))


def main():
    import tempfile
    sys.stdout.reconfigure(line_buffering=True)  # progress lines as they come (ctest -V)
    t_start = time.time()
    cpu0 = time.process_time()
    tmp = tempfile.mkdtemp(prefix="lmembed-mteb-")
    names = lmembed.bundled_task_names() + [make_reranking_dir(tmp)]
    # One backbone thread: on a shared machine OpenMP's barriers wait for descheduled threads,
    # and the tiny model gains nothing from a second one.
    enc = lmembed.Encoder(MODEL, "causal", "mean", threads=int(os.environ.get("LMEMBED_MTEB_THREADS", "1")))
    print(f"MTEB {mteb.__version__} vs lmembed {lmembed.__version__}: {os.path.basename(MODEL)}, "
          f"causal x mean, max_examples {CAP}")

    # 1. Every (instruction, text) of every task, embedded once.
    keys = sorted({k for n in names for k in lmembed.task_texts(n, max_examples=CAP, seed=SEED)})
    by_ins = {}
    for ins, text in keys:
        by_ins.setdefault(ins, []).append(text)
    rows = {}
    t0 = time.time()
    for ins, texts in by_ins.items():
        for text, v in zip(texts, enc.encode(texts, lmembed.format_instruction(ins))):
            rows[(ins, text)] = v
        print(f"  {len(texts)} texts under {ins[:40]!r}: {time.time() - t0:.1f} s")
    E = np.stack([rows[k] for k in keys])
    print(f"embedded {len(keys)} texts in {time.time() - t0:.1f} s, "
          f"CPU so far {time.process_time() - cpu0:.0f} s")
    # MTEB's side sees the prefixes as prompts (what lmembed.Encoder.encode receives).
    lookup = lmembed.Lookup([(lmembed.format_instruction(i), t) for i, t in keys], E)

    # 2. Both evaluators on the same rows.
    header = f"{'task':22} {'metric':16} {'MTEB':>10} {'lmembed':>10} {'diff':>10}  check"
    lines, failures = [header, "-" * len(header)], []
    for n in names:
        t = lmembed.task_data(n, max_examples=CAP, seed=SEED)
        rec = lmembed.evaluate((keys, E), n, max_examples=CAP, seed=SEED, n_experiments=RUNS,
                               clustering_runs=RUNS)[0]
        task = mteb_task(t)
        model = MtebEncoder(lookup, prompts=prompts_for(t), name="stories260K-causal-mean")
        t0 = time.time()
        s = task.evaluate(model, "test", encode_kwargs={"batch_size": 256})["default"]
        secs = time.time() - t0
        cat = t["category"]
        checks = []  # (metric label, mteb value, lmembed value, tolerance, why)
        if cat == "sts":
            checks += [("spearman", s["cosine_spearman"], rec["metrics"]["spearman"], 1e-9, "exact"),
                       ("pearson", s["cosine_pearson"], rec["metrics"]["pearson"], 1e-6, "exact")]
            # sentence-transformers' own evaluator, through lmembed.st.SentenceTransformerLike.
            from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
            st = SentenceTransformerLike(lookup, prompts={"sts": lmembed.format_instruction(t["instruction"])},
                                         default_prompt_name="sts")
            ev = EmbeddingSimilarityEvaluator(t["data"]["sentence1"], t["data"]["sentence2"],
                                              t["data"]["score"], name="sts-b", batch_size=256)
            m = ev(st)
            checks.append(("spearman (ST)", m["sts-b_spearman_cosine"], rec["metrics"]["spearman"],
                           1e-5, "sentence-transformers' evaluator: float32 cosines"))
        elif cat == "pair_classification":
            checks += [("ap (cosine)", s["cosine_ap"], rec["metrics"]["ap"], 1e-9, "exact")]
            for k in ("accuracy", "f1"):
                if k in rec["metrics"] and f"cosine_{k}" in s:
                    checks.append((f"{k} (cosine)", s[f"cosine_{k}"], rec["metrics"][k], 1e-9, "exact"))
        elif cat == "retrieval":
            # MTEB rounds nDCG, MAP, recall and precision to 5 decimals (retrieval_metrics.py).
            for k in ("ndcg_at_10", "map_at_100", "recall_at_10", "recall_at_100", "precision_at_1"):
                checks.append((k, s[k], rec["metrics"][k], 5e-6, "exact to MTEB's 5 decimals"))
            checks.append(("mrr_at_10", s["mrr_at_10"], rec["metrics"]["mrr_at_10"], 1e-9, "exact"))
        elif cat == "reranking":
            checks += [("map", s["map_at_1000"], rec["metrics"]["map"], 5e-6,
                        "exact to MTEB's 5 decimals"),
                       ("mrr_at_10", s["mrr_at_10"], rec["metrics"]["mrr_at_10"], 1e-9, "exact")]
        elif cat == "classification":
            a = [e["accuracy"] for e in s["scores_per_experiment"]]
            b = [rec["metrics"][f"accuracy_experiment_{i}"] for i in range(RUNS)]
            tol = 4 * se_diff(a, b) + 0.01
            checks.append(("accuracy", s["accuracy"], rec["metrics"]["accuracy"], tol,
                           f"4 SE + 0.01 = {tol:.4f}"))
        elif cat == "clustering":
            a = [v for lvl in s["v_measures"].values() for v in lvl]
            b = rec["per_example"]
            tol = 4 * se_diff(a, b) + 0.01
            checks.append(("v_measure", s["v_measure"], rec["metrics"]["v_measure"], tol,
                           f"4 SE + 0.01 = {tol:.4f}"))
        for label, m, l, tol, why in checks:
            diff = l - m
            ok = abs(diff) <= tol
            lines.append(f"{t['name']:22} {label:16} {m:10.6f} {l:10.6f} {diff:+10.2e}  "
                         f"{'ok' if ok else 'FAIL'} ({why}; MTEB {secs:.1f} s)")
            if not ok:
                failures.append(f"{t['name']} {label}: MTEB {m} vs lmembed {l}")
    print("\n".join(lines))
    cpu = time.process_time() - cpu0
    print(f"wall {time.time() - t_start:.0f} s, CPU {cpu:.0f} s")
    n_checks = len(lines) - 2
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
    print(f"{n_checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
