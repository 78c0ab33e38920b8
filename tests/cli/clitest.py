"""Shared set-up of the CLI tests (tests/cli/test_*.py): the tool under test, the data folder,
and the ok / FAIL checklist they print with its scratch folder."""
import os
import shutil
import sys
import tempfile


def cli_or_skip():
    """The lmembed CLI of this build tree (ctest's DEPENDS lmembed_cli), or skip (77)."""
    c = os.environ.get("LMEMBED_TARGET_LMEMBED_CLI") or os.environ.get("LMEMBED_CLI")
    if not c or not os.path.exists(c):
        print("SKIPPED: the lmembed CLI is not built", file=sys.stderr)
        sys.exit(77)
    return c


def data_dir():
    """The repository's data/ folder (LMEMBED_DATA_DIR, else beside this file)."""
    return os.environ.get("LMEMBED_DATA_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "data")


class Checks:
    """check(cond, msg) prints `ok` / `FAIL` lines; p(...) is a path in a scratch folder that
    finish() removes when everything passed (and names when something failed)."""

    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.failures = []

    def __call__(self, cond, msg):
        print(("ok    " if cond else "FAIL  ") + msg, flush=True)
        if not cond:
            self.failures.append(msg)

    def p(self, *parts):
        return os.path.join(self.tmp, *parts)

    def finish(self):
        if self.failures:
            print(f"outputs kept in {self.tmp}")
            print(f"{len(self.failures)} failed")
            sys.exit(1)
        shutil.rmtree(self.tmp, ignore_errors=True)
        print("all passed")
        sys.exit(0)
