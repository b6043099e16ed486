"""Weights read straight from a GGUF file, for forward.py: a reader of the GGUF container and
dequantisers written from the format descriptions (GGUF specification, ggml's block layouts),
sharing no code with the engine, so that a block layout the engine's writer, reader and kernels
agree on but get wrong still shows up as a difference from this reference.

Decoded here (ggml type id in brackets):
  Q5_0 [6]: 22-byte blocks of 32 elements = fp16 d, then qh (4 bytes: a little-endian uint32 of
            fifth bits), then qs (16 bytes of nibbles). Element j < 16 is the low nibble of qs[j]
            with bit j of qh as its bit 4; element j + 16 is the high nibble of qs[j] with bit
            j + 16 of qh. value = (q - 16) * d.
  Q5_1 [7]: 24-byte blocks of 32 elements = fp16 d, fp16 m, then qh and qs as Q5_0's (element
            j < 16: low nibble of qs[j], bit j of qh as bit 4; element j + 16: high nibble, bit
            j + 16). value = q * d + m, q in [0, 31] (computed in float32: (q * d) + m).
  Q5_K [13]: 176-byte super-blocks of 256 elements = fp16 d, fp16 dmin, scales (12 bytes), qh
            (32 bytes of fifth bits), qs (128 bytes of nibbles). Eight sub-blocks of 32 elements,
            s = 0..7, each with a 6-bit scale sc[s] and a 6-bit min m[s]: for s < 4, sc[s] is the
            low 6 bits of scales[s] and m[s] those of scales[s + 4]; for s >= 4, sc[s] is the low
            nibble of scales[s + 4] with the top 2 bits of scales[s - 4] above it, and m[s] the
            high nibble of scales[s + 4] with the top 2 bits of scales[s]. Chunk c = 0..3 (elements
            64c .. 64c + 63) uses qs[32c .. 32c + 31]: element 64c + l (sub-block 2c) is the low
            nibble of qs[32c + l] with bit 2c of qh[l] as its bit 4, element 64c + 32 + l
            (sub-block 2c + 1) the high nibble with bit 2c + 1 of qh[l]. value = d * sc[s] * q -
            dmin * m[s], q in [0, 31] (computed in float32 in that order: (d * sc) * q - dmin * m).
  IQ4_NL [20]: 18-byte blocks of 32 elements = fp16 d, then qs (16 bytes of 4-bit indices into
            the fixed table of 16 values below): element j < 16 is the low nibble of qs[j],
            element j + 16 the high nibble. value = d * table[index] (float32).
  IQ4_XS [23]: 136-byte super-blocks of 256 elements = fp16 d, scales_h (a little-endian uint16),
            scales_l (4 bytes), qs (128 bytes). Eight sub-blocks of 32, s = 0..7, with the 6-bit
            scale ls[s]: its low 4 bits are the low (even s) or high (odd s) nibble of
            scales_l[s // 2], its top 2 bits bits 2s and 2s + 1 of scales_h. Sub-block s uses
            qs[16s .. 16s + 15] as one IQ4_NL block does (element 32s + j the low nibble of
            qs[16s + j], element 32s + 16 + j the high one). value = (d * (ls[s] - 32)) *
            table[index] (float32, in that order).
  Q2_K [10]: 84-byte super-blocks of 256 elements = scales (16 bytes), qs (64 bytes of 2-bit
            fields), fp16 d, fp16 dmin. Element e = 128n + 32j + l has q = bits 2j, 2j + 1 of
            qs[32n + l] (q in [0, 3]) and belongs to sub-block s = e // 16, whose scale is the low
            nibble of scales[s] and whose min is its high nibble. value = d * sc * q - dmin * m
            (computed in float32 in that order: (d * sc) * q - (dmin * m)).
  Q3_K [11]: 110-byte super-blocks of 256 elements = hmask (32 bytes of high bits), qs (64
            bytes of 2-bit fields), scales (12 bytes), fp16 d. Element e = 128n + 32j + l (n = 0..1,
            j = 0..3, l = 0..31) belongs to sub-block s = e // 16; its two low bits are bits 2j,
            2j + 1 of qs[32n + l] and its high bit h is bit 4n + j of hmask[l]; q = low - 4 where
            h is clear, else low (q in [-4, 3]). Sub-block s has a 6-bit field f: its low 4 bits
            are the low nibble of scales[s] for s < 8, the high nibble of scales[s - 8] for
            s >= 8; its high 2 bits are bits 2 (s // 4), 2 (s // 4) + 1 of scales[8 + s % 4].
            value = d * (f - 32) * q (computed in float32 in that order: (d * sc) * q).
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
Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS = 6, 7, 10, 11, 13, 20, 23
# The values of IQ4_NL's (and IQ4_XS's) 4-bit indices, from ggml's format description.
IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        dtype=np.float32)

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


def dequantize_q5_1(raw, n):
    """The first n elements (a multiple of 32) of Q5_1 data, as float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // 32 * 24).reshape(-1, 24)
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)      # [n_blocks, 1]
    m = blocks[:, 2:4].copy().view("<f2").astype(np.float32)      # [n_blocks, 1]
    qh = blocks[:, 4:8].copy().view("<u4").astype(np.int64)       # [n_blocks, 1]
    qs = blocks[:, 8:24].astype(np.int64)                         # [n_blocks, 16]
    j = np.arange(16)
    low = (qs & 0x0F) | ((qh >> j) & 1) << 4
    high = (qs >> 4) | ((qh >> (j + 16)) & 1) << 4
    q = np.concatenate([low, high], axis=1)                       # elements 0..15, 16..31
    return (q.astype(np.float32) * d + m).reshape(-1)


