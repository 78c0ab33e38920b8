#!/usr/bin/env python3
"""PyTorch references for tests/train (run by the C++ tests with Debian's /usr/bin/python3).

Matrices are exchanged as text files (numpy.savetxt / loadtxt, full precision), so the C++ side
needs no npy reader. Usage:
  torch_ref.py loss DIR...   reads q p n opts from each DIR, writes loss dq dp dn
  torch_ref.py adamw DIR...  reads w0 grads decay opts, writes w norms (AdamW + schedule + clip)
"""
import os
import sys

import warnings

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
warnings.filterwarnings("ignore", message="loadtxt: input contained no data")


def load(d, name):
    a = np.loadtxt(os.path.join(d, name + ".txt"), dtype=np.float64, ndmin=2)
    return torch.tensor(a)


def opts(d):
    out = {}
    with open(os.path.join(d, "opts.txt")) as f:
        for line in f:
            k, v = line.split()
            out[k] = float(v)
    return out


def save(d, name, t):
    a = t.detach().numpy()
    if a.ndim == 0:
        a = a.reshape(1, 1)
    np.savetxt(os.path.join(d, name + ".txt"), a, fmt="%.17g")


def hard_negative_nll(q, p, n, scale, symmetric, hard):
    # The paper's HardNegativeNLLLoss (llm2vec): cosine of each query with every positive and
    # every hard negative of the batch, times the scale, cross-entropy against its own positive.
    docs = torch.cat([p, n], dim=0) if hard and n.shape[0] > 0 else p
    s = F.normalize(q, p=2, dim=1) @ F.normalize(docs, p=2, dim=1).T * scale
    labels = torch.arange(q.shape[0])
    loss = F.cross_entropy(s, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(s[:, : q.shape[0]].T, labels)) / 2
    return loss


def run_loss(d):
    o = opts(d)
    q = load(d, "q").requires_grad_()
    p = load(d, "p").requires_grad_()
    n = load(d, "n").requires_grad_()
    loss = hard_negative_nll(q, p, n, o["scale"], o["symmetric"] != 0, o["hard"] != 0)
    loss.backward()
    save(d, "loss", loss)
    save(d, "dq", q.grad)
    save(d, "dp", p.grad)
    save(d, "dn", n.grad if n.grad is not None else torch.zeros_like(n))


def run_adamw(d):
    o = opts(d)
    w0 = load(d, "w0")
    dec = load(d, "decay").flatten()  # 1 per row-parameter: each row is its own parameter
    grads = load(d, "grads")  # [steps * rows, cols]
    rows = w0.shape[0]
    params = [torch.nn.Parameter(w0[i].clone()) for i in range(rows)]
    groups = [
        {"params": [params[i] for i in range(rows) if dec[i] != 0], "weight_decay": o["wd"]},
        {"params": [params[i] for i in range(rows) if dec[i] == 0], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=o["lr"], betas=(o["b1"], o["b2"]), eps=o["eps"])
    steps, warm = int(o["steps"]), int(o["warmup"])

    def lam(step):  # transformers.get_linear_schedule_with_warmup
        if step < warm:
            return float(step) / float(max(1, warm))
        return max(0.0, float(steps - step) / float(max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    norms = []
    for s in range(steps):
        for i in range(rows):
            params[i].grad = grads[s * rows + i].clone()
        if o["clip"] > 0:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, o["clip"])))
        else:  # clipping off: only measure
            norms.append(float(torch.norm(torch.stack([p.grad.norm() for p in params]))))
        opt.step()
        sched.step()
    save(d, "w", torch.stack([p.detach() for p in params]))
    save(d, "norms", torch.tensor(norms))


if __name__ == "__main__":
    # One interpreter for every case folder: importing torch is the slow part.
    for d in sys.argv[2:]:
        {"loss": run_loss, "adamw": run_adamw}[sys.argv[1]](d)
