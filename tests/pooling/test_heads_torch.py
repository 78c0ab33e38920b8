#!/usr/bin/python3
"""PyTorch reference for the latent and multi_layer heads.

Rebuilds both heads in PyTorch here (the multi_layer head as the paper's PerceiverResampler from
yixuantt/PoolingAndAttn, the latent head as NV-Embed's latent attention with a GELU MLP), loads
the weights lmembed wrote (safetensors parsed with struct/json/numpy), runs the same inputs and
compares the outputs and every parameter gradient of the fixed loss sum(R * normalize(y)), in
float32, to a relative error <= 1e-4 (max |diff| / max |reference| per tensor). Default and
scaled-down paper-shaped configurations. Then a round trip PyTorch -> file -> lmembed -> file.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    print("torch not available: skipping")
    sys.exit(77)

TOOL = os.environ.get("LMEMBED_TARGET_POOLING_REF_TOOL")
if not TOOL or not os.path.exists(TOOL):
    print("LMEMBED_TARGET_POOLING_REF_TOOL not set: skipping")
    sys.exit(77)

TOL = 1e-4
torch.set_num_threads(2)

# ------------------------------------------------------------------ safetensors by hand
DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
DT_NAME = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=DT[info["dtype"]]).copy()
        out[name] = arr.reshape(info["shape"])
    return out, meta


def st_write(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        b = arr.tobytes()
        header[name] = {"dtype": DT_NAME[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ------------------------------------------------------------------ the PyTorch modules
class PreNorm(nn.Module):
    def __init__(self, dim, fn, context_dim=None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x, **kwargs):
        x = self.norm(x)
        if self.norm_context is not None:
            kwargs["context"] = self.norm_context(kwargs["context"])
        return self.fn(x, **kwargs)


class GEGLU(nn.Module):
    def forward(self, x):
        x, gates = x.chunk(2, dim=-1)
        return x * F.gelu(gates)


class FeedForward(nn.Module):
    def __init__(self, dim, mult):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class Mlp(nn.Module):
    def __init__(self, dim, mult):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


def attend(q, k, v, heads, key_mask=None):
    b, nq, inner = q.shape
    dh = inner // heads
    q = q.reshape(b, nq, heads, dh).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, dh).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, dh).transpose(1, 2)
    s = q @ k.transpose(-1, -2) * dh ** -0.5
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    o = s.softmax(dim=-1) @ v
    return o.transpose(1, 2).reshape(b, nq, inner)


class PerceiverAttention(nn.Module):
    """The paper's Attention: queries from `context` (the latents), keys/values from x."""

    def __init__(self, dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, context=None, mask=None):
        q = self.to_q(context)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        return self.to_out(attend(q, k, v, self.heads, mask))


class PerceiverResampler(nn.Module):
    """multi_layer: the paper's module (no final normalize here: lmembed normalizes outside)."""

    def __init__(self, dim, layers, n_latents, heads, dim_head, mult, layer_embedding):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, dim))
        self.pos_emb = nn.Embedding(layers, dim) if layer_embedding else None
        self.cross_attend_blocks = nn.ModuleList([
            PreNorm(dim, PerceiverAttention(dim, heads, dim_head), context_dim=dim),
            PreNorm(dim, FeedForward(dim, mult)),
        ])

    def forward(self, hiddens, mask=None):
        if self.pos_emb is not None:
            hiddens = hiddens + self.pos_emb(torch.arange(hiddens.shape[1]))
        cross_attn, cross_ff = self.cross_attend_blocks
        x = self.latents.unsqueeze(0).expand(hiddens.shape[0], -1, -1)
        x = cross_attn(hiddens, context=x, mask=mask) + x
        x = cross_ff(x) + x
        return x.mean(dim=1)


class LatentAttention(nn.Module):
    """NV-Embed's Attention: queries from the tokens x, keys/values from the latents."""

    def __init__(self, dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, context=None):
        q = self.to_q(x)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        return self.to_out(attend(q, k, v, self.heads))


