#!/usr/bin/python3
"""Times forward + backward of the multi_layer and latent heads in lmembed and in PyTorch (CPU,
2 threads) at Qwen2-0.5B-like sizes (d = 896, L = 24, batch 64) and prints the ratios, in one
run with the two sides interleaved.

usage: /usr/bin/python3 bench/compare_heads_torch.py BUILD/bench/bench_pooling [--rounds N]

PyTorch must run on an optimized BLAS: the script first times a 2048^2 matmul and refuses to
report ratios below 100 GFLOP/s (Debian's python3-torch uses the system libblas.so.3, which
must be OpenBLAS: install libopenblas0-pthread). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset
for the PyTorch side.
"""
import json
import os
import statistics
import subprocess
import sys
import time

for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(k, None)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(2)
D, L, B, T = 896, 24, 64, 32


# The same modules as tests/pooling/test_heads_torch.py (the paper's PerceiverResampler, with
# the latents repeated per text as the paper's code does; NV-Embed's latent attention).
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
        x, g = x.chunk(2, dim=-1)
        return x * F.gelu(g)


def attend(q, k, v, heads):
    b, nq, inner = q.shape
    dh = inner // heads
    q = q.reshape(b, nq, heads, dh).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, dh).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, dh).transpose(1, 2)
    o = (q @ k.transpose(-1, -2) * dh ** -0.5).softmax(-1) @ v
    return o.transpose(1, 2).reshape(b, nq, inner)


class Attn(nn.Module):
    def __init__(self, dim, heads, dh, q_from_context):
        super().__init__()
        self.heads, self.q_from_context = heads, q_from_context
        self.to_q = nn.Linear(dim, heads * dh, bias=False)
        self.to_kv = nn.Linear(dim, 2 * heads * dh, bias=False)
        self.to_out = nn.Linear(heads * dh, dim, bias=False)

    def forward(self, x, context=None):
        qs, kvs = (context, x) if self.q_from_context else (x, context)
        k, v = self.to_kv(kvs).chunk(2, dim=-1)
        return self.to_out(attend(self.to_q(qs), k, v, self.heads))


class MultiLayer(nn.Module):
    def __init__(self, n_latents, heads=8, dh=112, mult=4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, D))
        self.pos_emb = nn.Embedding(L, D)
        self.cross_attend_blocks = nn.ModuleList([
            PreNorm(D, Attn(D, heads, dh, True), context_dim=D),
            PreNorm(D, nn.Sequential(nn.Linear(D, D * mult * 2), GEGLU(), nn.Linear(D * mult, D)))])

    def forward(self, h):
        h = h + self.pos_emb(torch.arange(h.shape[1]))
        a, f = self.cross_attend_blocks
        x = self.latents.unsqueeze(0).repeat(h.shape[0], 1, 1)
        x = a(h, context=x) + x
        x = f(x) + x
        return x.mean(1)


class Latent(nn.Module):
    def __init__(self, n_latents, heads=8, dh=112, mult=4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, D))
        self.cross_attend_blocks = nn.ModuleList([
            PreNorm(D, Attn(D, heads, dh, False), context_dim=D),
            PreNorm(D, nn.Sequential(nn.Linear(D, D * mult), nn.GELU(), nn.Linear(D * mult, D)))])

    def forward(self, h):
        a, f = self.cross_attend_blocks
        ctx = self.latents.unsqueeze(0).repeat(h.shape[0], 1, 1)
        h = a(h, context=ctx) + h
        h = f(h) + h
        return h.mean(1)


def torch_time(module, x, reps):
    """(wall s, process CPU s) medians of forward + backward."""
    dy = torch.randn(B, D)
    wall, cpu = [], []
    for i in range(reps + 1):
        xx = x.clone().requires_grad_(True)
        module.zero_grad()
        t, c = time.perf_counter(), time.process_time()
        (module(xx) * dy).sum().backward()
        if i:  # the first run warms up
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def lmembed_times(binary):
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_min_time=2"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        # "BM_X/64/min_time:2.000/real_time" -> "BM_X/64"
        # (wall s, process CPU s); the benchmark measures the CPU time of all its threads
        res["/".join(b["name"].split("/")[:2])] = (b["real_time"] / 1e3, b["cpu_time"] / 1e3)
    return res


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 2
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    gflops = 2 * 2048 ** 3 / ((time.perf_counter() - t) / 5) / 1e9
    print(f"PyTorch {torch.__version__}, 2 threads: 2048^2 matmul {gflops:.0f} GFLOP/s")
    valid = gflops >= 100
    if not valid:
        print("WARNING: PyTorch runs below 100 GFLOP/s (reference BLAS, or a loaded machine): "
              "ratios below are not meaningful")
    cases = [("multi_layer", 64, lambda: MultiLayer(64), (B, L, D), "BM_MultiLayerForwardBackward/64"),
             ("multi_layer", 256, lambda: MultiLayer(256), (B, L, D), "BM_MultiLayerForwardBackward/256"),
             ("latent", 128, lambda: Latent(128), (B, T, D), "BM_LatentForwardBackward/128"),
             ("latent", 512, lambda: Latent(512), (B, T, D), "BM_LatentForwardBackward/512")]
    ours = {c[4]: [] for c in cases}
    theirs = {c[4]: [] for c in cases}
    modules = {c[4]: c[2]() for c in cases}
    for r in range(rounds):  # interleave: lmembed, then PyTorch, per round
        lm = lmembed_times(binary)
        for _, _, _, shape, key in cases:
            ours[key].append(lm[key])
            theirs[key].append(torch_time(modules[key], torch.randn(*shape), 2))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    print(f"\nforward + backward, d = {D}, batch {B}, 8 heads x 112, FF/MLP x4; "
          f"multi_layer: L = {L}; latent: {T} tokens per text (medians of {rounds} rounds)")
    print("wall = elapsed seconds; cpu = CPU seconds of all threads of the process (robust to a "
          "shared machine: the work each side does)")
    print(f"{'head':12s} {'latents':>7s} {'lmembed wall':>12s} {'PyTorch wall':>12s} "
          f"{'ratio':>6s} {'lmembed cpu':>11s} {'PyTorch cpu':>11s} {'ratio':>6s}")
    for name, nl, _, _, key in cases:
        ow = statistics.median(o[0] for o in ours[key])
        oc = statistics.median(o[1] for o in ours[key])
        pw = statistics.median(p[0] for p in theirs[key])
        pc = statistics.median(p[1] for p in theirs[key])
        print(f"{name:12s} {nl:7d} {ow:12.3f} {pw:12.3f} {pw / ow:5.1f}x {oc:11.3f} {pc:11.3f} "
              f"{pc / oc:5.1f}x")
    if not valid:
        print("(not valid: PyTorch BLAS below 100 GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
