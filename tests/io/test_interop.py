"""Interop of lmembed's safetensors and npy code with independent Python implementations.

Uses only numpy, struct and json (no safetensors package): a file lmembed writes is parsed here
byte by byte, and files written here (np.save, np.lib.format v1/v2, a hand-built safetensors)
are read by lmembed; values must be equal exactly. The C++ side is tests/io/io_tool.cpp.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

TOOL = os.environ.get("LMEMBED_TARGET_LMEMBED_IO_TOOL")
if not TOOL or not os.path.exists(TOOL):
    print("io_tool not built; skipping")
    sys.exit(77)

ST_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I8": "i1", "U8": "u1", "I16": "<i2",
             "I32": "<i4", "I64": "<i8"}
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def tool(*args, stdin=None):
    r = subprocess.run([TOOL, *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"io_tool {args} failed: {r.stderr}")
    return r.stdout


rng = np.random.default_rng(20240902)


def sample(dtype, shape):
    n = int(np.prod(shape)) if shape else 1
    if dtype in ("F32", "F64", "F16", "BF16"):
        v = rng.standard_normal(n) * 3
        v[:3] = [0.0, -0.0, 1e-3][: min(3, n)] if n >= 3 else v[:n]
        if dtype == "F16":
            v = v.astype(np.float16)
        elif dtype == "F32":
            v = v.astype(np.float32)
        return v.reshape(shape)
    info = np.iinfo(np.dtype(ST_DTYPES[dtype]))
    lo, hi = max(info.min, -(2**62)), min(info.max, 2**62)
    v = rng.integers(lo, hi, size=n, dtype=np.int64)
    v[0] = info.min if n else 0
    if n > 1:
        v[1] = info.max
    return v.astype(np.dtype(ST_DTYPES[dtype])).reshape(shape)


def spec_of(tensors, metadata=None):
    spec = {"tensors": [], "metadata": metadata or {}}
    for name, arr, dt in tensors:
        vals = [float(x) if arr.dtype.kind == "f" else int(x) for x in arr.reshape(-1)]
        spec["tensors"].append({"name": name, "dtype": dt, "shape": list(arr.shape),
                                "values": vals})
    return json.dumps(spec)


def read_safetensors_py(path):
    """An independent reader: struct + json + numpy only."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[b:end], dtype=np.dtype(ST_DTYPES[e["dtype"]]))
        out[name] = (e["dtype"], arr.reshape(e["shape"]))
    return out, meta, n


