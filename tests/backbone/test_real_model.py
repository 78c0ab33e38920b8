#!/usr/bin/env python3
"""The backbone on a real LLM (SmolLM2-135M-Instruct, Q4_1 + Q8_0 GGUF) against two independent
implementations: Hugging Face transformers and llama.cpp (llama-cpp-python, compiled from source).

1. Every layer's hidden states, causal, on 200 bundled texts, against transformers 4.45's
   LlamaModel built from the same GGUF (transformers dequantizes with gguf-py, the reference the
   io tests hold lmembed's dequantization to bit for bit), output_hidden_states=True, float32.
   lmembed's layer l (1..L-1) is the residual stream after block l and layer L the final RMSNorm's
   output: HF's hidden_states[1..L], run in float64 as the reference; transformers' own float32
   run on the same texts is the accuracy lmembed is held to (max |diff| / max |ref| per token
   vector: the worst, and per layer the median and 99th percentile, within 2x of transformers'),
   with an absolute 5e-4 regression guard; and lmembed vs transformers' float32 states directly,
   the issue's comparison, within 1e-4 (see BOUND below).
2. Bidirectional attention on 50 of them: HF given an all-visible 4D additive mask (zeros), which
   LlamaModel 4.45 uses as is, against lmembed's bidirectional states: the 5e-4 guard.
3. The Hugging Face layout: the model as transformers holds it, saved as config.json +
   model.safetensors (+ tokenizer.json), loads in lmembed and gives the GGUF's states (the weights
   are the same floats, but q/k rows are permuted between the layouts and RoPE pairs them
   differently, so equality is to float32 rounding: bound 1e-5).
4. Pooled embeddings against llama.cpp's own embedding path (Llama(embedding=True,
   pooling_type=LAST|MEAN)) on the same token ids, run on the F32 copy llama.cpp writes of the file
   (llama_model_quantize to ALL_F32): cosine >= 0.9999 for every text. On the Q4_1 file itself
   llama.cpp rounds activations to 8 bits (Q8_1 blocks) before each matmul, so it differs from an
   exact F32 evaluation of the same weights: that cosine is printed (median checked >= 0.999).
"""
import copy
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import realmodel  # noqa: E402

MODEL = realmodel.model_path()
CLI = realmodel.cli()
TOOL = os.environ.get("LMEMBED_TARGET_DUMP_STATES", "")
if not os.path.exists(TOOL):
    realmodel.skip("dump_states is not built")
try:
    import numpy as np
    import torch
    from llama_cpp import Llama, LLAMA_POOLING_TYPE_LAST, LLAMA_POOLING_TYPE_MEAN
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
except ImportError as e:
    realmodel.skip(f"reference package missing: {e}")

torch.set_num_threads(2)
hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()
# BOUND: the issue asks for 1e-4 against transformers' float32 run, and that holds (7.4e-5 at
# worst on 2026-12-03: both float32 runs err alike on the worst token). Against float64 the worst
# token vector is 2.4e-4 for lmembed and 3.1e-4 for transformers' own float32 run, at the same
# token (position 9 of one text) and layer (13); medians 2-8e-7 for both (docs/backbone.md).
# That token is ill-conditioned for any float32 evaluation. So the test also holds lmembed to
# transformers' float32 accuracy against float64 on the same texts (within ACC_FACTOR: the
# overall worst, and per layer the median and 99th percentile), with an absolute 5e-4 guard (a
# wrong RoPE, norm or mask is O(1)).
ACC_FACTOR = 2.0
N_TEXTS, N_BIDIR, BOUND, LAYOUT_BOUND, MIN_COS = 200, 50, 5e-4, 1e-5, 0.9999
failures = []


def check(cond, msg):
    print(("ok    " if cond else "FAIL  ") + msg, flush=True)
    if not cond:
        failures.append(msg)


