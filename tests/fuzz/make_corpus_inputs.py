"""Builds the seed corpus of the fuzz targets for what users feed lmembed (issue 19):
tokenizer_json, gguf_vocab, tokenize, train_data, task_dir, cache, head (tests/fuzz/corpus/).

Every seed comes from a real file in data/: vocabularies shortened from the GGUF vocabularies
(GPT-2 byte-level BPE, llama SPM, stories260K), tokenizer.json files laid out as Hugging Face's
converters do (tests/tokenizer/test_hf_tokenizer_json.py), training lines and task folders cut
from the bundled SNLI / STS-B / Banking77 data, and a cache folder and heads that the lmembed
CLI builds on stories260K. Run from the repository root with Debian's python3:
  /usr/bin/python3 tests/fuzz/make_corpus_inputs.py build/bin/lmembed
Multi-file inputs join their files with '\\x1e' (see fuzz_common.hpp).
"""
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "data")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
sys.path.insert(0, os.path.join(ROOT, "tests", "tokenizer"))
import gguf_meta  # noqa: E402
SEP = b"\x1e"


def seed(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape"))


def gguf_bytes(meta):
    """A metadata-only GGUF v3 (str, [str], [f32], [i32], u32, bool values)."""
    def s(x):
        b = x.encode("utf-8", errors="surrogateescape")
        return struct.pack("<Q", len(b)) + b
    out = [b"GGUF", struct.pack("<IQQ", 3, 0, len(meta))]
    for k, v in meta.items():
        out.append(s(k))
        if isinstance(v, bool):
            out.append(struct.pack("<IB", 7, int(v)))
        elif isinstance(v, int):
            out.append(struct.pack("<II", 4, v))
        elif isinstance(v, str):
            out.append(struct.pack("<I", 8) + s(v))
        elif v and isinstance(v[0], str):
            out.append(struct.pack("<IIQ", 9, 8, len(v)) + b"".join(s(x) for x in v))
        elif v and isinstance(v[0], float):
            out.append(struct.pack("<IIQ", 9, 6, len(v)) + struct.pack(f"<{len(v)}f", *v))
        else:
            out.append(struct.pack("<IIQ", 9, 5, len(v)) + struct.pack(f"<{len(v)}i", *v))
    return b"".join(out)


def short_vocab(meta, n):
    """The first n tokens of a vocabulary and the merges that stay inside it."""
    m = {k: v for k, v in meta.items() if k.startswith("tokenizer.") or k == "general.architecture"}
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        if k in m:
            m[k] = list(m[k][:n])
    keep = set(m["tokenizer.ggml.tokens"])
    if "tokenizer.ggml.merges" in m:
        m["tokenizer.ggml.merges"] = [x for x in m["tokenizer.ggml.merges"]
                                      if all(p in keep for p in x.split(" ", 1))
                                      and x.replace(" ", "") in keep][:200]
    for k in ("bos", "eos", "unknown", "padding", "seperator"):
        key = f"tokenizer.ggml.{k}_token_id"
        if key in m and m[key] >= n:
            m[key] = 0
    return m


def vocab_seeds():
    gpt2 = gguf_meta.read_metadata(os.path.join(DATA, "tokenizer", "ggml-vocab-gpt-2.gguf"))
    spm = gguf_meta.read_metadata(os.path.join(DATA, "tokenizer", "ggml-vocab-llama-spm.gguf"))
    stories = gguf_meta.read_metadata(os.path.join(DATA, "models", "stories260K.gguf"))
    g = short_vocab(gpt2, 400)
    seed("gguf_vocab", "gpt-2-400.gguf", gguf_bytes(g))
    seed("gguf_vocab", "llama-spm-400.gguf", gguf_bytes(short_vocab(spm, 400)))
    seed("gguf_vocab", "stories260K-vocab.gguf", gguf_bytes(short_vocab(stories, 512)))
    # tokenizer.json in the two layouts HF's converters write (byte-level BPE; SPM as BPE).
    tokens = g["tokenizer.ggml.tokens"]
    hf_bpe = {"version": "1.0", "added_tokens": [
        {"id": 0, "content": tokens[0], "special": True, "normalized": False}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True},
        "model": {"type": "BPE", "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": g["tokenizer.ggml.merges"]}}
    seed("tokenizer_json", "gpt-2-400.json", json.dumps(hf_bpe, ensure_ascii=False))
    s = short_vocab(stories, 512)
    st = s["tokenizer.ggml.tokens"]
    hf_spm = {"version": "1.0", "added_tokens": [
        {"id": i, "content": t, "special": True, "normalized": False}
        for i, t in enumerate(st) if s["tokenizer.ggml.token_type"][i] in (2, 3)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": {t: i for i, t in enumerate(st)},
                  "merges": [f"{a} {b}" for a in st[259:300] for b in st[259:300]
                             if a + b in set(st)][:300]}}
    seed("tokenizer_json", "stories260K-spm.json", json.dumps(hf_spm, ensure_ascii=False))
    cfg = json.dumps({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                      "eos_token": {"content": "</s>"}})
    seed("tokenizer_json", "stories260K-spm-with-config.json",
         json.dumps(hf_spm, ensure_ascii=False).encode() + SEP + cfg.encode())
    # Encoder inputs: the vocabulary tests' strings, one seed per vocabulary.
    for i, name in enumerate(("gpt-2", "llama-spm", "llama-spm")):
        raw = open(os.path.join(DATA, "tokenizer", f"ggml-vocab-{name}.gguf.inp"), "rb").read()
        texts = [t.strip(b"\n") for t in raw.split(b"__ggml_vocab_test__")]
        texts = [t for t in texts if t][:12]
        for j, t in enumerate(texts):
            seed("tokenize", f"{i}-{name}-{j:02d}.txt", bytes([i]) + t)
    seed("tokenize", "0-invalid-utf8.txt", b"\x00caf\xc3 \xff\xfe \xed\xa0\x80")
    seed("tokenize", "4-special.txt", b"\x04<s>Hello</s> <|endoftext|>")


def data_seeds():
    snli = os.path.join(DATA, "datasets", "snli_dev")
    s1 = open(os.path.join(snli, "s1.dev"), encoding="utf-8").read().splitlines()[:6]
    s2 = open(os.path.join(snli, "s2.dev"), encoding="utf-8").read().splitlines()[:6]
    lines = [json.dumps({"query": s1[i], "positive": s2[i], "negative": s2[(i + 1) % 6]})
             for i in range(6)]
    seed("train_data", "snli-triplets.jsonl", "\n".join(lines) + "\n")
    seed("train_data", "forms.jsonl", "\n".join([
        json.dumps({"query": s1[0], "postive": s2[0]}),
        json.dumps({"query": s1[1], "positive": s2[1], "negative": [s2[2], s2[3]]}),
        json.dumps({"query": s1[2], "positive": s2[2], "query_instruction": "Retrieve: ",
                    "document_instruction": ""}),
        "", "  ", '{"query": "caf\\u00e9", "positive": "\\ud83d\\ude00"}']) + "\r\n")
    rows = list(csv.reader(open(os.path.join(DATA, "datasets", "stsbenchmark", "sts-dev.csv"),
                                encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))[:5]
    tsv = "sentence1\tsentence2\tscore\n" + "".join(f"{r[5]}\t{r[6]}\t{r[4]}\n" for r in rows)
    seed("task_dir", "0-sts-tsv", b"\x00" + tsv.encode())
    sts_jsonl = "".join(json.dumps({"sentence1": r[5], "sentence2": r[6], "score": float(r[4])})
                        + "\n" for r in rows)
    seed("task_dir", "1-sts-jsonl", b"\x01" + sts_jsonl.encode())
    pairs = "".join(json.dumps({"sentence1": s1[i], "sentence2": s2[i], "label": i % 2}) + "\n"
                    for i in range(4))
    seed("task_dir", "1-pairs", b"\x01" + pairs.encode())
    rerank = json.dumps({"query": s1[0], "positive": [s2[0]], "negative": [s2[1], s2[2]]}) + "\n"
    seed("task_dir", "1-reranking", b"\x01" + rerank.encode())
    bank = list(csv.DictReader(open(os.path.join(DATA, "datasets", "banking77", "test.csv"),
                                    encoding="utf-8", newline="")))[:6]
    clu = "".join(json.dumps({"text": r["text"], "label": r["category"]}) + "\n" for r in bank)
    seed("task_dir", "1-clustering", b"\x01" + clu.encode())
    q = "".join(json.dumps({"_id": f"q{i}", "text": s1[i]}) + "\n" for i in range(3))
    c = "".join(json.dumps({"_id": f"d{i}", "title": "", "text": s2[i]}) + "\n" for i in range(4))
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3))
    for k in (2, 3):
        seed("task_dir", f"{k}-retrieval", bytes([k]) + SEP.join(x.encode() for x in (q, c, qrels)))
    seed("task_dir", "4-classification", b"\x04" + clu.encode() + SEP + clu.encode())
    meta = json.dumps({"name": "named", "category": "clustering", "instruction": "Cluster"})
    seed("task_dir", "5-named", b"\x05" + meta.encode() + SEP + clu.encode())
    seed("task_dir", "7-named-retrieval", b"\x07" + SEP.join(x.encode() for x in (
        json.dumps({"category": "retrieval"}), q, c, qrels)))


