"""`mpirun -np N lmembed train` takes the same flags as one process and gives the same head.

stories260K, 40 SNLI triplets, a multi_layer cache; 4 steps on 1 process and on 2 and 3 ranks:
the loss.csv losses agree to 1e-5 relative and every weight tensor to 1e-5 relative in norm,
||w_N - w_1|| / ||w_1||, and only rank 0 writes files and progress. The only difference is the
order in which float32 partial gradients are summed across ranks; AdamW divides each update by
sqrt(v), which magnifies that rounding for elements whose gradient is near zero, so the
element-wise worst case (printed, ~1.5e-5 at 2 ranks) is looser than the norm-wise one.
Skips (77) without mpirun.
"""
import json, os, struct, tempfile

import numpy as np

from mpi_common import CLI, DATA, MPI, run, snli


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32)
    return out


def losses(path):
    rows = open(path).read().split("\n")[1:]
    return np.array([float(r.split(",")[1]) for r in rows if r])


with tempfile.TemporaryDirectory() as tmp:
    t = snli(tmp, 40)
    cache = os.path.join(tmp, "cache")
    run([CLI, "cache", "--model", os.path.join(DATA, "models/stories260K.gguf"), "--capture",
         "multi_layer", "--data", t, "--out", cache, "--threads", "1"])
    train = ["train", "--cache", cache, "--pooling", "multi_layer", "--steps", "4", "--batch",
             "12", "--latents", "4", "--checkpoint-every", "2", "--seed", "7"]
    ref_dir = os.path.join(tmp, "one")
    run([CLI] + train + ["--out", os.path.join(ref_dir, "head.safetensors")])
    ref = read_safetensors(os.path.join(ref_dir, "head.safetensors"))
    ref_loss = losses(os.path.join(ref_dir, "loss.csv"))
    assert len(ref_loss) == 4, ref_loss
    for n in (2, 3):
        d = os.path.join(tmp, f"np{n}")
        r = run(MPI + ["-np", str(n), CLI] + train + ["--out", os.path.join(d, "head.safetensors")])
        # Progress from rank 0 only: one "wrote" line, not n.
        assert r.stderr.count("lmembed train: wrote") == 1, r.stderr
        got = read_safetensors(os.path.join(d, "head.safetensors"))
        assert got.keys() == ref.keys()
        worst = max(float(np.linalg.norm(got[k] - ref[k]) / max(np.linalg.norm(ref[k]), 1e-30))
                    for k in ref)
        elem = max(float(np.abs(got[k] - ref[k]).max() / max(np.abs(ref[k]).max(), 1e-30))
                   for k in ref)
        loss_rel = float(np.abs(losses(os.path.join(d, "loss.csv")) - ref_loss).max() /
                         np.abs(ref_loss).max())
        print(f"np {n}: weights rel (norm) {worst:.3g}, element-wise {elem:.3g}; "
              f"losses max rel {loss_rel:.3g}")
        assert worst <= 1e-5, worst
        assert loss_rel <= 1e-5, loss_rel
print("ok")
