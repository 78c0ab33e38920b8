#!/usr/bin/env bash
# scripts/gpu_check.sh - everything the CUDA backend needs a GPU for, in one go, for a session
# that is lent a GPU machine (see docs/cuda.md). Writes all output under $OUT (default
# ./gpu_out):
#   env.txt            nvidia-smi, nvcc, driver, compute-sanitizer, python packages
#   build.log          the build (CMake; falls back to plain nvcc if the tree does not configure)
#   host_test.log      cuda_host_test (CPU-side plans and math)
#   device_test.log    cuda_device_test (+ device_test.xml): kernels, backbone vs goldens/CPU
#   memcheck.log       compute-sanitizer --tool memcheck on the device tests
#   racecheck.log      compute-sanitizer --tool racecheck on the kernel tests
#   bench.txt/.json    bench/cuda/compare_transformers.py: lmembed vs transformers tokens/s
#   head_host_test.log   cuda_head_host_test (the heads' device algorithm on the CPU, trainer)
#   head_device_test.log cuda_head_device_test (+ .xml): DeviceOps vs HostOps, device heads vs
#                      CPU heads, DeviceTrainer vs train::Trainer (100 steps), checkpoints
#   head_memcheck.log  compute-sanitizer memcheck on the head and checkpoint tests
#   cli_device.log     ctest -R cuda_cli: lmembed embed|eval|train --device cuda vs cpu
#                      (CMake build only, built after the unit tests; SKIP_CLI=1 skips it)
#   bench_train.txt/.json  bench/cuda/compare_train_torch_cuda.py: multi_layer training
#                      steps/s, lmembed vs PyTorch eager (qwen2-0.5b and mistral-7b sizes)
#   summary.txt        one line per step: ok / FAILED / skipped, with seconds
# Usage: OUT=/path scripts/gpu_check.sh   (env: ARCH=native|90|80..., BENCH_TEXTS=4096,
#        SKIP_BUILD=1, SKIP_BENCH=1, SKIP_SANITIZER=1, SKIP_TRAIN_BENCH=1, TRAIN_STEPS=3,
#        JOBS, BUILD=build dir)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_out}
ARCH=${ARCH:-native}
JOBS=${JOBS:-$(nproc)}
BUILD=${BUILD:-$ROOT/build-gpu}
NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
mkdir -p "$OUT" "$BUILD"
cd "$ROOT"
: >"$OUT/summary.txt"

step() {  # step NAME TIMEOUT_S LOG command... : runs, logs, records ok/FAILED and seconds
  local name=$1 limit=$2 logf=$3
  shift 3
  local t0=$SECONDS rc
  timeout "$limit" bash -c '"$@"' _ "$@" >"$OUT/$logf" 2>&1  # bash -c: runs functions too
  rc=$?
  local st=ok
  [ $rc -ne 0 ] && st="FAILED (exit $rc)"
  [ $rc -eq 124 ] && st="FAILED (timeout ${limit}s)"
  printf '%-12s %-22s %4ds  %s\n' "$name" "$st" $((SECONDS - t0)) "$logf" | tee -a "$OUT/summary.txt"
  return $rc
}

{
  date -u
  nvidia-smi || echo "nvidia-smi: not found"
  "$NVCC" --version || echo "nvcc: not found at $NVCC"
  echo "compute-sanitizer: ${SAN:-not found}"
  /usr/bin/python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" 2>&1
  git -C "$ROOT" log --oneline -1 2>/dev/null
} >"$OUT/env.txt" 2>&1

