#!/usr/bin/env python3
"""Disk full and kill (issue 19): every command that writes fails cleanly when a write is refused,
and a later run resumes to the same result.

A full disk is simulated per process with RLIMIT_FSIZE (`ulimit -f`) and SIGXFSZ ignored, so a
write past the limit fails with EFBIG as a write to a full file system fails with ENOSPC (both
go through the same checked write; no root, no tmpfs needed); where the test runs as root and
may mount, the same cases run again on a real full file system (a small tmpfs: ENOSPC, "No
space left on device"), then with the tmpfs remounted larger. For `cache`, `train`, `embed`,
`eval --output` and `compare`, under a limit smaller than what the command writes:
  - exit status 1 and one line `lmembed <cmd>: error: ...` that names a file under the output
    and the system's reason ("File too large"), no signal, abort or sanitizer report,
  - no file under its final name that differs from a complete run's (no torn file): every file
    left is byte-identical to the unlimited run's file of the same name, or a temp file,
  - run again without the limit: the command completes (cache and compare resume, reusing what
    was finished) and its outputs equal a clean run's byte for byte (results.json's timings
    aside).
Then SIGKILL at three moments of `lmembed compare` (seeded), each followed by a resumed run:
the final results.json equals a clean run's (timings and run-time fields aside).
Runs on stories260K in about a minute (both modes).
"""
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time

import clitest

CLI = clitest.cli_or_skip()
DATA = clitest.data_dir()
MODEL = os.path.join(DATA, "models", "stories260K.gguf")
BAD = ("AddressSanitizer", "runtime error:", "terminate called", "Aborted",
       "Segmentation fault", "core dumped")
env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive",
           ASAN_OPTIONS="detect_leaks=0:abort_on_error=0")
check = clitest.Checks("lmembed_diskfull_")
p, tmp = check.p, check.tmp


def limited(nbytes):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return pre


def run(args, limit=None, **kw):
    return subprocess.run([CLI] + [str(a) for a in args], capture_output=True, text=True, env=env,
                          preexec_fn=limited(limit) if limit else None, **kw)


def must(args):
    r = run(args)
    if r.returncode != 0:
        sys.exit(f"setup failed: lmembed {' '.join(map(str, args))}\n{r.stderr}")
    return r


def files(root):
    """relative path -> bytes of every file under root (or root itself if a file)."""
    if os.path.isfile(root):  # a single output file: compared under one name
        return {"output": open(root, "rb").read()}
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            full = os.path.join(d, n)
            out[os.path.relpath(full, root)] = open(full, "rb").read()
    return out


def is_temp(name):
    return ".tmp" in os.path.basename(name)


def strip_times(obj):
    """A JSON document without its run-time fields (seconds, timestamps, peak memory, how much
    backbone work this run did rather than reused)."""
    if isinstance(obj, dict):
        return {k: strip_times(v) for k, v in obj.items()
                if not any(w in k for w in ("seconds", "time", "rss", "elapsed", "date", "utc",
                                            "created", "started", "finished", "host", "wall",
                                            "backbone", "stages"))}
    if isinstance(obj, list):
        return [strip_times(v) for v in obj]
    return obj


texts = p("texts.txt")
with open(texts, "w") as f:
    f.write("".join(f"text number {i} about a cat and a dog\n" for i in range(400)))
train = p("train.jsonl")
must(["data", "snli", "--in", os.path.join(DATA, "datasets", "snli_dev"), "--out", train,
      "--limit", "96"])
task = "sts-b"


# Each case: name, the command given its output path, the output path (a file or a folder),
# a comparable form of the output, and the limit in bytes (below what the command writes).
def embed_cmd(out):
    return ["embed", "--model", MODEL, "--input", texts, "--output", out, "--threads", 1]


def cache_cmd(out):
    return ["cache", "--model", MODEL, "--capture", "multi_layer", "--data", train, "--out", out,
            "--threads", 1]


def train_cmd(out):
    return ["train", "--cache", p("ref-cache"), "--pooling", "multi_layer", "--out",
            os.path.join(out, "head.safetensors"), "--steps", 6, "--batch", 16, "--latents", 8,
            "--checkpoint-every", 2, "--threads", 1]


