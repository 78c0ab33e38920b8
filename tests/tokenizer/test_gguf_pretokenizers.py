#!/usr/bin/env python3
"""Byte-level BPE from GGUF with every supported tokenizer.ggml.pre, end to end through the CLI.

Only the gpt-2 vocabulary GGUF is available, so this test writes GGUF copies of it whose
`tokenizer.ggml.pre` is each supported pre-tokenizer (llama-bpe, qwen2, smollm, deepseek-llm,
deepseek-coder, default, gpt-2) and compares `lmembed tokenize --model` with an independent Python
reference: the published regexes run by the `regex` module (as in test_pretokenizer_regex.py),
GPT-2's byte-to-unicode mapping and OpenAI's original `bpe()` merge loop (encoder.py) over the
GGUF's merge ranks, plus llama.cpp's rules for llama-bpe (ignore_merges: a word that is itself a
token is kept whole; BOS added by default). Texts: llama.cpp's 46 test strings and 300 random
mixed-script strings. Every GPT-2 token is reachable through its merges, so the copies drop the
two merges that build "Hello" and " world": ignore_merges then decides those words (whole tokens
for llama-bpe, pieces for the others).
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_meta  # noqa: E402

CLI = os.environ.get("LMEMBED_TARGET_LMEMBED_CLI") or os.environ.get("LMEMBED_CLI")
DATA = os.environ.get("LMEMBED_DATA_DIR")
if not CLI or not DATA or not os.path.exists(CLI):
    print("lmembed CLI / LMEMBED_DATA_DIR not available: skipping")
    sys.exit(77)
os.environ.setdefault("LMEMBED_TARGET_TOKENIZER_SPLIT_TOOL", "unused")
import test_pretokenizer_regex as ref  # noqa: E402  (exits 77 itself without python3-regex)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def get_pairs(word):
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


def openai_bpe(token, ranks):
    word = tuple(token)
    pairs = get_pairs(word)
    if not pairs:
        return word
    while True:
        bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if bigram not in ranks:
            break
        first, second = bigram
        new_word = []
        i = 0
        while i < len(word):
            try:
                j = word.index(first, i)
            except ValueError:
                new_word.extend(word[i:])
                break
            new_word.extend(word[i:j])
            i = j
            if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                new_word.append(first + second)
                i += 2
            else:
                new_word.append(word[i])
                i += 1
        word = tuple(new_word)
        if len(word) == 1:
            break
        pairs = get_pairs(word)
    return word


def main():
    meta = gguf_meta.read_metadata(os.path.join(DATA, "tokenizer", "ggml-vocab-gpt-2.gguf"))
    meta = {k: v for k, v in meta.items() if k.startswith("tokenizer.") or k == "general.architecture"}
    tokens = meta["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    # Drop the merges that build "Hello" and " world": the tokens stay in the vocabulary but merges
    # can no longer reach them, so llama-bpe's ignore_merges rule decides those words.
    unreachable = ("Hello", "\u0120world")
    merges = [mm for mm in meta["tokenizer.ggml.merges"] if mm.replace(" ", "", 1) not in unreachable]
    assert len(merges) == len(meta["tokenizer.ggml.merges"]) - 2
    meta["tokenizer.ggml.merges"] = merges
    ranks = {tuple(mm.split(" ", 1)): r for r, mm in enumerate(merges)}
    b2u = bytes_to_unicode()
    with open(os.path.join(DATA, "tokenizer", "ggml-vocab-llama-bpe.gguf.inp"), encoding="utf-8") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    texts = [t for t in texts if t] + ref.random_texts(300, seed=4321)

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for pre, steps in ref.PRE.items():
            m = dict(meta)
            m["tokenizer.ggml.pre"] = pre
            path = os.path.join(tmp, f"vocab-{pre}.gguf")
            gguf_meta.write_gguf(path, m)
            ignore_merges = pre == "llama-bpe"
            cache = {}
            want = []
            for t in texts:
                ids = []
                for w in ref.reference_split(t, steps):
                    enc = "".join(b2u[b] for b in w.encode("utf-8"))
                    if ignore_merges and enc in vocab:
                        ids.append(vocab[enc])
                        continue
                    if enc not in cache:
                        cache[enc] = [vocab[p] for p in openai_bpe(enc, ranks)]
                    ids.extend(cache[enc])
                want.append(ids)
            res = subprocess.run([CLI, "tokenize", "--model", path, "--no-bos", "--", *texts],
                                 capture_output=True, check=True)
            got = [[int(x) for x in ln.split()] for ln in res.stdout.decode().split("\n")[:-1]]
            bad = [i for i in range(len(texts)) if got[i] != want[i]]
            for i in bad[:3]:
                print(f"[{pre}] {texts[i]!r}\n  lmembed   {got[i]}\n  reference {want[i]}")
            print(f"{pre}: {len(texts) - len(bad)}/{len(texts)} texts exact")
            hello = got[texts.index("Hello world")]
            if (hello == [vocab["Hello"], vocab["\u0120world"]]) != ignore_merges:
                print(f"[{pre}] 'Hello world' -> {hello}: ignore_merges not applied as expected")
                failures += 1
            failures += len(bad)
            # BOS by default only for llama-bpe (llama.cpp), never for the others.
            first = subprocess.run([CLI, "tokenize", "--model", path, "Hello"], capture_output=True,
                                   check=True).stdout.decode().split()
            if (first[0] == "50256") != (pre == "llama-bpe"):
                print(f"[{pre}] default BOS wrong: {first}")
                failures += 1
    if failures:
        print(f"FAILED ({failures})")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