# ---- build: CMake with the project's own targets; plain nvcc when the tree does not configure.
build_cmake() {
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLMEMBED_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -DLMEMBED_BUILD_EXAMPLES=ON -DLMEMBED_MPI=OFF &&
    cmake --build "$BUILD" -j "$JOBS" --target cuda_host_test cuda_device_test \
      cuda_head_host_test cuda_head_device_test &&
    { cmake --build "$BUILD" -j "$JOBS" --target cuda_backbone_bench bench_train_cuda || true; }
}
build_nvcc() {  # the same three programs without CMake
  mkdir -p "$BUILD/tests" "$BUILD/bench"
  local arch=(-arch=native)
  [ "$ARCH" != native ] && arch=(-arch="sm_${ARCH%%;*}")
  local common=(-std=c++20 -O3 -DEIGEN_NO_CUDA -DLMEMBED_WITH_CUDA=1 -I"$ROOT/include"
                -isystem /usr/include/eigen3 "-DLMEMBED_DATA_DIR=\"$ROOT/data\""
                "-DLMEMBED_SOURCE_DIR=\"$ROOT\"" "-DLMEMBED_BINARY_DIR=\"$BUILD\"")
  g++ -std=c++20 -O2 -fopenmp -I"$ROOT/include" -isystem /usr/include/eigen3 \
    "-DLMEMBED_DATA_DIR=\"$ROOT/data\"" tests/cuda/cuda_host_test.cpp \
    -o "$BUILD/tests/cuda_host_test" -lgtest -lgtest_main -lpthread &
  "$NVCC" "${common[@]}" "${arch[@]}" -I"$ROOT/tests/cuda" tests/cuda/cuda_device_test.cu \
    -o "$BUILD/tests/cuda_device_test" -lcublas -lgtest -lgtest_main -lgomp &
  "$NVCC" "${common[@]}" "${arch[@]}" bench/cuda/cuda_backbone_bench.cu \
    -o "$BUILD/bench/cuda_backbone_bench" -lcublas -lgomp &
  g++ -std=c++20 -O2 -fopenmp -I"$ROOT/include" -isystem /usr/include/eigen3 \
    "-DLMEMBED_DATA_DIR=\"$ROOT/data\"" "-DLMEMBED_BINARY_DIR=\"$BUILD\"" \
    tests/cuda/cuda_head_host_test.cpp -o "$BUILD/tests/cuda_head_host_test" \
    -lgtest -lgtest_main -lpthread &
  "$NVCC" "${common[@]}" "${arch[@]}" -I"$ROOT/tests/cuda" tests/cuda/cuda_head_device_test.cu \
    -o "$BUILD/tests/cuda_head_device_test" -lcublas -lgtest -lgtest_main -lgomp &
  "$NVCC" "${common[@]}" "${arch[@]}" bench/cuda/bench_train_cuda.cu \
    -o "$BUILD/bench/bench_train_cuda" -lcublas -lgomp &
  local ok=0
  for j in $(jobs -p); do wait "$j" || ok=1; done
  return $ok
}
export ROOT BUILD NVCC ARCH JOBS
export -f build_cmake build_nvcc
if [ -n "${SKIP_BUILD:-}" ]; then  # rerun with the binaries already in $BUILD
  echo "build        skipped (SKIP_BUILD)" | tee -a "$OUT/summary.txt"
elif ! step build-cmake 420 build.log build_cmake; then
  step build-nvcc 420 build-nvcc.log build_nvcc || { echo "build failed, see $OUT"; exit 1; }
fi
HOST_T="$BUILD/tests/cuda_host_test"
DEV_T="$BUILD/tests/cuda_device_test"
BENCH="$BUILD/bench/cuda_backbone_bench"
HEAD_HOST_T="$BUILD/tests/cuda_head_host_test"
HEAD_DEV_T="$BUILD/tests/cuda_head_device_test"
TRAIN_BENCH="$BUILD/bench/bench_train_cuda"

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
step host-test 120 host_test.log "$HOST_T"
step device-test 300 device_test.log "$DEV_T" --gtest_output="xml:$OUT/device_test.xml"
grep -E "^\[ value \]|SKIPPED|FAILED" "$OUT/device_test.log" | head -60 >>"$OUT/summary.txt"
# The pooling heads and their trainer (issue 10's training half).
step head-host 120 head_host_test.log "$HEAD_HOST_T"
step head-device 300 head_device_test.log "$HEAD_DEV_T" \
  --gtest_output="xml:$OUT/head_device_test.xml"
