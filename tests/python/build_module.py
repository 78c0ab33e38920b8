#!/usr/bin/env python3
"""python_module_build: `pip install ./python` into a folder of the build tree (--target), with
the CMake build folder kept there too, so reruns rebuild incrementally. The other Python-module
tests import lmembed from that folder (ctest fixture lmembed_python). Skips (77) when this Python
lacks the build requirements (scikit-build-core, nanobind: scripts/requirements/mteb.txt)."""
import importlib.util
import os
import shutil
import subprocess
import sys
import time

src = os.path.join(os.environ["LMEMBED_SOURCE_DIR"], "python")
site = os.environ["LMEMBED_PYTHON_SITE"]
build = os.path.join(os.environ["LMEMBED_BINARY_DIR"], "python-build")
for mod in ("scikit_build_core", "nanobind", "numpy"):
    if importlib.util.find_spec(mod) is None:
        print(f"SKIPPED: {sys.executable} has no {mod} (scripts/requirements/mteb.txt)",
              file=sys.stderr)
        sys.exit(77)
shutil.rmtree(site, ignore_errors=True)
t0 = time.time()
cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
       "--target", site, "--config-settings", f"build-dir={build}", src]
env = dict(os.environ)
env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
r = subprocess.run(cmd, env=env)
if r.returncode != 0:
    sys.exit(r.returncode)
for f in ("_lmembed.pyi", "py.typed", "st.py", "__init__.py"):
    path = os.path.join(site, "lmembed", f)
    if not os.path.exists(path):
        print(f"FAILED: the installed package lacks {path}", file=sys.stderr)
        sys.exit(1)
print(f"built and installed lmembed into {site} in {time.time() - t0:.0f} s")
print("1 passed, 0 failed")
