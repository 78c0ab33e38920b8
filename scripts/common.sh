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

BUILD_PACKAGES=(cmake make g++ libeigen3-dev xtensor-dev libgtest-dev libgmock-dev
                libbenchmark-dev clang libclang-rt-14-dev)
REFERENCE_PACKAGES=(python3 python3-numpy python3-torch python3-scipy python3-sklearn python3-regex
                    libopenblas0-pthread openmpi-bin libopenmpi-dev chromium)
