#!/usr/bin/env python3
"""The real model's tokenizer (SmolLM2-135M-Instruct GGUF: byte-level BPE, 49,152 tokens, 48,900
merges, tokenizer.ggml.pre "smollm") against llama.cpp's own tokenizer and Hugging Face's.

Texts: every bundled text (realmodel.bundled_texts(), about 39,000), llama.cpp's tokenizer test
strings (data/tokenizer/*.inp) and random mixed-script strings (fixed seed: whitespace runs of
every kind, ASCII and non-ASCII digit runs, emoji sequences, contractions, punctuation; code
points assigned in Python's Unicode version, no NUL, valid UTF-8 only).

1. lmembed (`lmembed tokenize --model`, all texts in one call; texts holding a newline go as
   arguments in a second call, since stdin is one text per line) against llama.cpp's
   llama_tokenize(add_special=true, parse_special=false) through llama-cpp-python (a
   Llama(vocab_only=True) model; the same call as Llama.tokenize(add_bos=True, special=False)),
   which is what the CLI's defaults mean: the model's own BOS/EOS flags, special tokens written
   in the text are plain text. Every text must be exact.
2. `--parse-special` against special=True on texts with the 17 control tokens (<|im_start|>,
   <|im_end|>, ...) spliced in (chat-template strings, token fragments, adjacent tokens), and the
   same texts without it against special=False (the tokens' text is then tokenized as text).
3. Every tokenizer.ggml.pre name lmembed maps (smollm's group: starcoder, refact, command-r,
   codeshell, exaone, minerva-7b, mellum2; llama-bpe's, qwen2's, gpt-2's, deepseek's, default):
   GGUF copies of the gpt-2 test vocabulary with each name, lmembed against llama.cpp on the test
   strings but the empty one, the random strings and 300 bundled texts (CLI defaults against
   add_special=true, so the default BOS rule is checked too: llama-bpe's group adds BOS). Names
   llama.cpp refuses are listed (lmembed keeps some older aliases); the names added with smollm
   (its group, pixtral, megrez) must all be known to llama.cpp.
4. Hugging Face: transformers' tokenizer built from the same GGUF (AutoTokenizer, gguf_file=,
   add_special_tokens=False). Its converter gives the plain ByteLevel pre-tokenizer and drops the
   digit split that "smollm" (and SmolLM2's own tokenizer.json: Digits(individual_digits) +
   ByteLevel) has, so it disagrees where " ?\\p{N}+" joins number characters (to each other or
   to a space before them): that agreement is printed; the same tokenizer with the Digits split
   put back must agree with llama.cpp on every text.
The whole test must take under 60 s of CPU (printed).
"""
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import realmodel  # noqa: E402
import gguf_meta  # noqa: E402

MODEL = realmodel.model_path()
CLI = realmodel.cli()
DATA = os.environ.get("LMEMBED_DATA_DIR", "")
try:
    from llama_cpp import Llama
except ImportError as e:
    realmodel.skip(f"llama-cpp-python is not installed in the reference venv ({e})")

ALIASES = ["starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"]
# Every tokenizer.ggml.pre name lmembed maps (pretokenize.hpp, PreTokenizer::named).
PRE_NAMES = (["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "roberta-bpe", "jina-es", "jina-de",
              "llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "falcon3", "pixtral",
              "qwen2", "stablelm2", "deepseek-r1-qwen", "megrez", "smollm"] + ALIASES +
             ["deepseek-llm", "deepseek-coder", "default"])