def cli_seeds(cli):
    model = os.path.join(DATA, "models", "stories260K.gguf")
    tmp = tempfile.mkdtemp()
    try:
        train = os.path.join(tmp, "train.jsonl")
        with open(train, "w") as f:
            for i in range(3):
                f.write(json.dumps({"query": f"a cat {i}", "positive": f"the mat {i}"}) + "\n")
        for capture in ("latent", "multi_layer"):
            out = os.path.join(tmp, capture)
            subprocess.run([cli, "cache", "--model", model, "--capture", capture, "--data", train,
                            "--out", out, "--threads", "1"], check=True, capture_output=True)
            parts = [open(os.path.join(out, n), "rb").read()
                     for n in ("index.json", "texts.jsonl", "examples.jsonl", "shard-00000.bin")]
            seed("cache", f"{capture}-fixed-checksums", b"\x01" + SEP.join(parts))
            seed("cache", f"{capture}-verify", b"\x03" + SEP.join(parts))
            head = os.path.join(tmp, capture + ".safetensors")
            subprocess.run([cli, "train", "--cache", out, "--pooling", capture, "--out", head,
                            "--steps", "0", "--latents", "2", "--heads", "2", "--head-dim", "8",
                            "--ff-mult", "1"], check=True, capture_output=True)
            shutil.copy(head, os.path.join(OUT, "head", f"stories260K-{capture}-small.safetensors")
                        if os.path.isdir(os.path.join(OUT, "head")) else
                        (os.makedirs(os.path.join(OUT, "head")) or
                         os.path.join(OUT, "head", f"stories260K-{capture}-small.safetensors")))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    vocab_seeds()
    data_seeds()
    if len(sys.argv) > 1:
        cli_seeds(sys.argv[1])
    for t in ("tokenizer_json", "gguf_vocab", "tokenize", "train_data", "task_dir", "cache",
              "head"):
        d = os.path.join(OUT, t)
        if os.path.isdir(d):
            sizes = [os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)]
            print(f"{t}: {len(sizes)} seeds, largest {max(sizes)} bytes")
