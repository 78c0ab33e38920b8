#!/usr/bin/env python3
"""python_module: the lmembed Python module against the lmembed CLI (a separate program over
the same library) on the bundled stories260K model: embeddings of all 8 designs, token ids,
lmembed.cache/train vs `lmembed cache/train` (same cache files, same losses, same head),
lmembed.evaluate vs `lmembed eval`; numpy hand-over without a copy; exceptions; the GIL released
while encoding (a second Python thread runs meanwhile); two threads encoding at once; stubs."""
import json
import os
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import pyhelpers as H  # noqa: E402

lmembed = H.import_lmembed()
MODEL = H.tiny_model()
TEXTS = ["A man is playing a flute.", "A man plays the flute.", "Two dogs run on the beach.",
         "The stock market fell sharply today.", "Ein Hund läuft. 🐕", ""]
TEXTS = [t for t in TEXTS if t]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("pymod")
    (d / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def heads(work):
    """A tiny training set, its caches (by lmembed.cache) and heads (by lmembed.train)."""
    H.run_cli("data", "snli", "--in", os.path.join(H.data_dir(), "datasets", "snli_dev"),
              "--out", work / "train.jsonl", "--limit", 64)
    out = {}
    for att in ("causal", "bidirectional"):
        for pooling in ("latent", "multi_layer"):
            cache = work / f"cache-{att}-{pooling}"
            rep = lmembed.cache(MODEL, work / "train.jsonl", cache, pooling, attention=att,
                                eos=True, threads=1)
            assert rep["examples"] == 64 and rep["texts"] > 64
            head = work / f"head-{att}-{pooling}.safetensors"
            steps = lmembed.train(cache, pooling, head, steps=3, batch=8, latents=4, heads=2,
                                  seed=7, threads=1)
            assert [s["step"] for s in steps] == [1, 2, 3]
            out[(att, pooling)] = (cache, head, steps)
    return out


def cli_embed(work, att, pooling, head=None, eos=False, instruction=None):
    npy = work / f"cli-{att}-{pooling}.npy"
    args = ["embed", "--model", MODEL, "--attention", att, "--pooling", pooling,
            "--input", work / "texts.txt", "--output", npy, "--threads", 1]
    if head:
        args += ["--head", head]
    if eos:
        args += ["--eos"]
    if instruction:
        args += ["--instruction", instruction]
    H.run_cli(*args)
    return np.load(npy)


@pytest.mark.parametrize("att", ["causal", "bidirectional"])
@pytest.mark.parametrize("pooling", ["eos", "mean"])
def test_parameter_free_designs_match_cli(work, att, pooling):
    enc = lmembed.Encoder(MODEL, att, pooling, threads=1, add_eos=True)
    e = enc.encode(TEXTS)
    ref = cli_embed(work, att, pooling, eos=True)
    assert e.shape == ref.shape == (len(TEXTS), enc.dim)
    np.testing.assert_array_equal(e, ref)
    # With an instruction prefix (left out of mean pooling).
    e2 = enc.encode(TEXTS, instruction="Instruct: find it\nQuery: ")
    ref2 = cli_embed(work, att, pooling, eos=True, instruction="Instruct: find it\nQuery: ")
    np.testing.assert_array_equal(e2, ref2)
    assert not np.array_equal(e, e2)


@pytest.mark.parametrize("att", ["causal", "bidirectional"])
@pytest.mark.parametrize("pooling", ["latent", "multi_layer"])
def test_trained_designs_match_cli(work, heads, att, pooling):
    cache, head, steps = heads[(att, pooling)]
    enc = lmembed.Encoder(MODEL, att, pooling, head, threads=1, add_eos=True)
    assert (enc.attention, enc.pooling) == (att, pooling)
    np.testing.assert_array_equal(enc.encode(TEXTS), cli_embed(work, att, pooling, head, eos=True))
    # `lmembed train` on the same cache with the same options: same losses, same head bytes.
    cli_head = work / f"cli-head-{att}-{pooling}.safetensors"
    H.run_cli("train", "--cache", cache, "--pooling", pooling, "--out", cli_head, "--steps", 3,
              "--batch", 8, "--latents", 4, "--heads", 2, "--seed", 7, "--threads", 1)
    rows = (cli_head.parent / "loss.csv").read_text().splitlines()[1:]
    cli_loss = [float(r.split(",")[1]) for r in rows]
    assert cli_loss == pytest.approx([s["loss"] for s in steps], rel=1e-8, abs=0)
    assert cli_head.read_bytes() == head.read_bytes()


def test_cache_matches_cli(work, heads):
    cache = heads[("causal", "latent")][0]
    cli_cache = work / "cli-cache"
    H.run_cli("cache", "--model", MODEL, "--capture", "latent", "--data", work / "train.jsonl",
              "--out", cli_cache, "--attention", "causal", "--eos", "--threads", 1)
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted(p.name for p in cli_cache.iterdir())
    for n in names:
        if n.endswith(".bin") or n.endswith(".jsonl"):
            assert (cache / n).read_bytes() == (cli_cache / n).read_bytes(), n


def test_tokenize_matches_cli(work):
    enc = lmembed.Encoder(MODEL, "causal", "mean")
    ids = enc.tokenize(TEXTS)
    r = H.run_cli("tokenize", "--model", MODEL, input="\n".join(TEXTS) + "\n")
    cli_ids = [[int(x) for x in line.split()] for line in r.stdout.splitlines()]
    assert ids == cli_ids
    # The instruction's tokens come first, then the text's (as encode feeds the backbone).
    with_ins = enc.tokenize(["flute"], instruction="Query: ")
    assert len(with_ins[0]) > len(enc.tokenize(["flute"])[0])


def test_numpy_owns_the_library_buffer():
    enc = lmembed.Encoder(MODEL, "bidirectional", "mean", threads=1)
    e = enc.encode(TEXTS)
    assert e.dtype == np.float32 and e.flags.c_contiguous and e.ndim == 2
    # Handed over, not copied: numpy does not own the memory, a capsule holding the Matrix does.
    assert not e.flags.owndata and e.base is not None
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    # Batched calls agree with one call (the library's batching bounds tokens, not results).
    np.testing.assert_array_equal(enc.encode(TEXTS, batch_size=2), e)
    empty = enc.encode([])
    assert empty.shape == (0, enc.dim) and empty.dtype == np.float32
    enc.normalize = False
    assert not np.allclose(np.linalg.norm(enc.encode(TEXTS), axis=1), 1.0)


def test_errors(tmp_path):
    bad = tmp_path / "bad.gguf"
    raw = open(MODEL, "rb").read()
    bad.write_bytes(raw[:4] + b"\xff\xff\xff\x7f" + raw[8:64])  # version 2^31-1, truncated
    with pytest.raises(lmembed.FormatError) as ei:
        lmembed.Encoder(bad, "causal", "mean")
    assert isinstance(ei.value, lmembed.Error) and isinstance(ei.value, ValueError)
    assert ei.value.file == str(bad) and str(bad) in str(ei.value)
    assert ei.value.offset is None or isinstance(ei.value.offset, int)
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(raw[:100])
    with pytest.raises(lmembed.FormatError) as ei:
        lmembed.Encoder(trunc, "causal", "mean")
    assert ei.value.file == str(trunc) and isinstance(ei.value.offset, int)
    print("FormatError:", ei.value, "| file", ei.value.file, "offset", ei.value.offset)
    with pytest.raises(lmembed.ConfigError, match="valid: eos, mean, latent, multi_layer"):
        lmembed.Encoder(MODEL, "causal", "max")
    with pytest.raises(lmembed.ConfigError, match="causal, bidirectional"):
        lmembed.Encoder(MODEL, "sideways", "mean")
    with pytest.raises(lmembed.ConfigError, match="trainable"):
        lmembed.Encoder(MODEL)  # multi_layer needs its head
    with pytest.raises(lmembed.IoError) as ei:
        lmembed.Encoder(tmp_path / "missing.gguf", "causal", "mean")
    assert isinstance(ei.value, OSError) and "missing.gguf" in str(ei.value)
    enc = lmembed.Encoder(MODEL, "causal", "eos", add_eos=False, eos_check="error")
    with pytest.raises(lmembed.InputError, match="EOS"):
        enc.encode(TEXTS)
    with pytest.raises(lmembed.ShapeError):
        lmembed.evaluate((lmembed.task_texts("sts-b", max_examples=5), np.zeros((3, 4))), "sts-b",
                         max_examples=5)


def test_gil_released_while_encoding():
    enc = lmembed.Encoder(MODEL, "bidirectional", "mean", threads=1)
    texts = [f"{t} number {i}" for i in range(300) for t in TEXTS]
    t0 = time.perf_counter()
    enc.encode(texts)
    alone = time.perf_counter() - t0
    state = {"done": False}

    def work():
        state["e"] = enc.encode(texts)
        state["done"] = True

    th = threading.Thread(target=work)
    ticks = 0
    th.start()
    t0 = time.perf_counter()
    while not state["done"]:  # runs only while the encoding thread has let the GIL go
        ticks += 1
        time.sleep(0.001)
    wall = time.perf_counter() - t0
    th.join()
    print(f"encode {len(texts)} texts: {alone:.2f} s alone; meanwhile the main thread ran "
          f"{ticks} iterations in {wall:.2f} s")
    assert wall > 0.05, "encoding too short to tell"
    # Holding the GIL, the loop would have run once or twice (before and after the call).
    assert ticks >= 20


def test_two_threads_encode_at_once():
    encs = [lmembed.Encoder(MODEL, "causal", "mean", threads=1) for _ in range(2)]
    texts = [f"{t} #{i}" for i in range(100) for t in TEXTS]
    serial = [e.encode(texts) for e in encs]
    out = [None, None]
    shared = lmembed.Encoder(MODEL, "causal", "mean", threads=1)
    res_shared = [None, None]

    def run(i):
        out[i] = encs[i].encode(texts)
        res_shared[i] = shared.encode(texts)  # one encoder from two threads: serialized

    ths = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    for i in range(2):
        np.testing.assert_array_equal(out[i], serial[i])
        np.testing.assert_array_equal(res_shared[i], serial[0])


def test_evaluate_matches_cli(work):
    enc = lmembed.Encoder(MODEL, "causal", "mean", threads=1)
    tasks = ["sts-b", "snli-pairs"]
    recs = lmembed.evaluate(enc, tasks, max_examples=100)
    out = work / "eval.json"
    H.run_cli("eval", "--model", MODEL, "--attention", "causal", "--pooling", "mean",
              "--tasks", ",".join(tasks), "--max-examples", 100, "--threads", 1,
              "--output", out, "--quiet")
    cli = {r["task"]: r for r in json.loads(out.read_text())["records"]}
    for r in recs:
        assert r["value"] == cli[r["task"]]["value"], r["task"]
        assert r["metrics"] == cli[r["task"]]["metrics"]
    # Precomputed embeddings (as `lmembed eval --embeddings --texts`) and a Python callable.
    keys = lmembed.task_texts("sts-b", max_examples=100)
    rows = {}
    for ins, t in keys:
        rows.setdefault(ins, []).append(t)
    emb = {}
    for ins, ts in rows.items():
        for t, v in zip(ts, enc.encode(ts, lmembed.format_instruction(ins))):
            emb[(ins, t)] = v
    E = np.stack([emb[k] for k in keys])
    pre = lmembed.evaluate((keys, E), "sts-b", max_examples=100)[0]
    assert pre["value"] == cli["sts-b"]["value"]
    call = lmembed.evaluate(lambda ts, ins: enc.encode(ts, lmembed.format_instruction(ins)),
                            "sts-b", max_examples=100)[0]
    assert call["value"] == cli["sts-b"]["value"]
    d = lmembed.task_data("sts-b", max_examples=100)
    assert d["category"] == "sts" and len(d["data"]["score"]) == 100


def test_weights_stored_and_f32_match_the_cli(work):
    """weights= is `lmembed embed --weights`: the same rows bit for bit on a Q8_0 model, where
    the two formats differ (8-bit activations vs exact F32) by a cosine near 1."""
    q8 = os.path.join(H.data_dir(), "golden", "models", "stories260K-q8_0.gguf")
    rows = {}
    for w in ("stored", "f32"):
        npy = work / f"q8-{w}.npy"
        H.run_cli("embed", "--model", q8, "--attention", "causal", "--pooling", "mean",
                  "--input", work / "texts.txt", "--output", npy, "--threads", 1, "--weights", w)
        enc = lmembed.Encoder(q8, "causal", "mean", threads=1, weights=w)
        rows[w] = enc.encode(TEXTS)
        np.testing.assert_array_equal(rows[w], np.load(npy))
    cos = (rows["stored"] * rows["f32"]).sum(axis=1)  # rows are L2-normalized
    assert not np.array_equal(rows["stored"], rows["f32"]) and cos.min() > 0.99, cos
    with pytest.raises(lmembed.ConfigError, match="stored or f32"):
        lmembed.Encoder(MODEL, "causal", "mean", weights="q4")


def test_cpu_level_is_the_clis():
    """The module is built portably, as the CLI: both pick their kernels at run time, the same."""
    cli = H.run_cli("--version").stdout
    line = [ln for ln in cli.splitlines() if ln.startswith("cpu: ")]
    assert line, cli
    level = lmembed.cpu_level()
    assert level.split()[0] in ("generic", "avx2", "avx512"), level
    assert level == line[0][len("cpu: "):], (level, line)


def test_stubs_describe_the_api():
    stub = os.path.join(os.path.dirname(lmembed.__file__), "_lmembed.pyi")
    text = open(stub, encoding="utf-8").read()
    for needle in ("class Encoder", "def encode(", "def tokenize(", "def dim(", "def cache(",
                   "def train(", "numpy"):
        assert needle in text, needle
    assert os.path.exists(os.path.join(os.path.dirname(lmembed.__file__), "py.typed"))


def test_sentence_transformer_like():
    from lmembed.st import SentenceTransformerLike
    enc = lmembed.Encoder(MODEL, "bidirectional", "mean", threads=1)
    st = SentenceTransformerLike(enc, prompts={"query": "Query: "})
    e = st.encode(TEXTS, batch_size=2)
    np.testing.assert_array_equal(e, enc.encode(TEXTS))
    one = st.encode(TEXTS[0])
    assert one.shape == (enc.dim,)
    q = st.encode(TEXTS, prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(q, enc.encode(TEXTS, "Query: "), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(st.encode(TEXTS, prompt="Query: "), enc.encode(TEXTS, "Query: "))
    assert st.get_sentence_embedding_dimension() == enc.dim
    sim = st.similarity(e, e)
    np.testing.assert_allclose(np.diag(sim), 1.0, rtol=1e-5)
    try:
        import torch
    except ImportError:
        return
    t = st.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32


if __name__ == "__main__":
    H.run_pytest(__file__)
