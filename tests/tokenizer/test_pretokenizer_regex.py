#!/usr/bin/env python3
"""lmembed's hand-written pre-tokenizers against the published regexes run by Python's `regex`.

Reference: the Python `regex` module (Debian python3-regex; \\s = Unicode White_Space, \\p{..} =
general categories) applied to the exact published patterns, step after step as llama.cpp's
unicode_regex_split does (each pattern cuts every segment of the previous step into its matches
and the gaps between them). Inputs: llama.cpp's 46 tokenizer test strings (these are also the
llama-bpe vectors, whose vocabulary is not available) and 3000 random strings drawn from letters,
digits, marks, punctuation, symbols, whitespace (CR/LF/tab/NBSP/U+3000...), apostrophe
contractions, CJK, Hangul and emoji.

Also lmembed's NFC normalizer (HF "NFC", e.g. Qwen2's tokenizer.json) against Python's
unicodedata.normalize("NFC") on 3500 strings of decomposable letters, combining marks in mixed
orders, Hangul jamo and syllables (code points assigned in Python's Unicode version only).

Deviations of llama.cpp that the reference reproduces on purpose:
 - `$` is ECMAScript's (end of segment only): written \\Z here;
 - patterns without \\p{..} (deepseek's explicit classes) run through std::wregex on a text whose
   non-ASCII whitespace was replaced by U+000B: the reference does the same substitution.
"""
import os
import random
import subprocess
import sys
import unicodedata

try:
    import regex
except ImportError:
    print("python3-regex is not installed: skipping")
    sys.exit(77)

TOOL = os.environ.get("LMEMBED_TARGET_TOKENIZER_SPLIT_TOOL")
DATA = os.environ.get("LMEMBED_DATA_DIR")
if not TOOL or not DATA:
    print("LMEMBED_TARGET_TOKENIZER_SPLIT_TOOL / LMEMBED_DATA_DIR not set: skipping")
    sys.exit(77)

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Transcribed from the published pattern; code points that NFC would change are escaped.
DS_LETTERS = ("[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚ"
              "Ḁ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄ"
              "Ⰰ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ\U00010400-\U0001044f𐒰-𐓓𐓘-𐓻"
              "𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]")
DS_CJK = "[一-龥ࠀ-一가-퟿]"
# (pattern, explicit) per step; explicit = no \p{..}: the text sees non-ASCII whitespace as \x0b.
PRE = {
    "gpt-2": [(GPT2, False)],
    "llama-bpe": [(LLAMA3, False)],
    "qwen2": [(QWEN2, False)],
    "smollm": [(r"\p{N}", False), (GPT2, False)],
    "deepseek-llm": [("[\r\n]", True), (r"\s?" + DS_LETTERS + "+", True),
                     (r"\s?[!-/:-~！-／：-～‘-‟　-。]+", True), (r"\s+\Z", True),
                     (DS_CJK + "+", True), (r"\p{N}+", False)],
    "deepseek-coder": [("[\r\n]", True), (r"\s?\p{L}+", False), (r"\s?\p{P}+", False),
                       (DS_CJK + "+", True), (r"\p{N}", False)],
    "default": [(r"[\p{P}\$\+<=>\^~\|]+", False), (GPT2, False), (r"\p{N}+", False),
                ("[0-9][0-9][0-9]", False)],
}


def reference_split(text, steps):
    segs = [text] if text else []
    for pattern, explicit in steps:
        rx = regex.compile(pattern)
        out = []
        for seg in segs:
            view = seg
            if explicit:
                view = "".join("\x0b" if ord(c) > 0x7F and regex.match(r"\s", c) else c
                               for c in seg)
            pos = 0
            for m in rx.finditer(view):
                if m.start() > pos:
                    out.append(seg[pos:m.start()])
                out.append(seg[m.start():m.end()])
                pos = m.end()
            if pos < len(seg):
                out.append(seg[pos:])
        segs = out
    return segs


def assigned(c):
    cp = ord(c)
    return unicodedata.category(c) not in ("Cn", "Cs") and not (0x1C <= cp <= 0x1F)


