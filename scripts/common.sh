# Shared set-up for scripts/test.sh and scripts/demo.sh (sourced, not run).
# Installs missing Debian packages when run as root; otherwise names them and stops.
set -euo pipefail
LMEMBED_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${JOBS:-$(nproc)}

log() { printf '\033[1m[lmembed]\033[0m %s\n' "$*" >&2; }

# ensure_packages pkg... : apt-get install what is missing (root), or explain and exit.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    log "installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "lmembed: missing Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
}

BUILD_PACKAGES=(cmake make g++ libeigen3-dev nlohmann-json3-dev libcli11-dev xtensor-dev libgtest-dev libgmock-dev
                libbenchmark-dev clang libclang-rt-14-dev)
REFERENCE_PACKAGES=(python3 python3-numpy python3-torch python3-scipy python3-sklearn python3-regex
                    libopenblas0-pthread openmpi-bin libopenmpi-dev chromium)

# The cache folder for what the scripts fetch (models, virtual environments); kept between runs.
LMEMBED_CACHE=${LMEMBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lmembed}
LMEMBED_MODEL_DIR=${LMEMBED_MODEL_DIR:-$LMEMBED_CACHE/models}
export LMEMBED_CACHE LMEMBED_MODEL_DIR

# ensure_venv NAME REQUIREMENTS [system] : a cached venv at $LMEMBED_CACHE/venv-NAME with the pinned
# requirements installed; rebuilt only when the requirements file changes. "system" lets the venv
# see Debian's site packages (python3-torch). Prints the venv's python on stdout; on failure (no
# network, a build error) prints nothing, logs why, and returns 1 so callers can skip loudly.
ensure_venv() {
  local name=$1 req=$2 system=${3:-}
  local dir="$LMEMBED_CACHE/venv-$name" stamp
  stamp=$(sha256sum "$req" | cut -c1-16)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.lmembed-stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$dir/bin/python"; return 0
  fi
  log "building the Python environment $dir from $(basename "$req") (once per machine)"
  # Built in place (a venv's scripts name its folder in their #! lines, so it cannot be renamed);
  # the stamp is written last, so a half-built venv is rebuilt next time.
  rm -rf "$dir"
  local flags=()
  [ "$system" = system ] && flags+=(--system-site-packages)
  if ! /usr/bin/python3 -m venv "${flags[@]}" "$dir" >&2; then
    log "WARNING: python3 -m venv failed"; return 1
  fi
  # CMAKE_BUILD_PARALLEL_LEVEL: llama-cpp-python's source build uses every core.
  if ! CMAKE_BUILD_PARALLEL_LEVEL=$JOBS "$dir/bin/python" -m pip install -q \
        --cache-dir "$LMEMBED_CACHE/pip" -r "$req" >&2; then
    log "WARNING: pip could not install $(basename "$req") (no network to PyPI?)"
    rm -rf "$dir"; return 1
  fi
  echo "$stamp" >"$dir/.lmembed-stamp"
  echo "$dir/bin/python"
}