class LlamaCppTokenizer:
    """llama.cpp's llama_tokenize on a vocabulary-only model (llama-cpp-python's low-level binding
    with one reused buffer: Llama.tokenize allocates n_ctx_train ids per call, twice the CPU)."""

    def __init__(self, path):
        import llama_cpp
        self.lib = llama_cpp
        self.llm = Llama(model_path=path, vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.cap = 1 << 16
        self.buf = (llama_cpp.llama_token * self.cap)()

    def __call__(self, text, add_special, parse_special):
        b = text.encode("utf-8")
        n = self.lib.llama_tokenize(self.vocab, b, len(b), self.buf, self.cap, add_special,
                                    parse_special)
        assert n >= 0, f"llama_tokenize needs {-n} ids for {text[:50]!r}"
        return self.buf[:n]


def cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def vector_texts():
    """llama.cpp's tokenizer test strings (the same 46 in every .inp file), deduplicated."""
    out = []
    folder = os.path.join(DATA, "tokenizer")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".inp"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                for t in f.read().split("\n__ggml_vocab_test__\n")[:-1]:
                    if t not in out:
                        out.append(t)
    return out


def random_texts(n, seed):
    rnd = random.Random(seed)

    def pool(*ranges):
        return [chr(c) for lo, hi in ranges for c in range(lo, hi + 1)
                if unicodedata.category(chr(c)) not in ("Cn", "Cs", "Co", "Cc")]

    letters = pool((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF),
                   (0x531, 0x556), (0x5D0, 0x5EA), (0x620, 0x64A), (0x905, 0x939), (0xE01, 0xE30),
                   (0x10A0, 0x10C5), (0x3041, 0x3096), (0x30A1, 0x30FA), (0x4E00, 0x4F00),
                   (0xAC00, 0xAD00), (0x1D400, 0x1D433))
    marks = pool((0x300, 0x36F), (0x93A, 0x94F), (0xE31, 0xE3A))
    digits = pool((0x30, 0x39), (0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19), (0x1D7CE, 0x1D7FF))
    numbers = pool((0xB2, 0xB3), (0xB9, 0xB9), (0xBC, 0xBE), (0x2070, 0x2079), (0x2150, 0x2189),
                   (0x2460, 0x249B), (0x3007, 0x3007), (0x3021, 0x3029))
    punct = pool((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E), (0xA1, 0xBF),
                 (0x2010, 0x2027), (0x2030, 0x205E), (0x3001, 0x3011), (0xFF01, 0xFF0F),
                 (0x20A0, 0x20BF), (0x2190, 0x21FF), (0x2200, 0x22FF))
    spaces = [" ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", " \n ", "\x0b", "\x0c", "\x85",
              "\u00a0", "\u1680", "\u2000", "\u2003", "\u2009", "\u200a", "\u2028", "\u2029",
              "\u202f", "\u205f", "\u3000", "\t\t ", "        "]
    emoji = ["🦙", "😀", "😶‍🌫️", "👩‍👩‍👧‍👦", "👍🏽", "🇫🇷", "❤️", "✅", "🚀", "🤗", "🧠", "1️⃣", "🏳️‍🌈"]
    words = ["hello", "World", "don't", "it's", "I'LL", "we're", "you've", "I'm", "she'd", "'s",
             "naïve", "café", "Привет", "東京", "서울", "e\u0301", "x86", "3.14159", "1,000,000",
             "2024-05-01", "v0.3.36", "<b>", "https://huggingface.co/", "a_b", "C++", "0x1F"]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(1, 16)):
            r = rnd.random()
            if r < 0.2:
                parts.append(rnd.choice(spaces))
            elif r < 0.35:
                parts.append(rnd.choice(words))
            elif r < 0.5:
                parts.append("".join(rnd.choice(digits) for _ in range(rnd.randint(1, 12))))
            elif r < 0.55:
                parts.append(rnd.choice(numbers))
            elif r < 0.65:
                parts.append(rnd.choice(emoji))
            elif r < 0.75:
                parts.append("".join(rnd.choice(punct) for _ in range(rnd.randint(1, 4))))
            elif r < 0.8:
                parts.append(rnd.choice(letters) + rnd.choice(marks))
            else:
                parts.append("".join(rnd.choice(letters) for _ in range(rnd.randint(1, 8))))
        texts.append("".join(parts))
    return texts


def special_texts(tokens, pool, seed):
    """Texts holding the control tokens 0..16 written out, plus fragments of them."""
    specials = tokens[:17]
    rnd = random.Random(seed)
    out = ["<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
           "Face<|im_end|>\n<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|><|im_end|>", "<|endoftext|>", "a<|im_end|>b", " <|im_start|> ",
           "<|im_start", "im_start|>", "<|im_start|im_end|>", "<<|im_end|>>", "<|endoftext|>1"]
    out += specials
    for _ in range(400):
        parts = [rnd.choice(pool)]
        for _ in range(rnd.randint(1, 4)):
            tok = rnd.choice(specials)
            if rnd.random() < 0.2:
                tok = tok[:rnd.randint(1, len(tok) - 1)]
            parts.append(tok)
            parts.append(rnd.choice(pool)[:rnd.randint(0, 30)])
        out.append("".join(parts))
    return out


