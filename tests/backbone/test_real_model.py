#!/usr/bin/env python3
"""The backbone on a real LLM (SmolLM2-135M-Instruct, Q4_1 + Q8_0 GGUF) against two independent
implementations: Hugging Face transformers and llama.cpp (llama-cpp-python, compiled from source).

1. Every layer's hidden states, causal, on 200 bundled texts, against transformers 4.45's
   LlamaModel built from the same GGUF (transformers dequantizes with gguf-py, the reference the
   io tests hold lmembed's dequantization to bit for bit), output_hidden_states=True, float32.
   lmembed's layer l (1..L-1) is the residual stream after block l and layer L the final RMSNorm's
   output: HF's hidden_states[1..L]. Bound: max |diff| / max |ref| <= 1e-4 per token vector.
2. Bidirectional attention on 50 of them: HF given an all-visible 4D additive mask (zeros), which
   LlamaModel 4.45 uses as is, against lmembed's bidirectional states. Same bound.
3. The Hugging Face layout: the model as transformers holds it, saved as config.json +
   model.safetensors (+ tokenizer.json), loads in lmembed and gives the GGUF's states (the weights
   are the same floats, but q/k rows are permuted between the layouts and RoPE pairs them
   differently, so equality is to float32 rounding: bound 1e-5).
4. Pooled embeddings against llama.cpp's own embedding path (Llama(embedding=True,
   pooling_type=LAST|MEAN)) on the same token ids: cosine >= 0.9999 for every text. llama.cpp
   rounds activations to 8 bits (Q8_1 blocks) before each Q4_1 matmul, so it differs from an
   exact F32 evaluation of the same weights; lmembed vs HF (both exact F32) is printed beside it.
"""
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
    from transformers import AutoModel, AutoTokenizer
except ImportError as e:
    realmodel.skip(f"reference package missing: {e}")

torch.set_num_threads(2)
N_TEXTS, N_BIDIR, BOUND, LAYOUT_BOUND, MIN_COS = 200, 50, 1e-4, 1e-5, 0.9999
failures = []


def check(cond, msg):
    print(("ok    " if cond else "FAIL  ") + msg, flush=True)
    if not cond:
        failures.append(msg)


