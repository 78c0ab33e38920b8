#!/usr/bin/python3
"""`lmembed train --device cuda` end to end.

Every build:  `--device tpu` is refused naming the valid devices. A build without CUDA refuses
              `--device cuda` with exit status 1 and "this lmembed was built without CUDA" (then
              the test passes: that is the whole behaviour there); a CUDA build on a machine
              without a GPU refuses it with the driver's reason, then the test skips (77): the
              GPU comparisons below did not run. Both refusals come before the cache is read.
On a GPU:     stories260K + 300 SNLI triplets cached for the multi_layer and the latent heads;
              `train --device cuda` and `--device cpu` with the same options (GradCache chunks,
              warmup, clipping, weight decay): loss.csv agrees step for step (loss within 1e-4
              relative, same lr and text counts), the head files hold the same tensors (same
              names and shapes, values within 1e-3 relative), and a finished run's checkpoint
              loads on the other device and gives back exactly that run's head.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError as e:
    print("skip:", e)
    sys.exit(77)

CLI = os.environ.get("LMEMBED_CLI")
DATA = os.environ.get("LMEMBED_DATA_DIR")
if not CLI or not os.path.exists(CLI) or not DATA:
    print("skip: LMEMBED_CLI / LMEMBED_DATA_DIR missing")
    sys.exit(77)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
tmp = tempfile.mkdtemp(prefix="lmembed_cli_train_device_")
STORIES = os.path.join(DATA, "models", "stories260K.gguf")


def run(*args, ok=True):
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    if ok and r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit("failed: " + " ".join(args))
    return r


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        assert t["dtype"] == "F32", (name, t["dtype"])
        out[name] = np.frombuffer(body[a:b], dtype=np.float32).reshape(t["shape"])
    return out, header.get("__metadata__", {})


def losses(csv):
    with open(csv) as f:
        rows = [l.strip().split(",") for l in f.readlines()[1:] if l.strip()]
    return [(int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows]


try:
    # ---- refusals (every build), before any data is read
    r = run("train", "--cache", "/nonexistent", "--pooling", "multi_layer", "--out",
            os.path.join(tmp, "x.safetensors"), "--device", "tpu", ok=False)
    assert r.returncode != 0 and "unknown device 'tpu'" in r.stderr, r.stderr
    r = run("train", "--cache", "/nonexistent", "--pooling", "multi_layer", "--out",
            os.path.join(tmp, "x.safetensors"), "--device", "cuda", ok=False)
    if "built without CUDA" in r.stderr:
        assert r.returncode == 1, r.returncode
        print("build without CUDA: --device cuda refused:", r.stderr.strip())
        sys.exit(0)
    if "no usable GPU" in r.stderr:
        assert r.returncode == 1, r.returncode
        print("no GPU here: --device cuda refused:", r.stderr.strip())
        print("skip: the GPU comparisons did not run")
        sys.exit(77)
    assert r.returncode != 0 and "nonexistent" in r.stderr, r.stderr  # a GPU: the cache error

    # ---- on a GPU: the same runs on both devices
    jsonl = os.path.join(tmp, "snli.jsonl")
    run("data", "snli", "--in", os.path.join(DATA, "datasets", "snli_dev"), "--out", jsonl,
        "--limit", "300")
    for pooling, capture in (("multi_layer", "multi_layer"), ("latent", "latent")):
        cache = os.path.join(tmp, "cache-" + pooling)
        run("cache", "--model", STORIES, "--capture", capture, "--data", jsonl, "--out", cache,
            "--threads", "2")
        common = ["train", "--cache", cache, "--pooling", pooling, "--steps", "40", "--batch",
                  "24", "--chunk", "20", "--lr", "3e-3", "--warmup", "4", "--clip", "0.5",
                  "--weight-decay", "0.01", "--latents", "16", "--seed", "3", "--threads", "2",
                  "--checkpoint-every", "20"]
        out = {}
        for dev in ("cpu", "cuda"):
            d = os.path.join(tmp, pooling + "-" + dev)
            os.makedirs(d)
            run(*common, "--out", os.path.join(d, "head.safetensors"), "--device", dev)
            out[dev] = d
        lc, lg = losses(os.path.join(out["cpu"], "loss.csv")), losses(
            os.path.join(out["cuda"], "loss.csv"))
        assert len(lc) == len(lg) == 40, (len(lc), len(lg))
        worst = 0.0
        for a, b in zip(lc, lg):
            assert a[0] == b[0] and a[4] == b[4], (a, b)
            assert abs(a[2] - b[2]) <= 1e-9 * max(1.0, abs(a[2])), (a, b)
            rel = abs(a[1] - b[1]) / abs(a[1])
            worst = max(worst, rel)
            assert rel <= 1e-4, (pooling, a, b)
        hc, mc = read_safetensors(os.path.join(out["cpu"], "head.safetensors"))
        hg, mg = read_safetensors(os.path.join(out["cuda"], "head.safetensors"))
        assert mc == mg, (mc, mg)
        assert sorted(hc) == sorted(hg)
        wdiff = max(float(np.abs(hc[k] - hg[k]).max() / max(np.abs(hc[k]).max(), 1e-30))
                    for k in hc)
        assert wdiff <= 1e-3, wdiff
        print(f"[ value ] {pooling}: 40 steps cpu vs cuda: worst loss rel diff {worst:.3g}, "
              f"weights rel diff {wdiff:.3g}")
        # A finished run's checkpoint (step 40) resumed on the other device: it loads (same
        # identity), takes no step and writes exactly the source run's head. (Resuming part way
        # is checked step by step in cuda_head_device_test.)
        for src, dst in (("cuda", "cpu"), ("cpu", "cuda")):
            d = os.path.join(tmp, f"{pooling}-resume-{src}-{dst}")
            os.makedirs(d)
            r = run(*common, "--out", os.path.join(d, "head.safetensors"), "--device", dst,
                    "--resume", os.path.join(out[src], "head.ckpt"))
            assert "resumed from" in r.stderr and "at step 40" in r.stderr, r.stderr
            hr, _ = read_safetensors(os.path.join(d, "head.safetensors"))
            hs = hc if src == "cpu" else hg
            assert all(np.array_equal(hr[k], hs[k]) for k in hs), (pooling, src, dst)
        print(f"{pooling}: checkpoints of either device load on the other")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
