#!/usr/bin/env python3
"""lmembed's CUDA backbone vs Hugging Face transformers on the same GPU, in one run.

For each shape (Qwen2-0.5B: width 896, 24 layers, 14/2 heads, FFN 4864; a Mistral-7B slice:
width 4096, 4 layers, 32/8 heads, FFN 14336) and precision (f32, bf16), it runs
cuda_backbone_bench (lmembed) and the same model class from transformers (random init from a
config, no download, attn_implementation="sdpa", eval mode, inference_mode), encoding the same
texts: lengths(i) = 16 + (37 i mod 48) tokens, random ids, mean over the last hidden state.
transformers gets its usual best practice: texts sorted by length, padded per batch; lmembed
packs without padding. Batches hold at most --batch-tokens (padded) tokens on both sides.
Prints one JSON line per run and a table of tokens/s with the ratio lmembed / transformers.

  /usr/bin/python3 bench/cuda/compare_transformers.py --bench build/bench/cuda_backbone_bench \
      [--texts 4096] [--batch-tokens 16384] [--out results.json]
Exits 77 when no CUDA device or no transformers is available.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = {
    "qwen2-0.5b": dict(kind="qwen2", vocab_size=151936, hidden_size=896, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864,
                       rope_theta=1e6, rms_norm_eps=1e-6),
    "mistral-7b-slice": dict(kind="mistral", vocab_size=32000, hidden_size=4096,
                             num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=8,
                             intermediate_size=14336, rope_theta=1e6, rms_norm_eps=1e-5),
}


def lengths(n):
    return [16 + (37 * i) % 48 for i in range(n)]


def run_hf(shape, precision, n_texts, batch_tokens, repeats):
    import torch
    import transformers

    spec = dict(SHAPES[shape])
    kind = spec.pop("kind")
    cfg_cls = transformers.Qwen2Config if kind == "qwen2" else transformers.MistralConfig
    cfg = cfg_cls(max_position_embeddings=32768, **spec)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(cfg, attn_implementation="sdpa",
                                               torch_dtype=dtype).cuda().eval()
    lens = sorted(lengths(n_texts), reverse=True)
    gen = torch.Generator().manual_seed(1)
    batches = []
    i = 0
    while i < len(lens):
        # Longest first: a batch's padded size is rows * its first (longest) length.
        rows = max(1, batch_tokens // lens[i])
        chunk = lens[i:i + rows]
        width = chunk[0]
        ids = torch.randint(0, cfg.vocab_size, (len(chunk), width), generator=gen)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, n in enumerate(chunk):
            mask[r, :n] = 1
        batches.append((ids.cuda(), mask.cuda()))
        i += rows

    def once():
        out = []
        with torch.inference_mode():
            for ids, mask in batches:
                h = model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(h.dtype)
                out.append(((h * m).sum(1) / m.sum(1)).float().cpu())
        torch.cuda.synchronize()
        return out

    once()  # warm-up (cuBLAS heuristics, allocator)
    secs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        secs.append(time.perf_counter() - t0)
    med = statistics.median(secs)
    total = sum(lens)
    return {"impl": "transformers", "version": transformers.__version__,
            "torch": torch.__version__, "shape": shape, "precision": precision,
            "attention": "causal", "texts": n_texts, "tokens": total, "seconds": med,
            "tokens_per_s": total / med, "gpu": torch.cuda.get_device_name(0)}


def run_lmembed(bench, shape, precision, n_texts, batch_tokens, repeats):
    cmd = [bench, "--shape", shape, "--precision", precision, "--texts", str(n_texts),
           "--batch-tokens", str(batch_tokens), "--repeats", str(repeats)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.environ.get("LMEMBED_TARGET_CUDA_BACKBONE_BENCH",
                                                      "build/bench/cuda_backbone_bench"))
    ap.add_argument("--texts", type=int, default=4096)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shapes", default="qwen2-0.5b,mistral-7b-slice")
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"skip: {e}", file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("skip: no CUDA device for PyTorch", file=sys.stderr)
        return 77
    rows = []
    for shape in a.shapes.split(","):
        for prec in a.precisions.split(","):
            ours = run_lmembed(a.bench, shape, prec, a.texts, a.batch_tokens, a.repeats)
            print(json.dumps(ours), flush=True)
            theirs = run_hf(shape, prec, a.texts, a.batch_tokens, a.repeats)
            print(json.dumps(theirs), flush=True)
            rows.append((shape, prec, ours, theirs))
            import torch as _t
            _t.cuda.empty_cache()
    print(f"\nGPU: {rows[0][2]['gpu'] if rows else '?'}; {a.texts} texts, "
          f"median of {a.repeats} runs, measured in this one run")
    print(f"{'shape':18} {'prec':5} {'lmembed tok/s':>14} {'transformers tok/s':>19} {'ratio':>6}")
    for shape, prec, o, t in rows:
        print(f"{shape:18} {prec:5} {o['tokens_per_s']:14.0f} {t['tokens_per_s']:19.0f} "
              f"{o['tokens_per_s'] / t['tokens_per_s']:6.2f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump([{"lmembed": o, "transformers": t} for _, _, o, t in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
