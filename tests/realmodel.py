"""Shared helpers for the tests that run on the real model (SmolLM2-135M-Instruct, fetched by
scripts/fetch_models.sh into LMEMBED_MODEL_DIR). Import from a test: `import realmodel`."""
import os
import sys

SKIP = 77


def skip(msg):
    """Skip loudly: ctest shows the test as skipped and this line says why."""
    print(f"SKIPPED: {msg}", file=sys.stderr)
    sys.exit(SKIP)


def default_path():
    """Where the real model is expected: LMEMBED_REAL_MODEL, else scripts/fetch_models.sh's cache
    folder (LMEMBED_MODEL_DIR, default ~/.cache/lmembed/models). The file may not exist."""
    return os.environ.get("LMEMBED_REAL_MODEL") or os.path.join(
        os.environ.get("LMEMBED_MODEL_DIR", os.path.expanduser("~/.cache/lmembed/models")),
        "SmolLM2-135M-Instruct.Q4_1.gguf")


def model_path():
    """Path of the real model's GGUF, or skip when it was not fetched."""
    p = os.environ.get("LMEMBED_REAL_MODEL", "")
    if not p or not os.path.exists(p):
        skip("the real model is not available (LMEMBED_REAL_MODEL unset or missing; "
             "scripts/fetch_models.sh fetches it)")
    return p


def cli():
    """Path of the lmembed CLI built by this build tree, or skip."""
    c = os.environ.get("LMEMBED_TARGET_LMEMBED_CLI") or os.environ.get("LMEMBED_CLI")
    if not c or not os.path.exists(c):
        skip("the lmembed CLI is not built")
    return c


def bundled_texts(limit=None):
    """Every text of the bundled datasets (SNLI dev sentences, STS-B train/dev, Banking77
    train/test), deduplicated in first-seen order: the corpus the tokenizer and backbone reference
    tests run on (about 38,000 texts)."""
    import csv
    data = os.path.join(os.environ["LMEMBED_DATA_DIR"], "datasets")
    seen, out = set(), []

    def add(t):
        t = t.strip("\n")
        if t and t not in seen:
            seen.add(t)
            out.append(t)

    for f in ("s1.dev", "s2.dev"):
        with open(os.path.join(data, "snli_dev", f), encoding="utf-8") as fh:
            for line in fh:
                add(line)
    for f in ("sts-train.csv", "sts-dev.csv"):
        with open(os.path.join(data, "stsbenchmark", f), encoding="utf-8") as fh:
            for line in fh:
                cols = line.rstrip("\n").split("\t")
                for t in cols[5:7]:
                    add(t)
    for f in ("train.csv", "test.csv"):
        with open(os.path.join(data, "banking77", f), encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                add(row["text"])
    return out[:limit] if limit else out
