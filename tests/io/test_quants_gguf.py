"""lmembed's GGUF dequantization vs PyPI gguf's gguf.quants.dequantize, bit for bit.

Part 1, synthetic: for each of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K a GGUF
written by gguf's GGUFWriter holds
  - data quantized by gguf.quants.quantize (the types gguf can quantize): gaussian rows, rows of
    extreme magnitude (scales near the F16 maximum), tiny rows (subnormal F16 scales), all-zero
    and constant rows;
  - raw random block bytes (every type; the only source for the k-quants, which gguf cannot
    quantize) whose F16 scale fields are replaced by random finite F16s drawn to include zeros,
    negative zero, subnormals, the extremes +-65504 and the rest;
  - a 3-D tensor, so the shape order is checked too.
lmembed's io_tool dumps every tensor as F32 .npy (to_float, the path the model loader uses), and
its bits must equal gguf's. A tensor with a NaN scale must be refused naming tensor and block.

Part 2, the real model (SmolLM2-135M-Instruct Q4_1, skipped loudly when absent): EVERY tensor of
the file, compared the same way. Counts (tensors, blocks, elements, max |diff|) are printed.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import realmodel  # noqa: E402

TOOL = os.environ.get("LMEMBED_TARGET_LMEMBED_IO_TOOL")
if not TOOL or not os.path.exists(TOOL):
    realmodel.skip("io_tool is not built")
try:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf.constants import GGML_QUANT_SIZES
except ImportError as e:
    realmodel.skip(f"PyPI gguf is not importable ({e}); run with the reference venv")

failures = []
stats = {}  # type name -> [tensors, blocks, elements, max |diff|]


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
# Byte offsets of each block's F16 scales (GGML's block_* structs; docs/formats.md).
SCALES = {Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
          Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}
QUANTIZABLE = {Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0}

rng = np.random.default_rng(20261203)


def finite_f16_bits(n):
    """n random finite F16 bit patterns: a quarter special (0, -0, smallest/largest subnormal,
    smallest normal, +-65504, 1), a quarter subnormal, the rest uniform over finite values."""
    special = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
                        0x3C00], dtype=np.uint16)
    out = rng.integers(0, 0x7C00, n, dtype=np.uint16) | (rng.integers(0, 2, n, dtype=np.uint16)
                                                          << 15)
    pick = rng.random(n)
    sub = pick < 0.25
    out[sub] = (rng.integers(1, 0x400, int(sub.sum()), dtype=np.uint16)
                | (rng.integers(0, 2, int(sub.sum()), dtype=np.uint16) << 15))
    sp = pick > 0.75
    out[sp] = special[rng.integers(0, len(special), int(sp.sum()))]
    return out


def raw_blocks(qtype, rows, blocks_per_row):
    """Random block bytes with finite scales, shape (rows, blocks_per_row * type_size)."""
    _, ts = GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, (rows * blocks_per_row, ts), dtype=np.uint8)
    for off in SCALES[qtype]:
        bits = finite_f16_bits(rows * blocks_per_row)
        b[:, off:off + 2] = bits.view(np.uint8).reshape(-1, 2)
    return b.reshape(rows, blocks_per_row * ts)


def float_rows(bs):
    """Float rows for gguf.quants.quantize: gaussian, extreme, tiny, zero, constant, mixed."""
    n = 8 * bs
    rows = [rng.standard_normal((16, n)).astype(np.float32)]
    # Extreme: |x| up to the F16 maximum 65504 (Q4_1/Q5_1 store the row minimum as an F16).
    rows.append((rng.uniform(-1, 1, (8, n)) * 65504).astype(np.float32))
    # Tiny: scales land among the F16 subnormals (< 6.1e-5).
    rows.append((rng.standard_normal((8, n)) * 1e-6).astype(np.float32))
    rows.append(np.zeros((2, n), np.float32))
    rows.append(np.full((2, n), 3.25, np.float32))
    rows.append(np.full((2, n), -1e-5, np.float32))
    mixed = rng.standard_normal((4, n)).astype(np.float32)
    mixed[:, ::7] *= 1000.0
    rows.append(mixed)
    return np.concatenate(rows, axis=0)


def tool(*args):
    r = subprocess.run([TOOL, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def compare(name, qtype, raw, got):
    """gguf's dequantization of `raw` vs lmembed's `got`, bit for bit; updates stats."""
    want = gguf.quants.dequantize(raw, qtype)
    bs, ts = GGML_QUANT_SIZES[qtype]
    check(want.shape == got.shape, f"{name}: shape {got.shape}, gguf says {want.shape}")
    if want.shape != got.shape:
        return
    same = np.array_equal(want.view(np.uint32), got.view(np.uint32))
    diff = float(np.max(np.abs(want.astype(np.float64) - got.astype(np.float64)))) if want.size \
        else 0.0
    if not same:
        bad = np.flatnonzero(want.view(np.uint32).ravel() != got.view(np.uint32).ravel())
        i = bad[0]
        check(False, f"{name} ({qtype.name}): {bad.size} values differ in bits, first at {i} "
                     f"(block {i // bs}): lmembed {got.ravel()[i]!r}, gguf {want.ravel()[i]!r}; "
                     f"max |diff| {diff}")
    check(np.all(np.isfinite(got)), f"{name}: non-finite values from finite scales")
    s = stats.setdefault(qtype.name, [0, 0, 0, 0.0])
    s[0] += 1
    s[1] += want.size // bs
    s[2] += want.size
    s[3] = max(s[3], diff)


def dump(path, outdir, names):
    rc, out, err = tool("dump-gguf", path, outdir, *names)
    if rc != 0:
        raise RuntimeError(f"io_tool dump-gguf {path} failed: {err}")
    return json.loads(out)["tensors"]


# ---------------------------------------------------------------- part 1: synthetic
t0 = time.time()
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "quants.gguf")
    w = gguf.GGUFWriter(path, "llama")
    expect = {}  # name -> (qtype, raw bytes array)
    for qt in TYPES:
        bs, ts = GGML_QUANT_SIZES[qt]
        if qt in QUANTIZABLE:
            raw = gguf.quants.quantize(float_rows(bs), qt)
            expect[f"{qt.name}.quantized"] = (qt, raw)
        expect[f"{qt.name}.raw"] = (qt, raw_blocks(qt, 256, 32 if bs == 32 else 8))
        r3 = raw_blocks(qt, 6, 2).reshape(2, 3, 2 * ts)
        expect[f"{qt.name}.raw3d"] = (qt, r3)
        expect[f"{qt.name}.one_block"] = (qt, raw_blocks(qt, 1, 1))
    for name, (qt, raw) in expect.items():
        w.add_tensor(name, raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = os.path.join(tmp, "out")
    listed = dump(path, out, [])
    check(len(listed) == len(expect), f"io_tool listed {len(listed)} tensors, wrote {len(expect)}")
    for e in listed:
        qt, raw = expect[e["name"]]
        check(e["dtype"] == qt.name, f"{e['name']}: lmembed dtype {e['dtype']}, wrote {qt.name}")
        got = np.load(os.path.join(out, e["name"] + ".npy"))
        compare(e["name"], qt, raw, got)

    # A NaN (then an infinite) scale in block 5 of each type: refused, naming tensor and block.
    for qt in TYPES:
        for bits, kind in ((0x7E00, "NaN"), (0xFC00, "infinity")):
            bs, ts = GGML_QUANT_SIZES[qt]
            raw = raw_blocks(qt, 2, 4)
            off = SCALES[qt][-1]
            blk = raw.reshape(8, ts)
            blk[5, off:off + 2] = np.array([bits], np.uint16).view(np.uint8)
            p = os.path.join(tmp, f"bad_{qt.name}.gguf")
            w = gguf.GGUFWriter(p, "llama")
            w.add_tensor("bad.weight", blk.reshape(2, 4 * ts), raw_dtype=qt)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            rc, _, err = tool("dump-gguf", p, os.path.join(tmp, "bad"))
            check(rc == 1 and "tensor 'bad.weight'" in err and "block 5 of 8" in err
                  and kind in err,
                  f"{qt.name} {kind} scale: rc {rc}, message: {err.strip()}")
print(f"synthetic: {sum(s[0] for s in stats.values())} tensors in {time.time() - t0:.1f} s")
for name in [t.name for t in TYPES]:
    s = stats.get(name)
    check(s is not None and s[1] > 0, f"{name}: nothing compared")
    if s:
        print(f"  {name:5s} tensors {s[0]:3d}  blocks {s[1]:7d}  elements {s[2]:9d}  "
              f"max|diff| {s[3]}")
synthetic = {k: list(v) for k, v in stats.items()}

# ---------------------------------------------------------------- part 2: the real model
stats.clear()
model = os.environ.get("LMEMBED_REAL_MODEL", "")
if not model or not os.path.exists(model):
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    realmodel.model_path()  # skips loudly (exit 77): the synthetic part passed
t0 = time.time()
reader = gguf.GGUFReader(model)
tensors = list(reader.tensors)
with tempfile.TemporaryDirectory() as tmp:
    group = 24  # tensors per io_tool call: a few hundred MB of .npy at most
    for k in range(0, len(tensors), group):
        part = tensors[k:k + group]
        out = os.path.join(tmp, f"g{k}")
        listed = dump(model, out, [t.name for t in part])
        for t, e in zip(part, listed):
            check(e["dtype"] == t.tensor_type.name,
                  f"{t.name}: lmembed dtype {e['dtype']}, gguf {t.tensor_type.name}")
            got = np.load(os.path.join(out, t.name + ".npy"))
            compare(t.name, t.tensor_type, t.data, got)
            os.remove(os.path.join(out, t.name + ".npy"))
n_t = sum(s[0] for s in stats.values())
n_e = sum(s[2] for s in stats.values())
print(f"real model {os.path.basename(model)}: {n_t} of {len(tensors)} tensors, {n_e} elements "
      f"compared in {time.time() - t0:.1f} s")
for name, s in sorted(stats.items()):
    print(f"  {name:5s} tensors {s[0]:3d}  blocks {s[1]:9d}  elements {s[2]:10d}  "
          f"max|diff| {s[3]}")
check(n_t == len(tensors), f"compared {n_t} of {len(tensors)} tensors")
check(stats.get("Q4_1", [0])[0] == 210, f"Q4_1 tensors: {stats.get('Q4_1')}, expected 210")
check(stats.get("Q8_0", [0])[0] == 1, f"Q8_0 tensors: {stats.get('Q8_0')}, expected 1")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("OK: every value bit-identical to gguf.quants.dequantize")
