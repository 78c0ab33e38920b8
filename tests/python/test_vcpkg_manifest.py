#!/usr/bin/env python3
"""vcpkg_manifest: vcpkg.json and the overlay port's manifest (ports/lmembed/vcpkg.json) checked
against the rules of vcpkg's manifest schema (vcpkg-tool's docs/vcpkg.schema.json and its
definitions: allowed fields, identifiers, semantic version, dependency objects, features with
descriptions, platform expressions, SPDX license), vcpkg format-manifest's layout (2-space JSON,
dependencies sorted by name), and consistency with CMakeLists.txt and ports/lmembed/portfile.cmake.

No vcpkg binary can be obtained on these machines (it is not on PyPI or in Debian), so neither
`vcpkg format-manifest --all` nor `vcpkg install lmembed --overlay-ports=ports` has been run;
this is what can be checked without it, plus a dry run of the portfile under `cmake -P` with
stand-ins for the vcpkg helpers and tests/consumer built against what it installs."""
import json
import os
import re
import sys

ROOT = os.environ.get("LMEMBED_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
errors = []
checks = 0

IDENT = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
RESERVED = {"prn", "aux", "nul", "con", "core", "default", "all"} | {f"lpt{i}" for i in range(10)} \
    | {f"com{i}" for i in range(10)}
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-]"
                    r"[0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
TOP = {"name", "version-string", "version", "version-date", "version-semver", "port-version",
       "maintainers", "summary", "description", "homepage", "documentation", "license",
       "builtin-baseline", "dependencies", "overrides", "features", "default-features",
       "supports", "vcpkg-configuration"}
DEP_KEYS = {"name", "features", "host", "default-features", "platform", "version>="}
FEATURE_KEYS = {"description", "dependencies", "supports"}
SPDX = re.compile(r"^[A-Za-z0-9.+-]+( (AND|OR|WITH) [A-Za-z0-9.+-]+)*$")


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        errors.append(what)


def platform_ok(expr):
    """vcpkg platform expression: identifiers, !, & / and, | / or, ',' (top-level and), ()."""
    toks = re.findall(r"[a-z0-9-]+|[!&|(),]|\S", expr)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def primary():
        nonlocal pos
        t = peek()
        if t == "!":
            pos += 1
            return primary()
        if t == "(":
            pos += 1
            if not disj():
                return False
            if peek() != ")":
                return False
            pos += 1
            return True
        if t and re.fullmatch(r"[a-z0-9-]+", t):
            pos += 1
            return True
        return False

    def chain(ops, sub):
        nonlocal pos
        if not sub():
            return False
        while peek() in ops:
            pos += 1
            if not sub():
                return False
        return True

    def disj():
        return chain({"|"}, lambda: chain({"&"}, primary))

    return bool(toks) and chain({","}, disj) and pos == len(toks)


def dep_ok(d, where):
    if isinstance(d, str):
        check(IDENT.match(d) and d not in RESERVED, f"{where}: bad port name {d!r}")
        return d
    check(isinstance(d, dict), f"{where}: a dependency is a name or an object")
    check(set(d) - DEP_KEYS <= {k for k in d if k.startswith("$")},
          f"{where}: unknown dependency fields {sorted(set(d) - DEP_KEYS)}")
    check("name" in d and IDENT.match(d["name"]), f"{where}: dependency without a valid name")
    for f in d.get("features", []):
        check(isinstance(f, (str, dict)), f"{where}: bad feature entry {f!r}")
    for k in ("host", "default-features"):
        if k in d:
            check(isinstance(d[k], bool), f"{where}: {k} must be a boolean")
    if "platform" in d:
        check(platform_ok(d["platform"]), f"{where}: bad platform expression {d['platform']!r}")
    return d.get("name", "")


def manifest(path):
    text = open(path, encoding="utf-8").read()
    m = json.loads(text)
    where = os.path.relpath(path, ROOT)
    extra = {k for k in m if not k.startswith("$")} - TOP
    check(not extra, f"{where}: fields the schema does not allow: {sorted(extra)}")
    check("name" in m and IDENT.match(m["name"]) and m["name"] not in RESERVED,
          f"{where}: name must be a lowercase identifier")
    versions = [k for k in ("version-string", "version", "version-date", "version-semver") if k in m]
    check(len(versions) <= 1, f"{where}: more than one version field {versions}")
    if "version-semver" in m:
        check(SEMVER.match(m["version-semver"]), f"{where}: version-semver is not semver")
    if "port-version" in m:
        check(isinstance(m["port-version"], int) and m["port-version"] >= 0, f"{where}: port-version")
    check(isinstance(m.get("description", ""), (str, list)), f"{where}: description")
    if "license" in m:
        check(m["license"] is None or SPDX.match(m["license"]), f"{where}: license not SPDX")
    if "homepage" in m:
        check(re.match(r"^https?://", m["homepage"]), f"{where}: homepage is not a URL")
    if "supports" in m:
        check(platform_ok(m["supports"]), f"{where}: bad supports expression {m['supports']!r}")
    names = [dep_ok(d, f"{where} dependencies") for d in m.get("dependencies", [])]
    check(names == sorted(names), f"{where}: format-manifest sorts dependencies by name: {names}")
    for fname, f in m.get("features", {}).items():
        check(IDENT.match(fname) and fname not in RESERVED, f"{where}: bad feature name {fname!r}")
        check(isinstance(f, dict) and "description" in f, f"{where}: feature {fname} needs a description")
        check(set(f) - FEATURE_KEYS <= {k for k in f if k.startswith("$")},
              f"{where}: feature {fname} has unknown fields {sorted(set(f) - FEATURE_KEYS)}")
        fnames = [dep_ok(d, f"{where} feature {fname}") for d in f.get("dependencies", [])]
        check(fnames == sorted(fnames), f"{where}: feature {fname}'s dependencies unsorted")
        if "supports" in f:
            check(platform_ok(f["supports"]), f"{where}: feature {fname} supports expression")
    for df in m.get("default-features", []):
        name = df if isinstance(df, str) else df.get("name")
        check(name in m.get("features", {}), f"{where}: default feature {name} is not a feature")
    # vcpkg format-manifest writes 2-space indented JSON.
    lines = text.splitlines()
    check(all(len(l) - len(l.lstrip(" ")) in range(0, 40, 2) and "\t" not in l for l in lines),
          f"{where}: not 2-space indented")
    check(text.endswith("\n"), f"{where}: no final newline")
    return m


