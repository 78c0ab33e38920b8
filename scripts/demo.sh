#!/usr/bin/env bash
# scripts/demo.sh - README command one: the seed paper's experiment on the bundled data.
#
#   1. installs the missing Debian packages needed to build the CLI (as root; otherwise it
#      names them and stops),
#   2. configures build-demo/ (Release, portable, no tests or benchmarks) and builds only
#      the lmembed command-line tool,
#   3. runs `lmembed compare` on data/models/stories260K.gguf (a 260K-parameter Llama), trained
#      on the bundled SNLI dev triplets and evaluated on the five bundled tasks (STS-B,
#      Banking77 classification and clustering, SNLI pair classification and retrieval), with
#      the paper's designs (models 1-5, model 4 in both forms) plus mean pooling both ways,
#   4. prints the summary table, the path of report.html and the wall time of each step.
#
# Training examples that share a text with an evaluated example are removed first (the SNLI
# triplets and the SNLI tasks come from the same split); the tasks are subsampled (seeded) so
# that enough training data stays clean and the run fits in about 15 minutes on 2 cores.
#
# Environment:
#   JOBS               parallel build jobs and threads (default: nproc)
#   LMEMBED_DEMO_OUT   output folder (default build-demo/compare); a rerun resumes there
#   LMEMBED_DEMO_FRESH 1: delete the output folder first
#   LMEMBED_DEMO_ARGS  extra arguments for lmembed compare (e.g. "--steps 400")
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LMEMBED_ROOT"
t_start=$(date +%s)
stage_times=()
stamp() { stage_times+=("$(printf '%-26s %5d s' "$1" $(( $(date +%s) - $2 )))"); }

t=$(date +%s)
ensure_packages cmake make g++ libeigen3-dev
stamp "set-up (packages)" "$t"

t=$(date +%s)
log "configure build-demo (Release, portable: kernels picked at run time, CLI only)"
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS= \
  -DLMEMBED_BUILD_TESTS=OFF -DLMEMBED_BUILD_BENCH=OFF -DLMEMBED_BUILD_EXAMPLES=ON >/dev/null
log "build the lmembed CLI (${JOBS} jobs)"
cmake --build build-demo --target lmembed_cli -j "$JOBS"
stamp "configure + build" "$t"
cli=build-demo/bin/lmembed
if ! "$cli" compare --help >/dev/null 2>&1; then
  log "this build of lmembed has no 'compare' command; nothing to demonstrate"
  exit 1
fi

out=${LMEMBED_DEMO_OUT:-build-demo/compare}
if [ "${LMEMBED_DEMO_FRESH:-0}" = "1" ]; then rm -rf "$out"; fi
[ -d "$out/designs" ] && log "resuming the comparison in $out (LMEMBED_DEMO_FRESH=1 starts over)"

# OpenMP threads that spin while waiting starve each other on a busy machine; passive waiting
# costs little on an idle one.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
t=$(date +%s)
log "lmembed compare: 8 designs x 5 tasks on stories260K (progress below)"
# shellcheck disable=SC2086
"$cli" compare \
  --model data/models/stories260K.gguf \
  --train bundled:snli \
  --designs paper,mean-causal,mean-bidirectional \
  --max-examples 400 \
  --steps 100 --batch 64 --lr 1e-3 --warmup 10 --ml-latents 16 --seed 42 \
  --threads "$JOBS" \
  --out "$out" ${LMEMBED_DEMO_ARGS:-} | tee "$out.summary.txt"
stamp "lmembed compare" "$t"

echo
echo "wall time per step:"
printf '  %s\n' "${stage_times[@]}"
printf '  %-26s %5d s\n' "total" $(( $(date +%s) - t_start ))
echo "per-stage time and memory of the comparison: $out/report.md (section 'Run time')"
echo "open: $(cd "$out" && pwd)/report.html"