def _k_scales_mins(packed):
    """[n_blocks, 12] packed bytes -> (sc, m), each [n_blocks, 8] int64 in [0, 63]."""
    p = packed.astype(np.int64)
    sc = np.concatenate([p[:, 0:4] & 63, (p[:, 8:12] & 0x0F) | (p[:, 0:4] >> 6) << 4], axis=1)
    m = np.concatenate([p[:, 4:8] & 63, (p[:, 8:12] >> 4) | (p[:, 4:8] >> 6) << 4], axis=1)
    return sc, m


def dequantize_q5_k(raw, n):
    """The first n elements (a multiple of 256) of Q5_K data, as float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // 256 * 176).reshape(-1, 176)
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)       # [n_blocks, 1]
    dmin = blocks[:, 2:4].copy().view("<f2").astype(np.float32)    # [n_blocks, 1]
    sc, m = _k_scales_mins(blocks[:, 4:16])                         # [n_blocks, 8]
    qh = blocks[:, 16:48].astype(np.int64)[:, None, :]              # [n_blocks, 1, l]
    qs = blocks[:, 48:176].astype(np.int64).reshape(-1, 4, 32)      # [n_blocks, c, l]
    c = np.arange(4)[None, :, None]
    low = (qs & 0x0F) | ((qh >> (2 * c)) & 1) << 4                  # element 64c + l
    high = (qs >> 4) | ((qh >> (2 * c + 1)) & 1) << 4               # element 64c + 32 + l
    q = np.stack([low, high], axis=2).reshape(-1, 8, 32)            # [n_blocks, s = 2c + h, 32]
    scale = (d * sc.astype(np.float32))[:, :, None]
    offset = (dmin * m.astype(np.float32))[:, :, None]
    return (scale * q.astype(np.float32) - offset).reshape(-1)


def dequantize_iq4_nl(raw, n):
    """The first n elements (a multiple of 32) of IQ4_NL data, as float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // 32 * 18).reshape(-1, 18)
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)      # [n_blocks, 1]
    qs = blocks[:, 2:18]                                          # [n_blocks, 16]
    index = np.concatenate([qs & 0x0F, qs >> 4], axis=1)          # elements 0..15, 16..31
    return (d * IQ4NL_VALUES[index]).reshape(-1)