top = manifest(os.path.join(ROOT, "vcpkg.json"))
port = manifest(os.path.join(ROOT, "ports", "lmembed", "vcpkg.json"))
cmake = open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8").read()
version = re.search(r"project\(lmembed VERSION ([0-9.]+)", cmake).group(1)
check(top["version-semver"] == version == port["version-semver"],
      f"versions: vcpkg.json {top['version-semver']}, port {port['version-semver']}, CMake {version}")
check(top["name"] == port["name"] == "lmembed", "names")
portfile = open(os.path.join(ROOT, "ports", "lmembed", "portfile.cmake"), encoding="utf-8").read()
# Every port feature maps to a CMake option of lmembed in vcpkg_check_features.
block = re.search(r"vcpkg_check_features\((.*?)\)", portfile, re.S).group(1)
pairs = re.findall(r"^\s*([a-z0-9-]+)\s+(LMEMBED_[A-Z_]+)\s*$", block, re.M)
check({f for f, _ in pairs} == set(port.get("features", {})),
      f"portfile features {sorted(f for f, _ in pairs)} vs port manifest {sorted(port['features'])}")
for _, opt in pairs:
    check(f"option({opt} " in cmake, f"portfile passes {opt}, which CMakeLists.txt does not define")
for f in port.get("features", {}):
    check(f in top.get("features", {}), f"port feature {f} missing from vcpkg.json")
# The helper ports the portfile calls are declared as host dependencies.
hosts = {d["name"] for d in port["dependencies"] if isinstance(d, dict) and d.get("host")}
for fn, dep in (("vcpkg_cmake_configure", "vcpkg-cmake"), ("vcpkg_cmake_config_fixup", "vcpkg-cmake-config")):
    if fn in portfile:
        check(dep in hosts, f"portfile calls {fn} but {dep} is not a host dependency")
# The config folder the fixup names is where lmembed installs its CMake package.
m = re.search(r"CONFIG_PATH\s+(\S+)\)", portfile)
check(m and f"{m.group(1)}" in cmake.replace("${CMAKE_INSTALL_DATADIR}", "share"),
      f"portfile CONFIG_PATH {m.group(1) if m else None} is not where CMakeLists.txt installs")
check(os.path.exists(os.path.join(ROOT, "ports", "lmembed", "usage")), "port usage file")

# The portfile itself, run by cmake -P with stand-ins for the vcpkg helpers (see
# vcpkg_portfile_dryrun.cmake), then tests/consumer built against what it installed.
import shutil
import subprocess
import tempfile

tmp = tempfile.mkdtemp(prefix="lmembed-port-")
try:
    pkg, bld = os.path.join(tmp, "pkg"), os.path.join(tmp, "b")
    r = subprocess.run(["cmake", f"-DCURRENT_PACKAGES_DIR={pkg}", f"-DBUILD_DIR={bld}", "-P",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "vcpkg_portfile_dryrun.cmake")],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"portfile dry run failed:\n{r.stdout}{r.stderr}")
    for f in ("share/lmembed/lmembedConfig.cmake", "share/lmembed/usage",
              "share/lmembed/copyright", "include/lmembed/lmembed.hpp"):
        check(os.path.exists(os.path.join(pkg, f)), f"the port did not install {f}")
    check(not os.path.exists(os.path.join(pkg, "share", "cmake")), "share/cmake left behind")
    cb = os.path.join(tmp, "consumer")
    steps = [["cmake", "-S", os.path.join(ROOT, "tests", "consumer"), "-B", cb,
              f"-DCMAKE_PREFIX_PATH={pkg}", "-DCMAKE_BUILD_TYPE=Release"],
             ["cmake", "--build", cb], [os.path.join(cb, "lmembed_consumer")]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        check(r.returncode == 0, f"consumer against the port: {' '.join(cmd)}:\n{r.stdout}{r.stderr}")
        if r.returncode != 0:
            break
    else:
        print("consumer built against the port's install:", r.stdout.strip())
finally:
    shutil.rmtree(tmp, ignore_errors=True)

for e in errors:
    print("FAIL:", e)
print(f"checked vcpkg.json and ports/lmembed: {checks} rules")
print(f"{checks - len(errors)} passed, {len(errors)} failed")
sys.exit(1 if errors else 0)