class LatentPooling(nn.Module):
    def __init__(self, dim, n_latents, heads, dim_head, mult):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, dim))
        self.cross_attend_blocks = nn.ModuleList([
            PreNorm(dim, LatentAttention(dim, heads, dim_head), context_dim=dim),
            PreNorm(dim, Mlp(dim, mult)),
        ])

    def forward(self, hiddens, mask):
        cross_attn, cross_ff = self.cross_attend_blocks
        ctx = self.latents.unsqueeze(0).expand(hiddens.shape[0], -1, -1)
        h = cross_attn(hiddens, context=ctx) + hiddens
        h = cross_ff(h) + h
        m = mask.unsqueeze(-1).float()
        return (h * m).sum(dim=1) / m.sum(dim=1)


def build(pooling, meta):
    d = int(meta["d"])
    heads, hd = int(meta["heads"]), int(meta["head_dim"])
    if pooling == "latent":
        return LatentPooling(d, int(meta["n_latents"]), heads, hd, int(meta["mlp_mult"]))
    emb = pooling in ("multi_layer", "multi_layer_mean")
    return PerceiverResampler(d, int(meta["n_layers"]), int(meta["n_latents"]), heads, hd,
                              int(meta["ff_mult"]), emb)


# ------------------------------------------------------------------ inputs
def make_inputs(pooling, d, L, rng):
    n_seq = 4
    tokens = pooling in ("latent", "multi_layer_tokens")
    if tokens:
        lengths = [5, 1, 8, 3]
        pool_from = [2, 0, 3, 0]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        states = rng.standard_normal((offsets[-1], d)).astype(np.float32) * 2
        n_layers = 1
    else:
        n_layers = L if pooling in ("multi_layer", "multi_layer_mean") else 1
        states = rng.standard_normal((n_seq * n_layers, d)).astype(np.float32) * 2
        offsets = np.zeros(n_seq + 1, np.int64)
        pool_from = [0] * n_seq
    R = rng.standard_normal((n_seq, d)).astype(np.float32)
    return dict(states=states, offsets=offsets, pool_from=np.array(pool_from, np.int64), R=R,
                n_seq=n_seq, n_layers=n_layers, tokens=tokens)


def torch_run(module, pooling, inp):
    """Forward + backward in PyTorch; returns y, d_states (packed layout) and grads by name."""
    states = torch.tensor(inp["states"], requires_grad=True)
    n_seq, d = inp["n_seq"], states.shape[1]
    if inp["tokens"]:
        off, pf = inp["offsets"], inp["pool_from"]
        rows = [list(range(off[s] + pf[s], off[s + 1])) for s in range(n_seq)]
        tmax = max(len(r) for r in rows)
        idx = torch.zeros(n_seq, tmax, dtype=torch.long)
        mask = torch.zeros(n_seq, tmax, dtype=torch.bool)
        for s, r in enumerate(rows):
            idx[s, :len(r)] = torch.tensor(r)
            mask[s, :len(r)] = True
        x = states[idx] * mask.unsqueeze(-1)
        y = module(x, mask)
    else:
        x = states.reshape(n_seq, inp["n_layers"], d)
        y = module(x)
    loss = (torch.tensor(inp["R"]) * F.normalize(y, p=2, dim=-1)).sum()
    module.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().numpy() for n, p in module.named_parameters()}
    return y.detach().numpy(), states.grad.detach().numpy(), grads


def rel(a, b):
    scale = max(float(np.abs(b).max()), 1e-30)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) / scale


failures = []


def check(label, a, b):
    if a.shape != b.shape:
        failures.append(f"{label}: shape {a.shape} vs {b.shape}")
        print(f"  FAIL {label}: shape {a.shape} vs {b.shape}")
        return
    r = rel(a, b)
    ok = r <= TOL
    if not ok:
        failures.append(f"{label}: rel {r:.2e}")
    print(f"  {'ok  ' if ok else 'FAIL'} {label:55s} rel {r:.2e}")


def tool(*args):
    subprocess.run([TOOL, *map(str, args)], check=True)