def dequantize_iq4_xs(raw, n):
    """The first n elements (a multiple of 256) of IQ4_XS data, as float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // 256 * 136).reshape(-1, 136)
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)      # [n_blocks, 1]
    scales_h = blocks[:, 2:4].copy().view("<u2").astype(np.int64)  # [n_blocks, 1]
    scales_l = blocks[:, 4:8].astype(np.int64)                     # [n_blocks, 4]
    s = np.arange(8)
    ls = (scales_l[:, s // 2] >> (4 * (s % 2))) & 15 | ((scales_h >> (2 * s)) & 3) << 4
    dl = d * (ls - 32).astype(np.float32)                          # [n_blocks, 8]
    qs = blocks[:, 8:136].reshape(-1, 8, 16)                       # [n_blocks, s, 16]
    index = np.concatenate([qs & 0x0F, qs >> 4], axis=2)           # [n_blocks, s, 32]
    return (dl[:, :, None] * IQ4NL_VALUES[index]).reshape(-1)


def _two_bit_fields(qs):
    """[n_blocks, 64] qs bytes -> [n_blocks, 256] int64, element 128n + 32j + l = bits 2j of
    qs[32n + l]."""
    q = qs.astype(np.int64).reshape(-1, 2, 1, 32)                   # [n_blocks, n, 1, l]
    j = np.arange(4)[None, None, :, None]
    return ((q >> (2 * j)) & 3).reshape(-1, 256)                   # [n_blocks, n, j, l]


def dequantize_q2_k(raw, n):
    """The first n elements (a multiple of 256) of Q2_K data, as float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // 256 * 84).reshape(-1, 84)
    scales = blocks[:, 0:16].astype(np.int64)
    q = _two_bit_fields(blocks[:, 16:80])
    d = blocks[:, 80:82].copy().view("<f2").astype(np.float32)     # [n_blocks, 1]
    dmin = blocks[:, 82:84].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    scale = np.repeat(d * (scales & 0x0F).astype(np.float32), 16, axis=1)
    offset = np.repeat(dmin * (scales >> 4).astype(np.float32), 16, axis=1)
    return (scale * q.astype(np.float32) - offset).reshape(-1)


def dequantize_q3_k(raw, n):
    """The first n elements (a multiple of 256) of Q3_K data, as float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // 256 * 110).reshape(-1, 110)
    hmask = blocks[:, 0:32].astype(np.int64)[:, None, :]           # [n_blocks, 1, l]
    low = _two_bit_fields(blocks[:, 32:96])
    k = np.arange(8)[None, :, None]                                 # k = 4n + j
    high = ((hmask >> k) & 1).reshape(-1, 256)                      # element 32k + l
    q = low - 4 * (1 - high)
    p = blocks[:, 96:108].astype(np.int64)
    s = np.arange(16)
    low4 = np.where(s < 8, p[:, s % 8] & 0x0F, p[:, s % 8] >> 4)
    high2 = (p[:, 8 + s % 4] >> (2 * (s // 4))) & 3
    sc = (low4 | high2 << 4) - 32                                   # [n_blocks, 16]
    d = blocks[:, 108:110].copy().view("<f2").astype(np.float32)   # [n_blocks, 1]
    scale = np.repeat(d * sc.astype(np.float32), 16, axis=1)        # [n_blocks, 256]
    return (scale * q.astype(np.float32)).reshape(-1)


_DEQUANTIZE = {Q5_0: dequantize_q5_0, Q5_1: dequantize_q5_1, Q2_K: dequantize_q2_k,
               Q3_K: dequantize_q3_k, Q5_K: dequantize_q5_k, IQ4_NL: dequantize_iq4_nl,
               IQ4_XS: dequantize_iq4_xs}


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
        if ttype not in _DEQUANTIZE:
            continue
        if len(ne) != 2:
            raise ValueError(f"{gguf_path}: {name}: a block type with {len(ne)} dimensions")
        cols, rows = ne
        w = _DEQUANTIZE[ttype](raw, rows * cols).reshape(rows, cols)
        if permute and name.endswith((".attn_q.weight", ".attn_k.weight")):
            w = _unpermute(w, n_head if name.endswith(".attn_q.weight") else n_kv)
        out[_hf_name(name)] = torch.from_numpy(w.astype(np.float64))
    return out