def random_texts(n, seed=1234):
    rnd = random.Random(seed)
    pool = []
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x600, 0x6FF), (0x900, 0x97F), (0x2000, 0x206F), (0x20A0, 0x20BF),
              (0x2150, 0x218F), (0x3000, 0x303F), (0x3040, 0x30FF), (0x4E00, 0x4E80),
              (0x9FA0, 0x9FAF), (0xAC00, 0xAC40), (0xD7B0, 0xD7FF), (0xFF00, 0xFF65),
              (0x1F600, 0x1F64F), (0x10400, 0x1044F), (0x1D400, 0x1D433), (0x0800, 0x083F)]
    for lo, hi in ranges:
        pool.extend(chr(c) for c in range(lo, hi + 1) if assigned(chr(c)))
    specials = ["\r", "\n", "\r\n", "\t", " ", "  ", "   ", "\u00a0", "\u3000", "\x0b", "\x85",
                "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'x",
                "1234567", "٣٤٥", "½", "...", "!!", "$", "+", "<=>", "^", "~", "|", "_", "Ⅻ"]
    words = ["hello", "World", "naïve", "café", "Привет", "東京", "서울", "e\u0301", "x86"]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(1, 14)):
            r = rnd.random()
            if r < 0.35:
                parts.append(rnd.choice(specials))
            elif r < 0.6:
                parts.append(rnd.choice(words))
            else:
                parts.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 4))))
        texts.append("".join(parts))
    return texts


def run_tool(name, texts):
    inp = "".join(t.encode("utf-8").hex() + "\n" for t in texts)
    res = subprocess.run([TOOL, name], input=inp.encode(), capture_output=True, check=True)
    lines = res.stdout.decode().split("\n")
    assert len(lines) == len(texts) + 1, (len(lines), len(texts))
    return [[bytes.fromhex(w).decode("utf-8") for w in ln.split(" ") if w] for ln in lines[:-1]]


def main():
    with open(os.path.join(DATA, "tokenizer", "ggml-vocab-llama-bpe.gguf.inp"), encoding="utf-8") as f:
        vectors = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    assert len(vectors) == 46, len(vectors)
    texts = vectors + random_texts(3000)
    failures = 0
    for name, steps in PRE.items():
        got = run_tool(name, texts)
        bad = 0
        for text, g in zip(texts, got):
            want = reference_split(text, steps)
            if g != want:
                bad += 1
                if bad <= 3:
                    print(f"[{name}] {text!r}\n  lmembed   {g!r}\n  reference {want!r}")
        words = sum(len(g) for g in got)
        print(f"{name}: {len(texts) - bad}/{len(texts)} texts split identically ({words} words)")
        failures += bad
    # The llama-bpe vectors: the splits are what Llama-3's tokenizer saw; spot-check one.
    got = run_tool("llama-bpe", ["Hello, y'all! How are you 😁 ?我想在apple工作1314151天～"])[0]
    assert got == ["Hello", ",", " y", "'all", "!", " How", " are", " you", " 😁", " ?",
                   "我想在apple工作", "131", "415", "1", "天", "～"], got
    # NFC
    rnd = random.Random(99)
    cps = (list(range(0x41, 0x7B)) + list(range(0xC0, 0x250)) + list(range(0x300, 0x370)) +
           list(range(0x1E00, 0x1F00)) + list(range(0x1100, 0x1113)) + list(range(0x1161, 0x1176)) +
           list(range(0x11A8, 0x11C3)) + list(range(0xAC00, 0xAC60)) + list(range(0x0590, 0x05C8)) +
           list(range(0x0900, 0x0970)) + list(range(0x1D15E, 0x1D165)) +
           [0x2126, 0x212B, 0xF900, 0x0344, 0x0F73, 0x1F80, 0x3099, 0x309A, 0x304B, 0x30CF])
    pool = [chr(c) for c in cps if assigned(chr(c))]
    nfc_texts = ["".join(rnd.choice(pool) for _ in range(rnd.randint(1, 12))) for _ in range(3000)]
    nfc_texts += [unicodedata.normalize("NFD", t) for t in nfc_texts[:500]]
    inp = "".join(t.encode("utf-8").hex() + "\n" for t in nfc_texts)
    res = subprocess.run([TOOL, "--nfc"], input=inp.encode(), capture_output=True, check=True)
    got = [bytes.fromhex(x).decode("utf-8") for x in res.stdout.decode().split("\n")[:-1]]
    bad = [i for i, t in enumerate(nfc_texts) if got[i] != unicodedata.normalize("NFC", t)]
    for i in bad[:3]:
        print(f"[nfc] {nfc_texts[i]!r}: lmembed {got[i]!r} "
              f"python {unicodedata.normalize('NFC', nfc_texts[i])!r}")
    changed = sum(1 for t in nfc_texts if unicodedata.normalize("NFC", t) != t)
    print(f"nfc: {len(nfc_texts) - len(bad)}/{len(nfc_texts)} identical to unicodedata "
          f"(Unicode {unicodedata.unidata_version}; {changed} texts change under NFC)")
    failures += len(bad)
    if failures:
        print(f"FAILED: {failures} texts differ")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
