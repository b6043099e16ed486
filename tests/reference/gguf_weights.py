"""Weights read straight from a GGUF file, for forward.py: a reader of the GGUF container and
dequantisers written from the format descriptions (GGUF specification, ggml's block layouts),
sharing no code with the engine, so that a block layout the engine's writer, reader and kernels
agree on but get wrong still shows up as a difference from this reference.

Decoded here (ggml type id in brackets):
  Q5_0 [6]: 22-byte blocks of 32 elements = fp16 d, then qh (4 bytes: a little-endian uint32 of
            fifth bits), then qs (16 bytes of nibbles). Element j < 16 is the low nibble of qs[j]
            with bit j of qh as its bit 4; element j + 16 is the high nibble of qs[j] with bit
            j + 16 of qh. value = (q - 16) * d.
Tensors of other types are left to the caller (the writer's dequantised reference file).

GGUF layout (v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count,
metadata (string key, u32 type, value), tensor infos (string name, u32 n_dims, u64 ne[n_dims]
with ne[0] the row length, u32 type, u64 offset), then the data section at the next multiple of
general.alignment (default 32); offsets are relative to it.
"""
import struct

import numpy as np
import torch

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
Q5_0 = 6

# GGUF tensor names of the decoder families -> Hugging Face names (matrices only: the only
# tensors stored in block types).
_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
                 "output.weight": "lm_head.weight"}
_LAYER_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.data[self.pos:self.pos + n]
        if len(s) != n:
            raise ValueError("GGUF string runs past the end of the file")
        self.pos += n
        return s.decode("utf-8")

    def value(self, t):
        if t == _STRING:
            return self.string()
        if t == _ARRAY:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        return self.take(_SCALAR[t])


def read_gguf(path):
    """Returns (metadata {key: value}, tensors {name: (ne list, ggml type id, bytes view)})."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    r = _Reader(data)
    r.pos = 4
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    if version != 3:
        raise ValueError(f"{path}: GGUF version {version}, expected 3")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        ne = [r.take("<Q") for _ in range(r.take("<I"))]
        infos.append((name, ne, r.take("<I"), r.take("<Q")))
    align = meta.get("general.alignment", 32)
    data_start = (r.pos + align - 1) // align * align
    view = memoryview(data)
    tensors = {name: (ne, ttype, view[data_start + offset:]) for name, ne, ttype, offset in infos}
    return meta, tensors


def dequantize_q5_0(raw, n):
    """The first n elements (a multiple of 32) of Q5_0 data, as float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // 32 * 22).reshape(-1, 22)
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)      # [n_blocks, 1]
    qh = blocks[:, 2:6].copy().view("<u4").astype(np.int64)       # [n_blocks, 1]
    qs = blocks[:, 6:22].astype(np.int64)                         # [n_blocks, 16]
    j = np.arange(16)
    low = (qs & 0x0F) | ((qh >> j) & 1) << 4
    high = (qs >> 4) | ((qh >> (j + 16)) & 1) << 4
    q = np.concatenate([low, high], axis=1) - 16                  # elements 0..15, 16..31
    return (q.astype(np.float32) * d).reshape(-1)


def _hf_name(gguf_name):
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[3] == "weight" and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.weight"
    raise ValueError(f"no Hugging Face name for GGUF tensor {gguf_name}")


def _unpermute(w, n_heads):
    # GGUF llama Q/K rows are interleaved per head: row 2i holds HF row i, row 2i+1 HF row
    # i + d/2 (rotating pairs (2i, 2i+1) there equals rotating (i, i + d/2) here).
    rows, cols = w.shape
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def block_weights(gguf_path, cfg):
    """{Hugging Face name: float64 torch tensor} for every tensor of gguf_path stored in a block
    type decoded here, in Hugging Face row order."""
    _, tensors = read_gguf(gguf_path)
    permute = cfg["model_type"] in ("llama", "mistral")
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    out = {}
    for name, (ne, ttype, raw) in tensors.items():
        if ttype != Q5_0:
            continue
        if len(ne) != 2:
            raise ValueError(f"{gguf_path}: {name}: a block type with {len(ne)} dimensions")
        cols, rows = ne
        w = dequantize_q5_0(raw, rows * cols).reshape(rows, cols)
        if permute and name.endswith((".attn_q.weight", ".attn_k.weight")):
            w = _unpermute(w, n_head if name.endswith(".attn_q.weight") else n_kv)
        out[_hf_name(name)] = torch.from_numpy(w.astype(np.float64))
    return out
