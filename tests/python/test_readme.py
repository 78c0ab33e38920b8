#!/usr/bin/env python3
"""python_readme: runs the "From Python" lines a newcomer pastes (README.md's section when it
has one, else docs/python.md's) from the repository root, doctest-style: every `print(...)  #
expected` line must print what its comment says ("..." matches anything). The install line must
be the `pip install ./python` that python_module_build runs."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import pyhelpers as H  # noqa: E402

ROOT = os.environ.get("LMEMBED_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
H.import_lmembed()


def section(path):
    if not os.path.exists(path):
        return None
    text = open(path, encoding="utf-8").read()
    m = re.search(r"^## From Python\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group(1) if m else None


src = "README.md"
body = section(os.path.join(ROOT, "README.md"))
if body is None:
    src, body = "docs/python.md", section(os.path.join(ROOT, "docs", "python.md"))
if body is None:
    print("FAILED: no '## From Python' section in README.md or docs/python.md")
    sys.exit(1)
blocks = re.findall(r"```(\w+)\n(.*?)```", body, re.S)
shell = "".join(b for lang, b in blocks if lang in ("sh", "bash"))
code = "".join(b for lang, b in blocks if lang == "python")
n_lines = len([l for l in (shell + code).splitlines() if l.strip()])
failures = []
if "pip install ./python" not in shell:
    failures.append("the install line is not `pip install ./python`")
if n_lines > 10:
    failures.append(f"{n_lines} lines (at most 10)")
expected = [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+#\s*(.*)$", code, re.M)]
env = dict(os.environ)
env["PYTHONPATH"] = os.environ.get("LMEMBED_PYTHON_SITE", "") + os.pathsep + env.get("PYTHONPATH", "")
r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
print(f"--- {src}, From Python ({n_lines} lines):\n{shell}{code}--- output:\n{r.stdout}{r.stderr}")
if r.returncode != 0:
    failures.append(f"the snippet exited with {r.returncode}")
out = r.stdout.splitlines()
if len(out) != len(expected):
    failures.append(f"{len(out)} lines printed, {len(expected)} expected")
for got, want in zip(out, expected):
    pat = "^" + ".*".join(re.escape(p) for p in want.split("...")) + "$"
    if not re.match(pat, got):
        failures.append(f"printed {got!r}, the comment says {want!r}")
for f in failures:
    print("FAILED:", f)
print(f"{len(expected) + 2 - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
