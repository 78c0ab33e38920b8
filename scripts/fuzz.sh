#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] - builds the libFuzzer targets with clang (ASan + UBSan) in
# build-fuzz/ and runs each for SECONDS (default 60) from a copy of its seed corpus
# (tests/fuzz/corpus/<target>/) with its dictionary (tests/fuzz/<target>.dict) when present.
# Prints the executions per target; exits non-zero when a target finds a crash, a sanitizer
# report or an escaping non-lmembed exception (the reproducer is saved in
# build-fuzz/artifacts/). Environment: JOBS, FUZZ_TARGETS (default: every tests/fuzz/fuzz_*.cpp,
# fuzz_quant.cpp included when it is there; json runs SECONDS/4), FUZZ_MAX_LEN (default 65536),
# FUZZ_RUNS (stop each target after this many executions, SECONDS still bounding it: the long
# run of docs/robustness.md is FUZZ_RUNS=1000000 scripts/fuzz.sh 14400), FUZZ_BUILD (default
# build-fuzz), FUZZ_NO_BUILD=1 (run the targets already built there), FUZZ_LOGS (a folder to
# keep each target's log in), FUZZ_TIMEOUT (seconds one input may take, default 10: raise it for
# long runs under `nice` on a busy machine, where a starved process overruns 10 s of wall time).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LMEMBED_ROOT"
seconds=${1:-60}
default_targets=$(ls tests/fuzz/fuzz_*.cpp | sed 's|.*/fuzz_||; s|\.cpp$||' | tr '\n' ' ')
targets=${FUZZ_TARGETS:-$default_targets}
bdir=${FUZZ_BUILD:-build-fuzz}
CLANGXX=${CLANGXX:-$(command -v clang++ || command -v clang++-14 || true)}
if [ -z "$CLANGXX" ]; then
  echo "lmembed: fuzzing needs clang++ with libFuzzer (Debian: clang libclang-rt-14-dev)" >&2
  exit 1
fi

if [ "${FUZZ_NO_BUILD:-0}" = 1 ]; then
  log "fuzz: FUZZ_NO_BUILD=1: running the targets already built in $bdir/"
else
  log "fuzz: configure + build (clang, -fsanitize=fuzzer,address,undefined) in $bdir/"
  cmake -S . -B "$bdir" -DCMAKE_CXX_COMPILER="$CLANGXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DLMEMBED_FUZZ=ON -DLMEMBED_BUILD_TESTS=OFF -DLMEMBED_BUILD_EXAMPLES=OFF \
    -DLMEMBED_BUILD_BENCH=OFF -DLMEMBED_INSTALL=OFF -DLMEMBED_XTENSOR=OFF >/dev/null
  build_targets=()
  for t in $targets; do build_targets+=(--target "fuzz_$t"); done
  cmake --build "$bdir" "${build_targets[@]}" -j "$JOBS"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$bdir"/artifacts
status=0
summary=()
# All targets run at the same time (FUZZ_SERIAL=1: one after another), so the fuzz step costs
# about SECONDS of wall time however many targets there are.
run_target() {
  local t=$1 secs=$2 corpus="$work/$1"
  local dict=()
  [ -f tests/fuzz/"$t".dict ] && dict=(-dict=tests/fuzz/"$t".dict)
  # Head seeds are real heads of 50-70 kB: their target reads up to 128 kB.
  local maxlen=${FUZZ_MAX_LEN:-65536}
  [ "$t" = head ] && maxlen=${FUZZ_MAX_LEN:-131072}
  local runs=()
  [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  local t0=$(date +%s)
  "$bdir"/fuzz/fuzz_"$t" "${dict[@]}" "${runs[@]}" -max_total_time="$secs" \
    -max_len="$maxlen" -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 \
    -artifact_prefix="$bdir/artifacts/${t}-" "$corpus" >"$work/$t.log" 2>&1
  echo $? >"$work/$t.rc"
  echo $(( $(date +%s) - t0 )) >"$work/$t.secs"
}
declare -A secs_of
for t in $targets; do
  corpus="$work/$t"
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  # The JSON parser is also fuzzed through safetensors headers; its own target gets a quarter.
  secs=$seconds
  [ "$t" = json ] && secs=$(( seconds / 4 > 0 ? seconds / 4 : 1 ))
  secs_of[$t]=$secs
  log "fuzz_$t: ${secs} s from $(ls "$corpus" | wc -l) seeds"
  if [ "${FUZZ_SERIAL:-0}" = 1 ]; then run_target "$t" "$secs"; else run_target "$t" "$secs" & fi
done
wait
for t in $targets; do
  rc=$(cat "$work/$t.rc" 2>/dev/null || echo 1)
  runs=$(grep -E '^stat::number_of_executed_units' "$work/$t.log" | awk '{print $2}' | tail -1 || true)
  [ -n "$runs" ] || runs=$(grep -oE 'Done [0-9]+ runs' "$work/$t.log" | awk '{print $2}' | tail -1 || true)
  cov=$(grep -oE 'cov: [0-9]+' "$work/$t.log" | tail -1 | awk '{print $2}' || true)
  took=$(cat "$work/$t.secs" 2>/dev/null || echo "${secs_of[$t]}")
  rate=$(awk -v r="${runs:-0}" -v s="$took" 'BEGIN { printf "%.0f", (s > 0 ? r / s : 0) }')
  [ -n "${FUZZ_LOGS:-}" ] && mkdir -p "$FUZZ_LOGS" && cp "$work/$t.log" "$FUZZ_LOGS/$t.log"
  if [ "$rc" -ne 0 ]; then
    status=1
    summary+=("fuzz_$t: FAILED (exit $rc) after ${runs:-?} executions; log tail:")
    tail -40 "$work/$t.log" >&2
  else
    summary+=("fuzz_$t: ${runs:-?} executions in ${took} s (${rate} exec/s, coverage ${cov:-?} edges), no findings")
  fi
done
for line in "${summary[@]}"; do echo "$line"; done
exit $status