all_texts = realmodel.bundled_texts()
stride = max(1, len(all_texts) // N_TEXTS)
texts = all_texts[::stride][:N_TEXTS]

t0 = time.time()
llm_last = Llama(MODEL, embedding=True, pooling_type=LLAMA_POOLING_TYPE_LAST, n_ctx=512,
                 n_batch=512, n_ubatch=512, n_threads=2, verbose=False)
ids = [llm_last.tokenize(t.encode("utf-8"), add_bos=True, special=False) for t in texts]
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
hf = AutoModel.from_pretrained(os.path.dirname(MODEL), gguf_file=os.path.basename(MODEL),
                               torch_dtype=torch.float32)
hf.eval()
L = hf.config.num_hidden_layers
print(f"transformers loaded the GGUF: {L} layers, d {hf.config.hidden_size}, "
      f"{time.time() - t0:.1f} s")


def hf_states(x, mask=None):
    with torch.no_grad():
        o = hf(input_ids=torch.tensor([x]), attention_mask=mask, output_hidden_states=True)
    return torch.stack(o.hidden_states[1:], dim=1)[0].numpy()  # [len, L, d]


def rel_err(got, ref):
    """max over token vectors of max|diff| / max|ref| (per token and layer)."""
    num = np.abs(got.astype(np.float64) - ref).max(axis=-1)
    den = np.abs(ref).max(axis=-1)
    return float((num / den).max())


t0 = time.time()
ours = per_token(dump(MODEL, "causal"), [len(x) for x in ids], L)
print(f"lmembed causal states: {time.time() - t0:.1f} s")
worst, worst_layer = 0.0, None
per_layer = np.zeros(L)
for x, got in zip(ids, ours):
    ref = hf_states(x)
    for layer in range(L):
        e = rel_err(got[:, layer], ref[:, layer])
        per_layer[layer] = max(per_layer[layer], e)
    e = rel_err(got, ref)
    if e > worst:
        worst, worst_layer = e, int(np.argmax(per_layer))
print("max relative diff per layer (1..L): " +
      " ".join(f"{v:.1e}" for v in per_layer))
check(worst <= BOUND, f"causal states, all {L} layers, {len(ids)} texts, {n_tok} tokens vs "
      f"transformers: max rel diff {worst:.2e} (layer {worst_layer + 1}) <= {BOUND}")

# --- 2. bidirectional ----------------------------------------------------------------------------
bid_ids = ids[:N_BIDIR]
bid_file = os.path.join(tmp, "ids-bid.txt")
with open(bid_file, "w") as f:
    for x in bid_ids:
        f.write(" ".join(map(str, x)) + "\n")
ours_bid = per_token(dump(MODEL, "bidirectional", bid_file), [len(x) for x in bid_ids], L)
worst = 0.0
for x, got in zip(bid_ids, ours_bid):
    mask = torch.zeros(1, 1, len(x), len(x), dtype=torch.float32)  # additive: all visible
    worst = max(worst, rel_err(got, hf_states(x, mask)))
check(worst <= BOUND, f"bidirectional states, {len(bid_ids)} texts vs transformers with an "
      f"all-visible 4D mask: max rel diff {worst:.2e} <= {BOUND}")

# --- 3. the Hugging Face layout ------------------------------------------------------------------
hf_dir = os.path.join(tmp, "hf")
hf.save_pretrained(hf_dir, safe_serialization=True)
AutoTokenizer.from_pretrained(os.path.dirname(MODEL),
                              gguf_file=os.path.basename(MODEL)).save_pretrained(hf_dir)
print("HF folder:", sorted(os.listdir(hf_dir)))
ours_hf = per_token(dump(hf_dir, "causal"), [len(x) for x in ids], L)
worst = max(rel_err(a, b.astype(np.float64)) for a, b in zip(ours_hf, ours))
check(worst <= LAYOUT_BOUND, f"safetensors + config.json folder gives the GGUF's states: max rel "
      f"diff {worst:.2e} <= {LAYOUT_BOUND}")
del hf

# --- 4. pooled embeddings vs llama.cpp -----------------------------------------------------------
def normalize(m):
    m = np.asarray(m, dtype=np.float64)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def ours_pooled(pooling):
    out = os.path.join(tmp, f"emb-{pooling}.npy")
    subprocess.run([CLI, "embed", "--model", MODEL, "--ids", "--input", ids_file, "--output", out,
                    "--attention", "causal", "--pooling", pooling, "--threads", "2"], check=True)
    return normalize(np.load(out))


llm_mean = Llama(MODEL, embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN, n_ctx=512,
                 n_batch=512, n_ubatch=512, n_threads=2, verbose=False)
for name, llm, pooling, hf_pool in (("last token", llm_last, "eos", lambda s: s[-1]),
                                     ("mean", llm_mean, "mean", lambda s: s.mean(axis=0))):
    t0 = time.time()
    ref = normalize([llm.embed(t) for t in texts])
    t_ref = time.time() - t0
    got = ours_pooled(pooling)
    cos = (got * ref).sum(axis=1)
    exact = normalize([hf_pool(s[:, L - 1].astype(np.float64)) for s in ours])
    cos_hf = (got * exact).sum(axis=1)
    print(f"{name}: llama.cpp embed() {t_ref:.1f} s; cosine lmembed vs llama.cpp min "
          f"{cos.min():.6f} median {np.median(cos):.6f}; 1 - cos max {1 - cos.min():.2e} "
          f"(activation rounding to Q8_1); lmembed CLI vs lmembed states min {cos_hf.min():.8f}")
    check(cos.min() >= MIN_COS, f"{name} pooling, causal: cosine vs llama.cpp >= {MIN_COS} "
          f"on all {len(texts)} texts (min {cos.min():.6f})")
    check(cos_hf.min() >= 0.999999, f"{name}: embed CLI equals pooling of the dumped states")

print(f"{len(failures)} failed" if failures else "all checks passed")
sys.exit(1 if failures else 0)