all_texts = realmodel.bundled_texts()
stride = max(1, len(all_texts) // N_TEXTS)
texts = all_texts[::stride][:N_TEXTS]

t0 = time.time()
tok = Llama(MODEL, vocab_only=True, verbose=False)
ids = [tok.tokenize(t.encode("utf-8"), add_bos=True, special=False) for t in texts]
n_tok = sum(len(x) for x in ids)
print(f"{len(texts)} texts, {n_tok} tokens (llama.cpp's tokenizer), {time.time() - t0:.1f} s")

tmp = tempfile.mkdtemp(prefix="lmembed-real-")
ids_file = os.path.join(tmp, "ids.txt")
with open(ids_file, "w") as f:
    for x in ids:
        f.write(" ".join(map(str, x)) + "\n")


def dump(model, attention, path_ids=ids_file):
    out = os.path.join(tmp, f"states-{attention}-{os.path.basename(model)}.npy")
    subprocess.run([TOOL, model, attention, path_ids, out], check=True)
    return np.load(out)


def per_token(states, counts, n_layers):
    """[n_tokens * L, d] token-major rows -> list of [len, L, d] arrays, one per text."""
    d = states.shape[1]
    s = states.reshape(-1, n_layers, d)
    out, at = [], 0
    for c in counts:
        out.append(s[at:at + c])
        at += c
    return out


# --- 1. HF transformers from the GGUF: every layer, causal ---------------------------------------
t0 = time.time()
lm = AutoModelForCausalLM.from_pretrained(os.path.dirname(MODEL), gguf_file=os.path.basename(MODEL),
                                          torch_dtype=torch.float32)
lm.eval()
# The reference runs in float64 on the float32 weights: its own rounding is then far below
# lmembed's float32 error, so the bound measures lmembed alone (transformers' own float32 run is
# printed beside it for scale).
hf32 = lm.model
hf = copy.deepcopy(hf32).double()
L = hf.config.num_hidden_layers
print(f"transformers loaded the GGUF: {L} layers, d {hf.config.hidden_size}, "
      f"{time.time() - t0:.1f} s")


def hf_states(x, mask=None, dtype=torch.float64):
    with torch.no_grad():
        model = hf32 if dtype is torch.float32 else hf
        o = model(input_ids=torch.tensor([x]), attention_mask=mask, output_hidden_states=True)
    return torch.stack(o.hidden_states[1:], dim=2)[0].numpy()  # [len, L, d]


def rel_err(got, ref):
    """max over token vectors of max|diff| / max|ref| (per token and layer)."""
    num = np.abs(got.astype(np.float64) - ref).max(axis=-1)
    den = np.abs(ref).max(axis=-1)
    return float((num / den).max())


t0 = time.time()
ours = per_token(dump(MODEL, "causal"), [len(x) for x in ids], L)
print(f"lmembed causal states: {time.time() - t0:.1f} s")
def rel_tokens(got, ref):
    """[len, L]: max|diff| / max|ref| of every token vector and layer."""
    return np.abs(got.astype(np.float64) - ref).max(axis=-1) / np.abs(ref).max(axis=-1)


ours_rel, hf32_rel, direct = [], [], []
for x, got in zip(ids, ours):
    ref = hf_states(x)
    s32 = hf_states(x, dtype=torch.float32)
    ours_rel.append(rel_tokens(got, ref))
    hf32_rel.append(rel_tokens(s32, ref))
    direct.append(rel_tokens(got, s32))  # the comparison: float32 against float32
ours_rel, hf32_rel = np.concatenate(ours_rel), np.concatenate(hf32_rel)  # [tokens, L]
direct = np.concatenate(direct)
per_layer, hf_layer = ours_rel.max(axis=0), hf32_rel.max(axis=0)
med, hf_med = np.median(ours_rel, axis=0), np.median(hf32_rel, axis=0)
worst = float(per_layer.max())
print("lmembed float32 vs float64, max per layer (1..L): " +
      " ".join(f"{v:.1e}" for v in per_layer))
print("transformers float32 vs float64, same texts:       " +
      " ".join(f"{v:.1e}" for v in hf_layer))
print(f"medians over token vectors: lmembed {med.min():.1e}..{med.max():.1e}, transformers "
      f"{hf_med.min():.1e}..{hf_med.max():.1e}")
check(direct.max() <= 1e-4, f"the issue's bound, lmembed float32 vs transformers float32: max "
      f"rel diff {direct.max():.2e} (layer {int(direct.max(axis=0).argmax()) + 1}) <= 1e-4, "
      f"median {np.median(direct):.1e}")
check(worst <= BOUND, f"causal states, all {L} layers, {len(ids)} texts, {n_tok} tokens vs "
      f"transformers (float64): max rel diff {worst:.2e} (layer {int(per_layer.argmax()) + 1}) "
      f"<= {BOUND}")
# Single-token maxima are noisy per layer (one ill-conditioned token dominates): the overall worst
# is compared, and per layer the median and the 99th percentile over token vectors.
p99, hf_p99 = np.percentile(ours_rel, 99, axis=0), np.percentile(hf32_rel, 99, axis=0)
ratio_max = worst / float(hf_layer.max())
ratio_med = float((med / (hf_med + 1e-7)).max())
ratio_p99 = float((p99 / (hf_p99 + 1e-7)).max())
check(max(ratio_max, ratio_med, ratio_p99) <= ACC_FACTOR,
      f"as accurate as transformers' own float32 run on the same texts: worst {worst:.2e} vs "
      f"{float(hf_layer.max()):.2e} (ratio {ratio_max:.2f}); per layer, ratios of medians <= "
      f"{ratio_med:.2f} and of 99th percentiles <= {ratio_p99:.2f} (each <= {ACC_FACTOR})")

# --- 2. bidirectional ----------------------------------------------------------------------------
bid_ids = ids[:N_BIDIR]
bid_file = os.path.join(tmp, "ids-bid.txt")
with open(bid_file, "w") as f:
    for x in bid_ids:
        f.write(" ".join(map(str, x)) + "\n")
ours_bid = per_token(dump(MODEL, "bidirectional", bid_file), [len(x) for x in bid_ids], L)
per_layer = np.zeros(L)
for x, got in zip(bid_ids, ours_bid):
    mask = torch.zeros(1, 1, len(x), len(x), dtype=torch.float64)  # additive: all visible
    ref = hf_states(x, mask)
    per_layer = np.maximum(per_layer, [rel_err(got[:, k], ref[:, k]) for k in range(L)])
worst = float(per_layer.max())
print("bidirectional: max relative diff per layer: " + " ".join(f"{v:.1e}" for v in per_layer))
check(worst <= BOUND, f"bidirectional states, {len(bid_ids)} texts vs transformers with an "
      f"all-visible 4D mask: max rel diff {worst:.2e} <= {BOUND}")

# --- 3. the Hugging Face layout ------------------------------------------------------------------
hf_dir = os.path.join(tmp, "hf")
lm.save_pretrained(hf_dir, safe_serialization=True)
AutoTokenizer.from_pretrained(os.path.dirname(MODEL),
                              gguf_file=os.path.basename(MODEL)).save_pretrained(hf_dir)
print("HF folder:", sorted(os.listdir(hf_dir)))
ours_hf = per_token(dump(hf_dir, "causal"), [len(x) for x in ids], L)
worst = max(rel_err(a, b.astype(np.float64)) for a, b in zip(ours_hf, ours))
check(worst <= LAYOUT_BOUND, f"safetensors + config.json folder gives the GGUF's states: max rel "
      f"diff {worst:.2e} <= {LAYOUT_BOUND}")
del hf, hf32, lm

# --- 4. pooled embeddings vs llama.cpp -----------------------------------------------------------
def normalize(m):
    m = np.asarray(m, dtype=np.float64)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def ours_pooled(pooling, weights="f32"):
    """The CLI's embeddings; f32 (the exact path) unless asked for the stored-type kernels."""
    out = os.path.join(tmp, f"emb-{pooling}-{weights}.npy")
    subprocess.run([CLI, "embed", "--model", MODEL, "--ids", "--input", ids_file, "--output", out,
                    "--attention", "causal", "--pooling", pooling, "--threads", "2",
                    "--weights", weights], check=True)
    return normalize(np.load(out))


# llama.cpp itself dequantizes the file to F32 (llama_model_quantize, ftype ALL_F32): its F32
# forward is then an exact evaluation of the same weights, like lmembed's.
import ctypes  # noqa: E402
import llama_cpp  # noqa: E402

f32_model = os.path.join(tmp, "model-f32.gguf")
qp = llama_cpp.llama_model_quantize_default_params()
qp.ftype, qp.allow_requantize, qp.nthread = llama_cpp.LLAMA_FTYPE_ALL_F32, True, 2
if llama_cpp.llama_model_quantize(MODEL.encode(), f32_model.encode(), ctypes.byref(qp)) != 0:
    realmodel.skip("llama_model_quantize could not write the F32 copy")


def llama(path, pooling_type):
    return Llama(path, embedding=True, pooling_type=pooling_type, n_ctx=512, n_batch=512,
                 n_ubatch=512, n_threads=2, verbose=False)


LLAMA_CHILD = """
import json, sys
import numpy as np
from llama_cpp import Llama
path, ptype, texts, out = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3])), sys.argv[4]
llm = Llama(path, embedding=True, pooling_type=ptype, n_ctx=512, n_batch=512, n_ubatch=512,
            n_threads=2, verbose=False)
np.save(out, np.array([llm.embed(t) for t in texts], dtype=np.float64))
"""


def llama_in_child(path, pooling_type):
    """llama.cpp's embeddings from a child process, or None (said why) when llama.cpp itself
    dies: the llama.cpp that llama-cpp-python 0.3.36 compiles segfaults embedding the Q4_1 file
    on some CPUs (seen on an AVX512_BF16 Xeon, 2026-12-03; its F32 copy works there)."""
    tj, out = os.path.join(tmp, "texts.json"), os.path.join(tmp, "llama-child.npy")
    with open(tj, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    r = subprocess.run([sys.executable, "-c", LLAMA_CHILD, path, str(int(pooling_type)), tj, out],
                       capture_output=True, text=True)
    if r.returncode != 0:
        why = f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
        print(f"NOTE: llama.cpp died ({why}) embedding {os.path.basename(path)}: its own "
              f"quantized path is not compared on this machine. {r.stderr.strip()[-300:]}")
        return None
    return normalize(np.load(out))


for name, pooling, ptype, hf_pool in (
        ("last token", "eos", LLAMA_POOLING_TYPE_LAST, lambda s: s[-1]),
        ("mean", "mean", LLAMA_POOLING_TYPE_MEAN, lambda s: s.mean(axis=0))):
    got = ours_pooled(pooling)
    exact = normalize([hf_pool(s[:, L - 1].astype(np.float64)) for s in ours])
    cos_self = (got * exact).sum(axis=1)
    check(cos_self.min() >= 0.999999, f"{name}: embed CLI equals pooling of the dumped states "
          f"(min cosine {cos_self.min():.8f})")
    t0 = time.time()
    llm = llama(f32_model, ptype)
    ref = normalize([llm.embed(t) for t in texts])
    del llm
    cos = (got * ref).sum(axis=1)
    print(f"{name}: llama.cpp on its F32 copy {time.time() - t0:.1f} s; cosine vs lmembed min "
          f"{cos.min():.7f}, median {np.median(cos):.7f}")
    check(cos.min() >= MIN_COS, f"{name} pooling, causal: cosine vs llama.cpp (F32 copy) >= "
          f"{MIN_COS} on all {len(texts)} texts (min {cos.min():.7f})")
    refq = llama_in_child(MODEL, ptype)
    if refq is not None:
        cos = (got * refq).sum(axis=1)
        # Not a bound on lmembed: how far llama.cpp's own Q4_1 path (activations rounded to Q8_1
        # blocks before each matmul) lands from the exact evaluation of the same weights.
        print(f"{name}: llama.cpp on the Q4_1 file vs lmembed (exact F32 of the same weights): "
              f"cosine min {cos.min():.6f}, median {np.median(cos):.6f}, "
              f"mean {cos.mean():.6f}")
        check(np.median(cos) >= 0.999, f"{name}: llama.cpp's quantized-activation path is close "
              f"in median (>= 0.999: {np.median(cos):.6f})")
    # lmembed's own stored-type path (Q4_1 / Q8_0 weights kept, activations rounded to 8 bits
    # per block like llama.cpp's) against its exact F32 path.
    cos = (ours_pooled(pooling, "stored") * got).sum(axis=1)
    print(f"{name}: lmembed --weights stored vs f32: cosine min {cos.min():.6f}, "
          f"median {np.median(cos):.6f}")
    check(np.median(cos) >= 0.999, f"{name}: --weights stored is close to f32 in median (>= 0.999: "
          f"{np.median(cos):.6f})")

print(f"{len(failures)} failed" if failures else "all checks passed")
sys.exit(1 if failures else 0)
