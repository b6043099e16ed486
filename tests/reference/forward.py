#!/usr/bin/env python3
"""Reference forward pass of the decoder families Yunzhi runs, written from the papers and the
Hugging Face config fields, on PyTorch (Debian's python3-torch), in float64.

Input: a JSON job file
    {"cases": [{"reference": "model.ref.safetensors", "tokens": [1, 5, ...],
                "out": "logits.f32"}, ...]}
where each reference file is what `yunzhi-make-model --reference` writes: every weight as
float32 under its Hugging Face name (dequantised exactly as the engine sees it) and the model's
config.json text in the safetensors metadata key "config". For each case the logits of every
position ([len(tokens), vocab_size], float32, row-major, little-endian) are written to "out".

A case may also name the GGUF file the engine loads ("gguf": "model.gguf"). Its weights in the
block types gguf_weights.py decodes (Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS) are then read
from that file and dequantised here, independently of the engine, and must equal the reference
file's values bit for bit (else the case fails, naming the tensor); a "gguf" with no such tensor is
an error too.

Several cases run in one invocation because importing torch takes seconds. Any failure (no
torch, a bad file, an unsupported config) exits non-zero: the calling test must fail, not skip.
"""
import json
import math
import struct
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree from the import below
import gguf_weights  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data, dtype="<f4", count=(end - begin) // 4, offset=base + begin)
        tensors[name] = torch.from_numpy(arr.astype(np.float64)).reshape(info["shape"])
    return tensors, meta


def inverse_frequencies(cfg, head_dim):
    theta = float(cfg.get("rope_theta", 10000.0))
    inv = [theta ** (-2.0 * i / head_dim) for i in range(head_dim // 2)]
    scaling = cfg.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        inv = [f / scaling["factor"] for f in inv]
    elif kind == "llama3":
        # Llama 3.1: wavelengths longer than original_ctx / low_freq_factor are stretched by
        # `factor`, shorter than original_ctx / high_freq_factor kept, interpolated between.
        factor = scaling["factor"]
        low = scaling.get("low_freq_factor", 1.0)
        high = scaling.get("high_freq_factor", 4.0)
        old_ctx = scaling.get("original_max_position_embeddings", 8192)
        out = []
        for f in inv:
            wavelen = 2 * math.pi / f
            if wavelen < old_ctx / high:
                out.append(f)
            elif wavelen > old_ctx / low:
                out.append(f / factor)
            else:
                smooth = (old_ctx / wavelen - low) / (high - low)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = out
    elif kind not in ("default", None):
        raise ValueError(f"unsupported rope scaling {kind}")
    return torch.tensor(inv, dtype=torch.float64)


def rms_norm(x, weight, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * weight


def rotate_half(x):
    # Hugging Face layout: element i rotates with element i + d/2.
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


def forward(weights, cfg, tokens):
    arch = cfg["model_type"]
    if arch not in ("llama", "mistral", "qwen2", "qwen3"):
        raise ValueError(f"unsupported model_type {arch}")
    n_embd = cfg["hidden_size"]
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    head_dim = cfg.get("head_dim") or n_embd // n_head
    eps = cfg["rms_norm_eps"]
    qkv_bias = arch == "qwen2" or cfg.get("attention_bias", False)
    qk_norm = arch == "qwen3"
    T = len(tokens)

    pos = torch.arange(T, dtype=torch.float64)
    angles = torch.outer(pos, inverse_frequencies(cfg, head_dim))   # [T, d/2]
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1)[:, None, :]  # [T, 1, d]
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1)[:, None, :]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    window = cfg.get("sliding_window") or 0
    if window > 0:  # Mistral v0.1: position t sees t - window + 1 .. t
        mask = mask + torch.full((T, T), float("-inf"), dtype=torch.float64).tril(-window)

    x = weights["model.embed_tokens.weight"][torch.tensor(tokens)]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, weights[p + "input_layernorm.weight"], eps)
        q = h @ weights[p + "self_attn.q_proj.weight"].T
        k = h @ weights[p + "self_attn.k_proj.weight"].T
        v = h @ weights[p + "self_attn.v_proj.weight"].T
        if qkv_bias:
            q = q + weights[p + "self_attn.q_proj.bias"]
            k = k + weights[p + "self_attn.k_proj.bias"]
            v = v + weights[p + "self_attn.v_proj.bias"]
        q = q.view(T, n_head, head_dim)
        k = k.view(T, n_kv, head_dim)
        v = v.view(T, n_kv, head_dim)
        if qk_norm:
            q = rms_norm(q, weights[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, weights[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Grouped-query attention: KV head j serves query heads j*g .. j*g + g - 1.
        group = n_head // n_kv
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(head_dim) + mask
        probs = torch.softmax(scores, dim=-1)
        attn = torch.einsum("hts,shd->thd", probs, v).reshape(T, n_head * head_dim)
        x = x + attn @ weights[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, weights[p + "post_attention_layernorm.weight"], eps)
        gate = h @ weights[p + "mlp.gate_proj.weight"].T
        up = h @ weights[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ weights[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, weights["model.norm.weight"], eps)
    head = weights.get("lm_head.weight")
    if head is None:
        head = weights["model.embed_tokens.weight"]
    return x @ head.T


def with_gguf_block_weights(weights, gguf_path, cfg):
    decoded = gguf_weights.block_weights(gguf_path, cfg)
    if not decoded:
        raise ValueError(f"{gguf_path}: no tensor in a block type this reference decodes")
    for name, w in decoded.items():
        want = weights[name]
        if w.shape != want.shape:
            raise ValueError(f"{gguf_path}: {name}: shape {list(w.shape)}, the writer's "
                             f"{list(want.shape)}")
        bad = torch.nonzero(w != want)
        if len(bad):
            i = tuple(bad[0].tolist())
            raise ValueError(f"{gguf_path}: {name}: {len(bad)} values differ from the writer's "
                             f"dequantised weights, first at {list(i)}: {w[i]} vs {want[i]}")
    return {**weights, **decoded}


def main():
    if len(sys.argv) != 2:
        print("usage: forward.py JOB.json", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        job = json.load(f)
    cache = {}
    for case in job["cases"]:
        path = case["reference"]
        if path not in cache:
            cache = {path: read_safetensors(path)}  # keep one model in memory at a time
        weights, meta = cache[path]
        cfg = json.loads(meta["config"])
        if "gguf" in case:
            weights = with_gguf_block_weights(weights, case["gguf"], cfg)
        logits = forward(weights, cfg, case["tokens"])
        logits.to(torch.float32).numpy().astype("<f4").tofile(case["out"])
    print(f"forward.py: {len(job['cases'])} cases OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
