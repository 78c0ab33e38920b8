"""Shared helpers of the Python-module tests (tests/python): where the built module, the CLI and
the bundled model are, and how to skip loudly (exit 77) when one is missing."""
import os
import subprocess
import sys

SKIP = 77


def skip(msg):
    print(f"SKIPPED: {msg}", file=sys.stderr)
    sys.exit(SKIP)


def import_lmembed():
    """The lmembed module built by the python_module_build test (its --target folder comes first
    on sys.path), or skip."""
    site = os.environ.get("LMEMBED_PYTHON_SITE", "")
    if site:
        if not os.path.isdir(os.path.join(site, "lmembed")):
            skip(f"the lmembed Python module is not built in {site} (test python_module_build)")
        sys.path.insert(0, site)
    try:
        import lmembed  # noqa: F401
    except ImportError as e:
        skip(f"cannot import lmembed: {e}")
    return sys.modules["lmembed"]


def data_dir():
    return os.environ.get("LMEMBED_DATA_DIR") or os.path.join(
        os.path.dirname(__file__), "..", "..", "data")


def tiny_model():
    return os.path.join(data_dir(), "models", "stories260K.gguf")


def cli():
    c = os.environ.get("LMEMBED_TARGET_LMEMBED_CLI") or os.environ.get("LMEMBED_CLI")
    if not c or not os.path.exists(c):
        skip("the lmembed CLI is not built (target lmembed_cli)")
    return c


def run_cli(*args, **kw):
    r = subprocess.run([cli(), *map(str, args)], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"lmembed {' '.join(map(str, args))} failed ({r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def run_pytest(file):
    """Runs this file's tests under pytest (its summary line is what CI reads)."""
    import pytest
    sys.exit(pytest.main([file, "-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