def lmembed_tokenize(model, texts, *flags):
    """Ids from `lmembed tokenize`: newline-free texts through stdin in one call, the others as
    arguments in a second call."""
    plain = [i for i, t in enumerate(texts) if "\n" not in t]
    multi = [i for i, t in enumerate(texts) if "\n" in t]
    out = [None] * len(texts)
    base = [CLI, "tokenize", "--model", model, *flags]
    res = subprocess.run(base, input="".join(texts[i] + "\n" for i in plain).encode(),
                         capture_output=True)
    if res.returncode != 0:
        sys.exit(f"lmembed tokenize failed ({res.returncode}): {res.stderr.decode()[-2000:]}")
    lines = res.stdout.decode().split("\n")[:-1]
    assert len(lines) == len(plain), (len(lines), len(plain))
    for i, ln in zip(plain, lines):
        out[i] = [int(x) for x in ln.split()]
    if multi:
        res = subprocess.run(base + ["--", *(texts[i] for i in multi)], capture_output=True)
        if res.returncode != 0:
            sys.exit(f"lmembed tokenize failed ({res.returncode}): {res.stderr.decode()[-2000:]}")
        lines = res.stdout.decode().split("\n")[:-1]
        assert len(lines) == len(multi), (len(lines), len(multi))
        for i, ln in zip(multi, lines):
            out[i] = [int(x) for x in ln.split()]
    return out


def compare(label, texts, got, want, name_a="lmembed", name_b="llama.cpp", show=5):
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    for i in bad[:show]:
        print(f"  [{label}] {texts[i]!r}\n    {name_a:10} {got[i]}\n    {name_b:10} {want[i]}")
    print(f"{label}: {len(texts) - len(bad)}/{len(texts)} texts identical "
          f"({sum(len(w) for w in want)} {name_b} tokens)")
    return bad


def space_number(text):
    return any(a == " " and unicodedata.category(b)[0] == "N" for a, b in zip(text, text[1:]))


def adjacent_numbers(text):
    return any(unicodedata.category(a)[0] == "N" and unicodedata.category(b)[0] == "N"
               for a, b in zip(text, text[1:]))


