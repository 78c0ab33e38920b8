#!/usr/bin/env bash
# llamacpp_peer.sh SHAPE - one round of llama.cpp's llama-embedding on data/bench/corpus256.txt
# for the 4 attention x pooling combinations, printing "PEER combo=... tok_per_s=..." lines for
# bench/compare_llamacpp.py --peer-cmd 'bench/backbone/llamacpp_peer.sh {shape}'.
# Environment: LLAMA_EMBEDDING (the llama-embedding binary), LLAMA_MODELS (folder holding
# SHAPE.gguf, random-weight F32 models of bench_backbone's shapes with the Llama-2 SPM vocab and
# add_eos), LLAMA_FLAGS (default: the issue's best flags "-c 512 -b 512 -fa"), THREADS (2).
# Throughput is llama.cpp's own "prompt eval" figure (decode time only, like ours).
set -euo pipefail
shape=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${LLAMA_EMBEDDING:?set LLAMA_EMBEDDING to the llama-embedding binary}
models=${LLAMA_MODELS:?set LLAMA_MODELS to the folder of SHAPE.gguf models}
flags=${LLAMA_FLAGS:--c 512 -b 512 -fa}
for att in causal non-causal; do
  for pool in last mean; do
    # shellcheck disable=SC2086
    out=$("$bin" -m "$models/$shape.gguf" -f "$root/data/bench/corpus256.txt" -t "${THREADS:-2}" \
          $flags --pooling "$pool" --attention "$att" --embd-normalize -1 --embd-output-format json \
          2>&1 >/dev/null)
    tps=$(grep -o "prompt eval time.*" <<<"$out" | grep -oE "[0-9.]+ tokens per second" | grep -oE "^[0-9.]+")
    ntok=$(grep -o "prompt eval time.*" <<<"$out" | grep -oE "/ +[0-9]+ tokens" | grep -oE "[0-9]+")
    echo "PEER combo=${att}/${pool} tok_per_s=${tps} tokens=${ntok}"
  done
done