def compare_case(tmp, label, pooling, d, L, nl=0, heads=0, hd=0, mult=0, seed=1):
    print(f"[{label}] pooling={pooling} d={d} L={L}")
    head = os.path.join(tmp, f"{label}.head.safetensors")
    tool("init", pooling, d, L, nl, heads, hd, mult, seed, head)
    weights, meta = st_read(head)
    assert meta["pooling"] == pooling, meta
    module = build(pooling, meta)
    # strict: every lmembed tensor is a parameter of the PyTorch module and vice versa.
    module.load_state_dict({k: torch.tensor(v) for k, v in weights.items()}, strict=True)
    inp = make_inputs(pooling, d, L, np.random.default_rng(seed))
    inpath = os.path.join(tmp, f"{label}.in.safetensors")
    st_write(inpath, {"states": inp["states"], "offsets": inp["offsets"],
                      "pool_from": inp["pool_from"], "R": inp["R"]},
             {"n_seq": inp["n_seq"], "n_layers": inp["n_layers"]})
    outpath = os.path.join(tmp, f"{label}.out.safetensors")
    tool("run", head, pooling, inpath, outpath)
    out, _ = st_read(outpath)
    y, dstates, grads = torch_run(module, pooling, inp)
    check(f"{label} y", out["y"], y)
    check(f"{label} d_states", out["d_states"], dstates)
    assert set("grad." + k for k in grads) == {k for k in out if k.startswith("grad.")}
    for name, g in grads.items():
        check(f"{label} grad {name}", out["grad." + name], g)


def round_trip(tmp, label, pooling, module, meta, d, L):
    """PyTorch-initialized module -> file -> lmembed (run and re-save) -> PyTorch."""
    print(f"[{label}] round trip PyTorch -> lmembed -> PyTorch")
    path = os.path.join(tmp, f"{label}.torch.safetensors")
    st_write(path, {k: v.detach().numpy() for k, v in module.state_dict().items()},
             dict(meta, pooling=pooling))
    inp = make_inputs(pooling, d, L, np.random.default_rng(7))
    inpath = os.path.join(tmp, f"{label}.in.safetensors")
    st_write(inpath, {"states": inp["states"], "offsets": inp["offsets"],
                      "pool_from": inp["pool_from"], "R": inp["R"]},
             {"n_seq": inp["n_seq"], "n_layers": inp["n_layers"]})
    outpath = os.path.join(tmp, f"{label}.out.safetensors")
    tool("run", path, pooling, inpath, outpath)
    out, _ = st_read(outpath)
    y, _, grads = torch_run(module, pooling, inp)
    check(f"{label} y (torch weights in lmembed)", out["y"], y)
    for name, g in grads.items():
        check(f"{label} grad {name}", out["grad." + name], g)
    back = os.path.join(tmp, f"{label}.back.safetensors")
    tool("resave", pooling, path, back)
    again, meta2 = st_read(back)
    module2 = build(pooling, meta2)
    module2.load_state_dict({k: torch.tensor(v) for k, v in again.items()}, strict=True)
    for k, v in module.state_dict().items():
        if not np.array_equal(module2.state_dict()[k].numpy(), v.numpy()):
            failures.append(f"{label}: {k} changed in the round trip")
    print(f"  ok   {label}: {len(again)} tensors identical after lmembed re-save")


with tempfile.TemporaryDirectory() as tmp:
    # defaults (64 latents, 8 heads x d/8, FF x4; latent: 512 latents)
    compare_case(tmp, "ml_default", "multi_layer", 64, 6)
    compare_case(tmp, "ml_mean_default", "multi_layer_mean", 64, 6)
    compare_case(tmp, "ml_tokens_default", "multi_layer_tokens", 64, 1)
    compare_case(tmp, "ml_eos_default", "multi_layer_eos", 64, 1)
    compare_case(tmp, "latent_default", "latent", 64, 1)
    # paper-shaped, scaled down: the paper has 768 latents, 32 heads x 2048 at d = 4096
    # (inner = 16 d); here d = 32, 96 latents, 4 heads x 128 (inner = 16 d), L = 8.
    compare_case(tmp, "ml_paper_scaled", "multi_layer", 32, 8, nl=96, heads=4, hd=128, mult=4)
    compare_case(tmp, "latent_scaled", "latent", 32, 1, nl=64, heads=4, hd=16, mult=2)

    torch.manual_seed(0)
    m = PerceiverResampler(32, 8, 96, 4, 128, 4, True)
    round_trip(tmp, "rt_multi_layer", "multi_layer", m,
               dict(d=32, n_layers=8, n_latents=96, heads=4, head_dim=128, ff_mult=4), 32, 8)
    torch.manual_seed(1)
    m = LatentPooling(32, 64, 4, 16, 2)
    round_trip(tmp, "rt_latent", "latent", m,
               dict(d=32, n_latents=64, heads=4, head_dim=16, mlp_mult=2), 32, 1)

if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("all PyTorch comparisons within", TOL)
