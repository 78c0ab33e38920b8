"""Builds the fuzzers' seed corpus (tests/fuzz/corpus/) from the real files in data/.

Real model files are 0.4-12 MB, too big for effective fuzzing, so each seed is a small, valid
file cut from a real one: the real metadata (vocabulary shortened) and a few real tensors of
each type (their first rows), re-packed with their original bytes. Also the real headers as found (prefixes).
Run from the repository root with Debian's python3: /usr/bin/python3 tests/fuzz/make_corpus.py
(`make_corpus.py quant` writes only corpus/quant/).
"""
import json
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "data")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


# ---- a minimal GGUF reader/writer (raw value bytes are kept as they are) ----
def read_gguf(path):
    b = open(path, "rb").read()
    pos = 24
    version, = struct.unpack_from("<I", b, 4)
    n_t, n_kv = struct.unpack_from("<QQ", b, 8)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(t, p):
        if t in sizes:
            return p + sizes[t]
        if t == 8:
            n, = struct.unpack_from("<Q", b, p)
            return p + 8 + n
        et, n = struct.unpack_from("<IQ", b, p)
        p += 12
        for _ in range(n):
            p = skip_value(et, p)
        return p

    kvs = []
    for _ in range(n_kv):
        n, = struct.unpack_from("<Q", b, pos)
        key = b[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        t, = struct.unpack_from("<I", b, pos)
        end = skip_value(t, pos + 4)
        kvs.append((key, t, b[pos + 4:end]))
        pos = end
    tensors = []
    for _ in range(n_t):
        n, = struct.unpack_from("<Q", b, pos)
        name = b[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        nd, = struct.unpack_from("<I", b, pos)
        ne = struct.unpack_from("<%dQ" % nd, b, pos + 4)
        pos += 4 + 8 * nd
        typ, off = struct.unpack_from("<IQ", b, pos)
        pos += 12
        tensors.append((name, ne, typ, off))
    data_start = (pos + 31) // 32 * 32
    return version, kvs, tensors, b, data_start, pos


def nbytes(ne, typ):
    n = int(np.prod(ne))
    return {0: 4 * n, 1: 2 * n, 30: 2 * n, 8: n // 32 * 34}[typ]


def write_gguf(path, version, kvs, tensors):
    """kvs: (key, type, raw value bytes); tensors: (name, ne, type, raw bytes)."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)))
    for key, t, raw in kvs:
        out += struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", t) + raw
    off = 0
    blobs = []
    for name, ne, typ, raw in tensors:
        out += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(ne))
        out += struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", typ, off)
        pad = (-len(raw)) % 32
        blobs.append(raw + b"\0" * pad)
        off += len(raw) + pad
    out += b"\0" * ((-len(out)) % 32)
    out += b"".join(blobs)
    open(path, "wb").write(out)


def short_array(t, raw, keep):
    """Shortens an array value to its first `keep` elements (string arrays included)."""
    if t != 9:
        return raw
    et, n = struct.unpack_from("<IQ", raw, 0)
    if n <= keep:
        return raw
    p = 12
    for _ in range(keep):
        if et == 8:
            m, = struct.unpack_from("<Q", raw, p)
            p += 8 + m
        else:
            p += {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}[et]
    return struct.pack("<IQ", et, keep) + raw[12:p]


def gguf_seeds():
    d = os.path.join(OUT, "gguf")
    os.makedirs(d, exist_ok=True)
    picks = {"stories260K-q8_0.gguf": ["output_norm.weight", "blk.0.attn_k.weight",
                                       "blk.0.ffn_down.weight"],
             "stories260K-bf16.gguf": ["blk.1.attn_v.weight"],
             "tiny-qwen2.gguf": ["blk.0.attn_k.bias"]}
    for fname, names in picks.items():
        version, kvs, tensors, b, ds, _ = read_gguf(os.path.join(DATA, "golden", "models", fname))
        kvs = [(k, t, short_array(t, raw, 8)) for k, t, raw in kvs]
        chosen = []
        for name, ne, typ, off in tensors:
            if name in names:
                # Keep at most 8 rows (the outermost GGUF dimension) so seeds stay small.
                ne = tuple(ne[:-1]) + (min(ne[-1], 8),) if len(ne) > 1 else tuple(ne)
                chosen.append((name, ne, typ, b[ds + off:ds + off + nbytes(ne, typ)]))
        base = fname.replace(".gguf", "")
        write_gguf(os.path.join(d, base + "-small.gguf"), version, kvs, chosen)
        write_gguf(os.path.join(d, base + "-small-v2.gguf"), 2, kvs[:4], chosen[:1])
    # The real stories260K header and metadata as they are (tensor data cut off).
    version, kvs, tensors, b, ds, end = read_gguf(os.path.join(DATA, "models", "stories260K.gguf"))
    open(os.path.join(d, "stories260K-header.gguf"), "wb").write(b[:ds])


def safetensors_seeds():
    d = os.path.join(OUT, "safetensors")
    os.makedirs(d, exist_ok=True)
    for model, names in {"tiny-qwen2-hf": ["model.layers.0.self_attn.k_proj.bias",
                                           "model.norm.weight"],
                         "tiny-llama-hf": ["model.layers.1.input_layernorm.weight"]}.items():
        raw = open(os.path.join(DATA, "golden", "models", model, "model.safetensors"), "rb").read()
        n, = struct.unpack_from("<Q", raw, 0)
        header = json.loads(raw[8:8 + n])
        out_h, blobs, off = {"__metadata__": {"format": "pt", "source": model}}, [], 0
        for name in names:
            e = header[name]
            b, end = e["data_offsets"]
            blob = raw[8 + n + b:8 + n + end][:64 * 4]  # keep 64 values
            count = len(blob) // (4 if e["dtype"] == "F32" else 2)
            out_h[name] = {"dtype": e["dtype"], "shape": [count], "data_offsets": [off, off + len(blob)]}
            blobs.append(blob)
            off += len(blob)
        h = json.dumps(out_h).encode()
        h += b" " * ((-len(h)) % 8)
        open(os.path.join(d, model + "-small.safetensors"), "wb").write(
            struct.pack("<Q", len(h)) + h + b"".join(blobs))
        # An F16 2-D tensor taken as it is from the real file (first rows).
        if model == "tiny-qwen2-hf":
            e = header["model.embed_tokens.weight"]
            b, _ = e["data_offsets"]
            blob = raw[8 + n + b:8 + n + b + 4 * 256 * 2]
            h = json.dumps({"model.embed_tokens.weight": {"dtype": "F16", "shape": [4, 256],
                                                          "data_offsets": [0, len(blob)]}}).encode()
            open(os.path.join(d, "tiny-qwen2-embed-rows.safetensors"), "wb").write(
                struct.pack("<Q", len(h)) + h + blob)


def npy_seeds():
    d = os.path.join(OUT, "npy")
    os.makedirs(d, exist_ok=True)
    g = json.load(open(os.path.join(DATA, "golden", "stories260K.json")))
    # Real values: token ids of the first sentences and a few golden hidden-state values.
    ids = None
    for s in g["sentences"]:
        for k, v in s.items():
            if "token" in k and isinstance(v, list) and v and isinstance(v[0], int):
                ids = v
                break
        if ids:
            break
    ids = ids or list(range(16))
    np.save(os.path.join(d, "ids-i32.npy"), np.array(ids, np.int32))
    np.save(os.path.join(d, "ids-i64.npy"), np.array(ids, np.int64).reshape(1, -1))
    emb = np.frombuffer(open(os.path.join(DATA, "models", "stories260K.gguf"), "rb").read()[-4096:],
                        dtype=np.float32).reshape(16, 64)
    np.save(os.path.join(d, "rows-f32.npy"), emb[:4])
    np.save(os.path.join(d, "rows-f16.npy"), emb[:2].astype(np.float16))
    with open(os.path.join(d, "rows-f32-v2.npy"), "wb") as f:
        np.lib.format.write_array(f, emb[:3], version=(2, 0))
    np.save(os.path.join(d, "scalar-f64.npy"), np.float64(0.5))


def json_seeds():
    d = os.path.join(OUT, "json")
    os.makedirs(d, exist_ok=True)
    for model in ["tiny-llama-hf", "tiny-qwen2-hf"]:
        src = os.path.join(DATA, "golden", "models", model, "config.json")
        open(os.path.join(d, model + "-config.json"), "wb").write(open(src, "rb").read())
    raw = open(os.path.join(DATA, "golden", "models", "tiny-qwen2-hf", "model.safetensors"), "rb").read()
    n, = struct.unpack_from("<Q", raw, 0)
    open(os.path.join(d, "safetensors-header.json"), "wb").write(raw[8:8 + min(n, 2048)].rstrip() + b"}")


def quant_seeds():
    """fuzz_quant: byte 0 picks the type (index below), then blocks. Per type: random blocks with
    finite F16 scales (zero, subnormal, +-65504 among them), all-zero blocks, and one block with
    a NaN scale; Q8_0 also gets the first real blocks of the stories260K-q8_0 seed."""
    d = os.path.join(OUT, "quant")
    os.makedirs(d, exist_ok=True)
    # name, block bytes, F16 scale offsets (docs/formats.md), in fuzz_quant.cpp's kTypes order
    types = [("q4_0", 18, [0]), ("q4_1", 20, [0, 2]), ("q5_0", 22, [0]), ("q5_1", 24, [0, 2]),
             ("q8_0", 34, [0]), ("q2_k", 84, [80, 82]), ("q3_k", 110, [108]),
             ("q4_k", 144, [0, 2]), ("q5_k", 176, [0, 2]), ("q6_k", 210, [208])]
    rng = np.random.default_rng(15)
    scales = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF,
                       0x2E66], np.uint16)
    for i, (name, bb, offs) in enumerate(types):
        n = 4 if bb < 80 else 2
        blocks = rng.integers(0, 256, (n, bb), dtype=np.uint8)
        for o in offs:
            blocks[:, o:o + 2] = scales[rng.integers(0, len(scales), n)].view(np.uint8).reshape(n, 2)
        open(os.path.join(d, f"{name}-random.bin"), "wb").write(bytes([i]) + blocks.tobytes())
        open(os.path.join(d, f"{name}-zero.bin"), "wb").write(bytes([i]) + bytes(bb))
        bad = blocks[:1].copy()
        bad[0, offs[-1]:offs[-1] + 2] = np.array([0x7E00], np.uint16).view(np.uint8)
        open(os.path.join(d, f"{name}-nan-scale.bin"), "wb").write(bytes([i]) + bad.tobytes())
    src = os.path.join(OUT, "gguf", "stories260K-q8_0-small.gguf")
    if os.path.exists(src):
        _, _, tensors, b, ds, _ = read_gguf(src)
        q8 = [t for t in tensors if t[2] == 8]
        if q8:
            off = ds + q8[0][3]
            open(os.path.join(d, "q8_0-stories260K.bin"), "wb").write(bytes([4]) + b[off:off + 4 * 34])


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["quant"]:  # only the fuzz_quant seeds
        quant_seeds()
        sys.exit(0)
    gguf_seeds()
    safetensors_seeds()
    npy_seeds()
    json_seeds()
    quant_seeds()
    for sub in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, sub)
        if os.path.isdir(p):
            print(sub, sorted((f, os.path.getsize(os.path.join(p, f))) for f in os.listdir(p)))
