#!/usr/bin/env python3
"""Crash tests through the CLI on the real model (stories260K) and real data (SNLI triplets).

1. `lmembed cache` is SIGKILLed part way; the rerun keeps the finished shards and its result is
   byte-identical to an uninterrupted cache.
2. `lmembed train` is SIGKILLed at a random step; `--resume` continues from the last checkpoint
   and the final head file is bit-identical to that of an uninterrupted run with the same seed
   (and loss.csv agrees step for step).
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

cli = os.environ.get("LMEMBED_CLI", "")
data = os.environ.get("LMEMBED_DATA_DIR", "")
if not os.path.exists(cli):
    print("lmembed CLI not built:", cli)
    sys.exit(77)
model = os.path.join(data, "models", "stories260K.gguf")
seed = int(os.environ.get("KILL_SEED", str(int(time.time()) % 100000)))
rng = random.Random(seed)
print("kill seed", seed, "(set KILL_SEED to replay)")

tmp = tempfile.mkdtemp(prefix="lmembed-train-resume-")
# Threads that sleep at barriers: spinning OpenMP threads crawl on a loaded 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def run(*args):
    r = subprocess.run([cli, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit("failed: " + " ".join(args))
    return r


def read(p):
    with open(p, "rb") as f:
        return f.read()


try:
    jsonl = os.path.join(tmp, "snli.jsonl")
    run("data", "snli", "--in", os.path.join(data, "datasets", "snli_dev"), "--out", jsonl,
        "--limit", "400")

    # ---- 1. cache: kill, rerun, compare with an uninterrupted run
    cache_args = ["cache", "--model", model, "--capture", "multi_layer", "--data", jsonl,
                  "--shard-kb", "16", "--batch-tokens", "64", "--threads", "1"]
    ref = os.path.join(tmp, "cache-ref")
    t0 = time.time()
    out = run(*cache_args, "--out", ref).stdout
    t_cache = time.time() - t0
    print(out.strip())
    assert "bytes per text" in out
    shards = sorted(f for f in os.listdir(ref) if f.startswith("shard-"))
    assert len(shards) >= 4, shards
    killed_cache = os.path.join(tmp, "cache-killed")
    for attempt in range(5):
        shutil.rmtree(killed_cache, ignore_errors=True)
        p = subprocess.Popen([cli, *cache_args, "--out", killed_cache],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait for at least one finished shard, then kill.
        while p.poll() is None and not os.path.exists(os.path.join(killed_cache, shards[1])):
            time.sleep(0.001)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if p.returncode == -signal.SIGKILL and not os.path.exists(
                os.path.join(killed_cache, shards[-1])):
            break
    else:
        raise SystemExit("could not kill the cache build part way")
    out = run(*cache_args, "--out", killed_cache).stdout
    print("after kill:", out.strip().splitlines()[1])
    kept = int(out.split("shards: ")[1].split("(")[1].split(" kept")[0])
    assert kept >= 1, out
    for f in sorted(os.listdir(ref)):
        assert read(os.path.join(ref, f)) == read(os.path.join(killed_cache, f)), f
    leftovers = [f for f in os.listdir(killed_cache) if ".tmp." in f]
    assert not leftovers, leftovers
    print("cache: killed run resumed, %d shard(s) kept, all files identical" % kept)

    # ---- 2. train: kill at a random step, resume, compare bit for bit
    steps = 30
    train_args = ["train", "--cache", ref, "--pooling", "multi_layer", "--steps", str(steps),
                  "--batch", "16", "--lr", "3e-3", "--warmup", "4", "--seed", "7",
                  "--latents", "32", "--checkpoint-every", "3", "--threads", "2",
                  "--chunk", "20"]
    a_dir = os.path.join(tmp, "a")
    t0 = time.time()
    run(*train_args, "--out", os.path.join(a_dir, "head.safetensors"))
    t_train = time.time() - t0
    b_dir = os.path.join(tmp, "b")
    os.makedirs(b_dir)
    csv_b = os.path.join(b_dir, "loss.csv")
    kill_at = rng.randint(4, steps - 4)
    p = subprocess.Popen([cli, *train_args, "--out", os.path.join(b_dir, "head.safetensors")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = 0
    while p.poll() is None:
        if os.path.exists(csv_b):
            with open(csv_b) as f:
                rows = max(0, len(f.read().splitlines()) - 1)
            if rows >= kill_at:
                break
        time.sleep(0.0005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "training finished before the kill (%.2f s)" % t_train
    assert not os.path.exists(os.path.join(b_dir, "head.safetensors"))
    ckpt = os.path.join(b_dir, "head.ckpt")
    print("train: killed after step %d (target %d) of %d" % (rows, kill_at, steps))
    if os.path.exists(os.path.join(ckpt, "checkpoint.safetensors")):
        run(*train_args, "--out", os.path.join(b_dir, "head.safetensors"), "--resume", ckpt)
    else:  # killed before the first checkpoint: nothing to resume
        run(*train_args, "--out", os.path.join(b_dir, "head.safetensors"))
    ha = read(os.path.join(a_dir, "head.safetensors"))
    hb = read(os.path.join(b_dir, "head.safetensors"))
    assert ha == hb, "resumed head differs from the uninterrupted run"

    def losses(d):
        with open(os.path.join(d, "loss.csv")) as f:
            return [",".join(l.split(",")[:5]) for l in f.read().splitlines()]

    la, lb = losses(a_dir), losses(b_dir)
    assert len(la) == steps + 1, len(la)
    assert la == lb, "loss.csv differs"
    first = sum(float(l.split(",")[1]) for l in la[1:6]) / 5
    last = sum(float(l.split(",")[1]) for l in la[-5:]) / 5
    print("train: resumed head bit-identical; loss %.4f -> %.4f" % (first, last))
    assert last < first, "loss did not fall"
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print("ok")
