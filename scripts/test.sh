#!/usr/bin/env bash
# scripts/test.sh - README command two: set up, build and run every test.
#   1. installs missing Debian packages (as root), fetches the real model (scripts/fetch_models.sh)
#      and builds the cached reference Python venv (scripts/requirements/reference.txt; skipped
#      loudly without PyPI), 2. configures and builds the default preset,
#   3. runs ctest, 4. installs lmembed into a temporary prefix and builds/runs the consumer,
#   5. builds the asan preset and runs the unit tests and the CLI tests under ASan/UBSan,
#   6. runs each fuzzer.
# Environment: JOBS (parallel build jobs), FUZZ_SECONDS (default 60; 0 skips fuzzing).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LMEMBED_ROOT"
start=$(date +%s)
ensure_packages "${BUILD_PACKAGES[@]}" "${REFERENCE_PACKAGES[@]}"

ensure_packages python3-venv python3-dev
# The real model and the reference stack: without network the reference tests skip loudly.
real_model=$(scripts/fetch_models.sh) || { log "WARNING: no real model: its tests will SKIP"; real_model=""; }
ref_python=$(ensure_venv light scripts/requirements/reference.txt system) ||
  { log "WARNING: no reference venv: the llama.cpp/transformers tests will SKIP"; ref_python=""; }
mteb_python=$(ensure_venv mteb scripts/requirements/mteb.txt) ||
  { log "WARNING: no MTEB venv: the Python-module and MTEB tests will SKIP"; mteb_python=""; }

log "configure + build (preset default)"
extra=(-DLMEMBED_MPI=ON "-DLMEMBED_REAL_MODEL=$real_model" "-DLMEMBED_REFERENCE_PYTHON=$ref_python"
       "-DLMEMBED_MTEB_PYTHON=$mteb_python")
# CUDA code is compiled (not run) wherever nvcc exists; GPU tests skip without a device.
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  # One architecture is enough to prove the device code compiles; users get 80;90 by default.
  # Without a GPU, PTX is enough too (90-virtual: no SASS assembly, about 15% of nvcc's time).
  arch=90
  nvidia-smi -L >/dev/null 2>&1 || arch=90-virtual
  extra+=(-DLMEMBED_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${LMEMBED_CUDA_ARCHITECTURES:-$arch}")
fi
cmake --preset default "${extra[@]}" >/dev/null
cmake --build --preset default -j "$JOBS"

log "ctest (preset default)"
ctest --preset default -j "$JOBS" --timeout 900 2>&1 | tee build/ctest.log | grep -E "tests passed|tests failed|Failed|\*\*\*" || true
grep -q "100% tests passed" build/ctest.log || { log "ctest failed"; exit 1; }

log "install into a temporary prefix and build the consumer against it"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
cmake -S tests/consumer -B build/consumer -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build build/consumer -j "$JOBS"
build/consumer/lmembed_consumer "$LMEMBED_ROOT/data/models/stories260K.gguf"

log "configure + build (preset asan) and run the unit tests and the CLI tests under ASan/UBSan"
cmake --preset asan >/dev/null
cmake --build --preset asan --target lmembed_unit_tests lmembed_cli -j "$JOBS"
ctest --preset asan -j "$JOBS" --timeout 900 2>&1 | tee build-asan/ctest.log | grep -E "tests passed|tests failed|Failed" || true
grep -q "100% tests passed" build-asan/ctest.log || { log "asan ctest failed"; exit 1; }
# The CLI catalogue, disk-full/kill and device-refusal tests on the ASan-built tool (each sets
# its own ASAN_OPTIONS; any sanitizer report fails its case).
ctest --test-dir build-asan -L cli -j "$JOBS" --timeout 900 2>&1 | tee build-asan/ctest-cli.log | grep -E "tests passed|tests failed|Failed" || true
grep -q "100% tests passed" build-asan/ctest-cli.log || { log "asan CLI ctest failed"; exit 1; }

if [ "${FUZZ_SECONDS:-60}" != "0" ] && [ -x scripts/fuzz.sh ]; then
  log "fuzzing each target for ${FUZZ_SECONDS:-60} s"
  scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fi
log "all tests passed in $(( $(date +%s) - start )) s"
