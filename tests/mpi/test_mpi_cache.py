"""`mpirun -np N lmembed cache` takes the same flags as one process and writes the same folder.

stories260K, 200 SNLI triplets (567 distinct texts), latent capture (all pooled tokens), shards
of about 16 KiB (197 shards, so every rank has many):
  1. one process (no mpirun) builds the reference folder;
  2. 2 and 3 ranks build folders that equal it file for file, byte for byte (index.json,
     texts.jsonl, examples.jsonl, every shard), with the report printed once (rank 0);
  3. 3 ranks, rank 1 is SIGKILLed part way (after its first finished shard): mpirun fails and
     names the signal, the index is not marked complete; a rerun on 2 ranks keeps the finished
     shards (verified by checksum), builds the rest, and equals the reference byte for byte;
  4. a rerun of a complete folder builds nothing.
Skips (77) without mpirun.
"""
import filecmp, json, os, re, shutil, signal, subprocess, sys, tempfile, time

from mpi_common import CLI, DATA, ENV, MPI, run, snli


def same_folder(a, b):
    fa, fb = sorted(os.listdir(a)), sorted(os.listdir(b))
    assert fa == fb, (set(fa) ^ set(fb))
    _, mismatch, errors = filecmp.cmpfiles(a, b, fa, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
    return len(fa)


def shards_line(out):
    m = re.search(r"shards: (\d+) \((\d+) kept, (\d+) built, (\d+) failed", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


def rank_pid(out_dir, rank):
    """The pid of the `lmembed cache` process of MPI rank `rank` writing `out_dir`."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
            if os.fsencode(out_dir) not in cmd or os.path.basename(cmd[0]) != b"lmembed":
                continue
            envs = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in envs:
            return int(p)
    return None


with tempfile.TemporaryDirectory() as tmp:
    t = snli(tmp, 200)

    def cache(out):
        return ["cache", "--model", os.path.join(DATA, "models/stories260K.gguf"), "--capture",
                "latent", "--data", t, "--out", out, "--threads", "1", "--shard-kb", "16"]

    ref = os.path.join(tmp, "ref")
    r = run([CLI] + cache(ref))
    total = shards_line(r.stdout)[0]
    assert total > 100, r.stdout
    print(f"one process: {total} shards")

    for n in (2, 3):
        d = os.path.join(tmp, f"np{n}")
        r = run(MPI + ["-np", str(n), CLI] + cache(d))
        assert r.stdout.count("cache ") == 1 and r.stdout.count("shards:") == 1, r.stdout
        assert shards_line(r.stdout) == (total, 0, total, 0), r.stdout
        files = same_folder(ref, d)
        print(f"np {n}: {files} files equal the one-process folder byte for byte")

    # A rank killed part way: the job fails loudly, a rerun on another rank count resumes.
    killed = os.path.join(tmp, "killed")
    for attempt in range(5):
        shutil.rmtree(killed, ignore_errors=True)
        p = subprocess.Popen(MPI + ["-np", "3", CLI] + cache(killed), env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        progress1 = os.path.join(killed, "progress-1.json")
        pid = None
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline:
            if pid is None:
                pid = rank_pid(killed, 1)
            if pid is not None and os.path.exists(progress1):
                os.kill(pid, signal.SIGSTOP)  # freeze it at once, then look
                break
            time.sleep(0.001)
        if p.poll() is not None or pid is None:
            p.communicate()
            continue
        finished_1 = len(json.load(open(progress1))["shards"])
        os.kill(pid, signal.SIGKILL)
        out, err = p.communicate(timeout=120)
        break
    else:
        sys.exit("could not kill rank 1 part way in 5 attempts")
    print(f"rank 1 killed after {finished_1} finished shard(s); mpirun exit {p.returncode}")
    assert p.returncode != 0, (out, err)
    assert "signal 9" in err or "Killed" in err or "killed" in err, err
    idx = json.load(open(os.path.join(killed, "index.json")))
    assert idx["complete"] is False, "index marked complete after a killed rank"
    r = run(MPI + ["-np", "2", CLI] + cache(killed))
    n_, kept, built, corrupt = shards_line(r.stdout)
    print(f"resume on 2 ranks: {kept} kept, {built} built, {corrupt} failed their checksum")
    assert n_ == total and kept + built == total and corrupt == 0, r.stdout
    assert kept >= finished_1 and built > 0, r.stdout
    same_folder(ref, killed)
    print("resumed folder equals the one-process folder byte for byte")

    r = run([CLI] + cache(killed))
    assert shards_line(r.stdout) == (total, total, 0, 0), r.stdout
print("ok")
