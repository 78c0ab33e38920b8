#!/usr/bin/env python3
"""The lmembed CLI against hostile input (issue 19): every subcommand with bad paths, truncated
and wrong-format files, empty input, a 1 MB line, invalid UTF-8, NUL bytes, NaN/Inf in .npy,
heads of another pooling or width, conflicting and unknown flags, out-of-range numbers.

Each case asserts:
  - the exit status (2 for a usage error, else non-zero; a few "accept" cases expect 0),
  - no signal, abort, uncaught exception or sanitizer report,
  - exactly one line `lmembed <cmd>: error: ...` on stderr, naming what is at fault (the file,
    the flag or the line: every case lists the substrings the line must hold),
  - no output file under its final name (and no temp file left beside it).
Prints a table (case -> message) and writes it to $LMEMBED_BINARY_DIR/cli_hostile_table.md.
Runs on stories260K (data/models), so the whole catalogue takes seconds. LMEMBED_CLI_WRAPPER
(e.g. "valgrind -q") prefixes every command; an ASan-built CLI is used as it is.
"""
import fcntl
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

import clitest

CLI = clitest.cli_or_skip()
DATA = clitest.data_dir()
MODEL = os.path.join(DATA, "models", "stories260K.gguf")
TINY_GGUF = os.path.join(DATA, "golden", "models", "tiny-llama.gguf")
TINY_HF = os.path.join(DATA, "golden", "models", "tiny-llama-hf")  # no tokenizer.json
WRAP = shlex.split(os.environ.get("LMEMBED_CLI_WRAPPER", ""))
OUT_TABLE = os.path.join(os.environ.get("LMEMBED_BINARY_DIR", "."), "cli_hostile_table.md")

BAD_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
               "runtime error:", "terminate called", "Aborted", "Segmentation fault",
               "core dumped", "std::bad_alloc")

tmp = tempfile.mkdtemp(prefix="lmembed_hostile_")
env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive",
           ASAN_OPTIONS="detect_leaks=0:abort_on_error=0")


def p(*parts):
    return os.path.join(tmp, *parts)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def run(args, stdin=None, timeout=120):
    return subprocess.run(WRAP + [CLI] + args, input=stdin, capture_output=True, env=env,
                          timeout=timeout)


def must(args, what):
    r = run(args)
    if r.returncode != 0:
        print(f"setup failed ({what}): {args}\n{r.stderr.decode(errors='replace')}")
        sys.exit(1)


# ------------------------------------------------------------------ fixtures (good files)
texts = write(p("texts.txt"), "hello world\nthe cat sat on the mat\n")
ids = write(p("ids.txt"), "1 50 60\n1 70 2\n")
train_jsonl = write(p("train.jsonl"), "".join(
    json.dumps({"query": f"q {i} cat", "positive": f"p {i} mat", "negative": f"n {i} dog"}) + "\n"
    for i in range(6)))
must(["cache", "--model", MODEL, "--capture", "latent", "--data", train_jsonl, "--out",
      p("cache_latent"), "--threads", "1"], "latent cache")
must(["cache", "--model", MODEL, "--capture", "multi_layer", "--data", train_jsonl, "--out",
      p("cache_ml"), "--threads", "1"], "multi_layer cache")
must(["cache", "--model", TINY_GGUF, "--capture", "latent", "--data", train_jsonl, "--out",
      p("cache_tiny"), "--threads", "1"], "tiny-llama cache")
for cache, pooling, head in (("cache_latent", "latent", "latent.safetensors"),
                             ("cache_ml", "multi_layer", "ml.safetensors"),
                             ("cache_tiny", "latent", "tiny_latent.safetensors")):
    must(["train", "--cache", p(cache), "--pooling", pooling, "--out", p(head), "--steps", "0"],
         head)
latent_head, ml_head, tiny_head = p("latent.safetensors"), p("ml.safetensors"), p(
    "tiny_latent.safetensors")
with open(MODEL, "rb") as f:
    model_bytes = f.read()
with open(latent_head, "rb") as f:
    head_bytes = f.read()

