#!/usr/bin/env bash
# Conan 2 for real, offline: `conan create .` builds the lmembed package and runs test_package/
# against local recipes for what Conan Center would provide (ports/conan/: eigen/3.4.0 and nlohmann_json/3.11.2
# wrapping Debian's libeigen3-dev and nlohmann-json3-dev headers). Conan comes from PyPI (scripts/requirements/conan.txt) into a
# cached venv; its home is a scratch folder (CONAN_HOME), with every remote removed, so nothing
# is downloaded. Exit 77 (skip) when Conan cannot be installed (no PyPI).
#   scripts/conan_check.sh [--log FILE] [--head]   (about 1.5 min on 2 cores: mostly the
#                                                    test_package compile)
# --head: run on a `git archive HEAD` copy (committed files only, not the work tree's edits).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LMEMBED_ROOT"
LOGFILE="" HEAD_ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --log) LOGFILE=$2; shift 2 ;;
    --head) HEAD_ONLY=1; shift ;;
    *) echo "usage: $0 [--log FILE] [--head]" >&2; exit 2 ;;
  esac
done
[ -n "$LOGFILE" ] && LOGFILE=$(realpath -m "$LOGFILE")
ensure_packages cmake make g++ libeigen3-dev nlohmann-json3-dev
PY=$(ensure_venv conan scripts/requirements/conan.txt) || { log "SKIP: conan could not be installed"; exit 77; }
# (python -m, not bin/conan: ensure_venv builds the venv under another name, so the entry
# scripts' #! lines name a folder that no longer exists.)
conan() { "$PY" -m conans.conan "$@"; }
SCRATCH=()
trap 'rm -rf "${SCRATCH[@]}"' EXIT
if [ -z "${CONAN_HOME:-}" ]; then
  CONAN_HOME=$(mktemp -d /tmp/lmembed-conan-home.XXXXXX)
  SCRATCH+=("$CONAN_HOME")
fi
export CONAN_HOME
run() {
  if [ -n "$LOGFILE" ]; then "$@" 2>&1 | tee -a "$LOGFILE"; return "${PIPESTATUS[0]}"; fi
  "$@"
}
[ -n "$LOGFILE" ] && : >"$LOGFILE"
t0=$(date +%s)
if [ -n "$HEAD_ONLY" ]; then
  SNAP=$(mktemp -d /tmp/lmembed-conan-src.XXXXXX)
  SCRATCH+=("$SNAP")
  git archive HEAD | tar -x -C "$SNAP"
  cd "$SNAP"
  run echo "sources: git archive of $(git -C "$LMEMBED_ROOT" rev-parse --short HEAD)"
fi
run conan --version
run conan profile detect --force
# Offline: no remote at all (a missing recipe fails at once instead of reaching Conan Center).
for r in $(conan remote list --format json | "$PY" -c 'import json,sys; print(" ".join(x["name"] for x in json.load(sys.stdin)))'); do
  conan remote remove "$r"
done
run conan remote list
run conan export ports/conan/eigen
run conan export ports/conan/nlohmann_json
# -s compiler.cppstd=20: lmembed's validate() requires C++20.
run conan create . --build=missing -s compiler.cppstd=20 -s build_type=Release
run conan list "lmembed/*:*"
rm -rf test_package/build test_package/CMakeUserPresets.json
run echo "conan create . passed in $(( $(date +%s) - t0 )) s"
