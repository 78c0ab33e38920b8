#!/usr/bin/env python3
"""Training steps/s of the multi_layer head: lmembed's cuda::DeviceTrainer vs PyTorch eager.

Runs bench_train_cuda (the C++ side: a random-state train::Cache, then timed DeviceTrainer
steps) and the same GradCache loop in PyTorch eager on the same GPU, one shape after the other,
and prints the ratio lmembed / PyTorch in steps/s.

The PyTorch loop is what a user of the paper's code would write: the PerceiverResampler-style
head (latents + layer embedding, pre-norm cross-attention with einsum + softmax, GEGLU
feed-forward, mean over the latents), float32 with TF32 off (PyTorch's default for matmuls and
ours), GradCache (embed every text in chunks without a graph, InfoNCE over the whole batch with
the hard negatives, then each chunk again with its slice of the embedding gradient),
clip_grad_norm_, torch.optim.AdamW. The states live in pinned host memory and are copied per
chunk, as lmembed streams them from its cache.

Usage: compare_train_torch_cuda.py --bench build/bench/bench_train_cuda [--shapes qwen2-0.5b,
       mistral-7b] [--steps 3] [--out results.json]
Exit 77 when there is no GPU or no CUDA-enabled torch.
"""
import argparse
import json
import math
import subprocess
import sys
import time

SHAPES = {
    # name: d, L, latents, heads, head_dim, ff_mult, batch, chunk
    "qwen2-0.5b": dict(d=896, L=24, latents=64, heads=8, head_dim=112, ff=4, batch=2048, chunk=512),
    "mistral-7b": dict(d=4096, L=32, latents=768, heads=8, head_dim=512, ff=4, batch=64, chunk=16),
}


def torch_steps_per_s(shape, steps):
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    s = SHAPES[shape]
    d, L, nl, H, hd, ff = s["d"], s["L"], s["latents"], s["heads"], s["head_dim"], s["ff"]
    inner = H * hd

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.latents = nn.Parameter(torch.randn(nl, d))
            self.pos_emb = nn.Embedding(L, d)
            self.norm = nn.LayerNorm(d)
            self.norm_context = nn.LayerNorm(d)
            self.to_q = nn.Linear(d, inner, bias=False)
            self.to_kv = nn.Linear(d, 2 * inner, bias=False)
            self.to_out = nn.Linear(inner, d, bias=False)
            self.ff_norm = nn.LayerNorm(d)
            self.ff_in = nn.Linear(d, 2 * ff * d)
            self.ff_out = nn.Linear(ff * d, d)

        def forward(self, h):  # h [b, L, d]
            b = h.shape[0]
            x = self.norm(h + self.pos_emb.weight)
            lat = self.latents.unsqueeze(0).expand(b, nl, d)
            q = self.to_q(self.norm_context(lat))
            k, v = self.to_kv(x).chunk(2, dim=-1)
            q, k, v = (t.reshape(b, -1, H, hd).transpose(1, 2) for t in (q, k, v))
            sim = torch.einsum("bhid,bhjd->bhij", q, k) * hd ** -0.5
            o = torch.einsum("bhij,bhjd->bhid", sim.softmax(dim=-1), v)
            x1 = self.to_out(o.transpose(1, 2).reshape(b, nl, inner)) + lat
            a, g = self.ff_in(self.ff_norm(x1)).chunk(2, dim=-1)
            x2 = x1 + self.ff_out(a * F.gelu(g))
            return x2.mean(dim=1)

    head = Head().to(dev)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4, weight_decay=0.0)
    B = s["batch"]
    n = 3 * B  # queries, positives, one hard negative each: all distinct
    states = torch.rand(n, L, d).mul_(2).sub_(1).pin_memory()
    chunk = s["chunk"]

    def info_nce(e):
        q, c = F.normalize(e[:B], dim=-1), F.normalize(e[B:], dim=-1)
        scores = 20.0 * q @ c.T
        return F.cross_entropy(scores, torch.arange(B, device=dev))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            emb = torch.cat([head(states[i:i + chunk].to(dev, non_blocking=True))
                             for i in range(0, n, chunk)])
        emb.requires_grad_(True)
        loss = info_nce(emb)
        loss.backward()
        for i in range(0, n, chunk):
            out = head(states[i:i + chunk].to(dev, non_blocking=True))
            out.backward(emb.grad[i:i + chunk])
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        return loss.item()

    secs = []
    for i in range(steps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"torch {shape} step {i}: {dt:.3f} s, loss {loss:.5f}", file=sys.stderr)
        if i > 0:
            secs.append(dt)
    secs.sort()
    med = secs[len(secs) // 2]
    peak = torch.cuda.max_memory_allocated() / 2**30
    del head, opt, states
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return dict(impl="torch", shape=shape, seconds_per_step=med, steps_per_s=1.0 / med,
                peak_gib=peak, torch=torch.__version__, gpu=torch.cuda.get_device_name())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of the bench_train_cuda binary")
    ap.add_argument("--shapes", default="qwen2-0.5b,mistral-7b")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dir", default=None, help="folder for the benchmark's cache")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    try:
        import torch
        if not torch.cuda.is_available():
            print("torch has no CUDA device here: skipping", file=sys.stderr)
            return 77
    except ImportError:
        print("no torch: skipping", file=sys.stderr)
        return 77
    results = []
    for shape in args.shapes.split(","):
        cmd = [args.bench, "--shape", shape, "--steps", str(args.steps)]
        if args.dir:
            cmd += ["--dir", args.dir]
        p = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(p.stderr)
        if p.returncode != 0:
            print(f"bench_train_cuda failed ({p.returncode}) for {shape}", file=sys.stderr)
            return 1
        ours = json.loads(p.stdout.strip().splitlines()[-1])
        theirs = torch_steps_per_s(shape, args.steps)
        ratio = ours["steps_per_s"] / theirs["steps_per_s"]
        results.append(dict(shape=shape, lmembed=ours, torch=theirs, ratio=ratio))
        print(f"{shape}: lmembed {ours['steps_per_s']:.3f} steps/s "
              f"({ours['seconds_per_step']:.3f} s), torch eager {theirs['steps_per_s']:.3f} steps/s "
              f"({theirs['seconds_per_step']:.3f} s), ratio {ratio:.2f}x "
              f"[{ours['texts']} texts/step, chunk {ours['chunk']}, {ours['gpu']}]", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(math.isfinite(r["ratio"]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