def write_safetensors_py(path, tensors, metadata):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr, dt in tensors:
        b = np.ascontiguousarray(arr).astype(np.dtype(ST_DTYPES[dt])).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def same(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    return a.shape == b.shape and np.array_equal(a.view(np.uint8) if a.dtype == b.dtype else a, b.view(np.uint8) if a.dtype == b.dtype else b)


with tempfile.TemporaryDirectory() as tmp:
    tensors = [("embed", sample("F32", (5, 7)), "F32"),
               ("w64", sample("F64", (3, 2)), "F64"),
               ("half", sample("F16", (4, 8)), "F16"),
               ("ids", sample("I32", (6,)), "I32"),
               ("big", sample("I64", (2, 3)), "I64"),
               ("small", sample("I8", (3,)), "I8"),
               ("bytes", sample("U8", (4,)), "U8"),
               ("short", sample("I16", (2, 2)), "I16"),
               ("scalar", sample("F32", ()), "F32"),
               ("empty", np.zeros((0, 4), np.float32), "F32"),
               ("cube", sample("F32", (2, 3, 4)), "F32")]
    meta = {"pooling": "latent", "format": "pt", "unicode": "naïve café"}

    # 1. lmembed writes safetensors -> Python reads.
    p = os.path.join(tmp, "cpp.safetensors")
    tool("write-safetensors", p, stdin=spec_of(tensors, meta))
    got, got_meta, header_len = read_safetensors_py(p)
    check(got_meta == meta, f"metadata written by lmembed: {got_meta}")
    check(list(got) == [t[0] for t in tensors], f"tensor order {list(got)}")
    check(header_len % 8 == 0, "header padded to 8 bytes")
    for name, arr, dt in tensors:
        gdt, garr = got[name]
        check(gdt == dt, f"{name}: dtype {gdt} != {dt}")
        check(garr.shape == arr.shape, f"{name}: shape {garr.shape} != {arr.shape}")
        check(np.array_equal(garr, arr.astype(garr.dtype)) and garr.tobytes() == arr.astype(garr.dtype).tobytes(),
              f"{name}: values differ")
    print(f"lmembed -> python safetensors: {len(tensors)} tensors checked")

    # 2. Python writes safetensors -> lmembed reads.
    p = os.path.join(tmp, "py.safetensors")
    write_safetensors_py(p, tensors, meta)
    out = json.loads(tool("read-safetensors", p))
    check(out["metadata"] == meta, f"metadata read by lmembed: {out['metadata']}")
    by_name = {t["name"]: t for t in out["tensors"]}
    for name, arr, dt in tensors:
        t = by_name[name]
        check(t["dtype"] == dt, f"{name}: lmembed dtype {t['dtype']}")
        check(tuple(t["shape"]) == arr.shape, f"{name}: lmembed shape {t['shape']}")
        vals = np.array(t["values"], dtype=np.dtype(ST_DTYPES[dt])).reshape(arr.shape)
        check(vals.tobytes() == arr.tobytes(), f"{name}: lmembed values differ")
        fl = np.array(t["as_float"], dtype=np.float32).reshape(arr.shape)
        check(np.array_equal(fl, arr.astype(np.float32)), f"{name}: to_matrix values differ")
    print(f"python -> lmembed safetensors: {len(tensors)} tensors checked")

    # 3. npy both ways: float32, float16, int32, int64 (plus float64), headers v1 and v2.
    for dt, shape in [("F32", (3, 5)), ("F16", (7,)), ("I32", (2, 2, 3)), ("I64", (4,)),
                      ("F64", (2, 3)), ("F32", ()), ("F32", (0, 3))]:
        arr = sample(dt, shape) if int(np.prod(shape)) else np.zeros(shape, np.dtype(ST_DTYPES[dt]))
        # lmembed writes -> numpy loads
        p = os.path.join(tmp, f"cpp_{dt}.npy")
        tool("write-npy", p, stdin=spec_of([("a", arr, dt)]))
        back = np.load(p)
        check(back.dtype == arr.dtype and back.shape == arr.shape and back.tobytes() == arr.tobytes(),
              f"npy {dt}{shape}: numpy read {back.dtype}{back.shape}")
        raw = open(p, "rb").read()
        hl = struct.unpack("<H", raw[8:10])[0]
        check((10 + hl) % 64 == 0 and raw[10 + hl - 1:10 + hl] == b"\n", f"npy {dt}: header layout")
        # numpy writes (v1 via np.save, v2 via format.write_array) -> lmembed reads
        for version in [(1, 0), (2, 0)]:
            p = os.path.join(tmp, f"py_{dt}_{version[0]}.npy")
            with open(p, "wb") as f:
                np.lib.format.write_array(f, arr, version=version)
            t = json.loads(tool("read-npy", p))["tensors"][0]
            check(t["dtype"] == dt and tuple(t["shape"]) == arr.shape,
                  f"npy v{version[0]} {dt}: lmembed read {t['dtype']}{t['shape']}")
            vals = np.array(t["values"], dtype=arr.dtype).reshape(arr.shape)
            check(vals.tobytes() == arr.tobytes(), f"npy v{version[0]} {dt}{shape}: values differ")
    # np.save of a Fortran-order array is refused, not misread.
    p = os.path.join(tmp, "fortran.npy")
    np.save(p, np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    r = subprocess.run([TOOL, "read-npy", p], capture_output=True, text=True)
    check(r.returncode == 1 and "fortran_order" in r.stderr, f"fortran order: {r.stderr}")
    print("npy both ways checked")

if failures:
    print(f"{len(failures)} failures")
    sys.exit(1)
print("all interop checks passed")