grep -E "^\[ value \]|SKIPPED|FAILED" "$OUT/head_device_test.log" | head -40 >>"$OUT/summary.txt"
# The CLI's --device cuda end to end (python tests): built here, after the unit tests, so a
# slow or failing CLI build costs nothing above.
if [ -z "${SKIP_CLI:-}" ] && [ -f "$BUILD/CMakeCache.txt" ]; then
  step build-cli 300 build_cli.log cmake --build "$BUILD" -j "$JOBS" --target lmembed_cli
fi
if [ -z "${SKIP_CLI:-}" ] && [ -x "$BUILD/bin/lmembed" ]; then
  step cli-device 400 cli_device.log ctest --test-dir "$BUILD" -R cuda_cli --output-on-failure
  grep -E "value|Passed|Failed|Skipped|\*\*\*" "$OUT/cli_device.log" | head -20 >>"$OUT/summary.txt"
fi

if [ -z "${SKIP_SANITIZER:-}" ] && [ -n "$SAN" ]; then
  # memcheck over everything but the 2048-token CPU comparison (slow under the tool);
  # racecheck over the kernels that use shared memory.
  step memcheck 300 memcheck.log "$SAN" --tool memcheck --leak-check full --error-exitcode 9 \
    "$DEV_T" --gtest_filter='-CudaBackbone.MatchesTheCpuBackboneOnMixedLengthsUpTo2048'
  step racecheck 300 racecheck.log "$SAN" --tool racecheck --error-exitcode 9 \
    "$DEV_T" --gtest_filter='CudaKernels.*:CudaAttention.*:CudaOptim.*:CudaRetrieval.*:CudaBackbone.GoldensStories260K'
  step head-memcheck 300 head_memcheck.log "$SAN" --tool memcheck --error-exitcode 9 \
    "$HEAD_DEV_T" --gtest_filter='CudaHeadOps.*:CudaHead.*:CudaTrain.CheckpointsResumeAcrossCpuAndGpu'
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" "$OUT"/memcheck.log "$OUT"/racecheck.log \
    "$OUT"/head_memcheck.log >>"$OUT/summary.txt" 2>/dev/null
else
  echo "sanitizer    skipped (${SAN:-compute-sanitizer not found})" | tee -a "$OUT/summary.txt"
fi

if [ -z "${SKIP_BENCH:-}" ] && [ -x "$BENCH" ]; then
  step bench 420 bench.txt /usr/bin/python3 bench/cuda/compare_transformers.py --bench "$BENCH" \
    --texts "${BENCH_TEXTS:-4096}" --out "$OUT/bench.json"
  rc=$?
  if [ $rc -eq 77 ]; then  # no transformers/torch on this machine: lmembed alone
    for s in qwen2-0.5b mistral-7b-slice; do
      for p in f32 bf16; do "$BENCH" --shape $s --precision $p --texts "${BENCH_TEXTS:-4096}"; done
    done >"$OUT/bench.txt" 2>&1
  fi
  tail -8 "$OUT/bench.txt" >>"$OUT/summary.txt"
fi
if [ -z "${SKIP_TRAIN_BENCH:-}" ] && [ -x "$TRAIN_BENCH" ]; then
  step bench-train 420 bench_train.txt /usr/bin/python3 bench/cuda/compare_train_torch_cuda.py \
    --bench "$TRAIN_BENCH" --steps "${TRAIN_STEPS:-3}" --out "$OUT/bench_train.json"
  if [ $? -eq 77 ]; then  # no CUDA torch on this machine: lmembed alone
    for s in qwen2-0.5b mistral-7b; do "$TRAIN_BENCH" --shape $s --steps "${TRAIN_STEPS:-3}"; done \
      >"$OUT/bench_train.txt" 2>&1
  fi
  grep -E "ratio|steps_per_s" "$OUT/bench_train.txt" | tail -4 >>"$OUT/summary.txt"
fi
cat "$OUT/summary.txt"
