"""Every layer's hidden states against an independent PyTorch float64 forward pass.

The llama.cpp goldens hold only final-layer states; this checks CaptureLayers::all (layers
1..L-1 = residual stream after block l, layer L = after the final RMSNorm, HF
output_hidden_states minus the embedding output) for all tokens, causal and bidirectional, on
tiny-llama (HF and GGUF, whose permuted q/k rows must give the same states) and tiny-qwen2 (HF,
q/k/v biases). The reference follows transformers' LlamaModel/Qwen2Model: rotate_half RoPE,
repeat_kv GQA, SiLU-gated MLP, RMSNorm; it reads model.safetensors itself (header + raw bytes).
Bound: max |diff| / max |ref| <= 1e-4 per token vector (float32 vs float64; ~1e-6 expected).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    sys.exit(77)

DATA = os.environ["LMEMBED_DATA_DIR"]
TOOL = os.environ.get("LMEMBED_TARGET_DUMP_STATES")
if not TOOL or not os.path.exists(TOOL):
    print("dump_states not built")
    sys.exit(77)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    dt = {"F32": np.float32, "F16": np.float16, "BF16": None, "F64": np.float64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=dt[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float64))
    return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def reference(folder, ids, causal):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    W = read_safetensors(os.path.join(folder, "model.safetensors"))
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim", d // H)
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    L = cfg["num_hidden_layers"]
    n = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos(), ang.sin()
    mask = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1) if causal else None
    states = []
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)

        def proj(name):
            y = h @ W[p + f"self_attn.{name}_proj.weight"].T
            b = W.get(p + f"self_attn.{name}_proj.bias")
            return y + b if b is not None else y

        q = proj("q").view(n, H, hd).transpose(0, 1)
        k = proj("k").view(n, KV, hd).transpose(0, 1)
        v = proj("v").view(n, KV, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=0)
        v = v.repeat_interleave(H // KV, dim=0)
        s = q @ k.transpose(1, 2) / (hd ** 0.5)
        if mask is not None:
            s = s + mask
        o = (s.softmax(-1) @ v).transpose(0, 1).reshape(n, H * hd)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
        states.append(x.clone())
    states[-1] = rms_norm(x, W["model.norm.weight"], eps)
    return torch.stack(states, dim=1)  # [n, L, d]


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, folder in [
            ("tiny-llama", "golden/models/tiny-llama-hf", "golden/models/tiny-llama-hf"),
            ("tiny-llama", "golden/models/tiny-llama.gguf", "golden/models/tiny-llama-hf"),
            ("tiny-qwen2", "golden/models/tiny-qwen2-hf", "golden/models/tiny-qwen2-hf"),
        ]:
            g = json.load(open(os.path.join(DATA, "golden", name + ".json")))
            seqs = [g["sentences"][i]["ids"] for i in (0, 1, 40, 42)]
            ids_file = os.path.join(tmp, "ids.txt")
            with open(ids_file, "w") as f:
                for s in seqs:
                    f.write(" ".join(map(str, s)) + "\n")
            for attention in ("causal", "bidirectional"):
                out = os.path.join(tmp, "states.npy")
                subprocess.run([TOOL, os.path.join(DATA, model), attention, ids_file, out],
                               check=True)
                ours = np.load(out)
                row = 0
                worst = 0.0
                for s in seqs:
                    ref = reference(os.path.join(DATA, folder), s, attention == "causal")
                    n, L, d = ref.shape
                    mine = ours[row * L:(row + n) * L].reshape(n, L, d).astype(np.float64)
                    row += n
                    r = ref.numpy()
                    diff = np.abs(mine - r).max(-1) / np.abs(r).max(-1)
                    worst = max(worst, float(diff.max()))
                ok = worst <= 1e-4
                failures += not ok
                print(f"{model:35s} {attention:14s} all layers, all tokens: max rel {worst:.3g}"
                      f" {'ok' if ok else 'FAIL'}")
                assert row * L == ours.shape[0], (row, L, ours.shape)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