def eval_cmd(out):
    return ["eval", "--model", MODEL, "--attention", "causal", "--pooling", "mean", "--tasks", task,
            "--max-examples", 60,
            "--output", out, "--threads", 1, "--quiet"]


def compare_cmd(out):
    return ["compare", "--model", MODEL, "--train", train, "--designs", "eos-causal,latent-causal",
            "--tasks", task, "--max-examples", 40, "--steps", 4, "--batch", 16, "--threads", 1,
            "--out", out, "--quiet"]


def first_diff(a, b, path=""):
    """The first key path where two JSON values differ (for the failure message)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_diff(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_diff(x, y, f"{path}[{i}]")
    return f"{path}: {str(a)[:80]} vs {str(b)[:80]}"


def comparable(name, rel, data):
    if rel.endswith("loss.csv"):  # its last column is the wall time of each step
        return b"\n".join(line.rsplit(b",", 1)[0] for line in data.splitlines())
    if rel.endswith(".json") or name == "eval":
        return json.dumps(strip_times(json.loads(data)), sort_keys=True).encode()
    if rel.endswith((".md", ".html", ".log", ".txt", "run.json")) and name == "compare":
        return None  # reports carry timings; results.json is what they are rendered from
    return data


cases = [("embed", embed_cmd, "embed.npy", 8192), ("cache", cache_cmd, "cache", 65536),
         ("train", train_cmd, "train", 4096), ("eval", eval_cmd, "eval.json", 1024),
         ("compare", compare_cmd, "cmp", 65536)]

# The reference outputs, unlimited (the train case reads ref-cache).
must(cache_cmd(p("ref-cache")))
for name, cmd, out, _ in cases:
    ref = p("ref-" + out)
    if name != "cache":
        if name == "train":
            os.makedirs(ref, exist_ok=True)
        must(cmd(ref))

def fill_and_resume(name, cmd, out, target, fail_run, reason, space_back=None):
    """Runs `fail_run(args)` (a write is refused partway), checks the failure and what it left
    under `target`, then `space_back()` and a normal run, which must give the clean outputs."""
    how = "under a file-size limit" if space_back is None else "on a full tmpfs"
    if name == "train":
        os.makedirs(target, exist_ok=True)
    r = fail_run(cmd(target))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "error" in ln]
    check(r.returncode == 1, f"{name} {how}: exit status {r.returncode} (want 1)")
    check(not any(b in r.stderr for b in BAD), f"{name} {how}: no abort or sanitizer report")
    msg = lines[-1] if lines else r.stderr.strip()
    check(msg.startswith(f"lmembed {name}: error:") and tmp in msg and reason in msg.lower(),
          f"{name} {how}: one clear line naming the file and the reason: {msg!r}")
    ref = files(p("ref-" + out))
    left = files(target) if os.path.exists(target) else {}

    def same(k, v):
        a, b = comparable(name, k, v), comparable(name, k, ref[k])
        # loss.csv is the log of the steps done so far (a resumed run continues it): a prefix
        # of the complete run's, ended at a line, is what a failure may leave.
        if k.endswith("loss.csv"):
            return b.startswith(a) and (not a or b[len(a):len(a) + 1] in (b"", b"\n"))
        # A cache's index.json is its resume journal (the shards done so far): any complete
        # JSON document is a state a rerun resumes from.
        if k.endswith("index.json"):
            try:
                json.loads(v)
                return True
            except ValueError:
                return False
        # compare rewrites results.json after each finished design (a report of what is done
        # so far): each design it holds must equal the complete run's.
        if k == "results.json":
            got_d = {d["design"]: d for d in json.loads(a)["designs"]}
            ref_d = {d["design"]: d for d in json.loads(b)["designs"]}
            return all(ref_d.get(n) == d for n, d in got_d.items())
        if a != b and k.endswith(".json"):
            print("      differs:", k, first_diff(json.loads(a), json.loads(b)))
        return a == b

    torn = [k for k, v in left.items() if not is_temp(k) and k in ref and not same(k, v)]
    stray = [k for k in left if not is_temp(k) and k not in ref]
    temps = [k for k in left if is_temp(k)]
    check(not torn and not stray and not temps,
          f"{name} {how}: nothing torn or stray left ({len(left)} files kept; torn {torn[:3]}, "
          f"stray {stray[:3]}, temp {temps[:3]})")
    # Space is back: the same command completes and gives the clean run's outputs.
    if space_back:
        space_back()
    r2 = run(cmd(target))
    check(r2.returncode == 0,
          f"{name} {how}: rerun with space back succeeds ({r2.stderr.strip()[:200]})")
    got = files(target)
    diff = [k for k in ref if comparable(name, k, ref[k]) is not None and
            comparable(name, k, got.get(k, b"")) != comparable(name, k, ref[k])]
    for k in diff[:3]:
        if k.endswith(".json") or k == "output":
            print("      differs:", k, first_diff(json.loads(comparable(name, k, got[k])),
                                                  json.loads(comparable(name, k, ref[k]))))
    check(not diff, f"{name} {how}: after the rerun every output equals the clean run's "
                    f"({len(ref)} files; differing: {diff[:3]})")


# 1. RLIMIT_FSIZE: runs everywhere, no privileges.
for name, cmd, out, limit in cases:
    fill_and_resume(name, cmd, out, p(out), lambda args, lim=limit: run(args, limit=lim),
                    "too large")


# 2. A real full file system (ENOSPC): a tmpfs smaller than what the command writes, mounted
# under the test folder; then remounted larger ("space is back"). Needs root and a kernel that
# lets this process mount; otherwise it says so (the RLIMIT cases above still ran).
def total_bytes(root):
    return sum(len(v) for v in files(root).values())


def mount_tmpfs(where, size):
    os.makedirs(where, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where],
                          capture_output=True, text=True)


probe = p("tmpfs-probe")
can_mount = os.geteuid() == 0 and mount_tmpfs(probe, 4096).returncode == 0
if can_mount:
    subprocess.run(["umount", probe])
    for name, cmd, out, _ in cases:
        # Half of what the complete run writes (whole pages: tmpfs counts 4 KiB pages), so the
        # file system fills partway through the command.
        size = total_bytes(p("ref-" + out)) // 2 // 4096 * 4096
        mnt = p("tmpfs-" + name)
        filler = os.path.join(mnt, "filler")
        if size >= 4096:
            check(mount_tmpfs(mnt, size).returncode == 0, f"{name}: mount a {size}-byte tmpfs")
        else:
            # Less than two pages written: start with the file system full (a filler file takes
            # every page), so the first write fails; "space back" removes the filler.
            check(mount_tmpfs(mnt, 65536).returncode == 0, f"{name}: mount a 64 KiB tmpfs")
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                while os.write(fd, b"x" * 4096) > 0:
                    pass
            except OSError:  # ENOSPC: full
                pass
            os.close(fd)
        target = os.path.join(mnt, os.path.basename(out))

        def space_back(m=mnt, fill=filler):
            if os.path.exists(fill):
                os.remove(fill)
            subprocess.run(["mount", "-o", "remount,size=256m", m], check=True)

        try:
            fill_and_resume(name, cmd, out, target, run, "no space left on device",
                            space_back=space_back)
        finally:
            subprocess.run(["umount", "-l", mnt])
else:
    print("SKIP (loudly): the real-ENOSPC cases need root and permission to mount a tmpfs; "
          "the RLIMIT_FSIZE cases above stand in for them", flush=True)

# SIGKILL at random moments of compare (within a clean run's wall time), then resume.
ref = strip_times(json.load(open(p("ref-cmp", "results.json"))))
t0 = time.perf_counter()
must(compare_cmd(p("cmp-timed")))
wall = time.perf_counter() - t0
rng = random.Random(19)
killed = p("cmp-killed")
kills = 0
for attempt in range(3):
    proc = subprocess.Popen([CLI] + [str(a) for a in compare_cmd(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.05, 0.9) * wall / (attempt + 1))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        kills += 1
    proc.wait()
check(kills >= 1, f"compare was killed {kills} times mid-run (clean run {wall:.1f} s)")
r = run(compare_cmd(killed))
check(r.returncode == 0, f"compare after {kills} SIGKILLs resumes ({r.stderr.strip()[:200]})")
got = strip_times(json.load(open(os.path.join(killed, "results.json"))))
check(got == ref, "compare: results.json after kills and resume equals a clean run's" +
      ("" if got == ref else " (" + first_diff(got, ref) + ")"))

check.finish()
