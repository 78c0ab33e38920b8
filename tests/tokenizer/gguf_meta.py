"""Minimal GGUF metadata reader and writer for the tokenizer's Python reference tests (no tensors).

An independent reader (not lmembed's): parses the GGUF v2/v3 header and key/value section only;
write_gguf writes a GGUF v3 file with metadata only (vocabulary copies with another pre-tokenizer).
"""
import struct

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_metadata(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    version, = struct.unpack_from("<I", data, 4)
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16

    def read_str(pos):
        n, = struct.unpack_from("<Q", data, pos)
        pos += 8
        return data[pos:pos + n].decode("utf-8", errors="surrogateescape"), pos + n

    def read_val(t, pos):
        if t == 8:
            return read_str(pos)
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if et in _SCALAR and et != 7:
                fmt = "<%d%s" % (n, _SCALAR[et])
                vals = list(struct.unpack_from(fmt, data, pos))
                return vals, pos + struct.calcsize(fmt)
            out = []
            for _ in range(n):
                v, pos = read_val(et, pos)
                out.append(v)
            return out, pos
        fmt = "<" + _SCALAR[t]
        v, = struct.unpack_from(fmt, data, pos)
        return v, pos + struct.calcsize(fmt)

    meta = {}
    for _ in range(n_kv):
        key, pos = read_str(pos)
        t, = struct.unpack_from("<I", data, pos)
        pos += 4
        meta[key], pos = read_val(t, pos)
    return meta


def write_gguf(path, meta):
    """Writes `meta` as a GGUF v3 file without tensors (bool, u32, f32, str, [str], [i32])."""
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
        elif isinstance(v, float):
            out.append(struct.pack("<If", 6, v))
        elif isinstance(v, str):
            out.append(struct.pack("<I", 8) + s(v))
        elif isinstance(v, list) and v and isinstance(v[0], str):
            out.append(struct.pack("<IIQ", 9, 8, len(v)) + b"".join(s(x) for x in v))
        elif isinstance(v, list):
            out.append(struct.pack("<IIQ", 9, 5, len(v)) + struct.pack(f"<{len(v)}i", *v))
        else:
            raise TypeError(k)
    with open(path, "wb") as f:
        f.write(b"".join(out))