# Bad files, one of each kind.
missing = p("does", "not", "exist")
a_dir = p("a_dir")
os.makedirs(a_dir)
under_file = os.path.join(texts, "x")  # ENOTDIR: a path through a regular file
empty = write(p("empty.txt"), b"")
trunc_gguf = write(p("trunc.gguf"), model_bytes[:100])
trunc_gguf_half = write(p("trunc_half.gguf"), model_bytes[:len(model_bytes) // 2])
text_as_gguf = write(p("text.gguf"), "this is not a model\n" * 10)
trunc_head = write(p("trunc.safetensors"), head_bytes[:len(head_bytes) // 2])
head_hdr_only = write(p("hdr.safetensors"), head_bytes[:12])
npy_as_head = p("as_head.npy")
np.save(npy_as_head, np.zeros((2, 2), np.float32))
bad_json = write(p("bad.json"), '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [')
nul_json = write(p("nul.json"), b'{"model":\x00 {"type": "BPE"}}')
not_bpe_json = write(p("wp.json"), json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
big_line = write(p("big_line.txt"), "a" * (1 << 20) + "\n")
bad_utf8 = write(p("bad_utf8.txt"), b"caf\xc3 \xff\xfe broken \xed\xa0\x80 surrogate\n")
nul_text = write(p("nul.txt"), b"hello\x00world\n")
ids_word = write(p("ids_word.txt"), "1 2 three\n")
ids_neg = write(p("ids_neg.txt"), "1 -5 2\n")
ids_big = write(p("ids_big.txt"), "1 99999 2\n")
ids_empty_line = write(p("ids_empty.txt"), "1 2\n\n3 4\n")

jsonl_syntax = write(p("syntax.jsonl"), '{"query": "a", "positive": "b"}\n{"query": oops}\n')
jsonl_missing_key = write(p("nokey.jsonl"), '{"query": "a"}\n')
jsonl_nul = write(p("nul.jsonl"), b'{"query": "a\x00", "positive": "b"}\n{\x00}\n')
jsonl_bad_utf8 = write(p("utf8.jsonl"), b'{"query": "caf\xc3", "positive": "b\xff"}\n')
jsonl_big = write(p("big.jsonl"), "{" + "x" * (1 << 20) + "\n")
jsonl_array = write(p("array.jsonl"), '["query", "positive"]\n')
jsonl_blank = write(p("blank.jsonl"), "\n  \n\t\n")

# Caches with damage.
shutil.copytree(p("cache_latent"), p("cache_bad_index"))
write(p("cache_bad_index", "index.json"), '{"format": "lmembed-cache", "shards": [')
shutil.copytree(p("cache_latent"), p("cache_trunc_shard"))
shard = sorted(f for f in os.listdir(p("cache_trunc_shard")) if f.startswith("shard-"))[0]
with open(p("cache_trunc_shard", shard), "r+b") as f:
    f.truncate(40)
shutil.copytree(p("cache_latent"), p("cache_no_index"))
os.remove(p("cache_no_index", "index.json"))

# Task folders.
write(p("task_header", "test.tsv"), "sentence1\tsentence2\tscore\n")
write(p("task_nan", "test.tsv"), "a\tb\t1\nc\td\tnan\n")
write(p("task_cols", "test.tsv"), "a\tb\t1\nonly one column\n")
os.makedirs(p("task_empty"))
write(p("task_badjson", "test.jsonl"), '{"text": "a", "label": "x"}\n{"text": }\n')
write(p("task_cat", "task.json"), '{"category": "astrology"}')
write(p("task_cat", "test.jsonl"), '{"text": "a", "label": "x"}\n')
write(p("task_ret", "queries.jsonl"), '{"_id": "q1", "text": "a"}\n')
write(p("task_ret", "corpus.jsonl"), "")
write(p("task_ret", "qrels", "test.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
write(p("task_pair", "test.jsonl"), '{"sentence1": "a", "sentence2": "b", "label": 7}\n')
write(p("task_inf", "test.jsonl"),
      '{"sentence1": "a", "sentence2": "b", "score": 1}\n'
      '{"sentence1": "c", "sentence2": "d", "score": 1e999}\n')

# Precomputed embeddings for `eval --embeddings`.
texts_jsonl = p("eval_texts.jsonl")
must(["eval", "--dump-texts", texts_jsonl, "--tasks", "sts-b", "--max-examples", "20",
      "--data-dir", DATA], "dump texts")
n_texts = sum(1 for _ in open(texts_jsonl, encoding="utf-8"))
good = np.random.default_rng(0).standard_normal((n_texts, 8)).astype(np.float32)
npy_nan, npy_inf, npy_1d, npy_short, npy_trunc = (p(n) for n in (
    "nan.npy", "inf.npy", "1d.npy", "short.npy", "trunc.npy"))
bad = good.copy()
bad[3, 2] = np.nan
np.save(npy_nan, bad)
bad = good.copy()
bad[5, 0] = np.inf
np.save(npy_inf, bad)
np.save(npy_1d, good[:, 0].copy())
np.save(npy_short, good[: n_texts // 2])
np.save(p("good.npy"), good)
with open(p("good.npy"), "rb") as f:
    write(npy_trunc, f.read()[:200])
npy_i32 = p("i32.npy")
np.save(npy_i32, np.zeros((n_texts, 8), np.int32))

# ------------------------------------------------------------------ the catalogue
cases = []  # (name, cmd args, expected rc, substrings of the error line, outputs, stdin)


def case(name, args, rc=1, has=(), outputs=(), stdin=None):
    cases.append((name, args, rc, tuple(has), tuple(outputs), stdin))


out_npy = p("out", "e.npy")
os.makedirs(p("out"))
E = ["embed", "--model", MODEL]

# tokenize
case("tokenize: unknown flag", ["tokenize", "--model", MODEL, "--bogus"], 2, ["--bogus"])
case("tokenize: --model and --tokenizer", ["tokenize", "--model", MODEL, "--tokenizer",
                                           bad_json, "x"], 2, ["--model", "--tokenizer"])
case("tokenize: option without value", ["tokenize", "--model"], 2, ["--model"])
case("tokenize: missing model", ["tokenize", "--model", missing, "x"], 1, [missing])
case("tokenize: model is an empty folder", ["tokenize", "--model", a_dir, "x"], 1,
     [a_dir, "tokenizer.json"])
case("tokenize: model path through a file", ["tokenize", "--model", under_file, "x"], 1,
     [under_file])
case("tokenize: truncated GGUF (100 bytes)", ["tokenize", "--model", trunc_gguf, "x"], 1,
     [trunc_gguf])
case("tokenize: text file as GGUF", ["tokenize", "--model", text_as_gguf, "x"], 1,
     [text_as_gguf])
case("tokenize: tokenizer.json truncated", ["tokenize", "--tokenizer", bad_json, "x"], 1,
     [bad_json])
case("tokenize: tokenizer.json with a NUL byte", ["tokenize", "--tokenizer", nul_json, "x"], 1,
     [nul_json])
case("tokenize: tokenizer.json of a WordPiece model", ["tokenize", "--tokenizer", not_bpe_json,
                                                       "x"], 1, [not_bpe_json, "WordPiece"])
case("tokenize: tokenizer is a folder", ["tokenize", "--tokenizer", a_dir, "x"], 1, [a_dir])
case("tokenize: HF folder without tokenizer.json", ["tokenize", "--model", TINY_HF, "x"], 1,
     ["tokenizer.json"])

# embed
case("embed: no --input", E + ["--output", out_npy], 2, ["--input"], [out_npy])
case("embed: unexpected positional", E + ["--input", texts, "--output", out_npy, "extra"], 2,
     ["extra"], [out_npy])
case("embed: missing input", E + ["--input", missing, "--output", out_npy], 1, [missing],
     [out_npy])
case("embed: input is a folder", E + ["--input", a_dir, "--output", out_npy], 1, [a_dir],
     [out_npy])
case("embed: empty input", E + ["--input", empty, "--output", out_npy], 1, [empty, "no"],
     [out_npy])
case("embed: empty stdin", E + ["--input", "-", "--output", out_npy], 1, ["stdin"], [out_npy],
     b"")
case("embed: 1 MB single line", E + ["--input", big_line, "--output", out_npy], 1,
     [big_line, "text 1 of 1", "context", "--truncate"], [out_npy])
case("embed: 3000 ids on one line", E + ["--ids", "--input", write(
    p("ids_long.txt"), " ".join(["5"] * 3000) + "\n"), "--output", out_npy], 1,
    [p("ids_long.txt") + ":1", "3000", "--truncate"], [out_npy])
case("embed: missing model", ["embed", "--model", missing, "--input", texts, "--output",
                              out_npy], 1, [missing], [out_npy])
case("embed: truncated GGUF (half)", ["embed", "--model", trunc_gguf_half, "--input", texts,
                                      "--output", out_npy], 1, [trunc_gguf_half], [out_npy])
case("embed: text file as GGUF", ["embed", "--model", text_as_gguf, "--input", texts,
                                  "--output", out_npy], 1, [text_as_gguf], [out_npy])
case("embed: HF folder without tokenizer.json, texts", ["embed", "--model", TINY_HF, "--input",
                                                        texts, "--output", out_npy], 1,
     ["tokenizer.json"], [out_npy])
case("embed: bad token id", E + ["--ids", "--input", ids_word, "--output", out_npy], 1,
     [ids_word + ":1", "three"], [out_npy])
case("embed: negative token id", E + ["--ids", "--input", ids_neg, "--output", out_npy], 1,
     [ids_neg + ":1", "-5"], [out_npy])
case("embed: token id past the vocabulary", E + ["--ids", "--input", ids_big, "--output",
                                                 out_npy], 1, [ids_big + ":1", "99999"],
     [out_npy])
case("embed: empty line of ids", E + ["--ids", "--input", ids_empty_line, "--output", out_npy],
     1, [ids_empty_line + ":2"], [out_npy])
case("embed: unknown pooling", E + ["--pooling", "max", "--input", texts, "--output", out_npy],
     2, ["max", "--pooling"], [out_npy])
case("embed: unknown attention", E + ["--attention", "sideways", "--input", texts, "--output",
                                      out_npy], 2, ["sideways", "--attention"], [out_npy])
case("embed: unknown device", E + ["--device", "tpu", "--input", texts, "--output", out_npy], 2,
     ["tpu"], [out_npy])
case("embed: latent without --head", E + ["--pooling", "latent", "--input", texts, "--output",
                                          out_npy], 1, ["--head"], [out_npy])
case("embed: eos with --head", E + ["--head", latent_head, "--input", texts, "--output",
                                    out_npy], 1, ["--head", "eos"], [out_npy])
case("embed: GGUF model as --head", E + ["--pooling", "latent", "--head", MODEL, "--input",
                                         texts, "--output", out_npy], 1,
     [MODEL, "not a safetensors file", "GGUF"], [out_npy])
case("embed: .npy as --head", E + ["--pooling", "latent", "--head", npy_as_head, "--input",
                                   texts, "--output", out_npy], 1,
     [npy_as_head, "not a safetensors file", ".npy"], [out_npy])
case("embed: truncated head", E + ["--pooling", "latent", "--head", trunc_head, "--input",
                                   texts, "--output", out_npy], 1, [trunc_head], [out_npy])
case("embed: head of 12 bytes", E + ["--pooling", "latent", "--head", head_hdr_only, "--input",
                                     texts, "--output", out_npy], 1, [head_hdr_only], [out_npy])
case("embed: missing head", E + ["--pooling", "latent", "--head", missing, "--input", texts,
                                 "--output", out_npy], 1, [missing], [out_npy])
case("embed: head is a folder", E + ["--pooling", "latent", "--head", a_dir, "--input", texts,
                                     "--output", out_npy], 1, [a_dir], [out_npy])
case("embed: head of another pooling", E + ["--pooling", "latent", "--head", ml_head, "--input",
                                            texts, "--output", out_npy], 1,
     ["multi_layer", "latent"], [out_npy])
case("embed: head of another width", E + ["--pooling", "latent", "--head", tiny_head,
                                          "--input", texts, "--output", out_npy], 1,
     [tiny_head, "width", "256", "64"], [out_npy])
case("embed: --ids with --instruction", E + ["--ids", "--instruction", "x", "--input", ids,
                                             "--output", out_npy], 2, ["--instruction", "--ids"],
     [out_npy])
case("embed: --ids with --eos", E + ["--ids", "--eos", "--input", ids, "--output", out_npy], 2,
     ["--eos", "--ids"], [out_npy])
case("embed: --threads not a number", E + ["--threads", "many", "--input", texts, "--output",
                                           out_npy], 2, ["--threads", "many"], [out_npy])
case("embed: --batch-tokens 0", E + ["--batch-tokens", "0", "--input", texts, "--output",
                                     out_npy], 2, ["--batch-tokens"], [out_npy])
case("embed: --batch-tokens overflows", E + ["--batch-tokens", "99999999999999999999",
                                             "--input", texts, "--output", out_npy], 2,
     ["--batch-tokens"], [out_npy])
case("embed: --pool-from -1", E + ["--pool-from", "-1", "--input", texts, "--output", out_npy],
     2, ["--pool-from"], [out_npy])
case("embed: flag with a value", E + ["--eos=yes", "--input", texts, "--output", out_npy], 2,
     ["--eos"], [out_npy])
case("embed: output folder missing", E + ["--input", texts, "--output", p("nodir", "e.npy")], 1,
     [p("nodir", "e.npy") + ":"], [p("nodir", "e.npy")])
case("embed: output is a folder", E + ["--input", texts, "--output", a_dir], 1, [a_dir])

# data
case("data: no converter", ["data"], 2, ["snli"])
case("data: unknown converter", ["data", "mnli"], 2, ["mnli"])
case("data check: missing file", ["data", "check", missing], 1, [missing])
case("data check: a folder", ["data", "check", a_dir], 1, [a_dir])
case("data check: JSON syntax error", ["data", "check", jsonl_syntax], 1,
     [jsonl_syntax, "line 2"])
case("data check: missing key", ["data", "check", jsonl_missing_key], 1,
     [jsonl_missing_key, "line 1", "positive"])
case("data check: NUL bytes", ["data", "check", jsonl_nul], 1, [jsonl_nul, "line 1"])
case("data check: invalid UTF-8", ["data", "check", jsonl_bad_utf8], 1,
     [jsonl_bad_utf8, "line 1", "UTF-8"])
case("data check: 1 MB malformed line", ["data", "check", jsonl_big], 1, [jsonl_big, "line 1"])
case("data check: a JSON array", ["data", "check", jsonl_array], 1, [jsonl_array, "line 1"])
case("data check: only blank lines", ["data", "check", jsonl_blank], 1, [jsonl_blank, "no"])
case("data check: empty file", ["data", "check", empty], 1, [empty, "no"])
case("data check: lone surrogate escape", ["data", "check", write(
    p("surrogate.jsonl"), '{"query": "a\\ud800", "positive": "b"}\n')], 1,
    [p("surrogate.jsonl"), "line 1"])
case("data check: --limit not a number", ["data", "check", train_jsonl, "--limit", "ten"], 2,
     ["--limit", "ten"])
case("data stsb: missing --in", ["data", "stsb", "--in", missing, "--out", p("o.jsonl")], 1,
     [missing], [p("o.jsonl")])
case("data stsb: --min-score not a number", ["data", "stsb", "--in", texts, "--min-score",
                                             "high", "--out", p("o.jsonl")], 2,
     ["--min-score", "high"], [p("o.jsonl")])
case("data stsb: not an STS-B file", ["data", "stsb", "--in", texts, "--out", p("o.jsonl")], 1,
     [texts], [p("o.jsonl")])
case("data snli: --in is a file", ["data", "snli", "--in", texts, "--out", p("o.jsonl")], 1,
     [texts], [p("o.jsonl")])

# cache
C = ["cache", "--model", MODEL, "--capture", "latent", "--data", train_jsonl]
case("cache: unknown capture", ["cache", "--model", MODEL, "--capture", "everything", "--data",
                                train_jsonl, "--out", p("c1")], 2, ["everything", "--capture"],
     [p("c1", "index.json")])
case("cache: --dtype bf16", C + ["--dtype", "bf16", "--out", p("c1")], 2, ["--dtype"],
     [p("c1", "index.json")])
case("cache: --shard-kb 0", C + ["--shard-kb", "0", "--out", p("c1")], 2, ["--shard-kb"],
     [p("c1", "index.json")])
case("cache: missing --out", C, 2, ["--out"])
case("cache: missing data", ["cache", "--model", MODEL, "--capture", "latent", "--data",
                             missing, "--out", p("c1")], 1, [missing], [p("c1", "index.json")])
case("cache: empty data", ["cache", "--model", MODEL, "--capture", "latent", "--data", empty,
                           "--out", p("c1")], 1, [empty, "no"], [p("c1", "index.json")])
case("cache: malformed data line", ["cache", "--model", MODEL, "--capture", "latent", "--data",
                                    jsonl_syntax, "--out", p("c1")], 1,
     [jsonl_syntax, "line 2"], [p("c1", "index.json")])
case("cache: truncated model", ["cache", "--model", trunc_gguf_half, "--capture", "latent",
                                "--data", train_jsonl, "--out", p("c1")], 1, [trunc_gguf_half],
     [p("c1", "index.json")])
case("cache: --out is a file", C + ["--out", texts], 1, [texts])

# train
T = ["train", "--pooling", "latent", "--out", p("h.safetensors")]
H = [p("h.safetensors")]
case("train: missing cache", ["train", "--cache", missing, "--pooling", "latent", "--out",
                              p("h.safetensors")], 1, [missing], H)
case("train: cache folder without index", T + ["--cache", p("cache_no_index")], 1,
     [p("cache_no_index")], H)
case("train: cache index truncated", T + ["--cache", p("cache_bad_index")], 1,
     [p("cache_bad_index", "index.json")], H)
case("train: cache shard truncated", T + ["--cache", p("cache_trunc_shard"), "--steps", "2"], 1,
     [p("cache_trunc_shard", shard)], H)
case("train: cache is a file", T + ["--cache", texts], 1, [texts], H)
case("train: unknown pooling", ["train", "--cache", p("cache_latent"), "--pooling", "max",
                                "--out", p("h.safetensors")], 2, ["max", "--pooling"], H)
case("train: pooling does not match the cache", ["train", "--cache", p("cache_latent"),
                                                  "--pooling", "multi_layer", "--out",
                                                  p("h.safetensors"), "--steps", "2"], 1,
     ["multi_layer", "latent"], H)
case("train: --steps -1", T + ["--cache", p("cache_latent"), "--steps", "-1"], 2, ["--steps"], H)
case("train: --lr 0", T + ["--cache", p("cache_latent"), "--lr", "0"], 2, ["--lr"], H)
case("train: --lr nan", T + ["--cache", p("cache_latent"), "--lr", "nan"], 2, ["--lr"], H)
case("train: --lr inf", T + ["--cache", p("cache_latent"), "--lr", "inf"], 2, ["--lr"], H)
case("train: --batch abc", T + ["--cache", p("cache_latent"), "--batch", "abc"], 2,
     ["--batch", "abc"], H)
case("train: --resume missing", T + ["--cache", p("cache_latent"), "--steps", "2", "--resume",
                                     missing], 1, [missing], H)
case("train: --out under a file", ["train", "--cache", p("cache_latent"), "--pooling", "latent",
                                   "--out", os.path.join(texts, "h.safetensors"), "--steps",
                                   "0"], 1, [texts, "--out"])

# eval
EV = ["eval", "--embeddings"]
case("eval: task test.tsv with only a header", ["eval", "--model", MODEL, "--attention",
                                                "causal", "--pooling", "eos", "--task-dir",
                                                p("task_header")], 1,
     [p("task_header", "test.tsv"), "no sentence pairs"])
case("eval: task test.tsv NaN score", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir",
                                       p("task_nan")], 1,
     [p("task_nan", "test.tsv"), "line 2", "nan"], [p("d.jsonl")])
case("eval: task test.tsv 1 column", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir",
                                      p("task_cols")], 1, [p("task_cols", "test.tsv"), "line 2"],
     [p("d.jsonl")])
case("eval: task folder missing", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir", missing],
     1, [missing], [p("d.jsonl")])
case("eval: task folder empty", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir",
                                 p("task_empty")], 1, [p("task_empty"), "no task files"],
     [p("d.jsonl")])
case("eval: task test.jsonl syntax", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir",
                                      p("task_badjson")], 1,
     [p("task_badjson", "test.jsonl"), "2"], [p("d.jsonl")])
case("eval: task.json unknown category", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir",
                                          p("task_cat")], 1, ["astrology"], [p("d.jsonl")])
case("eval: retrieval with an empty corpus", ["eval", "--dump-texts", p("d.jsonl"),
                                              "--task-dir", p("task_ret")], 1,
     [p("task_ret", "corpus.jsonl"), "no documents"], [p("d.jsonl")])
case("eval: pair label 7", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir", p("task_pair")],
     1, [p("task_pair", "test.jsonl"), "record 1"], [p("d.jsonl")])
case("eval: STS score 1e999", ["eval", "--dump-texts", p("d.jsonl"), "--task-dir",
                               p("task_inf")], 1, [p("task_inf", "test.jsonl") + ":2"],
     [p("d.jsonl")])
case("eval: unknown bundled task", ["eval", "--dump-texts", p("d.jsonl"), "--tasks", "glue"], 1,
     ["glue"], [p("d.jsonl")])
case("eval: --model and --embeddings", ["eval", "--model", MODEL, "--embeddings", npy_nan,
                                        "--texts", texts_jsonl], 2, ["--model", "--embeddings"])
case("eval: --model without --pooling", ["eval", "--model", MODEL, "--attention", "causal"], 2,
     ["--pooling"])
case("eval: --batch-size 0", ["eval", "--model", MODEL, "--attention", "causal", "--pooling",
                              "eos", "--batch-size", "0"], 2, ["--batch-size"])
case("eval: --max-examples -1", ["eval", "--dump-texts", p("d.jsonl"), "--max-examples", "-1"],
     2, ["--max-examples"], [p("d.jsonl")])
S = ["--texts", texts_jsonl, "--tasks", "sts-b", "--max-examples", "20", "--data-dir", DATA,
     "--quiet"]
case("eval: NaN in embeddings", EV + [npy_nan] + S + ["--output", p("r.json")], 1,
     [npy_nan, "row 3"], [p("r.json")])
case("eval: Inf in embeddings", EV + [npy_inf] + S + ["--output", p("r.json")], 1,
     [npy_inf, "row 5"], [p("r.json")])
case("eval: 1-D embeddings", EV + [npy_1d] + S + ["--output", p("r.json")], 1, [npy_1d, "2-D"],
     [p("r.json")])
case("eval: fewer embeddings than texts", EV + [npy_short] + S + ["--output", p("r.json")], 1,
     [str(n_texts // 2), str(n_texts)], [p("r.json")])
case("eval: truncated .npy", EV + [npy_trunc] + S + ["--output", p("r.json")], 1, [npy_trunc],
     [p("r.json")])
case("eval: GGUF as .npy", EV + [MODEL] + S + ["--output", p("r.json")], 1, [MODEL],
     [p("r.json")])
case("eval: int32 embeddings", EV + [npy_i32] + S + ["--output", p("r.json")], 1,
     [npy_i32, "floating point"],
     [p("r.json")])
case("eval: --texts missing", EV + [p("good.npy"), "--texts", missing, "--tasks", "sts-b"], 1,
     [missing])
case("eval: --texts not JSONL", EV + [p("good.npy"), "--texts", texts, "--tasks", "sts-b"], 1,
     [texts, "1"])
case("eval: --output folder missing", EV + [p("good.npy")] + S + ["--output",
                                                                  p("nodir", "r.json")], 1,
     [p("nodir", "r.json") + ":"], [p("nodir", "r.json")])

# compare (the command is the "compare" engineer's; these only check its front end)
case("compare: no --out", ["compare", "--model", MODEL, "--train", train_jsonl], 2, ["--out"])
case("compare: --alpha 2", ["compare", "--model", MODEL, "--train", train_jsonl, "--out",
                            p("cmp"), "--alpha", "2"], 2, ["--alpha"],
     [p("cmp", "results.json")])
case("compare: unknown design", ["compare", "--model", MODEL, "--train", train_jsonl, "--out",
                                 p("cmp"), "--designs", "best"], 1, ["best"],
     [p("cmp", "results.json")])
case("compare: --report-only on a missing folder", ["compare", "--report-only", "--out",
                                                    missing], 1, [missing])
case("cache: unknown --weights", C + ["--out", p("wcache"), "--weights", "q4"], 2,
     ["--weights", "q4", "stored or f32"], [p("wcache", "index.json")])
case("eval: unknown --weights", ["eval", "--model", MODEL, "--attention", "causal", "--pooling",
                                 "mean", "--tasks", "sts-b", "--weights", "int8"], 2,
     ["--weights", "int8"])
case("compare: unknown --weights", ["compare", "--model", MODEL, "--train", train_jsonl, "--out",
                                    p("wcmp"), "--weights", "bf16"], 2, ["--weights", "bf16"],
     [p("wcmp", "results.json")])
case("compare: --bootstrap 0", ["compare", "--model", MODEL, "--train", train_jsonl, "--out",
                                p("cmp"), "--bootstrap", "0"], 2, ["--bootstrap"],
     [p("cmp", "results.json")])

# two writers: a folder another process holds the advisory lock of (as a running `lmembed cache`
# or `lmembed train` does) is refused, and nothing is written into it
locked_cache, locked_train, locked_cmp = p("locked_cache"), p("locked_train"), p("locked_cmp")
held = []
for d in (locked_cache, locked_train, locked_cmp):
    os.makedirs(d)
    fd = os.open(d, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held.append(fd)
case("cache: output folder locked by another writer", C + ["--out", locked_cache], 1,
     [locked_cache, "another process"], [p("locked_cache", "index.json")])
case("train: output folder locked by another writer",
     ["train", "--cache", p("cache_latent"), "--pooling", "latent", "--out",
      p("locked_train", "h.safetensors"), "--steps", "2"], 1, [locked_train, "another process"],
     [p("locked_train", "h.safetensors"), p("locked_train", "loss.csv")])
case("compare: output folder locked by another writer",
     ["compare", "--model", MODEL, "--train", train_jsonl, "--out", locked_cmp], 1,
     [locked_cmp, "another process", "lmembed compare"],
     [p("locked_cmp", "results.json"), p("locked_cmp", "designs"), p("locked_cmp", "cache")])
case("compare --report-only: output folder locked by another writer",
     ["compare", "--out", locked_cmp, "--report-only"], 1, [locked_cmp, "another process"],
     [p("locked_cmp", "report.html")])

# the command itself
case("unknown command", ["summon"], 2, ["summon"])

# Accepted on purpose: no tokenizer is needed for ids, and any bytes are a text.
accepts = []


def accept(name, args, outputs=(), stdin=None):
    accepts.append((name, args, tuple(outputs), stdin))


accept("embed --ids on an HF folder without tokenizer.json",
       ["embed", "--model", TINY_HF, "--ids", "--input", ids, "--output", p("hf_ids.npy")],
       [p("hf_ids.npy")])
accept("embed: invalid UTF-8 text (byte fallback)", E + ["--input", bad_utf8, "--output",
                                                         p("utf8.npy")], [p("utf8.npy")])
accept("embed: NUL byte inside a text", E + ["--input", nul_text, "--output", p("nul.npy")],
       [p("nul.npy")])
accept("embed: 1 MB line with --truncate", E + ["--truncate", "--input", big_line, "--output",
                                                p("big.npy")], [p("big.npy")])
accept("tokenize: invalid UTF-8 from stdin", ["tokenize", "--model", MODEL], stdin=open(
    bad_utf8, "rb").read())

# ------------------------------------------------------------------ run
failures = []
rows = []
for name, args, want_rc, has, outputs, stdin in cases:
    cmd = args[0] if args[0] in ("tokenize", "embed", "data", "cache", "train", "eval",
                                 "compare") else None
    try:
        r = run(args, stdin=stdin)
    except subprocess.TimeoutExpired:
        failures.append(f"{name}: timed out")
        rows.append((name, "(timed out)"))
        continue
    err = r.stderr.decode("utf-8", errors="replace")
    prefix = f"lmembed {cmd}: error: " if cmd else "lmembed: error: "
    lines = [l for l in err.splitlines() if re.match(r"^lmembed( \w+)?: error: ", l)]
    msg = lines[0][len(prefix):] if len(lines) == 1 and lines[0].startswith(prefix) else err.strip()
    rows.append((name, msg))
    problems = []
    if r.returncode < 0:
        problems.append(f"killed by signal {-r.returncode}")
    elif r.returncode == 0:
        problems.append("exit status 0")
    elif want_rc == 2 and r.returncode != 2:
        problems.append(f"exit status {r.returncode}, want 2 (usage)")
    elif want_rc == 1 and r.returncode == 2:
        problems.append("exit status 2 (usage) for a bad input")
    if len(lines) != 1 or not lines[0].startswith(prefix):
        problems.append(f"want exactly one '{prefix}...' line, got {len(lines)}")
    for m in BAD_MARKERS:
        if m in err:
            problems.append(f"stderr has '{m}'")
    for s in has:
        if len(lines) == 1 and s not in lines[0]:
            problems.append(f"message lacks '{s}'")
    for o in outputs:
        d, b = os.path.dirname(o), os.path.basename(o)
        if os.path.exists(o):
            problems.append(f"left {o}")
        if os.path.isdir(d) and any(f.startswith("." + b + ".tmp") for f in os.listdir(d)):
            problems.append(f"left a temp file of {o}")
    if problems:
        failures.append(f"{name}: {'; '.join(problems)}\n    stderr: {err.strip()[:600]}")

for name, args, outputs, stdin in accepts:
    r = run(args, stdin=stdin)
    err = r.stderr.decode("utf-8", errors="replace")
    rows.append((name, "accepted (exit 0)" if r.returncode == 0 else err.strip()))
    problems = []
    if r.returncode != 0:
        problems.append(f"exit status {r.returncode}")
    for m in BAD_MARKERS:
        if m in err:
            problems.append(f"stderr has '{m}'")
    for o in outputs:
        if not os.path.exists(o):
            problems.append(f"no {o}")
    if problems:
        failures.append(f"{name}: {'; '.join(problems)}\n    stderr: {err.strip()[:600]}")

# Long texts: a 100,000-token text is refused (no --truncate) or cut to the context with
# --truncate, and either way the peak memory stays near a short text's. The bound: tokenizing
# costs the text (100 kB) and its ids (400 kB); the forward is capped at n_ctx = 2048 tokens
# (activations 2048 x 64 floats, attention scores 2048 x 2048 floats = 16 MiB a head at most),
# so 64 MiB above the short text's peak leaves room for allocator slack, while keeping all
# 100,000 tokens through the forward (400 MB of attention scores a head) would break it.
def peak_rss_mib(args):
    pr = subprocess.Popen(WRAP + [CLI] + args, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(pr.pid, 0)
    return os.waitstatus_to_exitcode(status), ru.ru_maxrss / 1024.0


long_text = write(p("long.txt"), "a" * 100000 + "\n")
rc_short, short_mib = peak_rss_mib(E + ["--input", texts, "--output", p("short.npy")])
rc_cut, cut_mib = peak_rss_mib(E + ["--truncate", "--input", long_text, "--output",
                                    p("long.npy")])
rc_ref, ref_mib = peak_rss_mib(E + ["--input", long_text, "--output", p("long_ref.npy")])
rows.append(("long text (100,000 tokens) --truncate: peak RSS",
             f"{cut_mib:.0f} MiB (exit {rc_cut}) vs {short_mib:.0f} MiB for two short texts"))
rows.append(("long text (100,000 tokens) refused: peak RSS",
             f"{ref_mib:.0f} MiB (exit {rc_ref})"))
if rc_short != 0 or rc_cut != 0 or rc_ref != 1 or os.path.exists(p("long_ref.npy")):
    failures.append(f"long text: exits {rc_short}, {rc_cut}, {rc_ref} (want 0, 0, 1)")
for label, mib in (("--truncate", cut_mib), ("refused", ref_mib)):
    if mib > short_mib + 64:
        failures.append(f"long text {label}: peak RSS {mib:.0f} MiB > {short_mib:.0f} + 64 MiB")

# The table for the issue note: messages with the temp folder written as $TMP.
table = ["| case | message |", "|---|---|"]
for name, msg in rows:
    m = msg.replace(tmp, "$TMP").replace(DATA.rstrip("/"), "$DATA").replace("|", "\\|")
    m = m.replace(os.path.realpath(DATA), "$DATA")
    table.append(f"| {name} | {m[:400]} |")
text = "\n".join(table) + "\n"
print(text)
try:
    with open(OUT_TABLE, "w", encoding="utf-8") as f:
        f.write(text)
except OSError as e:
    print(f"(could not write {OUT_TABLE}: {e})")
print(f"{len(cases)} bad-input cases, {len(accepts)} accepted inputs, {len(failures)} failures")
for f in failures:
    print("FAIL", f)
shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if failures else 0)
