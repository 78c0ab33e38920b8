"""What the CLI tests under mpirun share: skip without mpirun, the launcher prefix, the env."""
import os, shutil, subprocess, sys

MPIRUN = shutil.which("mpirun")
if not MPIRUN:
    print("mpirun not found: skipped")
    sys.exit(77)
CLI = os.environ["LMEMBED_CLI"]
DATA = os.environ["LMEMBED_DATA_DIR"]
# One OpenMP thread per rank, no busy-waiting: ranks share this machine's cores.
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
MPI = [MPIRUN, "--oversubscribe", "--allow-run-as-root"]


def run(args, expect_ok=True, timeout=300):
    """Runs a command; exits the test with its output when it fails and expect_ok."""
    r = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=timeout)
    if expect_ok and r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def snli(tmp, limit):
    """`lmembed data snli` of the bundled SNLI dev split, first `limit` triplets."""
    t = os.path.join(tmp, "t.jsonl")
    run([CLI, "data", "snli", "--in", os.path.join(DATA, "datasets/snli_dev"), "--out", t,
         "--limit", str(limit)])
    return t
