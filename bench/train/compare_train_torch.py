#!/usr/bin/python3
"""Steps/s of multi_layer head training in lmembed vs the same loop in PyTorch (CPU), on the
same cached tensors, 2 threads each, ratio printed in one run.

usage: /usr/bin/python3 bench/train/compare_train_torch.py BUILD/bench/bench_train
           [--steps N] [--batch B] [--latents N] [--cache DIR] [--force]

Sizes: Qwen2-0.5B (d = 896, L = 24); a batch of B examples (default 256), each with a hard
negative, i.e. 3 B texts embedded per step; the paper's multi_layer module (PerceiverResampler:
64 latents, 8 heads x 112, GEGLU FF x4) in PyTorch, InfoNCE with hard negatives (scale 20),
clip_grad_norm_(1.0), AdamW. lmembed runs the same step (all texts in one pass, no GradCache
recompute). bench_train writes the cache (random N(0, 1) states) and both sides read it.

PyTorch must run on an optimized BLAS: a 2048^2 matmul must reach 100 GFLOP/s (Debian's
python3-torch calls libblas.so.3, which must be OpenBLAS: libopenblas0-pthread), and
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for it.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(k, None)
os.environ["OPENBLAS_NUM_THREADS"] = "2"
os.environ["OMP_NUM_THREADS"] = "2"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(2)


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


if len(sys.argv) < 2 or not os.path.exists(sys.argv[1]):
    sys.exit(__doc__)
BENCH = sys.argv[1]
STEPS, BATCH, LATENTS = arg("--steps", 2), arg("--batch", 256), arg("--latents", 64)
CACHE = arg("--cache", os.path.join(tempfile.gettempdir(), "lmembed-bench-train-%d" % BATCH))


# ---- the paper's multi_layer module (as tests/pooling/test_heads_torch.py)
class PreNorm(nn.Module):
    def __init__(self, dim, fn, context_dim=None):
        super().__init__()
        self.fn, self.norm = fn, nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim else None

    def forward(self, x, **kw):
        x = self.norm(x)
        if self.norm_context is not None:
            kw["context"] = self.norm_context(kw["context"])
        return self.fn(x, **kw)


class GEGLU(nn.Module):
    def forward(self, x):
        x, gates = x.chunk(2, dim=-1)
        return x * F.gelu(gates)


class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, context=None):
        q = self.to_q(context)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        b, nq, inner = q.shape
        dh = inner // self.heads
        q = q.reshape(b, nq, self.heads, dh).transpose(1, 2)
        k = k.reshape(b, -1, self.heads, dh).transpose(1, 2)
        v = v.reshape(b, -1, self.heads, dh).transpose(1, 2)
        o = (q @ k.transpose(-1, -2) * dh ** -0.5).softmax(-1) @ v
        return self.to_out(o.transpose(1, 2).reshape(b, nq, inner))


class PerceiverResampler(nn.Module):
    def __init__(self, dim, layers, n_latents, heads, dim_head, mult=4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, dim))
        self.pos_emb = nn.Embedding(layers, dim)
        self.cross_attend_blocks = nn.ModuleList([
            PreNorm(dim, Attention(dim, heads, dim_head), context_dim=dim),
            PreNorm(dim, nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(),
                                       nn.Linear(dim * mult, dim))),
        ])

    def forward(self, h):
        h = h + self.pos_emb(torch.arange(h.shape[1]))
        attn, ff = self.cross_attend_blocks
        x = self.latents.unsqueeze(0).expand(h.shape[0], -1, -1)
        x = attn(h, context=x) + x
        x = ff(x) + x
        return x.mean(dim=1)


def hard_negative_nll(q, p, n, scale=20.0):
    docs = torch.cat([p, n])
    s = F.normalize(q, dim=1) @ F.normalize(docs, dim=1).T * scale
    return F.cross_entropy(s, torch.arange(q.shape[0]))


def read_cache(d):
    """Every text's [L, d] states (float32) and the examples as text ids."""
    idx = json.load(open(os.path.join(d, "index.json")))
    L, D = idx["n_layers"], idx["d"]
    assert idx["dtype"] == "F32" or idx["dtype"].lower() == "f32", idx["dtype"]
    states = np.empty((idx["n_texts"], L, D), dtype=np.float32)
    for s in idx["shards"]:
        raw = np.memmap(os.path.join(d, s["file"]), dtype=np.uint8, mode="r")
        magic, _ver, _dt, first, n, items, nl, dd, _ = struct.unpack("<8sII6q", bytes(raw[:64]))
        assert magic == b"LMECSHD1" and nl == L and dd == D and items == n
        off = 64 + ((n + 1) * 8 + n * 4 + 63) // 64 * 64
        states[first:first + n] = np.frombuffer(raw, np.float32, n * L * D, off).reshape(n, L, D)
    ex = [json.loads(l) for l in open(os.path.join(d, "examples.jsonl"))]
    return torch.from_numpy(states), ex


def main():
    # 1. PyTorch's BLAS must be a real one.
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    gflops = 5 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9
    print("PyTorch %s, 2048^2 matmul on 2 threads: %.0f GFLOP/s" % (torch.__version__, gflops))
    if gflops < 100:
        msg = ("PyTorch's BLAS reaches %.0f < 100 GFLOP/s: not a meaningful comparison (install "
               "libopenblas0-pthread, or the machine is loaded)" % gflops)
        if "--force" not in sys.argv:
            sys.exit(msg)
        print("WARNING:", msg, "- going on because of --force")

    # 2. lmembed (also writes the cache when absent).
    cmd = [BENCH, "--cache", CACHE, "--steps", str(STEPS), "--threads", "2", "--batch",
           str(BATCH), "--latents", str(LATENTS), "--chunk", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    ours = json.loads(r.stdout.strip().splitlines()[-1])
    print("lmembed: %.4f steps/s (median of %d steps, %.2f s/step)" %
          (ours["steps_per_s"], STEPS, ours["median_s"]))

    # 3. PyTorch on the same cached tensors, same step.
    states, ex = read_cache(CACHE)
    L, D = states.shape[1], states.shape[2]
    torch.manual_seed(1)
    head = PerceiverResampler(D, L, LATENTS, 8, (D + 7) // 8)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4, weight_decay=0.0)
    batch = ex[:BATCH]
    ids = [e[0] for e in batch] + [e[1] for e in batch] + [e[2] for e in batch]
    times = []
    for step in range(STEPS + 1):  # step 0 warms up
        t = time.perf_counter()
        emb = head(states[ids])
        q, p, n = emb[:BATCH], emb[BATCH:2 * BATCH], emb[2 * BATCH:]
        loss = hard_negative_nll(q, p, n)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t
        print("torch: step %d %.2f s, loss %.4f" % (step, dt, float(loss)))
        if step:
            times.append(dt)
    times.sort()
    torch_sps = 1.0 / times[len(times) // 2]
    print("PyTorch: %.4f steps/s (median of %d steps, %.2f s/step)" %
          (torch_sps, STEPS, times[len(times) // 2]))
    print("multi_layer training, d=%d L=%d batch %d + %d hard negatives (%d texts/step), "
          "%d latents, 2 threads: lmembed / PyTorch = %.2fx" %
          (D, L, BATCH, BATCH, 3 * BATCH, LATENTS, ours["steps_per_s"] / torch_sps))


main()