def main():
    t0, c0 = time.time(), cpu_seconds()
    bundled = realmodel.bundled_texts()
    vectors = vector_texts()
    rand = random_texts(500, seed=20261203)
    seen = set(bundled)
    texts = bundled + [t for t in vectors + rand if t not in seen]
    print(f"{len(texts)} texts: {len(bundled)} bundled, {len(vectors)} llama.cpp test strings, "
          f"{len(rand)} random")
    failures = 0

    # `lmembed tokenize` needs only the vocabulary, but GgufFile::open also parses the tensor
    # table; until lmembed reads Q4_1 it refuses the real file, so lmembed then reads a copy of
    # its metadata without tensors (llama.cpp always reads the real file).
    lm_model = MODEL
    probe = subprocess.run([CLI, "tokenize", "--model", MODEL, "x"], capture_output=True)
    if probe.returncode != 0:
        err = probe.stderr.decode()
        if "unsupported tensor type" not in err:
            print(f"FAILED: lmembed tokenize cannot read the model: {err}")
            return 1
        keep = tempfile.TemporaryDirectory(prefix="lmembed-tok-")  # removed at exit
        lm_model = os.path.join(keep.name, "vocab-only.gguf")
        gguf_meta.write_gguf(lm_model, gguf_meta.read_metadata(MODEL))
        print(f"NOTE: lmembed cannot open the real GGUF yet ({err.strip()}); lmembed reads a "
              f"vocabulary-only copy of its metadata ({lm_model})")

    # 1. lmembed vs llama.cpp, CLI defaults
    llm = LlamaCppTokenizer(MODEL)
    t, c = time.time(), cpu_seconds()
    want = [llm(x, True, False) for x in texts]
    t_llama, c_llama = time.time() - t, cpu_seconds() - c
    t, c = time.time(), cpu_seconds()
    got = lmembed_tokenize(lm_model, texts)
    t_lm, c_lm = time.time() - t, cpu_seconds() - c
    n_tok = sum(len(w) for w in want)
    n_bytes = sum(len(x.encode("utf-8")) for x in texts)
    print(f"lmembed tokenize: {c_lm:.2f} s CPU ({t_lm:.2f} s wall) for {len(texts)} texts, "
          f"{n_bytes / 1e6:.2f} MB, {n_tok} tokens: {n_tok / c_lm / 1e3:.0f} k tokens/s CPU, "
          f"process start and model load included; llama.cpp {c_llama:.2f} s CPU "
          f"({t_llama:.2f} s wall)")
    failures += len(compare("defaults (add_special, no parse_special)", texts, got, want))
    split_digits = sum(1 for x in texts if adjacent_numbers(x))
    print(f"  ({split_digits} of the texts hold adjacent number characters, cut one by one)")

    # 2. special tokens
    tokens = gguf_meta.read_metadata(MODEL)["tokenizer.ggml.tokens"]
    sp = special_texts(tokens, bundled[:2000] + rand, seed=7)
    want_sp = [llm(x, True, True) for x in sp]
    want_plain = [llm(x, True, False) for x in sp]
    failures += len(compare("--parse-special vs special=True", sp,
                            lmembed_tokenize(lm_model, sp, "--parse-special"), want_sp))
    failures += len(compare("specials as text vs special=False", sp, lmembed_tokenize(lm_model, sp),
                            want_plain))
    n_matched = sum(1 for w in want_sp if any(i < 17 for i in w))
    print(f"  ({n_matched} of them hold a control token that parse_special matches)")
    del llm

    # 3. every tokenizer.ggml.pre name lmembed maps, on GGUF copies of the gpt-2 test vocabulary
    c = cpu_seconds()
    meta = gguf_meta.read_metadata(os.path.join(DATA, "tokenizer", "ggml-vocab-gpt-2.gguf"))
    # No empty text: the CLI prints an empty line for it even where BOS is added (its documented
    # convention), while llama_tokenize gives [BOS].
    sub = [x for x in vectors + rand + bundled[:300] if x]
    refused = []
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_NAMES:
            path = os.path.join(tmp, f"gpt2-{pre}.gguf")
            gguf_meta.write_gguf(path, dict(meta, **{"tokenizer.ggml.pre": pre}))
            try:
                ref = LlamaCppTokenizer(path)
            except Exception:  # noqa: BLE001  (llama.cpp refuses names it does not know)
                refused.append(pre)
                continue
            w = [ref(x, True, False) for x in sub]
            del ref
            failures += len(compare(f"gpt-2 vocab, pre '{pre}'", sub, lmembed_tokenize(path, sub),
                                    w, show=3))
    print(f"  ({len(PRE_NAMES)} names, {len(sub)} texts each: {cpu_seconds() - c:.1f} s CPU)")
    if refused:
        print(f"llama.cpp refuses (lmembed's own aliases, not checked): {', '.join(refused)}")
    added = set(["smollm", "pixtral", "megrez"] + ALIASES)
    if added & set(refused):
        print(f"FAILED: llama.cpp does not know {sorted(added & set(refused))}")
        failures += 1

    # 4. Hugging Face from the same GGUF
    t, c = time.time(), cpu_seconds()
    try:
        from tokenizers import Tokenizer, pre_tokenizers
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(os.path.dirname(MODEL),
                                           gguf_file=os.path.basename(MODEL))
    except Exception as e:  # noqa: BLE001  (the reference stack itself is broken: say so)
        print(f"FAILED: transformers could not build the tokenizer from the GGUF: {e!r}")
        return 1
    backend = hf.backend_tokenizer
    print(f"HF tokenizer from GGUF ({time.time() - t:.1f} s), pre_tokenizer "
          f"{backend.pre_tokenizer.__getstate__()!s:.200}")
    hf_ids = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    bad = compare("HF (transformers GGUF converter) vs llama.cpp", texts, hf_ids, want,
                  name_a="HF", show=3)
    fixed = Tokenizer.from_str(backend.to_str())
    fixed.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), backend.pre_tokenizer])
    fixed_ids = [e.ids for e in fixed.encode_batch(texts, add_special_tokens=False)]
    bad_fixed = compare("HF + Digits(individual_digits) vs llama.cpp", texts, fixed_ids, want,
                        name_a="HF+Digits")
    print(f"  the {len(bad)} HF mismatches: {sum(1 for i in bad if adjacent_numbers(texts[i]))} hold "
          f"adjacent number characters, {sum(1 for i in bad if space_number(texts[i]))} a space "
          f"before a number character (\" ?\\p{{N}}+\" joins them without the digit split); "
          f"{len(set(bad) - set(bad_fixed))} are gone with the digit split put back")
    failures += len(bad_fixed)
    print(f"  HF part: {cpu_seconds() - c:.1f} s CPU")

    cpu = cpu_seconds() - c0
    print(f"total {time.time() - t0:.1f} s wall, {cpu:.1f} s CPU (limit 60 s)")
    if cpu > 60:
        print("FAILED: over the 60 s CPU budget")
        failures += 1
    if failures:
        print(f"FAILED ({failures} mismatches)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
